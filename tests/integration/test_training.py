"""Training through the real LightningCLI on small generated snapshots."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdetect.training.run import build_cli, check_config
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
TRAIN_CONFIGS = sorted((REPO / "configs/train").glob("*.yaml"))
OVERLAYS = {  # on top of tiny.yaml
    "text_only.yaml",
    "image_only.yaml",
    "cross_attention.yaml",
    "tiny_vectors.yaml",
    "tiny_lexicon.yaml",
    "tiny_wordvec.yaml",
    "tiny_pretrained.yaml",
    "normalize.yaml",
    "kana.yaml",
    "augment.yaml",
    "levers_off.yaml",
}


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # configs name paths relative to the repository


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_train_config_parses(path: Path) -> None:
    args = ["--config", str(path)]
    if path.name in OVERLAYS:
        args = ["--config", "configs/train/tiny.yaml", *args]
    cfg = check_config(args)
    assert cfg.model.taxonomy == cfg.data.taxonomy  # linked, stated once
    assert cfg.data.max_length == cfg.model.text.max_length
    assert cfg.data.image_size == cfg.model.image.image_size
    if path.name == "text_only.yaml":
        assert cfg.model.image.enabled is False and cfg.model.text.enabled is True
    if path.name == "image_only.yaml":
        assert cfg.model.text.enabled is False and cfg.model.image.enabled is True
    if path.name == "cross_attention.yaml":
        fusion = cfg.model.fusion
        assert fusion["class_path"] == "mmdetect.models.fusion.CrossAttentionFusion"
        assert fusion["init_args"] == {"num_heads": 4, "layers": 1}


def test_every_config_opens_with_its_command() -> None:
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# mmdetect "), f"{path}: first line must be the launch command"


def test_tiny_config_fast_dev_run_on_data_samples(tmp_path: Path) -> None:
    cli = build_cli(
        ["fit", "--config", "configs/train/tiny.yaml", "--trainer.fast_dev_run=2",
         f"--trainer.default_root_dir={tmp_path}", "--data.num_workers=0"]
    )  # fmt: skip
    assert cli.trainer.global_step == 2
    assert len(cli.datamodule.datasets["train"]) >= 1000  # June-August of data_samples/train
    assert cli.model.pos_weight.min() >= 1.0 and cli.model.pos_weight.max() <= 20.0


def read_losses(run_dir: Path) -> dict[int, float]:
    path = next(run_dir.rglob("metrics.csv"))
    with path.open() as fh:
        return {
            int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(fh) if r["train/loss"]
        }


def test_loss_falls_on_a_tiny_overfit_run(small_samples: Path, tmp_path: Path) -> None:
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path, "--trainer.overfit_batches=1",
         "--trainer.max_epochs=40", "--trainer.log_every_n_steps=1", "--model.lr=0.003",
         "--model.warmup_fraction=0.05", "--trainer.limit_val_batches=0")]
    )  # fmt: skip
    losses = read_losses(tmp_path)
    first = sum(losses[s] for s in range(3)) / 3
    last = sum(losses[s] for s in range(37, 40)) / 3
    assert cli.trainer.global_step == 40
    assert last < 0.3 * first, (first, last)


def test_resume_continues_at_the_right_step(small_samples: Path, tmp_path: Path) -> None:
    common = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
              "--trainer.log_every_n_steps=1"]  # fmt: skip
    first = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path, *common, "--trainer.max_epochs=2")]
    )
    assert first.trainer.global_step == 4
    assert (tmp_path / "logs/version_0/checkpoints/last.ckpt").exists()
    ckpt = torch.load(tmp_path / "logs/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    second = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path, *common, "--trainer.max_epochs=3"),
         "--ckpt_path", str(tmp_path / "logs/version_0/checkpoints/last.ckpt")]
    )  # fmt: skip
    assert second.trainer.global_step == 6 and second.trainer.current_epoch == 3
    resumed_steps = sorted(read_losses(tmp_path / "logs/version_1"))
    assert resumed_steps == [4, 5]


@pytest.fixture(scope="module")
def pretrained_towers(small_samples: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny BERT directory with the samples' tokenizer, and a ResNet-18 state dict file."""
    import torchvision
    from transformers import BertConfig, BertModel

    from mmdetect.data.tokenize import load_tokenizer

    root = tmp_path_factory.mktemp("pretrained")
    tok = load_tokenizer(str(small_samples / "tokenizer"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(root / "bert")  # fmt: skip
    tok.save_pretrained(root / "bert")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), root / "resnet18.pth")
    return root / "bert", root / "resnet18.pth"


