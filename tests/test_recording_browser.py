"""The server's crop of a frame vs the browser's: client_js/src/face.ts' own detect() and
Cropper.crop() run in headless Chromium on the same PNG frames (tests/recording_browser_support.py).

Tolerances (docs/recordings.md): eye positions within 0.5 px; with the same eye positions
(geometry alone) every crop pixel within 3 grey levels and mean |diff| <= 1; the full path
(each side's own detection, eyes up to ~0.1 px apart) mean |diff| <= 1, single pixels on sharp edges up to 12.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from affectline.recording.align import aligned_crop_bgr
from affectline.recording.blazeface import BlazeFace

from browser_support import SAMPLES, Browser, face_frame, missing_prerequisites, write_y4m

pytestmark = pytest.mark.skipif(missing_prerequisites() is not None, reason=str(missing_prerequisites()))


def frames() -> dict[str, np.ndarray]:
    img3 = cv2.imread(str(SAMPLES / "sample3.jpg"))
    mid = face_frame(SAMPLES / "sample3.jpg", (1015, 209, 315, 315))
    out = {"s3mid": mid,
           "s3rot": cv2.warpAffine(mid, cv2.getRotationMatrix2D((320, 240), 15, 1.0), (640, 480), borderMode=cv2.BORDER_REFLECT),
           "s3small": cv2.resize(img3, (640, int(640 * img3.shape[0] / img3.shape[1])))[:480]}
    for k in (1, 2, 4, 5, 6):
        out[f"s{k}"] = cv2.resize(cv2.imread(str(SAMPLES / f"sample{k}.jpg")), (640, 480), interpolation=cv2.INTER_AREA)
    return out


def test_server_crop_matches_the_browser_crop(tmp_path):
    from recording_browser_support import PageServer, build_page

    build_page(tmp_path)
    det = BlazeFace()
    fs = frames()
    for k, f in fs.items():
        cv2.imwrite(str(tmp_path / f"{k}.png"), f)
    write_y4m(tmp_path / "cam.y4m", [(fs["s3mid"], 2)])
    srv = PageServer(tmp_path)
    browser = Browser(tmp_path / "cam.y4m")
    try:
        browser.call("goto", url=f"{srv.base}/index.html")
        browser.wait("window.facecheck !== undefined", 30)
        browser.js("window.facecheck.init()")
        browser.wait("window.facecheck.ready", 60)
        worst = {"eye_px": 0.0, "geom_max": 0, "geom_mean": 0.0, "full_max": 0, "full_mean": 0.0}
        for k, f in fs.items():
            face = det.detect_bgr(f)
            assert face is not None, k
            eyes = [*face.eye_l, *face.eye_r]
            r = browser.js(f"window.facecheck.run('/{k}.png', 48, {json.dumps(eyes)})")
            assert r["face"] is not None, k
            js_eyes = [*r["face"]["eyeL"], *r["face"]["eyeR"]]
            worst["eye_px"] = max(worst["eye_px"], max(abs(a - b) for a, b in zip(eyes, js_eyes)))
            geom = np.abs(aligned_crop_bgr(f, face.eye_l, face.eye_r, 48).astype(int)
                          - np.array(r["given"]).reshape(48, 48))
            full = np.abs(aligned_crop_bgr(f, face.eye_l, face.eye_r, 48).astype(int)
                          - np.array(r["own"]).reshape(48, 48))
            worst["geom_max"] = max(worst["geom_max"], int(geom.max()))
            worst["geom_mean"] = max(worst["geom_mean"], float(geom.mean()))
            worst["full_max"] = max(worst["full_max"], int(full.max()))
            worst["full_mean"] = max(worst["full_mean"], float(full.mean()))
        print("server vs browser, worst over", len(fs), "frames:", worst)
        assert worst["eye_px"] <= 0.5, worst
        assert worst["geom_max"] <= 3 and worst["geom_mean"] <= 1.0, worst
        assert worst["full_max"] <= 12 and worst["full_mean"] <= 1.0, worst
    finally:
        browser.close()
        srv.close()
