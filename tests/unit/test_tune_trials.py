"""Trials through the real objective_values with a fake fit (a small Python process that writes
the run's metrics.csv): trial folders per study, best.yaml's exact command, a stale best.yaml,
children that die with the tune, and the checks of --out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mmdetect.tune import trial as trial_mod
from mmdetect.tune.cli import _sigterm_stops, tune, tune_main
from mmdetect.tune.report import write_outputs
from mmdetect.tune.space import parse_space
from mmdetect.tune.study import fail_dead_trials
from mmdetect.tune.trial import TuneRun

REPO = Path(__file__).resolve().parents[2]
SPACE = {"sampler": {"name": "random", "seed": 0}, "pruner": {"name": "median"},
         "params": {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}  # fmt: skip
# the fake fit: AP from $FAKE_AP into RUN_DIR/logs/version_0/metrics.csv; fails if the run dir
# already has a metrics.csv (a reused folder); $FAKE_PRUNE writes pruned.json instead
FAKE_FIT = """
import json, os, sys
from pathlib import Path
rdir = Path(sys.argv[1])
logs = rdir / "logs" / "version_0"
if (logs / "metrics.csv").exists():
    sys.exit("error: a metrics.csv from an earlier run")
logs.mkdir(parents=True)
(logs / "metrics.csv").write_text("epoch,val/macro_ap\\n0," + os.environ["FAKE_AP"] + "\\n")
if os.environ.get("FAKE_PRUNE"):
    (rdir / "pruned.json").write_text(json.dumps({"trial": int(sys.argv[2]), "epoch": 0}))
"""


@pytest.fixture
def fake_fit(monkeypatch):
    def command(run, overlay_path, rdir, number):
        return [sys.executable, "-c", FAKE_FIT, str(rdir), str(number)]

    monkeypatch.setattr(trial_mod, "fit_command", command)


def make_run(tmp_path: Path, study: str, db: str = "study.db", **kw) -> TuneRun:
    return TuneRun(parse_space(SPACE, tmp_path / "space.yaml"), kw.pop("configs", ("base.yaml",)),
                   f"sqlite:///{tmp_path / db}", study, tmp_path / "out", seed=3, **kw)  # fmt: skip


def test_two_studies_with_one_out_keep_their_own_trial_folders(tmp_path, fake_fit, monkeypatch):
    monkeypatch.setenv("FAKE_AP", "0.25")
    a = tune(make_run(tmp_path, "a"), 2, None)
    monkeypatch.setenv("FAKE_AP", "0.75")
    b = tune(make_run(tmp_path, "b"), 2, None)
    for study, want in ((a, 0.25), (b, 0.75)):
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
        assert [t.value for t in study.trials] == [want, want]  # each read its own metrics
        for t in study.trials:
            assert t.user_attrs["run_dir"] == str(
                tmp_path / "out" / "trials" / study.study_name / f"{t.number:04d}"
            )
            assert isinstance(t.user_attrs["child_pid"], int)
    # the same study name in a fresh storage: trial 0's folder holds files, a leftover
    # pruned.json among them; the trial fails, nothing of the earlier run is read
    (tmp_path / "out/trials/a/0000/pruned.json").write_text('{"trial": 0, "epoch": 1}')
    again = tune(make_run(tmp_path, "a", db="other.db"), 1, None)
    t = again.trials[0]
    assert t.state == TrialState.FAIL and "already holds files" in t.user_attrs["error"]


def test_a_pruned_trial_is_read_from_its_own_folder(tmp_path, fake_fit, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_AP", "0.5")
    monkeypatch.setenv("FAKE_PRUNE", "1")
    study = tune(make_run(tmp_path, "p"), 1, None)
    assert study.trials[0].state == TrialState.PRUNED
    assert study.trials[0].user_attrs["pruned_at_epoch"] == 0


def test_best_yaml_names_the_configs_and_fit_args_of_the_process_that_ran_it(
    tmp_path, fake_fit, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_AP", "0.5")
    ran = make_run(tmp_path, "s", configs=("a b.yaml", "shrink.yaml"),
                   fit_args=("--trainer.max_epochs=2",))  # fmt: skip
    tune(ran, 1, None)
    # another process, with other bases and no fit args, writes the outputs of the same study
    other = make_run(tmp_path, "s", configs=("other.yaml",))
    study = optuna.load_study(study_name="s", storage=other.storage)
    best = write_outputs(other, study)["best"]
    head = best.read_text(encoding="utf-8").splitlines()[0]
    assert head == (
        f"# mmdetect fit --config 'a b.yaml' --config shrink.yaml --config {best} "
        "--trainer.max_epochs=2"
    )
    overlay = Path(study.trials[0].user_attrs["run_dir"]) / "overlay.yaml"
    assert overlay.read_text(encoding="utf-8").startswith(
        f"# mmdetect fit --config 'a b.yaml' --config shrink.yaml --config {overlay} "
        "--trainer.max_epochs=2\n"
    )


def test_a_stale_best_yaml_is_removed_when_no_trial_completes(tmp_path, monkeypatch) -> None:
    run = make_run(tmp_path, "s")
    run.out.mkdir(parents=True)
    (run.out / "best.yaml").write_text("# an earlier study's best\nmodel: {lr: 0.1}\n")

    def crash(run, trial):
        raise RuntimeError("boom")

    study = tune(run, 1, None, crash)
    written = write_outputs(run, study)
    assert written["best"] is None and written["best_removed"] is True
    assert not (run.out / "best.yaml").exists()
    assert "best.yaml of an earlier run was removed" in (run.out / "summary.html").read_text()
    assert write_outputs(run, study)["best_removed"] is False  # nothing left to remove


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_fit_dies_with_its_killed_tune(tmp_path) -> None:
    """SIGKILL the tune process while its (sleeping) fit runs: the fit goes too."""
    pid_file = tmp_path / "child.pid"
    code = (
        "import sys; from pathlib import Path; from tests.unit.test_tune_trials import make_run; "
        "from mmdetect.tune.trial import _run; "
        "run = make_run(Path(sys.argv[1]), 's'); "
        "_run([sys.executable, '-c', 'import time; time.sleep(30)'], Path(sys.argv[1]) / 'f.log',"
        " run, 'the fit', lambda pid: Path(sys.argv[2]).write_text(str(pid)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tune_proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(pid_file)],
                                 env=env, cwd=REPO)  # fmt: skip
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and tune_proc.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    tune_proc.kill()
    tune_proc.wait()
    deadline = time.monotonic() + 3
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_resume_kills_the_orphan_fit_of_a_dead_tune(tmp_path) -> None:
    """A RUNNING trial whose tune is gone: its fit is killed if its command line names the
    trial's run dir; a process that merely reuses the pid (another command line) is left."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs: the dead tune
    rdir = tmp_path / "trials/s/0000"
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    orphan = subprocess.Popen([*sleep, "--run-dir", str(rdir)])
    stranger = subprocess.Popen([*sleep, "--run-dir", str(tmp_path / "elsewhere")])
    try:
        study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
        for proc in (orphan, stranger):
            t = study.ask()
            for k, v in {"host": "h", "pid": gone.pid, "child_pid": proc.pid,
                         "run_dir": str(rdir)}.items():  # fmt: skip
                t.set_user_attr(k, v)
        assert fail_dead_trials(study, "h") == [0, 1]
        assert orphan.wait(timeout=3) == -signal.SIGKILL
        assert stranger.poll() is None
        errors = [t.user_attrs["error"] for t in study.trials]
        assert f"its fit {orphan.pid}, still running, was killed" in errors[0]
        assert "was killed" not in errors[1]
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()


