"""`affectline analytics export`: timelines, curves and summaries as CSV and Parquet, filtered; the
same files from the ExportAnalytics RPC (native gRPC, Connect streaming) and GET /api/export."""

from __future__ import annotations

import csv
import io
import json
import math
import struct

import grpc
import httpx
import pyarrow.parquet as pq
import pytest
from affectline.auth.scopes import SESSIONS_WRITE
from affectline.commands.analytics import main
from affectline.config import Settings
from affectline.demo_data import DemoSpec, write_demo
from affectline.services import analytics_service
from affectline.storage.rollup_store import RollupStore, Selection
from affectline.storage.timeline_store import TimelineStore
from affectline.v1 import analytics_pb2 as pb
from affectline.v1 import analytics_pb2_grpc
from api_client import BearerAuth, bearer
from db_backends import db_engine, db_url, pg_admin_url, pg_migrated_url  # noqa: F401
from server_harness import running_server
from sqlalchemy import Engine

VIDEO = "synthetic-demo"


@pytest.fixture
def filled(db_engine: Engine, db_url: str) -> str:
    write_demo(TimelineStore(db_engine), DemoSpec(sessions=12, seconds=10, fps=4.0, video_id=VIDEO, seed=5))
    return db_url


def export(url: str, tmp_path, *args: str) -> str:
    out = str(tmp_path / "out")
    assert main(["analytics", "export", "--video", VIDEO, "--database-url", url, "-o", out, *args]) == 0
    return out


def test_curves_csv_match_the_api_curves(filled: str, db_engine: Engine, tmp_path) -> None:
    with open(export(filled, tmp_path, "--what", "curves", "--start-s", "2", "--end-s", "8")) as f:
        rows = list(csv.DictReader(f))
    happy = [r for r in rows if r["metric"] == "happy"]
    assert [int(r["second"]) for r in happy] == list(range(2, 8))
    from affectline.analytics import video_curves

    expected = video_curves(RollupStore(db_engine).second_rollups(VIDEO, Selection()), start_s=2, end_s=8)
    assert [float(r["mean"]) for r in happy] == pytest.approx(expected.curves["happy"].mean.tolist())


def test_summaries_parquet_and_filtered_timelines(filled: str, db_engine: Engine, tmp_path) -> None:
    table = pq.read_table(export(filled, tmp_path, "--what", "summaries", "--format", "parquet"))
    assert table.num_rows == 12 and set(table.column("variant_id").to_pylist()) == {"a", "b"}
    assert all(0 <= x <= 1 for x in table.column("mean_happy").to_pylist())
    with open(export(filled, tmp_path, "--what", "timelines", "--variant", "b")) as f:
        frames = list(csv.DictReader(f))
    assert len(frames) == 6 * 40 and {r["variant_id"] for r in frames} == {"b"}
    no_face = [r for r in frames if r["face_present"] == "False"]
    assert all(r["p_happy"] == "" for r in no_face)
    assert not math.isnan(float(next(r for r in frames if r["face_present"] == "True")["s_happy"]))


def test_summaries_of_a_group_below_the_floor_are_refused(filled: str, tmp_path) -> None:
    with pytest.raises(ValueError, match="fewer than 5 viewers"):
        export(filled, tmp_path, "--what", "summaries", "--variant", "a", "--region", "JP", "--region", "BR")


# --- ExportAnalytics (native gRPC, Connect) and GET /api/export, against a running server -----------

EXPORT_PATH = "/affectline.v1.AnalyticsService/ExportAnalytics"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(Settings(data_dir=tmp_path_factory.mktemp("export-server"))) as s:
        write_demo(s.parts.store, DemoSpec(sessions=12, seconds=10, fps=4.0, video_id=VIDEO, seed=5))
        yield s


def cli_bytes(server, tmp_path, *args: str) -> bytes:
    with open(export(server.parts.settings.resolved_database_url, tmp_path, *args), "rb") as f:
        return f.read()


def grpc_chunks(server, request: pb.ExportRequest, key: str | None = "analyst") -> list[pb.ExportChunk]:
    channel = grpc.insecure_channel(server.grpc_target)
    if key is not None:
        channel = grpc.intercept_channel(channel, BearerAuth(server.analyst_key if key == "analyst" else key))
    try:
        return list(analytics_pb2_grpc.AnalyticsServiceStub(channel).ExportAnalytics(request))
    finally:
        channel.close()


def connect_stream(server, request: pb.ExportRequest) -> tuple[list[pb.ExportChunk], dict]:
    """Connect's streaming protocol by hand: enveloped messages, then the end-of-stream JSON."""
    body = request.SerializeToString()
    response = httpx.post(server.http_base + EXPORT_PATH, content=struct.pack(">BI", 0, len(body)) + body,
                          headers={"content-type": "application/connect+proto", **bearer(server.analyst_key)},
                          timeout=30)
    assert response.status_code == 200
    data, chunks, end = response.content, [], {}
    while data:
        flags, size = struct.unpack(">BI", data[:5])
        payload, data = data[5:5 + size], data[5 + size:]
        if flags & 0x02:
            end = json.loads(payload or b"{}")
        else:
            chunks.append(pb.ExportChunk.FromString(payload))
    return chunks, end


