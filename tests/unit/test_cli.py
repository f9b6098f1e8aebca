"""`mmdetect` command parsing: one meaning per command, deprecated spellings, flags in any order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmdetect.cli.commands import COMMANDS, main
from tests.unit.test_reader import row, write_snapshot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stages(monkeypatch) -> list[list[str]]:
    """Lightning stages recorded instead of run."""
    import mmdetect.training.run

    calls: list[list[str]] = []
    monkeypatch.setattr(
        mmdetect.training.run, "run_lightning", lambda a: calls.append(list(a)) or 0
    )
    return calls


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "snap", [row(1, labels=["adult"]), row(2, labels=["nope"])])


def test_help_lists_every_command_once(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert "validate" not in listed and "test" not in listed  # deprecated: not advertised


def test_no_command_and_unknown_command_exit_2_with_the_list(capsys) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "  check" in err and "  lightning" in err


@pytest.mark.parametrize(
    "argv",
    [["check", "{s}", "--strict"], ["check", "--strict", "{s}"], ["check", "--no-images", "--strict", "{s}"]],
)  # fmt: skip
def test_check_takes_flags_in_any_order(snapshot: Path, argv, capsys) -> None:
    assert main([a.format(s=snapshot) for a in argv]) == 1  # strict: the bad label stops it
    err = capsys.readouterr().err
    assert "listings.jsonl:2: labels:" in err and "deprecated" not in err


@pytest.mark.parametrize("order", ["flag_first", "flag_last"])
def test_old_validate_still_checks_a_snapshot_with_a_deprecation(snapshot, order, capsys) -> None:
    argv = ["--strict", str(snapshot)] if order == "flag_first" else [str(snapshot), "--strict"]
    assert main(["validate", *argv]) == 1  # before: "unrecognized arguments" for flag_first
    err = capsys.readouterr().err
    assert "deprecated: use `mmdetect check SNAPSHOT`" in err
    assert "listings.jsonl:2: labels:" in err
    assert main(["validate", "--json", "--no-images", str(snapshot)]) == 0
    assert '"rows": 1' in capsys.readouterr().out


def test_fit_and_lightning_stages_go_to_lightning(stages, capsys) -> None:
    assert main(["fit", "--config", "c.yaml", "--run-dir", "r"]) == 0
    assert main(["lightning", "validate", "--config", "c.yaml", "--ckpt_path", "x.ckpt"]) == 0
    assert main(["lightning", "predict", "--config", "c.yaml"]) == 0
    assert stages == [["fit", "--config", "c.yaml", "--run-dir", "r"],
                      ["validate", "--config", "c.yaml", "--ckpt_path", "x.ckpt"],
                      ["predict", "--config", "c.yaml"]]  # fmt: skip
    assert "deprecated" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "stage", "new"),
    [
        (["validate", "--config", "c.yaml", "--ckpt_path", "x"], "validate", "lightning validate"),
        (["validate", "--ckpt_path=x", "-c", "c.yaml"], "validate", "lightning validate"),
        (["test", "--config", "c.yaml"], "test", "lightning test"),
        (["predict", "--config", "c.yaml", "--data.predict_snapshots", "[d]"], "predict",
         "lightning predict"),
    ],
)  # fmt: skip
def test_old_lightning_spellings_work_with_a_deprecation(stages, argv, stage, new, capsys) -> None:
    assert main(argv) == 0
    assert stages == [[stage, *argv[1:]]]
    assert f"deprecated: use `mmdetect {new}" in capsys.readouterr().err


def test_predict_is_the_bundle_command_whatever_the_flag_order(monkeypatch, stages) -> None:
    import mmdetect.serving.predict

    seen = []
    monkeypatch.setattr(
        mmdetect.serving.predict, "predict_main", lambda a: seen.append(list(a)) or 0
    )
    assert main(["predict", "--input", "x.jsonl", "--bundle", "b", "--out", "o"]) == 0
    assert main(["predict", "--out", "o", "--bundle=b", "--input", "x", "--config", "c"]) == 0
    assert len(seen) == 2 and stages == []


def test_predict_without_bundle_is_an_argument_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--input", "x.jsonl", "--out", "o.jsonl"])
    assert exc.value.code == 2
    assert "--bundle" in capsys.readouterr().err


def test_lightning_without_or_with_an_unknown_stage(stages, capsys) -> None:
    assert main(["lightning"]) == 2
    assert main(["lightning", "--help"]) == 0
    assert "validate|test|predict" in capsys.readouterr().out
    assert main(["lightning", "check"]) == 2
    assert "unknown stage 'check'" in capsys.readouterr().err
    assert stages == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["vocab", "s", "--size", "0", "--out", "o"], "--size: 0 must be >= 1"),
        (["samples", "--out", "o", "--n-train", "-5"], "--n-train: -5 must be >= 1"),
        (["promote", "--registry", "r", "--list", "--batch-size", "0"], "--batch-size: 0 must"),
        (["promote", "--registry", "r", "--list", "--num-workers", "-1"], "--num-workers: -1 must"),
        (["predict", "--bundle", "b", "--input", "i", "--out", "o", "--batch-size", "0"],
         "--batch-size: 0 must be >= 1"),
        (["predict", "--bundle", "b", "--input", "i", "--out", "o", "--chunk-size", "0"],
         "--chunk-size: 0 must be >= 1"),
        (["predict", "--bundle", "b", "--input", "i", "--out", "o", "--num-workers", "-2"],
         "--num-workers: -2 must be >= 0"),
        (["predict", "--bundle", "b", "--input", "i", "--out", "o", "--batch-size", "x"],
         "'x' is not an integer"),
    ],
)  # fmt: skip
def test_counts_are_checked_by_argparse(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_run_dir_points_everything_into_one_directory(tmp_path: Path, monkeypatch) -> None:
    from mmdetect.training.run import check_config

    monkeypatch.chdir(REPO)
    cfg = check_config(["--config", "configs/train/tiny.yaml", "--run-dir", str(tmp_path / "r")])
    run = str(tmp_path / "r")
    assert cfg.trainer.default_root_dir == run
    assert cfg.trainer.logger.init_args.save_dir == run  # the YAML says runs/tiny
    assert cfg.checkpoint.dirpath == cfg.last_checkpoint.dirpath == f"{run}/checkpoints"
    assert cfg.predictions.out == f"{run}/predictions.jsonl"
    plain = check_config(["--config", "configs/train/tiny.yaml"])
    assert (
        plain.trainer.logger.init_args.save_dir == "runs/tiny" and plain.checkpoint.dirpath is None
    )


NOISE_SCRIPT = """
import sys, warnings
from mmdetect.cli.commands import main
rc = main(sys.argv[1:])
from transformers import BertConfig, BertModel
m = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32))
m.loss_function  # the `loss_type=None` line
import torch
torch.jit.trace(torch.nn.Identity(), torch.ones(1))
warnings.warn("a real future warning", FutureWarning)
sys.exit(rc)
"""


@pytest.mark.slow
def test_fit_in_a_fresh_process_shows_no_known_noise(small_samples: Path, tmp_path: Path) -> None:
    """A real `mmdetect fit --run-dir` (one step) in a fresh process, as a user runs it: the run
    lands in one directory, the known noise is gone and a real warning still shows."""
    from tests.conftest import tiny_fit_args

    run = tmp_path / "run"
    args = [a for a in tiny_fit_args(small_samples, tmp_path / "ignored") if "save_dir" not in a
            and "default_root_dir" not in a]  # fmt: skip
    args += ["--run-dir", str(run), "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
             "--trainer.limit_val_batches=1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", NOISE_SCRIPT, "fit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in ("LightningCLI's args parameter", "💡 Tip", "loss_type=None",
                  "`torch.jit.trace` is deprecated", "isinstance(treespec, LeafSpec)"):  # fmt: skip
        assert noise not in proc.stderr, noise
    assert "a real future warning" in proc.stderr
    assert "smaller than the logging interval" in proc.stderr  # Lightning's own, still shown
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert (
        "last.ckpt" in ckpts
        and "latest.ckpt" in ckpts
        and any(c.startswith("best-") for c in ckpts)
    )
    logs = run / "logs" / "version_0"
    assert {"metrics.csv", "config.yaml", "hparams.yaml"} <= {p.name for p in logs.iterdir()}
    assert not (tmp_path / "ignored").exists()  # nothing went where the flags it replaces point


def test_fit_run_dir_layout_in_process(small_samples: Path, tmp_path: Path, monkeypatch) -> None:
    from mmdetect.training.run import build_cli
    from tests.conftest import tiny_fit_args

    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    args = [a for a in tiny_fit_args(small_samples, tmp_path / "ignored") if "save_dir" not in a
            and "default_root_dir" not in a]  # fmt: skip
    build_cli(["fit", *args, "--run-dir", str(run), "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
               "--trainer.limit_val_batches=1"])  # fmt: skip
    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.ckpt", "latest.ckpt"} <= ckpts and any(c.startswith("best-") for c in ckpts)
    logs = run / "logs" / "version_0"
    assert {"metrics.csv", "config.yaml", "hparams.yaml"} <= {p.name for p in logs.iterdir()}
    assert f"run_dir: {run}" in (logs / "config.yaml").read_text()
    assert not (tmp_path / "ignored").exists()


def test_noise_filters_drop_only_the_known_lines(capfd) -> None:
    import logging
    import warnings

    from mmdetect.common.cliargs import NOISY_LOGS, quiet_known_noise

    quiet_known_noise()
    quiet_known_noise()  # idempotent: one filter per logger
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", message="a real")
        warnings.warn(
            "LightningCLI's args parameter is intended to run from within Python ...", stacklevel=2
        )
        warnings.warn("`torch.jit.trace` is deprecated. Please switch to `torch.compile`.",
                      FutureWarning, stacklevel=2)  # fmt: skip
        warnings.warn("a real deprecation", FutureWarning, stacklevel=2)
        warnings.warn(
            "`torch.jit.trace` is not supported in Python 3.14+", FutureWarning, stacklevel=2
        )
    assert [str(w.message)[:12] for w in seen] == ["a real depre", "`torch.jit.t"]
    for name, prefix in NOISY_LOGS:
        logger = logging.getLogger(name)
        assert sum(type(f).__name__ == "_DropPrefix" for f in logger.filters) == 1
        assert not logger.filters[0].filter(logging.makeLogRecord({"msg": prefix + " more"}))
        assert logger.filters[0].filter(logging.makeLogRecord({"msg": "a real problem"}))


def test_predictions_writer_writes_jsonl_atomically_and_never_into_its_input(tmp_path) -> None:
    from types import SimpleNamespace as NS

    import torch

    from mmdetect.common.outputs import OutputError
    from mmdetect.training.run import PredictionsWriter

    snap = tmp_path / "snap"
    snap.mkdir()
    items = [NS(listing=NS(id=i)) for i in ("a", "b", "c")]
    dm = NS(datasets={"predict": NS(items=items)}, hparams=NS(predict_snapshots=[str(snap)]))
    trainer = NS(log_dir=str(tmp_path / "logs"), world_size=1, global_rank=0, datamodule=dm)
    module = NS(taxonomy=("x", "y"))
    batches = [{"index": torch.tensor([2, 0]), "probs": torch.tensor([[0.5, 0.25], [1.0, 0.0]])},
               {"index": torch.tensor([1]), "probs": torch.tensor([[0.0, 0.75]])}]  # fmt: skip
    writer = PredictionsWriter()
    writer.on_predict_start(trainer, module)
    writer.write_on_epoch_end(trainer, module, batches, [])
    out = tmp_path / "logs" / "predictions.jsonl"
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [{"id": "c", "scores": {"x": 0.5, "y": 0.25}},
                    {"id": "a", "scores": {"x": 1.0, "y": 0.0}},
                    {"id": "b", "scores": {"x": 0.0, "y": 0.75}}]  # fmt: skip
    assert [p.name for p in out.parent.iterdir()] == ["predictions.jsonl"]  # no partial left
    with pytest.raises(OutputError, match="inside the input"):
        PredictionsWriter(out=str(snap / "predictions.jsonl")).on_predict_start(trainer, module)
    trainer.world_size, trainer.global_rank = 2, 1
    assert writer.path(trainer).name == "predictions.rank1.jsonl"
