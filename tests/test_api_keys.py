"""API keys (issue 40 item 10): the store on SQLite and PostgreSQL, the scope rule, the cached
check, the first-start key, `affectline keys`, and keys and scopes on every transport."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from alembic import command
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import Engine, inspect, text

from affectline.auth import keys as key_format
from affectline.auth.authenticator import LAST_USED_EVERY_S, Authenticator
from affectline.auth.bootstrap import ADMIN_KEY_FILE, ensure_admin_key
from affectline.auth.issuing import issue_key, register_key
from affectline.auth.keys import bearer_token, hash_secret, new_key, parse_key
from affectline.auth.scopes import ADMIN, ANALYTICS_READ, SESSIONS_WRITE, grants, parse_scopes, required_scope
from affectline.config import Settings
from affectline.metrics import Metrics
from affectline.serving.grpc_server import build_grpc_server
from affectline.storage.api_key_store import ApiKeyRecord, ApiKeyStore, DuplicateKeyId
from affectline.storage.database import alembic_config, make_engine, upgrade
from affectline.v1 import analytics_pb2, analytics_pb2_grpc
from affectline.v1.analytics_connect import AnalyticsServiceClient
from api_client import GrpcPartner
from server_harness import running_server

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
AFFECTLINE = [sys.executable, "-m", "affectline"]


def record_of(credential: key_format.Credential, *scopes: str, **kw) -> ApiKeyRecord:
    return ApiKeyRecord(key_id=credential.key_id, name="k", scopes=scopes or (ANALYTICS_READ,), created_at=T0,
                        secret_sha256=credential.secret_sha256, **kw)


# ------------------------------------------------------------------------- format and scopes


def test_key_format_round_trips_and_refuses_look_alikes():
    credential = new_key()
    assert credential.token.startswith(f"afk_{credential.key_id}_") and len(credential.key_id) == 16
    assert parse_key(credential.token) == credential
    assert credential.secret not in repr(credential)  # never in a traceback or a log line
    for bad in ("", "afk_", f"afk_{credential.key_id}", credential.token + "x", credential.token.replace("afk_", "afx_"),
                f"afk_{credential.key_id.upper()}_{credential.secret}"):
        assert parse_key(bad) is None, bad
    assert hash_secret(credential.secret) == credential.secret_sha256 and len(credential.secret_sha256) == 32
    assert new_key() != new_key()


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc") == bearer_token("bearer  abc") == "abc"
    assert bearer_token(None) is bearer_token("") is bearer_token("Basic abc") is bearer_token("Bearer") is None


def test_the_scope_rule_goes_by_service_and_denies_unknown_services():
    assert required_scope("affectline.v1.AnalyticsService") == ANALYTICS_READ
    assert required_scope("affectline.v1.LiveService") == ANALYTICS_READ
    assert required_scope("affectline.v1.WebhookService") == ADMIN
    assert required_scope("affectline.v1.SessionService") is None
    assert required_scope("grpc.health.v1.Health") is None
    assert required_scope("grpc.reflection.v1alpha.ServerReflection") is None
    assert required_scope("grpc.reflection.v1.ServerReflection") is None
    for unknown in ("affectline.v2.AnalyticsService", "affectline.v1.Nope", "", "grpc.healthy.Evil"):
        assert required_scope(unknown) == ADMIN, unknown
    assert grants([ADMIN], ANALYTICS_READ) and grants([ADMIN], ADMIN) and grants([ANALYTICS_READ], ANALYTICS_READ)
    assert not grants([SESSIONS_WRITE], ANALYTICS_READ) and not grants([ANALYTICS_READ], ADMIN)
    assert parse_scopes([ADMIN, ANALYTICS_READ, ADMIN]) == (ANALYTICS_READ, ADMIN)
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes(["analytics:write"])
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes([])


# ------------------------------------------------------------------------- the store


@pytest.fixture
def key_store(db_engine: Engine) -> ApiKeyStore:
    return ApiKeyStore(db_engine)


def test_store_keeps_only_the_hash_of_the_secret(key_store: ApiKeyStore, db_engine: Engine):
    credential = issue_key(key_store, "dashboard", [ANALYTICS_READ, ADMIN], expires_at=datetime.now(UTC) + timedelta(days=1))
    stored = key_store.get(credential.key_id)
    assert stored is not None and stored.name == "dashboard" and stored.scopes == (ANALYTICS_READ, ADMIN)
    assert stored.secret_sha256 == hash_secret(credential.secret)
    assert stored.expires_at is not None and stored.expires_at.tzinfo is not None
    assert stored.revoked_at is None and stored.last_used_at is None
    with db_engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM api_keys")).one()
    cells = [bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in row]
    assert not any(credential.secret.encode() in cell for cell in cells)
    assert key_store.get("0" * 16) is None


def test_store_list_count_revoke_touch(key_store: ApiKeyStore):
    first, second = new_key(), new_key()
    key_store.add(record_of(first))
    key_store.add(replace(record_of(second, ADMIN), created_at=T0 + timedelta(seconds=1), name="later"))
    assert key_store.count() == 2 and [k.key_id for k in key_store.list()] == [first.key_id, second.key_id]
    with pytest.raises(DuplicateKeyId):
        key_store.add(record_of(first))
    revoked = key_store.revoke(first.key_id, T0 + timedelta(hours=1))
    assert revoked is not None and revoked.revoked_at == T0 + timedelta(hours=1)
    again = key_store.revoke(first.key_id, T0 + timedelta(hours=2))  # the first revocation time stays
    assert again is not None and again.revoked_at == T0 + timedelta(hours=1)
    assert key_store.revoke("f" * 16, T0) is None
    key_store.touch(second.key_id, T0 + timedelta(minutes=5))
    assert key_store.get(second.key_id).last_used_at == T0 + timedelta(minutes=5)


def test_migration_0006_is_reversible(empty_db_url: str):
    engine = make_engine(empty_db_url)
    try:
        config = alembic_config()
        upgrade(engine, "0006")
        assert "api_keys" in inspect(engine).get_table_names()
        ApiKeyStore(engine).add(record_of(new_key()))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0005")
        assert "api_keys" not in inspect(engine).get_table_names()
        upgrade(engine, "0006")
        assert ApiKeyStore(engine).count() == 0
    finally:
        engine.dispose()


def test_issuing_refuses_no_name_and_a_past_expiry(key_store: ApiKeyStore):
    with pytest.raises(ValueError, match="name"):
        issue_key(key_store, "  ", [ADMIN])
    with pytest.raises(ValueError, match="expire"):
        issue_key(key_store, "x", [ADMIN], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert key_store.count() == 0


# ------------------------------------------------------------------------- the authenticator


class CountingStore:
    """The authenticator's view of a store, counting its reads and writes."""

    def __init__(self, *records: ApiKeyRecord) -> None:
        self.records = {r.key_id: r for r in records}
        self.gets = 0
        self.touches: list[tuple[str, datetime]] = []

    def get(self, key_id: str) -> ApiKeyRecord | None:
        self.gets += 1
        return self.records.get(key_id)

    def touch(self, key_id: str, at: datetime) -> None:
        self.touches.append((key_id, at))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.now += timedelta(seconds=seconds)


