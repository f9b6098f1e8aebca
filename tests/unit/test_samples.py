"""The sample-data generator: snapshots that read back, determinism, drift, fusion and reviews."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from statistics import median

import pytest
from PIL import Image

from mmdetect.data.reader import read_snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples.generator import MIX_EARLY, generate_samples
from mmdetect.samples.images import KINDS, render_photo
from mmdetect.samples.snapshot import TRAIN_MONTHS, _plan_split
from mmdetect.samples.text import (
    CATEGORIES,
    DRIFT_WORDS,
    LUX,
    hard_negative,
    violation_text,
)

SMALL = {"n_train": 120, "n_drift": 40, "n_incoming": 40, "image_size": 64}
TINY = {"n_train": 30, "n_drift": 10, "n_incoming": 10, "image_size": 32}
SPLITS = ("train", "drift", "incoming")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gen") / "data_samples"
    return out, generate_samples(out, seed=0, **SMALL)


def rows(out: Path, split: str) -> list[dict]:
    lines = (out / split / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def reviews(out: Path) -> list[dict]:
    lines = (out / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def text(r: dict) -> str:
    return r["title"] + "\n" + r["description"]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_snapshots_read_back_strict_and_match_their_manifests(samples) -> None:
    out, summary = samples
    for split, n in zip(SPLITS, (120, 40, 40), strict=True):
        snap = read_snapshot(out / split, strict=True)
        assert len(snap.listings) == n and snap.problems.total == 0
        assert snap.taxonomy == DEFAULT_TAXONOMY
        counts = snap.manifest["counts"]
        assert {**counts, "cue_modes": summary["splits"][split]["cue_modes"]} == summary["splits"][
            split
        ]
        if split == "incoming":
            assert all(x.labels is None and x.reviewed_at is None for x in snap.listings)
            assert "sampling" not in snap.manifest  # a review queue, described by feedback merge
            continue
        (entry,) = snap.manifest["sampling"]  # enriched, rate unknown, covers rows without subset
        assert (entry["subset"], entry["design"], entry["rate"]) == (
            split,
            "enriched_by_score",
            None,
        )
        assert entry["default"] and all(x.subset is None for x in snap.listings)
        assert all(x.labels is not None and x.label_source == "review" for x in snap.listings)
        per_class = Counter(c for x in snap.listings for c in x.labels)
        assert counts["labels"] == {c: per_class[c] for c in DEFAULT_TAXONOMY}
        assert counts["clean"] == sum(not x.labels for x in snap.listings)


def test_listing_fields_are_well_formed(samples) -> None:
    out, _ = samples
    all_rows = [r for s in SPLITS for r in rows(out, s)]
    ids = [r["id"] for r in all_rows]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"L\d{7}", i) for i in ids)
    for r in all_rows:
        assert r["title"].strip() and isinstance(r["description"], str)
        assert r["price"] is None or (isinstance(r["price"], int) and r["price"] >= 0)
        assert r["category"] is None or r["category"] in CATEGORIES
        assert r["created_at"].endswith("+09:00")
        assert all(p == f"images/{r['id']}_{k}.jpg" for k, p in enumerate(r["images"]))
        assert 0 <= len(r["images"]) <= 4
    assert {r["category"] for r in all_rows} >= set(CATEGORIES) - {"handmade"}
    with Image.open(out / "train" / rows(out, "train")[0]["images"][0]) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 64))


def test_months_train_is_four_consecutive_months_and_the_rest_is_october(samples) -> None:
    out, _ = samples
    assert sorted({r["created_at"][:7] for r in rows(out, "train")}) == list(TRAIN_MONTHS)
    for split in ("drift", "incoming"):
        assert {r["created_at"][:7] for r in rows(out, split)} == {"2026-10"}


def test_class_balance_photos_and_noise(samples) -> None:
    out, summary = samples
    train, drift = rows(out, "train"), rows(out, "drift")
    per_class = Counter(c for r in train for c in r["labels"])
    assert all(per_class[c] >= 2 for c in DEFAULT_TAXONOMY), per_class
    assert 0.70 <= sum(not r["labels"] for r in train) / len(train) <= 0.85
    share = lambda rs, c: sum(c in r["labels"] for r in rs) / len(rs)  # noqa: E731
    assert share(drift, "game_account") > share(train, "game_account")  # October shifts the mix
    for split in SPLITS:
        no_photo = sum(not r["images"] for r in rows(out, split)) / len(rows(out, split))
        assert 0.05 <= no_photo <= 0.15
    assert 0 < summary["splits"]["train"]["cue_modes"]["flipped"] <= 0.06 * 120
    assert any(len(r["labels"]) == 2 for r in train)


def test_photo_free_violations_carry_their_cue_in_text_and_modes_split_in_thirds() -> None:
    plans = _plan_split(random.Random(3), "train", 2000, TRAIN_MONTHS, 0.22, MIX_EARLY)
    assert all(set(p.modes.values()) <= {"text"} for p in plans if p.n_photos == 0)
    assert all(p.n_photos >= sum(m != "text" for m in p.modes.values()) for p in plans)
    modes = Counter((c, m) for p in plans for c, m in p.modes.items())
    for c in DEFAULT_TAXONOMY:
        total = sum(modes[c, m] for m in ("image", "text", "both"))
        if c == "keyword_stuffing":
            assert modes[c, "text"] == total > 0
        else:
            assert all(0.25 <= modes[c, m] / total <= 0.42 for m in ("image", "text", "both"))


def test_drift_vocabulary_never_occurs_before_october(samples) -> None:
    out, _ = samples
    early = "\n".join(text(r) for r in rows(out, "train"))
    october = "\n".join(text(r) for s in ("drift", "incoming") for r in rows(out, s))
    assert [w for w in DRIFT_WORDS if w in early] == []
    assert len([w for w in DRIFT_WORDS if w in october]) >= 8
    new_tokens = set(october.split()) - set(early.split())
    assert {"ID譲渡", "引継ぎコード", "ネクストペイ", "1:1"} & new_tokens


def test_price_is_a_signal_for_counterfeit_luxury() -> None:
    rng = random.Random(0)
    fake = [violation_text(rng, "counterfeit", [], False) for _ in range(200)]
    fake_prices = [p for _, t, _, p in fake if any(b in t for b in LUX)]
    real = [hard_negative(rng, False) for _ in range(600)]
    real_prices = [p for _, t, _, p, _ in real if any(b in t for b in LUX)]
    assert max(fake_prices) < 10_000 and min(real_prices) >= 40_000


def test_keyword_stuffing_titles_are_long(samples) -> None:
    out, _ = samples
    train = rows(out, "train")
    stuffed = [len(r["title"].split()) for r in train if r["labels"] == ["keyword_stuffing"]]
    clean = [len(r["title"].split()) for r in train if not r["labels"]]
    assert stuffed and median(stuffed) >= 2 * median(clean)


def test_reviews_cover_incoming_with_duplicates_and_unknown_ids(samples) -> None:
    out, summary = samples
    incoming = {r["id"] for r in rows(out, "incoming")}
    revs = reviews(out)
    ids = Counter(r["id"] for r in revs)
    assert len([i for i in ids if i not in incoming]) == 3
    assert 0.6 <= len([i for i in ids if i in incoming]) / len(incoming) <= 0.9
    twice = [i for i, n in ids.items() if n == 2]
    assert len(twice) >= 2 and summary["reviews"]["reviewed_twice"] == len(twice)
    for i in twice:
        a, b = [r for r in revs if r["id"] == i]
        assert a["labels"] != b["labels"] and a["reviewed_at"] != b["reviewed_at"]
    for r in revs:
        assert set(r) == {"id", "labels", "reviewed_at", "reviewer"}
        assert set(r["labels"]) <= set(DEFAULT_TAXONOMY) and r["reviewed_at"].endswith("+09:00")


def test_same_seed_same_bytes_other_seed_differs_other_files_kept(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    (a / "tokenizer").mkdir(parents=True)
    (a / "tokenizer" / "vocab.txt").write_text("keep me")
    generate_samples(a, seed=0, **TINY)
    generate_samples(a, seed=0, **TINY)  # rewriting in place replaces its own files only
    generate_samples(b, seed=0, **TINY)
    generate_samples(c, seed=1, **TINY)
    ta, tb = tree_bytes(a), tree_bytes(b)
    assert ta.pop("tokenizer/vocab.txt") == b"keep me"
    assert ta == tb and len(ta) > 30
    assert tree_bytes(c)["train/listings.jsonl"] != tb["train/listings.jsonl"]


def test_every_photo_kind_renders_deterministically() -> None:
    for kind in KINDS:
        one = render_photo(kind, random.Random(kind), 48, drift=True)
        two = render_photo(kind, random.Random(kind), 48, drift=True)
        assert one.size == (48, 48) and one.mode == "RGB"
        assert one.tobytes() == two.tobytes()