def test_pretrained_towers_load_from_local_files(
    small_samples: Path, pretrained_towers: tuple[Path, Path], tmp_path: Path
) -> None:
    """The real pretrained path (HF directory + torchvision state dict), offline."""
    from transformers import BertModel

    bert_dir, weights = pretrained_towers
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path / "run", "--trainer.fast_dev_run=1"),
         f"--model.text.pretrained={bert_dir}", f"--data.tokenizer={bert_dir}",
         f"--model.image.weights={weights}"]
    )  # fmt: skip
    saved = torch.load(weights)
    net = cli.model.net
    loaded = BertModel.from_pretrained(bert_dir)
    # fast_dev_run took one optimizer step at the small pretrained_lr: weights moved only a little
    diff = (
        (
            net.text.encoder.embeddings.word_embeddings.weight
            - loaded.embeddings.word_embeddings.weight
        )
        .abs()
        .max()
    )
    assert 0 < diff < 1e-3
    img_diff = (net.image.backbone.conv1.weight - saved["conv1.weight"]).abs().max()
    assert 0 < img_diff < 1e-3
    groups = {g["name"]: g["initial_lr"] for g in cli.trainer.optimizers[0].param_groups}
    assert groups == {"new": 2e-3, "new/no_decay": 2e-3,
                      "pretrained": 5e-5, "pretrained/no_decay": 5e-5}  # fmt: skip


def check_frozen_then_trained(digests: dict) -> None:
    """Epoch 0 frozen: pretrained weights bit-identical, new ones moved; epoch 1: both moved."""
    start, frozen, trained = digests["start"], digests["epoch0"], digests["epoch1"]
    assert frozen["pretrained"] == start["pretrained"]
    assert frozen["new"] != start["new"]
    assert trained["pretrained"] != frozen["pretrained"] and trained["new"] != frozen["new"]


def test_frozen_towers_epoch_is_a_zero_learning_rate(
    small_samples: Path, pretrained_towers: tuple[Path, Path], tmp_path: Path
) -> None:
    bert_dir, weights = pretrained_towers
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path / "run", "--trainer.max_epochs=2",
         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=0",
         "--model.freeze_towers_epochs=1", "--model.warmup_fraction=0.25",
         f"--model.text.pretrained={bert_dir}", f"--data.tokenizer={bert_dir}",
         f"--model.image.weights={weights}",
         "--trainer.callbacks+=tests.integration.record.RecordWeights",
         f"--trainer.callbacks.init_args.out={tmp_path / 'w'}")]
    )  # fmt: skip
    check_frozen_then_trained(json.loads((tmp_path / "w/weights0.json").read_text()))
    # the schedule: pretrained groups at 0 for epoch 0's 2 steps; the new ones never paused
    groups = cli.trainer.optimizers[0].param_groups
    lambdas = cli.trainer.lr_scheduler_configs[0].scheduler.lr_lambdas
    factors = {g["name"]: [f(s) for s in range(4)] for g, f in zip(groups, lambdas, strict=True)}
    assert cli.trainer.global_step == 4
    assert factors["pretrained"][:2] == [0.0, 0.0] and min(factors["pretrained"][2:]) > 0
    assert factors["pretrained/no_decay"] == factors["pretrained"]
    assert factors["new"] == factors["new/no_decay"] == [1.0, 1.0, 2 / 3, 1 / 3]


