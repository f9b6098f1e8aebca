"""Normalisation travels with the model: checkpoint → preprocess.json → served scores; training
augmentation only on the training split."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdetect.data.evasions import evade
from mmdetect.data.reader import read_snapshot
from mmdetect.data.textnorm import DEFAULT_NORMALIZE
from tests.unit.test_export import small_config

pytestmark = pytest.mark.usefixtures("single_thread")


def _evaded(listings, kinds=("zero_width", "homoglyphs", "halfwidth")):
    """Each listing with one invertible evasion in title and description (seeded)."""
    out = []
    for i, x in enumerate(listings):
        kind = kinds[i % len(kinds)]
        rng = random.Random(i)
        out.append(replace(x, title=evade(x.title, kind, rng, 1.0),
                           description=evade(x.description, kind, rng, 1.0)))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def normalised(assets, tmp_path_factory):
    """The shared tiny checkpoint re-saved with data.normalize on, and its exported bundle."""
    from mmdetect.ops.export import export_bundle

    base = tmp_path_factory.mktemp("norm")
    raw = torch.load(assets.ckpt, map_location="cpu", weights_only=True)
    raw["datamodule_hyper_parameters"]["normalize"] = dict(DEFAULT_NORMALIZE)
    ckpt = base / "norm.ckpt"
    torch.save(raw, ckpt)
    export_bundle(ckpt, base / "bundle", small_config(), parity_snapshot=assets.drift)
    return ckpt, base / "bundle"


def test_bundle_scores_equal_checkpoint_scores_with_normalisation(assets, normalised):
    from mmdetect.serving.predictor import Predictor
    from mmdetect.serving.scoring import checkpoint_proba

    ckpt, bundle = normalised
    pre = json.loads((bundle / "preprocess.json").read_text(encoding="utf-8"))
    assert pre["normalize"] == DEFAULT_NORMALIZE
    snap = read_snapshot(assets.drift)
    snap.listings = _evaded(snap.listings)
    predictor = Predictor.from_bundle(bundle)
    served = predictor.predict_proba(snap.listings, snap.root)
    eager, _, _ = checkpoint_proba(ckpt, snap)
    np.testing.assert_allclose(served, eager, atol=1e-5)
    # the evasions are undone before tokenisation: evaded text scores as the plain text does
    plain = read_snapshot(assets.drift).listings
    assert (
        predictor.dataset(snap.listings, snap.root).token_ids
        == predictor.dataset(plain, snap.root).token_ids
    )
    np.testing.assert_allclose(served, predictor.predict_proba(plain, snap.root), atol=1e-5)


def test_bundle_without_the_key_scores_as_before(assets):
    from mmdetect.serving.predictor import Predictor

    pre = json.loads((assets.bundle / "preprocess.json").read_text(encoding="utf-8"))
    assert "normalize" not in pre  # the format of a bundle trained without it is unchanged
    snap = read_snapshot(assets.drift)
    predictor = Predictor.from_bundle(assets.bundle)
    ids = predictor.dataset(snap.listings, snap.root).token_ids
    evaded = predictor.dataset(_evaded(snap.listings), snap.root).token_ids
    assert sum(a != b for a, b in zip(ids, evaded, strict=True)) > len(ids) // 2  # NFKC only


def test_bad_normalize_in_preprocess_json_is_a_bundle_error(normalised, tmp_path):
    import shutil

    from mmdetect.artifacts.bundle_check import check_preprocess
    from mmdetect.artifacts.bundle_format import BundleError

    _, bundle = normalised
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    doc = json.loads((copy / "preprocess.json").read_text(encoding="utf-8"))
    doc["normalize"] = {"zerowidth": True}
    with pytest.raises(
        BundleError, match=r"preprocess.json: normalize: unknown option 'zerowidth'"
    ):
        check_preprocess(doc, copy / "preprocess.json")


def test_augmentation_only_on_the_training_split(assets):
    from mmdetect.data.dataset import Item
    from mmdetect.training.datamodule import DetectorDataModule

    snap = read_snapshot(assets.samples / "train", check_images=False)
    items = [Item(x, snap.root) for x in snap.listings]
    kw = {"tokenizer": str(assets.tokenizer), "num_workers": 0, "max_length": 64}
    plain = DetectorDataModule(**kw)
    aug = DetectorDataModule(**kw, augment={"rate": 1.0, "seed": 3})
    base = plain.build_dataset(items, train=True).token_ids
    assert aug.build_dataset(items, train=False).token_ids == base  # evaluation: never
    trained = aug.build_dataset(items, train=True).token_ids
    assert trained != base
    assert (
        trained
        == DetectorDataModule(**kw, augment={"rate": 1.0, "seed": 3})
        .build_dataset(items, train=True)
        .token_ids
    )  # seeded
    changed = sum(a != b for a, b in zip(trained, base, strict=True))
    assert changed > len(base) // 2


def test_unknown_normalize_key_in_a_training_config_is_one_line(tmp_path, capsys, monkeypatch):
    from mmdetect.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    code = main(["fit", "--config", "configs/train/tiny.yaml", "--data.normalize={zerowidth: true}",
                 "--run-dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "error: data.normalize: unknown option 'zerowidth' (known: invisible" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("overlay", ["normalize.yaml", "kana.yaml", "augment.yaml"])
def test_lever_configs_parse(overlay, monkeypatch):
    from mmdetect.data.augment import check_augment
    from mmdetect.data.textnorm import check_options
    from mmdetect.training.run import check_config

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    args = ["--config", "configs/train/tiny.yaml", "--config", f"configs/train/{overlay}"]
    cfg = check_config(args)
    if overlay == "augment.yaml":
        assert check_augment(cfg.data.augment)["rate"] == 0.3
    else:
        assert check_options(cfg.data.normalize)["kana"] is (overlay == "kana.yaml")
