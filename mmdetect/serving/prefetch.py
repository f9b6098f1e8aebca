"""Predictor.stream's prefetch thread: chunks read, tokenized and decoded into batches on a
background thread while the caller's thread scores (Prefetch is what stream returns).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from mmdetect.data.dataset import Item
from mmdetect.data.pipeline import count_photo_problems
from mmdetect.data.records import Problems


class Prefetch:
    """What Predictor.stream returns: iterate it for (chunk, probabilities); close() stops the
    prefetch thread, also when it was never iterated (a generator's own cleanup would not run)."""

    def __init__(self, items: Iterator, stop: Callable[[], None]):
        self.items, self.stop = items, stop

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> tuple[Sequence[Item], np.ndarray | Exception]:
        return next(self.items)

    def close(self) -> None:
        self.items.close()
        self.stop()


class Scorer(Protocol):
    """What the thread needs of a Predictor (a Protocol: this module is imported by predictor)."""

    taxonomy: Sequence[str]

    def batches(self, items: Sequence[Item], checked: bool = True) -> Iterator[dict]: ...

    def score_batch(self, batch: dict) -> np.ndarray: ...


def threaded(
    predictor: Scorer,
    chunks: Iterable[Sequence[Item]],
    problems: Problems | None,
    checked: bool,
    depth: int,
    nice: int,
) -> Prefetch:
    """Predictor.stream with its thread (see there): up to `depth` batches prepared ahead on a
    thread whose nice value is raised by `nice` (Linux), scored on the caller's thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        # Its own torch ops (resize, collate, normalise) on one intra-op thread, so that they
        # do not start a second OpenMP team against the model's. OpenMP's thread count is
        # per thread; the main thread's was fixed (lazily) by get_num_threads below.
        torch.set_num_threads(1)
        if nice and sys.platform == "linux":  # elsewhere it is the whole process's
            tid = threading.get_native_id()
            with contextlib.suppress(OSError):
                level = os.getpriority(os.PRIO_PROCESS, tid) + nice
                os.setpriority(os.PRIO_PROCESS, tid, min(19, level))
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
                try:
                    for batch in predictor.batches(chunk, checked) if chunk else ():
                        if not put(("batch", batch)):
                            return
                except Exception as exc:  # noqa: BLE001 (the consumer retries the chunk)
                    put(("end", exc))
                    continue
                put(("end", None))
        except BaseException as exc:  # noqa: BLE001 (reading failed: raised in the consumer)
            put(("raise", exc))
            return
        put(("done", None))

    threads = torch.get_num_threads()  # also initialises this thread's count before the other
    thread = threading.Thread(target=produce, name="mmdetect-prefetch", daemon=True)
    thread.start()

    def stopped() -> None:
        stop.set()
        thread.join(timeout=10)
        torch.set_num_threads(threads)  # the default new threads take, as it was

    def consume() -> Iterator[tuple[Sequence[Item], np.ndarray | Exception]]:
        try:
            chunk, out, failed, found = None, None, None, Problems()
            while True:
                kind, value = q.get()
                if kind == "chunk":
                    chunk, failed, found = value, None, Problems()
                    out = np.zeros((len(chunk), len(predictor.taxonomy)), dtype=np.float32)
                    ids = [it.listing.id for it in chunk]
                elif kind == "batch" and failed is None:
                    try:
                        count_photo_problems(value, ids, found)
                        out[value["index"].numpy()] = predictor.score_batch(value)
                    except Exception as exc:  # noqa: BLE001 (the caller retries the chunk)
                        failed = exc
                elif kind == "end":
                    failed = failed or value
                    if failed is None and problems is not None:
                        problems.merge(found)
                    yield chunk, out if failed is None else failed
                elif kind == "raise":
                    raise value
                elif kind == "done":
                    return
        finally:
            stopped()

    return Prefetch(consume(), stopped)
