"""Studies in a real SQLite file, with a stand-in for the fit (no training here): failures are
recorded, two processes share one study, a killed tune resumes, the outputs are written."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mmdetect.tune.cli import tune
from mmdetect.tune.draw import suggest
from mmdetect.tune.report import write_outputs
from mmdetect.tune.space import parse_space
from mmdetect.tune.trial import TuneRun, overlay_doc

REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": "none",
    "params": {
        "model.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "model.fusion": {"type": "categorical", "choices": ["concat", "gated"]},
    },
}


def fake_values(run: TuneRun, trial: optuna.Trial) -> list[float]:
    """Stands in for a fit: draws, writes the overlay attr, sleeps FAKE_SLEEP, scores the draw;
    raises for lr > FAKE_FAIL_ABOVE (a crashing trial)."""
    drawn = suggest(run.space, trial)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("overlay", overlay_doc(run, drawn))
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    if drawn["model.lr"] > float(os.environ.get("FAKE_FAIL_ABOVE", "1")):
        raise RuntimeError(f"CUDA out of memory (lr {drawn['model.lr']:.3g})")
    return [1.0 - abs(drawn["model.lr"] - 0.01) + (drawn["model.fusion"] == "gated") * 0.01]


def make_run(tmp_path: Path, name: str = "s", space: dict = SPACE) -> TuneRun:
    return TuneRun(
        parse_space(space, tmp_path / "space.yaml"), ("configs/train/tiny.yaml",),
        f"sqlite:///{tmp_path / 'study.db'}", name, tmp_path / "out", seed=7,
    )  # fmt: skip


def child(storage: str, name: str, n: str, out: str) -> None:
    """Entry point of the processes below: one `tune` loop with the stand-in."""
    run = TuneRun(parse_space(SPACE, "space.yaml"), ("configs/train/tiny.yaml",), storage,
                  name, Path(out), seed=7)  # fmt: skip
    tune(run, int(n), None, fake_values)


def spawn(tmp_path: Path, n: int, sleep: float, name: str = "s") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_SLEEP": str(sleep)}
    code = "import sys; from tests.unit.test_tune_study import child; child(*sys.argv[1:])"
    args = [f"sqlite:///{tmp_path / 'study.db'}", name, str(n), str(tmp_path / "out")]
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO)


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_FAIL_ABOVE", "0.01")
    run = make_run(tmp_path)
    study = tune(run, 8, None, fake_values)
    trials = study.get_trials()
    assert len(trials) == 8
    failed = [t for t in trials if t.state == TrialState.FAIL]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and done  # TPE's random start draws lr on both sides of 0.01
    for t in failed:
        assert t.params["model.lr"] > 0.01
        assert t.user_attrs["error"].startswith("RuntimeError: CUDA out of memory")
    assert all(t.params["model.lr"] <= 0.01 for t in done)
    written = write_outputs(run, study)
    rows = list(csv.DictReader((run.out / "trials.csv").open(encoding="utf-8")))
    assert [int(r["number"]) for r in rows] == list(range(8))
    assert {r["state"] for r in rows} == {"FAIL", "COMPLETE"}
    assert all(r["error"].startswith("RuntimeError") for r in rows if r["state"] == "FAIL")
    best = max(done, key=lambda t: t.value)
    text = written["best"].read_text(encoding="utf-8")
    assert f"trial {best.number} " in text and text.startswith("# mmdetect fit --config ")
    assert (run.out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert "history.png" in (run.out / "summary.html").read_text(encoding="utf-8")


def test_a_study_with_other_objectives_is_refused(tmp_path) -> None:
    from mmdetect.tune.study import StudyError

    tune(make_run(tmp_path), 1, None, fake_values)
    other = {**SPACE, "objectives": ["val_macro_ap", "latency_ms"], "sampler": "random"}
    with pytest.raises(StudyError, match="optimises"):
        tune(make_run(tmp_path, space=other), 1, None, fake_values)


def test_two_processes_share_one_sqlite_study(tmp_path) -> None:
    procs = [spawn(tmp_path, 3, 0.2) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes ran trials


def test_a_killed_tune_resumes_with_more_trials(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = spawn(tmp_path, 5, 60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until its first trial runs
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name="s", storage=storage)
        except KeyError:
            continue
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and "pid" in running[0].user_attrs:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    study = tune(make_run(tmp_path), 2, None, fake_values)  # resume: 2 more
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "died (failed on resume)" in study.trials[0].user_attrs["error"]


def test_a_fit_past_the_timeout_is_stopped_and_a_crash_names_its_last_line(tmp_path) -> None:
    from mmdetect.tune.trial import TrialError, _run

    run = make_run(tmp_path)
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    start = time.monotonic()
    with pytest.raises(TrialError, match="--timeout budget ran out"):
        _run(
            slow,
            tmp_path / "a.log",
            dataclasses.replace(run, deadline=time.monotonic() + 1),
            "the fit",
        )
    assert time.monotonic() - start < 15
    crash = [sys.executable, "-c", "print('loading'); raise SystemExit('error: bad snapshot')"]
    with pytest.raises(TrialError, match=r"the fit exited 1: error: bad snapshot \(see .*b.log\)"):
        _run(crash, tmp_path / "b.log", run, "the fit")


def test_best_metric_is_the_best_validation_of_the_run(tmp_path) -> None:
    from mmdetect.tune.trial import TrialError, best_metric

    logs = tmp_path / "logs" / "version_0"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,step,train/loss,val/macro_ap\n0,9,0.7,\n0,9,,0.41\n1,19,,0.55\n2,29,,0.52\n"
    )
    assert best_metric(tmp_path, "val/macro_ap") == pytest.approx(0.55)
    with pytest.raises(TrialError, match="no val/loss logged"):
        best_metric(tmp_path, "val/loss")
    with pytest.raises(TrialError, match="no logs/version_"):
        best_metric(tmp_path / "empty", "val/macro_ap")


def test_two_objectives_give_a_pareto_front(tmp_path) -> None:
    space = {**SPACE, "objectives": ["operating_recall", "latency_ms"], "sampler": "random"}
    run = make_run(tmp_path, space=space)

    def two(run, trial):  # recall rises with lr, latency too: every trial is on the front
        lr = fake_values(run, trial)[0] and trial.params["model.lr"]
        return [lr * 10, lr * 100]

    study = tune(run, 4, None, two)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    written = write_outputs(run, study)
    assert written["plots"]["pareto"] == "pareto.png" and "curves" not in written["plots"]
    text = written["best"].read_text(encoding="utf-8")
    top = max(study.trials, key=lambda t: t.values[0])
    assert f"trial {top.number} (operating_recall=" in text and "Pareto front: trials" in text
    header = (run.out / "trials.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("number,state,operating_recall,latency_ms,model.lr,model.fusion")


def test_bad_pruner_or_sampler_arguments_are_a_study_error_naming_the_space(tmp_path) -> None:
    from mmdetect.tune.study import StudyError

    bad = {**SPACE, "pruner": {"name": "median", "n_startup": 3}}
    with pytest.raises(StudyError, match=r"space.yaml: pruner median: .*n_startup"):
        tune(make_run(tmp_path, space=bad), 1, None, fake_values)
    bad = {**SPACE, "pruner": {"name": "median", "n_startup_trials": -1}}
    with pytest.raises(StudyError, match=r"space.yaml: pruner median: "):
        tune(make_run(tmp_path, space=bad), 1, None, fake_values)
    bad = {**SPACE, "sampler": {"name": "random", "seeed": 1}}
    with pytest.raises(StudyError, match=r"space.yaml: sampler random: .*seeed"):
        tune(make_run(tmp_path, space=bad), 1, None, fake_values)


def test_every_sampler_and_pruner_a_space_may_name_is_built() -> None:
    """space.py validates the names before any trial; study.py builds them: the lists agree."""
    from mmdetect.tune import space, study

    assert set(space.SAMPLERS) == set(study.SAMPLER_CLASSES)
    assert set(space.PRUNERS) == set(study.PRUNER_CLASSES)
    assert isinstance(study.make_pruner({"name": "none"}), optuna.pruners.NopPruner)
    with pytest.raises(study.StudyError, match="space.yaml: sampler tpe: "):
        study.make_sampler({"name": "tpe", "n_startup_trial": 3}, "space.yaml")


def test_a_resumed_seeded_study_draws_new_configurations_reproducibly(tmp_path) -> None:
    """TPE's first draws are random: a second `tune` on the same study must not repeat them."""

    def lrs(study: optuna.Study) -> list[float]:
        return [t.params["model.lr"] for t in study.get_trials()]

    first = lrs(tune(make_run(tmp_path), 3, None, fake_values))
    again = lrs(tune(make_run(tmp_path), 3, None, fake_values))[3:]  # a second process, resumed
    assert len(set(first + again)) == 6  # not the first three again
    twin = tmp_path / "twin"
    twin.mkdir()
    assert lrs(tune(make_run(twin), 3, None, fake_values)) == first  # seed 0, empty study
    assert lrs(tune(make_run(twin), 3, None, fake_values))[3:] == again  # same state, same draws
