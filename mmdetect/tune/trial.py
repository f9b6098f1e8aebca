"""One trial of `mmdetect tune`: an ordinary `mmdetect fit` run in its own process.

The trial's values are written as an overlay YAML in its own run directory (with the seed), so
`mmdetect fit --config BASE --config trials/NNNN/overlay.yaml` re-runs it alone. The fit runs as
a subprocess: a trial that crashes the interpreter, leaks memory or threads, or hangs cannot take
the study down with it; it becomes a FAIL with its error, and the next trial starts clean. The
cost is a few seconds of imports per trial, small next to a fit.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from mmdetect.outputs import atomic_write_text
from mmdetect.tune.draw import overlay, suggest, values_of
from mmdetect.tune.space import Space

PRUNED_FILE = "pruned.json"  # written by mmdetect.tune.pruning.TrialPruning
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


def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:04d}"


def overlay_doc(run: TuneRun, drawn: dict[str, Any]) -> dict[str, Any]:
    """The fit overlay of one trial: fixed keys, drawn values and the seed."""
    doc = overlay({**run.space.fixed, **values_of(run.space, drawn)})
    doc["seed_everything"] = run.seed
    return doc


def overlay_text(run: TuneRun, doc: dict[str, Any], note: str, path: Path) -> str:
    """The overlay file, headed by the fit command that uses it."""
    base = " ".join(f"--config {c}" for c in run.configs)
    head = f"# mmdetect fit {base} --config {path}\n# {note}\n"
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def fit_command(run: TuneRun, overlay_path: Path, rdir: Path, number: int) -> list[str]:
    cmd = [sys.executable, "-m", "mmdetect.cli", "fit"]
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


def _run(cmd: list[str], log: Path, run: TuneRun, what: str) -> None:
    """Run `cmd` with its output in `log`; TrialError with the log's last line on failure."""
    with log.open("w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=_remaining(run))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TrialError(f"{what} stopped: the --timeout budget ran out") from None
        except BaseException:  # Ctrl-C: no orphan fit left running
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
    rdir = trial_dir(run.out, trial.number)
    rdir.mkdir(parents=True, exist_ok=True)
    doc = overlay_doc(run, drawn)
    trial.set_user_attr("overlay", doc)
    trial.set_user_attr("run_dir", str(rdir))
    path = rdir / "overlay.yaml"
    atomic_write_text(
        path, overlay_text(run, doc, f"study {run.study}, trial {trial.number}", path)
    )
    cmd = fit_command(run, path, rdir, trial.number)
    _run(cmd, rdir / "fit.log", run, "the fit")
    pruned = rdir / PRUNED_FILE
    if pruned.is_file():
        info = json.loads(pruned.read_text(encoding="utf-8"))
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
        _run(cmd, rdir / "measure.log", run, "the measurement")
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
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        return values if len(values) > 1 else values[0]

    return call
