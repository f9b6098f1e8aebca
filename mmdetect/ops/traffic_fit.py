"""`mmdetect thresholds fit --traffic SNAPSHOT`: the review budget fitted on traffic scores.

The budget is a share of TRAFFIC, so the review threshold is fitted on scores of a traffic
snapshot (labels not needed), each listing weighted by its inclusion weight when the snapshot's
sampling design gives one, else equally. Without --traffic it is fitted on the labeled
calibration listings, weighted when their design is known; on an enriched sample of unknown
rates the fitted share is a share of that sample, and thresholds.json says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.data.records import parse_date_bound
from mmdetect.evaluate.config import EvaluationError
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.evaluate.traffic import describe_design, sampling_design
from mmdetect.policy.design import MODES


def iso_date(text: str) -> str:
    """An argparse type: the text if it is a period bound `parse_date_bound` accepts."""
    try:
        parse_date_bound(text, "traffic period")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def traffic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--traffic", type=Path,
                   help="a traffic snapshot (labels not needed) to fit the review budget on")  # fmt: skip
    p.add_argument("--traffic-created-from", type=iso_date,
                   help="traffic listings created on or after this date")  # fmt: skip
    p.add_argument("--traffic-created-to", type=iso_date,
                   help="traffic listings created before this date")  # fmt: skip
    p.add_argument("--certify-on", choices=MODES, default="auto",
                   help="labeled listings that certify auto-hide (mmdetect/policy/design.py)")  # fmt: skip


@dataclass(frozen=True)
class BudgetBasis:
    """What the review threshold is fitted on: raw scores [N, C] (None: the calibration
    listings), their weights (None: equal), the traffic volume per day, and the record."""

    probs: np.ndarray | None
    weights: np.ndarray | None
    per_day: float | None
    record: dict[str, Any]


def per_day(records: Sequence[PredictionRecord], weights: np.ndarray | None,
            start: str | None = None, end: str | None = None) -> float | None:  # fmt: skip
    """Traffic listings per day: the weighted count over the period ([start, end) when both are
    given, else the records' created_at span); None without a span of at least a day."""
    if start and end:  # naive and aware bounds may be mixed: compare wall-clock times
        a, b = (parse_date_bound(x, "traffic period").replace(tzinfo=None) for x in (start, end))
        days = (b - a).total_seconds()
    else:
        times = [datetime.fromisoformat(r.created_at) for r in records if r.created_at]
        if len(times) < 2:
            return None
        days = (max(times) - min(times)).total_seconds()
    days /= 86400
    total = len(records) if weights is None else float(np.sum(weights))
    return total / days if days >= 1 else None


def budget_basis(
    args: argparse.Namespace,
    taxonomy: Sequence[str],
    labeled: Sequence[PredictionRecord],
    inclusion: np.ndarray,
    design: dict[str, Any],
    score: Callable[..., tuple],
) -> BudgetBasis:
    """The listings the review budget is fitted on: --traffic if given, else the labeled ones."""
    if args.traffic is None and (args.traffic_created_from or args.traffic_created_to):
        raise EvaluationError("--traffic-created-from/--traffic-created-to need --traffic SNAPSHOT")
    if args.traffic is None:
        known = not np.isnan(inclusion).any() and design["basis"] in ("random", "weighted")
        w = 1.0 / inclusion if known else None
        record = {"snapshot": str(args.snapshot), "created_from": args.created_from,
                  "created_to": args.created_to, "listings": len(labeled),
                  "basis": design["basis"], "weighting": "inclusion weights" if known else "equal",
                  "design": design, "traffic_share": known}  # fmt: skip
        record["note"] = f"fitted on the calibration listings ({describe_design(design)}), " + (
            "re-weighted to traffic" if known else "NOT a traffic share: pass --traffic"
        )
        span = (args.created_from, args.created_to)
        return BudgetBasis(None, w, per_day(labeled, w, *span), record)
    records, t_taxonomy, snap, _ = score(args.model, args, traffic=True)
    if not records:
        raise EvaluationError(f"{args.traffic}: no listings in the traffic period to fit on")
    inclusion, t_design = sampling_design(snap)
    known = not np.isnan(inclusion).any()
    w = 1.0 / inclusion if known else None
    probs = np.array([[r.scores[c] for c in t_taxonomy] for r in records], dtype=np.float64)
    record = {"snapshot": str(args.traffic), "created_from": args.traffic_created_from,
              "created_to": args.traffic_created_to, "listings": len(records),
              "basis": t_design["basis"], "weighting": "inclusion weights" if known else "equal",
              "design": t_design, "traffic_share": known or t_design["basis"] == "undescribed",
              "estimated_traffic_listings": float(w.sum()) if known else None}  # fmt: skip
    record["note"] = f"fitted on traffic scores ({describe_design(t_design)}), " + (
        "weighted by inclusion weights" if known else "equally weighted (inclusion unknown)"
    )
    span = (args.traffic_created_from, args.traffic_created_to)
    return BudgetBasis(probs.reshape(len(records), len(t_taxonomy)), w,
                       per_day(records, w, *span), record)  # fmt: skip


def fit_traffic_lines(doc: dict[str, Any]) -> list[str]:
    """Two lines: what the review budget and the hide certification rest on."""
    cert, traffic = doc.get("certification"), doc["review"].get("traffic")
    lines = []
    if traffic:
        lines.append(f"review budget: {traffic['note']}")
    if cert:
        lines.append(
            f"auto-hide certified on {cert['listings']} labeled listings "
            f"({cert['prohibited']} prohibited), basis {cert['basis']}: {cert['note']}"
        )
    return lines
