"""`POST /v1/score?explain=true` (or `"explain": true` in a single listing's body): the
explanation beside the scores. The service serves bundles, so words are explained by
occlusion (bounded: at most Budget.max_words + 6 rows, one batched call); the HTTP layer
(mmdetect/serving/app.py) only calls the two functions here.
"""

from __future__ import annotations

import json
import logging
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
