"""Batch invariance (issue #27): a batch scores exactly as its listings one by one, in any order
and mix of photo counts, the same photo in several listings. Shared by the HTTP, predict and
Ray property tests (tests/unit/test_batch_invariance.py, tests/integration/test_scale.py).

The tiny seeded bundle's image tower gives features of ~1e-10 (an untrained MobileNet): every
photo then scores alike and a listing scored with another listing's photo would pass. So the
tests use `photo_bundle`: the same checkpoint with the backbone's last Linear scaled by 1e9,
exported (its photos move the scores by ~1e-3, content by content)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import JA_LISTINGS

PHOTO_SCALE = 1e9
PHOTOS = ("red.png", "black.png", "noise.png", "stripes.png", "green.jpg")
TOL = 1e-6


def photo_bundle(assets, base: Path) -> Path:
    """`assets`' checkpoint with photos that matter, exported once per session under base."""
    from mmdetect.ops.export import export_bundle
    from tests.unit.test_export import small_config

    out = base / "bundle"
    if (base / "ready").exists():
        return out
    ckpt = torch.load(assets.ckpt, weights_only=True)
    key = "net.image.backbone.classifier.0.weight"
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * PHOTO_SCALE
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    torch.save(ckpt, base / "photo.ckpt")
    export_bundle(base / "photo.ckpt", out, small_config(parity_listings=8),
                  parity_snapshot=assets.drift)  # fmt: skip
    (base / "ready").touch()
    return out


def write_photos(root: Path) -> Path:
    """Five distinct small photos under root/images (a solid red, black, noise, stripes, JPEG)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.new("RGB", (48, 40), (230, 20, 20)).save(images / "red.png")
    Image.new("RGB", (40, 48), (0, 0, 0)).save(images / "black.png")
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / "noise.png")
    stripes = np.zeros((36, 52, 3), dtype=np.uint8)
    stripes[::4] = 255
    Image.fromarray(stripes).save(images / "stripes.png")
    Image.new("RGB", (64, 48), (20, 200, 60)).save(images / "green.jpg", quality=90)
    return root


# One listing: (text index, price or None, photos: (name, as b64?) distinct within the listing)
listing_spec = st.tuples(
    st.integers(0, len(JA_LISTINGS) - 1),
    st.one_of(st.none(), st.integers(0, 200_000)),
    st.lists(st.tuples(st.sampled_from(PHOTOS), st.booleans()), max_size=4,
             unique_by=lambda p: p[0]),
)  # fmt: skip
batches = st.lists(listing_spec, min_size=2, max_size=8)


def row(i: int, spec, root: Path, b64: bool = True) -> dict:
    """The listing row of a spec (id B<i>); photos as paths under root, or b64 where drawn."""
    text, price, photos = spec
    title, description = JA_LISTINGS[text]
    images = []
    for name, as_b64 in photos:
        if as_b64 and b64:
            images.append({"b64": base64.b64encode((root / "images" / name).read_bytes()).decode()})
        else:
            images.append(f"images/{name}")
    return {"id": f"B{i}", "title": title, "description": description or "-", "price": price,
            "category": None, "images": images, "created_at": "2026-10-01T00:00:00+09:00"}  # fmt: skip


def key(r: dict) -> str:
    """A listing's content without its id: the cache key of its one-by-one answer."""
    return json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True)


def assert_same(got: dict, want: dict, where: str) -> None:
    """Same decisions, |dp| <= TOL on every class score."""
    assert got["decision"] == want["decision"], where
    assert got["decisions"] == want["decisions"], where
    worst = max(abs(got["scores"][c] - want["scores"][c]) for c in want["scores"])
    assert worst <= TOL, f"{where}: |dp| {worst:.3g}"
