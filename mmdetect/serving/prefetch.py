"""Predictor.stream's prefetch thread: chunks read, tokenized and decoded into batches on a
background thread while the caller's thread scores (Prefetch is what stream returns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from mmdetect.data.dataset import Item


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
