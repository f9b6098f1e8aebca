"""Adversarial input corpus (issue #12): hostile listings, manifests, photos, reviews, predictions.

Each case writes a valid snapshot in tmp_path, applies one mutation, runs the real reader (or
merge, or predictions reader) and checks the counted reason or the exact error. `CORPUS` at the end
is the tally for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

from mmdetect.data.images import DECODE_MAX_PIXELS, load_image
from mmdetect.data.jsonl import MAX_LINE_BYTES
from mmdetect.data.reader import SnapshotError, read_snapshot
from mmdetect.data.records import in_period, parse_date_bound

GOOD = {
    "id": "L0002", "title": "スニーカー 27cm", "description": "一度も履いていません。",
    "price": 5000, "category": "sneakers", "images": [],
    "created_at": "2026-07-01T10:00:00+09:00", "labels": [],
}  # fmt: skip


def row(i: int, **over) -> dict:
    return {**GOOD, "id": f"L{i:04d}", **over}


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def snapshot(root: Path, bad: bytes, manifest: bytes | None = None) -> Path:
    """listings.jsonl = a good row, `bad` as line 2, a good row."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "listings.jsonl").write_bytes(b"\n".join([line(row(1)), bad, line(row(3))]) + b"\n")
    if manifest is not None:
        (root / "snapshot.json").write_bytes(manifest)
    return root


def raw_row(fragment: bytes) -> bytes:
    """Row 2 with `fragment` spliced in as the title's raw JSON bytes."""
    return line(row(2, title="@@")).replace(b'"@@"', fragment)


