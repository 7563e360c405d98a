"""Affectline load test: `affectline loadtest` runs this; so can plain Locust:

    locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 30s \
        --host http://127.0.0.1:8080 --grpc-target 127.0.0.1:50051 --stop-timeout 10

Users (weights set with --mix): GrpcViewerUser (native gRPC, unary PushCrops), GrpcStreamPartnerUser
(bidi StreamCrops), GrpcWebViewerUser (gRPC-web over HTTP, as browsers), AnalystUser (Connect JSON
analytics, every 2-5 s). Every viewer streams 30 fps of face crops (at the size the server's CropSpec names) in encrypted batches.
Locust rows: StartSession/PushCrops/EndSession (grpc), StreamCrops (one per acked batch),
"grpc-web <Method>", GetVideoTimeline/GetSessionTimeline (connect-json).
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel exists: grpc must cooperate with gevent

import os
import sys
from typing import Any

from locust import events
from locust.env import Environment

sys.path.insert(0, os.path.dirname(__file__))  # sibling modules, also in --processes workers
import tally
from grpc_users import GrpcStreamPartnerUser, GrpcViewerUser
from shapes import AffectlineShape
from viewer import pool
from web_users import AnalystUser, GrpcWebViewerUser

USER_CLASSES = {"viewer": GrpcViewerUser, "partner": GrpcStreamPartnerUser, "web": GrpcWebViewerUser,
                "analyst": AnalystUser}
__all__ = ["AffectlineShape", "AnalystUser", "GrpcStreamPartnerUser", "GrpcViewerUser", "GrpcWebViewerUser"]


PUSH_ROWS = {"PushCrops", "StreamCrops", "grpc-web PushCrops"}
PUSHING = (GrpcViewerUser, GrpcStreamPartnerUser, GrpcWebViewerUser)
_env: list[Environment] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("Affectline")
    g.add_argument("--grpc-target", env_var="LOCUST_GRPC_TARGET", default="127.0.0.1:50051", help="native gRPC host:port")
    g.add_argument("--fps", env_var="LOCUST_FPS", type=float, default=30.0, help="frames per second each viewer captures")
    g.add_argument("--frames-per-batch", env_var="LOCUST_FRAMES_PER_BATCH", type=int, default=10, help="frames per encrypted batch")
    g.add_argument("--video-seconds", env_var="LOCUST_VIDEO_SECONDS", type=float, default=90.0, help="video length: a session ends after it")
    g.add_argument("--video-id", env_var="LOCUST_VIDEO_ID", default="loadtest", help="video every viewer watches and analysts query")
    g.add_argument("--shape", env_var="LOCUST_SHAPE", choices=("steady", "ramp", "spike"), default="steady")
    g.add_argument("--ramp-steps", env_var="LOCUST_RAMP_STEPS", type=int, default=10, help="plateaus of the ramp shape")
    g.add_argument("--step-seconds", env_var="LOCUST_STEP_SECONDS", type=float, default=10.0, help="window of the per-step latency table")
    g.add_argument("--mix", env_var="LOCUST_MIX", default="viewer=5,web=3,partner=2,analyst=1",
                   help="user weights, e.g. viewer=5,web=3,partner=2,analyst=1 (0 leaves a kind out)")
    g.add_argument("--acked-dir", env_var="LOCUST_ACKED_DIR", default="", help="folder for acked-<pid>.json and steps-<pid>.json")


def parse_mix(mix: str) -> dict[str, int]:
    weights = {}
    for part in filter(None, (p.strip() for p in mix.split(","))):
        name, _, weight = part.partition("=")
        if name not in USER_CLASSES:
            raise ValueError(f"--mix: unknown user kind {name!r} (known: {', '.join(USER_CLASSES)})")
        weights[name] = int(weight)
    return weights


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    _env[:] = [environment]
    o = environment.parsed_options
    if o is None:
        return
    weights = parse_mix(o.mix)
    for name, cls in USER_CLASSES.items():
        cls.weight = weights.get(name, cls.weight)
    chosen = [cls for cls in USER_CLASSES.values() if cls.weight > 0]
    environment.user_classes = chosen
    pool()  # read the faces before the clock starts (other crop sizes are resized from them)


@events.test_start.add_listener
def _start(**_: Any) -> None:
    tally.reset()


@events.request.add_listener
def _per_step(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    if name not in PUSH_ROWS or not _env or _env[0].parsed_options is None:
        return
    env = _env[0]
    counts = env.runner.user_classes_count if env.runner else {}
    pushing = sum(counts.get(c.__name__, 0) for c in PUSHING)
    tally.record_step(env.parsed_options.step_seconds, response_time, exception is not None, pushing)


@events.test_stop.add_listener
def _write(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is not None:
        tally.write(environment.parsed_options.acked_dir, pool().source)
