"""Dynamic batching across concurrent requests, with a bounded queue.

Requests put their listings on one queue (all of a request's listings or none: a request that
does not fit is refused whole, `QueueFull`, which the app answers 429 + Retry-After). One task
takes up to `max_batch_size` listings, waiting at most `max_wait_s` after the first for more,
and hands them to one of `workers` scoring threads (the event loop keeps accepting meanwhile):
with one worker the next batch fills while a batch runs; with two, one batch's Python work
(tokenizing, decoding photos) runs while the other's model call has released the GIL. A
listing whose request gave up (timeout, disconnect) is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mmdetect.data.records import Listing

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """No room for a request's listings; `retry_after_s` is a hint for the client."""

    def __init__(self, depth: int, wanted: int, retry_after_s: int):
        super().__init__(f"queue full: {depth} listings waiting, {wanted} more do not fit")
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    listing: Listing
    future: asyncio.Future
    enqueued: float


# score(listings) -> one (result or exception) per listing, in order; runs in the worker thread.
ScoreFn = Callable[[Sequence[Listing]], list]


class Batcher:
    """Bounded queue + one batching task + `workers` scoring threads."""

    def __init__(self, score: ScoreFn, max_batch_size: int = 32, max_wait_s: float = 0.005,
                 max_queue: int = 512, on_depth: Callable[[int], None] | None = None,
                 workers: int = 1):  # fmt: skip
        if max_queue < max_batch_size:
            raise ValueError(f"max_queue {max_queue} < max_batch_size {max_batch_size}")
        if workers < 1:
            raise ValueError(f"workers {workers} < 1")
        self.score, self.max_batch_size, self.max_wait_s = score, max_batch_size, max_wait_s
        self.max_queue, self.workers = max_queue, workers
        self.on_depth = on_depth or (lambda depth: None)
        self._queue: deque[Job] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="mmdetect-score")
        self._free = asyncio.Semaphore(workers)  # a batch is formed only when a worker is free
        self._running: set[asyncio.Task] = set()
        self._scoring = 0  # batches in the scoring threads now
        self._batch_seconds = 0.05  # running mean, for Retry-After

    @property
    def depth(self) -> int:
        return len(self._queue)

    def retry_after_s(self) -> int:
        """Seconds until the queue has drained at the recent batch rate (at least 1)."""
        batches = (self.depth / self.max_batch_size + 1) / self.workers
        return max(1, round(batches * self._batch_seconds + 0.5))

    def submit(self, listings: Sequence[Listing]) -> list[asyncio.Future]:
        """Queue every listing or none (QueueFull). Call from the event loop."""
        if self.depth + len(listings) > self.max_queue:
            raise QueueFull(self.depth, len(listings), self.retry_after_s())
        loop, now = asyncio.get_running_loop(), time.monotonic()
        jobs = [Job(x, loop.create_future(), now) for x in listings]
        self._queue.extend(jobs)
        self.on_depth(self.depth)
        self._ready.set()
        return [j.future for j in jobs]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Stop after the batches in progress; jobs still queued fail (call after draining)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def _next_batch(self) -> list[Job]:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        # Fill for max_wait after the first listing. While another worker is scoring, no core
        # idles for this batch: as long as listings keep arriving (each within max_wait of the
        # last) keep filling, up to a worker's share of max_batch_size: a model call has a large
        # fixed cost, so fewer, fuller calls do the same work for less CPU.
        deadline = time.monotonic() + self.max_wait_s
        share = -(-self.max_batch_size // self.workers)  # rounded up
        queued = len(self._queue)
        while len(self._queue) < self.max_batch_size:
            busy = self._scoring > 0
            if busy and len(self._queue) > queued:
                deadline = time.monotonic() + self.max_wait_s
            queued = len(self._queue)
            left = deadline - time.monotonic()
            if (busy and queued >= share) or left <= 0:
                break
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), left)
            except asyncio.TimeoutError:
                break
        batch: list[Job] = []
        while self._queue and len(batch) < self.max_batch_size:
            job = self._queue.popleft()
            if not job.future.done():  # its request gave up: not worth scoring
                batch.append(job)
        self.on_depth(self.depth)
        return batch

    async def _run(self) -> None:
        while True:
            await self._free.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._free.release()
                raise
            if not batch:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._score(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _score(self, batch: list[Job]) -> None:
        start = time.monotonic()
        self._scoring += 1
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.score, [j.listing for j in batch]
            )
        except Exception as exc:  # noqa: BLE001 (score isolates listings; this is a bug)
            log.exception("scoring a batch of %d failed", len(batch))
            results = [exc] * len(batch)
        finally:
            self._scoring -= 1
            self._free.release()
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.monotonic() - start)
        for job, result in zip(batch, results, strict=True):
            if job.future.done():
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
