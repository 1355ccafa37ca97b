"""Dynamic batching of inference requests from many actor streams.

Each request covers ``size`` environments (all environments of one actor for one
step). Requests are merged into one batch until adding the next one would pass
``max_batch_size`` environments, or until ``timeout_s`` has passed since the
first request of the batch arrived. The batch function runs on one thread, so
the model sees one call at a time.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class PendingRequest:
    """One actor step waiting for inference."""

    payload: Any
    size: int
    future: Future = field(default_factory=Future)
    submitted_at: float = field(default_factory=time.monotonic)


class BatcherClosed(RuntimeError):
    """Raised for requests submitted to, or pending in, a closed batcher."""


class DynamicBatcher:
    """Merges concurrent requests into batches and runs ``batch_fn`` on them.

    ``batch_fn(payloads)`` receives the payloads of one batch in arrival order and
    returns one result per payload. If it raises, every request of that batch
    fails with the exception; later batches are unaffected.
    """

    def __init__(
        self,
        batch_fn: Callable[[Sequence[Any]], Sequence[Any]],
        max_batch_size: int,
        timeout_s: float,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        self._batch_fn = batch_fn
        self._max_batch_size = max_batch_size
        self._timeout_s = timeout_s
        self._on_batch = on_batch
        self._pending: collections.deque[PendingRequest] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.requests_served = 0
        self.batches_served = 0
        self.wait_seconds = 0.0  # summed over requests: submission to the start of their batch
        self._thread = threading.Thread(target=self._loop, name="inference-batcher", daemon=True)
        self._thread.start()

    def submit(self, payload: Any, size: int) -> Future:
        """Queues a request for ``size`` environments; the future gets its result."""
        request = PendingRequest(payload, size)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the learner is shutting down")
            self._pending.append(request)
            self._cond.notify()
        return request.future

    def pending_requests(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stops the batching thread and fails the requests still waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        while self._pending:
            self._pending.popleft().future.set_exception(BatcherClosed("the learner is shutting down"))

    def _next_batch(self) -> list[PendingRequest] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self._timeout_s
            while True:
                total = sum(r.size for r in self._pending)
                if total >= self._max_batch_size:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None  # close() fails what is still pending
            batch = [self._pending.popleft()]
            total = batch[0].size
            while self._pending and total + self._pending[0].size <= self._max_batch_size:
                request = self._pending.popleft()
                total += request.size
                batch.append(request)
        # A caller may have cancelled its future while it waited; skip it.
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            now = time.monotonic()
            self.requests_served += len(batch)
            self.batches_served += 1
            self.wait_seconds += sum(now - r.submitted_at for r in batch)
            try:
                if self._on_batch is not None:
                    self._on_batch(sum(r.size for r in batch))
                results = self._batch_fn([r.payload for r in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch_fn returned {len(results)} results for {len(batch)} requests")
            except BaseException as e:  # noqa: BLE001 - delivered to every caller of the batch
                for request in batch:
                    request.future.set_exception(e)
                continue
            for request, result in zip(batch, results):
                request.future.set_result(result)
