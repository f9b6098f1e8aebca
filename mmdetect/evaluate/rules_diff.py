"""`rules test`: what a changed rules file would change, listing by listing, before promotion.

Both rule sets are combined with the same model decisions by policy/combine.py (what `predict`
and the HTTP service would decide); a listing changes when its overall decision differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from mmdetect.evaluate.operating import label_matrix, tier_codes
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.policy.combine import combine_codes, match_rules
from mmdetect.policy.decide import TIERS
from mmdetect.policy.rules import RuleSet

KINDS = {"newly_hidden": 2, "newly_reviewed": 1, "newly_passed": 0}


def rules_diff(
    records: Sequence[PredictionRecord], listings: Sequence, old: RuleSet, new: RuleSet,
    taxonomy: Sequence[str], at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Counts and rows of the listings whose decision changes from `old` rules to `new` ones."""
    at = at or datetime.now(timezone.utc)
    _, model_codes = tier_codes(records, taxonomy)
    y, labeled = label_matrix(records, taxonomy)
    prohibited = y.any(axis=1)
    decided = {}
    for key, rules in (("old", old), ("new", new)):
        hits = match_rules(rules, listings, taxonomy, at)
        decided[key] = (combine_codes(model_codes, hits)[1], hits.fired)
    (o, o_fired), (n, n_fired) = decided["old"], decided["new"]
    rows = [
        {"id": records[i].id, "from": TIERS[int(o[i])], "to": TIERS[int(n[i])],
         "rules_before": list(o_fired[i]), "rules_after": list(n_fired[i]),
         "labels": None if records[i].labels is None else list(records[i].labels),
         "title": listings[i].title[:60]}
        for i in np.flatnonzero(o != n)
    ]  # fmt: skip
    summary = {}
    for kind, code in KINDS.items():
        mask = (n == code) & (o != code)
        summary[kind] = {"count": int(mask.sum()), "labeled": int((mask & labeled).sum()),
                         "prohibited": int((mask & labeled & prohibited).sum())}  # fmt: skip
    counts = {"before": {t: int((o == k).sum()) for k, t in enumerate(TIERS)},
              "after": {t: int((n == k).sum()) for k, t in enumerate(TIERS)}}  # fmt: skip
    return {"old": old.name, "new": new.name, "at_utc": at.isoformat(timespec="seconds"),
            "listings": len(records), "summary": summary, "decisions": counts, "changes": rows}  # fmt: skip


def format_diff(diff: dict[str, Any], limit: int = 20) -> str:
    s, d = diff["summary"], diff["decisions"]
    lines = [f"rules {diff['old']} -> {diff['new']} on {diff['listings']} listings "
             f"(as of {diff['at_utc']}):"]  # fmt: skip
    for kind, c in s.items():
        lab = f" ({c['prohibited']} of {c['labeled']} labeled prohibited)" if c["labeled"] else ""
        lines.append(f"  {kind.replace('_', ' ')}: {c['count']}{lab}")
    lines.append("  decisions hide/review/pass: "
                 + " -> ".join("/".join(str(d[k][t]) for t in reversed(TIERS))
                               for k in ("before", "after")))  # fmt: skip
    for row in diff["changes"][:limit]:
        fired = ", ".join(row["rules_after"]) or "-"
        lines.append(f"  {row['id']}: {row['from']} -> {row['to']} (rules {fired}; labels "
                     f"{row['labels']}) {row['title']}")  # fmt: skip
    if len(diff["changes"]) > limit:
        lines.append(f"  ... {len(diff['changes']) - limit} more (--out DIR writes them all)")
    return "\n".join(lines)
