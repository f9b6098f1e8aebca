"""Model tiers and rule actions, combined in one documented order (docs/rules.md).

Per listing and class c, starting from the model's tier (policy.decide):

1. an `allow` rule of category c lowers the model's hide of c to review (never auto-hide c);
2. a `hide` rule of category c raises c to hide (a person's explicit block wins over an allow);
3. a `review` rule of category c raises a pass of c to review (it adds the listing to the queue).

The overall decision is the highest class tier, as without rules; the priority stays the
model's (the queue order), and each listing carries the ids of the rules that fired (matched
and not expired), in file order. `combine_codes` is the arithmetic on arrays; evaluate's
comparison and `rules test` call it, and `apply_rules` (Predictor, the HTTP service, predict)
calls it through the same masks, so no consumer combines differently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

from mmdetect.policy.decide import Decisions
from mmdetect.policy.rules import RuleSet
from mmdetect.policy.rules_match import RuleTimeout, rule_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleHits:
    """Which rules matched which listings: `matched` [N, R] bool over `rules.active` order,
    masks per action [N, C], and per listing the fired and timed-out rule ids."""

    rule_ids: tuple[str, ...]
    matched: np.ndarray
    hide: np.ndarray
    review: np.ndarray
    allow: np.ndarray
    fired: list[tuple[str, ...]]
    timed_out: list[tuple[str, ...]]


def match_rules(
    rules: RuleSet, listings: Sequence, taxonomy: Sequence[str], at: datetime | None = None
) -> RuleHits:
    """Evaluate the rules active at `at` (default now) on each listing. A rule whose regex
    times out does not fire on that listing; it is listed in `timed_out`. A rule of a category
    the model does not score is skipped (load checks it against the serving bundle)."""
    active = rules.active(at or datetime.now(timezone.utc))
    index = {c: j for j, c in enumerate(taxonomy)}
    n, c = len(listings), len(taxonomy)
    matched = np.zeros((n, len(active)), dtype=bool)
    masks = {a: np.zeros((n, c), dtype=bool) for a in ("hide", "review", "allow")}
    fired: list[tuple[str, ...]] = []
    timed_out: list[tuple[str, ...]] = []
    for i, listing in enumerate(listings):
        x, hit, slow = rule_input(listing), [], []
        for k, rule in enumerate(active):
            try:
                ok = rule.match(x)
            except RuleTimeout as exc:
                slow.append(rule.id)
                log.warning("rule %s timed out on %s: %s", rule.id, listing.id, exc)
                continue
            if ok and rule.category in index:
                matched[i, k] = True
                masks[rule.action][i, index[rule.category]] = True
                hit.append(rule.id)
        fired.append(tuple(hit))
        timed_out.append(tuple(slow))
    ids = tuple(r.id for r in active)
    return RuleHits(ids, matched, masks["hide"], masks["review"], masks["allow"], fired, timed_out)


def combine_codes(codes: np.ndarray, hits: RuleHits) -> tuple[np.ndarray, np.ndarray]:
    """(per-class codes [N, C], overall [N]) after the rules, in the order of the module doc."""
    out = np.array(codes, dtype=np.int8, copy=True)
    out[(out == 2) & hits.allow] = 1
    out[hits.hide] = 2
    out[(out == 0) & hits.review] = 1
    overall = out.max(axis=1) if out.shape[1] else np.zeros(out.shape[0], dtype=np.int8)
    return out, overall.astype(np.int8)


def rule_codes(hits: RuleHits) -> tuple[np.ndarray, np.ndarray]:
    """The rules alone (no model): hide rules hide, review rules review, allow does nothing."""
    return combine_codes(np.zeros(hits.hide.shape, dtype=np.int8), hits)


def apply_rules(
    d: Decisions, rules: RuleSet, listings: Sequence, taxonomy: Sequence[str],
    at: datetime | None = None,
) -> tuple[Decisions, RuleHits]:  # fmt: skip
    """The model's Decisions for `listings` with the rules combined in."""
    hits = match_rules(rules, listings, taxonomy, at)
    codes, overall = combine_codes(d.codes, hits)
    return replace(d, codes=codes, overall=overall), hits
