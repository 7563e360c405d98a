#!/usr/bin/env python
"""A partner system's session over native gRPC: handshake, encrypted crops, timeline.

Starts a session, pushes N frames of real faces (10 per encrypted batch, 30 fps of
video time), ends the session and reads the timeline back.

Faces come from face images you pass (--images DIR: any photos; faces are found and
cropped) or, by default, from FER2013 PrivateTest in ../shared (research data, read in place).

Reading the timeline needs an API key with scope analytics:read (the session itself needs
none): --api-key, else $AFFECTLINE_API_KEY, else the admin key that `affectline serve` wrote
to ./data/admin-key on its first start.

    python examples/partner_demo.py --target 127.0.0.1:50051 --frames 300
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline.partner_client import ClientSession, Frame, start_request
from affectline.v1 import analytics_pb2, analytics_pb2_grpc, common_pb2, session_pb2_grpc

DEFAULT_NPZ = Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013.npz"
FIRST_START_KEY = Path("data/admin-key")  # what `affectline serve` writes on its first start


def api_key(given: str | None) -> str:
    if given:
        return given
    if FIRST_START_KEY.is_file():
        return FIRST_START_KEY.read_text().strip()
    sys.exit("reading the timeline needs an API key: pass --api-key or set AFFECTLINE_API_KEY "
             "(`affectline keys create --name demo --scope analytics:read` makes one)")


def load_faces(images: Path | None, npz: Path, size: int) -> np.ndarray:
    from affectline.face_crop import crop_image_file, resize

    if images is not None:
        crops = [c.crop for p in sorted(images.rglob("*")) if p.is_file()
                 for c in [crop_image_file(p, (size, size))] if c.face_found]
        if not crops:
            sys.exit(f"no faces found in {images}")
        return np.stack(crops)
    if not npz.exists():
        sys.exit(f"{npz} not found: pass --images DIR with face photos")
    d = np.load(npz)
    happy = (d["usage"] == 2) & (d["label"] == 3) & (d["ferplus_votes"][:, 1] >= 8)
    return np.stack([resize(f, (size, size)) for f in d["pixels"][happy][:100]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051", help="gRPC address (default: 127.0.0.1:50051)")
    ap.add_argument("--frames", type=int, default=300, help="frames to send (default: 300)")
    ap.add_argument("--video-id", default="demo-trailer")
    ap.add_argument("--images", type=Path, help="folder of face photos to crop and send")
    ap.add_argument("--fer-npz", type=Path, default=DEFAULT_NPZ, help="FER2013 npz (default: ../shared)")
    ap.add_argument("--api-key", default=os.environ.get("AFFECTLINE_API_KEY"),
                    help=f"an analytics:read API key (default: $AFFECTLINE_API_KEY, else {FIRST_START_KEY})")
    args = ap.parse_args()
    auth = (("authorization", f"Bearer {api_key(args.api_key)}"),)  # gRPC metadata: only AnalyticsService needs it

    channel = grpc.insecure_channel(args.target)
    sessions = session_pb2_grpc.SessionServiceStub(channel)
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)

    key = ec.generate_private_key(ec.SECP256R1())  # the client's half of the ECDH handshake
    started = sessions.StartSession(start_request(key, video_id=args.video_id, viewer_id="partner-demo-viewer"))
    session = ClientSession.open(key, started)
    faces = load_faces(args.images, args.fer_npz, started.crop_spec.width)
    print(f"session {session.session_id}: crops {started.crop_spec.width}x{started.crop_spec.height}, "
          f"model {started.crop_spec.model}, {len(faces)} distinct faces")

    sent = 0
    while sent < args.frames:
        n = min(10, args.frames - sent)
        frames = [Frame(video_time_ms=(sent + i) * 1000 // 30, crop=faces[(sent + i) % len(faces)]) for i in range(n)]
        ack = sessions.PushCrops(session.push_request(frames))
        sent += n
    print(f"pushed {sent} frames in {ack.seq + 1} encrypted batches; server accepted {ack.frames_accepted_total}")

    summary = sessions.EndSession(session.end_request()).summary
    timeline = analytics.GetSessionTimeline(analytics_pb2.GetSessionTimelineRequest(session_id=session.session_id),
                                            metadata=auth)
    tops = Counter(common_pb2.Emotion.Name(f.top_emotion) for f in timeline.frames)
    print(f"timeline: {len(timeline.frames)} frames, {timeline.frames[0].video_time_ms}..{timeline.frames[-1].video_time_ms} ms; "
          f"dominant {common_pb2.Emotion.Name(summary.dominant_emotion)}; top emotions {dict(tops)}")
    channel.close()
    return 0 if len(timeline.frames) == sent else 1


if __name__ == "__main__":
    sys.exit(main())
