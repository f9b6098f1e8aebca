"""`mmdetect tune` against fit's real parser, and (slow) a real study of two tiny fits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml

from mmdetect.training.run import check_config
from mmdetect.tune.cli import check_against_fit, tune_main
from mmdetect.tune.report import write_best
from mmdetect.tune.space import SpaceError, load_space, parse_space
from mmdetect.tune.trial import TuneRun

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "configs/tune").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # configs name paths relative to the repository


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_tune_space_parses_for_fit(path: Path) -> None:
    """Every key is a fit key; every choice and both ends of every range parse."""
    assert check_against_fit(load_space(path), ["configs/train/tiny.yaml"]) == 0


def test_a_key_fit_does_not_know_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "params:\n  model.lr: {type: float, low: 0.001, high: 0.01}\n"
        "  model.txt.num_layers: {type: int, low: 1, high: 2}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        SpaceError, match=r"space.yaml:3: params.model.txt.num_layers: is not a key"
    ):
        check_against_fit(load_space(path), ["configs/train/tiny.yaml"])
    path.write_text("params:\n  model.text.num_layers: {type: categorical, choices: [2, many]}\n")
    with pytest.raises(SpaceError, match=r"do not parse for `mmdetect fit`.*many"):
        check_against_fit(load_space(path), ["configs/train/tiny.yaml"])


def test_best_yaml_round_trips_through_the_fit_parser(tmp_path: Path) -> None:
    space = parse_space(
        {"fixed": {"trainer.max_epochs": 3},
         "params": {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "model.fusion": {"type": "categorical", "choices": {
                        "concat": "concat",
                        "xattn": {"class_path": "mmdetect.models.fusion.CrossAttentionFusion",
                                  "init_args": {"num_heads": 2, "layers": 1}}}},
                    "model.text.num_layers": {"type": "int", "low": 1, "high": 3}}},
        tmp_path / "space.yaml",
    )  # fmt: skip
    run = TuneRun(space, ("configs/train/tiny.yaml",), f"sqlite:///{tmp_path}/s.db", "s",
                  tmp_path, seed=5)  # fmt: skip
    study = optuna.create_study(storage=run.storage, study_name="s", direction="maximize")
    from mmdetect.tune.trial import overlay_doc

    for value, drawn in ((0.4, {"model.lr": 0.002, "model.fusion": "xattn",
                                "model.text.num_layers": 3}),
                         (0.3, {"model.lr": 0.001, "model.fusion": "concat",
                                "model.text.num_layers": 1})):  # fmt: skip
        trial = study.ask()
        trial.set_user_attr("overlay", overlay_doc(run, drawn))
        study.tell(trial, value)
    best = write_best(run, study)
    assert "trial 0 (val_macro_ap=0.4)" in best.read_text(encoding="utf-8")
    cfg = check_config(["--config", "configs/train/tiny.yaml", "--config", str(best)])
    assert cfg.model.lr == 0.002 and cfg.model.text.num_layers == 3
    assert cfg.model.fusion["class_path"] == "mmdetect.models.fusion.CrossAttentionFusion"
    assert cfg.seed_everything == 5 and cfg.trainer.max_epochs == 3


@pytest.mark.slow
def test_a_real_two_trial_study_then_a_trial_rerun_alone(small_samples, tmp_path: Path) -> None:
    """Two tiny fits through `mmdetect tune` (pruning on), then one more whose fit crashes."""
    base = tmp_path / "shrink.yaml"
    base.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 2,
                    "enable_model_summary": False},
        "model": {"text": {"hidden_size": 16, "intermediate_size": 32, "max_length": 32},
                  "image": {"image_size": 32}, "hidden": 32},
        "data": {"snapshots": [str(small_samples / "train")],
                 "tokenizer": str(small_samples / "tokenizer"), "num_workers": 0,
                 "batch_size": 16}}))  # fmt: skip
    space = tmp_path / "space.yaml"
    space.write_text(
        "# mmdetect tune\npruner: {name: median, n_startup_trials: 1, n_warmup_steps: 0}\n"
        "sampler: {name: tpe, seed: 0}\n"
        "params:\n  model.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
    )
    out = tmp_path / "out"
    argv = ["--config", "configs/train/tiny.yaml", "--config", str(base), "--space", str(space),
            "--study", "t", "--out", str(out)]  # fmt: skip
    assert tune_main([*argv, "--n-trials", "2"]) == 0
    rows = list(csv.DictReader((out / "trials.csv").open(encoding="utf-8")))
    assert [r["state"] for r in rows][0] == "COMPLETE"  # the first is never pruned (startup)
    assert rows[1]["state"] in ("COMPLETE", "PRUNED")
    assert all(0 < float(r["val_macro_ap"]) <= 1 for r in rows)
    best = max(
        (r for r in rows if r["state"] == "COMPLETE"), key=lambda r: float(r["val_macro_ap"])
    )
    text = (out / "best.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["model"]["lr"] == pytest.approx(float(best["model.lr"]))
    # the trial's run dir: its own overlay, checkpoints and metrics, re-runnable alone
    rdir = Path(best["run_dir"])
    assert rdir.parent == out / "trials" / "t"  # trial folders are per study
    cfg = check_config(["--config", "configs/train/tiny.yaml", "--config", str(base),
                        "--config", str(rdir / "overlay.yaml")])  # fmt: skip
    assert cfg.model.lr == pytest.approx(float(best["model.lr"])) and cfg.seed_everything == 0
    assert list((rdir / "checkpoints").glob("best-*.ckpt"))
    if rows[1]["state"] == "PRUNED":
        assert json.loads((Path(rows[1]["run_dir"]) / "pruned.json").read_text())["epoch"] >= 0
    # the same study resumed with one more trial, whose fit crashes (16 dims, 3 heads)
    assert tune_main([*argv, "--n-trials", "1", "--fit-arg=--model.text.num_heads=3"]) == 0
    rows = list(csv.DictReader((out / "trials.csv").open(encoding="utf-8")))
    assert len(rows) == 3 and rows[2]["state"] == "FAIL"
    assert "fit exited 1" in rows[2]["error"] and "attention heads" in rows[2]["error"]
    assert (out / "best.yaml").read_text(encoding="utf-8") == text
    html = (out / "summary.html").read_text(encoding="utf-8")
    assert "history.png" in html and (out / "history.png").is_file()


def test_the_pruning_callback_reports_and_stops_a_poor_trial(tmp_path: Path) -> None:
    """TrialPruning (optuna-integration's callback, rebuilt from the storage URL) on a stub
    trainer: a curve below the finished trials' median is pruned at the first checked step."""
    import torch

    from mmdetect.tune.pruning import TrialPruning

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for final in (0.5, 0.6, 0.7):  # three finished trials with good curves
        t = study.ask()
        for epoch in range(3):
            t.report(final - 0.1 * (2 - epoch), epoch)
        study.tell(t, final)
    poor = study.ask()
    spec = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}

    class Stub:
        sanity_checking, should_stop = False, False
        default_root_dir = str(tmp_path)
        callback_metrics: dict = {}

    trainer, module = Stub(), Stub()
    cb = TrialPruning(storage, "s", poor.number, "val/macro_ap", spec)
    for epoch, value in enumerate((0.2, 0.1)):
        module.current_epoch = epoch
        trainer.callback_metrics = {"val/macro_ap": torch.tensor(value)}
        cb.on_validation_end(trainer, module)
        # epoch 0 is a warm-up step: reported, not pruned; epoch 1 is below the median
        assert trainer.should_stop is (epoch == 1)
    frozen = optuna.load_study(study_name="s", storage=storage).trials[poor.number]
    assert frozen.intermediate_values == pytest.approx({0: 0.2, 1: 0.1})
    assert json.loads((tmp_path / "pruned.json").read_text()) == pytest.approx(
        {"trial": poor.number, "epoch": 1, "value": 0.1}
    )


@pytest.mark.slow
def test_measure_operating_recall_and_latency(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The measured objectives on a tiny run laid out as a trial's run dir."""
    import shutil

    from mmdetect.tune.measure import main

    rdir = tmp_path / "trial"
    (rdir / "logs/version_0").mkdir(parents=True)
    (rdir / "checkpoints").mkdir()
    shutil.copy(tiny_checkpoint.parents[1] / "logs/version_0/config.yaml", rdir / "logs/version_0")
    shutil.copy(tiny_checkpoint, rdir / "checkpoints/best-epoch01.ckpt")
    out = tmp_path / "measure.json"
    args = ["--run-dir", str(rdir), "--out", str(out), "--listings", "5"]
    assert main([*args, "operating_recall", "latency_ms"]) == 0
    got = json.loads(out.read_text())
    assert 0.0 <= got["operating_recall"] <= 1.0 and got["operating_listings"] > 0
    # the review budget of the default policy (5 %), give or take ties
    assert got["operating_review_rate"] <= 0.05 + 1e-9
    assert got["latency_ms"] > 0 and got["latency_listings"] == 5
    assert (rdir / "bundle" / "SHA256SUMS").is_file()
