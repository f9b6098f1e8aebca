"""One trial of `mmdetect tune`: an ordinary `mmdetect fit` run in its own process.

The trial's values are written as an overlay YAML in its own, new run directory
(OUT/trials/STUDY/NNNN, with the seed), headed by the exact fit command that re-runs it alone. The
fit runs as a subprocess: a trial that crashes the interpreter, leaks memory or threads, or hangs
cannot take the study down with it; it becomes a FAIL with its error, and the next trial starts
clean. The cost is a few seconds of imports per trial, small next to a fit. The child dies with
the tune process (Linux: PR_SET_PDEATHSIG; elsewhere a SIGTERM handler in cli.py, and
study.fail_dead_trials kills an orphan it finds by the pid recorded on the trial).
"""

from __future__ import annotations

import csv
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from mmdetect.common.outputs import atomic_write_text
from mmdetect.tune.draw import overlay, suggest, values_of
from mmdetect.tune.space import Space

PRUNED_FILE = "pruned.json"  # written by mmdetect.tune.pruning.TrialPruning
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MEASURED = ("operating_recall", "latency_ms")  # need the measure subprocess after the fit


class TrialError(RuntimeError):
    """A trial that did not produce its objective values; the message is recorded."""


@dataclass(frozen=True)
class TuneRun:
    """What every trial of one `mmdetect tune` process shares."""

    space: Space
    configs: tuple[str, ...]  # the base --config files, in order
    storage: str
    study: str
    out: Path
    seed: int  # seed_everything of every trial (the same for all: trials differ by their values)
    deadline: float | None = None  # time.monotonic() when --timeout runs out
    fit_args: tuple[str, ...] = ()  # extra `mmdetect fit` arguments (tests shrink runs with them)


def trial_dir(out: Path, study: str, number: int) -> Path:
    """OUT/trials/STUDY/NNNN: studies sharing an --out never share a trial directory."""
    return out / "trials" / study / f"{number:04d}"


def new_trial_dir(out: Path, study: str, number: int) -> Path:
    """Create the trial's directory; TrialError if one with files is there already (left by a
    study of the same name in another storage): nothing of an earlier run is ever read."""
    rdir = trial_dir(out, study, number)
    rdir.parent.mkdir(parents=True, exist_ok=True)
    try:
        rdir.mkdir()
    except FileExistsError:
        if not rdir.is_dir() or any(rdir.iterdir()):
            raise TrialError(
                f"{rdir} already holds files from another run (a study named {study!r} in another "
                "storage?): give another --out or --study"
            ) from None
    return rdir


def overlay_doc(run: TuneRun, drawn: dict[str, Any]) -> dict[str, Any]:
    """The fit overlay of one trial: fixed keys, drawn values and the seed."""
    doc = overlay({**run.space.fixed, **values_of(run.space, drawn)})
    doc["seed_everything"] = run.seed
    return doc


def fit_line(configs: Sequence[str], fit_args: Sequence[str], path: Path) -> str:
    """The `mmdetect fit` command that runs an overlay on its base configs, shell-quoted."""
    base = [a for c in configs for a in ("--config", c)]
    return "mmdetect fit " + shlex.join([*base, "--config", str(path), *fit_args])


def overlay_text(
    configs: Sequence[str], fit_args: Sequence[str], doc: dict[str, Any], note: str, path: Path
) -> str:
    """The overlay file, headed by the exact fit command that uses it."""
    head = f"# {fit_line(configs, fit_args, path)}\n# {note}\n"
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def fit_command(run: TuneRun, overlay_path: Path, rdir: Path, number: int) -> list[str]:
    cmd = [sys.executable, "-m", "mmdetect.cli.commands", "fit"]
    for c in run.configs:
        cmd += ["--config", c]
    cmd += ["--config", str(overlay_path), "--run-dir", str(rdir),
            "--trainer.enable_progress_bar=false", *run.fit_args]  # fmt: skip
    if run.space.pruner["name"] != "none":  # the space allows it only for val_macro_ap
        callback = {
            "class_path": "mmdetect.tune.pruning.TrialPruning",
            "init_args": {"storage": run.storage, "study": run.study, "trial_number": number,
                          "monitor": run.space.monitor, "pruner": run.space.pruner},
        }  # fmt: skip
        cmd.append("--trainer.callbacks+=" + json.dumps(callback))
    return cmd


