"""The dynamic batcher: batching knobs, per-sequence order, fairness, backpressure, draining."""

import asyncio
import threading

import numpy as np
import pytest

from affectline.inference.batcher import BatcherClosed, BatcherConfig, DynamicBatcher, QueueFull


class RecordingModel:
    """Returns each crop's first pixel as its 'probability' and records every run."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.runs: list[list[int]] = []
        self.delay_s = delay_s
        self.threads: set[str] = set()
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.threads.add(threading.current_thread().name)
            self.runs.append([int(v) for v in x[:, 0, 0]])
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        with self._lock:
            self.concurrent -= 1
        return x[:, 0, 0].astype(np.float32)[:, None].copy()


def crops(*values: int) -> np.ndarray:
    out = np.zeros((len(values), 4, 4), dtype=np.uint8)
    out[:, 0, 0] = values
    return out


def batcher(model, **kw) -> DynamicBatcher:
    return DynamicBatcher(model, BatcherConfig(**kw))


async def test_results_come_back_to_the_right_caller_in_order():
    model = RecordingModel()
    b = batcher(model, max_batch_size=8, max_queue_delay_s=0.01)
    results = await asyncio.gather(*(b.submit(crops(i * 10, i * 10 + 1)) for i in range(5)))
    await b.stop()
    for i, r in enumerate(results):
        assert r[:, 0].tolist() == [i * 10, i * 10 + 1]
    # Requests are never split: 4 requests (8 crops) fill the first run, the 5th runs next.
    assert [len(run) for run in model.runs] == [8, 2]
    assert sum(model.runs, []) == [0, 1, 10, 11, 20, 21, 30, 31, 40, 41]
    assert all(name.startswith("affectline-infer") for name in model.threads)


async def test_max_queue_delay_flushes_a_partial_batch():
    model = RecordingModel()
    b = batcher(model, max_batch_size=64, max_queue_delay_s=0.02)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = await b.submit(crops(5))
    waited = loop.time() - t0
    await b.stop()
    assert out[:, 0].tolist() == [5]
    assert model.runs == [[5]]
    assert waited >= 0.015  # it waited for company, then ran alone


async def test_full_batch_runs_without_waiting_for_the_delay():
    model = RecordingModel()
    b = batcher(model, max_batch_size=2, max_queue_delay_s=10.0)
    out = await asyncio.wait_for(b.submit(crops(1, 2)), timeout=2.0)
    await b.stop()
    assert out[:, 0].tolist() == [1, 2]


async def test_a_sequence_is_scored_in_submission_order_and_never_in_two_runs_at_once():
    model = RecordingModel(delay_s=0.003)
    b = batcher(model, max_batch_size=4, max_queue_delay_s=0.001, workers=2, max_sequence_share=1.0)
    tasks = [asyncio.create_task(b.submit(crops(i), sequence="s")) for i in range(24)]
    tasks += [asyncio.create_task(b.submit(crops(100 + i), sequence="t")) for i in range(24)]
    await asyncio.gather(*tasks)
    await b.stop()
    flat = sum(model.runs, [])
    assert [v for v in flat if v < 100] == list(range(24))
    assert [v for v in flat if v >= 100] == list(range(100, 124))
    assert model.max_concurrent == 2  # two workers did run at once, just never the same sequence
    assert all(len(run) <= 4 for run in model.runs)


async def test_a_greedy_sequence_gets_a_bounded_share_of_each_batch():
    model = RecordingModel(delay_s=0.01)
    b = batcher(model, max_batch_size=8, max_queue_delay_s=0.005, max_sequence_share=0.5)
    greedy = [asyncio.create_task(b.submit(crops(1, 1), sequence="greedy")) for _ in range(8)]
    await asyncio.sleep(0)
    polite = [asyncio.create_task(b.submit(crops(2, 2), sequence=f"p{i}")) for i in range(4)]
    await asyncio.gather(*greedy, *polite)
    await b.stop()
    assert all(run.count(1) <= 4 for run in model.runs)  # at most half of a batch of 8
    first_run_with_polite = next(i for i, run in enumerate(model.runs) if 2 in run)
    assert first_run_with_polite <= 1  # the others were not starved behind 16 greedy crops


async def test_backpressure_refuses_past_the_bound_with_a_retry_hint():
    model = RecordingModel(delay_s=0.05)
    # One run at a time, so the queue's content is exact (runs handed over early leave it).
    b = batcher(model, max_batch_size=4, max_queue_delay_s=0.0, max_queued_crops=8, runs_per_worker=1)
    first = asyncio.create_task(b.submit(crops(1, 2, 3, 4)))  # taken into a run
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(b.submit(crops(5, 6, 7, 8))) for _ in range(2)]  # 8 waiting
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as info:
        await b.submit(crops(9))
    assert info.value.queued == 8 and 0.01 <= info.value.retry_after_s <= 5.0
    await asyncio.gather(first, *queued)  # the accepted ones still complete
    assert (await b.submit(crops(9)))[:, 0].tolist() == [9]  # and there is room again
    await b.stop()


async def test_a_worker_gets_its_next_run_before_the_current_one_ends():
    """runs_per_worker=2: while a run is in the model, the next batch already waits for the
    same worker, so it starts without an event-loop round trip; order and exclusivity hold."""
    started = threading.Event()
    release = threading.Event()
    runs: list[list[int]] = []

    def gated(x: np.ndarray) -> np.ndarray:
        runs.append([int(v) for v in x[:, 0, 0]])
        if len(runs) == 1:
            started.set()
            release.wait(5)
        return x[:, 0, 0].astype(np.float32)[:, None].copy()

    b = batcher(gated, max_batch_size=2, max_queue_delay_s=0.0, workers=1, runs_per_worker=2, max_sequence_share=1.0)
    tasks = [asyncio.create_task(b.submit(crops(i), sequence=f"s{i}")) for i in range(6)]
    await asyncio.to_thread(started.wait, 5)
    for _ in range(20):  # let the dispatcher hand over what it may
        await asyncio.sleep(0.005)
    assert b.queued_crops == 2  # 2 crops in the running batch, 2 handed over, 2 still queued
    release.set()
    await asyncio.gather(*tasks)
    await b.stop()
    assert runs == [[0, 1], [2, 3], [4, 5]]


async def test_model_errors_reach_every_caller_of_that_run_and_the_batcher_survives():
    calls = {"n": 0}

    def flaky(x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return np.ones((len(x), 1), dtype=np.float32)

    b = batcher(flaky, max_batch_size=4, max_queue_delay_s=0.01)
    first = await asyncio.gather(b.submit(crops(1)), b.submit(crops(2)), return_exceptions=True)
    assert all(isinstance(e, RuntimeError) for e in first)
    assert (await b.submit(crops(3))).tolist() == [[1.0]]
    await b.stop()


async def test_stop_drains_every_accepted_request_then_refuses_new_ones():
    model = RecordingModel(delay_s=0.01)
    b = batcher(model, max_batch_size=2, max_queue_delay_s=0.0, workers=2)
    tasks = [asyncio.create_task(b.submit(crops(i), sequence="s")) for i in range(9)]
    await asyncio.sleep(0)  # let them enqueue
    await b.stop()
    assert [t.result()[0, 0] for t in tasks] == list(range(9))
    with pytest.raises(BatcherClosed):
        await b.submit(crops(1))


async def test_concatenated_copies_are_zeroed_after_inference():
    seen: list[np.ndarray] = []

    def keep(x: np.ndarray) -> np.ndarray:
        seen.append(x)
        return np.zeros((len(x), 1), dtype=np.float32)

    b = batcher(keep, max_batch_size=4, max_queue_delay_s=0.01)
    await asyncio.gather(b.submit(crops(7)), b.submit(crops(9)))
    await b.stop()
    assert len(seen) == 1 and not seen[0].any()


@pytest.mark.parametrize("kw", [
    {"max_batch_size": 0}, {"max_queue_delay_s": -1}, {"max_queued_crops": 1},
    {"max_sequence_share": 0}, {"workers": 0}, {"runs_per_worker": 0},
])
def test_knobs_are_validated(kw):
    with pytest.raises(ValueError):
        BatcherConfig(**kw)


async def test_live_requests_are_not_delayed_behind_a_low_priority_backlog():
    """A recording's 40 queued low-priority runs (10 ms each) must not hold up a live request:
    it waits for at most the one low-priority run in flight, never for the backlog."""
    from affectline.inference.batcher import LOW

    model = RecordingModel(delay_s=0.01)
    b = batcher(model, max_batch_size=8, max_queue_delay_s=0.0, max_queued_crops=1024)
    low = [asyncio.create_task(b.submit(crops(*[200] * 8), priority=LOW)) for _ in range(40)]
    await asyncio.sleep(0.015)  # the backlog is queued and its first run has started
    assert b.low_priority_queued_crops >= 8 * 30
    assert b.queued_crops == 0, "low-priority crops do not count against the live bound"
    started = asyncio.get_running_loop().time()
    live = await b.submit(crops(1, 2), sequence="live-session")
    waited = asyncio.get_running_loop().time() - started
    assert live[:, 0].tolist() == [1, 2]
    assert waited < 0.035, f"live request waited {waited * 1000:.0f} ms behind the backlog"
    done = sum(t.done() for t in low)
    assert done <= 3, f"{done} low-priority runs finished before the live one"
    await asyncio.gather(*low)
    await b.stop()
    # Never mixed: the live crops ran alone, and every low-priority run is only low-priority crops.
    assert [1, 2] in model.runs
    assert all(set(run) == {200} or set(run) <= {1, 2} for run in model.runs)
    assert model.max_concurrent == 1


async def test_low_priority_requests_run_when_no_live_request_waits_and_have_their_own_bound():
    from affectline.inference.batcher import LOW

    model = RecordingModel()
    b = batcher(model, max_batch_size=4, max_queue_delay_s=0.01, max_queued_crops=8)
    results = await asyncio.gather(*(b.submit(crops(i, i + 100), priority=LOW) for i in range(4)))
    assert [r[:, 0].tolist() for r in results] == [[i, i + 100] for i in range(4)]
    # the low-priority bound is separate: a full low queue never refuses a live request
    with pytest.raises(QueueFull):
        await asyncio.gather(*(b.submit(crops(*[7] * 4), priority=LOW) for _ in range(4)))
    assert (await b.submit(crops(5)))[:, 0].tolist() == [5]
    with pytest.raises(ValueError):
        await b.submit(crops(1), priority=7)
    await b.stop()
