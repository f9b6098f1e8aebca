"""The scoring data path: header checks, one decode in the worker, uint8 photos normalised per
batch, worker failures counted, bucketing, and probabilities unchanged against the old path."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from mmdetect.artifacts.bundle_format import BundleError
from mmdetect.data.dataset import Item, ListingDataset, collate_listings
from mmdetect.data.images import (
    PHOTO_REASONS,
    ImageProblem,
    check_header,
    load_image,
    load_image_full,
)
from mmdetect.data.photos import (
    PhotoCountBatches,
    PhotoLoader,
    draft_side,
    eval_photo,
    normalize_photos,
    uint8_steps,
)
from mmdetect.data.reader import read_snapshot
from mmdetect.models.image import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess, build_transforms
from mmdetect.serving.predict import predict_main
from mmdetect.serving.predictor import Predictor, build_loader
from mmdetect.serving.stream import RunSummary, read_items

pytestmark = pytest.mark.usefixtures("single_thread")
DRIFT = Path(__file__).resolve().parents[2] / "data_samples" / "drift"


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg_bytes(size=(64, 48), seed=0) -> bytes:
    buf = io.BytesIO()
    noise(size, seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def body_corrupt_jpeg() -> bytes:
    """Valid header, SOS and EOI (the header check passes), but a Huffman table of garbage:
    only decoding finds it."""
    data = bytearray(jpeg_bytes())
    dht = data.find(b"\xff\xc4")
    data[dht + 5 : dht + 21] = b"\xff" * 16
    return bytes(data)


def forbid_decode(monkeypatch) -> None:
    """From now on, any pixel decode in this process fails the test (files are written first:
    saving an image loads it)."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"decoded {getattr(self, 'filename', self)}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)


