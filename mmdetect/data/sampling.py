"""How a snapshot's listings were drawn from traffic, and the weights that undo it.

`snapshot.json` may carry a `sampling` list (docs/snapshot-format.md, "Sampling"): one entry per
subset of listings, saying how that subset was drawn (a random sample of traffic at a known rate,
a review queue, user reports, or enriched by a detector's score). A listing names its subset in
its `subset` field; listings without one belong to the entry marked `"default": true`, so a
snapshot whose listings.jsonl predates this schema can be described without rewriting it.

`inclusion_weights` turns that into 1 / (inclusion probability) per listing, the Horvitz-Thompson
weight that re-weights a sample to the traffic it came from; it returns None whenever one of the
listings asked about has an unknown design or rate, so nobody re-weights on a guess.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.data.records import Listing, Snapshot

DESIGNS = ("random", "review_queue", "user_reports", "enriched_by_score")
ENTRY_KEYS = ("subset", "design", "rate", "population", "note", "default")
POPULATION_KEYS = ("from", "to", "listings")
REVIEW_SUBSET = "reviews"  # the subset `feedback merge` adds (reviews-2, ... when taken)


class SamplingError(ValueError):
    """A sampling description or a listing's sampling field that cannot be used."""

    def __init__(self, message: str, field: str = "-"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Subset:
    """One described subset. `rate`: each listing's inclusion probability; None = unknown."""

    name: str
    design: str
    rate: float | None = None
    default: bool = False
    population_from: str | None = None  # inclusive, ISO 8601 date or datetime
    population_to: str | None = None  # exclusive
    population_listings: int | None = None  # traffic size over that period
    note: str = ""


def _probability(value: Any, where: str, field: str) -> float | None:
    """None, or a number in (0, 1]; anything else names where and field."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SamplingError(
            f"{where}: {field}: expected a number in (0, 1] or null, got {value!r}", field
        )
    if math.isnan(value) or not 0 < value <= 1:
        raise SamplingError(f"{where}: {field}: must be in (0, 1], got {value!r}", field)
    return float(value)


def _date(value: Any, where: str, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise SamplingError(
        f"{where}: {field}: expected an ISO 8601 date or null, got {value!r}", field
    )


def _population(raw: Any, where: str, field: str) -> tuple[str | None, str | None, int | None]:
    if raw is None:
        return None, None, None
    if not isinstance(raw, dict):
        raise SamplingError(f"{where}: {field}: expected an object, got {raw!r}", field)
    unknown = sorted(set(raw) - set(POPULATION_KEYS))
    if unknown:
        raise SamplingError(
            f"{where}: {field}: unknown keys {unknown} (known: {list(POPULATION_KEYS)})", field
        )
    start = _date(raw.get("from"), where, f"{field}.from")
    end = _date(raw.get("to"), where, f"{field}.to")
    if start and end and start.replace(tzinfo=None) >= end.replace(tzinfo=None):
        raise SamplingError(
            f"{where}: {field}: 'from' {raw['from']!r} is not before 'to' {raw['to']!r}", field
        )
    n = raw.get("listings")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise SamplingError(
            f"{where}: {field}.listings: expected a positive integer or null, got {n!r}", field
        )
    return raw.get("from"), raw.get("to"), n


def parse_entry(raw: Any, where: str, field: str) -> Subset:
    """One `sampling` entry, validated; errors name `where` (the manifest) and `field`."""
    if not isinstance(raw, dict):
        raise SamplingError(f"{where}: {field}: expected an object, got {raw!r}", field)
    unknown = sorted(set(raw) - set(ENTRY_KEYS))
    if unknown:  # a misspelt `rate` must not silently become "unknown"
        raise SamplingError(
            f"{where}: {field}: unknown keys {unknown} (known: {list(ENTRY_KEYS)})", field
        )
    name = raw.get("subset")
    if not isinstance(name, str) or not name.strip():
        raise SamplingError(
            f"{where}: {field}.subset: expected a non-empty string, got {name!r}", field
        )
    design = raw.get("design")
    if design not in DESIGNS:
        raise SamplingError(
            f"{where}: {field}.design: unknown design {design!r} (known: {', '.join(DESIGNS)})",
            field,
        )
    default = raw.get("default", False)
    if not isinstance(default, bool):
        raise SamplingError(
            f"{where}: {field}.default: expected true or false, got {default!r}", field
        )
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise SamplingError(f"{where}: {field}.note: expected a string, got {note!r}", field)
    rate = _probability(raw.get("rate"), where, f"{field}.rate")
    start, end, n = _population(raw.get("population"), where, f"{field}.population")
    return Subset(name, design, rate, default, start, end, n, note)


def parse_sampling(manifest: dict | None, where: str | Path) -> dict[str, Subset]:
    """The described subsets by name; {} when the manifest has no `sampling`. Raises SamplingError."""
    raw = (manifest or {}).get("sampling")
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise SamplingError(
            f"{where}: sampling: expected a list of subsets, got {type(raw).__name__}", "sampling"
        )
    subsets: dict[str, Subset] = {}
    for i, entry in enumerate(raw):
        s = parse_entry(entry, str(where), f"sampling[{i}]")
        if s.name in subsets:
            raise SamplingError(
                f"{where}: sampling[{i}].subset: {s.name!r} is described twice", "sampling"
            )
        subsets[s.name] = s
    defaults = [s.name for s in subsets.values() if s.default]
    if len(defaults) > 1:
        raise SamplingError(
            f"{where}: sampling: more than one default subset: {defaults}", "sampling"
        )
    return subsets


def row_fields(row: dict) -> tuple[str | None, float | None]:
    """A listing row's `subset` and `inclusion_prob`; raises SamplingError naming the field."""
    subset = row.get("subset")
    if subset is not None and (not isinstance(subset, str) or not subset.strip()):
        raise SamplingError(f"expected a non-empty string, got {subset!r}", "subset")
    try:
        prob = _probability(row.get("inclusion_prob"), "listing", "inclusion_prob")
    except SamplingError as exc:
        raise SamplingError(
            str(exc).removeprefix("listing: inclusion_prob: "), "inclusion_prob"
        ) from exc
    return subset, prob


def undescribed(subset: str, where: str, manifest_path: str | Path) -> str:
    """The error for a listing whose subset the manifest does not describe."""
    return f"{where}: subset: {subset!r} is not described in {manifest_path} `sampling`"


# ---- per listing --------------------------------------------------------------------------------
def subsets_of(snapshot: Snapshot) -> dict[str, Subset]:
    return parse_sampling(snapshot.manifest, Path(snapshot.root) / "snapshot.json")


def listing_subsets(
    snapshot: Snapshot, listings: Sequence[Listing] | None = None
) -> list[str | None]:
    """Each listing's subset: its `subset` field, else the default subset, else None."""
    subsets = subsets_of(snapshot)
    default = next((s.name for s in subsets.values() if s.default), None)
    return [x.subset or default for x in (snapshot.listings if listings is None else listings)]


def inclusion_probs(snapshot: Snapshot, listings: Sequence[Listing] | None = None) -> np.ndarray:
    """Inclusion probability per listing (aligned with `listings`, default all); NaN = unknown.

    A listing's own `inclusion_prob` wins over its subset's `rate` (strata, score bins).
    """
    listings = snapshot.listings if listings is None else listings
    subsets = subsets_of(snapshot)
    out = np.full(len(listings), np.nan)
    for i, (x, name) in enumerate(zip(listings, listing_subsets(snapshot, listings), strict=True)):
        rate = subsets[name].rate if name is not None else None
        p = x.inclusion_prob if x.inclusion_prob is not None else rate
        out[i] = np.nan if p is None else p
    return out


def inclusion_weights(
    snapshot: Snapshot, listings: Sequence[Listing] | None = None
) -> np.ndarray | None:
    """1 / inclusion probability per listing (aligned with `listings`, default all listings).

    None when any of those listings has no known probability: no subset, or a subset whose rate
    is unknown (a review queue, an enriched sample) and no `inclusion_prob` of its own.
    """
    p = inclusion_probs(snapshot, listings)
    return None if np.isnan(p).any() else 1.0 / p


# ---- what `validate` prints ---------------------------------------------------------------------
def summarize(snapshot: Snapshot) -> list[dict]:
    """Per described subset: design, rate, population, listings here (labeled), weight if uniform."""
    names = Counter(listing_subsets(snapshot))
    labeled = Counter(listing_subsets(snapshot, snapshot.labeled))
    out = []
    for s in subsets_of(snapshot).values():
        out.append({"subset": s.name, "design": s.design, "rate": s.rate, "default": s.default,
                    "population": {"from": s.population_from, "to": s.population_to,
                                   "listings": s.population_listings},
                    "listings": names[s.name], "labeled": labeled[s.name], "note": s.note})  # fmt: skip
    if out and names[None]:  # listings outside every described subset
        out.append(
            {"subset": None, "design": None, "listings": names[None], "labeled": labeled[None]}
        )
    return out


def format_lines(entries: list[dict], weights_known: bool) -> list[str]:
    if not entries:
        return ["sampling   not described (no `sampling` in snapshot.json): no traffic weights"]
    lines = [
        f"sampling   traffic weights {'known for every listing' if weights_known else 'unknown'}"
    ]
    for e in entries:
        if e["subset"] is None:
            lines.append(
                f"  {'(no subset)':<20} {e['listings']:>7} listings ({e['labeled']} labeled): design unknown"
            )
            continue
        rate = (
            "rate unknown"
            if e["rate"] is None
            else f"rate {e['rate']:g} (weight {1 / e['rate']:g})"
        )
        pop = e["population"]
        span = (
            f", population {pop['from'] or '?'}..{pop['to'] or '?'}"
            if pop["from"] or pop["to"]
            else ""
        )
        size = f" of {pop['listings']:,} listings" if pop["listings"] else ""
        default = ", default" if e["default"] else ""
        lines.append(f"  {e['subset']:<20} {e['listings']:>7} listings ({e['labeled']} labeled): "
                     f"{e['design']}, {rate}{span}{size}{default}")  # fmt: skip
    return lines


def describe(snapshot: Snapshot) -> str:
    """A few lines saying how the snapshot was sampled and whether traffic weights exist."""
    return "\n".join(format_lines(summarize(snapshot), inclusion_weights(snapshot) is not None))


# ---- `feedback merge` ---------------------------------------------------------------------------
def merged_sampling(
    parent: dict, where: str | Path, reviews_name: str, rate: float | None = None
) -> tuple[list[dict], str]:
    """The merged manifest's `sampling` (the parent's entries, verbatim, plus one review_queue
    entry for the listings the merge labels) and that new subset's name."""
    taken = parse_sampling(parent, where)
    name = REVIEW_SUBSET
    k = 1
    while name in taken:
        k += 1
        name = f"{REVIEW_SUBSET}-{k}"
    entry = {"subset": name, "design": "review_queue", "rate": rate,
             "note": f"listings first labeled by the review decisions of {reviews_name} "
                     "(`mmdetect feedback merge`)" + ("" if rate else "; inclusion rate unknown")}  # fmt: skip
    _probability(rate, "feedback merge", "--review-rate")  # the one value a user gives here
    return [*((parent or {}).get("sampling") or []), entry], name
