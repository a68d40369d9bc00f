"""Throw-away TLS and SuperNode-authentication credentials for a federation on loopback.

- a certificate authority (`ca.pem`): a self-signed EC P-256 certificate;
- the SuperLink's certificate (`server.pem`, key `server.key`), signed by it, for
  127.0.0.1 and localhost (its subject alternative names: TLS clients check them);
- one EC P-384 key pair per SuperNode in OpenSSH format (`node-J.key`,
  `node-J.key.pub`), which `flwr supernode register` and
  `flower-supernode --auth-supernode-private-key` read.

Everything is valid for one day and written only readable by the owner. They
prove nothing beyond this machine: a real federation needs its own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Credentials:
    """Where the generated files are."""

    ca_certificate: Path
    server_certificate: Path
    server_key: Path
    node_keys: tuple[Path, ...]  # private keys; each public key is beside it, `.pub`

    def public_key(self, node: int) -> Path:
        return self.node_keys[node].with_suffix(".key.pub")


def _write(path: Path, contents: bytes) -> Path:
    path.touch(mode=0o600)
    path.write_bytes(contents)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
                 signer: ec.EllipticCurvePrivateKey, is_ca: bool) -> x509.Certificate:
    """A certificate for `subject`'s `key`, signed by `signer` (itself when `issuer` is
    None); a leaf certificate names 127.0.0.1 and localhost."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


def generate_credentials(folder: Path, nodes: int) -> Credentials:
    """A CA, the SuperLink's certificate and `nodes` SuperNode key pairs, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("decentral-bench throw-away CA", ca_key, None, ca_key, is_ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key, is_ca=False)
    pem = serialization.Encoding.PEM
    node_keys = []
    for node in range(nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        private = _write(folder / f"node-{node}.key", key.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        _write(folder / f"node-{node}.key.pub", key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
        node_keys.append(private)
    return Credentials(ca_certificate=_write(folder / "ca.pem", ca.public_bytes(pem)),
                       server_certificate=_write(folder / "server.pem", server.public_bytes(pem)),
                       server_key=_write(folder / "server.key", _pem_key(server_key)),
                       node_keys=tuple(node_keys))
