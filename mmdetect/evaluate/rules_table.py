"""`evaluate --rules`: the rules alone, the model alone, and both at the same review budget.

On a labeled snapshot, for each system, overall and per class: listings hidden and reviewed,
the recall of positives (hidden or reviewed) and the precision of what it flags. Then the
coverage each adds over the other (positives the model catches that no rule matches, and the
reverse) and, per rule, its hits and precision (right = a positive of its category for hide and
review rules, a clean one for allow rules), so stale or harmful rules show up.

"The same review budget": rules + model may review no more listings than the model alone did.
Listings a rule sends to review (a review rule, or an allow lowering a model hide) keep their
place; the model's own reviews fill what is left, highest priority first (a tie at the boundary
goes out whole, as when the budget is fitted). The combination itself is policy/combine.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from mmdetect.evaluate.operating import label_matrix, rate, tier_codes
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.policy.combine import RuleHits, combine_codes, match_rules, rule_codes
from mmdetect.policy.rules import RuleSet

SYSTEMS = ("rules", "model", "combined")
LABELS = {"rules": "rules alone", "model": "model alone", "combined": "rules + model"}


def same_budget(
    codes: np.ndarray, overall: np.ndarray, model_overall: np.ndarray, hits: RuleHits,
    priority: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:  # fmt: skip
    """The combined decisions with the model's own reviews cut to the model-alone review count."""
    budget = int((model_overall == 1).sum())
    reviewed = overall == 1
    by_rule = reviewed & (hits.review.any(axis=1) | (model_overall == 2))
    model_only = np.flatnonzero(reviewed & ~by_rule)
    room = max(budget - int(by_rule.sum()), 0)
    keep = model_only
    if len(model_only) > room:
        ranked = np.sort(priority[model_only])[::-1]
        cut = ranked[room]  # the first listing out: all of its tie go out with it
        keep = model_only[priority[model_only] > cut]
    dropped = np.setdiff1d(model_only, keep)
    codes, overall = codes.copy(), overall.copy()
    codes[dropped] = np.where(codes[dropped] == 1, 0, codes[dropped])
    overall[dropped] = 0
    info = {"budget": budget, "rule_reviews": int(by_rule.sum()), "model_reviews": len(keep),
            "dropped": len(dropped)}  # fmt: skip
    return codes, overall, info


def system_figures(
    codes: np.ndarray, overall: np.ndarray, y: np.ndarray, labeled: np.ndarray,
    taxonomy: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    """Hidden, reviewed, recall (hidden or reviewed) and precision, overall and per class."""
    flag, hide = overall > 0, overall == 2
    prohibited = labeled & y.any(axis=1)
    out: dict[str, Any] = {
        "hidden": int(hide.sum()),
        "reviewed": int((overall == 1).sum()),
        "recall": rate((flag & prohibited).sum(), prohibited.sum()),
        "precision": rate((flag & prohibited).sum(), (flag & labeled).sum()),
        "hide_precision": rate((hide & prohibited).sum(), (hide & labeled).sum()),
        "classes": {},
    }
    for j, name in enumerate(taxonomy):
        pos, by_c = labeled & y[:, j], codes[:, j] > 0
        out["classes"][name] = {
            "flagged": int(by_c.sum()),
            "hidden": int((codes[:, j] == 2).sum()),
            "recall": rate((flag & pos).sum(), pos.sum()),
            "precision": rate((by_c & pos).sum(), (by_c & labeled).sum()),
        }
    return out


def _coverage(model: np.ndarray, rules: np.ndarray, pos: np.ndarray) -> dict[str, int]:
    return {"positives": int(pos.sum()), "model_beyond_rules": int((model & ~rules & pos).sum()),
            "rules_beyond_model": int((rules & ~model & pos).sum()),
            "both": int((model & rules & pos).sum()),
            "neither": int((~model & ~rules & pos).sum())}  # fmt: skip


def rule_figures(
    rules: RuleSet, hits: RuleHits, model_codes: np.ndarray, model_overall: np.ndarray,
    y: np.ndarray, labeled: np.ndarray, taxonomy: Sequence[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Per rule, in file order: hits, precision, and what it adds over (or takes from) the model."""
    column = {rid: k for k, rid in enumerate(hits.rule_ids)}
    timed_out = {rid: sum(rid in t for t in hits.timed_out) for rid in hits.rule_ids}
    out = []
    for r in rules.rules:
        entry: dict[str, Any] = {"id": r.id, "owner": r.owner, "category": r.category,
                                 "action": r.action, "where": r.where,
                                 "expires": r.expires.isoformat() if r.expires else None,
                                 "active": r.id in column}  # fmt: skip
        if r.id not in column or r.category not in taxonomy:
            out.append({**entry, "hits": 0, "labeled": 0, "precision": rate(0, 0)})
            continue
        hit, j = hits.matched[:, column[r.id]], list(taxonomy).index(r.category)
        pos = y[:, j] & labeled
        right = pos if r.action != "allow" else labeled & ~y[:, j]
        entry.update(hits=int(hit.sum()), labeled=int((hit & labeled).sum()),
                     precision=rate((hit & right).sum(), (hit & labeled).sum()),
                     timed_out=timed_out[r.id])  # fmt: skip
        if r.action == "allow":  # model hides it turned into reviews, and how many were clean
            lowered = hit & (model_codes[:, j] == 2)
            entry.update(lowered=int(lowered.sum()), lowered_clean=int((lowered & right).sum()))
        else:  # positives of its category the model alone lets pass
            entry["beyond_model"] = int((hit & pos & (model_overall == 0)).sum())
        out.append(entry)
    return out


def rules_comparison(
    records: Sequence[PredictionRecord], listings: Sequence, rules: RuleSet,
    taxonomy: Sequence[str], at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The comparison (module doc). `records`: the model alone under its operating point
    (evaluate/operating.apply_operating_point), aligned with `listings`."""
    at = at or datetime.now(timezone.utc)
    model_overall, model_codes = tier_codes(records, taxonomy)
    y, labeled = label_matrix(records, taxonomy)
    hits = match_rules(rules, listings, taxonomy, at)
    priority = np.array([r.priority or 0.0 for r in records], dtype=np.float64)
    codes, overall = combine_codes(model_codes, hits)
    codes, overall, budget = same_budget(codes, overall, model_overall, hits, priority)
    decided = {"rules": rule_codes(hits), "model": (model_codes, model_overall),
               "combined": (codes, overall)}  # fmt: skip
    systems = {k: system_figures(c, o, y, labeled, taxonomy) for k, (c, o) in decided.items()}
    m, r = model_overall > 0, decided["rules"][1] > 0
    coverage = {"overall": _coverage(m, r, labeled & y.any(axis=1)),
                "classes": {c: _coverage(m, r, labeled & y[:, j])
                            for j, c in enumerate(taxonomy)}}  # fmt: skip
    return {
        "ruleset": rules.name, "source": rules.source, "sha256": rules.sha256,
        "at_utc": at.isoformat(timespec="seconds"), "listings": len(records),
        "labeled": int(labeled.sum()), "prohibited": int((labeled & y.any(axis=1)).sum()),
        "review_budget": budget, "systems": systems, "coverage": coverage,
        "rules": rule_figures(rules, hits, model_codes, model_overall, y, labeled, taxonomy),
        "warnings": list(rules.warnings),
    }  # fmt: skip
