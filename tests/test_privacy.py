"""Privacy by construction: crops are zeroed after inference and never reach the database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from affectline.app import build_parts
from affectline.config import Settings
from affectline.crypto import KeyWrapper
from affectline.partner_client import ClientSession, start_request
from affectline.services.session_service import CropSpec, SessionService
from api_client import GrpcPartner, cycle, frames_of
from server_harness import running_server


def test_crops_handed_to_the_model_are_zeroed_after_inference(tmp_path, fer_faces):
    parts = build_parts(Settings(data_dir=tmp_path))
    seen: list[np.ndarray] = []

    async def recording_score(crops: np.ndarray, *, sequence: str | None = None) -> np.ndarray:
        seen.append(crops)  # the very array the service filled with decrypted pixels
        assert crops.any()
        return await parts.batcher.submit(crops, sequence=sequence)

    service = SessionService(
        store=parts.store, writer=parts.writer, score=recording_score,
        crop_spec=CropSpec(*parts.model.crop_size, 1, parts.model.key, 64), key_wrapper=KeyWrapper(b"k" * 32),
        metrics=parts.metrics, session_ttl=timedelta(hours=1),
    )

    async def scenario() -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        started = await service.start_session(start_request(key, video_id="v", viewer_id="x"))
        session = ClientSession.open(key, started)
        ack = await service.push_crops(session.push_request(frames_of(cycle(fer_faces["happy"], 10))))
        assert len(ack.results) == 10
        await parts.batcher.stop()

    asyncio.run(scenario())
    parts.writer.close()
    w, h = parts.model.crop_size
    assert len(seen) == 1 and seen[0].shape == (10, h, w)
    assert not seen[0].any(), "decrypted crops must be zeroed once scored"


def test_no_crop_pixels_are_stored_in_the_database(tmp_path, fer_faces):
    face = fer_faces["happy"][3]
    with running_server(Settings(data_dir=tmp_path)) as server:
        partner = GrpcPartner(server.grpc_target)
        session = partner.start()
        for b in range(5):
            partner.sessions.PushCrops(session.push_request(frames_of([face] * 10, start_ms=b * 333)))
        partner.sessions.EndSession(session.end_request())
        partner.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("affectline.db*"))
    assert len(stored) > 10_000  # the database holds the timeline...
    for row in range(0, len(face), 8):  # ...but not one pixel row of the crop that was sent 50 times
        assert face[row].tobytes() not in stored
