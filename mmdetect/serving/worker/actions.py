"""What one event produces: its decision row, its action by tier, or a dead letter.

The decision row is `Decision.to_json`, the row `mmdetect predict` writes; the review action
carries the row `mmdetect predict`'s review queue holds for the listing (review_queue.queue_rows,
without the rank, which only means something across a whole run). Every output names its bundle
and carries the idempotency key listing id : version : bundle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from mmdetect.serving.decision import Decision
from mmdetect.serving.review_queue import queue_rows
from mmdetect.serving.worker.broker import Commit, Message
from mmdetect.serving.worker.events import EVENT_FIELD, Event

# A dead letter keeps the event's raw text up to this size (the rest is cut and marked).
DEAD_EVENT_BYTES = 64 << 10


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False)


def decision_commit(
    event: Event, bundle: str, decision: Decision, severity: Mapping[str, float] | None,
    explanation: dict | None = None,
) -> Commit:  # fmt: skip
    """The decision, then `hide` to the actions stream or `review` to the review stream."""
    row = decision.to_json()
    common = {"idempotency_key": f"{event.key}:{bundle}", "listing_id": event.listing.id,
              "version": event.version, "event_id": event.event_id, "bundle": bundle}  # fmt: skip
    decided = {**common, "decision": _dumps(row), "source_id": event.message.id,
               "decided_at": f"{time.time():.6f}"}  # fmt: skip
    if event.published_at is not None:
        decided["published_at"] = f"{event.published_at:.6f}"
    if event.photo_problems:
        decided["photo_problems"] = _dumps(event.photo_problems)
    outputs = [("decisions", decided)]
    if decision.decision == "hide":
        outputs.append(("actions", {**common, "action": "hide", "decision": _dumps(row)}))
    elif decision.decision == "review":
        review = {k: v for k, v in queue_rows([row], severity)[0].items() if k != "rank"}
        doc = {**common, "action": "review", "review": _dumps(review)}
        if explanation is not None:
            doc["explanation"] = _dumps(explanation)
        outputs.append(("reviews", doc))
    return Commit(event.message.id, outputs, done=event.key)


def dead_commit(message: Message, reason: str, field: str, text: str) -> Commit:
    """The dead letter of a message: why, where, how often it was delivered, the raw event."""
    raw = message.fields.get(EVENT_FIELD.encode(), message.fields.get(EVENT_FIELD, b""))
    raw = raw if isinstance(raw, bytes) else str(raw).encode()
    cut = raw[:DEAD_EVENT_BYTES].decode("utf-8", "replace")
    doc = {"reason": reason, "field": field, "message": text[:500], "source_id": message.id,
           "deliveries": str(message.deliveries), "failed_at": f"{time.time():.6f}",
           "event": cut + ("...[cut]" if len(raw) > DEAD_EVENT_BYTES else "")}  # fmt: skip
    return Commit(message.id, [("dead", doc)], done=None)
