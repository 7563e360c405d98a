"""Send pacing: slots spread evenly over the batch period, stable under joins and leaves."""

from __future__ import annotations

import pytest

from affectline.partner_client import follow_slot
from affectline.services.send_pacer import SendPacer

P = 1 / 3  # 10 frames at 30 fps


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def slots(pacer: SendPacer, clock: Clock, ids: list[str]) -> list[float]:
    """Each session's slot as a phase in [0, P) of the clock."""
    return [round((clock.t + pacer.next_send_in(s)) % P, 9) for s in ids]


def gaps(phases: list[float]) -> list[float]:
    s = sorted(phases)
    return [round((s[(i + 1) % len(s)] - s[i]) % P, 9) for i in range(len(s))]


def test_the_first_session_sends_at_once_and_the_next_ones_fill_the_period_evenly():
    clock = Clock()
    pacer = SendPacer(clock=clock)
    assert pacer.join("a", P) == 0.0
    assert pacer.join("b", P) == pytest.approx(P / 2)
    ids = ["a", "b"] + [f"s{i}" for i in range(10)]
    for s in ids[2:]:
        clock.t += 0.0137  # joins at arbitrary moments
        pacer.join(s, P)
    assert gaps(slots(pacer, clock, ids)) == pytest.approx([P / 12] * 12)


def test_the_hint_is_the_time_left_to_the_slot_in_the_current_period():
    clock = Clock()
    pacer = SendPacer(clock=clock)
    pacer.join("a", P)
    pacer.join("b", P)  # slot at 1000 + P/2 (+ k P)
    clock.t += P / 2 + 0.040  # b sent at its slot; its ack leaves 40 ms later
    assert pacer.next_send_in("b") == pytest.approx(P - 0.040)
    assert pacer.next_send_in("a") == pytest.approx(P / 2 - 0.040)


def test_a_leaving_session_moves_the_others_by_less_than_one_slot():
    clock = Clock()
    pacer = SendPacer(clock=clock)
    ids = [f"s{i}" for i in range(8)]
    for s in ids:
        pacer.join(s, P)
    before = dict(zip(ids, slots(pacer, clock, ids)))
    for gone in ("s0", "s5"):  # rank 0 (the anchor) and one in the middle
        pacer.leave(gone)
        ids.remove(gone)
        after = dict(zip(ids, slots(pacer, clock, ids)))
        assert gaps(list(after.values())) == pytest.approx([P / len(ids)] * len(ids))
        for s in ids:
            moved = abs((after[s] - before[s] + P / 2) % P - P / 2)
            assert moved <= P / (len(ids) + 1) + 1e-9
        before = after
    assert pacer.paced_sessions() == 6


def test_sessions_with_other_periods_get_their_own_ring():
    clock = Clock()
    pacer = SendPacer(clock=clock)
    assert pacer.join("30fps", P) == 0.0
    assert pacer.join("15fps", 2 * P) == 0.0  # alone in its ring
    assert pacer.join("30fps-b", P) == pytest.approx(P / 2)


def test_an_idle_session_gives_up_its_slot_and_gets_one_back_when_it_sends_again():
    clock = Clock()
    pacer = SendPacer(idle_s=10, clock=clock)
    for s in ("a", "b", "c"):
        pacer.join(s, P)
    clock.t += 5
    pacer.next_send_in("a")
    pacer.next_send_in("b")  # c pauses
    clock.t += 6
    pacer.join("d", P)  # joins expire idle sessions: c's slot goes to the others
    assert pacer.paced_sessions() == 3
    assert gaps(slots(pacer, clock, ["a", "b", "d"])) == pytest.approx([P / 3] * 3)
    assert pacer.next_send_in("c") is not None  # back, at the end of the ring
    assert pacer.paced_sessions() == 4
    assert gaps(slots(pacer, clock, ["a", "b", "d", "c"])) == pytest.approx([P / 4] * 4)


def test_unpaced_sessions_get_no_hint():
    pacer = SendPacer(clock=Clock())
    assert pacer.next_send_in("never-joined") is None
    pacer.join("a", P)
    pacer.leave("a")
    pacer.leave("a")  # twice is harmless
    assert pacer.next_send_in("a") is None
    assert SendPacer.period_for(30.0, 0) is None  # batch size not announced
    assert SendPacer.period_for(30.0, 10) == pytest.approx(P)
    assert SendPacer.period_for(1.0, 64) is None  # a 64 s period is no live stream


def test_the_bench_client_follows_a_slot_by_at_most_a_tenth_of_the_period_per_batch():
    assert follow_slot(10.0, 10.01, P) == pytest.approx(10.01)  # small corrections at once
    assert follow_slot(10.0, 10.2, P) == pytest.approx(10.0 - P / 10)  # 200 ms late = 133 ms early: move earlier
    assert follow_slot(10.0, 10.1, P) == pytest.approx(10.0 + P / 10)
    assert follow_slot(10.0, 10.0 + 5 * P, P) == pytest.approx(10.0)  # same phase, later period


# --- through the real server -----------------------------------------------------------------


def _start(partner, viewer: str, frames_per_batch: int):
    from cryptography.hazmat.primitives.asymmetric import ec

    from affectline.partner_client import ClientSession, start_request

    key = ec.generate_private_key(ec.SECP256R1())
    response = partner.sessions.StartSession(start_request(
        key, video_id="trailer-1", viewer_id=viewer, capture_fps=30.0, frames_per_batch=frames_per_batch))
    return response, ClientSession.open(key, response)


def test_the_server_spreads_announced_sessions_over_the_period_and_leaves_others_alone(db_url, tmp_path, fer_faces):
    import time

    from affectline.config import Settings
    from api_client import GrpcPartner, cycle, frames_of
    from server_harness import running_server

    with running_server(Settings(data_dir=tmp_path / "data", database_url=db_url)) as server:
        partner = GrpcPartner(server.grpc_target)
        started = []
        for i in range(4):
            response, session = _start(partner, f"viewer-{i}", frames_per_batch=10)
            started.append((time.monotonic(), response, session))
        assert all(r.HasField("first_batch_in_ms") and r.first_batch_in_ms <= 333 for _, r, _ in started)
        acks = []
        for _, _, s in started:
            ack = partner.sessions.PushCrops(s.push_request(frames_of(cycle(fer_faces["happy"], 10))))
            acks.append((time.monotonic(), ack))
        assert all(a.HasField("next_batch_in_ms") and a.next_batch_in_ms <= 333 for _, a in acks)
        slots = [(t + a.next_batch_in_ms / 1000) % (1 / 3) for t, a in acks]  # phases, seconds
        s = sorted(slots)
        spacing = [(s[(i + 1) % 4] - s[i]) % (1 / 3) for i in range(4)]
        assert min(spacing) > 1 / 12 - 0.02 and max(spacing) < 1 / 12 + 0.02, spacing  # 83 ms apart (+-20 ms of RPCs)

        unannounced, session = _start(partner, "viewer-x", frames_per_batch=0)  # an older client
        assert not unannounced.HasField("first_batch_in_ms")
        ack = partner.sessions.PushCrops(session.push_request(frames_of(cycle(fer_faces["sad"], 10))))
        assert not ack.HasField("next_batch_in_ms") and len(ack.results) == 10
        partner.close()

    with running_server(Settings(data_dir=tmp_path / "data2", database_url=db_url, send_pacing=0)) as server:
        partner = GrpcPartner(server.grpc_target)
        response, _ = _start(partner, "viewer-y", frames_per_batch=10)
        assert not response.HasField("first_batch_in_ms")
        partner.close()
