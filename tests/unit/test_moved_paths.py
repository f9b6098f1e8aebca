"""Checkpoints written before the stage packages (issue #28) keep loading: the class paths they
store are translated by mmdetect.training.moved_paths, and every translated path imports."""

from __future__ import annotations

import importlib

import torch

from mmdetect.training.checkpoint import read_checkpoint, translate_paths
from mmdetect.training.moved_paths import MOVED_MODULES, MOVED_SYMBOLS, translate_class_path


def test_translate_known_paths():
    assert (
        translate_class_path("mmdetect.training.module.DetectorModule")
        == "mmdetect.training.module.DetectorModule"
    )
    assert translate_class_path("mmdetect.training.datamodule.DetectorDataModule") == (
        "mmdetect.training.datamodule.DetectorDataModule"
    )
    # a module move then a symbol move: the class lives in the module the symbol went to
    assert translate_class_path("mmdetect.artifacts.tracing.ProbabilityModel") == (
        "mmdetect.artifacts.tracing.ProbabilityModel"
    )
    assert translate_class_path("mmdetect.artifacts.bundle_format.BundleError") == (
        "mmdetect.artifacts.bundle_format.BundleError"
    )
    for unmoved in ("mmdetect.models.fusion.GatedFusion", "tests.custom_fusion.Sum", "lightning.X"):
        assert translate_class_path(unmoved) == unmoved
    # idempotent: a new path is left alone
    new = translate_class_path("mmdetect.training.module.DetectorModule")
    assert translate_class_path(new) == new


def test_every_new_path_imports():
    for old, new in MOVED_MODULES.items():
        assert importlib.import_module(new).__name__ == new, old
    for old, target in MOVED_SYMBOLS.items():
        name = old.rpartition(".")[2]
        assert hasattr(importlib.import_module(target), name), old


def test_translate_paths_walks_nested_hyper_parameters():
    raw = {
        "hyper_parameters": {
            "_class_path": "mmdetect.training.module.DetectorModule",
            "fusion": {
                "class_path": "mmdetect.artifacts.onnx_runtime.OnnxModule",
                "init_args": {"a": 1},
            },
            "towers": [{"class_path": "mmdetect.serving.predictor.Predictor"}],
            "note": "mmdetect.training.module.DetectorModule",  # not a class-path key: data, left as is
        },
        "datamodule_hyper_parameters": {
            "_class_path": "mmdetect.training.datamodule.DetectorDataModule"
        },
    }
    hp = translate_paths(raw)["hyper_parameters"]
    assert hp["_class_path"] == "mmdetect.training.module.DetectorModule"
    assert hp["fusion"] == {
        "class_path": "mmdetect.artifacts.onnx_runtime.OnnxModule",
        "init_args": {"a": 1},
    }
    assert hp["towers"][0]["class_path"] == "mmdetect.serving.predictor.Predictor"
    assert hp["note"] == "mmdetect.training.module.DetectorModule"
    assert raw["datamodule_hyper_parameters"]["_class_path"] == (
        "mmdetect.training.datamodule.DetectorDataModule"
    )


def test_checkpoint_with_old_paths_loads(tiny_checkpoint, tmp_path):
    """A real checkpoint whose hyper-parameters carry the pre-move class paths reads back with
    the new ones, and loads into a DetectorModule with the same weights."""
    from mmdetect.training.loading import load_checkpoint

    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["_class_path"] = "mmdetect.training.module.DetectorModule"
    raw.setdefault("datamodule_hyper_parameters", {})["_class_path"] = (
        "mmdetect.training.datamodule.DetectorDataModule"
    )
    old = tmp_path / "old-paths.ckpt"
    torch.save(raw, old)

    got = read_checkpoint(old)
    assert got["hyper_parameters"]["_class_path"] == "mmdetect.training.module.DetectorModule"
    module_path, _, cls = got["hyper_parameters"]["_class_path"].rpartition(".")
    assert getattr(importlib.import_module(module_path), cls).__name__ == "DetectorModule"

    module, _ = load_checkpoint(old)
    reference, _ = load_checkpoint(tiny_checkpoint)
    for (name, a), (_, b) in zip(
        module.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