# (case, line 2 of listings.jsonl, counted reason)
ROWS = [
    ("bytes 0xff 0xfe", raw_row(b'"\xff\xfe"'), "invalid_utf8"),
    ("overlong UTF-8 '/'", raw_row(b'"\xc0\xaf"'), "invalid_utf8"),
    ("UTF-8-encoded surrogate", raw_row(b'"\xed\xa0\x80"'), "invalid_utf8"),
    ("Latin-1 text", raw_row('"Caf\xe9"'.encode("latin-1")), "invalid_utf8"),
    ("lone surrogate in title", raw_row(b'"\\ud800"'), "bad_text"),
    (
        "lone surrogate in a key",
        line(row(2)).replace(b'"title"', b'"\\udfff": 1, "title"'),
        "bad_text",
    ),
    (
        "lone surrogate in a photo path",
        line(row(2, images=["@@"])).replace(b'"@@"', b'"\\udc80"'),
        "bad_text",
    ),  # fmt: skip
    ("line over 1 MiB", line(row(2, description="x" * (MAX_LINE_BYTES + 10))), "line_too_long"),
    ("nesting 100000 deep", b"[" * 100_000, "invalid_json"),
    ("5000-digit integer", line(row(2)).replace(b"5000", b"9" * 5000), "number_too_long"),
    ("duplicate key", line(row(2)).replace(b'"price"', b'"price": 1, "price"'), "duplicate_key"),
    ("truncated JSON", line(row(2))[:20], "invalid_json"),
    ("row is a list", b"[1, 2]", "not_an_object"),
    ("row is null", b"null", "not_an_object"),
    ("price 10**400", line(row(2)).replace(b"5000", b"1" + b"0" * 400), "bad_price"),
    ("price 1e400 (inf)", line(row(2)).replace(b"5000", b"1e400"), "bad_price"),
    ("price -1e400", line(row(2)).replace(b"5000", b"-1e400"), "bad_price"),
    ("price NaN", line(row(2)).replace(b"5000", b"NaN"), "bad_price"),
    ("price 1e300", line(row(2, price=1e300)), "bad_price"),
    ("price -1", line(row(2, price=-1)), "bad_price"),
    ("price '5000'", line(row(2, price="5000")), "wrong_type"),
    ("price true", line(row(2, price=True)), "wrong_type"),
    ("created_at 20261001", line(row(2, created_at=20261001)), "wrong_type"),
    ("created_at not ISO", line(row(2, created_at="notadate")), "bad_date"),
    (
        "created_at year 1 at +14:00",
        line(row(2, created_at="0001-01-01T00:00:00+14:00")),
        "bad_date",
    ),  # fmt: skip
    ("created_at 200 chars", line(row(2, created_at="2" * 200)), "bad_date"),
    ("reviewed_at a number", line(row(2, reviewed_at=5)), "wrong_type"),
    ("id a list", line(row(2, id=["L2"])), "wrong_type"),
    ("id an object", line(row(2, id={"a": 1})), "wrong_type"),
    ("id a number", line(row(2, id=2)), "wrong_type"),
    ("id null", line(row(2, id=None)), "wrong_type"),
    ("id empty", line(row(2, id=" ")), "empty_id"),
    ("id with a newline", line(row(2, id="L2\nL3")), "bad_id"),
    ("id 300 chars", line(row(2, id="L" * 300)), "bad_id"),
    ("duplicate id", line(row(1)), "duplicate_id"),
    ("labels a string", line(row(2, labels="counterfeit")), "wrong_type"),
    ("labels [1]", line(row(2, labels=[1])), "wrong_type"),
    ("labels an object", line(row(2, labels={"counterfeit": 1})), "wrong_type"),
    ("label outside the taxonomy", line(row(2, labels=["weapons"])), "unknown_label"),
    ("category a number", line(row(2, category=5)), "wrong_type"),
    ("category a list", line(row(2, category=["x"])), "wrong_type"),
    ("description null", line(row(2, description=None)), "wrong_type"),
    ("title null", line(row(2, title=None)), "wrong_type"),
    ("title only spaces", line(row(2, title="\u3000 \t")), "empty_title"),
    ("images a string", line(row(2, images="a.jpg")), "wrong_type"),
    ("images [1]", line(row(2, images=[1])), "wrong_type"),
    ("label_source a number", line(row(2, label_source=5)), "wrong_type"),
    (
        "field missing",
        line({k: v for k, v in row(2).items() if k != "created_at"}),
        "missing_field",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("case", "bad", "reason"), ROWS, ids=[c[0] for c in ROWS])
def test_bad_row_is_a_counted_skip_and_a_strict_one_line_error(tmp_path, case, bad, reason):
    path = snapshot(tmp_path, bad)
    snap = read_snapshot(path)
    assert [x.id for x in snap.listings] == ["L0001", "L0003"]
    assert dict(snap.problems.counts) == {reason: 1}
    assert snap.problems.examples[reason][0].startswith(f"{path / 'listings.jsonl'}:2: ")
    with pytest.raises(SnapshotError) as err:
        read_snapshot(path, strict=True)
    assert str(err.value).startswith(f"{path / 'listings.jsonl'}:2: ")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_bom_blank_lines_and_crlf_keep_every_row(tmp_path: Path) -> None:
    rows = [line(row(1)), b"", line(row(2)) + b"\r", b"\xef\xbb\xbf" + line(row(3))]
    (tmp_path / "listings.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(rows) + b"\n")
    snap = read_snapshot(tmp_path, strict=True)
    assert [x.id for x in snap.listings] == ["L0001", "L0002", "L0003"]


def test_accepted_oddities_are_normalised(tmp_path: Path) -> None:
    bad = line(row(2, created_at="2026-07-01T10:00:00", labels=None, title="a\x00b\x07c"))
    listing = read_snapshot(snapshot(tmp_path, bad), strict=True).listings[1]
    assert listing.created_at == datetime(2026, 7, 1, 10, tzinfo=timezone.utc)  # naive = UTC
    assert listing.labels is None  # null labels = unlabeled
    assert listing.title == "a\x00b\x07c"  # stored as written; the tokenizer makes them spaces


MANIFESTS = [
    ("taxonomy a string", {"taxonomy": "abc"}, "taxonomy: expected a non-empty list"),
    ("taxonomy empty", {"taxonomy": []}, "taxonomy: expected a non-empty list"),
    ("taxonomy an object", {"taxonomy": {"a": 1}}, "taxonomy: expected a non-empty list"),
    ("taxonomy holds a number", {"taxonomy": ["a", 1]}, "taxonomy: not a class name: 1"),
    ("taxonomy holds ''", {"taxonomy": ["a", " "]}, "taxonomy: not a class name"),
    ("taxonomy duplicates", {"taxonomy": ["a", "b", "a"]}, "taxonomy: duplicate class names"),
    ("taxonomy surrogate", {"taxonomy": ["a", "\ud800"]}, "taxonomy: lone surrogate"),
    ("name a list", {"name": ["x"]}, "name: expected a string"),
    ("a list", [1], "expected a JSON object"),
    ("not JSON", b"{", "invalid JSON"),
    ("bad UTF-8", b'{"name": "\xff"}', "invalid JSON"),
]


@pytest.mark.parametrize(("case", "manifest", "message"), MANIFESTS, ids=[c[0] for c in MANIFESTS])
def test_bad_manifest_is_an_error_naming_file_and_field(tmp_path, case, manifest, message):
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    path = snapshot(tmp_path, line(row(2)), data)
    with pytest.raises(SnapshotError, match=r"snapshot\.json: ") as err:
        read_snapshot(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_manifest_with_bom_is_read(tmp_path: Path) -> None:
    manifest = b"\xef\xbb\xbf" + json.dumps({"taxonomy": ["spam", "scam"]}).encode()
    path = snapshot(tmp_path, line(row(2, labels=["scam"])), manifest)
    assert read_snapshot(path, strict=True).taxonomy == ("spam", "scam")


def photo_corpus(root: Path) -> dict[str, tuple[str, str]]:
    """Hostile photo files under root; case -> (path as written in the listing, reason)."""
    img = root / "images"
    img.mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(img / "good.jpg")
    Image.new("RGB", (64, 64), (0, 200, 0)).save(img / "full.png")
    png = (img / "full.png").read_bytes()
    (img / "trunc.png").write_bytes(png[: len(png) // 2])
    Image.new("RGB", (64, 64), (0, 0, 200)).save(img / "full.jpg", quality=90)
    (img / "trunc.jpg").write_bytes((img / "full.jpg").read_bytes()[:300])
    (img / "empty.jpg").write_bytes(b"")
    (img / "random.jpg").write_bytes(os.urandom(4096))
    (img / "fake.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    Image.new("1", (8000, 6000)).save(img / "bomb.png")  # 48 Mpx in a tiny file
    Image.new("RGB", (2, 200)).save(img / "strip.png")  # 100:1
    os.symlink("loop_b", img / "loop_a")
    os.symlink("loop_a", img / "loop_b")
    os.mkfifo(img / "fifo.jpg")  # opening it would block forever
    (root.parent / "outside.jpg").write_bytes((img / "good.jpg").read_bytes())
    return {
        "NUL byte": ("images/a\x00b.jpg", "image_bad_path"),
        "300-char name": ("images/" + "x" * 300 + ".jpg", "image_bad_path"),
        "symlink loop": ("images/loop_a", "image_bad_path"),
        "absolute path": ("/etc/passwd", "image_path_escapes"),
        "'..' escape": ("../outside.jpg", "image_path_escapes"),
        "empty path": ("", "image_bad_path"),
        "missing file": ("images/nope.jpg", "image_missing"),
        "a directory": ("images", "image_missing"),
        "a FIFO": ("images/fifo.jpg", "image_missing"),
        "0-byte file": ("images/empty.jpg", "image_corrupt"),
        "random bytes": ("images/random.jpg", "image_corrupt"),
        "truncated PNG": ("images/trunc.png", "image_corrupt"),
        "truncated JPEG": ("images/trunc.jpg", "image_corrupt"),
        "EPS (decoder not allowed)": ("images/fake.eps", "image_corrupt"),
        "decompression bomb 48 Mpx": ("images/bomb.png", "image_too_large"),
        "aspect 100:1": ("images/strip.png", "image_bad_shape"),
    }


def test_every_bad_photo_is_a_counted_skip_and_the_listing_stays(tmp_path: Path) -> None:
    root = tmp_path / "snap"
    cases = photo_corpus(root)
    rows = [row(i, images=[rel, "images/good.jpg"]) for i, (rel, _) in enumerate(cases.values())]
    (root / "listings.jsonl").write_bytes(b"\n".join(map(line, rows)) + b"\n")
    snap = read_snapshot(root)
    assert len(snap.listings) == len(cases)  # every listing kept
    assert all(x.images == ("images/good.jpg",) for x in snap.listings)
    expected: dict[str, int] = {}
    for _, reason in cases.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(snap.problems.counts) == expected
    with pytest.raises(SnapshotError, match=r"listings\.jsonl:1: images: "):
        read_snapshot(root, strict=True)


def test_predict_reader_survives_a_bad_photo_in_row_513(tmp_path: Path) -> None:
    from mmdetect.serving.stream import RunSummary, read_listings

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images/ok.jpg")
    rows = [row(i, images=["images/ok.jpg"]) for i in range(600)]
    rows[512]["images"] = ["images/a\x00b.jpg", "images/loop", "images/ok.jpg"]
    os.symlink("loop", tmp_path / "images/loop")
    data = b"\xef\xbb\xbf" + b"\n".join(map(line, rows)) + b"\n"
    (tmp_path / "in.jsonl").write_bytes(data)
    summary = RunSummary()
    with (tmp_path / "in.jsonl").open("rb") as fh:
        out = list(read_listings(fh, tmp_path / "in.jsonl", tmp_path, ["counterfeit"], summary))
    assert len(out) == 600 and out[512].images == ("images/ok.jpg",)  # BOM row 1 kept too
    assert dict(summary.photos.counts) == {"image_bad_path": 2}


def test_photo_work_per_listing_is_capped(tmp_path: Path, monkeypatch) -> None:
    import mmdetect.data.reader as reader

    img = tmp_path / "images"
    img.mkdir()
    for k in range(6):  # 40 Mpx each (the limit), 1-bit: tiny files, costly to decode
        Image.new("1", (8000, 5000), k % 2).save(img / f"p{k}.png")
    paths = ["images/p0.png", "./images/p0.png", "images/p0.png"]
    paths += [f"images/p{k}.png" for k in range(1, 6)]
    (tmp_path / "listings.jsonl").write_bytes(line(row(1, images=paths)) + b"\n")
    checked = []
    real = reader.check_image
    monkeypatch.setattr(reader, "check_image", lambda p: checked.append(p) or real(p))
    start = time.perf_counter()
    snap = read_snapshot(tmp_path, max_photos=4)
    assert time.perf_counter() - start < 2.0  # headers and CRCs only: no 40 Mpx decode
    assert snap.listings[0].images == ("images/p0.png", "images/p1.png", "images/p2.png",
                                       "images/p3.png")  # fmt: skip
    assert len(checked) == 4
    assert dict(snap.problems.counts) == {"duplicate_photo": 2, "photos_over_limit": 1}
    assert read_snapshot(tmp_path, strict=True).listings[0].images[0] == "images/p0.png"
    decoded = load_image(img / "p1.png")  # what the data loader gets: shrunk, not 40 Mpx
    assert decoded.size == (4000, 2500) and decoded.mode == "RGB"
    assert decoded.size[0] * decoded.size[1] <= DECODE_MAX_PIXELS


BOUNDS = [("notadate", "--created-from: not an ISO date: 'notadate'"),
          ("", "--created-from: not an ISO date: ''"),
          ("2026-13-01", "--created-from: not an ISO date: '2026-13-01'"),
          ("0001-01-01T00:00:00+14:00", "--created-from: not an ISO date")]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BOUNDS)
def test_bad_date_bound_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_date_bound(text, "--created-from")
    assert str(err.value).startswith(message)
    with pytest.raises(ValueError, match="period start: not an ISO date"):
        in_period(datetime(2026, 7, 1, tzinfo=timezone.utc), text, None)


@pytest.mark.parametrize("created", ["2026-09-01T08:00:00+09:00", "2026-09-01T08:00:00"])
@pytest.mark.parametrize(
    "bound", ["2026-09-01", "2026-09-01T00:00:00+00:00", "2026-08-31T00:00:00Z"]
)
def test_aware_and_naive_times_always_compare(tmp_path: Path, created: str, bound: str) -> None:
    listing = read_snapshot(snapshot(tmp_path, line(row(2, created_at=created)))).listings[1]
    naive = datetime.fromisoformat(created)  # a datetime built elsewhere, never through the reader
    for c in (listing.created_at, naive):
        inside = in_period(c, bound, None)
        assert inside == in_period(c, parse_date_bound(bound, "--created-from"), None)
    # 08:00 local on Sep 1 is on/after a naive Sep 1 (wall clock) bound; +09:00 is Aug 31 23:00 UTC
    if bound == "2026-09-01":
        assert in_period(listing.created_at, bound, None)
    if bound == "2026-09-01T00:00:00+00:00":
        assert in_period(listing.created_at, bound, None) == created.endswith("08:00:00")
