"""What this Locust process saw, beyond Locust's own stats, written at test stop into --acked-dir:

- acked-<pid>.json: frames acknowledged as newly stored (compared with the database afterwards),
  sessions started/ended, the crop source, and the ids of the sessions with an acknowledged batch
  (`sessions_acked_ids`: the multi-replica run checks each against the proxy's log);
- steps-<pid>.json: crop-batch latencies (ms histogram), failures and pushing users per
  --step-seconds window, for the ramp's per-plateau table.

One file per process, so `--processes` workers need no messaging: `affectline loadtest` sums them.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

COUNTS: dict[str, int] = {"frames_acked": 0, "batches_acked": 0, "duplicate_acks": 0, "sessions_started": 0, "sessions_ended": 0}
STEPS: dict[int, dict[str, Any]] = {}
RECENT_SESSIONS: deque[str] = deque(maxlen=64)  # for the analysts' GetSessionTimeline
ACKED_SESSIONS: set[str] = set()  # sessions with at least one newly stored batch
T0 = [time.time()]


def reset() -> None:
    for k in COUNTS:
        COUNTS[k] = 0
    STEPS.clear()
    ACKED_SESSIONS.clear()
    T0[0] = time.time()


def record_step(step_seconds: float, latency_ms: float, failed: bool, pushing_users: int) -> None:
    now = time.time()
    s = STEPS.setdefault(int((now - T0[0]) // step_seconds), {"ms": {}, "failures": 0, "users": 0, "t0": now, "t1": now})
    if failed:
        s["failures"] += 1
    else:
        ms = round(latency_ms)
        s["ms"][ms] = s["ms"].get(ms, 0) + 1
    s["users"] = max(s["users"], pushing_users)
    s["t1"] = now


def write(folder: str, crop_source: str) -> None:
    if not folder:
        return
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (out / f"acked-{pid}.json").write_text(json.dumps({**COUNTS, "crop_source": crop_source,
                                                       "sessions_acked_ids": sorted(ACKED_SESSIONS)}))
    (out / f"steps-{pid}.json").write_text(json.dumps({str(k): v for k, v in STEPS.items()}))