def _check(auth: Authenticator, header: str | None, service: str = "affectline.v1.AnalyticsService") -> str:
    async def run() -> str:
        try:
            await auth.authorize(service, header)
            return "OK"
        except ConnectError as exc:
            return f"{exc.code.name}: {exc.message}"
        finally:
            await auth.close()

    return asyncio.run(run())


def test_authenticator_verdicts_and_messages():
    good, other = new_key(), new_key()
    revoked, expired, writer = new_key(), new_key(), new_key()
    store = CountingStore(record_of(good), record_of(revoked, revoked_at=T0), record_of(expired, expires_at=T0),
                          record_of(writer, SESSIONS_WRITE), record_of(other, ADMIN))
    clock = Clock()
    auth = Authenticator(store, clock=lambda: clock.t, now=lambda: clock.now)
    wrong_secret = key_format.Credential(good.key_id, new_key().secret).token
    verdicts = {
        "none": _check(auth, None),
        "basic": _check(auth, "Basic dXNlcjpwdw=="),
        "malformed": _check(auth, "Bearer not-a-key"),
        "unknown": _check(auth, f"Bearer {new_key().token}"),
        "wrong secret": _check(auth, f"Bearer {wrong_secret}"),
        "revoked": _check(auth, f"Bearer {revoked.token}"),
        "expired": _check(auth, f"Bearer {expired.token}"),
        "no scope": _check(auth, f"Bearer {writer.token}"),
        "good": _check(auth, f"Bearer {good.token}"),
        "admin": _check(auth, f"Bearer {other.token}"),
        "admin on webhooks": _check(auth, f"Bearer {other.token}", "affectline.v1.WebhookService"),
        "reader on webhooks": _check(auth, f"Bearer {good.token}", "affectline.v1.WebhookService"),
        "sessions, no key": _check(auth, None, "affectline.v1.SessionService"),
        "health, no key": _check(auth, None, "grpc.health.v1.Health"),
    }
    assert verdicts["good"] == verdicts["admin"] == verdicts["admin on webhooks"] == "OK"
    assert verdicts["sessions, no key"] == verdicts["health, no key"] == "OK"
    for case in ("none", "basic", "malformed", "unknown", "wrong secret", "revoked", "expired"):
        assert verdicts[case].startswith("UNAUTHENTICATED: "), (case, verdicts[case])
    assert "authorization: Bearer <key>" in verdicts["none"] and "'analytics:read'" in verdicts["none"]
    assert verdicts["unknown"] == verdicts["wrong secret"]  # which ids exist is not told
    assert "revoked" in verdicts["revoked"] and "expired" in verdicts["expired"]
    assert verdicts["no scope"].startswith("PERMISSION_DENIED: ") and "'analytics:read'" in verdicts["no scope"]
    assert verdicts["reader on webhooks"].startswith("PERMISSION_DENIED: ") and "'admin'" in verdicts["reader on webhooks"]
    secrets_ = [k.secret for k in (good, other, revoked, expired, writer)] + [wrong_secret]
    assert not any(s in v for s in secrets_ for v in verdicts.values())


