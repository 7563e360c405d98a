"""Transport security: TLS for native gRPC and HTTPS for the HTTP server, optional mTLS on
native gRPC, and the start-up rule that plaintext is only for loopback.

- AFFECTLINE_TLS_CERT + AFFECTLINE_TLS_KEY (PEM files): both servers speak TLS only.
- AFFECTLINE_TLS_CLIENT_CA (PEM): native gRPC also requires a client certificate signed by
  this CA (mTLS, for partner systems). The HTTP port keeps server-only TLS (browsers).
- Without a certificate the servers speak plaintext, which `serve` accepts only on a loopback
  address, or with AFFECTLINE_ALLOW_PLAINTEXT=1 (`--allow-plaintext`), logged as a warning:
  a non-loopback bind without TLS and without that flag is a start-up error.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TransportSecurityError(ValueError):
    """A TLS setting that cannot be served (missing file, half a pair, plaintext off loopback)."""


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TransportSecurity:
    cert_path: Path | None = None
    key_path: Path | None = None
    client_ca_path: Path | None = None
    cert_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)  # never in a repr, log line or traceback
    client_ca_pem: bytes = field(default=b"", repr=False)

    @property
    def enabled(self) -> bool:
        return self.cert_path is not None

    @property
    def mutual(self) -> bool:
        return self.client_ca_path is not None

    def grpc_credentials(self) -> Any:
        """grpc.ServerCredentials, or None for plaintext."""
        if not self.enabled:
            return None
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem or None,
            require_client_auth=self.mutual,
        )

    def configure_hypercorn(self, config: Any) -> None:
        """HTTPS on the HTTP port (server certificate only; ALPN h2 and http/1.1)."""
        if self.enabled:
            config.certfile = str(self.cert_path)
            config.keyfile = str(self.key_path)

    def describe(self) -> str:
        if not self.enabled:
            return "plaintext"
        return "TLS, client certificates required on gRPC (mTLS)" if self.mutual else "TLS"


def _read(path_text: str, what: str) -> tuple[Path, bytes]:
    path = Path(path_text).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TransportSecurityError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TransportSecurityError(f"{what}: {path} is not a PEM file")
    return path, data


def transport_security(settings: Any) -> TransportSecurity:
    """Checks the TLS settings and reads the files; raises TransportSecurityError (a ValueError:
    `affectline serve` prints it and exits 2) when they cannot be served."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if bool(cert) != bool(key):
        raise TransportSecurityError("AFFECTLINE_TLS_CERT and AFFECTLINE_TLS_KEY (--tls-cert, --tls-key) go together")
    if client_ca and not cert:
        raise TransportSecurityError("AFFECTLINE_TLS_CLIENT_CA (mTLS) needs AFFECTLINE_TLS_CERT and AFFECTLINE_TLS_KEY")
    if cert:
        cert_path, cert_pem = _read(cert, "AFFECTLINE_TLS_CERT")
        key_path, key_pem = _read(key, "AFFECTLINE_TLS_KEY")
        ca_path, ca_pem = _read(client_ca, "AFFECTLINE_TLS_CLIENT_CA") if client_ca else (None, b"")
        _check_pair(cert_path, key_path)
        return TransportSecurity(cert_path, key_path, ca_path, cert_pem, key_pem, ca_pem)
    if not is_loopback(settings.host):
        if not settings.allow_plaintext:
            raise TransportSecurityError(
                f"refusing to serve plaintext on {settings.host!r}, which is not a loopback address: set "
                "AFFECTLINE_TLS_CERT and AFFECTLINE_TLS_KEY (--tls-cert, --tls-key; `affectline dev-certs` makes "
                "a development pair), or AFFECTLINE_ALLOW_PLAINTEXT=1 (--allow-plaintext) where a proxy in front "
                "terminates TLS"
            )
        log.warning("serving PLAINTEXT on %s (AFFECTLINE_ALLOW_PLAINTEXT=1): crop batches stay end-to-end "
                    "encrypted, but session tokens, API keys and timelines cross the network readable; "
                    "terminate TLS in front of this server", settings.host)
    return TransportSecurity()


def _check_pair(cert_path: Path, key_path: Path) -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_path), str(key_path), password=lambda: b"")  # never prompts
    except (ssl.SSLError, ValueError) as exc:
        raise TransportSecurityError(
            f"AFFECTLINE_TLS_CERT {cert_path} and AFFECTLINE_TLS_KEY {key_path} are not a certificate and its key "
            f"({type(exc).__name__})"
        ) from None
