"""A deterministic generator of the sample snapshots shipped in `data_samples/`.

`generate_samples(out_dir, seed)` writes three snapshots (docs/snapshot-format.md) and a review file:

* `train/`    labeled listings of 2026-06 .. 2026-09;
* `drift/`    labeled listings of 2026-10, which brings new slang, game titles, gift-card brands
              and photo styles that the earlier months never show, and more game_account;
* `incoming/` unlabeled 2026-10 listings flagged for review (a higher violation rate);
* `reviews.jsonl` review decisions for most incoming ids, a few ids reviewed twice (the latest is
              right), and a few unknown ids.

Every violation carries its cue in the text, the photos, or both (about a third each), so a model
needs both towers. Same seed, same bytes: all randomness comes from seeded `random.Random`s.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples.readme import readme
from mmdetect.samples.snapshot import (
    DRIFT_MONTH,
    MODES,
    TRAIN_MONTHS,
    _flip,
    _iso,
    _listing,
    _moment,
    _Plan,
    _plan_split,
    _write_snapshot,
)

# share of each class among violating listings (primary label)
MIX_EARLY = {"counterfeit": .20, "stolen_goods": .14, "adult": .13, "cash_voucher": .16,
             "game_account": .17, "keyword_stuffing": .10, "inappropriate": .10}  # fmt: skip
MIX_OCTOBER = {"counterfeit": .16, "stolen_goods": .11, "adult": .10, "cash_voucher": .14,
               "game_account": .31, "keyword_stuffing": .09, "inappropriate": .09}  # fmt: skip
_NOTE = ("labeled listings that earlier detectors, rules and user reports sent to reviewers, "
         "enriched to about {:.0%} prohibited (synthetic: per-class quotas); the inclusion "
         "probability of a listing is unknown, so these listings give no traffic-level weights: "
         "see ../traffic for a random sample")  # fmt: skip
ENRICHED = {  # how train/ and drift/ were sampled (mmdetect/data/sampling.py)
    "train": {"subset": "train", "design": "enriched_by_score", "rate": None, "default": True,
              "population": {"from": "2026-06-01", "to": "2026-10-01", "listings": None},
              "note": _NOTE.format(0.22)},
    "drift": {"subset": "drift", "design": "enriched_by_score", "rate": None, "default": True,
              "population": {"from": "2026-10-01", "to": "2026-11-01", "listings": None},
              "note": _NOTE.format(0.24)},
}  # fmt: skip


def _reviews(rng: random.Random, plans: list[_Plan], coverage: float = 0.76) -> list[dict]:
    """Review decisions for incoming listings: ~2% wrong, a few ids twice, a few unknown ids."""
    chosen = sorted(rng.sample(plans, round(coverage * len(plans))), key=lambda p: p.id)
    twice = {p.id for p in rng.sample(chosen, max(2, len(chosen) // 100))}
    out = []
    for p in chosen:
        at = p.created + timedelta(minutes=rng.randint(30, 96 * 60))
        noisy = p.id not in twice and rng.random() < 0.02
        labels = _flip(rng, p.labels) if noisy else p.labels
        out.append({"id": p.id, "labels": list(labels), "reviewed_at": _iso(at),
                    "reviewer": f"cs-{rng.randint(1, 24):02d}"})  # fmt: skip
        if p.id in twice:  # an earlier, wrong decision that the later one overrides
            early = p.created + (at - p.created) * rng.uniform(0.1, 0.9)
            out.append({"id": p.id, "labels": list(_flip(rng, p.labels)), "reviewed_at": _iso(early),
                        "reviewer": f"cs-{rng.randint(1, 24):02d}"})  # fmt: skip
    for i in range(3):  # reviews of listings that exist nowhere
        at = _moment(rng, DRIFT_MONTH)
        labels = rng.choice([[], [rng.choice(DEFAULT_TAXONOMY)]])
        out.append(
            {"id": f"L9{i:06d}", "labels": labels, "reviewed_at": _iso(at), "reviewer": "cs-99"}
        )
    return sorted(out, key=lambda r: (r["reviewer"], r["reviewed_at"], r["id"]))


def generate_samples(
    out_dir: Path,
    seed: int = 0,
    n_train: int = 1800,
    n_drift: int = 500,
    n_incoming: int = 600,
    image_size: int = 128,
    n_traffic: int = 0,
    n_traffic_unlabeled: int = 0,
) -> dict:
    """Write train/, drift/, incoming/, reviews.jsonl and README.md under out_dir; return counts.

    `n_traffic` / `n_traffic_unlabeled` > 0 also write traffic/ and traffic_unlabeled/, random
    samples of 2026-09..10 traffic with that many listings a month (samples_traffic.py); they
    draw from their own random streams, so the other outputs do not depend on them. Only these
    paths are replaced: anything else in out_dir (e.g. a tokenizer) is left alone.
    """
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    train = _plan_split(rng, "train", n_train, TRAIN_MONTHS, 0.22, MIX_EARLY)
    drift = _plan_split(rng, "drift", n_drift, (DRIFT_MONTH,), 0.24, MIX_OCTOBER)
    incoming = _plan_split(rng, "incoming", n_incoming, (DRIFT_MONTH,), 0.36, MIX_OCTOBER)
    october = sorted(drift + incoming, key=lambda p: (p.created, p.split))
    for i, p in enumerate(sorted(train, key=lambda p: p.created) + october):
        p.id = f"L{i + 1:07d}"
    summary: dict = {"seed": seed, "splits": {}}
    descriptions = {
        "train": "Synthetic labeled listings of 2026-06..2026-09 (mmdetect sample data).",
        "drift": "Synthetic labeled listings of 2026-10: new slang, game titles and photo styles.",
        "incoming": "Synthetic unlabeled 2026-10 listings flagged for review; see ../reviews.jsonl.",
    }
    for split, plans in (("train", train), ("drift", drift), ("incoming", incoming)):
        split_dir = out_dir / split
        shutil.rmtree(split_dir, ignore_errors=True)
        (split_dir / "images").mkdir(parents=True)
        rows, modes = [], Counter()
        for p in sorted(plans, key=lambda p: p.id):
            row = _listing(p, seed, image_size, split_dir)
            if split != "incoming":
                noise = random.Random(f"{seed}/{p.id}/label")
                labels = _flip(noise, p.labels) if noise.random() < 0.025 else p.labels
                at = p.created + timedelta(minutes=noise.randint(30, 72 * 60))
                row.update(labels=list(labels), label_source="review", reviewed_at=_iso(at))
                modes.update(f"{c}:{p.modes[c]}" for c in p.labels)
                modes["flipped"] += labels != p.labels
            else:
                modes.update(f"{c}:{p.modes[c]}" for c in p.labels)
            rows.append(row)
        months = sorted({p.created.strftime("%Y-%m") for p in plans})
        name = f"{split}-{months[0]}" + (f"..{months[-1]}" if len(months) > 1 else "")
        sampling = [ENRICHED[split]] if split in ENRICHED else None
        counts = _write_snapshot(split_dir, name, rows, descriptions[split], sampling)
        summary["splits"][split] = {**counts, "cue_modes": dict(sorted(modes.items()))}
    reviews = _reviews(random.Random(f"{seed}/reviews"), incoming)
    with open(out_dir / "reviews.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for r in reviews:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    ids, known = Counter(r["id"] for r in reviews), {p.id for p in incoming}
    summary["reviews"] = {
        "rows": len(reviews),
        "ids": len(ids),
        "reviewed_twice": sum(n > 1 for n in ids.values()),
        "unknown_ids": sum(i not in known for i in ids),
        "incoming_true_labels": {c: sum(c in p.labels for p in incoming) for c in DEFAULT_TAXONOMY},
    }
    from mmdetect.samples.traffic import write_traffic  # it builds on this module

    for split, n, labeled in (("traffic", n_traffic, True), ("traffic_unlabeled", n_traffic_unlabeled, False)):  # fmt: skip
        if n > 0:
            summary["splits"][split] = write_traffic(out_dir, seed, split, n, labeled, image_size)
    sizes = {
        "n_train": n_train,
        "n_drift": n_drift,
        "n_incoming": n_incoming,
        "image_size": image_size,
        "n_traffic": n_traffic,
        "n_traffic_unlabeled": n_traffic_unlabeled,
    }
    (out_dir / "README.md").write_text(readme(summary, sizes, MODES), encoding="utf-8")
    return summary
