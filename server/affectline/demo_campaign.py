"""The demo campaign: synthetic viewers and a film to play them against, written by `serve` on first start.

With AFFECTLINE_DEMO_DATA=1 (the default), a `serve` start that finds no video VIDEO_ID writes
SESSIONS sessions with `affectline demo-data`'s generator (demo_data.py: variants a and b, b
happier in seconds 20-30, a surprise at 10.5 s and a smile at 42 s for everyone) and registers
a generated film of the same length, so /dashboard shows curves, key moments with frames and an
A/B comparison at once. Everything is marked synthetic: the video id, the generator's title
("Synthetic demo data ... not real viewers") and every viewer and session id ("synthetic-...").

It is a campaign of its own, not the viewer demo (/watch/demo, 12 s): sessions recorded there
stay real ones, and the generator's moments need its 60 s.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from affectline.demo_data import TITLE, DemoSpec, write_demo
from affectline.storage.timeline_store import TimelineStore
from affectline.videos import add_video, make_demo_video

log = logging.getLogger("affectline.demo")

VIDEO_ID = "synthetic-demo"  # `affectline demo-data`'s default video
SESSIONS = 100  # 50 per variant
SECONDS = 60
FPS = 10.0  # frames per second of the synthetic viewers (and of the film)


def ensure_demo_campaign(store: TimelineStore, data_dir: Path, sessions: int = SESSIONS, seed: int = 0) -> int:
    """Writes the campaign when the store has no video VIDEO_ID; returns the sessions written.
    A failure is logged and does not stop the server (like the viewer demo's)."""
    try:
        if store.get_video(VIDEO_ID) is not None:
            return 0
        started = time.perf_counter()
        film = data_dir / "media" / f"{VIDEO_ID}.webm"
        if not film.exists():
            make_demo_video(film, seconds=SECONDS, fps=int(FPS))
        write_demo(store, DemoSpec(sessions=sessions, seconds=SECONDS, fps=FPS, video_id=VIDEO_ID, seed=seed))
        add_video(store, film, TITLE, VIDEO_ID)  # last: a video with its film marks a finished campaign
        log.info("demo campaign: wrote %d synthetic sessions of video %s (variants a and b, %d s) for /dashboard "
                 "in %.1f s; AFFECTLINE_DEMO_DATA=0 turns this off", sessions, VIDEO_ID, SECONDS,
                 time.perf_counter() - started)
        return sessions
    except Exception:
        log.exception("could not write the demo campaign")
        return 0
