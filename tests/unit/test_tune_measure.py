"""measure.py scores exactly the fit's validation set: the datamodule's own reading and split."""

from __future__ import annotations

import pytest

from mmdetect.training.datamodule import DetectorDataModule
from mmdetect.tune.measure import validation_items


@pytest.mark.parametrize("split", ["hash", "time"])
def test_the_measured_set_is_the_datamodules_validation_set(small_samples, split) -> None:
    """The same snapshot given twice: its ids repeat across snapshots, and the fit keeps the
    first of each (a reading of its own would count every validation listing twice)."""
    train = str(small_samples / "train")
    data = {"snapshots": [train, train], "tokenizer": str(small_samples / "tokenizer"),
            "split": split, "val_from": "2026-09-01", "val_fraction": 0.3, "num_workers": 0,
            "max_length": 16}  # fmt: skip
    dm = DetectorDataModule(**data)
    dm.setup("fit")
    want = [it.listing.id for it in dm.datasets["val"].items]
    hp = dict(dm.hparams)  # what LightningCLI saves as the run's `data` section
    got = validation_items(hp)
    assert [it.listing.id for it in got] == want
    assert len(want) == len(set(want)) > 5
    assert all(it.listing.labels is not None for it in got)
    assert dm.problems.counts.get("duplicate_id_across_snapshots", 0) >= len(want)
