"""`POST /v1/score?explain=true` (or `"explain": true` in a single listing's body): the
explanation beside the scores. The service serves bundles, so words are explained by
occlusion (bounded: at most Budget.max_words + 6 rows, one batched call); the HTTP layer
(mmdetect/serving/app.py) only calls wants_explanation and ExplainGate.run here.

Those rows run outside the Batcher (no queue, no batching with other requests), so ExplainGate
bounds them itself: at most `limit` explanations at once (another request gets 429 with
Retry-After) and none answered past the request's deadline (504).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdetect.data.dataset import Item
from mmdetect.data.records import Listing
from mmdetect.explain.attribution import Budget
from mmdetect.explain.core import explain_listing
from mmdetect.explain.model import from_predictor

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes")
BUDGET = Budget(max_words=32)  # a request waits for it: fewer passes than the CLI's default


def wants_explanation(query: Mapping[str, str], raw: bytes) -> bool:
    """explain=true in the query string, or "explain": true in the body's top-level object
    (the body is parsed again only when it mentions the key)."""
    if str(query.get("explain", "")).lower() in TRUE:
        return True
    if b'"explain"' not in raw:
        return False
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("explain") is True


def explain_scored(predictor, listing: Listing, root: Path) -> dict[str, Any]:
    """The explanation of one validated listing (photos staged under `root`), without the
    echoed text; {"error": ...} instead of failing the request that was already scored."""
    try:
        e = explain_listing(from_predictor(predictor), Item(listing, root), budget=BUDGET)
    except Exception as exc:  # noqa: BLE001 (the scores stand; the explanation says it failed)
        log.error("explanation failed", extra={"listing": listing.id, "error": str(exc)})
        return {"error": str(exc)[:300]}
    for key in ("title", "description", "model", "labels"):
        e.pop(key, None)
    for photo in e["photos"]:  # a staged file name means nothing to the client: its index does
        photo.pop("path", None)
    return e


class ExplainRefused(Exception):
    """The explanation was not run (429: all slots taken) or not ready in time (504)."""

    def __init__(self, status: int, message: str, retry_after_s: int):
        super().__init__(message)
        self.status, self.retry_after_s = status, retry_after_s


class ExplainGate:
    """At most `limit` explanations running at once. A slot is freed when the explanation's
    thread ends, not when a request gives up on it: a thread cannot be stopped, and freeing
    the slot early would let abandoned explanations pile up behind the scoring."""

    def __init__(self, limit: int = 1):
        if limit < 1:
            raise ValueError(f"explain concurrency must be >= 1, got {limit}")
        self.limit, self.running, self.last_s = limit, 0, 1.0

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the last explanation's duration, at least 1."""
        return max(1, math.ceil(self.last_s))

    async def run(self, predictor, listing: Listing, root: Path, left_s: float) -> dict[str, Any]:
        """explain_scored in a thread, within `left_s` seconds; ExplainRefused otherwise."""
        if self.running >= self.limit:  # one event loop: no await between test and increment
            raise ExplainRefused(429, f"explanations busy ({self.limit} running); retry later",
                                 self.retry_after_s())  # fmt: skip
        if left_s <= 0:
            raise ExplainRefused(504, "no time left to explain", self.retry_after_s())
        self.running += 1
        started = time.monotonic()
        task = asyncio.ensure_future(asyncio.to_thread(explain_scored, predictor, listing, root))

        def done(_: asyncio.Future) -> None:
            self.running -= 1
            self.last_s = time.monotonic() - started

        task.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(task), left_s)
        except asyncio.TimeoutError:
            raise ExplainRefused(504, f"explanation not ready within the request's timeout "
                                 f"({left_s:.2f} s left)", self.retry_after_s()) from None  # fmt: skip
