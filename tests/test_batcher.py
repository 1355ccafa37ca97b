"""Tests for seed_rl.core.batcher.DynamicBatcher on its own, with a fake batch function.

Timing is only ever checked as a lower bound (a batch that must wait for its
timeout did wait) or as "finished long before a far-away timeout", so a loaded
machine cannot make these tests flaky.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from seed_rl.core.batcher import BatcherClosed, DynamicBatcher

WAIT_S = 10.0  # upper bound for anything that should happen "soon"


class Recorder:
    """A batch function that records its batches and returns payload * 10.

    ``block()`` makes the next call wait until ``release()``, so a test can queue
    requests while the batching thread is busy and control what the next batch sees.
    """

    def __init__(self, fail_on=None):
        self.batches: list[list] = []
        self.sizes: list[int] = []  # from on_batch
        self.fail_on = fail_on
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()

    def block(self) -> None:
        self._gate.clear()
        self.entered.clear()

    def release(self) -> None:
        self._gate.set()

    def on_batch(self, size: int) -> None:
        with self._lock:
            self.sizes.append(size)

    def __call__(self, payloads):
        with self._lock:
            self.batches.append(list(payloads))
        self.entered.set()
        assert self._gate.wait(WAIT_S), "test never released the batch function"
        if self.fail_on is not None and self.fail_on in payloads:
            raise KeyError(f"bad payload {self.fail_on}")
        return [p * 10 for p in payloads]


@pytest.fixture
def make_batcher():
    made: list[DynamicBatcher] = []

    def make(fn, max_batch_size, timeout_s):
        batcher = DynamicBatcher(fn, max_batch_size, timeout_s, on_batch=getattr(fn, "on_batch", None))
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


def _submit_concurrently(batcher, payloads_and_sizes) -> list[Future]:
    barrier = threading.Barrier(len(payloads_and_sizes))
    futures: list[Future | None] = [None] * len(payloads_and_sizes)

    def submit(i, payload, size):
        barrier.wait()
        futures[i] = batcher.submit(payload, size)

    threads = [
        threading.Thread(target=submit, args=(i, p, s)) for i, (p, s) in enumerate(payloads_and_sizes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert all(f is not None for f in futures)
    return futures  # type: ignore[return-value]


def _occupy(batcher, recorder, size, payload=-1) -> Future:
    """Starts a full batch (``size`` = max) that blocks in the batch function until ``recorder.release()``."""
    recorder.block()
    future = batcher.submit(payload, size)
    assert recorder.entered.wait(WAIT_S)
    return future


def test_full_batch_runs_without_waiting_for_the_timeout(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=5.0)
    start = time.monotonic()
    futures = _submit_concurrently(batcher, [(i, 1) for i in range(4)])
    # A full batch must not wait for the 5 s timeout; 2.5 s leaves room for a slow machine.
    results = [f.result(timeout=2.5) for f in futures]
    assert time.monotonic() - start < 5.0
    assert sorted(results) == [0, 10, 20, 30]
    assert recorder.sizes == [4]
    assert len(recorder.batches) == 1 and sorted(recorder.batches[0]) == [0, 1, 2, 3]


def test_partial_batch_runs_after_the_timeout(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=8, timeout_s=0.05)
    blocker = _occupy(batcher, recorder, size=8)
    # The batching thread is busy, so these three are all queued when it looks again.
    futures = [batcher.submit(i, 1) for i in (1, 2, 3)]
    released = time.monotonic()
    recorder.release()
    assert [f.result(timeout=WAIT_S) for f in futures] == [10, 20, 30]
    waited = time.monotonic() - released
    assert blocker.result(timeout=WAIT_S) == -10
    assert recorder.sizes == [8, 3]
    assert recorder.batches[1] == [1, 2, 3]
    assert waited >= 0.045, f"a batch of 3 < 8 should wait for the 50 ms timeout, ran after {waited * 1000:.1f} ms"


def test_few_quick_submits_form_one_batch_after_the_timeout(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=8, timeout_s=0.5)
    start = time.monotonic()
    futures = [batcher.submit(i, 1) for i in range(3)]
    assert [f.result(timeout=WAIT_S) for f in futures] == [0, 10, 20]
    assert time.monotonic() - start >= 0.45
    assert recorder.sizes == [3]


def test_requests_are_never_merged_past_max_batch_size(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=0.01)
    futures = _submit_concurrently(batcher, [(i, 3) for i in range(12)])
    assert sorted(f.result(timeout=WAIT_S) for f in futures) == [10 * i for i in range(12)]
    assert recorder.sizes == [3] * 12
    assert all(len(batch) == 1 for batch in recorder.batches)


def test_oversized_request_is_served_alone(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=0.01)
    blocker = _occupy(batcher, recorder, size=4)
    sizes = {1: 1, 2: 9, 3: 1, 4: 3, 5: 3, 6: 1}
    futures = {p: batcher.submit(p, s) for p, s in sizes.items()}
    recorder.release()
    for p, f in futures.items():
        assert f.result(timeout=WAIT_S) == 10 * p
    blocker.result(timeout=WAIT_S)
    # Arrival order is kept; a batch takes requests while they fit, and the first
    # request of a batch is always taken, however big.
    assert recorder.batches[1:] == [[1], [2], [3, 4], [5, 6]]
    assert recorder.sizes[1:] == [1, 9, 4, 4]
    assert max(recorder.sizes[1:]) == 9


def test_single_oversized_request_alone(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=5.0)
    # Bigger than the maximum: it runs at once, alone, without waiting for the timeout.
    assert batcher.submit(7, 10).result(timeout=2.5) == 70
    assert recorder.sizes == [10]


def test_each_caller_gets_its_own_result(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=5, timeout_s=0.002)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def caller(c):
        try:
            results[c] = [batcher.submit(c * 1000 + step, 1).result(timeout=WAIT_S) for step in range(40)]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert not errors
    for c in range(8):
        assert results[c] == [(c * 1000 + step) * 10 for step in range(40)]
    assert sum(recorder.sizes) == 8 * 40
    assert max(recorder.sizes) <= 5
    for batch, size in zip(recorder.batches, recorder.sizes):
        assert len(batch) == size


def test_failing_batch_fails_only_its_own_futures(make_batcher):
    recorder = Recorder(fail_on=13)
    batcher = make_batcher(recorder, max_batch_size=2, timeout_s=1.0)
    blocker = _occupy(batcher, recorder, size=2, payload=0)
    queued = [batcher.submit(p, 1) for p in (11, 12, 13, 14, 15, 16)]
    recorder.release()
    assert blocker.result(timeout=WAIT_S) == 0
    assert queued[0].result(timeout=WAIT_S) == 110
    assert queued[1].result(timeout=WAIT_S) == 120
    for f in queued[2:4]:  # the batch [13, 14]
        with pytest.raises(KeyError, match="bad payload 13"):
            f.result(timeout=WAIT_S)
    assert queued[4].result(timeout=WAIT_S) == 150
    assert queued[5].result(timeout=WAIT_S) == 160
    # The batcher keeps working after a failure.
    assert batcher.submit(21, 2).result(timeout=WAIT_S) == 210
    assert recorder.batches[1:] == [[11, 12], [13, 14], [15, 16], [21]]


def test_wrong_number_of_results_fails_the_batch(make_batcher):
    calls = []

    def short(payloads):
        calls.append(list(payloads))
        return [] if len(calls) == 1 else [p for p in payloads]

    batcher = make_batcher(short, max_batch_size=1, timeout_s=0.0)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 requests"):
        batcher.submit("a", 1).result(timeout=WAIT_S)
    assert batcher.submit("b", 1).result(timeout=WAIT_S) == "b"


def test_zero_timeout_runs_what_is_queued(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=100, timeout_s=0.0)
    assert batcher.submit(3, 1).result(timeout=WAIT_S) == 30


def test_close_fails_pending_futures(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=2, timeout_s=0.01)
    running = _occupy(batcher, recorder, size=2, payload=1)
    pending = [batcher.submit(p, 1) for p in (2, 3, 4)]
    assert batcher.pending_requests() == 3

    closer = threading.Thread(target=batcher.close)
    closer.start()
    # close() waits for the running batch. Queue requests until the batcher says it
    # is closed: every one queued before that is pending and must fail too.
    deadline = time.monotonic() + WAIT_S
    while True:
        assert time.monotonic() < deadline, "close() never took effect"
        try:
            pending.append(batcher.submit(99, 1))
        except BatcherClosed:
            break
        time.sleep(0.001)
    recorder.release()
    closer.join(WAIT_S)
    assert not closer.is_alive()

    assert running.result(timeout=WAIT_S) == 10  # the batch already running completes
    for f in pending:
        with pytest.raises(BatcherClosed):
            f.result(timeout=WAIT_S)
    assert len(recorder.batches) == 1
    assert batcher.pending_requests() == 0


def test_close_while_gathering_a_batch_resolves_every_future(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=100, timeout_s=5.0)
    futures = [batcher.submit(p, 1) for p in range(3)]
    start = time.monotonic()
    batcher.close()
    # The batch being gathered is failed, as close() promises, and promptly.
    for f in futures:
        with pytest.raises(BatcherClosed):
            f.result(timeout=WAIT_S)
    assert time.monotonic() - start < 5.0
    assert recorder.sizes == []


def test_cancelled_request_is_skipped_and_batcher_keeps_working(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=3, timeout_s=0.3)
    cancelled = batcher.submit(1, 1)
    assert cancelled.cancel()
    kept = batcher.submit(2, 1)
    assert kept.result(timeout=WAIT_S) == 20
    assert batcher.submit(3, 1).result(timeout=WAIT_S) == 30


def test_submit_after_close_raises(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=0.01)
    assert batcher.submit(1, 1).result(timeout=WAIT_S) == 10
    batcher.close()
    with pytest.raises(BatcherClosed, match="shutting down"):
        batcher.submit(2, 1)
    batcher.close()  # closing twice is harmless


def test_idle_close_is_prompt(make_batcher):
    batcher = make_batcher(Recorder(), max_batch_size=4, timeout_s=60.0)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    closer.join(WAIT_S)
    assert not closer.is_alive()


def test_result_is_not_ready_before_the_batch_runs(make_batcher):
    recorder = Recorder()
    batcher = make_batcher(recorder, max_batch_size=4, timeout_s=5.0)
    future = batcher.submit(1, 1)
    with pytest.raises(FutureTimeout):
        future.result(timeout=0.05)
    assert batcher.submit(2, 3).result(timeout=2.5) == 20
    assert future.result(timeout=WAIT_S) == 10
    assert recorder.sizes == [4]


@pytest.mark.parametrize("kwargs, text", [({"max_batch_size": 0}, "max_batch_size"), ({"timeout_s": -1}, "timeout_s")])
def test_invalid_settings(kwargs, text):
    settings = {"max_batch_size": 4, "timeout_s": 0.01, **kwargs}
    with pytest.raises(ValueError, match=text):
        DynamicBatcher(lambda p: p, **settings)
