"""A fusion module outside the package (tests/custom_fusion.py), named by class path in a YAML
file, trains through the real LightningCLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmdetect.training.run import build_cli
from tests.conftest import tiny_fit_args
from tests.custom_fusion import TokenPhotoSumFusion

pytestmark = pytest.mark.slow  # a minute on 2 shared cores
REPO = Path(__file__).resolve().parents[2]

OVERLAY = """\
# mmdetect fit --config configs/train/tiny.yaml --config plugin.yaml
model:
  allow_modules: [tests.custom_fusion]   # a fusion class path outside mmdetect must be named
  fusion:
    class_path: tests.custom_fusion.TokenPhotoSumFusion
    init_args:
      scale: 0.5
"""


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # tiny.yaml names paths relative to the repository


def test_fusion_from_a_yaml_class_path_outside_the_package_trains(small_samples, tmp_path):
    overlay = tmp_path / "plugin.yaml"
    overlay.write_text(OVERLAY, encoding="utf-8")
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path, f"--config={overlay}",
         "--trainer.fast_dev_run=2", "--trainer.log_every_n_steps=1")]
    )  # fmt: skip
    fusion = cli.model.net.fusion
    assert isinstance(fusion, TokenPhotoSumFusion) and fusion.scale == 0.5
    assert cli.trainer.global_step == 2
    loss = float(cli.trainer.callback_metrics["train/loss"])
    assert math.isfinite(loss) and loss > 0
    assert cli.model.hparams.fusion["class_path"] == "tests.custom_fusion.TokenPhotoSumFusion"
