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

import io
import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from mmdetect.data.samples_images import CUES, render_photo
from mmdetect.data.samples_readme import readme
from mmdetect.data.samples_text import (
    CATEGORIES,
    clean_text,
    hard_negative,
    neutral_text,
    stuff_keywords,
    violation_text,
)
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

TRAIN_MONTHS = ("2026-06", "2026-07", "2026-08", "2026-09")
DRIFT_MONTH = "2026-10"
# share of each class among violating listings (primary label)
MIX_EARLY = {"counterfeit": .20, "stolen_goods": .14, "adult": .13, "cash_voucher": .16,
             "game_account": .17, "keyword_stuffing": .10, "inappropriate": .10}  # fmt: skip
MIX_OCTOBER = {"counterfeit": .16, "stolen_goods": .11, "adult": .10, "cash_voucher": .14,
               "game_account": .31, "keyword_stuffing": .09, "inappropriate": .09}  # fmt: skip
SECOND_LABEL = {"counterfeit": ["keyword_stuffing", "stolen_goods"], "stolen_goods": ["counterfeit"],
                "adult": ["inappropriate"], "cash_voucher": ["game_account", "keyword_stuffing"],
                "game_account": ["cash_voucher"], "keyword_stuffing": ["counterfeit"],
                "inappropriate": ["adult"]}  # fmt: skip
PHOTO_WEIGHTS = {1: 84, 2: 11, 3: 3, 4: 2}  # how many photos, when a listing has any
MAX_JPEG_BYTES = 4096  # one disk block: keeps data_samples/ small
MODES = ("image", "text", "both")  # where a violation's cue is
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


@dataclass
class _Plan:
    split: str
    created: datetime
    labels: tuple[str, ...]
    modes: dict[str, str] = field(default_factory=dict)
    n_photos: int = 1
    id: str = ""


def _quota(n: int, shares: dict[str, float]) -> list[str]:
    """Exactly n names in proportion to `shares` (largest remainder), each at least once if n allows."""
    raw = {k: n * v / sum(shares.values()) for k, v in shares.items()}
    got = {k: max(1 if n >= len(shares) else 0, int(x)) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - int(raw[k]), reverse=True):
        if sum(got.values()) >= n:
            break
        got[k] += 1
    return [k for k, c in got.items() for _ in range(c)][:n]


def _moment(rng: random.Random, month: str) -> datetime:
    start = datetime.strptime(month + "-01", "%Y-%m-%d")
    end = (start + timedelta(days=32)).replace(day=1)
    return start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "+09:00"


def _plan_split(rng, split, n, months, violation_rate, mix) -> list[_Plan]:
    n_viol = round(n * violation_rate)
    primaries = _quota(n_viol, mix)
    mode_of = {}
    for c in mix:  # a third each, the remainder starting at a random place
        off = rng.randrange(3)
        mode_of[c] = [MODES[(i + off) % 3] for i in range(primaries.count(c))]
        rng.shuffle(mode_of[c])
    plans = []
    for c in primaries:
        labels = [c]
        if rng.random() < 0.15:
            labels.append(rng.choice(SECOND_LABEL[c]))
        modes = {c: mode_of[c].pop(), **{x: rng.choice(MODES) for x in labels[1:]}}
        modes = {x: "text" if x == "keyword_stuffing" else m for x, m in modes.items()}
        plans.append(_Plan(split, _moment(rng, rng.choice(months)), tuple(sorted(labels)), modes))
    plans += [_Plan(split, _moment(rng, rng.choice(months)), ()) for _ in range(n - n_viol)]
    rng.shuffle(plans)
    # ~10% without photos, only among listings whose cue does not need one
    free = [i for i, p in enumerate(plans) if set(p.modes.values()) <= {"text"}]
    no_photo = set(rng.sample(free, min(len(free), round(0.10 * n))))
    for i, p in enumerate(plans):
        need = sum(m != "text" for m in p.modes.values())
        count = rng.choices(list(PHOTO_WEIGHTS), list(PHOTO_WEIGHTS.values()))[0]
        p.n_photos = 0 if i in no_photo else max(need, count)
    return plans


