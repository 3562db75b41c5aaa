"""TLS between the nodes: the backends' HTTP ports, the Raft streams, and the clients of both.

With `[tls] enabled = true` every catalog and order node serves HTTPS and its Raft port speaks TLS, and every
caller (frontend, replicas, `pygmy check`/`backup`) verifies the node's certificate against the cluster's
CA. So the cluster secret in `X-Pygmy-Secret`, the admin's changes and the Raft entries cross the network
encrypted, and a machine in the middle cannot pose as a node. The frontend's public port stays plain HTTP
(put a TLS-terminating proxy in front of it for clients; see docs/security.md).

Certificates come from the configuration (`ca`, `cert`, `key`: PEM files) or, for a cluster on one machine,
from `pygmy up`, which makes a CA and one node certificate for every host of the configuration in
`<data_dir>/tls/` at the first start (`cryptography`; keys readable by their owner only).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pygmy.config import Config, TlsSettings

VALID_DAYS = 3650  # a local cluster's CA; an operator's own certificates say their own validity


@dataclasses.dataclass(frozen=True)
class TlsContexts:
    """What a node listens with and what it dials other nodes with."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def contexts(config: Config) -> TlsContexts | None:
    """The node-to-node TLS contexts of `config`, or None when TLS is off."""
    tls = config.tls
    if not tls.enabled:
        return None
    if tls.ca is None or tls.cert is None or tls.key is None:
        raise ValueError("[tls] is enabled without ca, cert and key (pygmy up fills them in for a local cluster)")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tls.cert, tls.key)
    return TlsContexts(server=server, client=client_context(tls))


def client_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """For calling nodes: trusts the cluster's CA only and checks the node's name (None when TLS is off)."""
    if not tls.enabled or tls.ca is None:
        return None
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))


def ensure_certificates(config: Config) -> Config:
    """`config` with its TLS files; for TLS without them, a local CA and node certificate made once in the data dir."""
    tls = config.tls
    if not tls.enabled or (tls.ca and tls.cert and tls.key):
        return config
    directory = config.data_dir / "tls"
    files = TlsSettings(True, directory / "ca.pem", directory / "node.pem", directory / "node.key")
    if not all(p is not None and p.exists() for p in (files.ca, files.cert, files.key)):
        generate(directory, sorted({n.host for n in config.nodes}))
    return config.with_overrides(tls=files)


def generate(directory: Path, hosts: list[str]) -> None:
    """A CA (`ca.pem`, its key `ca.key`) and a node certificate for `hosts` and loopback (`node.pem`, `node.key`)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pygmy cluster CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    names = _subject_names([*hosts, "127.0.0.1", "::1", "localhost"])
    node = (
        _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pygmy node")]), ca_name, node_key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.key", _private_pem(ca_key), private=True)
    _write(directory / "node.key", _private_pem(node_key), private=True)
    _write(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    _write(directory / "node.pem", node.public_bytes(serialization.Encoding.PEM))


def _certificate(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a neighbour's clock a little behind
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
