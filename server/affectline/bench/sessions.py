"""Simulated viewer sessions: real handshake, real encryption of real face crops, native gRPC.

Each client process runs many sessions on one asyncio loop. A session sends one
PushCrops of `frames_per_batch` frames at a time (as the browser does), either paced at
`fps` (a viewer watching) or back to back (saturation).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline.partner_client import ClientSession, Frame, follow_slot, start_request
from affectline.v1 import session_pb2_grpc


@dataclass(frozen=True)
class LoadSpec:
    target: str
    sessions: int
    duration_s: float
    fps: float = 30.0
    frames_per_batch: int = 10
    paced: bool = True
    video_id: str = "bench"
    transport: str = "unary"  # "unary": one PushCrops call per batch (the browser's way); "stream": StreamCrops
    # "server": paced sessions announce their batch size and send in the slots the server's
    # answers name, as the browser client does; "random": each keeps its own random phase.
    pacing: str = "server"
    # Batches sent in the first warmup_s of a step (all sessions starting at once: handshakes,
    # first batches) are counted as frames but kept out of the steady-state latency and rate.
    warmup_s: float = 2.0


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)  # steady state: batches sent after the warm-up
    frames_sent: int = 0
    frames_acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    warmup_latencies_s: list[float] = field(default_factory=list)
    steady_frames: int = 0  # acked frames of batches sent after the warm-up
    steady_s: float = 0.0  # from the end of the warm-up to the end of sending

    def merge(self, other: "LoadResult") -> None:
        self.latencies_s += other.latencies_s
        self.frames_sent += other.frames_sent
        self.frames_acked += other.frames_acked
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.warmup_latencies_s += other.warmup_latencies_s
        self.steady_frames += other.steady_frames
        self.steady_s = max(self.steady_s, other.steady_s)

    @property
    def steady_fps(self) -> float:
        """Acknowledged frames per second after the warm-up."""
        return self.steady_frames / self.steady_s if self.steady_s > 0 else 0.0


def session_phase(index: int) -> float:
    """Where in its batch period (0..1) a session sends: random, as independent viewers are, and
    seeded by the session's index so runs repeat. (Until 2026-11-23 it was index/97, which packed
    any step of fewer than 97 sessions into the start of each period: bursts several times the
    step's mean rate, and p99s that said more about the bench than the server.)"""
    return random.Random(index).random()


async def _one_session(stub, spec: LoadSpec, faces: np.ndarray, index: int, steady_at: float, stop_at: float,
                       result: LoadResult) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    follow = spec.paced and spec.pacing == "server"
    started = await stub.StartSession(start_request(
        key, video_id=spec.video_id, viewer_id=f"bench-{index}", frames_per_batch=spec.frames_per_batch if follow else 0))
    session = ClientSession.open(key, started)
    batch_period = spec.frames_per_batch / spec.fps
    if follow and started.HasField("first_batch_in_ms"):
        next_at = time.perf_counter() + started.first_batch_in_ms / 1000
    else:
        next_at = time.perf_counter() + session_phase(index) * batch_period
    frame_no = 0
    stream = stub.StreamCrops() if spec.transport == "stream" else None
    while True:
        if spec.paced:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += batch_period
        if time.perf_counter() >= stop_at:
            break
        frames = [
            Frame(video_time_ms=int((frame_no + i) * 1000 / spec.fps), crop=faces[(index + frame_no + i) % len(faces)])
            for i in range(spec.frames_per_batch)
        ]
        request = session.push_request(frames)
        frame_no += spec.frames_per_batch
        result.frames_sent += len(frames)
        t0 = time.perf_counter()
        try:
            if stream is None:
                ack = await stub.PushCrops(request)
            else:
                await stream.write(request)
                ack = await stream.read()
        except grpc.aio.AioRpcError as exc:
            result.errors[exc.code().name] = result.errors.get(exc.code().name, 0) + 1
            if stream is not None:  # a failed stream is over: continue on a new one
                stream = stub.StreamCrops()
            continue
        if follow and ack.HasField("next_batch_in_ms"):
            next_at = follow_slot(next_at, time.perf_counter() + ack.next_batch_in_ms / 1000, batch_period)
        if t0 >= steady_at:
            result.latencies_s.append(time.perf_counter() - t0)
            result.steady_frames += len(ack.results)
        else:
            result.warmup_latencies_s.append(time.perf_counter() - t0)
        result.frames_acked += len(ack.results)
    if stream is not None:
        await stream.done_writing()
    await stub.EndSession(session.end_request())


async def _run(spec: LoadSpec, faces: np.ndarray, first_index: int) -> LoadResult:
    result = LoadResult()
    async with grpc.aio.insecure_channel(spec.target) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        t0 = time.perf_counter()
        stop_at = t0 + spec.duration_s
        steady_at = t0 + min(spec.warmup_s, spec.duration_s / 2)
        await asyncio.gather(*(_one_session(stub, spec, faces, first_index + i, steady_at, stop_at, result)
                               for i in range(spec.sessions)))
        result.elapsed_s = time.perf_counter() - t0
        result.steady_s = stop_at - steady_at
    return result


def run_client_process(spec: LoadSpec, faces: np.ndarray, first_index: int, out) -> None:
    """Entry point of one client process: puts its LoadResult on the queue `out`."""
    gc.collect()
    gc.freeze()  # the client is the measuring instrument: no long collections over its startup objects
    out.put(asyncio.run(_run(spec, faces, first_index)))
