"""The Flower engine: ClientApp, the ServerApp side of a method, simulation, deployments, the tap.
May import: strategies, scenario, network, experiment, tracking; the one folder importing flwr."""
