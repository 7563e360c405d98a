"""`affectline serve` as a child process on free loopback ports, for the load tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


PORT_ATTEMPTS = 3  # free ports can be taken by another process between choosing and binding


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports. The sockets stay bound until all are chosen: picked one at a
    time, the kernel may hand out the same port twice."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class ServeProcess:
    """A running `affectline serve` child, with what it takes to start it again on the same ports."""

    proc: subprocess.Popen
    grpc_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self, timeout_s: float = 60) -> int:
        """Graceful (SIGTERM): in-flight batches are finished and stored before the process exits."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> int:
        """A crash (SIGKILL): nothing is drained."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def restart(self, timeout_s: float = 90) -> None:
        """Starts the server again on the same ports and data dir (after stop() or kill())."""
        if self.proc.poll() is None:
            raise RuntimeError("restart() of a server that is still running; stop() or kill() it first")
        self.proc = _start(self.data_dir, self.log_path, self.extra_args, timeout_s, self.grpc_port,
                           self.http_port, self.env).proc


def start_serve(data_dir: Path, log_path: Path, extra_args: Sequence[str] = (), timeout_s: float = 90, *,
                ports: tuple[int, int] | None = None, env: Mapping[str, str] | None = None,
                demo_data: bool = False) -> ServeProcess:
    """Starts the server and returns once /healthz answers 200; raises RuntimeError otherwise.

    ports: (grpc, http) to reuse, e.g. to restart a server where its clients expect it; free
    ones otherwise (chosen again, up to PORT_ATTEMPTS times, when another process took one
    first). env: replaces the inherited environment. The log is appended to. demo_data: write
    the synthetic demo campaign on first start; off by default, because tools and tests count
    the frames in the store and the campaign would be counted with theirs.
    """
    env = {**(os.environ if env is None else env), "AFFECTLINE_DEMO_DATA": "1" if demo_data else "0"}
    for attempt in range(1, PORT_ATTEMPTS + 1):
        grpc_port, http_port = ports or free_ports(2)
        start = log_path.stat().st_size if log_path.exists() else 0
        try:
            return _start(data_dir, log_path, tuple(extra_args), timeout_s, grpc_port, http_port, env)
        except RuntimeError:
            with log_path.open("rb") as log:
                log.seek(start)
                taken = b"Address already in use" in log.read()
            if ports is not None or not taken or attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start(data_dir: Path, log_path: Path, extra_args: tuple[str, ...], timeout_s: float, grpc_port: int,
           http_port: int, env: Mapping[str, str] | None) -> ServeProcess:
    cmd = [sys.executable, "-m", "affectline", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
           "--http-port", str(http_port), "--data-dir", str(data_dir), *extra_args]
    with log_path.open("a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=None if env is None else dict(env))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return ServeProcess(proc, grpc_port, http_port, data_dir, log_path, extra_args, env)
        except OSError:
            time.sleep(0.25)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"serve was not healthy in {timeout_s:.0f} s; see {log_path}")
