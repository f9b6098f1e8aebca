"""The pieces every sample generator shares: split planning (labels, months, photo counts),
one listing's row and photos, and the snapshot writer.
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples.images import CUES, render_photo
from mmdetect.samples.text import (
    CATEGORIES,
    clean_text,
    hard_negative,
    neutral_text,
    stuff_keywords,
    violation_text,
)

TRAIN_MONTHS = ("2026-06", "2026-07", "2026-08", "2026-09")


DRIFT_MONTH = "2026-10"


SECOND_LABEL = {"counterfeit": ["keyword_stuffing", "stolen_goods"], "stolen_goods": ["counterfeit"],
                "adult": ["inappropriate"], "cash_voucher": ["game_account", "keyword_stuffing"],
                "game_account": ["cash_voucher"], "keyword_stuffing": ["counterfeit"],
                "inappropriate": ["adult"]}  # fmt: skip


PHOTO_WEIGHTS = {1: 84, 2: 11, 3: 3, 4: 2}  # how many photos, when a listing has any


MAX_JPEG_BYTES = 4096  # one disk block: keeps data_samples/ small


MODES = ("image", "text", "both")  # where a violation's cue is


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
