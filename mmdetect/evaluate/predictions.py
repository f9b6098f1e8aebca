"""Prediction records: the model-independent input of evaluation (`predictions.jsonl`).

One JSON object per line::

    {"id": "L0001", "created_at": "2026-07-01T10:00:00+09:00", "category": "sneakers",
     "n_photos": 2, "labels": ["counterfeit"], "scores": {"counterfeit": 0.93, ...}}

`scores` holds one probability per class; its key order (in the first row) is the taxonomy.
`labels` absent or null = unlabeled; `created_at`, `category`, `n_photos` may be null.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.data.jsonl import CONTROL, RowProblem, decode_line, find_surrogate, iter_lines
from mmdetect.data.records import Listing, check_datetime
from mmdetect.evaluate.config import EvaluationError


@dataclass(frozen=True)
class PredictionRecord:
    """One scored listing; `labels` is None when the listing is unlabeled."""

    id: str
    scores: dict[str, float]
    labels: tuple[str, ...] | None = None
    created_at: str | None = None
    category: str | None = None
    n_photos: int | None = None
    # Under an operating point (evaluate/operating.py): `scores` are then calibrated, these are
    # the model's own probabilities, and the decision fields are those `predict` writes.
    model_scores: dict[str, float] | None = None
    priority: float | None = None
    decision: str | None = None
    decisions: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        labels = None if self.labels is None else list(self.labels)
        out = {
            "id": self.id, "created_at": self.created_at, "category": self.category,
            "n_photos": self.n_photos, "labels": labels, "scores": dict(self.scores),
        }  # fmt: skip
        if self.decision is not None:
            out.update(decision=self.decision, priority=self.priority, decisions=self.decisions,
                       model_scores=self.model_scores)  # fmt: skip
        return out


def prediction_from_listing(listing: Listing, scores: Mapping[str, float]) -> PredictionRecord:
    """Pair a snapshot listing with the model's probabilities (taxonomy order of `scores`)."""
    return PredictionRecord(
        id=listing.id,
        scores={k: float(v) for k, v in scores.items()},
        labels=listing.labels,
        created_at=listing.created_at.isoformat(),
        category=listing.category,
        n_photos=len(listing.images),
    )


def write_predictions(path: str | Path, records: Iterable[PredictionRecord]) -> Path:
    """Write records as UTF-8 JSON lines; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
    return path


def _is_number(x: Any) -> bool:
    # A JSON integer may have hundreds of digits: math.isfinite would raise OverflowError on it.
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, int) or math.isfinite(x)


def _check_created_at(value: Any) -> None:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"created_at: expected an ISO 8601 string or null, got {value!r}"[:120])
    try:
        check_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise ValueError(f"created_at: not an ISO 8601 date: {value!r}") from None


def parse_record(obj: Any) -> PredictionRecord:
    """Check one decoded row; raises ValueError with `field: reason`."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    surrogate = find_surrogate(obj)
    if surrogate is not None:
        raise ValueError(f"{surrogate}: lone surrogate (\\ud800-\\udfff): not encodable text")
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > 256 or CONTROL.search(rid):
        raise ValueError("id: missing or not a non-empty string (at most 256, no control chars)")
    scores = obj.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores: missing or not a non-empty object")
    for name, p in scores.items():
        if not _is_number(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"scores.{name}: expected a probability in [0, 1], got {p!r}"[:120])
    labels = obj.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    ):
        raise ValueError("labels: expected a list of class names or null")
    created_at = obj.get("created_at")
    if created_at is not None:
        _check_created_at(created_at)
    category, n_photos = obj.get("category"), obj.get("n_photos")
    if category is not None and not isinstance(category, str):
        raise ValueError("category: expected a string or null")
    if n_photos is not None and (
        not isinstance(n_photos, int) or isinstance(n_photos, bool) or not 0 <= n_photos <= 10**6
    ):
        raise ValueError(
            f"n_photos: expected a count (integer >= 0) or null, got {n_photos!r}"[:120]
        )
    return PredictionRecord(
        id=rid,
        scores={k: float(v) for k, v in scores.items()},
        labels=None if labels is None else tuple(labels),
        created_at=created_at,
        category=category,
        n_photos=n_photos,
        **_decision_fields(obj, scores),
    )