def test_rpc_csv_is_the_cli_file_over_grpc_and_connect(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(analytics_service, "EXPORT_CHUNK_BYTES", 4096)  # many chunks
    f = pb.AnalyticsFilter(variant_ids=["b"], start_s=2, end_s=8)
    for what, table in (("curves", pb.EXPORT_TABLE_CURVES), ("timelines", pb.EXPORT_TABLE_TIMELINES)):
        expected = cli_bytes(server, tmp_path, "--what", what, "--variant", "b", "--start-s", "2", "--end-s", "8")
        request = pb.ExportRequest(video_id=VIDEO, what=table, format=pb.EXPORT_FORMAT_CSV, filter=f)
        chunks = grpc_chunks(server, request)
        assert b"".join(c.data for c in chunks) == expected
        assert (chunks[0].content_type, chunks[0].file_name) == ("text/csv; charset=utf-8", f"{VIDEO}-{what}.csv")
        assert all(not c.content_type and not c.file_name and len(c.data) <= 4096 for c in chunks[1:])
        via_connect, end = connect_stream(server, request)
        assert "error" not in end and b"".join(c.data for c in via_connect) == expected
    assert len(chunks) > 5  # the timelines came in pieces


def test_rpc_parquet_reads_with_pyarrow_and_applies_every_filter(server) -> None:
    chunks = grpc_chunks(server, pb.ExportRequest(video_id=VIDEO, what=pb.EXPORT_TABLE_SUMMARIES,
                                                  format=pb.EXPORT_FORMAT_PARQUET,
                                                  filter=pb.AnalyticsFilter(emotions=["happy", "sad"])))
    assert chunks[0].content_type == "application/vnd.apache.parquet"
    assert chunks[0].file_name == f"{VIDEO}-summaries.parquet"
    table = pq.read_table(io.BytesIO(b"".join(c.data for c in chunks)))
    assert table.num_rows == 12 and "mean_happy" in table.column_names and "mean_neutral" not in table.column_names
    assert "mean_engagement" in table.column_names
    frames = pq.read_table(io.BytesIO(b"".join(c.data for c in grpc_chunks(server, pb.ExportRequest(
        video_id=VIDEO, what=pb.EXPORT_TABLE_TIMELINES, format=pb.EXPORT_FORMAT_PARQUET,
        filter=pb.AnalyticsFilter(min_attention_share=1.0))))))
    assert frames.num_rows < 12 * 40  # viewers never looking away are rarer than all of them


def test_rpc_refusals(server) -> None:
    ok = pb.ExportRequest(video_id=VIDEO)
    cases = [
        (pb.ExportRequest(video_id="no-such-video"), "analyst", grpc.StatusCode.NOT_FOUND),
        (ok, None, grpc.StatusCode.UNAUTHENTICATED),
        (ok, server.create_key(SESSIONS_WRITE), grpc.StatusCode.PERMISSION_DENIED),
        (pb.ExportRequest(video_id=VIDEO, what=pb.EXPORT_TABLE_SUMMARIES,
                          filter=pb.AnalyticsFilter(variant_ids=["a"], regions=["JP", "BR"])), "analyst",
         grpc.StatusCode.FAILED_PRECONDITION),
        (pb.ExportRequest(video_id=VIDEO, filter=pb.AnalyticsFilter(emotions=["bored"])), "analyst",
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, key, code in cases:
        with pytest.raises(grpc.RpcError) as info:
            grpc_chunks(server, request, key)
        assert info.value.code() == code, (request, info.value.details())


def test_http_export_for_the_dashboard_buttons(server, tmp_path) -> None:
    url = server.http_base + "/api/export"
    # The dashboard's parameters: video, format, table and its URL filter names.
    params = {"video": VIDEO, "format": "csv", "table": "curves", "variant": "b", "start": "2", "end": "8"}
    assert httpx.get(url, params=params).status_code == 401
    r = httpx.get(url, params=params, headers=bearer(server.create_key(SESSIONS_WRITE)))
    assert r.status_code == 403
    r = httpx.get(url, params=params, headers=bearer(server.analyst_key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="{VIDEO}-curves.csv"'
    assert r.content == cli_bytes(server, tmp_path, "--what", "curves", "--variant", "b", "--start-s", "2",
                                  "--end-s", "8")
    r = httpx.get(url, params={**params, "format": "parquet", "table": "timelines"}, headers=bearer(server.analyst_key))
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.headers["content-disposition"] == f'attachment; filename="{VIDEO}-timelines.parquet"'
    assert set(pq.read_table(io.BytesIO(r.content)).column("variant_id").to_pylist()) == {"b"}
    for bad, status in (({"video": "no-such-video"}, 404), ({"table": "frames"}, 400), ({"start": "x"}, 400),
                        ({"region": "JP", "variant": "a", "table": "summaries"}, 409)):
        r = httpx.get(url, params={**params, **bad}, headers=bearer(server.analyst_key))
        assert r.status_code == status and r.json()["code"], (bad, r.text)