def _remaining(run: TuneRun) -> float | None:
    if run.deadline is None:
        return None
    left = run.deadline - time.monotonic()
    if left <= 0:
        raise TrialError("the --timeout budget ran out before this trial started")
    return left


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (Linux; None elsewhere or without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """preexec_fn of a trial's child: SIGKILL it when the tune process dies, even by SIGKILL.
    Tied to the forking thread, the tune's main thread (one trial at a time). It only calls the
    prctl looked up beforehand, as the child of a threaded parent (Optuna's heartbeat) must do
    little before exec. None where there is no prctl: the SIGTERM handler and resume cover it."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _run(
    cmd: list[str],
    log: Path,
    run: TuneRun,
    what: str,
    on_start: Callable[[int], None] | None = None,
) -> None:
    """Run `cmd` with its output in `log`; TrialError with the log's last line on failure.
    `on_start(pid)` records the child (study.fail_dead_trials kills it if the tune dies)."""
    with log.open("w", encoding="utf-8") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent(os.getpid()))  # fmt: skip
        try:
            if on_start is not None:
                on_start(proc.pid)
            rc = proc.wait(timeout=_remaining(run))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TrialError(f"{what} stopped: the --timeout budget ran out") from None
        except BaseException:  # Ctrl-C, SIGTERM (cli.py), a storage error: no orphan fit
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x]
        raise TrialError(f"{what} exited {rc}: {lines[-1] if lines else 'no output'} (see {log})")


def best_metric(rdir: Path, monitor: str) -> float:
    """The best (max) value of `monitor` over the run's validations, from its metrics.csv."""
    files = sorted(rdir.glob("logs/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise TrialError(f"{rdir}: no logs/version_*/metrics.csv (does the base config log CSV?)")
    with files[-1].open(encoding="utf-8") as fh:
        values = [float(r[monitor]) for r in csv.DictReader(fh) if r.get(monitor)]
    if not values:
        raise TrialError(f"{files[-1]}: no {monitor} logged")
    return max(values)


def objective_values(run: TuneRun, trial: optuna.Trial) -> list[float]:
    """Draw, fit, measure; returns the space's objectives in order (TrialPruned when pruned)."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    drawn = suggest(run.space, trial)
    rdir = new_trial_dir(run.out, run.study, trial.number)
    doc = overlay_doc(run, drawn)
    # what best.yaml needs to reproduce this trial, whichever process ran it
    trial.set_user_attr("configs", list(run.configs))
    trial.set_user_attr("fit_args", list(run.fit_args))
    trial.set_user_attr("overlay", doc)
    trial.set_user_attr("run_dir", str(rdir))
    path = rdir / "overlay.yaml"
    note = f"study {run.study}, trial {trial.number}"
    atomic_write_text(path, overlay_text(run.configs, run.fit_args, doc, note, path))

    def started(pid: int) -> None:
        trial.set_user_attr("child_pid", pid)

    cmd = fit_command(run, path, rdir, trial.number)
    _run(cmd, rdir / "fit.log", run, "the fit", started)
    pruned = rdir / PRUNED_FILE
    if pruned.is_file():
        info = json.loads(pruned.read_text(encoding="utf-8"))
        if info.get("trial") != trial.number:  # the directory is new: this cannot be stale
            raise TrialError(f"{pruned}: written for trial {info.get('trial')}, not this one")
        trial.set_user_attr("pruned_at_epoch", info.get("epoch"))
        raise optuna.TrialPruned(f"pruned at epoch {info.get('epoch')}")
    results = {"val_macro_ap": best_metric(rdir, "val/macro_ap")}
    wanted = [o for o in run.space.objectives if o in MEASURED]
    if wanted:
        out = rdir / "measure.json"
        cmd = [sys.executable, "-m", "mmdetect.tune.measure", "--run-dir", str(rdir),
               "--out", str(out), "--listings", str(run.space.latency["listings"]), *wanted]  # fmt: skip
        if run.space.policy:
            cmd += ["--policy", run.space.policy]
        _run(cmd, rdir / "measure.log", run, "the measurement", started)
        measured = json.loads(out.read_text(encoding="utf-8"))
        results.update({k: measured[k] for k in wanted})
        trial.set_user_attr("measure", measured)
    trial.set_user_attr("results", results)
    return [float(results[o]) for o in run.space.objectives]


def objective(run: TuneRun, values_fn=objective_values):
    """The function `study.optimize` calls: errors are recorded on the trial, then re-raised
    (the study catches them, marks the trial FAIL and goes on). `values_fn(run, trial)` is
    objective_values (tests give a stand-in that needs no fit)."""

    def call(trial: optuna.Trial) -> list[float] | float:
        try:
            values = values_fn(run, trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: Optuna marks the trial FAIL
            trial.set_user_attr("error", f"stopped: {type(exc).__name__} {exc}".strip())
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        return values if len(values) > 1 else values[0]

    return call
