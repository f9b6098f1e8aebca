"""mmdetect.bench.evasion: seeded perturbation of a snapshot's listings, macro AP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmdetect.bench.evasion import macro_ap, perturb
from mmdetect.data.reader import read_snapshot

REPO = Path(__file__).resolve().parents[2]


def test_perturb_is_seeded_per_listing_and_keeps_everything_but_text():
    listings = read_snapshot(REPO / "data_samples/drift", check_images=False).listings[:40]
    a = perturb(listings, "zero_width", seed=0)
    assert a == perturb(listings, "zero_width", seed=0)
    assert perturb(listings[::-1], "zero_width", seed=0) == a[::-1]
    assert a != perturb(listings, "zero_width", seed=1)
    assert all(x.id == y.id and x.labels == y.labels and x.images == y.images
               for x, y in zip(a, listings, strict=True))  # fmt: skip
    assert sum(x.title != y.title for x, y in zip(a, listings, strict=True)) > 30


def test_macro_ap_skips_classes_without_positives():
    listings = read_snapshot(REPO / "data_samples/drift", check_images=False).listings
    tax = ("counterfeit", "nonexistent")
    y = np.array([[("counterfeit" in x.labels)] for x in listings], dtype=float)
    perfect = np.hstack([y, np.zeros_like(y)])
    r = macro_ap(perfect, listings, tax)
    assert r["classes"]["nonexistent"] is None
    assert r["macro"] == pytest.approx(1.0)
