"""Batch invariance, as hypothesis properties (issue #27): `POST /v1/score` with several
listings and the Predictor's batching (`mmdetect predict`) score each listing exactly as alone
(|dp| <= 1e-6, the same decisions), in any order and mix of photo counts (0..4), the same photo
in several listings, as paths or b64. `score --engine ray`: tests/integration/test_scale.py
(slow tier)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdetect.data.dataset import Item
from mmdetect.data.rows import parse_row
from mmdetect.serving.app import ServeConfig
from mmdetect.serving.predictor import Predictor
from tests.batching import assert_same, batches, key, photo_bundle, row, write_photos
from tests.unit.test_http import LIMITS, Server

pytestmark = pytest.mark.usefixtures("single_thread")
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def bundle(assets, tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return photo_bundle(assets, tmp_path_factory.getbasetemp() / "photo_bundle")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("batch_photos"))


@pytest.fixture(scope="module")
def server(bundle, photos):
    cfg = ServeConfig(bundle=bundle, images_root=photos, max_batch_size=16, max_wait_ms=20,
                      max_queue=256, timeout_s=30, workers=1, limits=LIMITS)  # fmt: skip
    with Server(cfg) as s:
        yield s


def test_photos_matter_in_the_test_bundle(server, photos):
    """The property below can only see a swapped photo if photos move the scores."""
    one = [row(0, (0, 1000, [(name, False)]), photos) for name in ("red.png", "noise.png")]
    a, b = (server.post(r)[2]["scores"] for r in one)
    assert max(abs(a[c] - b[c]) for c in a) > 1e-4


@PROPERTY
@given(specs=batches, reverse=st.booleans())
def test_http_batch_scores_as_its_listings_alone(server, photos, specs, reverse):
    alone = server.__dict__.setdefault("alone", {})  # one-by-one answers, kept across examples
    rows = [row(i, s, photos) for i, s in enumerate(specs)]
    for r in rows:
        if key(r) not in alone:
            status, _, doc = server.post(r)
            assert status == 200, doc
            alone[key(r)] = doc
    sent = rows[::-1] if reverse else rows
    status, _, doc = server.post({"listings": sent})
    assert status == 200, doc
    for r, got in zip(sent, doc["results"], strict=True):
        assert got["id"] == r["id"]
        assert_same(got, alone[key(r)], f"{r['id']} of {len(rows)}: {r['images']!r:.200}")


@pytest.fixture(scope="module")
def predictor(bundle) -> Predictor:
    return Predictor.from_bundle(bundle)


@PROPERTY
@given(specs=batches, batch_size=st.integers(1, 5), bucket=st.booleans(), reverse=st.booleans())
def test_predictor_batch_scores_as_its_listings_alone(predictor, photos, specs, batch_size,
                                                      bucket, reverse):  # fmt: skip
    """The Predictor's batching as `mmdetect predict` uses it: any batch size (ragged last
    batch), batches bucketed by photo count or not."""
    taxonomy = predictor.taxonomy
    listings = [parse_row(row(i, s, photos, b64=False), taxonomy) for i, s in enumerate(specs)]
    items = [Item(x, photos) for x in (listings[::-1] if reverse else listings)]
    alone = {it.listing.id: predictor.predict_batch([it])[0] for it in items}
    batched = replace_batching(predictor, batch_size, bucket)
    for got in batched.predict_batch(items):
        want = alone[got.id]
        assert_same(got.to_json(), want.to_json(), f"{got.id} of {len(items)}")


def replace_batching(predictor: Predictor, batch_size: int, bucket: bool) -> Predictor:
    """The same loaded Predictor with another batch size and bucketing (a shallow copy)."""
    out = Predictor.__new__(Predictor)
    out.__dict__.update(predictor.__dict__, batch_size=batch_size, bucket=bucket)
    return out
