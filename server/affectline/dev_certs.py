"""`affectline dev-certs`: a local CA with a server and a client certificate, for development
and tests (never for production: the CA's key is not kept, and nothing is trusted system-wide).

Writes, in --out (default ./dev-certs): ca.pem (trust this on clients; as
AFFECTLINE_TLS_CLIENT_CA it makes native gRPC require client certificates), server.pem +
server-key.pem (the server's pair, for the names in --hosts) and client.pem + client-key.pem
(a partner system's pair for mTLS). Keys are ECDSA P-256, written with mode 0600.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

FILES = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")
VALID_DAYS = 90


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dev-certs", help="make a local CA and server and client certificates for TLS/mTLS in development",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog="example:\n  affectline dev-certs --out dev-certs --hosts localhost,127.0.0.1\n"
               "  affectline serve --tls-cert dev-certs/server.pem --tls-key dev-certs/server-key.pem "
               "--tls-client-ca dev-certs/ca.pem",
    )
    p.add_argument("--out", type=Path, default=Path("dev-certs"), help="folder to write into (default: dev-certs)")
    p.add_argument("--hosts", default="localhost,127.0.0.1,::1",
                   help="comma-separated DNS names and IP addresses the server certificate is valid for "
                        "(default: localhost,127.0.0.1,::1)")
    p.add_argument("--force", action="store_true", help="overwrite certificates already in --out")


@dataclass(frozen=True)
class DevCerts:
    out: Path

    def path(self, name: str) -> Path:
        return self.out / name

    def serve_flags(self, mutual: bool = True) -> str:
        flags = f"--tls-cert {self.path('server.pem')} --tls-key {self.path('server-key.pem')}"
        return flags + (f" --tls-client-ca {self.path('ca.pem')}" if mutual else "")


def make_dev_certs(out: Path, hosts: list[str], *, force: bool = False, valid_days: int = VALID_DAYS) -> DevCerts:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("--hosts needs at least one name or address")
    existing = [n for n in FILES if (out / n).exists()]
    if existing and not force:
        raise ValueError(f"{out} already holds {', '.join(existing)}; use --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)  # tolerate small clock skew
    until = now + timedelta(days=valid_days)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Affectline development"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Affectline development CA")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: Any, sans: list[x509.GeneralName] | None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            sans.append(x509.DNSName(host))
    server, server_key = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client, client_key = leaf("affectline-partner", ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def write(file: str, data: bytes, mode: int) -> None:
        path = out / file
        path.unlink(missing_ok=True)  # a fresh file, so the mode below is the one it gets
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    pem = serialization.Encoding.PEM
    for file, key in (("server-key.pem", server_key), ("client-key.pem", client_key)):
        write(file, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    write("ca.pem", ca.public_bytes(pem), 0o644)
    write("server.pem", server.public_bytes(pem), 0o644)
    write("client.pem", client.public_bytes(pem), 0o644)
    return DevCerts(out)


def run(args: argparse.Namespace) -> int:
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    certs = make_dev_certs(args.out, hosts, force=args.force)
    print(f"wrote {', '.join(FILES)} to {args.out} (keys mode 0600; valid {VALID_DAYS} days; server names: "
          f"{', '.join(hosts)})", file=sys.stderr)
    print("serve with TLS, and mTLS on native gRPC (drop --tls-client-ca for TLS only):")
    print(f"  affectline serve {certs.serve_flags()}")
    print("  (or AFFECTLINE_TLS_CERT, AFFECTLINE_TLS_KEY, AFFECTLINE_TLS_CLIENT_CA)")
    print("clients trust ca.pem; partners with mTLS present client.pem + client-key.pem, e.g.")
    print(f"  grpcurl -cacert {certs.path('ca.pem')} -cert {certs.path('client.pem')} "
          f"-key {certs.path('client-key.pem')} {hosts[0]}:50051 list")
    print(f"  curl --cacert {certs.path('ca.pem')} https://{hosts[0]}:8080/healthz")
    return 0
