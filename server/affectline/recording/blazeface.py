"""The browser's face detector on the server: BlazeFace (MediaPipe's back-camera model, the
weights npm `@vladmandic/human` 3.3.6 ships) converted to ONNX by convert_blazeface.py and run
with onnxruntime, with human's own pre- and post-processing (human/src/face/blazeface.ts):

- the whole frame resized to 256x256 with TF.js' resizeBilinear (alignCorners false,
  halfPixelCenters false: source = destination * in/out), RGB scaled to [-1, 1], no padding
  to square (human's `detector.square` is off);
- 896 anchors (16x16x2 at stride 16, 8x8x6 at stride 32); box = anchor + offsets, keypoints
  = (anchor + offset) * frame size / 256; sigmoid score; greedy NMS (IoU 0.1, at most 5 faces,
  score > 0.5) as in client_js/src/face.ts' detector config;
- of the faces found the largest box wins; keypoints 0 and 1 are the eyes (ordered by x into
  image-left / image-right), 2 the nose tip, which gives face.ts' yaw estimate.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MODEL_PATH = Path(__file__).with_name("blazeface-back.onnx")
INPUT_SIZE = 256
MIN_CONFIDENCE = 0.5
IOU_THRESHOLD = 0.1
MAX_DETECTED = 5
ENLARGE = 1.4  # human's detector.scale


@dataclass(frozen=True, slots=True)
class Face:
    eye_l: tuple[float, float]  # image-left eye, source pixels
    eye_r: tuple[float, float]
    nose: tuple[float, float]
    box: tuple[float, float, float, float]  # x, y, w, h (human's enlarged, squared, clamped box)
    score: float
    yaw_deg: float
    box_size: float  # box side / shorter frame side, at most 1


def _anchors(size: int = INPUT_SIZE) -> np.ndarray:
    out = []
    for stride, per in ((size // 16, 2), (size // 8, 6)):
        grid = (size + stride - 1) // stride
        for gy in range(grid):
            for gx in range(grid):
                out.extend([(stride * (gx + 0.5), stride * (gy + 0.5))] * per)
    return np.asarray(out, dtype=np.float32)


ANCHORS = _anchors()


def _tfjs_resize_maps(w: int, h: int, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps reproducing tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=false)."""
    xs = np.arange(size, dtype=np.float32) * (w / size)
    ys = np.arange(size, dtype=np.float32) * (h / size)
    mx, my = np.meshgrid(xs, ys)
    return cv2.convertMaps(mx, my, cv2.CV_16SC2)


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    """Greedy NMS like tf.image.nonMaxSuppression (score-sorted, IoU > threshold suppressed)."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > MIN_CONFIDENCE]
    keep: list[int] = []
    for i in order:
        if len(keep) >= MAX_DETECTED:
            break
        b = boxes[i]
        ok = True
        for j in keep:
            c = boxes[j]
            iw = max(0.0, min(b[2], c[2]) - max(b[0], c[0]))
            ih = max(0.0, min(b[3], c[3]) - max(b[1], c[1]))
            inter = iw * ih
            union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
            if union > 0 and inter / union > IOU_THRESHOLD:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


class BlazeFace:
    """Thread-safe; one onnxruntime session (intra-op threads as given)."""

    def __init__(self, model_path: Path = MODEL_PATH, *, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _input(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        maps = self._maps.get((w, h))
        if maps is None:
            with self._lock:
                maps = self._maps.setdefault((w, h), _tfjs_resize_maps(w, h))
        small = cv2.remap(rgb, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x = small.astype(np.float32)
        x *= 1.0 / 127.5
        x -= 1.0
        return x[None]

    def detect_rgb(self, rgb: np.ndarray) -> Face | None:
        """Largest face in an RGB uint8 [H, W, 3] frame, or None."""
        h, w = rgb.shape[:2]
        raw = self._session.run(None, {"input": self._input(rgb)})[0][0]
        return _decode(raw, w, h)

    def detect_bgr(self, bgr: np.ndarray) -> Face | None:
        return self.detect_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _decode(raw: np.ndarray, w: int, h: int) -> Face | None:
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 0].astype(np.float64), -80, 80)))
    if not (scores > MIN_CONFIDENCE).any():
        return None
    centers = raw[:, 1:3] + ANCHORS
    half = raw[:, 3:5] / 2
    boxes = np.concatenate([centers - half, centers + half], axis=1)  # 256-space x0, y0, x1, y1
    keep = _nms(boxes, scores)
    if not keep:
        return None
    fx, fy = w / INPUT_SIZE, h / INPUT_SIZE
    faces = []
    for i in keep:
        x0, y0, x1, y1 = boxes[i] * (fx, fy, fx, fy)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = max((x1 - x0) * ENLARGE, (y1 - y0) * ENLARGE)  # enlargeBox then squarifyBox
        sx0, sy0 = round(cx - side / 2), round(cy - side / 2)
        sx1, sy1 = round(cx + side / 2), round(cy + side / 2)
        faces.append((float((sx1 - sx0) * (sy1 - sy0)), i, (sx0, sy0, sx1, sy1)))
    _, i, (sx0, sy0, sx1, sy1) = max(faces, key=lambda f: f[0])  # face.ts: the largest box
    pts = (raw[i, 5:17].reshape(6, 2) + ANCHORS[i]) * (fx, fy)
    e0, e1, nose = (tuple(map(float, p)) for p in pts[:3])
    eye_l, eye_r = (e0, e1) if e0[0] <= e1[0] else (e1, e0)
    d = math.hypot(eye_r[0] - eye_l[0], eye_r[1] - eye_l[1]) or 1.0
    ux, uy = (eye_r[0] - eye_l[0]) / d, (eye_r[1] - eye_l[1]) / d
    off = (nose[0] - (eye_l[0] + eye_r[0]) / 2) * ux + (nose[1] - (eye_l[1] + eye_r[1]) / 2) * uy
    yaw = math.degrees(math.atan2(off, 0.6 * d))
    bx0, by0 = max(0, sx0), max(0, sy0)
    bw, bh = min(w, sx1) - bx0, min(h, sy1) - by0
    short = min(w, h) or 1
    return Face(eye_l, eye_r, nose, (float(bx0), float(by0), float(bw), float(bh)), float(scores[i]), yaw,
                min(1.0, max(bw, bh) / short))
