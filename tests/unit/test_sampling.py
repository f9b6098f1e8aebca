"""Sampling descriptions: manifest validation, inclusion weights, feedback merge, traffic samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmdetect.cli.commands import main
from mmdetect.data.reader import SnapshotError, read_snapshot
from mmdetect.data.sampling import (
    describe,
    inclusion_probs,
    inclusion_weights,
    listing_subsets,
)
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples.generator import generate_samples
from mmdetect.samples.text import DRIFT_WORDS
from mmdetect.samples.traffic import PREVALENCE, RATE, write_traffic

REPO = Path(__file__).resolve().parents[2]
T0 = "2026-09-02T10:00:00+09:00"


def listing(i: int, **extra) -> dict:
    return {"id": f"L{i:04d}", "title": f"item {i}", "description": "", "price": 1000,
            "category": "toys", "images": [], "created_at": T0, **extra}  # fmt: skip


def make_snapshot(root: Path, rows: list[dict], manifest: dict | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (root / "listings.jsonl").write_text(text, encoding="utf-8")
    if manifest is not None:
        (root / "snapshot.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


RANDOM = {"subset": "traffic", "design": "random", "rate": 0.01,
          "population": {"from": "2026-09-01", "to": "2026-10-01", "listings": 20000}}  # fmt: skip
ENRICHED = {"subset": "queue", "design": "enriched_by_score", "default": True}


# ---- manifest validation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampling", "field", "says"),
    [
        ({"x": 1}, "sampling", "expected a list"),
        ([{**RANDOM, "design": "stratified"}], "sampling[0].design", "unknown design 'stratified'"),
        ([{**RANDOM, "rate": 0}], "sampling[0].rate", "must be in (0, 1]"),
        ([{**RANDOM, "rate": 1.5}], "sampling[0].rate", "must be in (0, 1]"),
        ([{**RANDOM, "rate": -0.1}], "sampling[0].rate", "must be in (0, 1]"),
        ([{**RANDOM, "rate": "0.01"}], "sampling[0].rate", "expected a number"),
        ([{**RANDOM, "rate": True}], "sampling[0].rate", "expected a number"),
        ([RANDOM, {**ENRICHED, "rat": 0.5}], "sampling[1]", "unknown keys ['rat']"),
        ([{"design": "random"}], "sampling[0].subset", "non-empty string"),
        ([RANDOM, RANDOM], "sampling[1].subset", "'traffic' is described twice"),
        ([ENRICHED, {**RANDOM, "default": True}], "sampling", "more than one default"),
        ([{**RANDOM, "default": "yes"}], "sampling[0].default", "true or false"),
        (
            [{**RANDOM, "population": {"from": "2026-10-01", "to": "2026-09-01"}}],
            "sampling[0].population",
            "not before",
        ),  # fmt: skip
        (
            [{**RANDOM, "population": {"from": "September"}}],
            "sampling[0].population.from",
            "ISO 8601",
        ),  # fmt: skip
        (
            [{**RANDOM, "population": {"listings": 0}}],
            "sampling[0].population.listings",
            "positive integer",
        ),  # fmt: skip
        ([{**RANDOM, "population": {"size": 3}}], "sampling[0].population", "unknown keys"),
    ],
)
def test_bad_sampling_is_one_clear_error_naming_the_manifest_and_field(
    tmp_path: Path, sampling, field: str, says: str
) -> None:
    snap = make_snapshot(tmp_path / "s", [listing(1, labels=[])], {"sampling": sampling})
    for strict in (True, False):  # a bad description is never a skip
        with pytest.raises(SnapshotError) as err:
            read_snapshot(snap, strict=strict)
        message = str(err.value)
        assert message.startswith(f"{snap / 'snapshot.json'}: {field}") and says in message
    assert main(["validate", str(snap)]) == 1


def test_listing_naming_an_undescribed_subset_is_an_error_naming_line_and_manifest(
    tmp_path: Path,
) -> None:
    rows = [listing(1, labels=[], subset="traffic"), listing(2, labels=[], subset="audit")]
    snap = make_snapshot(tmp_path / "s", rows, {"sampling": [RANDOM]})
    with pytest.raises(SnapshotError) as err:
        read_snapshot(snap)  # lenient too: the manifest and rows disagree
    assert str(err.value) == (
        f"{snap / 'listings.jsonl'}:2: subset: 'audit' is not described in "
        f"{snap / 'snapshot.json'} `sampling`"
    )
    bare = make_snapshot(tmp_path / "bare", [listing(1, subset="traffic")], None)
    with pytest.raises(SnapshotError, match="'traffic' is not described in .*snapshot.json"):
        read_snapshot(bare)


def test_bad_row_sampling_fields_are_counted_skips_or_strict_errors(tmp_path: Path) -> None:
    rows = [listing(1, subset="traffic"), listing(2, subset=3), listing(3, subset=""),
            listing(4, subset="traffic", inclusion_prob=0), listing(5, inclusion_prob="1")]  # fmt: skip
    snap = make_snapshot(tmp_path / "s", rows, {"sampling": [RANDOM]})
    got = read_snapshot(snap)
    assert [x.id for x in got.listings] == ["L0001"]
    assert got.problems.counts == {"bad_sampling": 4}
    examples = " ".join(got.problems.examples["bad_sampling"])
    assert "listings.jsonl:2: subset: expected a non-empty string, got 3" in examples
    assert "listings.jsonl:4: inclusion_prob: must be in (0, 1], got 0" in examples
    with pytest.raises(SnapshotError, match=r"listings.jsonl:2: subset: expected a non-empty"):
        read_snapshot(snap, strict=True)


# ---- weights ---------------------------------------------------------------------------------
def test_weights_follow_rate_default_subset_and_per_listing_probability(tmp_path: Path) -> None:
    rows = [listing(1, labels=[], subset="traffic"), listing(2, labels=["adult"], subset="traffic"),
            listing(3, labels=[]), listing(4, labels=["adult"], inclusion_prob=0.5)]  # fmt: skip
    snap = read_snapshot(
        make_snapshot(tmp_path / "s", rows, {"sampling": [RANDOM, ENRICHED]}), strict=True
    )
    assert listing_subsets(snap) == ["traffic", "traffic", "queue", "queue"]
    p = inclusion_probs(snap)
    assert p[:2].tolist() == [0.01, 0.01] and np.isnan(p[2]) and p[3] == 0.5
    assert inclusion_weights(snap) is None  # listing 3: enriched, rate unknown
    assert inclusion_weights(snap, snap.listings[:2]).tolist() == [100.0, 100.0]
    assert inclusion_weights(snap, [snap.listings[3], snap.listings[0]]).tolist() == [2.0, 100.0]
    assert inclusion_weights(snap, []).tolist() == []
    text = describe(snap)
    assert "traffic weights unknown" in text
    assert (
        "traffic                    2 listings (2 labeled): random, rate 0.01 (weight 100)" in text
    )
    assert (
        "queue                      2 listings (2 labeled): enriched_by_score, rate unknown" in text
    )


def test_no_description_means_no_weights(tmp_path: Path) -> None:
    snap = read_snapshot(make_snapshot(tmp_path / "s", [listing(1, labels=[])], None))
    assert inclusion_weights(snap) is None and listing_subsets(snap) == [None]
    assert describe(snap).startswith("sampling   not described")


def test_reweighting_an_enriched_sample_recovers_the_traffic_prevalence(tmp_path: Path) -> None:
    """Traffic of 100,000 listings, 1 % prohibited; positives drawn at 0.2, negatives at 0.002:
    the sample is 50 % positive and its weighted prevalence is exactly 1 %."""
    pos = [listing(i, labels=["adult"], inclusion_prob=0.2) for i in range(200)]
    neg = [listing(1000 + i, labels=[], inclusion_prob=0.002) for i in range(198)]
    entry = {"subset": "q", "design": "enriched_by_score", "default": True,
             "population": {"listings": 100_000}}  # fmt: skip
    snap = read_snapshot(make_snapshot(tmp_path / "s", pos + neg, {"sampling": [entry]}))
    w = inclusion_weights(snap)
    y = np.array([bool(x.labels) for x in snap.listings])
    assert y.mean() == pytest.approx(0.5, abs=0.01)
    assert w.sum() == pytest.approx(100_000)
    assert (w * y).sum() / w.sum() == pytest.approx(0.01)


# ---- feedback merge --------------------------------------------------------------------------
def test_merge_keeps_parent_entries_and_adds_a_review_queue_subset(tmp_path: Path) -> None:
    rows = [listing(1, labels=[]), listing(2), listing(3), listing(4, subset="traffic")]
    snap = make_snapshot(tmp_path / "s", rows, {"name": "p", "sampling": [ENRICHED, RANDOM]})
    reviews = tmp_path / "reviews.jsonl"
    decided = [{"id": i, "labels": ["adult"], "reviewed_at": "2026-09-05T10:00:00+09:00"}
               for i in ("L0001", "L0002", "L0004")]  # fmt: skip
    reviews.write_text("".join(json.dumps(r) + "\n" for r in decided), encoding="utf-8")
    out = tmp_path / "m"
    assert main(["feedback", "merge", "--snapshot", str(snap), "--reviews", str(reviews),
                 "--out", str(out)]) == 0  # fmt: skip
    manifest = json.loads((out / "snapshot.json").read_text(encoding="utf-8"))
    assert manifest["sampling"][:2] == [ENRICHED, RANDOM]  # verbatim
    added = manifest["sampling"][2]
    assert (added["subset"], added["design"], added["rate"]) == ("reviews", "review_queue", None)
    merged = read_snapshot(out, strict=True)
    # L0001 was labeled already (stays in the default subset); L0002 enters by review; L0003
    # stays unlabeled; L0004 keeps the subset it was drawn in
    assert [x.subset for x in merged.listings] == [None, "reviews", None, "traffic"]
    assert listing_subsets(merged) == ["queue", "reviews", "queue", "traffic"]

    again = tmp_path / "m2"
    assert main(["feedback", "merge", "--snapshot", str(out), "--reviews", str(reviews),
                 "--out", str(again), "--review-rate", "0.25"]) == 0  # fmt: skip
    last = json.loads((again / "snapshot.json").read_text(encoding="utf-8"))["sampling"][-1]
    assert (last["subset"], last["rate"]) == ("reviews-2", 0.25)


def test_merge_refuses_a_bad_rate_or_a_bad_parent_description(tmp_path: Path, capsys) -> None:
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text(json.dumps({"id": "L0001", "labels": [], "reviewed_at": T0}) + "\n")
    snap = make_snapshot(tmp_path / "s", [listing(1)], {"sampling": [RANDOM]})
    args = ["feedback", "merge", "--snapshot", str(snap), "--reviews", str(reviews)]
    assert main([*args, "--out", str(tmp_path / "a"), "--review-rate", "2"]) == 1
    assert "--review-rate: must be in (0, 1], got 2.0" in capsys.readouterr().err
    bad = make_snapshot(tmp_path / "b", [listing(1)], {"sampling": [{**RANDOM, "design": "x"}]})
    args[3] = str(bad)
    assert main([*args, "--out", str(tmp_path / "c")]) == 1
    assert "snapshot.json: sampling[0].design: unknown design 'x'" in capsys.readouterr().err
    orphan = make_snapshot(tmp_path / "o", [listing(1, subset="gone")], {})
    args[3] = str(orphan)
    assert main([*args, "--out", str(tmp_path / "d")]) == 1
    assert "'gone' is not described" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "acd")


# ---- generated traffic -----------------------------------------------------------------------
def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_traffic_is_deterministic_and_leaves_the_other_splits_unchanged(tmp_path: Path) -> None:
    small = {"n_train": 30, "n_drift": 10, "n_incoming": 10, "image_size": 32}
    generate_samples(tmp_path / "a", seed=0, **small, n_traffic=150, n_traffic_unlabeled=100)
    generate_samples(tmp_path / "b", seed=0, **small, n_traffic=150, n_traffic_unlabeled=100)
    generate_samples(tmp_path / "c", seed=0, **small)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b
    assert {k: v for k, v in a.items() if not k.startswith("traffic")} | {"README.md": b""} == (
        c | {"README.md": b""}
    )
    write_traffic(tmp_path / "d", 1, "traffic", 150, True, 32)
    assert tree(tmp_path / "d/traffic")["listings.jsonl"] != a["traffic/listings.jsonl"]
    for name, n in (("traffic", 300), ("traffic_unlabeled", 200)):
        snap = read_snapshot(tmp_path / "a" / name, strict=True)
        assert len(snap.listings) == n and snap.problems.total == 0
        assert (len(snap.labeled) == n) == (name == "traffic")
        assert inclusion_weights(snap).tolist() == [1 / RATE] * n
        assert {x.subset for x in snap.listings} == {name}


def test_traffic_prevalence_is_realistic_and_october_brings_the_drift(tmp_path: Path) -> None:
    counts = write_traffic(tmp_path, 0, "traffic", 2500, True, 32)
    snap = read_snapshot(tmp_path / "traffic", strict=True, check_images=False)
    n = len(snap.listings)
    assert n == 5000 and counts["months"] == {"2026-09": 2500, "2026-10": 2500}
    share = {c: sum(c in x.labels for x in snap.listings) / n for c in DEFAULT_TAXONOMY}
    assert 0.01 <= sum(bool(x.labels) for x in snap.listings) / n <= 0.03
    assert share["adult"] <= 0.002 and share["stolen_goods"] <= 0.003
    assert 0.006 <= share["game_account"] <= 0.01 and all(s > 0 for s in share.values())
    for c in DEFAULT_TAXONOMY:  # within a factor of 2 of the planned traffic prevalence
        planned = (PREVALENCE["2026-09"][c] + PREVALENCE["2026-10"][c]) / 2
        assert planned / 2 <= share[c] <= 2 * planned, c
    assert counts["cue_modes"]["flipped"] <= 0.003 * n
    by_month = {m: [x for x in snap.listings if x.created_at.strftime("%Y-%m") == m]
                for m in ("2026-09", "2026-10")}  # fmt: skip
    text = {m: "\n".join(x.title + x.description for x in xs) for m, xs in by_month.items()}
    assert not [w for w in DRIFT_WORDS if w in text["2026-09"]]
    assert len([w for w in DRIFT_WORDS if w in text["2026-10"]]) >= 5
    photos = {p for x in snap.listings for p in x.images}
    assert len(photos) < 0.2 * sum(len(x.images) for x in snap.listings)  # pooled


@pytest.mark.skipif(not (REPO / "data_samples/traffic").is_dir(), reason="no committed traffic")
def test_committed_samples_carry_their_sampling_design() -> None:
    traffic = read_snapshot(REPO / "data_samples/traffic", check_images=False)
    assert len(traffic.listings) == 5000 and inclusion_weights(traffic).tolist() == [500.0] * 5000
    unlabeled = read_snapshot(REPO / "data_samples/traffic_unlabeled", check_images=False)
    assert len(unlabeled.listings) == 5000 and not unlabeled.labeled
    for split in ("train", "drift"):
        snap = read_snapshot(REPO / "data_samples" / split, check_images=False)
        assert set(listing_subsets(snap)) == {split} and inclusion_weights(snap) is None
        assert snap.manifest["sampling"][0]["design"] == "enriched_by_score"