def _decision_fields(obj: dict, scores: dict) -> dict[str, Any]:
    """The optional decision fields of a row (all or none), checked like the scores."""
    if obj.get("decision") is None:
        return {}
    from mmdetect.policy import TIERS

    model_scores, decisions = obj.get("model_scores"), obj.get("decisions")
    if obj["decision"] not in TIERS:
        raise ValueError(f"decision: expected one of {list(TIERS)}, got {obj['decision']!r}")
    if not _is_number(obj.get("priority")):
        raise ValueError(f"priority: expected a number, got {obj.get('priority')!r}")
    if not isinstance(decisions, dict) or set(decisions) != set(scores):
        raise ValueError("decisions: expected one tier per class of scores")
    if any(t not in TIERS for t in decisions.values()):
        raise ValueError(f"decisions: tiers must be in {list(TIERS)}")
    if not isinstance(model_scores, dict) or set(model_scores) != set(scores):
        raise ValueError("model_scores: expected one probability per class of scores")
    for name, p in model_scores.items():
        if not _is_number(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"model_scores.{name}: expected a probability, got {p!r}")
    return {
        "model_scores": {k: float(v) for k, v in model_scores.items()},
        "priority": float(obj["priority"]),
        "decision": obj["decision"],
        "decisions": dict(decisions),
    }


def read_predictions(path: str | Path) -> tuple[list[PredictionRecord], tuple[str, ...]]:
    """Read predictions.jsonl; errors name `file:line`. Taxonomy = first row's score keys.

    Lines are read as bytes: a bad byte, an over-long line or a BOM is an error naming its line
    (or, for the BOM, dropped), never a UnicodeDecodeError.
    """
    path = Path(path)
    records: list[PredictionRecord] = []
    taxonomy: tuple[str, ...] = ()
    seen: set[str] = set()
    try:
        lines = iter_lines(path)
        first = next(lines, None)  # opens the file: a directory or a missing file fails here
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read predictions: {exc}") from None
    for lineno, raw in itertools.chain([first] if first else [], lines):
        where = f"{path}:{lineno}"
        try:
            obj = decode_line(raw)
            if obj is ...:
                continue
            rec = parse_record(obj)
        except RowProblem as exc:
            raise EvaluationError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise EvaluationError(f"{where}: {exc}") from None
        if not taxonomy:
            taxonomy = tuple(rec.scores)
        elif set(rec.scores) != set(taxonomy):
            missing = sorted(set(taxonomy) - set(rec.scores))
            extra = sorted(set(rec.scores) - set(taxonomy))
            raise EvaluationError(
                f"{where}: scores: classes differ from line 1 (missing {missing}, extra {extra})"
            )
        if rec.id in seen:
            raise EvaluationError(f"{where}: id: duplicate id {rec.id!r}")
        seen.add(rec.id)
        records.append(rec)
    if not records:
        raise EvaluationError(f"{path}: no predictions in file")
    return records, taxonomy


def check_labels(records: Sequence[PredictionRecord], taxonomy: Sequence[str]) -> None:
    """Raise a clear error when nothing is labeled or a label is outside the taxonomy."""
    if not any(r.labels is not None for r in records):
        raise EvaluationError("snapshot has no labels: evaluation needs labeled listings")
    known = set(taxonomy)
    unknown = sorted({x for r in records if r.labels for x in r.labels if x not in known})
    if unknown:
        raise EvaluationError(f"labels outside the taxonomy {list(taxonomy)}: {unknown}")
    missing = sorted({c for r in records for c in taxonomy if c not in r.scores})
    if missing:
        raise EvaluationError(f"predictions lack scores for classes {missing}")


def records_to_arrays(
    records: Sequence[PredictionRecord], taxonomy: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """`(y_true [N, C] int64, y_score [N, C] float64)` in taxonomy order; needs labels."""
    check_labels(records, taxonomy)
    if any(r.labels is None for r in records):
        raise EvaluationError("some predictions are unlabeled; keep only labeled ones first")
    index = {name: j for j, name in enumerate(taxonomy)}
    y_true = np.zeros((len(records), len(taxonomy)), dtype=np.int64)
    for i, rec in enumerate(records):
        y_true[i, [index[x] for x in rec.labels or ()]] = 1
    return y_true, score_array(records, taxonomy)


def score_array(records: Sequence[PredictionRecord], classes: Sequence[str]) -> np.ndarray:
    """Scores [N, C] float64 in `classes` order; each must be a probability."""
    scores = np.array([[r.scores[c] for c in classes] for r in records], dtype=np.float64)
    scores = scores.reshape(len(records), len(classes))
    bad = ~(np.isfinite(scores) & (scores >= 0) & (scores <= 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise EvaluationError(
            f"{int(bad.sum())} scores are not probabilities in [0, 1], e.g. "
            f"{records[i].id} {classes[j]}={scores[i, j]!r} (logits instead of sigmoid?)"
        )
    return scores
