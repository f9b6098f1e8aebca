"""The snapshot reader against every kind of bad input, on real files in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdetect.data import MAX_PIXELS, SnapshotError, load_image, read_snapshot
from mmdetect.data.images import ImageProblem
from mmdetect.data.summary import format_summary, summarize


def row(i: int = 1, **overrides) -> dict:
    base = {
        "id": f"L{i:04d}",
        "title": "【新品未使用】スニーカー 27cm",
        "description": "一度も履いていません。",
        "price": 5000,
        "category": "sneakers",
        "images": [],
        "created_at": "2026-07-01T10:00:00+09:00",
        "labels": [],
    }
    base.update(overrides)
    return base


def write_snapshot(root: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write rows as listings.jsonl; raw_lines replaces line N (1-based) with raw text."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for lineno, text in (raw_lines or {}).items():
        lines[lineno - 1] = text
    (root / "listings.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def save_jpeg(path: Path, color=(200, 30, 30), size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def test_good_snapshot_round_trip(tmp_path: Path) -> None:
    save_jpeg(tmp_path / "images/a.jpg")
    rows = [row(1, images=["images/a.jpg"], labels=["counterfeit"]), row(2, price=None)]
    snap = read_snapshot(write_snapshot(tmp_path, rows), strict=True)
    assert [x.id for x in snap.listings] == ["L0001", "L0002"]
    assert snap.listings[0].images == ("images/a.jpg",)
    assert snap.listings[0].labels == ("counterfeit",)
    assert snap.listings[1].price is None
    assert snap.listings[1].labels == ()
    assert snap.listings[0].created_at.month == 7
    assert snap.problems.total == 0


def test_absent_labels_mean_unlabeled(tmp_path: Path) -> None:
    r = row(1)
    del r["labels"]
    snap = read_snapshot(write_snapshot(tmp_path, [r, row(2)]))
    assert snap.listings[0].labels is None
    assert len(snap.labeled) == 1


BAD_ROWS = [
    ("invalid_json", None, '{"id": "L0009", "title": '),
    ("not_an_object", None, "[1, 2, 3]"),
    ("missing_field", {"drop": "title"}, None),
    ("wrong_type", {"price": "5000"}, None),
    ("wrong_type", {"price": True}, None),
    ("wrong_type", {"images": "images/a.jpg"}, None),
    ("unknown_label", {"labels": ["counterfit"]}, None),
    ("bad_price", {"price": -1}, None),
    ("bad_price", {"price": 12.5}, None),
    ("empty_title", {"title": "   "}, None),
    ("bad_date", {"created_at": "yesterday"}, None),
]


@pytest.mark.parametrize(("reason", "change", "raw"), BAD_ROWS)
def test_bad_row_lenient_skips_and_counts(tmp_path, reason, change, raw) -> None:
    bad = row(2)
    if change and "drop" in change:
        del bad[change["drop"]]
    elif change:
        bad.update(change)
    raw_lines = {2: raw} if raw else None
    snap = read_snapshot(write_snapshot(tmp_path, [row(1), bad, row(3)], raw_lines))
    assert [x.id for x in snap.listings] == ["L0001", "L0003"]
    assert dict(snap.problems.counts) == {reason: 1}
    assert "listings.jsonl:2" in snap.problems.examples[reason][0]


@pytest.mark.parametrize(("reason", "change", "raw"), BAD_ROWS)
def test_bad_row_strict_names_file_line_field(tmp_path, reason, change, raw) -> None:
    bad = row(2)
    if change and "drop" in change:
        del bad[change["drop"]]
    elif change:
        bad.update(change)
    path = write_snapshot(tmp_path, [row(1), bad], {2: raw} if raw else None)
    with pytest.raises(SnapshotError) as err:
        read_snapshot(path, strict=True)
    message = str(err.value)
    assert f"{path / 'listings.jsonl'}:2:" in message
    if change:
        field = change.get("drop") or next(iter(change))
        assert f": {field}:" in message


def test_nan_price_rejected(tmp_path: Path) -> None:
    # json.dumps writes NaN, and Python's json reads it back: the reader must still reject it.
    path = write_snapshot(tmp_path, [row(1, price=float("nan")), row(2)])
    snap = read_snapshot(path)
    assert dict(snap.problems.counts) == {"bad_price": 1}
    assert [x.id for x in snap.listings] == ["L0002"]


def test_duplicate_id_keeps_first(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, [row(1, title="first"), row(1, title="second")])
    snap = read_snapshot(path)
    assert [x.title for x in snap.listings] == ["first"]
    assert dict(snap.problems.counts) == {"duplicate_id": 1}
    with pytest.raises(SnapshotError, match=r"listings.jsonl:2: id: duplicate id 'L0001'"):
        read_snapshot(path, strict=True)


def test_text_is_stored_unaltered(tmp_path: Path) -> None:
    title = "ｽﾆｰｶｰ ＡＢＣ１２３ 🔥限定🔥"
    snap = read_snapshot(write_snapshot(tmp_path, [row(1, title=title, description="")]))
    assert snap.listings[0].title == title
    assert snap.listings[0].description == ""


def test_image_paths_escaping_the_snapshot_are_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    save_jpeg(outside)
    snap_dir = tmp_path / "snap"
    (snap_dir / "images").mkdir(parents=True)
    os.symlink(outside, snap_dir / "images/link.jpg")
    save_jpeg(snap_dir / "images/ok.jpg")
    rows = [
        row(1, images=["../outside.jpg", "images/ok.jpg"]),
        row(2, images=[str(outside)]),
        row(3, images=["images/link.jpg"]),
    ]
    snap = read_snapshot(write_snapshot(snap_dir, rows))
    assert [x.images for x in snap.listings] == [("images/ok.jpg",), (), ()]
    assert snap.problems.counts["image_path_escapes"] == 3
    assert snap.problems.counts["all_photos_failed"] == 2
    with pytest.raises(SnapshotError, match="leaves the snapshot"):
        read_snapshot(snap_dir, strict=True)


def test_missing_and_corrupt_photos_keep_the_listing(tmp_path: Path) -> None:
    save_jpeg(tmp_path / "images/good.jpg", size=(64, 64))
    data = (tmp_path / "images/good.jpg").read_bytes()
    (tmp_path / "images/truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "images/garbage.jpg").write_bytes(b"not a jpeg at all")
    rows = [
        row(1, images=["images/missing.jpg", "images/good.jpg"]),
        row(2, images=["images/truncated.jpg", "images/garbage.jpg"]),
    ]
    snap = read_snapshot(write_snapshot(tmp_path, rows))
    assert [x.images for x in snap.listings] == [("images/good.jpg",), ()]
    assert dict(snap.problems.counts) == {
        "image_missing": 1,
        "image_corrupt": 2,
        "all_photos_failed": 1,
    }


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("CMYK", lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0))),
        ("P", lambda: Image.new("RGB", (8, 8), (255, 0, 0)).convert("P")),
        ("LA", lambda: Image.new("LA", (8, 8), (128, 255))),
        ("RGBA", lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))),
    ],
)
def test_photo_modes_convert_to_rgb(tmp_path: Path, mode: str, make) -> None:
    img = make()
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    pixel = out.getpixel((0, 0))
    expected = {
        "CMYK": (255, 0, 0),  # C=0,M=255,Y=255 -> red (JPEG CMYK rounding allowed below)
        "P": (255, 0, 0),
        "LA": (128, 128, 128),
        "RGBA": (255, 255, 255),  # fully transparent -> composited on white
        "I;16": (255, 255, 255),  # 16-bit white scales to 8-bit white, not clipped grey
    }[mode]
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, expected, strict=True)), pixel


def test_decompression_bomb_rejected_without_decoding(tmp_path: Path) -> None:
    side = int(MAX_PIXELS**0.5) + 10
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path)  # 1-bit: tiny file, huge pixel count
    with pytest.raises(ImageProblem, match="exceeds") as err:
        load_image(path)
    assert err.value.reason == "image_too_large"
    write_snapshot(tmp_path, [row(1, images=["bomb.png"])])
    snap = read_snapshot(tmp_path)
    assert snap.problems.counts["image_too_large"] == 1
    assert snap.listings[0].images == ()


def test_not_a_snapshot(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no listings.jsonl"):
        read_snapshot(tmp_path)


def test_manifest_taxonomy_is_used(tmp_path: Path) -> None:
    write_snapshot(tmp_path, [row(1, labels=["spam"])])
    (tmp_path / "snapshot.json").write_text(json.dumps({"taxonomy": ["spam", "scam"]}))
    snap = read_snapshot(tmp_path, strict=True)
    assert snap.taxonomy == ("spam", "scam")
    assert snap.listings[0].labels == ("spam",)


def test_summary_counts(tmp_path: Path) -> None:
    save_jpeg(tmp_path / "images/a.jpg")
    rows = [
        row(1, labels=["counterfeit", "keyword_stuffing"], images=["images/a.jpg"]),
        row(2, labels=["counterfeit"], created_at="2026-08-03T00:00:00+09:00"),
        row(3),
        row(4, price=-5),
    ]
    s = summarize(read_snapshot(write_snapshot(tmp_path, rows)))
    assert s["rows"] == 3 and s["labeled"] == 3 and s["clean"] == 1 and s["multi_label"] == 1
    assert s["labels"]["counterfeit"] == 2 and s["labels"]["keyword_stuffing"] == 1
    assert s["labels"]["adult"] == 0
    assert s["months"] == {"2026-07": 2, "2026-08": 1}
    assert s["photos_per_listing"] == {0: 2, 1: 1}
    assert s["problems"] == {"bad_price": 1}
    text = format_summary(s)
    assert "bad_price" in text and "2026-08" in text