def test_header_check_accepts_every_format_without_decoding(tmp_path, monkeypatch):
    img, formats = noise((40, 30)), ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
    for fmt in formats:
        img.save(tmp_path / f"a.{fmt.lower()}", fmt)
    forbid_decode(monkeypatch)
    for fmt in formats:
        assert check_header(tmp_path / f"a.{fmt.lower()}") == (40, 30), fmt


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_header_check_refuses_a_truncated_file_without_decoding(tmp_path, fmt, monkeypatch):
    path = tmp_path / f"a.{fmt.lower()}"
    noise((120, 90)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    forbid_decode(monkeypatch)
    with pytest.raises(ImageProblem) as err:
        check_header(path)
    assert err.value.reason == "image_corrupt"


def test_header_check_refuses_oversized_and_unknown_without_decoding(tmp_path, monkeypatch):
    big, strip = tmp_path / "bomb.png", tmp_path / "strip.png"
    Image.new("1", (8000, 5001)).save(big)  # 40.008 Mpx: over MAX_PIXELS, a tiny file
    Image.new("L", (51, 1)).save(strip)
    forbid_decode(monkeypatch)
    with pytest.raises(ImageProblem, match="exceeds") as err:
        check_header(big)
    assert err.value.reason == "image_too_large"
    with pytest.raises(ImageProblem) as err:
        check_header(strip)
    assert err.value.reason == "image_bad_shape"
    eps = tmp_path / "x.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    for path in (eps, tmp_path / "empty.jpg"):
        path.touch()
        with pytest.raises(ImageProblem) as err:
            check_header(path)
        assert err.value.reason == "image_corrupt"


@pytest.mark.parametrize("whole", [True, False])  # read into memory at the open, or mapped
def test_header_and_decode_verdicts_do_not_depend_on_reading_the_file_whole(
    tmp_path, monkeypatch, whole
):
    """A photo up to READ_WHOLE_BYTES is parsed and scanned from the bytes of its one open, a
    larger one from the file (mmap): the same sizes, pixels and refusals either way."""
    from mmdetect.data import images as images_module

    good, trunc, bad = tmp_path / "ok.jpg", tmp_path / "trunc.jpg", tmp_path / "bad.jpg"
    good.write_bytes(jpeg_bytes((90, 70)))
    trunc.write_bytes(jpeg_bytes((90, 70))[:-300])  # header and part of the scan kept
    bad.write_bytes(body_corrupt_jpeg())
    for fmt in ("PNG", "WEBP", "BMP"):
        noise((40, 30)).save(tmp_path / f"a.{fmt.lower()}", fmt)
        data = (tmp_path / f"a.{fmt.lower()}").read_bytes()
        (tmp_path / f"t.{fmt.lower()}").write_bytes(data[: len(data) // 2])
    expected = np.array(Image.open(good).convert("RGB"))
    if not whole:
        monkeypatch.setattr(images_module, "READ_WHOLE_BYTES", 0)
    assert np.array_equal(np.array(load_image(good)), expected)
    assert images_module.load_checked(good).size == (90, 70) and check_header(good) == (90, 70)
    for fmt in ("png", "webp", "bmp"):
        assert check_header(tmp_path / f"a.{fmt}") == (40, 30)
        with pytest.raises(ImageProblem) as err:  # WebP: its decoder already refuses to open
            check_header(tmp_path / f"t.{fmt}")
        assert err.value.reason == "image_corrupt"
    with pytest.raises(ImageProblem, match="truncated JPEG"):
        images_module.load_checked(trunc)
    with pytest.raises(ImageProblem) as err:
        images_module.load_checked(bad)
    assert err.value.reason == "image_corrupt" and err.value.header_passed
    with pytest.raises(ImageProblem, match="not found") as err:
        load_image(tmp_path / "gone.jpg")
    assert err.value.reason == "image_missing"


def test_resolving_a_plain_path_is_what_path_resolve_gives(tmp_path):
    """resolve_image_path takes a short way for a regular file reached without `..` or
    symlinks; the same path as Path.resolve, and the long way (with its reasons) otherwise."""
    from mmdetect.data.images import resolve_image_path

    root, outside = tmp_path / "snap", tmp_path / "outside.jpg"
    (root / "images/sub").mkdir(parents=True)
    for rel in ("images/a.jpg", "images/sub/b.jpg"):
        (root / rel).write_bytes(jpeg_bytes())
    outside.write_bytes(jpeg_bytes())
    (root / "images/in.jpg").symlink_to(root / "images/a.jpg")
    (root / "images/out.jpg").symlink_to(outside)
    (root / "linkdir").symlink_to(root / "images/sub")
    resolved = root.resolve()
    for rel in ("images/a.jpg", "./images/a.jpg", "images//sub/b.jpg", "images/sub/../a.jpg",
                "images/in.jpg", "linkdir/b.jpg"):  # fmt: skip
        assert resolve_image_path(root, rel, resolved) == (root / rel).resolve(), rel
    for rel, reason in (("images/out.jpg", "image_path_escapes"), ("../outside.jpg",
                        "image_path_escapes"), ("images/sub", "image_missing"),
                        ("images/a.jpg/x", "image_missing"), ("images/none.jpg", "image_missing")):  # fmt: skip
        with pytest.raises(ImageProblem) as err:
            resolve_image_path(root, rel, resolved)
        assert err.value.reason == reason, rel


def test_body_corrupt_jpeg_passes_the_header_and_fails_the_decode(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(body_corrupt_jpeg())
    assert check_header(path) == (64, 48)
    with pytest.raises(ImageProblem) as err:
        load_image(path)
    assert err.value.reason == "image_corrupt"


def write_snapshot(root: Path, rows: list[dict]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, images in enumerate(rows):
        lines.append(json.dumps({"id": f"L{i}", "title": "t", "description": "d", "price": 100,
                                 "category": None, "images": images,
                                 "created_at": "2026-10-01T00:00:00+09:00"}))  # fmt: skip
    (root / "listings.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "listings.jsonl"


def test_a_body_corrupt_photo_is_a_counted_skip_in_the_worker(tmp_path):
    """Read in this process (no decode allowed), decoded in a DataLoader worker process: the bad
    photo is masked and counted; its listing and the good photos are scored."""
    src = write_snapshot(tmp_path, [["images/ok.jpg", "images/bad.jpg"], ["images/bad.jpg"], []])
    (tmp_path / "images/ok.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "images/bad.jpg").write_bytes(body_corrupt_jpeg())
    summary = RunSummary()
    with pytest.MonkeyPatch.context() as m, src.open("rb") as fh:
        forbid_decode(m)  # undone before the worker starts: it decodes for real
        items = list(read_items(fh, src, tmp_path, ["counterfeit"], summary))
    assert [len(it.paths) for it in items] == [2, 1, 0] and not summary.photos.counts
    assert items[0].paths[0] == (tmp_path / "images/ok.jpg").resolve()  # resolved once, here
    ds = ListingDataset(items, [[2, 3]] * 3, ["counterfeit"], [], eval_photo(16), 4, 0.0, 1.0)
    pre = {"pad_id": 0, "image_size": 16, "max_photos": 4}
    batches = list(build_loader(ds, pre, batch_size=3, num_workers=1, normalize=False))
    batch = batches[0]
    assert batch["images"].dtype == torch.uint8
    assert batch["image_mask"].tolist() == [[True], [False], [False]]  # padded to 1 photo
    corrupt = PHOTO_REASONS.index("image_corrupt")
    assert batch["photo_problems"][:, corrupt].tolist() == [1, 1, 0]
    assert batch["photo_problems"].sum() == 2


def test_uint8_batches_normalise_to_the_old_per_photo_values():
    """Old: build_transforms(train=False) per photo, float. New: uint8 per photo (eval_photo and
    the uint8 steps the datamodule keeps), one normalisation per padded batch."""
    old = build_transforms(ImagePreprocess(32), train=False)
    steps, mean, std = uint8_steps(old)
    assert (mean, std) == (IMAGENET_MEAN, IMAGENET_STD)
    sizes = [(64, 48), (31, 90), (32, 32), (300, 200), (17, 16)]
    images = [noise(s, seed=i) for i, s in enumerate(sizes)]
    fast, eval_ = eval_photo(32), [old(img) for img in images]
    photos = [
        [fast(img) for img in images[:3]],
        [fast(images[3])],
        [fast(images[4]), steps(images[0])],
    ]
    assert all(p.dtype == torch.uint8 for row in photos for p in row)
    samples = [{"index": i, "input_ids": torch.tensor([2, 3]), "photos": row, "price": 0.0,
                "price_mask": False, "category_id": 0, "labels": torch.zeros(1)}
               for i, row in enumerate(photos)]  # fmt: skip
    batch = collate_listings(samples, image_size=32)
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (3, 3, 3, 32, 32)
    out = normalize_photos(batch["images"], batch["image_mask"], mean, std)
    expected = [eval_[:3], [eval_[3]], [eval_[4], eval_[0]]]
    for row, photos_row in enumerate(expected):
        for j, ref in enumerate(photos_row):
            torch.testing.assert_close(out[row, j], ref, atol=1e-6, rtol=0)
            assert torch.equal(out[row, j], ref)  # in fact bit-identical: same ops, same order
    assert not out[~batch["image_mask"]].any()  # padded slots stay 0, as the float path had


def test_train_augmentations_run_on_uint8_with_the_same_draws():
    aug = build_transforms(ImagePreprocess(24), train=True)
    steps, mean, std = uint8_steps(aug)
    img = noise((50, 40))
    torch.manual_seed(3)
    ref = aug(img)
    torch.manual_seed(3)
    small = steps(img)
    assert small.dtype == torch.uint8 and small.shape == (3, 24, 24)
    out = normalize_photos(small[None, None], torch.ones(1, 1, dtype=torch.bool), mean, std)
    torch.testing.assert_close(out[0, 0], ref, atol=1e-6, rtol=0)


def test_photo_loader_hands_out_normalised_batches(tmp_path):
    ds = [{"index": 0, "input_ids": torch.tensor([2]), "photos": [eval_photo(8)(noise((9, 9)))],
           "price": 0.0, "price_mask": False, "category_id": 0, "labels": torch.zeros(1)}]  # fmt: skip
    loader = PhotoLoader(ds, batch_size=1, collate_fn=lambda s: collate_listings(s, image_size=8),
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # fmt: skip
    batch = next(iter(loader))
    raw = ds[0]["photos"][0].float() / 255
    torch.testing.assert_close(batch["images"][0, 0], (raw - 0.5) / 0.25, atol=1e-6, rtol=0)


def test_photo_count_batches_group_and_restore_order():
    counts = [0, 2, 1, 2, 7, 1, 0, 2, 3, 5]
    sampler = PhotoCountBatches(counts, batch_size=2, max_photos=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(10))
    for b in batches:
        assert len(b) <= 2 and len({min(counts[i], 3) for i in b}) == 1
        assert b == sorted(b)
    assert [b[0] for b in batches] == sorted(b[0] for b in batches)
    assert len(sampler) == len(batches)


@pytest.fixture(scope="module")
def drift_listings():
    return read_snapshot(DRIFT).listings[:40]


def test_predict_unchanged_against_the_old_path_on_drift(assets, drift_listings):
    """data_samples/drift through the tiny bundle: new path (in order, and bucketed by photo
    count) == the old float-per-photo path (bench/legacy.py) within 1e-5, rows in input order.
    The old path decoded each photo fully, the new one at a DCT scale (draft_side: a few levels
    of 255 apart, test above); this untrained tiny model's probabilities barely see that."""
    from mmdetect.bench.legacy import LegacyPredictor

    old = LegacyPredictor.from_bundle(assets.bundle, batch_size=16)
    new = Predictor.from_bundle(assets.bundle, batch_size=16)
    ref = old.predict_proba(drift_listings, DRIFT)
    got = new.predict_proba(drift_listings, DRIFT)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    new.bucket = True
    assert {len(x.images) for x in drift_listings} > {1}  # several buckets were exercised
    np.testing.assert_allclose(new.predict_proba(drift_listings, DRIFT), got, atol=1e-6, rtol=0)


def test_training_and_serving_decode_photos_to_the_same_pixels(assets, drift_listings):
    """One decode for every consumer (draft_side): the datamodule's eval dataset and the serving
    dataset give identical uint8 photos. At the model's side a 128 px sample JPEG is decoded at a
    DCT scale, close to a full decode + antialiased resize (JPEG-level differences, mean a few
    levels of 255), with the resize left nothing to do."""
    from mmdetect.data.dataset import Item
    from mmdetect.data.pipeline import build_items_dataset
    from mmdetect.training.datamodule import DetectorDataModule

    pre = Predictor.from_bundle(assets.bundle).bundle.preprocess
    size = pre["image_size"]
    listings = [x for x in drift_listings if x.images][:8]
    items = [Item(x, DRIFT) for x in listings]
    dm = DetectorDataModule(tokenizer=str(assets.tokenizer), image_size=size, num_workers=0)
    train_side = dm.build_dataset(items, train=False)
    serve_side = build_items_dataset(items, Predictor.from_bundle(assets.bundle).tokenizer, pre)
    full = eval_photo(size)
    diffs = []
    for i, x in enumerate(listings):
        a, b = train_side[i]["photos"], serve_side[i]["photos"]
        assert len(a) == len(b) >= 1
        for k, (p, q) in enumerate(zip(a, b, strict=True)):
            assert p.dtype == q.dtype == torch.uint8 and torch.equal(p, q)
            drafted = load_image(DRIFT / x.images[k], draft_side(size))
            assert drafted.size == (size, size)  # 128 px at a 1/4 scale: no resize left to do
            diffs.append((p.float() - full(load_image(DRIFT / x.images[k])).float()).abs())
    diff = torch.stack(diffs)
    assert 0 < diff.mean() < 6 and diff.max() <= 128  # JPEG-level, not a different photo


def test_bundle_photo_settings_are_read_not_refused(assets, tmp_path):
    """mean, std and interpolation come from preprocess.json (ImageNet bilinear when absent):
    the photos the module receives are normalised with them, on uint8 resized with them.
    Photos of sizes no DCT scale brings to the model's side, so that the resize has work."""
    bundle = Predictor.from_bundle(assets.bundle).bundle
    sizes = [(75, 60), (90, 47), (50, 71), (101, 64)]
    src = write_snapshot(tmp_path, [[f"images/p{k}.jpg"] for k in range(len(sizes))])
    for k, wh in enumerate(sizes):
        (tmp_path / f"images/p{k}.jpg").write_bytes(jpeg_bytes(wh, seed=k))
    listings = read_snapshot(tmp_path).listings
    assert src.is_file() and len(listings) == len(sizes)
    seen: list[torch.Tensor] = []

    def record(*inputs):
        seen.append(inputs[2])  # images, after normalisation
        return bundle.module(*inputs)

    def images(**changes) -> torch.Tensor:
        pre = {**bundle.preprocess, **changes}
        seen.clear()
        Predictor(dataclasses.replace(bundle, preprocess=pre, module=record)).predict_proba(
            listings, tmp_path
        )
        return torch.cat(seen)

    assert bundle.preprocess["interpolation"] == "bilinear"  # the backbone's, written at export
    base = images()
    assert torch.equal(images(interpolation="bilinear"), base)
    size = bundle.preprocess["image_size"]
    side = draft_side(size)  # the decode every consumer uses
    raw = torch.stack(
        [eval_photo(size)(load_image(tmp_path / x.images[0], side)) for x in listings]
    )
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.25, 2.0])
    other = images(mean=mean.tolist(), std=std.tolist())
    expected = (raw.float() / 255 - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(other[:, 0], expected, atol=1e-6, rtol=0)
    bicubic = images(interpolation="bicubic")
    assert not torch.equal(bicubic, base)
    ref = eval_photo(size, "bicubic")(load_image(tmp_path / listings[0].images[0], side))
    torch.testing.assert_close(
        bicubic[0, 0],
        normalize_photos(
            ref[None, None], torch.ones(1, 1, dtype=torch.bool), IMAGENET_MEAN, IMAGENET_STD
        )[0, 0],
    )
    with pytest.raises(BundleError, match="preprocess.json: interpolation must be one of"):
        Predictor(
            dataclasses.replace(
                bundle, preprocess={**bundle.preprocess, "interpolation": "lanczos3"}
            )
        )
    with pytest.raises(BundleError, match="std must be > 0"):
        Predictor(
            dataclasses.replace(bundle, preprocess={**bundle.preprocess, "std": [0.5, 0.0, 0.5]})
        )


def test_predict_counts_photos_that_fail_in_the_worker(assets, tmp_path):
    src = write_snapshot(tmp_path, [["images/ok.jpg", "images/bad.jpg"], ["images/ok.jpg"]])
    (tmp_path / "images/ok.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "images/bad.jpg").write_bytes(body_corrupt_jpeg())
    predictor = Predictor.from_bundle(assets.bundle, batch_size=4)
    summary = RunSummary()
    with src.open("rb") as fh:
        items = list(read_items(fh, src, tmp_path, predictor.taxonomy, summary))
    assert not summary.photos.counts  # the header check passed both photos
    probs = predictor.predict_items(items, summary.photos)
    assert dict(summary.photos.counts) == {"image_corrupt": 1}
    assert summary.photos.examples["image_corrupt"] == ["L0: a photo failed in the data loader"]
    alone = predictor.predict_items([Item(items[1].listing, tmp_path)])
    np.testing.assert_allclose(probs[0], alone[0], atol=1e-6)  # same photo left: same score


def test_predict_cli_bucketed_writes_the_same_rows_in_input_order(assets, tmp_path, capsys):
    src = assets.drift / "listings.jsonl"
    rows = {}
    for flags in ([], ["--bucket"]):
        out = tmp_path / f"out{len(flags)}.jsonl"
        argv = ["--bundle", str(assets.bundle), "--input", str(src), "--out", str(out),
                "--batch-size", "4", *flags]  # fmt: skip
        assert predict_main(argv) == 0
        rows[bool(flags)] = [json.loads(line) for line in out.read_text().splitlines()]
    plain, bucketed = rows[False], rows[True]
    ids = [json.loads(line)["id"] for line in src.read_text().splitlines() if line.strip()]
    assert [r["id"] for r in bucketed] == [r["id"] for r in plain] == ids
    for a, b in zip(plain, bucketed, strict=True):
        assert a["decision"] == b["decision"]
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()),
                                   atol=1e-6)  # fmt: skip


def test_one_interpolation_map_for_training_export_and_serving(assets, tmp_path):
    """models/image, bundle_check and the uint8 serving transform read the same map: a model
    trained with `nearest` is exported, verified and served, and the served photo is the
    training eval transform's, bit for bit."""
    from mmdetect.artifacts import bundle_check
    from mmdetect.common import normalization
    from mmdetect.models import image

    assert image.INTERPOLATIONS is normalization.INTERPOLATIONS
    assert set(normalization.INTERPOLATIONS) == {"nearest", "bilinear", "bicubic"}
    bundle = Predictor.from_bundle(assets.bundle).bundle
    pre = {**bundle.preprocess, "interpolation": "nearest"}
    bundle_check.check_preprocess(pre, tmp_path / "preprocess.json")  # accepted when loading
    nearest = Predictor(dataclasses.replace(bundle, preprocess=pre))  # and when serving
    assert nearest.mean == tuple(pre["mean"])
    img = noise((50, 37), seed=5)
    for name in normalization.INTERPOLATIONS:
        steps, mean, std = uint8_steps(
            build_transforms(ImagePreprocess(24, interpolation=name), False)
        )
        assert torch.equal(eval_photo(24, name)(img), steps(img)), name
    ref = build_transforms(ImagePreprocess(24, interpolation="nearest"), train=False)(img)
    small = eval_photo(24, "nearest")(img)
    out = normalize_photos(small[None, None], torch.ones(1, 1, dtype=torch.bool), mean, std)
    assert torch.equal(out[0, 0], ref)
    assert not torch.equal(small, eval_photo(24, "bilinear")(img))
    for bad in ("lanczos", None, 3):
        with pytest.raises(BundleError, match="interpolation must be one of nearest, bilinear"):
            bundle_check.check_preprocess({**pre, "interpolation": bad}, tmp_path / "p.json")
        with pytest.raises(ValueError, match="interpolation must be one of"):
            eval_photo(24, bad)


def test_predict_opens_each_photo_once_with_the_same_checks_and_scores(
    assets, tmp_path, monkeypatch
):
    """`mmdetect predict` resolves photos while reading and opens each once, in the loader, for
    the header check and the decode (OpenOnceDataset): same photos kept (the first max_photos
    that pass the header), same problems counted, same probabilities as checking every header
    while reading (read_items + predict_items, the path before)."""
    from mmdetect.serving.stream import score_stream

    ok = [f"images/ok{k}.jpg" for k in range(5)]
    rows = [["images/trunc.jpg", *ok],  # header fails: ok0..ok2 are kept (max_photos 3)
            ["images/bad.jpg", "images/ok4.jpg"],  # body fails after the header: slot taken
            ["images/trunc.jpg"],  # all failed: a no-photo listing, noted
            ["images/gone.jpg", "images/ok1.jpg", "images/ok1.jpg"],  # missing, duplicate
            []]  # fmt: skip
    src = write_snapshot(tmp_path, rows)
    for k, rel in enumerate(ok):
        (tmp_path / rel).write_bytes(jpeg_bytes((60 + 7 * k, 45), seed=k))
    (tmp_path / "images/bad.jpg").write_bytes(body_corrupt_jpeg())
    (tmp_path / "images/trunc.jpg").write_bytes(jpeg_bytes()[:300])
    predictor = Predictor.from_bundle(assets.bundle, batch_size=2)
    before = RunSummary()
    with src.open("rb") as fh:
        items = list(read_items(fh, src, tmp_path, predictor.taxonomy, before))
    ref = predictor.predict_items(items, before.photos)

    import builtins

    from mmdetect.data import images as images_module

    # every open of a photo file, and every decoder opened on a file or on its bytes
    opened, decoders = [], []
    real_open, real_image_open = builtins.open, Image.open
    monkeypatch.setattr(images_module, "open", lambda fp, *a, **k: opened.append(Path(fp).name)
                        or real_open(fp, *a, **k), raising=False)  # fmt: skip
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: decoders.append(fp)
                        or real_image_open(fp, *a, **k))  # fmt: skip
    after = RunSummary()
    with src.open("rb") as fh:
        once = list(read_items(fh, src, tmp_path, predictor.taxonomy, after, check=None))
        assert not opened and not decoders  # reading resolves paths only
        chunks = [once[:2], once[2:]]
        decisions = [d for part in score_stream(predictor, chunks, after, False) for d in part]
    assert dict(after.photos.counts) == dict(before.photos.counts) == {
        "image_corrupt": 3, "image_missing": 1, "duplicate_photo": 1, "all_photos_failed": 1}  # fmt: skip
    got = np.array([list(d.model_scores.values()) for d in decisions], dtype=np.float32)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    assert [d.id for d in decisions] == [f"L{i}" for i in range(5)]
    # one open per photo occurrence; ok3 and ok4 of the first listing are past max_photos but
    # still header-checked, as read_items checks every photo it keeps
    assert sorted(opened) == sorted(["trunc.jpg", *[p.split("/")[1] for p in ok], "bad.jpg",
                                     "ok4.jpg", "trunc.jpg", "ok1.jpg"])  # fmt: skip
    assert len(decoders) == len(opened)  # the decoder parses the bytes of that one open


@pytest.mark.parametrize("ahead", [0, 2])  # no thread (the default), a prefetch thread
def test_stream_keeps_order_threads_and_isolates_a_failing_chunk(
    assets, caplog, monkeypatch, ahead
):
    """Predictor.stream: chunks come back in order with predict_items' probabilities; the model
    keeps the caller's thread count while the prefetch thread runs on one; a chunk whose batch
    fails comes back as its exception and predict's fallback scores it listing by listing; an
    error of the chunk iterator itself (reading) is raised to the caller."""
    import mmdetect.serving.predictor
    from mmdetect.serving.stream import score_chunk

    monkeypatch.setattr(mmdetect.serving.predictor, "PREFETCH_BATCHES", ahead)
    predictor = Predictor.from_bundle(assets.bundle, batch_size=3)
    listings = read_snapshot(DRIFT).listings[:10]
    items = [Item(x, DRIFT) for x in listings]
    ref = predictor.predict_items(items)
    real, seen = predictor.bundle.module, []

    def module(*inputs):
        seen.append(torch.get_num_threads())
        if inputs[0].shape[0] == 1 and not seen.count(-1):  # the lone listing of chunk 3
            seen.append(-1)
            raise RuntimeError("boom")
        return real(*inputs)

    predictor.bundle = dataclasses.replace(predictor.bundle, module=module)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chunks = [items[:3], items[3:9], items[9:]]  # batches of 3, 3 + 3, 1
        out = list(predictor.stream(iter(chunks)))
        assert set(seen) - {-1} == {2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [len(c) for c, _ in out] == [3, 6, 1]
    np.testing.assert_array_equal(np.concatenate([p for _, p in out[:2]]), ref[:9])
    assert isinstance(out[2][1], RuntimeError)
    summary = RunSummary()
    decisions = score_chunk(predictor, out[2][0], summary, out[2][1])  # retried alone: works
    assert [d.id for d in decisions] == [listings[9].id] and not summary.skipped
    assert "a chunk failed (RuntimeError: boom)" in caplog.text

    def broken():
        yield items[:2]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(predictor.stream(broken()))


def test_predict_reads_a_first_chunk_of_one_batch():
    from mmdetect.serving.stream import chunked

    assert [len(c) for c in chunked(iter(range(10)), 4, 2)] == [2, 4, 4]
    assert [len(c) for c in chunked(iter(range(10)), 4)] == [4, 4, 2]
    assert [len(c) for c in chunked(iter(range(1)), 4, 2)] == [1]


def test_predict_cli_checks_each_photo_header_at_its_one_open(assets, tmp_path, capsys):
    """A BMP whose header declares more bytes than the file has decodes fine, but check_header
    refuses it: `mmdetect predict` (photos opened once, in the loader) still counts it."""
    src = write_snapshot(tmp_path, [["images/short.bmp"], ["images/ok.jpg"]])
    (tmp_path / "images/ok.jpg").write_bytes(jpeg_bytes())
    bmp = tmp_path / "images/short.bmp"
    noise((20, 10)).save(bmp, "BMP")
    data = bytearray(bmp.read_bytes())
    data[2:6] = (len(data) + 100).to_bytes(4, "little")
    bmp.write_bytes(bytes(data))
    assert load_image(bmp).size == (20, 10)  # the decoder alone would take it
    with pytest.raises(ImageProblem, match="truncated BMP"):
        check_header(bmp)
    out = tmp_path / "out.jsonl"
    argv = ["--bundle", str(assets.bundle), "--input", str(src), "--out", str(out)]
    assert predict_main(argv) == 0
    printed = capsys.readouterr().out
    assert "scored: 2" in printed
    assert "photo problems (listing still scored): all_photos_failed 1, image_corrupt 1" in printed


def test_predict_cli_reports_a_corrupt_model_loaded_while_reading(assets, tmp_path, capsys):
    """predict verifies the whole bundle first, then loads model.ts while the reading thread
    starts: a model that cannot load (checksums re-written) is still one error line, exit 1,
    and leaves no output and no partial file."""
    import shutil

    from mmdetect.artifacts import bundle_format
    from mmdetect.common.outputs import partial_path

    root = tmp_path / "bundle"
    shutil.copytree(assets.bundle, root)
    data = (root / "model.ts").read_bytes()
    (root / "model.ts").write_bytes(data[: len(data) // 2])
    bundle_format.write_checksums(root)
    out = tmp_path / "out" / "decisions.jsonl"
    argv = ["--bundle", str(root), "--input", str(assets.drift / "listings.jsonl"),
            "--out", str(out)]  # fmt: skip
    assert predict_main(argv) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "model.ts: cannot load TorchScript" in err
    assert not out.exists() and not partial_path(out).exists()
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_load_image_full_gives_the_bytes_only_when_the_file_gave_all_its_pixels(
    tmp_path, monkeypatch
):
    """The shard writer keeps a photo's own bytes only when it was decoded fully: a JPEG decoded
    at a DCT scale is not, even when the scaled size equals the model's side."""
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg_bytes((128, 128)))
    scaled, raw = load_image_full(path, 64)
    assert (scaled.size, raw) == ((64, 64), None)
    whole, raw = load_image_full(path, 128)
    assert (whole.size, raw) == ((128, 128), path.read_bytes())
    monkeypatch.setattr("mmdetect.data.images.READ_WHOLE_BYTES", 0)  # mapped, not read at open
    assert load_image_full(path, 128)[1] == path.read_bytes()
    assert np.array_equal(np.asarray(whole), np.asarray(load_image(path)))
    assert np.array_equal(np.asarray(scaled), np.asarray(load_image(path, 64)))
