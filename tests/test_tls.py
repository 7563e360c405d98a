"""Transport security: dev-certs, TLS on native gRPC and HTTPS, mTLS, and no plaintext off loopback."""

from __future__ import annotations

import logging
import ssl
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from affectline.config import Settings
from affectline.dev_certs import make_dev_certs
from affectline.tls import TransportSecurityError, is_loopback, transport_security
from server_harness import running_server


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out, ["localhost", "127.0.0.1"])
    return out


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def _secure_channel(target: str, certs: Path, *, client: bool = False) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "client-key.pem").read_bytes() if client else None,
        certificate_chain=(certs / "client.pem").read_bytes() if client else None,
    )
    return grpc.secure_channel(target, creds)


def test_dev_certs_command_writes_a_ca_server_and_client_pair_with_private_keys(tmp_path):
    out = tmp_path / "certs"
    run = subprocess.run([sys.executable, "-m", "affectline", "dev-certs", "--out", str(out), "--hosts",
                          "localhost,127.0.0.1,studio.test"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"--tls-cert {out / 'server.pem'} --tls-key {out / 'server-key.pem'}" in run.stdout
    assert f"--tls-client-ca {out / 'ca.pem'}" in run.stdout
    for key in ("server-key.pem", "client-key.pem"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    assert not list(out.glob("ca-key*")), "the CA's key is not kept"
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    client = x509.load_pem_x509_certificate((out / "client.pem").read_bytes())
    assert server.issuer == ca.subject == client.issuer
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "studio.test"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    again = subprocess.run([sys.executable, "-m", "affectline", "dev-certs", "--out", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites silently


def test_native_grpc_and_http_speak_tls_with_the_configured_pair(tmp_path, certs):
    settings = Settings(data_dir=tmp_path, tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server-key.pem"))
    with running_server(settings) as server:
        with _secure_channel(server.grpc_target, certs) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(server.grpc_target) as plain, pytest.raises(grpc.RpcError) as refused:
            _health(plain)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        untrusted = grpc.ssl_channel_credentials()  # the system's CAs: ours is not among them
        with grpc.secure_channel(server.grpc_target, untrusted) as channel, pytest.raises(grpc.RpcError) as refused:
            _health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        https = f"https://127.0.0.1:{server.server.http_port}"
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with urllib.request.urlopen(f"{https}/healthz", context=context, timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(urllib.error.URLError):  # the CA is not trusted by default
            urllib.request.urlopen(f"{https}/healthz", context=ssl.create_default_context(), timeout=10)
        with pytest.raises((ConnectionError, urllib.error.URLError, http_client_errors())):
            urllib.request.urlopen(f"http://127.0.0.1:{server.server.http_port}/healthz", timeout=10)


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def test_mtls_on_native_grpc_needs_a_client_certificate_signed_by_the_ca(tmp_path, certs):
    settings = Settings(data_dir=tmp_path, tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server-key.pem"),
                        tls_client_ca=str(certs / "ca.pem"))
    with running_server(settings) as server:
        with _secure_channel(server.grpc_target, certs, client=True) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        with _secure_channel(server.grpc_target, certs) as channel, pytest.raises(grpc.RpcError) as refused:
            _health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A certificate from another CA is refused as well.
        other = tmp_path / "other"
        make_dev_certs(other, ["localhost"])
        creds = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(), (other / "client-key.pem").read_bytes(),
                                             (other / "client.pem").read_bytes())
        with grpc.secure_channel(server.grpc_target, creds) as channel, pytest.raises(grpc.RpcError) as refused:
            _health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused_off_loopback_unless_explicitly_allowed(tmp_path, caplog, certs):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.5")
    with pytest.raises(TransportSecurityError, match="not a loopback address.*AFFECTLINE_TLS_CERT.*ALLOW_PLAINTEXT"):
        transport_security(Settings(host="0.0.0.0"))
    with caplog.at_level(logging.WARNING, logger="affectline.tls"):
        assert not transport_security(Settings(host="0.0.0.0", allow_plaintext=1)).enabled
    assert "PLAINTEXT" in caplog.text
    assert transport_security(Settings(host="0.0.0.0", tls_cert=str(certs / "server.pem"),
                                       tls_key=str(certs / "server-key.pem"))).enabled
    with pytest.raises(TransportSecurityError, match="go together"):
        transport_security(Settings(tls_cert=str(certs / "server.pem")))
    with pytest.raises(TransportSecurityError, match="not a certificate and its key"):
        transport_security(Settings(tls_cert=str(certs / "server.pem"), tls_key=str(certs / "client-key.pem")))
    # `serve` says so and exits non-zero before loading anything.
    run = subprocess.run([sys.executable, "-m", "affectline", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path),
                          "--grpc-port", "0", "--http-port", "0"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "refusing to serve plaintext on '0.0.0.0'" in run.stderr and "--allow-plaintext" in run.stderr
