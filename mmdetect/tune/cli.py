"""`mmdetect tune`: black-box optimisation of `mmdetect fit` settings with Optuna.

    mmdetect tune --config configs/train/tiny.yaml --space configs/tune/tiny.yaml \\
        --storage sqlite:///runs/tune/study.db --study tiny --n-trials 12 --out runs/tune/tiny

The space is checked against fit's own parser before any trial runs (every key must be a key of
the fit config, every choice and both ends of every range must parse). Then trials run one after
another in this process's loop, each as a `mmdetect fit` subprocess (mmdetect/tune/trial.py);
more processes given the same --storage/--study share the study.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from mmdetect.common.cliargs import positive_float, positive_int
from mmdetect.common.outputs import OutputError, check_output
from mmdetect.tune.draw import overlay, probes
from mmdetect.tune.space import Space, SpaceError, key_error, load_space
from mmdetect.tune.study import StudyError, fail_dead_trials, make_pruner, open_study
from mmdetect.tune.trial import TuneRun, objective, objective_values

log = logging.getLogger(__name__)
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _parse(args: list[str]):
    """fit's parser on `args`; SpaceError with its last message line on failure."""
    from mmdetect.training.run import check_config

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return check_config(args)
    except (SystemExit, Exception) as exc:
        lines = [x for x in err.getvalue().splitlines() if x.strip()]
        raise SpaceError(lines[-1].strip() if lines else f"{type(exc).__name__}: {exc}") from None


def check_against_fit(space: Space, configs: Sequence[str]) -> int:
    """Every key of the space is a fit key and every probe parses; returns the base seed."""
    base_args = [a for c in configs for a in ("--config", c)]
    try:
        base = _parse(base_args)
    except SpaceError as exc:
        raise SpaceError(f"{' '.join(configs)}: the base config does not parse: {exc}") from None
    for section, keys in (("fixed", space.fixed), ("params", [p.key for p in space.params])):
        for key in keys:
            if key != "seed_everything" and key not in base:
                raise key_error(
                    space.path, f"{section}.{key}", "is not a key of the `mmdetect fit` config"
                )
    with tempfile.TemporaryDirectory() as tmp:
        for i, drawn in enumerate(probes(space)):
            path = Path(tmp) / f"probe{i}.yaml"
            path.write_text(yaml.safe_dump(overlay({**space.fixed, **drawn})), encoding="utf-8")
            try:
                _parse([*base_args, "--config", str(path)])
            except SpaceError as exc:
                raise SpaceError(
                    f"{space.path}: these values do not parse for `mmdetect fit`: {drawn}: {exc}"
                ) from None
    seed = space.fixed.get("seed_everything", base.get("seed_everything"))
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0


def tune(
    run: TuneRun,
    n_trials: int | None,
    timeout: float | None,
    values_fn: Callable = objective_values,
):
    """Open or join the study, fail this host's dead trials, run trials; returns the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(
        run.storage, run.study, run.space, make_pruner(run.space.pruner, str(run.space.path))
    )
    for number in fail_dead_trials(study, socket.gethostname()):
        log.warning("trial %d was left RUNNING by a killed tune: marked FAIL", number)
    study.optimize(
        objective(run, values_fn), n_trials=n_trials, timeout=timeout, catch=(Exception,),
        callbacks=[_progress],
    )  # fmt: skip
    return study


def _progress(study, trial) -> None:
    error = trial.user_attrs.get("error")
    values = "" if trial.values is None else " ".join(f"{v:.4g}" for v in trial.values)
    log.info("trial %d %s %s %s", trial.number, trial.state.name, values, error or "")


def tune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect tune",
        description="Tune `mmdetect fit` settings with Optuna: each trial is a fit run in its own "
        "directory; the study lives in a database several processes can share.",
    )
    p.add_argument("--config", action="append", required=True,
                   help="base fit config (repeatable, applied in order)")  # fmt: skip
    p.add_argument("--space", type=Path, required=True, help="configs/tune/*.yaml")
    p.add_argument("--storage", help="database URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default: the space file's stem)")
    p.add_argument("--n-trials", type=positive_int, help="trials this process runs")
    p.add_argument("--timeout", type=positive_float, help="seconds; a running fit is stopped")
    p.add_argument("--out", type=Path, required=True, help="trials/, best.yaml, summary.html")
    p.add_argument("--sampler-seed", type=int,
                   help="override the space's sampler seed (give each parallel process its own)")  # fmt: skip
    p.add_argument("--fit-arg", action="append", default=[],
                   help="an extra `mmdetect fit` argument for every trial (repeatable)")  # fmt: skip
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: like Ctrl-C, Optuna marks the running trial FAIL and
    trial._run kills its fit before the process exits."""


@contextlib.contextmanager
def _sigterm_stops():
    """SIGTERM raises Terminated while tuning (main thread only; restored afterwards)."""

    def stop(signum, frame):
        raise Terminated("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def tune_main(argv: Sequence[str] | None = None) -> int:
    args = tune_parser().parse_args(argv)
    if args.n_trials is None and args.timeout is None:
        print("error: give --n-trials, --timeout or both", file=sys.stderr)
        return 2
    storage = args.storage or f"sqlite:///{args.out / 'study.db'}"
    name = args.study or args.space.stem
    try:
        # --out holds trial runs and reports: never an input, inside one, or inside a bundle
        check_output(args.out, [*args.config, args.space], kind="dir")
        if not STUDY_NAME.fullmatch(name):
            raise StudyError(f"study name {name!r}: use letters, digits, '.', '_' or '-' "
                             "(it names the folder OUT/trials/STUDY)")  # fmt: skip
        space = load_space(args.space)
        if args.sampler_seed is not None:
            space = dataclasses.replace(space, sampler={**space.sampler, "seed": args.sampler_seed})
        seed = check_against_fit(space, args.config)
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        run = TuneRun(space, tuple(args.config), storage, name, args.out, seed, deadline,
                      tuple(args.fit_arg))  # fmt: skip
        with _sigterm_stops():
            study = tune(run, args.n_trials, args.timeout)
    except (SpaceError, StudyError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Terminated:
        print("error: stopped by SIGTERM (the running trial is marked FAIL)", file=sys.stderr)
        return 143
    from mmdetect.tune.report import write_outputs

    written = write_outputs(run, study)
    print(f"study {run.study}: {written['trials']} trials in {storage}")
    removed = " (the best.yaml of an earlier run was removed)" if written["best_removed"] else ""
    print(f"best overlay: {written['best'] or 'none (no completed trial)' + removed}")
    print(f"summary: {args.out / 'summary.html'}")
    return 0
