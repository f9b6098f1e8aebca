"""Price statistics: fitted on the training split only, stored in the checkpoint, read back."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from mmdetect.data.dataset import (
    LEGACY_PRICE_STATS,
    PriceStats,
    fit_price_stats,
    price_features,
)
from mmdetect.training.checkpoint import CheckpointError
from mmdetect.training.datamodule import DetectorDataModule
from mmdetect.training.loading import checkpoint_price_stats


def log_prices(items) -> np.ndarray:
    return np.log1p([it.listing.price for it in items if it.listing.price is not None])


def datamodule(samples: Path, **kw) -> DetectorDataModule:
    return DetectorDataModule(
        snapshots=[str(samples / "train")], tokenizer=str(samples / "tokenizer"),
        num_workers=0, batch_size=64, max_length=32, image_size=16, max_photos=1, **kw,
    )  # fmt: skip


def test_fit_price_stats_is_numpy_over_priced_listings() -> None:
    prices = [100, None, 2500, 0, 99999, None, 3000]
    values = np.log1p([100, 2500, 0, 99999, 3000])
    stats = fit_price_stats(prices)
    assert (stats.mean, stats.std) == (pytest.approx(values.mean()), pytest.approx(values.std()))
    assert fit_price_stats([None, None]) == PriceStats(0.0, 1.0)  # nothing to scale
    assert fit_price_stats([500, 500]) == PriceStats(math.log1p(500), 1.0)
    assert price_features(2500, stats.mean, stats.std) == (
        pytest.approx((math.log1p(2500) - values.mean()) / values.std()),
        True,
    )
    with pytest.raises(ValueError, match="std > 0"):
        PriceStats(8.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        PriceStats(math.nan, 1.0)


def test_datamodule_fits_on_the_training_split_only(small_samples: Path) -> None:
    dm = datamodule(small_samples)
    dm.setup("fit")
    train, val = log_prices(dm.datasets["train"].items), log_prices(dm.datasets["val"].items)
    assert len(train) > 50 and len(val) > 10
    assert dm.price_stats.mean == pytest.approx(train.mean(), abs=1e-12)
    assert dm.price_stats.std == pytest.approx(train.std(), abs=1e-12)
    both = np.concatenate([train, val])
    assert abs(dm.price_stats.mean - both.mean()) > 1e-6  # validation was not used
    # validation batches are scaled with the training statistics
    batch = next(iter(dm.val_dataloader()))
    items = dm.datasets["val"].items
    i = next(j for j, it in enumerate(items[:64]) if it.listing.price is not None)
    expected = (math.log1p(items[i].listing.price) - train.mean()) / train.std()
    assert batch["price"][i].item() == pytest.approx(expected, rel=1e-5)
    assert dm.state_dict() == {"price_mean": dm.price_stats.mean, "price_std": dm.price_stats.std}


def test_a_checkpoints_statistics_win_and_test_data_is_never_fitted(small_samples: Path) -> None:
    stored = {"price_mean": 7.25, "price_std": 1.5}
    dm = datamodule(small_samples, test_snapshots=[str(small_samples / "drift")])
    dm.setup("test")  # Lightning restores the checkpoint after setup()
    assert dm.price_stats is None
    dm.load_state_dict(stored)
    batch = next(iter(dm.test_dataloader()))
    items = dm.datasets["test"].items
    for i, it in enumerate(items[:64]):
        if it.listing.price is not None:
            want = (math.log1p(it.listing.price) - 7.25) / 1.5
            assert batch["price"][i].item() == pytest.approx(want, rel=1e-5)
    pinned = datamodule(small_samples, price_mean=7.0, price_std=2.5)
    pinned.setup("fit")
    assert pinned.price_stats == PriceStats(7.0, 2.5)  # pinned: not refitted
    with pytest.raises(ValueError, match="both"):
        datamodule(small_samples, price_mean=7.0)


def test_old_checkpoints_load_with_a_warning(small_samples: Path, caplog) -> None:
    ckpt = Path("old.ckpt")
    state = {"DetectorDataModule": {"price_mean": 7.5, "price_std": 1.25}}
    assert checkpoint_price_stats(state, {"price_mean": 8.0, "price_std": 2.0}, ckpt) == (
        PriceStats(7.5, 1.25)
    )
    with caplog.at_level(logging.WARNING):
        assert checkpoint_price_stats({}, {"price_mean": 8.0, "price_std": 2.0}, ckpt) == (
            LEGACY_PRICE_STATS
        )
        assert checkpoint_price_stats({}, {"price_mean": 6.0, "price_std": 3.0}, ckpt) == (
            PriceStats(6.0, 3.0)
        )
        assert checkpoint_price_stats({}, {}, ckpt) == LEGACY_PRICE_STATS
    assert sum("price statistics" in r.getMessage() for r in caplog.records) == 3
    bad = {"DetectorDataModule": {"price_mean": 7.5, "price_std": -1}}
    with pytest.raises(CheckpointError, match=r"old.ckpt: DetectorDataModule: bad price_mean"):
        checkpoint_price_stats(bad, {}, ckpt)
    dm = datamodule(small_samples, predict_snapshots=[str(small_samples / "drift")])
    dm.setup("predict")
    with caplog.at_level(logging.WARNING):
        next(iter(dm.predict_dataloader()))
    assert dm.datasets["predict"].price_mean == LEGACY_PRICE_STATS.mean and "legacy" in caplog.text
    assert dm.state_dict() == {}  # not stored as if fitted
