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

from mmdetect.training import build_cli, check_config
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
TRAIN_CONFIGS = sorted((REPO / "configs/train").glob("*.yaml"))
OVERLAYS = {"text_only.yaml", "image_only.yaml", "cross_attention.yaml"}  # on top of tiny.yaml


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


def test_pretrained_towers_load_from_local_files(small_samples: Path, tmp_path: Path) -> None:
    """The real pretrained path (HF directory + torchvision state dict), offline."""
    import torchvision
    from transformers import BertConfig, BertModel

    from mmdetect.data.tokenize import load_tokenizer

    tok = load_tokenizer(str(small_samples / "tokenizer"))
    bert_dir = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(bert_dir)  # fmt: skip
    tok.save_pretrained(bert_dir)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
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
    groups = cli.trainer.optimizers[0].param_groups
    assert sorted(g["initial_lr"] for g in groups) == [5e-5, 2e-3]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_sees_disjoint_data(small_samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    args = tiny_fit_args(
        small_samples, tmp_path / "run", "--trainer.strategy=ddp", "--trainer.devices=2",
        "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
        "--trainer.callbacks+=tests.integration.record.RecordIndices",
        f"--trainer.callbacks.init_args.out={out}",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "mmdetect.cli", "fit", *args],
        check=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    seen = [set(json.loads((out / f"rank{r}.json").read_text())) for r in (0, 1)]
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1]
