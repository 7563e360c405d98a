"""Browser-test helpers: the playwright-core bridge and a fake webcam file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np


REPO = Path(__file__).resolve().parent.parent
CLIENT = REPO / "client_js"
SAMPLES = CLIENT / "node_modules" / "@vladmandic" / "face-api" / "demo"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def missing_prerequisites() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian chromium not installed (bash scripts/system_deps.sh)"
    if not (CLIENT / "node_modules" / "playwright-core").is_dir() or not shutil.which("node"):
        return "client_js not installed (bash scripts/build_client.sh)"
    if not (REPO / "server/affectline/static/app/viewer.js").exists():
        return "viewer bundle not built (bash scripts/build_client.sh)"
    return None


class Browser:
    """Drives one headless Chromium through client_js/e2e/bridge.mjs."""

    def __init__(self, y4m: Path) -> None:
        self.proc = subprocess.Popen(["node", str(CLIENT / "e2e" / "bridge.mjs")], cwd=CLIENT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.call("launch", y4m=str(y4m), executable=CHROMIUM)

    def call(self, cmd: str, **kw):
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline() or '{"ok": false, "error": "bridge died"}')
        if not reply["ok"]:
            raise AssertionError(f"browser {cmd}: {reply['error']}")
        return reply["value"]

    def js(self, expr: str):
        return self.call("eval", js=expr)

    def wait(self, expr: str, timeout_s: float = 30):
        return self.call("wait", js=expr, timeout=int(timeout_s * 1000))

    def close(self) -> None:
        try:
            self.call("close")
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait(5)


def face_frame(photo: Path, box: tuple[int, int, int, int], size=(640, 480)) -> np.ndarray:
    """The photo cropped around one face (face about 40% of the frame height), BGR."""
    img = cv2.imread(str(photo))
    x, y, w, h = box
    cx, cy, side = x + w / 2, y + h / 2, h / 0.4
    x0, y0 = int(cx - side * size[0] / size[1] / 2), int(cy - side / 2)
    x0, y0 = max(0, x0), max(0, y0)
    crop = img[y0:y0 + int(side), x0:x0 + int(side * size[0] / size[1])]
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def write_y4m(path: Path, segments: list[tuple[np.ndarray, int]], fps: int = 30) -> None:
    """A YUV4MPEG2 420 file: each (BGR frame, count) repeated count times."""
    h, w = segments[0][0].shape[:2]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame, count in segments:
            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
            for _ in range(count):
                f.write(b"FRAME\n" + yuv)


def paced_capture_fps(detect_ms: float, crop_encrypt_ms: float, detect_every: int, target_fps: float = 30) -> float:
    """The frame rate the viewer page's capture loop allows, given its own per-frame costs.

    The loop (client_js/src/viewer.ts) detects on every k-th frame, crops and encrypts every
    frame, and sleeps out the rest of each 1/target_fps period: a detecting frame takes
    max(period, detect + crop), the k - 1 frames between take max(period, crop).
    """
    period = 1000 / target_fps
    per_k = max(period, detect_ms + crop_encrypt_ms) + (detect_every - 1) * max(period, crop_encrypt_ms)
    return 1000 * detect_every / per_k


