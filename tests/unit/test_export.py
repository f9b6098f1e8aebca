"""`mmdetect export`: bundle layout, parity gate, refusals, dynamic shapes of the traced graph.

`tiny_assets` (also used by test_serve.py and the subprocess test) builds, once per session, a
small sample snapshot with real JPEGs, a tokenizer trained on it, a seeded tiny DetectorModule
checkpoint in the LightningCLI format and an fp32 CPU bundle exported from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.ops.export import (
    ExportConfig,
    ExportError,
    export_bundle,
    export_main,
    load_export_config,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# "Trained-ish": logits dominated by a per-class bias, far from the 0.5 review threshold.
HEAD_BIAS = (-3.0, -2.5, 2.5, -2.0, -3.5, 1.5, -4.0)
PRICE_MEAN, PRICE_STD = 7.5, 1.5  # not the defaults: proves they travel from the checkpoint
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "export"


@dataclass(frozen=True)
class Assets:
    samples: Path  # train/ drift/ incoming/
    tokenizer: Path
    ckpt: Path
    bundle: Path  # fp32 CPU bundle, default thresholds

    @property
    def drift(self) -> Path:
        return self.samples / "drift"


def small_config(**kw) -> ExportConfig:
    """Small parity runs: all 30 drift listings in batches of 8 (4 batches, ragged last)."""
    return ExportConfig(**{"parity_listings": 64, "batch_size": 8, **kw})


def build_checkpoint(path: Path, tokenizer: Path) -> None:
    """A seeded tiny DetectorModule saved as LightningCLI saves one (config dicts + instantiator)."""
    import lightning

    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig
    from mmdetect.training.module import DetectorModule

    text = TextConfig(
        hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_length=64
    )
    image = ImageConfig(name="mobilenet_v3_small", image_size=32, max_photos=3)
    torch.manual_seed(0)
    module = DetectorModule(
        text=text, image=image, hidden=24, category_dim=4, tokenizer=str(tokenizer)
    )
    with torch.no_grad():
        module.net.head.bias.copy_(torch.tensor(HEAD_BIAS))
    hparams = {**dict(module.hparams), "text": asdict(text), "image": asdict(image)}
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    data = {"tokenizer": str(tokenizer), "max_length": 64, "image_size": 32, "max_photos": 3,
            "price_mean": PRICE_MEAN, "price_std": PRICE_STD, "taxonomy": list(module.taxonomy),
            "categories": list(module.hparams.categories), "batch_size": 8, "num_workers": 0}  # fmt: skip
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": hparams,
            "datamodule_hyper_parameters": data, "pytorch-lightning_version": lightning.__version__}  # fmt: skip
    module.on_save_checkpoint(ckpt)  # as Trainer.save_checkpoint: the vocabulary fingerprint
    torch.save(ckpt, path)


def tiny_assets(base: Path) -> Assets:
    """Build (or reuse, within one pytest session) the assets under `base`."""
    assets = Assets(base / "samples", base / "tokenizer", base / "tiny.ckpt", base / "bundle")
    if (base / "ready").exists():
        return assets
    from mmdetect.data.reader import read_snapshot
    from mmdetect.data.vocab import build_vocab
    from mmdetect.samples.generator import generate_samples

    generate_samples(assets.samples, seed=0, n_train=60, n_drift=30, n_incoming=10, image_size=48)
    train = read_snapshot(assets.samples / "train", check_images=False).listings
    build_vocab([f"{x.title} {x.description}" for x in train], 400, assets.tokenizer)
    build_checkpoint(assets.ckpt, assets.tokenizer)
    export_bundle(assets.ckpt, assets.bundle, small_config(), parity_snapshot=assets.drift)
    (base / "ready").touch()
    return assets


def eager_net(assets: Assets):
    from mmdetect.training.module import DetectorModule

    return DetectorModule.load_from_checkpoint(assets.ckpt, map_location="cpu").net.eval()


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}"))


def test_bundle_layout_and_documents(assets, capsys):
    root = assets.bundle
    files = bundle_format.bundle_files(root)
    assert {"model.ts", "preprocess.json", "thresholds.json", "meta.json"} <= set(files)
    assert any(f.startswith("tokenizer/") for f in files) and "tokenizer/vocab.txt" in files
    # SHA256SUMS: every file, sha256sum format, nothing else
    lines = (root / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == files
    digest, rel = lines[0].split("  ")
    assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest

    pre = json.loads((root / "preprocess.json").read_text())
    assert (pre["max_length"], pre["image_size"], pre["max_photos"]) == (64, 32, 3)
    assert (pre["price_mean"], pre["price_std"]) == (PRICE_MEAN, PRICE_STD)
    assert pre["taxonomy"][0] == "counterfeit" and len(pre["taxonomy"]) == 7
    assert pre["categories"][:2] == ["fashion", "sneakers"] and pre["pad_id"] == 0
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["inputs"][0] == "input_ids"

    th = json.loads((root / "thresholds.json").read_text())
    assert th["fitted"] is False and "not fitted" in th["note"] and th["format_version"] == 2
    assert th["classes"]["adult"]["hide"] is None and th["review"]["threshold"] == 0.5

    meta = json.loads((root / "meta.json").read_text())
    assert meta["device"] == "cpu" and meta["dtype"] == "fp32" and meta["format_version"] == 1
    assert meta["versions"]["torch"] == torch.__version__
    assert set(meta["versions"]) == {"mmdetect", "torch", "torchvision", "transformers"}
    assert meta["checkpoint"]["sha256"] == hashlib.sha256(assets.ckpt.read_bytes()).hexdigest()
    assert meta["checkpoint"]["path"] == str(assets.ckpt.resolve())
    assert meta["created_utc"].endswith("Z")
    assert meta["training_config"]["model"]["text"]["hidden_size"] == 16
    assert meta["training_config"]["data"]["price_mean"] == PRICE_MEAN
    for stage in ("traced", "served"):
        parity = meta["parity"][stage]
        assert parity["listings"] == 30 and parity["max_abs_diff"] <= 1e-5
        assert parity["class_agreement"] == 1.0
    assert meta["parity"]["served"]["vs_traced_max_abs_diff"] == 0.0  # same graph, same batches
    assert meta["parity_check"]["snapshot"] == str(assets.drift)
    assert _siblings(root) == []  # no temporary or old directory left behind


def test_traced_graph_has_dynamic_batch_length_and_photos(assets):
    """One graph for any batch size, sequence length and number of photos (0 = none valid)."""
    net = eager_net(assets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.load(str(assets.bundle / "model.ts"))
    g = torch.Generator().manual_seed(3)
    vocab = net.text.encoder.config.vocab_size
    for b, length, k, valid in [(1, 5, 1, 0), (7, 20, 3, 3), (7, 64, 3, 2), (2, 9, 0, 0)]:
        ids = torch.randint(5, vocab, (b, length), generator=g)
        mask = torch.ones(b, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # padding
        images = torch.randn(b, k, 3, 32, 32, generator=g)
        image_mask = torch.zeros(b, k, dtype=torch.bool)
        image_mask[:, :valid] = True
        image_mask[-1] = False  # a listing without photos
        inputs = (ids, mask, images, image_mask, torch.randn(b, generator=g),
                  torch.arange(b) % 2 == 0, torch.arange(b) % 12)  # fmt: skip
        with torch.no_grad():
            probs = traced(*inputs)
            expected = torch.sigmoid(net(*inputs))
        assert probs.shape == (b, 7) and probs.dtype == torch.float32
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)


def test_bf16_export_passes_parity(assets, tmp_path, capsys):
    out = tmp_path / "bf16"
    parity = export_bundle(
        assets.ckpt, out, small_config(dtype="bf16"), parity_snapshot=assets.drift
    )
    printed = capsys.readouterr().out
    assert "parity bf16 on cpu, eager fp32 vs traced TorchScript, 30 listings" in printed
    assert "eager fp32 vs served TorchScript" in printed and "decisions agree" in printed
    for fig in parity.values():
        assert 0 < fig["max_abs_diff"] <= 0.02 and fig["class_agreement"] >= 0.995
    assert parity["served"]["vs_traced_max_abs_diff"] == 0.0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "bf16" and meta["parity"] == parity


def test_int8_export_quantizes_linear_layers_and_passes_parity(assets, tmp_path, capsys):
    from mmdetect.data.reader import read_snapshot
    from mmdetect.serving.predictor import Predictor

    out = tmp_path / "int8"
    argv = ["--ckpt", str(assets.ckpt), "--out", str(out), "--parity-snapshot", str(assets.drift),
            "--config", str(CONFIGS / "cpu_int8.yaml")]  # fmt: skip
    assert export_main(argv) == 0
    assert "parity fp32 dynamic_int8 on cpu, eager fp32 vs traced" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quantize"] == "dynamic_int8" and meta["optimize_for_inference"] is True
    for fig in meta["parity"].values():  # quantization moves probabilities a little, not to 0
        assert 0 < fig["max_abs_diff"] <= 0.02 and fig["class_agreement"] >= 0.995
    predictor = Predictor.from_bundle(out, "cpu")
    graph = str(predictor.bundle.module.inlined_graph)
    assert "quantized::linear_dynamic" in graph and "aten::linear(" not in graph
    listings = read_snapshot(assets.drift).listings
    served = predictor.predict_proba(listings, assets.drift)
    fp32 = Predictor.from_bundle(assets.bundle, "cpu").predict_proba(listings, assets.drift)
    assert 0 < np.abs(served - fp32).max() <= 0.02
    with pytest.raises(bundle_format.BundleError, match="dynamic_int8, which runs on CPU only"):
        B.resolve_device("cuda", meta)


def test_int8_needs_cpu_fp32_and_bf16_warns_without_native_units(monkeypatch, capsys):
    import mmdetect.artifacts.export_checks as export

    for kw in ({"dtype": "bf16"}, {"device": "cuda"}):
        with pytest.raises(ExportError, match="quantize dynamic_int8 needs --device cpu"):
            export.check_target(ExportConfig(quantize="dynamic_int8", **kw))
    with pytest.raises(ExportError, match="quantize must be one of"):
        export.check_target(ExportConfig(quantize="int4"))
    monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: False)
    assert export.check_target(ExportConfig(dtype="bf16")).type == "cpu"
    assert "no AVX-512 BF16 or AMX: bf16 runs emulated" in capsys.readouterr().err
    monkeypatch.setattr(export, "cpu_has_native_bf16", lambda: True)
    export.check_target(ExportConfig(dtype="bf16"))
    assert capsys.readouterr().err == ""


class _Perturbed(torch.nn.Module):
    def __init__(self, traced, shift: float):
        super().__init__()
        self.traced, self.shift = traced, shift

    def forward(self, *inputs):
        return (self.traced(*inputs) + self.shift).clamp(0, 1)


def test_parity_failure_refuses_and_writes_nothing(assets, tmp_path, monkeypatch, capsys):
    import mmdetect.ops.export as export
    from mmdetect.artifacts import tracing

    real = tracing.trace_model
    monkeypatch.setattr(export, "trace_model", lambda *a, **k: _Perturbed(real(*a, **k), 1e-3))
    out = tmp_path / "bundle"
    argv = ["--ckpt", str(assets.ckpt), "--out", str(out), "--parity-snapshot", str(assets.drift),
            "--parity-listings", "16"]  # fmt: skip
    assert export_main(argv) == 1
    err = capsys.readouterr().err
    assert "parity check failed" in err and "max |dp| 0.001 > 1e-05" in err
    assert "16 listings" in err and "nothing written" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dtype", "fp16"], "fp16 on CPU is refused"),
        (["--device", "cuda"], "no CUDA device is visible"),
    ],
)
def test_impossible_targets_are_refused(assets, tmp_path, capsys, flags, message):
    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "bundle"
    assert export_main(["--ckpt", str(assets.ckpt), "--out", str(out), *flags]) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_target_needs_force_and_thresholds_are_checked(assets, tmp_path, capsys):
    out = tmp_path / "bundle"
    shutil.copytree(assets.bundle, out)  # --force replaces only a bundle of ours (issue #12)
    (out / "old-file").write_text("old")
    bundle_format.write_checksums(out)
    cfg = small_config(parity_listings=8, optimize_for_inference=True)
    with pytest.raises(ExportError, match="exists; pass --force"):
        export_bundle(assets.ckpt, out, cfg, parity_snapshot=assets.drift)

    th = json.loads((assets.bundle / "thresholds.json").read_text())
    th["classes"]["adult"] = {"hide": 0.9, "certified": True, "note": "test"}
    th_path = tmp_path / "thresholds.json"
    th_path.write_text(json.dumps(th))
    parity = export_bundle(assets.ckpt, out, cfg, th_path, assets.drift, force=True)
    # applied at load time (conv-bn folding, MKLDNN): the served graph may differ, within 1e-5
    assert (
        0 <= parity["served"]["vs_traced_max_abs_diff"] <= parity["served"]["max_abs_diff"] <= 1e-5
    )
    assert not (out / "old-file").exists() and _siblings(out) == []
    assert json.loads((out / "thresholds.json").read_text())["classes"]["adult"]["hide"] == 0.9
    bundle_format.verify_checksums(out)

    del th["classes"]["adult"]
    th_path.write_text(json.dumps(th))
    with pytest.raises(ExportError, match="classes.adult: missing"):
        export_bundle(assets.ckpt, tmp_path / "other", cfg, th_path, assets.drift)
    assert not (tmp_path / "other").exists()
    th["taxonomy"] = th["taxonomy"][::-1]  # fitted for another class order
    th_path.write_text(json.dumps(th))
    with pytest.raises(ExportError, match="names and order must match"):
        export_bundle(assets.ckpt, tmp_path / "other", cfg, th_path, assets.drift)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_export_configs_load(path):
    cfg = load_export_config(path)
    assert (
        cfg.device in ("cpu", "cuda")
        and cfg.dtype in bundle_format.DTYPES
        and cfg.quantize in bundle_format.QUANTIZE
    )
    first = path.read_text().splitlines()[0]
    assert first.startswith("# mmdetect export") and f"--config configs/export/{path.name}" in first


def test_unknown_config_key_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("device: cpu\nfreez: true\n")
    with pytest.raises(ExportError, match=r"unknown keys \['freez'\]"):
        load_export_config(path)


def test_parity_figures_count_tier_disagreements():
    from mmdetect.policy import unfitted_operating_point

    th = unfitted_operating_point(["a", "b"])
    th["classes"]["b"].update(hide=0.9, certified=True)
    ref = np.array([[0.49, 0.95], [0.10, 0.20]])
    test = np.array([[0.51, 0.89], [0.10, 0.20]])
    fig = B.parity_figures(ref, test, ["a", "b"], th)
    assert fig["class_disagreements"] == 2 and fig["class_agreement"] == 0.5
    assert fig["overall_agreement"] == 0.5 and fig["max_abs_diff"] == pytest.approx(0.06)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_export_and_cpu_bundle_on_cuda(assets, tmp_path):
    from mmdetect.data.reader import read_snapshot
    from mmdetect.serving.predictor import Predictor

    listings = read_snapshot(assets.drift).listings
    cpu = Predictor.from_bundle(assets.bundle, "cpu").predict_proba(listings, assets.drift)
    moved = Predictor.from_bundle(assets.bundle, "cuda").predict_proba(listings, assets.drift)
    np.testing.assert_allclose(moved, cpu, atol=2e-3, rtol=0)  # cuDNN uses TF32 by default
    for dtype in ("fp32", "bf16", "fp16"):
        out = tmp_path / dtype
        parity = export_bundle(assets.ckpt, out, small_config(device="cuda", dtype=dtype),
                               parity_snapshot=assets.drift)  # fmt: skip
        assert json.loads((out / "meta.json").read_text())["device"] == "cuda:0"
        assert parity["served"]["class_agreement"] >= 0.995
        back = Predictor.from_bundle(out, "cpu") if dtype != "fp16" else None
        if back is not None:  # a CUDA-traced bundle runs on CPU too
            np.testing.assert_allclose(back.predict_proba(listings, assets.drift), cpu, atol=0.02)
