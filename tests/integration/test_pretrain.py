"""`mmdetect pretrain` end to end: the MLM loss falls, the directory it writes is a
`model.text.pretrained` that fit loads, bad corpora are one line, a run killed with -9 resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmdetect.cli import main
from mmdetect.pretrain.cli import build_pretrain_cli
from mmdetect.training import build_cli
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def pretrain_args(samples: Path, run: Path, *extra: str) -> list[str]:
    """configs/pretrain/tiny.yaml shrunk: a 16-dim encoder on the small samples' text."""
    return [
        "--config", "configs/pretrain/tiny.yaml",
        f"--data.corpus=[{samples / 'train'}]",
        f"--data.tokenizer={samples / 'tokenizer'}",
        "--data.max_length=48", "--data.batch_size=16", "--data.val_fraction=0.2",
        "--model.hidden_size=16", "--model.intermediate_size=32", "--model.lr=0.005",
        f"--model.out_dir={run / 'encoder'}",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        *extra,
    ]  # fmt: skip


def val_losses(run: Path) -> list[float]:
    rows = []
    for path in sorted(run.glob("logs/version_*/metrics.csv")):
        with path.open() as fh:
            rows += [float(r["val/mlm_loss"]) for r in csv.DictReader(fh) if r["val/mlm_loss"]]
    return rows


@pytest.fixture(scope="module")
def pretrained(small_samples, tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        build_pretrain_cli(pretrain_args(small_samples, run, "--trainer.max_epochs=5"))
    finally:
        os.chdir(cwd)
    return run


def test_mlm_loss_falls_and_the_encoder_directory_is_written(pretrained, small_samples):
    losses = val_losses(pretrained)
    assert len(losses) == 5 and losses[-1] < losses[0] - 1.0, losses
    enc = pretrained / "encoder"
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= {
        p.name for p in enc.iterdir()
    }
    config = json.loads((enc / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (16, 2)
    vocab = (small_samples / "tokenizer" / "vocab.txt").read_text(encoding="utf-8")
    assert (enc / "vocab.txt").read_text(encoding="utf-8") == vocab  # its tokenizer travels
    assert not list(pretrained.glob(".encoder.partial-*"))


def test_fit_starts_from_the_pretrained_encoder(pretrained, small_samples, tmp_path):
    from mmdetect.lit import DetectorModule
    from mmdetect.models.text import TextConfig

    enc = pretrained / "encoder"
    saved = load_file(enc / "model.safetensors")
    module = DetectorModule(text=TextConfig(pretrained=str(enc), max_length=48))
    assert module.hparams.tokenizer == str(enc)  # the directory's own tokenizer
    state = module.net.text.encoder.state_dict()
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(state[name], saved[f"bert.{name}"])
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, tmp_path, "--trainer.fast_dev_run=2",
         f"--model.text.pretrained={enc}", "--data.tokenizer=null")]
    )  # fmt: skip
    assert cli.trainer.global_step == 2


def test_a_corpus_without_text_is_one_line(small_samples, tmp_path, capsys):
    bad = tmp_path / "nothing.jsonl"
    bad.write_text('{"id": "a"}\n{"title": "  "}\n', encoding="utf-8")
    args = pretrain_args(small_samples, tmp_path, f"--data.corpus=[{bad}]")
    code = main(["pretrain", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith(f"error: {bad}: no usable text") and "Traceback" not in err
    assert not (tmp_path / "encoder").exists()


def test_config_is_the_tiny_classifiers_size():
    cli = build_pretrain_cli(["--config", "configs/pretrain/tiny.yaml"], run=False)
    import yaml

    tiny = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())["model"]["text"]
    hp = cli.model.hparams
    assert (hp.hidden_size, hp.num_layers, hp.num_heads, hp.intermediate_size) == (
        tiny["hidden_size"], tiny["num_layers"], tiny["num_heads"], tiny["intermediate_size"]
    )  # fmt: skip
    assert hp.max_length == tiny["max_length"] == cli.datamodule.hparams.max_length
    pre = yaml.safe_load((REPO / "configs/train/tiny_pretrained.yaml").read_text())
    assert pre["model"]["text"]["pretrained"] == hp.out_dir


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(small_samples, tmp_path):
    args = pretrain_args(small_samples, tmp_path, "--trainer.max_epochs=30",
                         "--last_checkpoint.every_n_train_steps=4")  # fmt: skip
    cmd = [sys.executable, "-c", "import sys; from mmdetect.cli import main; sys.exit(main())",
           "pretrain", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and step < 12:
        time.sleep(1)
        if last.exists():
            try:
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # being replaced right now
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step >= 12 and not (tmp_path / "encoder").exists()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    resumed = subprocess.run([*cmd, "--ckpt_path", "last", "--trainer.max_epochs=32"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout
    final = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = 8  # 128 train texts / 16
    assert final["global_step"] == 32 * steps_per_epoch > killed_at
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