def test_sigterm_fails_the_running_trial_and_stops_the_tune(tmp_path) -> None:
    from mmdetect.tune.cli import Terminated

    def terminated(run, trial):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises first
        return [0.0]

    run = make_run(tmp_path, "s")
    with pytest.raises(Terminated), _sigterm_stops():
        tune(run, 3, None, terminated)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored
    study = optuna.load_study(study_name="s", storage=run.storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert study.trials[0].user_attrs["error"] == "stopped: Terminated SIGTERM"


@pytest.mark.parametrize(
    ("out", "expect"),
    [("inputs", "contains the input"), ("inputs/space.yaml", "is a file; give a directory"),
     ("bundle/tune", "is inside the bundle")],
)  # fmt: skip
def test_the_cli_refuses_an_out_that_holds_its_inputs(tmp_path, capsys, out, expect) -> None:
    from mmdetect.common.outputs import BUNDLE_MARKERS

    space = tmp_path / "inputs" / "space.yaml"
    space.parent.mkdir()
    space.write_text("params:\n  model.lr: {type: float, low: 0.001, high: 0.01}\n")
    (tmp_path / "bundle").mkdir()
    for marker in BUNDLE_MARKERS:
        (tmp_path / "bundle" / marker).write_text("x")
    argv = ["--config", "configs/train/tiny.yaml", "--space", str(space), "--n-trials", "1",
            "--out", str(tmp_path / out)]  # fmt: skip
    assert tune_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: output ") and expect in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("study.db"))  # refused before anything was written


def test_the_cli_refuses_a_study_name_that_is_no_folder_name(tmp_path, capsys) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model.lr: {type: float, low: 0.001, high: 0.01}\n")
    argv = ["--config", "configs/train/tiny.yaml", "--space", str(space), "--n-trials", "1",
            "--out", str(tmp_path / "out"), "--study", "../up"]  # fmt: skip
    assert tune_main(argv) == 1
    assert "study name '../up'" in capsys.readouterr().err