def _flip(rng: random.Random, labels: tuple[str, ...]) -> tuple[str, ...]:
    """A wrong label set: clean becomes a violation, a violation becomes clean or another class."""
    if not labels or rng.random() < 0.3:
        others = [c for c in DEFAULT_TAXONOMY if c not in labels]
        return tuple(sorted([rng.choice(others)]))
    return () if rng.random() < 0.6 else tuple(sorted({rng.choice(DEFAULT_TAXONOMY)} - set(labels)))


def _save_jpeg(img, path: Path) -> None:
    """JPEG at quality 85, lowered in steps until the file fits MAX_JPEG_BYTES (deterministic)."""
    for quality in (85, 78, 70, 60, 50):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= MAX_JPEG_BYTES:
            break
    path.write_bytes(buf.getvalue())


def _listing(p: _Plan, seed: int, image_size: int, split_dir: Path, pool=None) -> dict:
    """Write the photos of one planned listing and return its row (without labels).

    With a `pool` (samples_traffic.PhotoPool), photos that show no cue are shared pool files.
    """
    rng = random.Random(f"{seed}/{p.id}")
    drift = p.created.strftime("%Y-%m") == DRIFT_MONTH
    text_labels = [c for c in p.labels if p.modes[c] != "image" and c != "keyword_stuffing"]
    if text_labels:
        only = p.modes[text_labels[0]] == "text"
        cat, title, desc, price = violation_text(rng, text_labels[0], text_labels[1:], drift, only)
        kind = cat
    elif p.labels and p.labels != ("keyword_stuffing",):
        cue = [c for c in p.labels if c != "keyword_stuffing"][0]
        cat, title, desc, price = neutral_text(rng, cue, drift)
        kind = cat
    elif not p.labels and rng.random() < 0.15:
        cat, title, desc, price, kind = hard_negative(rng, drift)
    else:
        cat = rng.choice(CATEGORIES)
        title, desc, price, kind = clean_text(rng, cat, drift)
    if "keyword_stuffing" in p.labels:
        title, desc = stuff_keywords(rng, title, desc, drift)
    cues = [c for c in p.labels if p.modes[c] != "text"]
    extra = [rng.choice(cues) if cues and rng.random() < 0.5 else kind for _ in range(p.n_photos)]
    kinds = cues + extra[: p.n_photos - len(cues)]  # every cue once, sometimes in more photos
    rng.shuffle(kinds)
    images = []
    for k, photo_kind in enumerate(kinds):
        if pool is not None and photo_kind not in CUES:  # own rng: `rng` draws stay as they were
            images.append(pool.path(photo_kind, random.Random(f"{seed}/{p.id}/{k}/pool"), images))
            continue
        rel = f"images/{p.id}_{k}.jpg"
        img = render_photo(photo_kind, random.Random(f"{seed}/{p.id}/{k}"), image_size, drift)
        _save_jpeg(img, split_dir / rel)
        images.append(rel)
    row = {"id": p.id, "title": title, "description": desc,
           "price": None if rng.random() < 0.03 else price,
           "category": None if rng.random() < 0.02 else cat,
           "images": images, "created_at": _iso(p.created)}  # fmt: skip
    return row


def _write_snapshot(
    split_dir: Path, name: str, rows: list[dict], description: str, sampling: list | None = None
) -> dict:
    with open(split_dir / "listings.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    labeled = [r for r in rows if "labels" in r]
    counts = {
        "listings": len(rows),
        "labels": {c: sum(c in r["labels"] for r in labeled) for c in DEFAULT_TAXONOMY},
        "clean": sum(not r["labels"] for r in labeled),
        "unlabeled": len(rows) - len(labeled),
        "no_photo": sum(not r["images"] for r in rows),
        "photos": sum(len(r["images"]) for r in rows),
        "months": dict(sorted(Counter(r["created_at"][:7] for r in rows).items())),
    }
    manifest = {"name": name, "taxonomy": list(DEFAULT_TAXONOMY), "parents": [],
                **({"sampling": sampling} if sampling else {}),
                "counts": counts, "description": description}  # fmt: skip
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (split_dir / "snapshot.json").write_text(text, encoding="utf-8")
    return counts


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
    from mmdetect.data.samples_traffic import write_traffic  # it builds on this module

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
