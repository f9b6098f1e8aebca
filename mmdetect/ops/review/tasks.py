"""Label Studio tasks from scored listings: the listing as a reviewer reads it, the model's
answer as a pre-annotation, and what the importer needs to map the answer back.

A task's `data` carries the listing (title, description, a line of facts, photos as data URIs or
URLs), the selection (source, tier, inclusion probability) and the model's per-class calibrated
scores; its `predictions` hold the classes the model flagged (score = the highest of their
calibrated scores, model_version = the bundle) and, given explanations, the word spans that
pushed the score up. Audit tasks carry no pre-annotation by default: a reviewer shown the model's
guess tends to agree with it, and the audit is what measures the model.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdetect.data.records import Listing
from mmdetect.ops.review.labeling import CHOICES, EVIDENCE, EVIDENCE_LABEL, NONE
from mmdetect.ops.review.selection import Selected

MAX_PHOTO_BYTES = 4 << 20  # inlined photos: a task stays a few MB at most
MAX_SPANS = 5  # evidence spans per listing: the strongest only, or they stop meaning anything
FORMAT = "mmdetect-review-tasks/1"


@dataclass
class ExportCounts:
    tasks: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    photos: int = 0
    photos_skipped: dict[str, int] = field(default_factory=dict)
    spans: int = 0
    missing_listing: int = 0


def utf16_offset(text: str, index: int) -> int:
    """Label Studio's text offsets are JavaScript string indices (UTF-16 code units): an emoji
    before a span moves it by two, not one."""
    return len(text[:index].encode("utf-16-le")) // 2


def photo_ref(root: Path, rel: str, url_prefix: str | None, counts: ExportCounts) -> str | None:
    """A data URI (default) or `url_prefix + rel`; None (counted) for a photo it cannot send."""
    if url_prefix is not None:
        counts.photos += 1
        return url_prefix + rel
    path = root / rel
    try:
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise ValueError("too_large")
        data = path.read_bytes()
    except ValueError:
        counts.photos_skipped["too_large"] = counts.photos_skipped.get("too_large", 0) + 1
        return None
    except OSError:
        counts.photos_skipped["unreadable"] = counts.photos_skipped.get("unreadable", 0) + 1
        return None
    counts.photos += 1
    mime = mimetypes.guess_type(rel)[0] or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def facts_line(listing: Listing, scores: Mapping[str, float], decision: str) -> str:
    price = "price unknown" if listing.price is None else f"price ¥{listing.price:,}"
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    shown = ", ".join(f"{c} {s:.2f}" for c, s in top)
    return f"{price} · category {listing.category or 'unknown'} · model: {decision} ({shown})"


def evidence_results(listing: Listing, explanation: Mapping[str, Any] | None) -> list[dict]:
    """The strongest positive word spans of an explanation as Label Studio span results."""
    if not explanation:
        return []
    spans = [s for s in explanation.get("text", {}).get("spans", [])
             if isinstance(s, dict) and s.get("attribution", 0) > 0]  # fmt: skip
    spans.sort(key=lambda s: -s["attribution"])
    out = []
    for s in spans[:MAX_SPANS]:
        field_name = s.get("field")
        text = {"title": listing.title, "description": listing.description}.get(field_name)
        start, end = s.get("start"), s.get("end")
        if text is None or not (isinstance(start, int) and isinstance(end, int)):
            continue
        if not 0 <= start < end <= len(text) or text[start:end] != s.get("text"):
            continue  # the explanation is not of this listing's text: show nothing rather than a lie
        out.append({"from_name": EVIDENCE[field_name], "to_name": field_name, "type": "labels",
                    "value": {"start": utf16_offset(text, start), "end": utf16_offset(text, end),
                              "text": text[start:end], "labels": [EVIDENCE_LABEL]},
                    "score": round(float(s["attribution"]), 6)})  # fmt: skip
    return out


def prediction(
    sel: Selected, listing: Listing, model_version: str, explanation: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The model's answer in Label Studio's prediction format."""
    scores, tiers = sel.decision["scores"], sel.decision["decisions"]
    flagged = [c for c, t in tiers.items() if t != "pass"]
    score = max((scores[c] for c in flagged), default=max(scores.values(), default=0.0))
    result = [{"from_name": CHOICES, "to_name": "title", "type": "choices",
               "value": {"choices": flagged or [NONE]}}]  # fmt: skip
    return {"model_version": model_version, "score": round(float(score), 6),
            "result": result + evidence_results(listing, explanation)}  # fmt: skip


def build_task(
    sel: Selected, listing: Listing, root: Path, model_version: str, counts: ExportCounts,
    explanation: Mapping[str, Any] | None = None, preannotate: bool = True,
    url_prefix: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    photos = [photo_ref(root, rel, url_prefix, counts) for rel in listing.images]
    data = {"listing_id": listing.id, "title": listing.title, "description": listing.description,
            "price": listing.price, "category": listing.category,
            "facts": facts_line(listing, sel.decision["scores"], sel.decision["decision"]),
            "photos": [p for p in photos if p is not None],
            "source": sel.source, "tier": sel.tier, "inclusion_prob": sel.inclusion_prob,
            "model_version": model_version, "scores": dict(sel.decision["scores"]),
            "decisions": dict(sel.decision["decisions"])}  # fmt: skip
    task: dict[str, Any] = {"data": data}
    if preannotate:
        task["predictions"] = [prediction(sel, listing, model_version, explanation)]
        counts.spans += len(task["predictions"][0]["result"]) - 1
    counts.tasks += 1
    counts.by_source[sel.source] = counts.by_source.get(sel.source, 0) + 1
    return task


def build_tasks(
    selected: Sequence[Selected], listings: Mapping[str, Listing], root: Path,
    model_version: str, explanations: Mapping[str, Mapping[str, Any]] | None = None,
    audit_preannotate: bool = False, url_prefix: str | None = None,
) -> tuple[list[dict[str, Any]], ExportCounts]:  # fmt: skip
    """Tasks for the selected listings found in the snapshot (the others are counted)."""
    counts, tasks = ExportCounts(), []
    for sel in selected:
        listing = listings.get(sel.id)
        if listing is None:
            counts.missing_listing += 1
            continue
        pre = sel.source == "review" or audit_preannotate
        expl = (explanations or {}).get(sel.id)
        tasks.append(build_task(sel, listing, root, model_version, counts, expl, pre, url_prefix))
    return tasks, counts
