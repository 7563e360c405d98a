"""What the multi-replica load test reads besides Locust: each replica's /metrics, the frames in
the shared database over time, the host's CPU, and which replica the proxy sent each session to."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

from affectline.commands.haproxy import Route

# Calls that carry a started session's batches or end it: each must reach the session's one replica.
SESSION_CALLS = ("PushCrops", "StreamCrops", "EndSession")
BATCH_METHODS = ("PushCrops", "StreamCrops")


@dataclass(frozen=True)
class ReplicaCounts:
    """One replica's own counters (its /metrics) at the end of a run."""

    frames: int  # affectline_frames_total: frames it stored
    sessions: int  # affectline_sessions_served_total: sessions it stored batches for
    batch_calls: int  # PushCrops calls and StreamCrops streams it handled
    rpc_errors: int  # affectline_rpc_errors_total


def scrape(base_url: str) -> ReplicaCounts:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    frames = sessions = calls = errors = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "affectline_frames_total":
                frames += s.value
            elif s.name == "affectline_sessions_served_total":
                sessions += s.value
            elif s.name == "affectline_rpc_errors_total":
                errors += s.value
            elif s.name == "affectline_rpc_duration_seconds_count" and s.labels.get("method") in BATCH_METHODS:
                calls += s.value
    return ReplicaCounts(int(frames), int(sessions), int(calls), int(errors))


@dataclass(frozen=True)
class Affinity:
    """Per session, the replicas the proxy's log says answered its batch and end calls."""

    sessions: int  # sessions checked (those with an acknowledged batch)
    logged: int  # of them, sessions the proxy logged a call for
    on_several: dict[str, list[str]]  # session id -> replicas, for sessions answered by more than one
    unpinned_calls: int  # session calls that reached the proxy without x-affectline-session

    @property
    def ok(self) -> bool:
        return self.sessions > 0 and self.logged == self.sessions and not self.on_several and not self.unpinned_calls


def affinity(routes: Iterable[Route], session_ids: set[str]) -> Affinity:
    homes: dict[str, list[str]] = defaultdict(list)
    unpinned = 0
    for r in routes:
        if r.path.rsplit("/", 1)[-1] not in SESSION_CALLS:
            continue
        if not r.session_id:
            unpinned += 1
        elif r.session_id in session_ids and 200 <= r.status < 300 and r.server not in homes[r.session_id]:
            homes[r.session_id].append(r.server)
    return Affinity(len(session_ids), len(homes), {sid: s for sid, s in homes.items() if len(s) > 1}, unpinned)


class RunSampler:
    """Every `every_s`: the frames stored in the database (count_frames(), so stored frames/s come
    from the database, not the clients) and the host's busy CPU (/proc/stat), on a thread."""

    def __init__(self, db_url: str, every_s: float = 2.0) -> None:
        from affectline.storage.timeline_store import open_store

        self._store_cm = open_store(db_url)
        self._store = self._store_cm.__enter__()
        self.samples: list[tuple[float, int, float]] = []  # (time, frames stored, host busy CPU seconds)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.samples.append((time.time(), self._store.count_frames(), host_busy_seconds()))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._every):
                return

    def stop(self) -> None:
        """Stops sampling after one last sample."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self._store_cm.__exit__(None, None, None)

    def _window(self, t0: float, t1: float) -> tuple[tuple[float, int, float], tuple[float, int, float]] | None:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        return (inside[0], inside[-1]) if len(inside) >= 2 and inside[-1][0] > inside[0][0] else None

    def frames_per_s(self, t0: float, t1: float) -> float | None:
        w = self._window(t0, t1)
        return None if w is None else (w[1][1] - w[0][1]) / (w[1][0] - w[0][0])

    def host_cores(self, t0: float, t1: float) -> float | None:
        """Busy CPU of the whole host (every process, not only ours), in cores."""
        w = self._window(t0, t1)
        return None if w is None else (w[1][2] - w[0][2]) / (w[1][0] - w[0][0])


def host_busy_seconds() -> float:
    """CPU seconds the host spent not idle (all cores), from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
