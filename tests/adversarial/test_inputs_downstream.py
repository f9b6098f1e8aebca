"""Adversarial inputs past the reader (issue #12): reviews and listings in `feedback merge`,
`predictions.jsonl` in `evaluate --predictions`, and a snapshot that validates going through the
dataset and collate path that fit, evaluate and predict share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmdetect.data.reader import read_snapshot
from mmdetect.evaluate import EvaluationError, read_predictions
from mmdetect.ops.feedback import FeedbackError, merge_reviews
from tests.adversarial.test_inputs import line, row

AT = "2026-10-01T09:00:00+09:00"


def review(i, labels=["counterfeit"], at=AT, **over) -> bytes:  # noqa: B006
    return line({"id": f"L{i:04d}", "labels": labels, "reviewed_at": at, **over})


# (case, reviews.jsonl line 2, counted reason); line 1 is a valid review of L0001
REVIEWS = [
    ("id a list", review(2, id=["L0002"]), "wrong_type"),
    ("id an object", review(2, id={"a": 1}), "wrong_type"),
    ("id a number", review(2, id=2), "wrong_type"),
    ("id with control characters", review(2, id="L2\x00"), "bad_id"),
    ("labels a string", review(2, labels="counterfeit"), "wrong_type"),
    ("labels null", review(2, labels=None), "wrong_type"),
    ("reviewed_at not a date", review(2, at="last tuesday"), "bad_date"),
    ("reviewed_at a number", review(2, at=20261001), "wrong_type"),
    ("reviewed_at without offset", review(2, at="2026-10-01T09:00:00"), "bad_date"),
    ("reviewed_at out of range", review(2, at="9999-12-31T23:59:59-14:00"), "bad_date"),
    ("invalid UTF-8", review(2).replace(b"counterfeit", b"counter\xfffeit"), "invalid_utf8"),
    ("lone surrogate", review(2, reviewer="@@").replace(b'"@@"', b'"\\ud800"'), "bad_text"),
    ("not JSON", b"{", "invalid_json"),
    ("line over 1 MiB", review(2, reviewer="x" * (1 << 20)), "line_too_long"),
]


def merge_inputs(tmp_path: Path, review_line: bytes, listing_lines: list[bytes] | None = None):
    snap = tmp_path / "snap"
    snap.mkdir()
    rows = listing_lines or [line(row(1)), line(row(2))]
    (snap / "listings.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_bytes(b"\xef\xbb\xbf" + review(1) + b"\n" + review_line + b"\n")
    return snap, reviews


@pytest.mark.parametrize(("case", "bad", "reason"), REVIEWS, ids=[c[0] for c in REVIEWS])
def test_bad_review_is_a_counted_skip_with_file_line(tmp_path, case, bad, reason) -> None:
    snap, reviews = merge_inputs(tmp_path, bad)
    result = merge_reviews(snap, reviews, tmp_path / "out")
    counts = result["counts"]["reviews"]
    assert counts["skipped_by_reason"] == {reason: 1} and counts["applied"] == 1  # BOM line 1
    assert result["examples"]["skipped"][reason][0].startswith(f"{reviews}:2: ")
    with pytest.raises(FeedbackError, match=f"^{reviews}:2: "):
        merge_reviews(snap, reviews, tmp_path / "out2", strict=True)
    assert not (tmp_path / "out2").exists()


def test_merge_keeps_unreadable_listing_rows_verbatim(tmp_path: Path) -> None:
    bad = [b'{"id": ["L9"], "title": "list id"}', b'{"id": "L8", "title": "\xff"}', b"[1]"]
    rows = [b"\xef\xbb\xbf" + line(row(1)), *bad, line(row(2))]
    snap, reviews = merge_inputs(tmp_path, review(2, labels=["adult"]), rows)
    result = merge_reviews(snap, reviews, tmp_path / "out")
    out = (tmp_path / "out/listings.jsonl").read_bytes().split(b"\n")
    assert out[1:4] == bad  # byte for byte, for the reader to skip and count downstream
    assert json.loads(out[0])["labels"] == ["counterfeit"]  # BOM row found its review
    assert json.loads(out[4])["labels"] == ["adult"]
    assert result["counts"]["reviews"]["applied"] == 2
    assert result["counts"]["skipped_rows"] == {"missing_field": 1, "invalid_utf8": 1,
                                                "not_an_object": 1}  # fmt: skip


def test_merge_never_writes_into_its_input(tmp_path: Path) -> None:
    snap, reviews = merge_inputs(tmp_path, review(2))
    before = {p: p.read_bytes() for p in snap.rglob("*") if p.is_file()}
    for out, message in [(snap, "exists"), (snap / "merged", "inside the input snapshot"),
                         (snap / "a/b", "inside the input snapshot")]:  # fmt: skip
        with pytest.raises(FeedbackError, match=message):
            merge_reviews(snap, reviews, out)
    assert {p: p.read_bytes() for p in snap.rglob("*") if p.is_file()} == before
    assert not (snap / "a").exists()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_killed_merge_are_cleaned_or_reported(tmp_path: Path) -> None:
    import socket

    snap, reviews = merge_inputs(tmp_path, review(2))
    killed, foreign = tmp_path / ".out.tmp-killed", tmp_path / ".out.tmp-foreign"
    killed.mkdir()
    (killed / "listings.jsonl").write_text("half", encoding="utf-8")
    owner = {"pid": dead_pid(), "host": socket.gethostname()}
    (killed / ".owner.json").write_text(json.dumps(owner), encoding="utf-8")
    foreign.mkdir()
    result = merge_reviews(snap, reviews, tmp_path / "out")
    notes = result["examples"]["stale_temporaries"]
    assert not killed.exists() and foreign.exists()
    assert notes == [f"{foreign}: left in place (not ours, or from an older version: no owner)",
                     f"{killed}: removed (left by process {owner['pid']}, "
                     "which no longer runs)"]  # fmt: skip
    assert not list((tmp_path / "out").glob(".owner*"))  # the marker never ships
    assert sorted(p.name for p in tmp_path.glob(".out.tmp-*")) == [".out.tmp-foreign"]


def prediction(i: int, **over) -> bytes:
    return line({"id": f"L{i}", "scores": {"a": 0.2, "b": 0.7}, "labels": ["b"], **over})


PREDICTIONS = [
    ("invalid UTF-8", prediction(2).replace(b'"L2"', b'"L\xff"'), ":2: not UTF-8: byte"),
    (
        "created_at 20261001",
        prediction(2, created_at=20261001),
        ":2: created_at: expected an ISO 8601 string",
    ),  # fmt: skip
    (
        "created_at year 1 at +14:00",
        prediction(2, created_at="0001-01-01T00:00:00+14:00"),
        ":2: created_at: not an ISO 8601 date",
    ),  # fmt: skip
    ("score 10**400", prediction(2).replace(b"0.7", b"1" + b"0" * 400), ":2: scores.b: expected"),
    ("score NaN", prediction(2).replace(b"0.7", b"NaN"), ":2: scores.b: expected a probability"),
    (
        "lone surrogate in id",
        prediction(2).replace(b'"L2"', b'"\\ud800"'),
        ":2: id: lone surrogate",
    ),
    ("id a list", prediction(2, id=["L2"]), ":2: id: missing or not a non-empty string"),
    ("n_photos -1", prediction(2, n_photos=-1), ":2: n_photos: expected a count"),
    ("line over 1 MiB", prediction(2, pad="x" * (1 << 20)), ":2: line longer than"),
    ("nesting 100000 deep", b"[" * 100_000, ":2: invalid JSON: nested too deeply"),
]


@pytest.mark.parametrize(("case", "bad", "message"), PREDICTIONS, ids=[c[0] for c in PREDICTIONS])
def test_bad_prediction_line_is_a_one_line_error(tmp_path, case, bad, message) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + prediction(1) + b"\n" + bad + b"\n")
    with pytest.raises(EvaluationError) as err:
        read_predictions(path)
    assert str(err.value).startswith(f"{path}{message}") and "\n" not in str(err.value)


def test_predictions_with_a_bom_keep_their_first_row(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + prediction(1) + b"\n" + prediction(2) + b"\n")
    records, taxonomy = read_predictions(path)
    assert [r.id for r in records] == ["L1", "L2"] and taxonomy == ("a", "b")
    with pytest.raises(EvaluationError, match="cannot read predictions"):
        read_predictions(tmp_path)  # a directory


def test_a_snapshot_that_validates_goes_through_dataset_and_collate(tmp_path, ja_vocab_dir):
    """Every oddity the reader accepts, plus rows it skips, then photos damaged after validation:
    building, indexing and collating the dataset must not raise."""
    from mmdetect.data.dataset import Item, ListingDataset, collate_listings
    from mmdetect.data.tokenize import encode_batch, load_tokenizer
    from mmdetect.models.image import ImagePreprocess, build_transforms

    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.png", "later_truncated.jpg", "later_deleted.jpg"):
        Image.new("RGB", (40, 30), (90, 10, 10)).save(tmp_path / "images" / name)
    rows = [
        line(row(1, title="a\x00b\x07c\x1b[31m", description="本物\u2028です\r\n")),
        line(row(2, description="長い説明" * 50_000, price=None, category=None)),  # 200k chars
        line(row(3, created_at="2026-07-01T10:00:00", labels=None, images=["images/a.jpg"] * 3)),
        line(row(4, title="🔥" * 500, images=["images/b.png", "../x.jpg", "images/a\x00.jpg"])),
        line(row(5, images=["images/later_truncated.jpg", "images/later_deleted.jpg"])),
        line(row(6, price=10**400)),  # skipped
        b"\xff\xfe",  # skipped
        line(row(7, title="@@")).replace(b'"@@"', b'"\\ud800"'),  # skipped
    ]
    (tmp_path / "listings.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(rows) + b"\n")
    snap = read_snapshot(tmp_path)
    assert [x.id for x in snap.listings] == ["L0001", "L0002", "L0003", "L0004", "L0005"]
    data = (tmp_path / "images/later_truncated.jpg").read_bytes()
    (tmp_path / "images/later_truncated.jpg").write_bytes(data[:100])
    os.remove(tmp_path / "images/later_deleted.jpg")

    tokenizer = load_tokenizer(str(ja_vocab_dir))
    ids = encode_batch(tokenizer, [(x.title, x.description) for x in snap.listings], 32)
    transform = build_transforms(ImagePreprocess(16), train=False)
    items = [Item(x, snap.root) for x in snap.listings]
    ds = ListingDataset(items, ids, snap.taxonomy, ["sneakers"], transform, max_photos=2,
                        price_mean=0.0, price_std=1.0)  # fmt: skip
    batch = collate_listings([ds[i] for i in range(len(ds))], image_size=16)
    assert batch["input_ids"].shape == (5, 32)
    assert batch["image_mask"].sum(1).tolist() == [0, 0, 1, 1, 0]  # damaged photos masked
    assert batch["labels"][2].isnan().all()  # null labels stay unlabeled
