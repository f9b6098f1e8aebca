"""A tiny timm backbone from a local weights file, with cross-attention fusion, end to end:
fit (a few steps) -> export (parity gate) -> predict; its own preprocessing (mean, std,
interpolation) is what the datamodule applied and what preprocess.json carries; the bundle
runs in a fresh process where timm cannot even be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from mmdetect.artifacts import bundle_format
from mmdetect.data.reader import read_snapshot
from mmdetect.ops.export import ExportConfig, export_bundle
from mmdetect.serving.predictor import Predictor, build_loader
from mmdetect.training.run import build_cli
from tests.conftest import tiny_fit_args

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

REPO = Path(__file__).resolve().parents[2]
NAME = "test_convnext"  # timm's pretrained_cfg: mean = std = 0.5, bicubic (not ImageNet)

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["timm"] = None  # `import timm` now raises: the bundle must not need it
    from pathlib import Path

    import numpy as np
    import torch

    torch.set_num_threads(1)
    bundle, snapshot, inputs, out = (Path(a) for a in sys.argv[1:5])
    model = torch.jit.load(str(bundle / "model.ts"))
    batch = torch.load(inputs)
    order = json.loads((bundle / "preprocess.json").read_text())["inputs"]
    with torch.no_grad():
        raw = model(*[batch[name] for name in order]).numpy()
    from mmdetect.data.reader import read_snapshot
    from mmdetect.serving.predictor import Predictor

    probs = Predictor.from_bundle(bundle, batch_size=8).predict_proba(
        read_snapshot(snapshot).listings, snapshot
    )
    np.savez(out, raw=raw, probs=probs)
    print(json.dumps({"timm": sys.modules.get("timm") is not None}))
    """
)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # tiny.yaml names paths relative to the repository


def test_timm_cross_attention_fit_export_predict(small_samples: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / f"{NAME}.pth"
    torch.save(timm.create_model(NAME, pretrained=False, num_classes=3).state_dict(), weights)
    run = tmp_path / "run"
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, run, "--config=configs/train/cross_attention.yaml",
         "--model.image.source=timm", f"--model.image.name={NAME}",
         f"--model.image.weights={weights}",
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
         "--trainer.limit_val_batches=2", f"--checkpoint.dirpath={run / 'ckpt'}",
         f"--last_checkpoint.dirpath={run / 'ckpt'}")]
    )  # fmt: skip
    assert cli.trainer.global_step == 3
    net = cli.model.net
    assert type(net.fusion).__name__ == "CrossAttentionFusion" and len(net.fusion.layers) == 1
    assert (net.preprocess.mean, net.preprocess.interpolation) == ((0.5,) * 3, "bicubic")
    # photos stay uint8 in the dataset; the loader normalises each batch with the backbone's values
    _, mean, std = cli.datamodule.photo_transform(train=True)
    assert tuple(mean) == (0.5,) * 3 and tuple(std) == (0.5,) * 3

    bundle = tmp_path / "bundle"
    cfg = ExportConfig(parity_listings=64, batch_size=8)
    parity = export_bundle(run / "ckpt" / "latest.ckpt", bundle, cfg,
                           parity_snapshot=small_samples / "drift")  # fmt: skip
    assert parity["traced"]["max_abs_diff"] <= cfg.fp32_tolerance
    assert parity["served"]["max_abs_diff"] <= cfg.fp32_tolerance
    pre = json.loads((bundle / "preprocess.json").read_text())
    assert (pre["image_size"], pre["mean"], pre["std"], pre["interpolation"]) == (
        32, [0.5] * 3, [0.5] * 3, "bicubic",
    )  # fmt: skip

    drift = small_samples / "drift"
    predictor = Predictor.from_bundle(bundle, batch_size=8)
    listings = read_snapshot(drift).listings
    probs = predictor.predict_proba(listings, drift)
    batch = next(iter(build_loader(predictor.dataset(listings[:6], drift), pre, 6)))
    torch.save({name: batch[name] for name in bundle_format.INPUT_NAMES}, tmp_path / "inputs.pt")
    with torch.no_grad():
        raw = predictor.bundle.module(*[batch[name] for name in bundle_format.INPUT_NAMES]).numpy()
        eager = torch.sigmoid(cli.model.eval()(batch)).numpy()
    np.testing.assert_allclose(raw, eager, atol=1e-5)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    args = [str(bundle), str(drift), str(tmp_path / "inputs.pt"), str(tmp_path / "out.npz")]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"timm": False}
    child = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(child["raw"], raw)
    np.testing.assert_array_equal(child["probs"], probs)
