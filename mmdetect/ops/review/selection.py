"""Which scored listings go to review, and with what inclusion probability.

Three sources, kept apart because only two of them support unbiased traffic estimates:
* `review`: every listing of the review tier (probability 1);
* `audit`: a random sample of the pass and hide tiers at known rates, so that missed violations
  and wrong hides are seen and precision and recall on traffic can be estimated
  (Horvitz-Thompson: each audited listing stands for 1/rate listings of its tier);
* `uncertainty`: optional extra labels for retraining, the pass-tier listings closest to the
  review threshold, under a fixed budget. Not a probability sample: their inclusion probability
  is None and estimates never use them.

The audit draw is a hash of (seed, listing id), not a random stream: the same listings are drawn
whatever the order or chunking of the decisions file, and a rerun draws the same sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TIERS = ("hide", "review", "pass")


@dataclass(frozen=True)
class Design:
    """Audit rates per tier (the review tier is always taken whole) and the uncertainty budget."""

    pass_rate: float = 0.01
    hide_rate: float = 0.1
    uncertainty: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pass_rate", "hide_rate"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {rate!r}")
        if (
            isinstance(self.uncertainty, bool)
            or not isinstance(self.uncertainty, int)
            or (self.uncertainty < 0)
        ):
            raise ValueError(
                f"uncertainty must be a non-negative integer, got {self.uncertainty!r}"
            )

    def rate(self, tier: str) -> float:
        return {"review": 1.0, "pass": self.pass_rate, "hide": self.hide_rate}[tier]

    def to_json(self) -> dict[str, Any]:
        return {"review_rate": 1.0, "pass_rate": self.pass_rate, "hide_rate": self.hide_rate,
                "uncertainty": self.uncertainty, "seed": self.seed}  # fmt: skip


@dataclass(frozen=True)
class Selected:
    """One listing sent to reviewers: why, and its inclusion probability (None: not a sample)."""

    id: str
    tier: str
    source: str  # review | audit | uncertainty
    inclusion_prob: float | None
    decision: Mapping[str, Any]


def uniform(seed: int, listing_id: str) -> float:
    """A number in [0, 1) fixed by (seed, id): the audit's coin for that listing."""
    digest = hashlib.sha256(f"{seed}\x00{listing_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select(decisions: Iterable[Mapping[str, Any]], design: Design) -> list[Selected]:
    """The listings to review, in the decisions' order (uncertainty picks appended last)."""
    chosen, margin = [], []
    for row in decisions:
        tier = row["decision"]
        if tier not in TIERS:
            raise ValueError(f"{row['id']}: decision must be one of {TIERS}, got {tier!r}")
        if tier == "review":
            chosen.append(Selected(row["id"], tier, "review", 1.0, row))
        elif uniform(design.seed, row["id"]) < design.rate(tier):
            chosen.append(Selected(row["id"], tier, "audit", design.rate(tier), row))
        elif tier == "pass" and design.uncertainty:
            margin.append(row)
    # Closest to review: the highest priority among passed listings (priority is what the review
    # threshold is applied to); ties by id so the pick is reproducible.
    margin.sort(key=lambda r: (-float(r.get("priority", 0.0)), r["id"]))
    chosen += [Selected(r["id"], "pass", "uncertainty", None, r)
               for r in margin[: design.uncertainty]]  # fmt: skip
    return chosen