def test_secrets_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = key_format.hmac.compare_digest
    monkeypatch.setattr(key_format.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    good = new_key()
    auth = Authenticator(CountingStore(record_of(good)))
    assert _check(auth, f"Bearer {good.token}") == "OK"
    assert calls == [(good.secret_sha256, good.secret_sha256)]


def test_the_cache_saves_lookups_and_bounds_how_long_a_revocation_takes():
    good = new_key()
    store = CountingStore(record_of(good))
    clock = Clock()
    auth = Authenticator(store, cache_s=30.0, clock=lambda: clock.t, now=lambda: clock.now)
    header = f"Bearer {good.token}"
    for _ in range(5):
        assert _check(auth, header) == "OK"
    assert store.gets == 1
    assert _check(auth, f"Bearer {key_format.Credential(good.key_id, new_key().secret).token}").startswith("UNAUTHENTICATED")
    store.records[good.key_id] = replace(store.records[good.key_id], revoked_at=clock.now)  # `keys revoke`
    clock.advance(29)
    assert _check(auth, header) == "OK"  # still trusted from the cache...
    clock.advance(1)
    assert _check(auth, header).startswith("UNAUTHENTICATED")  # ...and refused once it is older than cache_s
    assert store.gets == 2
    # Expiry needs no fresh lookup: it is checked against the clock on every call.
    soon = new_key()
    store.records[soon.key_id] = record_of(soon, expires_at=clock.now + timedelta(seconds=5))
    assert _check(auth, f"Bearer {soon.token}") == "OK"
    clock.advance(5)
    assert _check(auth, f"Bearer {soon.token}").startswith("UNAUTHENTICATED")
    uncached = Authenticator(store, cache_s=0)
    _check(uncached, header)
    _check(uncached, header)
    assert store.gets == 5


def test_last_use_is_recorded_at_most_once_a_minute_per_key():
    good = new_key()
    store = CountingStore(record_of(good))
    clock = Clock()
    auth = Authenticator(store, clock=lambda: clock.t, now=lambda: clock.now)
    for _ in range(3):
        _check(auth, f"Bearer {good.token}")
    clock.advance(LAST_USED_EVERY_S)
    _check(auth, f"Bearer {good.token}")
    assert store.touches == [(good.key_id, T0), (good.key_id, T0 + timedelta(seconds=LAST_USED_EVERY_S))]


# ------------------------------------------------------------------------- first start


def test_first_start_makes_a_private_admin_key_once(tmp_path, key_store: ApiKeyStore):
    first = ensure_admin_key(key_store, tmp_path)
    assert first is not None and first.path == tmp_path / ADMIN_KEY_FILE
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert first.path.read_text().strip() == first.token and first.token not in repr(first)
    stored = key_store.get(parse_key(first.token).key_id)
    assert stored is not None and stored.scopes == (ADMIN,)
    assert ensure_admin_key(key_store, tmp_path) is None and key_store.count() == 1
    key_store.revoke(stored.key_id, T0)
    assert ensure_admin_key(key_store, tmp_path) is None  # revoking every key never brings one back


def test_a_configured_admin_key_is_registered_once_and_must_match(tmp_path, key_store: ApiKeyStore):
    configured = new_key()
    assert ensure_admin_key(key_store, tmp_path, configured.token) is None
    assert not (tmp_path / ADMIN_KEY_FILE).exists()
    assert key_store.get(configured.key_id).scopes == (ADMIN,)
    key_store.revoke(configured.key_id, T0)
    ensure_admin_key(key_store, tmp_path, configured.token)  # a restart: kept, and kept revoked
    assert key_store.count() == 1 and key_store.get(configured.key_id).revoked_at == T0
    with pytest.raises(ValueError, match="another secret"):
        ensure_admin_key(key_store, tmp_path, key_format.Credential(configured.key_id, new_key().secret).token)
    with pytest.raises(ValueError, match="not an API key") as info:
        ensure_admin_key(key_store, tmp_path, "hunter2-secret")
    assert "hunter2" not in str(info.value)


# ------------------------------------------------------------------------- every transport


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server, a session started with no key, and one key of each kind of interest."""
    data = tmp_path_factory.mktemp("data")
    with running_server(Settings(data_dir=data)) as server:
        store = server.parts.api_keys
        revoked = issue_key(store, "revoked", [ANALYTICS_READ])
        store.revoke(revoked.key_id, datetime.now(UTC))
        expired, past = new_key(), datetime.now(UTC) - timedelta(days=2)
        register_key(store, expired, "expired", [ANALYTICS_READ], now=past, expires_at=past + timedelta(days=1))
        good = server.create_key(ANALYTICS_READ, name="analyst")
        partner = GrpcPartner(server.grpc_target)  # no key: viewers never need one
        session_id = partner.start(viewer_id="keyed-viewer").session_id
        partner.close()
        headers = {
            "no key": None,
            "not bearer": "Basic dXNlcjpwdw==",
            "malformed": "Bearer afk_nope",
            "wrong secret": f"Bearer {key_format.Credential(parse_key(good).key_id, new_key().secret).token}",
            "revoked": f"Bearer {revoked.token}",
            "expired": f"Bearer {expired.token}",
            "no scope": f"Bearer {server.create_key(SESSIONS_WRITE, name='partner')}",
            "good": f"Bearer {good}",
            "admin": f"Bearer {(data / ADMIN_KEY_FILE).read_text().strip()}",
        }
        yield server, session_id, headers


EXPECTED = {"no key": "UNAUTHENTICATED", "not bearer": "UNAUTHENTICATED", "malformed": "UNAUTHENTICATED",
            "wrong secret": "UNAUTHENTICATED", "revoked": "UNAUTHENTICATED", "expired": "UNAUTHENTICATED",
            "no scope": "PERMISSION_DENIED", "good": "OK", "admin": "OK"}


def _native_grpc(server, session_id: str, header: str | None) -> tuple[str, str]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        try:
            stub.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session_id),
                                    metadata=(("authorization", header),) if header else None)
            return "OK", ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()


def _grpc_web(server, session_id: str, header: str | None) -> tuple[str, str]:
    async def call() -> tuple[str, str]:
        client = AnalyticsServiceClient(server.http_base, protocol=ProtocolType.GRPC_WEB)
        try:
            await client.get_session_timeline(analytics_pb2.GetSessionTimelineRequest(session_id=session_id),
                                              headers={"authorization": header} if header else None)
            return "OK", ""
        except ConnectError as exc:
            return exc.code.name, exc.message

    return asyncio.run(call())


def _connect_json(server, session_id: str, header: str | None) -> tuple[str, str]:
    r = httpx.post(f"{server.http_base}/affectline.v1.AnalyticsService/GetSessionTimeline", json={"sessionId": session_id},
                   headers={"authorization": header} if header else {})
    if r.status_code == 200:
        return "OK", ""
    body = r.json()
    assert r.status_code == {"unauthenticated": 401, "permission_denied": 403}[body["code"]]
    return body["code"].upper(), body["message"]


def _json_rpc(server, session_id: str, header: str | None) -> tuple[str, str]:
    r = httpx.post(f"{server.http_base}/jsonrpc", headers={"authorization": header} if header else {}, json={
        "jsonrpc": "2.0", "id": 1, "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
        "params": {"sessionId": session_id}}).json()
    if "result" in r:
        return "OK", ""
    assert r["error"]["code"] == {"UNAUTHENTICATED": -32016, "PERMISSION_DENIED": -32007}[r["error"]["data"]["grpc_status"]]
    return r["error"]["data"]["grpc_status"], r["error"]["message"]


@pytest.mark.parametrize("transport", [_native_grpc, _grpc_web, _connect_json, _json_rpc],
                         ids=["native-grpc", "grpc-web", "connect-json", "json-rpc"])
def test_analytics_needs_a_valid_key_with_its_scope_on_every_transport(keyed, transport, caplog):
    server, session_id, headers = keyed
    caplog.set_level(logging.DEBUG)
    got = {case: transport(server, session_id, header) for case, header in headers.items()}
    assert {case: code for case, (code, _) in got.items()} == EXPECTED
    assert "'analytics:read'" in got["no scope"][1] and "'analytics:read'" in got["no key"][1]
    secrets_ = [c.secret for h in headers.values() if h and (c := parse_key(h.removeprefix("Bearer ")))]
    assert len(secrets_) == 6 and not any(s in message for s in secrets_ for _, message in got.values())
    assert not any(s in caplog.text for s in secrets_)  # keys never reach the logs


def test_json_rpc_checks_each_call_of_a_batch(keyed):
    server, session_id, headers = keyed
    timeline = {"jsonrpc": "2.0", "method": "affectline.v1.AnalyticsService/GetSessionTimeline",
                "params": {"sessionId": session_id}}
    push = {"jsonrpc": "2.0", "method": "affectline.v1.SessionService/PushCrops",
            "params": {"sessionId": "no-such-session", "sessionToken": "t"}}

    def batch(header: str | None, *calls: dict) -> dict[int, str]:
        body = [{**c, "id": i} for i, c in enumerate(calls)]
        replies = httpx.post(f"{server.http_base}/jsonrpc", json=body,
                             headers={"authorization": header} if header else {}).json()
        return {r["id"]: r["error"]["data"]["grpc_status"] if "error" in r else "OK" for r in replies}

    # Without a key the session call still reaches SessionService (it answers for the session itself).
    assert batch(None, timeline, push) == {0: "UNAUTHENTICATED", 1: "NOT_FOUND"}
    assert batch(headers["no scope"], push, timeline) == {0: "NOT_FOUND", 1: "PERMISSION_DENIED"}
    assert batch(headers["good"], timeline, timeline) == {0: "OK", 1: "OK"}


def test_sessions_and_health_need_no_key(keyed):
    server, _, _ = keyed
    assert httpx.get(server.http_base + "/healthz").status_code == 200
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "affectline.v1.AnalyticsService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "affectline.v1.AnalyticsService" in {s.name for s in answer.list_services_response.service}
    r = httpx.post(server.http_base + "/affectline.v1.SessionService/EndSession",  # Connect JSON, no key
                   json={"sessionId": "no-such-session", "sessionToken": "t"})
    assert r.json()["code"] == "not_found"


def test_native_grpc_refuses_every_kind_of_method_before_its_handler():
    """Unary, server-streaming (health Watch) and bidi (reflection) calls, refused by an authorize that refuses all."""
    from connectrpc.code import Code

    async def refuse_all(service: str, authorization: str | None) -> None:
        raise ConnectError(Code.UNAUTHENTICATED, f"no entry to {service}")

    async def scenario() -> list[tuple[str, str]]:
        server = build_grpc_server([], Metrics.create(), "127.0.0.1:0", authorize=refuse_all)
        await server.start()
        got = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                calls = (
                    lambda: health.Check(health_pb2.HealthCheckRequest()),
                    lambda: health.Watch(health_pb2.HealthCheckRequest()).read(),
                    lambda: reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])).read(),
                )
                for call in calls:
                    try:
                        await call()
                        got.append(("OK", ""))
                    except grpc.aio.AioRpcError as exc:
                        got.append((exc.code().name, exc.details()))
        finally:
            await server.stop(0)
        return got

    assert asyncio.run(scenario()) == [
        ("UNAUTHENTICATED", "no entry to grpc.health.v1.Health"),
        ("UNAUTHENTICATED", "no entry to grpc.health.v1.Health"),
        ("UNAUTHENTICATED", "no entry to grpc.reflection.v1alpha.ServerReflection"),
    ]


# ------------------------------------------------------------------------- `affectline keys`


def _keys(*args: str, db_url: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([*AFFECTLINE, "keys", *args, "--database-url", db_url, "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120, check=False)


def test_keys_cli_create_list_revoke(db_url, tmp_path):
    created = _keys("create", "--name", "dashboard", "--scope", "analytics:read", "--scope", "admin",
                    "--expires-in-days", "30", db_url=db_url, tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    credential = parse_key(token)
    assert credential is not None and created.stdout == token + "\n"  # stdout: the key alone
    assert "Authorization: Bearer" in created.stderr and credential.secret not in created.stderr

    listed = _keys("list", db_url=db_url, tmp_path=tmp_path)
    assert listed.returncode == 0 and credential.secret not in listed.stdout
    header, row = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "name", "scopes", "created", "expires", "revoked", "last used"]
    cells = row.split("\t")
    assert cells[:3] == [credential.key_id, "dashboard", "analytics:read,admin"] and cells[4] != "-" and cells[5:] == ["-", "-"]

    revoked = _keys("revoke", credential.key_id, db_url=db_url, tmp_path=tmp_path)
    assert revoked.returncode == 0 and f"revoked {credential.key_id}" in revoked.stdout
    assert _keys("list", db_url=db_url, tmp_path=tmp_path).stdout.splitlines()[1].split("\t")[5] != "-"
    engine = make_engine(db_url)
    try:
        assert ApiKeyStore(engine).get(credential.key_id).revoked_at is not None
    finally:
        engine.dispose()

    for args, error in ((("revoke", "0123456789abcdef"), "no API key with id"),
                        (("create", "--name", "x", "--scope", "admin", "--expires-in-days", "0"), "--expires-in-days"),
                        (("create", "--name", "x", "--scope", "everything"), "invalid choice")):
        failed = _keys(*args, db_url=db_url, tmp_path=tmp_path)
        assert failed.returncode == 2 and error in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_serve_keeps_the_first_key_out_of_logs(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with running_server(Settings(data_dir=tmp_path / "data")) as server:
        token = (tmp_path / "data" / ADMIN_KEY_FILE).read_text().strip()
        credential = parse_key(token)
        assert server.parts.api_keys.get(credential.key_id).scopes == (ADMIN,)
    assert str(tmp_path / "data" / ADMIN_KEY_FILE) in caplog.text and credential.secret not in caplog.text
