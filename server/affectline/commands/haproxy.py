"""HAProxy in front of N local `affectline serve` replicas, for the multi-replica load test.

The configuration is the shipped deploy/haproxy/haproxy.cfg with its `server r1` line of each
backend repeated for r1..rN (addresses from AFFECTLINE_R{n}_HOST/_HTTP/_GRPC, as the file
documents) and a stats socket added to `global`, from which the servers' state is read. The
per-request log the file defines ("affinity <frontend> <backend> <server> <status> <session>
<path>") says which replica answered which session's calls.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from affectline.serve_process import ServeProcess, free_ports

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG = REPO_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
BACKENDS = ("replicas_http", "replicas_grpc")
_SERVER = re.compile(r"^(\s*)server r(\d+) (.*)$")
_ROUTE = re.compile(r"affinity (\S+) (\S+) (\S+) (-?\d+) (\S*) (\S+)")


def render_config(template: str, replicas: int, stats_socket: Path) -> str:
    """`template` (the shipped config) with servers r1..r`replicas` in every backend and a stats socket."""
    out: list[str] = []
    for line in template.splitlines():
        m = _SERVER.match(line)
        if m is None:
            out.append(line)
            if line.strip() == "global":
                out.append(f"    stats socket {stats_socket} mode 600 level user")
        elif m.group(2) == "1":  # the template line: repeated for each replica, the others dropped
            out += [f"{m.group(1)}server r{n} {m.group(3).replace('_R1_', f'_R{n}_')}" for n in range(1, replicas + 1)]
    servers = sum(1 for line in out if _SERVER.match(line))
    if servers != replicas * len(BACKENDS):
        raise RuntimeError(f"{CONFIG}: expected a `server r1` line in each of {', '.join(BACKENDS)}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Route:
    """One request as HAProxy logged it."""

    frontend: str
    server: str  # r1..rN, or <NOSRV>
    status: int
    session_id: str  # the x-affectline-session header ("" when the call had none)
    path: str


@dataclass(frozen=True)
class ServerState:
    status: str  # UP, DOWN, ...
    went_down: int  # UP -> DOWN transitions (chkdown)


class HaProxy:
    """`haproxy -db` on free loopback ports, started by the constructor; ready once every server of
    both backends is UP (until then the hash ring would still change under the sessions)."""

    def __init__(self, replicas: Sequence[ServeProcess], workdir: Path, log_path: Path, timeout_s: float = 30) -> None:
        self.http_port, self.grpc_port = free_ports(2)
        self.replicas = len(replicas)
        self.socket_path = workdir / "haproxy.sock"
        config = workdir / "haproxy.cfg"
        config.write_text(render_config(CONFIG.read_text(), len(replicas), self.socket_path))
        env = {**os.environ, "AFFECTLINE_PROXY_BIND": "127.0.0.1", "AFFECTLINE_PROXY_HTTP": str(self.http_port),
               "AFFECTLINE_PROXY_GRPC": str(self.grpc_port)}
        for n, r in enumerate(replicas, 1):
            env.update({f"AFFECTLINE_R{n}_HOST": "127.0.0.1", f"AFFECTLINE_R{n}_HTTP": str(r.http_port),
                        f"AFFECTLINE_R{n}_GRPC": str(r.grpc_port)})
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                states = self.states()
                if len(states) == self.replicas * len(BACKENDS) and all(s.status == "UP" for s in states.values()):
                    return
            except OSError:
                pass  # the socket is not there yet
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"haproxy: not every replica was UP within {timeout_s:.0f} s; see {log_path}")

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        """The HTTP frontend's URL."""
        return f"http://127.0.0.1:{self.http_port}"

    def states(self) -> dict[tuple[str, str], ServerState]:
        """(backend, server) -> state, from the stats socket's `show stat`."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return {(row["pxname"], row["svname"]): ServerState(row["status"], int(row["chkdown"] or 0))
                for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] in BACKENDS and row["svname"] not in ("BACKEND", "FRONTEND")}

    def routes(self) -> list[Route]:
        """Every request logged so far (also after stop())."""
        if not self._log.closed:
            self._log.flush()
        return [Route(m.group(1), m.group(3), int(m.group(4)), "" if m.group(5) == "-" else m.group(5), m.group(6))
                for m in map(_ROUTE.match, self.log_path.read_text().splitlines()) if m]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
