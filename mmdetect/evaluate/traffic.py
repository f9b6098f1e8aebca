"""Figures expected on TRAFFIC, next to the figures realised on the snapshot.

A snapshot's listings are drawn from traffic by a sampling design (snapshot.json `sampling`,
mmdetect/data/sampling.py). When every listing's inclusion probability is known, each stands for
1/probability traffic listings, and the weighted figures (hide and review rates, precision at
hide, recall at review, prevalence) estimate what the operating point does on traffic, with
intervals from the effective sample size (mmdetect/policy/weighted.py). A random sample has equal
weights: its traffic figures ARE its snapshot figures. An enriched sample of unknown rates gives
none, and `operating.traffic` says so instead of guessing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.common.outputs import atomic_write_text
from mmdetect.data.records import Listing, Snapshot
from mmdetect.data.sampling import inclusion_probs, listing_subsets, subsets_of
from mmdetect.evaluate.operating import label_matrix, tier_codes
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.policy.weighted import weighted_rate


def sampling_design(
    snapshot: Snapshot, listings: Sequence[Listing] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """(inclusion probability per listing, NaN = unknown; the design those listings rest on).

    The design's `basis` is "random" (every listing known, equal probabilities, all subsets
    random), "weighted" (every listing known, unequal probabilities or non-random subsets),
    "enriched" (some listing's probability unknown) or "undescribed" (no `sampling`)."""
    listings = snapshot.listings if listings is None else listings
    probs = inclusion_probs(snapshot, listings)
    described = subsets_of(snapshot)
    names = listing_subsets(snapshot, listings)
    labeled = Counter(n for n, x in zip(names, listings, strict=True) if x.labels is not None)
    subsets = {}
    for name, count in Counter(names).items():
        s = described.get(name) if name is not None else None
        subsets[name or "(none)"] = {"design": s.design if s else None,
                                     "rate": s.rate if s else None,
                                     "listings": count, "labeled": labeled[name]}  # fmt: skip
    known = ~np.isnan(probs)
    if not described:
        basis = "undescribed"
    elif not known.all():
        basis = "enriched"
    elif np.ptp(probs) == 0 and all(v["design"] == "random" for v in subsets.values()):
        basis = "random"
    else:
        basis = "weighted"
    return probs, {"basis": basis, "subsets": subsets, "known": int(known.sum()),
                   "listings": len(listings)}  # fmt: skip


def describe_design(design: Mapping[str, Any]) -> str:
    """`traffic (random, rate 0.002) 5000 listings; queue (enriched_by_score, rate unknown) 300`."""
    parts = []
    for name, s in design["subsets"].items():
        rate = "rate unknown" if s["rate"] is None else f"rate {s['rate']:g}"
        parts.append(f"{name} ({s['design'] or 'undescribed'}, {rate}) {s['listings']} listings")
    return "; ".join(parts) or "no listings"


NOT_TRAFFIC = {
    "enriched": "the snapshot is an enriched sample whose inclusion rates are unknown",
    "undescribed": "the snapshot's sampling is not described (snapshot.json has no `sampling`)",
    "unknown": "the sampling design is not known (predictions evaluated without their snapshot)",
}


def traffic_figures(
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    doc: Mapping[str, Any],
    probs: np.ndarray | None,
    design: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`operating.traffic`: the decisions' figures re-weighted to traffic, or why there are none.

    `probs`: inclusion probability per record (aligned), from `sampling_design`."""
    design = dict(design or {"basis": "unknown", "subsets": {}})
    basis = design["basis"]
    if probs is None or basis not in ("random", "weighted"):
        return {"available": False, "basis": basis, "design": design,
                "note": f"{NOT_TRAFFIC.get(basis, basis)}: the figures are "
                        "snapshot figures, not traffic figures"}  # fmt: skip
    method = doc.get("policy", {}).get("interval", "clopper_pearson")
    w = 1.0 / np.asarray(probs, dtype=np.float64)
    overall, codes = tier_codes(records, taxonomy)
    hidden, reviewed, flagged = overall == 2, overall == 1, overall > 0
    everyone = np.ones(len(records), bool)
    budget = doc["review"].get("budget")
    out: dict[str, Any] = {
        "available": True,
        "basis": basis,
        "design": design,
        "equal_to_snapshot": basis == "random",
        "note": "a random sample: weights are equal, so the traffic figures are the snapshot "
        "figures"
        if basis == "random"
        else "re-weighted by inclusion weights (1 / inclusion "
        "probability); intervals use the effective sample size",
        "estimated_traffic_listings": float(w.sum()),
        "hide_rate": weighted_rate(hidden, everyone, w, method=method),
        "review_rate": weighted_rate(reviewed, everyone, w, method=method),
    }
    value = out["review_rate"]["value"]
    out["review_vs_budget"] = None if budget is None or value is None else value / budget
    y, labeled = label_matrix(records, taxonomy)
    if not labeled.any():
        return out
    prohibited, clean = labeled & y.any(axis=1), labeled & ~y.any(axis=1)
    out.update(
        prevalence=weighted_rate(prohibited, labeled, w, method=method),
        hide_precision=weighted_rate(prohibited, hidden & labeled, w, method=method),
        false_hide_rate=weighted_rate(hidden, clean, w, method=method),
        recall_at_review=weighted_rate(flagged, prohibited, w, method=method),
        review_precision=weighted_rate(prohibited, reviewed & labeled, w, method=method),
        classes={},
    )
    for j, name in enumerate(taxonomy):
        pos, by_c = labeled & y[:, j], codes[:, j] == 2
        out["classes"][name] = {
            "prevalence": weighted_rate(pos, labeled, w, method=method),
            "hide_precision": weighted_rate(pos, by_c & labeled, w, method=method),
            "recall_at_review": weighted_rate(flagged, pos, w, method=method),
        }
    return out


def fmt_weighted(r: Mapping[str, Any] | None, pct: bool = False) -> str:
    """`0.950 [0.83, 0.99] (19/20 listings, n_eff 20.0)`; n/a when there is nothing to weigh."""
    if r is None or r["value"] is None:
        return "n/a" if r is None else f"n/a ({r['count']}/{r['of']})"
    f = (lambda v: f"{100 * v:.2f}%") if pct else (lambda v: f"{v:.3f}")
    return (f"{f(r['value'])} [{f(r['ci'][0])}, {f(r['ci'][1])}] "
            f"({r['count']}/{r['of']} listings, n_eff {r['n_eff']:.1f})")  # fmt: skip


def traffic_lines(result: Mapping[str, Any]) -> list[str]:
    """The traffic view for the report and the console (a few lines)."""
    t = (result.get("operating") or {}).get("traffic")
    if t is None:
        return []
    design = describe_design(t["design"])
    if not t["available"]:
        where = f" ({design})" if t["design"].get("subsets") else ""
        return [f"expected on traffic: not available: {t['note']}{where}"]
    ratio = t["review_vs_budget"]
    lines = [
        f"expected on traffic ({t['basis']}: {design}; {t['note']}):",
        f"  traffic review rate {fmt_weighted(t['review_rate'], True)}"
        + ("" if ratio is None else f" ({ratio:.2f}x the budget)"),
        f"  traffic hide rate {fmt_weighted(t['hide_rate'], True)}",
    ]
    if "prevalence" in t:
        lines += [
            f"  traffic prevalence (prohibited) {fmt_weighted(t['prevalence'], True)}",
            f"  traffic auto-hide precision {fmt_weighted(t['hide_precision'])}",
            f"  traffic recall of prohibited listings (hidden or reviewed) "
            f"{fmt_weighted(t['recall_at_review'])}",
            f"  traffic false-hide rate {fmt_weighted(t['false_hide_rate'], True)}",
        ]
    return lines


SAMPLING_FILE = "sampling.json"  # beside predictions.jsonl: the design, for recomputation


def write_sampling(
    out_dir: Path, records: Sequence[PredictionRecord], probs: np.ndarray, design: Mapping
) -> Path:
    """Write each record's inclusion probability (null = unknown) and the design, so that
    `mmdetect evaluate --predictions` recomputes the traffic view without the snapshot."""
    doc = {"design": dict(design),
           "inclusion_prob": {r.id: None if np.isnan(p) else float(p)
                              for r, p in zip(records, probs, strict=True)}}  # fmt: skip
    path = Path(out_dir) / SAMPLING_FILE
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path


def read_sampling(
    path: Path, records: Sequence[PredictionRecord]
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The (inclusion probabilities aligned with `records`, design) written by `write_sampling`;
    None when the file is absent. A bad file or a record it does not cover is an error."""
    from mmdetect.evaluate.config import EvaluationError

    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        probs, design = doc["inclusion_prob"], dict(doc["design"])
        out = np.array([np.nan if probs[r.id] is None else float(probs[r.id]) for r in records])
    except KeyError as exc:
        raise EvaluationError(f"{path}: no inclusion_prob for listing {exc}") from None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise EvaluationError(f"{path}: cannot read the sampling design: {exc}") from None
    if ((out <= 0) | (out > 1)).any():
        raise EvaluationError(f"{path}: inclusion_prob: values must be in (0, 1] or null")
    return out, design
