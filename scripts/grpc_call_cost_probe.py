"""Server CPU per unary call of a bare grpc.aio server: the floor under PushCrops' per-call cost.

    .venv/bin/python scripts/grpc_call_cost_probe.py [--sessions 146] [--seconds 8] [--bytes 41000]
        [--server-option grpc.http2.bdp_probe=0 ...]

A server whose PushCrops handler returns a prebuilt ack at once (no decryption, model or
database) runs in one process; client processes send PushCrops-sized requests from sessions
paced at 3 calls/s each (10-frame batches at 30 fps), like the benchmark. Prints the server
process's CPU time (user + system, from /proc) per call. docs/performance.md compares it with
the event loop's cost per frame in the real server.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import time

import grpc

from affectline.v1 import session_pb2, session_pb2_grpc

ACK = session_pb2.PushCropsResponse(seq=1, frames_accepted_total=10)


class EmptySessionService(session_pb2_grpc.SessionServiceServicer):
    async def PushCrops(self, request: session_pb2.PushCropsRequest, context: object) -> session_pb2.PushCropsResponse:  # noqa: N802
        return ACK


def serve(port: int, options: list[tuple[str, int | str]], ready: mp.synchronize.Event) -> None:
    async def run() -> None:
        server = grpc.aio.server(options=options)
        session_pb2_grpc.add_SessionServiceServicer_to_server(EmptySessionService(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(run())


def clients(port: int, sessions: int, seconds: float, payload: int, seed: int, out: mp.Queue) -> None:
    async def run() -> None:
        stub = session_pb2_grpc.SessionServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        request = session_pb2.PushCropsRequest(session_id="s" * 36, session_token="t" * 43, seq=1,
                                               nonce=b"n" * 12, ciphertext=os.urandom(payload))
        rng = random.Random(seed)
        calls = 0

        async def session(phase: float) -> None:
            nonlocal calls
            period = 1 / 3
            await asyncio.sleep(phase * period)
            due, end = time.perf_counter(), time.perf_counter() + seconds
            while time.perf_counter() < end:
                await stub.PushCrops(request)
                calls += 1
                due += period
                await asyncio.sleep(max(0.0, due - time.perf_counter()))

        await asyncio.gather(*(session(rng.random()) for _ in range(sessions)))
        out.put(calls)

    asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=146, help="paced sessions, 3 calls/s each (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=8.0, help="(default: %(default)s)")
    ap.add_argument("--bytes", type=int, default=41000,
                    help="ciphertext bytes per call; 10 encrypted 64x64 crops are ~41 KB (default: %(default)s)")
    ap.add_argument("--clients", type=int, default=2, help="client processes (default: %(default)s)")
    ap.add_argument("--port", type=int, default=50999, help="(default: %(default)s)")
    ap.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a grpc.aio.server channel option (integers are passed as int); repeatable")
    args = ap.parse_args()
    options = [_option(o) for o in args.server_option]
    ready = mp.Event()
    server = mp.Process(target=serve, args=(args.port, options, ready), daemon=True)
    server.start()
    ready.wait(30)
    results: mp.Queue = mp.Queue()
    share = [args.sessions // args.clients + (i < args.sessions % args.clients) for i in range(args.clients)]
    procs = [mp.Process(target=clients, args=(args.port, n, args.seconds, args.bytes, i, results))
             for i, n in enumerate(share)]
    before = cpu_seconds(server.pid)  # type: ignore[arg-type]
    for p in procs:
        p.start()
    calls = sum(results.get() for _ in procs)
    after = cpu_seconds(server.pid)  # type: ignore[arg-type]
    client_cpu = sum(cpu_seconds(p.pid) for p in procs)  # type: ignore[arg-type]
    for p in procs:
        p.join()
    server.kill()
    n = max(calls, 1)
    print(f"{args.sessions} sessions, {calls} calls of {args.bytes} bytes in {args.seconds:.0f} s"
          f"{' options ' + str(options) if options else ''}: "
          f"bare grpc.aio server CPU {1e6 * (after - before) / n:.0f} us per call "
          f"({1e5 * (after - before) / n:.0f} us per frame at 10 frames per call); "
          f"client processes {1e6 * client_cpu / n:.0f} us per call (start-up included)")


def _option(text: str) -> tuple[str, int | str]:
    key, _, value = text.partition("=")
    return (key, int(value)) if value.lstrip("-").isdigit() else (key, value)


if __name__ == "__main__":
    main()
