"""Everything that touches Flower: the ClientApp, the ServerApp side of a method, the
simulation launcher (the Flower engine), the engine patch, the network tap, node
discovery, the array codec, and the `flwr run .` entry (`app`)."""