def test_fitted_price_statistics_travel_into_the_bundle(
    tiny_checkpoint: Path, small_samples: Path, tmp_path: Path
) -> None:
    """Training split -> checkpoint (datamodule state) -> export -> preprocess.json -> serve."""
    import numpy as np

    from mmdetect.data.dataset import Item
    from mmdetect.data.reader import read_snapshot
    from mmdetect.ops.export import export_main
    from mmdetect.serving.predictor import Predictor
    from mmdetect.training.datamodule import is_validation

    raw = torch.load(tiny_checkpoint, weights_only=True)
    listings = read_snapshot(small_samples / "train").listings
    items = [Item(x, small_samples / "train") for x in listings if x.labels is not None]
    train = [it.listing for it in items if not is_validation(it, "time", "2026-09-01", 0.15)]
    prices = np.log1p([x.price for x in train if x.price is not None])
    stored = raw["DetectorDataModule"]
    assert stored["price_mean"] == pytest.approx(prices.mean(), abs=1e-12)
    assert stored["price_std"] == pytest.approx(prices.std(), abs=1e-12)
    assert raw["datamodule_hyper_parameters"]["price_mean"] is None  # stored once, as fitted
    out = tmp_path / "bundle"
    assert export_main(["--ckpt", str(tiny_checkpoint), "--out", str(out), "--parity-snapshot",
                        str(small_samples / "drift")]) == 0  # fmt: skip
    pre = json.loads((out / "preprocess.json").read_text())
    assert (pre["price_mean"], pre["price_std"]) == (stored["price_mean"], stored["price_std"])
    served = Predictor.from_bundle(out).bundle.preprocess
    assert (served["price_mean"], served["price_std"]) == (pre["price_mean"], pre["price_std"])


def test_predict_from_a_checkpoint_uses_its_price_statistics(
    tiny_checkpoint: Path, small_samples: Path, tmp_path: Path
) -> None:
    """Lightning restores the datamodule state after setup(): the loaders must see it."""
    stored = torch.load(tiny_checkpoint, weights_only=True)["DetectorDataModule"]
    cli = build_cli(
        ["predict", *tiny_fit_args(small_samples, tmp_path, f"--ckpt_path={tiny_checkpoint}",
         f"--data.predict_snapshots=[{small_samples / 'drift'}]",
         f"--predictions.out={tmp_path / 'p.jsonl'}")]
    )  # fmt: skip
    ds = cli.datamodule.datasets["predict"]
    assert (ds.price_mean, ds.price_std) == (stored["price_mean"], stored["price_std"])
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(ds)


def shrunk_bert_base_args(samples: Path, towers: tuple[Path, Path], run: Path) -> list[str]:
    """configs/train/bert_base_resnet50.yaml as it is (gated fusion, attention pooling, modality
    dropout, freeze_towers_epochs: 1), with tiny local pretrained towers, on CPU."""
    bert_dir, weights = towers
    return [
        "--config", "configs/train/bert_base_resnet50.yaml",
        "--trainer.accelerator=cpu", "--trainer.precision=32-true",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--model.text.pretrained={bert_dir}", f"--data.tokenizer={bert_dir}",
        "--model.text.max_length=48",
        "--model.image.name=resnet18", f"--model.image.weights={weights}",
        "--model.image.image_size=32", "--model.hidden=32",
        f"--data.snapshots=[{samples / 'train'}]", "--data.num_workers=0", "--data.batch_size=16",
    ]  # fmt: skip


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_with_frozen_towers(
    small_samples: Path, pretrained_towers: tuple[Path, Path], tmp_path: Path
) -> None:
    """The shrunk BERT-base config under DDP (gloo, 2 processes): disjoint data per rank, the
    pretrained towers frozen in epoch 0 (bit-identical) and trained in epoch 1, ranks in sync."""
    out = tmp_path / "seen"
    args = [
        *shrunk_bert_base_args(small_samples, pretrained_towers, tmp_path / "run"),
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
        "--trainer.callbacks+=tests.integration.record.RecordIndices",
        f"--trainer.callbacks.init_args.out={out}",
        "--trainer.callbacks+=tests.integration.record.RecordWeights",
        f"--trainer.callbacks.init_args.out={out}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "mmdetect.cli.commands", "fit", *args],
        check=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(seen[0]) == sorted(seen[1]) == ["0", "1"]
    for epoch in ("0", "1"):  # each epoch: disjoint shards, 3 batches of 16 per rank
        assert len(seen[0][epoch]) == len(seen[1][epoch]) == 48
        assert not set(seen[0][epoch]) & set(seen[1][epoch])
    digests = [json.loads((out / f"weights{r}.json").read_text()) for r in (0, 1)]
    assert digests[0] == digests[1]  # DDP kept the replicas identical
    check_frozen_then_trained(digests[0])
