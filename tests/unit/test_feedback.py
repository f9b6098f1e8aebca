"""`mmdetect feedback merge` on hand-written snapshots and reviews; the retrain config; warm start
from a checkpoint or a bundle (`tiny_assets`: a seeded checkpoint and its exported bundle)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from mmdetect.cli.commands import main
from mmdetect.data.reader import read_snapshot
from mmdetect.ops.feedback import FeedbackError, merge_reviews
from tests.unit.test_export import Assets
from tests.unit.test_reader import row, save_jpeg, write_snapshot

REPO = Path(__file__).resolve().parents[2]
T1, T2, T3 = "2026-10-01T09:00:00+09:00", "2026-10-02T09:00:00+09:00", "2026-10-03T09:00:00+09:00"


def review(i: int, labels: list[str], at: str, **extra) -> str:
    return json.dumps({"id": f"L{i:04d}", "labels": labels, "reviewed_at": at, **extra})


# Line numbers matter: they are the examples the merge reports.
REVIEWS = [
    review(1, ["counterfeit"], T3),  # 1: L0001 latest, though first in the file
    review(1, [], T1),  # 2: L0001 earlier: a conflict, loses
    review(2, ["adult"], T2),  # 3: L0002 tie in time ...
    review(2, ["cash_voucher"], T2),  # 4: ... the later line wins: a conflict and a tie
    review(3, ["game_account"], T1),  # 5: L0003 twice, same labels: no conflict
    review(3, ["game_account"], T2, reviewer="cs-2"),  # 6
    review(9999, ["adult"], T1),  # 7: an id the snapshot lacks
    "{not json",  # 8: invalid_json
    json.dumps({"id": "L0004", "labels": ["adult"]}),  # 9: missing_field reviewed_at
    review(4, ["weapons"], T1),  # 10: unknown_label
    review(4, ["adult"], "yesterday"),  # 11: bad_date
    review(4, ["adult"], "2026-10-01T09:00:00"),  # 12: bad_date (no UTC offset)
    "",  # blank lines are skipped, not counted
    review(6, [], T2),  # 14: L0006 (labeled stolen_goods) reviewed as clean
]


def make_snapshot(root: Path) -> Path:
    for name in ("a.jpg", "b.jpg"):
        save_jpeg(root / "images" / name)
    rows = [
        row(1, images=["images/a.jpg"], seller="s-1"),  # extra fields survive the merge
        row(2, images=["images/b.jpg", "images/a.jpg"]),
        row(3),
        row(4),
        row(5, labels=["counterfeit"], label_source="rule"),  # not reviewed: kept verbatim
        row(6, labels=["stolen_goods"]),
    ]
    for r in rows[:4]:
        del r["labels"]  # incoming listings are unlabeled
    write_snapshot(root, rows)
    manifest = {"name": "incoming-test", "taxonomy": ["counterfeit", "stolen_goods", "adult",
                "cash_voucher", "game_account"], "parents": []}  # fmt: skip
    (root / "snapshot.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def write_reviews(path: Path, lines: list[str] = REVIEWS) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file (and symlink) under root with the SHA256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def rows_by_id(snapshot: Path) -> dict[str, dict]:
    lines = (snapshot / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return make_snapshot(tmp_path / "incoming"), write_reviews(tmp_path / "reviews.jsonl")


def test_merge_applies_latest_review_and_counts_everything(inputs, tmp_path, capsys) -> None:
    snap, reviews = inputs
    before = tree_digest(snap)
    out = tmp_path / "merged"
    assert main(["feedback", "merge", "--snapshot", str(snap), "--reviews", str(reviews),
                 "--out", str(out)]) == 0  # fmt: skip
    assert tree_digest(snap) == before  # the input is untouched

    rows = rows_by_id(out)
    assert list(rows) == ["L0001", "L0002", "L0003", "L0004", "L0005", "L0006"]  # order kept
    assert rows["L0001"]["labels"] == ["counterfeit"] and rows["L0001"]["reviewed_at"] == T3
    assert rows["L0001"]["seller"] == "s-1" and rows["L0001"]["images"] == ["images/a.jpg"]
    assert rows["L0002"]["labels"] == ["cash_voucher"]  # tie: the later line
    assert rows["L0003"] == {**row(3), "labels": ["game_account"], "label_source": "review",
                                  "reviewed_at": T2, "subset": "reviews"}  # fmt: skip
    assert "labels" not in rows["L0004"]  # only bad reviews: stays unlabeled
    assert rows["L0006"]["labels"] == [] and rows["L0006"]["label_source"] == "review"
    # rows without a review are written back byte for byte
    original = (snap / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    merged = (out / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    assert merged[3] == original[3] and merged[4] == original[4]

    manifest = json.loads((out / "snapshot.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "incoming-test+reviews"
    assert manifest["taxonomy"][-1] == "game_account"  # the parent's taxonomy, not the default
    snap_parent, review_parent = manifest["parents"]
    assert snap_parent["name"] == "incoming-test" and snap_parent["path"] == str(snap)
    assert review_parent["path"] == str(reviews)
    assert review_parent["sha256"] == hashlib.sha256(reviews.read_bytes()).hexdigest()
    c = manifest["counts"]
    assert (c["listings"], c["labeled"], c["unlabeled"], c["clean"]) == (6, 5, 1, 1)
    assert c["labels"] == {"counterfeit": 2, "stolen_goods": 0, "adult": 0, "cash_voucher": 1,
                           "game_account": 1}  # fmt: skip
    assert c["reviews"] == {
        "rows": 13, "valid": 8, "ids": 5, "applied": 4, "changed": 1, "newly_labeled": 3,
        "conflicts": 2, "ties": 1, "unknown_ids": 1, "older_than_listing": 0, "skipped": 5,
        "skipped_by_reason": {"invalid_json": 1, "missing_field": 1, "unknown_label": 1,
                              "bad_date": 2},
    }  # fmt: skip

    printed = capsys.readouterr().out
    assert "conflicts: 2 ids with disagreeing reviews" in printed
    assert (
        f"L0001: [] at {T1} (line 2), ['counterfeit'] at {T3} (line 1) -> ['counterfeit']"
        in printed
    )
    assert f"{reviews}:7: L9999" in printed  # unknown id with file:line
    assert f"{reviews}:8: -: invalid JSON" in printed and f"{reviews}:12: reviewed_at" in printed
    assert read_snapshot(out, strict=True).problems.total == 0  # a valid snapshot


def test_photos_are_hard_linked_or_copied_never_reencoded(inputs, tmp_path, monkeypatch) -> None:
    snap, reviews = inputs
    linked = tmp_path / "linked"
    merge_reviews(snap, reviews, linked)
    src, dst = snap / "images/a.jpg", linked / "images/a.jpg"
    assert dst.read_bytes() == src.read_bytes() and os.path.samefile(src, dst)

    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    copied = tmp_path / "copied"
    merge_reviews(snap, reviews, copied)
    assert (copied / "images/a.jpg").read_bytes() == src.read_bytes()
    assert not os.path.samefile(src, copied / "images/a.jpg")
    assert set(tree_digest(copied)) == set(tree_digest(linked))


def test_merging_twice_is_idempotent(inputs, tmp_path) -> None:
    snap, reviews = inputs
    first, second = tmp_path / "first", tmp_path / "second"
    merge_reviews(snap, reviews, first)
    again = merge_reviews(first, reviews, second)
    assert (first / "listings.jsonl").read_bytes() == (second / "listings.jsonl").read_bytes()
    assert again["name"] == "incoming-test+reviews"
    assert again["counts"]["reviews"]["applied"] == 4
    assert again["counts"]["reviews"]["newly_labeled"] == 0
    assert again["counts"]["reviews"]["changed"] == 0


def test_a_label_decided_after_the_review_is_kept(tmp_path) -> None:
    rows = [row(1, labels=["adult"], reviewed_at=T3), row(2, labels=["adult"], reviewed_at=T1)]
    snap = write_snapshot(tmp_path / "s", rows)
    reviews = write_reviews(tmp_path / "r.jsonl", [review(1, [], T2), review(2, [], T2)])
    result = merge_reviews(snap, reviews, tmp_path / "out")
    rows = rows_by_id(tmp_path / "out")
    assert rows["L0001"]["labels"] == ["adult"] and rows["L0002"]["labels"] == []
    assert result["counts"]["reviews"]["older_than_listing"] == 1


def test_strict_stops_at_the_first_bad_review(inputs, tmp_path, capsys) -> None:
    snap, reviews = inputs
    with pytest.raises(FeedbackError, match=r"reviews.jsonl:8: -: invalid JSON"):
        merge_reviews(snap, reviews, tmp_path / "out", strict=True)
    assert main(["feedback", "merge", "--snapshot", str(snap), "--reviews", str(reviews),
                 "--out", str(tmp_path / "out"), "--strict"]) == 1  # fmt: skip
    assert "reviews.jsonl:8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_refuses_to_overwrite_or_write_into_the_input(inputs, tmp_path) -> None:
    snap, reviews = inputs
    before = tree_digest(snap)
    (tmp_path / "exists").mkdir()
    for out, message in [(tmp_path / "exists", "exists"), (snap, "exists"),
                         (snap / "sub", "inside the input")]:  # fmt: skip
        with pytest.raises(FeedbackError, match=message):
            merge_reviews(snap, reviews, out)
    with pytest.raises(FeedbackError, match="no such reviews file"):
        merge_reviews(snap, tmp_path / "missing.jsonl", tmp_path / "new")
    assert tree_digest(snap) == before and not (tmp_path / "new").exists()


def test_merge_of_the_shipped_samples_matches_their_readme(tmp_path) -> None:
    """data_samples/README.md: 463 decisions on 459 ids, 4 ids reviewed twice, 3 unknown ids."""
    result = merge_reviews(REPO / "data_samples/incoming", REPO / "data_samples/reviews.jsonl",
                           tmp_path / "merged")  # fmt: skip
    r = result["counts"]["reviews"]
    assert (r["rows"], r["ids"], r["applied"], r["unknown_ids"], r["skipped"]) == (
        463, 459, 456, 3, 0)  # fmt: skip
    assert r["conflicts"] <= 4  # a twice-reviewed id conflicts only if the labels differ
    assert result["counts"]["labeled"] == 456 and result["counts"]["listings"] == 600
    assert result["counts"]["labels"]["game_account"] > 0


# ---- retraining --------------------------------------------------------------------------


def test_retrain_config_overlays_tiny(monkeypatch) -> None:
    from mmdetect.training.run import check_config

    monkeypatch.chdir(REPO)
    first = (REPO / "configs/train/retrain.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# mmdetect fit --config configs/train/tiny.yaml --config "
                            "configs/train/retrain.yaml --model.init_from")  # fmt: skip
    cfg = check_config(["--config", "configs/train/tiny.yaml", "--config",
                        "configs/train/retrain.yaml", "--model.init_from", "runs/x.ckpt"])  # fmt: skip
    assert cfg.data.snapshots == ["data_samples/train", "runs/feedback/merged"]
    assert cfg.data.split == "hash" and 0 < cfg.data.val_fraction < 0.5
    assert cfg.model.init_from == "runs/x.ckpt"
    assert cfg.model.lr < 0.002 and cfg.trainer.max_epochs < 8  # smaller than tiny.yaml's
    assert cfg.trainer.default_root_dir == "runs/retrain"
    assert cfg.trainer.logger.init_args.save_dir == "runs/retrain"
    assert cfg.model.text.hidden_size == 64  # the rest is tiny.yaml's


def fresh_module(assets: Assets, init_from: str | None):
    from mmdetect.training.module import DetectorModule

    hp = torch.load(assets.ckpt, weights_only=False)["hyper_parameters"]
    hp = {k: v for k, v in hp.items() if not k.startswith("_")}
    torch.manual_seed(123)  # not the checkpoint's seed
    return DetectorModule(**{**hp, "init_from": init_from})


def test_warm_start_from_a_checkpoint_or_a_bundle(assets, tmp_path) -> None:
    saved = torch.load(assets.ckpt, weights_only=False)["state_dict"]
    expected = {k[4:]: v for k, v in saved.items() if k.startswith("net.")}
    cold = fresh_module(assets, None).net.state_dict()
    assert not torch.equal(cold["head.weight"], expected["head.weight"])
    for source in (assets.ckpt, assets.bundle):
        state = fresh_module(assets, str(source)).net.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected), source


def test_warm_start_from_a_bundle_whose_checkpoint_changed_is_refused(assets, tmp_path) -> None:
    from mmdetect.artifacts.bundle_format import write_checksums

    ckpt = tmp_path / "tiny.ckpt"
    shutil.copy(assets.ckpt, ckpt)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = json.loads((assets.bundle / "meta.json").read_text())
    meta["checkpoint"]["path"] = str(ckpt)
    (bundle / "meta.json").write_text(json.dumps(meta))
    write_checksums(bundle)  # warm start verifies a bundle before reading it
    fresh_module(assets, str(bundle))  # same bytes: fine
    with ckpt.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match="has changed since the bundle was exported"):
        fresh_module(assets, str(bundle))
    ckpt.unlink()
    with pytest.raises(ValueError, match="does not exist"):
        fresh_module(assets, str(bundle))
    with pytest.raises(ValueError, match="not a bundle"):
        fresh_module(assets, str(tmp_path))
