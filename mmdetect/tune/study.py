"""The study in its database: storage, sampler, shared use by several processes, resumption.

Several `mmdetect tune` processes (on one machine with a SQLite file, or on several against a
PostgreSQL/MySQL URL) given the same --storage and --study share one study: `load_if_exists`.
A killed process leaves its trial RUNNING. Two things mark it failed: on the same machine, the
next `mmdetect tune` on the study sees that the trial's recorded pid is gone; on any machine,
Optuna's heartbeat (every trial beats every HEARTBEAT_S; one silent for GRACE_S is failed when
any process starts its next trial).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from mmdetect.common.staging import pid_alive
from mmdetect.tune.space import Space

HEARTBEAT_S, GRACE_S = 30, 120
RDB_PREFIXES = ("sqlite:///", "postgresql", "mysql")


class StudyError(ValueError):
    """A storage or study that cannot be used; one line."""


# The names a space file may give (tune/space.py SAMPLERS, PRUNERS; a test keeps them equal).
SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def _build(kind: str, classes: dict[str, type], spec: dict[str, Any], source: str):
    """classes[spec["name"]] called with the section's other fields; StudyError naming `source`
    (the space file) when Optuna refuses the arguments."""
    kw = {k: v for k, v in spec.items() if k != "name"}
    try:
        return classes[spec["name"]](**kw)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{source}: {kind} {spec['name']}: {exc}") from None


def make_sampler(spec: dict[str, Any], source: str = "space") -> optuna.samplers.BaseSampler:
    """The sampler a space file's `sampler:` section names (other fields are its arguments)."""
    return _build("sampler", SAMPLER_CLASSES, spec, source)


def make_pruner(spec: dict[str, Any], source: str = "space") -> optuna.pruners.BasePruner:
    """The pruner a space file's `pruner:` section names (other fields are its arguments)."""
    return _build("pruner", PRUNER_CLASSES, spec, source)


def storage_for(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; a SQLite file's directory is created. Raises StudyError."""
    if not url.startswith(RDB_PREFIXES):
        raise StudyError(
            f"--storage {url!r}: give a database URL (sqlite:///FILE, postgresql://..., mysql://...)"
        )
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                )  # fmt: skip
        except (OperationalError, IntegrityError) as exc:  # processes creating the schema at
            if attempt == 4:  # once (tables, alembic_version): the later one retries
                raise StudyError(f"--storage {url!r}: {type(exc).__name__}: {exc}") from None
            time.sleep(0.3 + random.random())
        except (ImportError, RuntimeError, SQLAlchemyError) as exc:  # no driver, no server
            raise StudyError(f"--storage {url!r}: {type(exc).__name__}: {exc}") from None
    raise AssertionError("unreachable")


def open_study(url: str, name: str, space: Space, pruner: Any = None) -> optuna.Study:
    """Create the study, or join it; refuse one whose objectives differ from the space's."""
    storage = storage_for(url)
    study = optuna.create_study(
        storage=storage, study_name=name, load_if_exists=True, directions=space.directions,
        sampler=make_sampler(space.sampler, str(space.path)), pruner=pruner,
    )  # fmt: skip
    resume_seed(study, space)
    have = [d.name.lower() for d in study.directions]
    if have != space.directions:
        raise StudyError(
            f"study {name!r} in {url} optimises {have}, but {space.path} asks {space.directions}"
        )
    known = study.user_attrs.get("objectives")
    if known is None:
        study.set_user_attr("objectives", list(space.objectives))
    elif known != list(space.objectives):
        raise StudyError(
            f"study {name!r} was started with objectives {known}, {space.path} has "
            f"{list(space.objectives)}: use another --study"
        )
    return study


def resume_seed(study: optuna.Study, space: Space) -> None:
    """A seeded sampler restarts its random stream in every process: a run that resumes (or
    joins) a study already holding N trials would draw the same first configurations again (a
    killed 12-trial run resumed after 5 repeated trials 0-4 exactly). Seeded by (seed, N)
    instead, it continues with new draws and stays reproducible for the same study state."""
    seed, done = space.sampler.get("seed"), len(study.get_trials(deepcopy=False))
    if seed is None or not done:
        return
    derived = int(np.random.SeedSequence([int(seed), done]).generate_state(1)[0])
    study.sampler = make_sampler({**space.sampler, "seed": derived}, str(space.path))


def is_trial_child(pid: int, run_dir: str) -> bool:
    """Whether process `pid` is a trial's fit or measurement: its command line (Linux /proc)
    names the trial's run directory. A reused pid, or no /proc, is never taken for one."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(run_dir) and os.fsencode(run_dir) in cmdline.split(b"\0")


def kill_orphan(attrs: dict[str, Any]) -> int | None:
    """SIGKILL the still-running fit (or measurement) of a trial whose tune died; its pid."""
    pid, rdir = attrs.get("child_pid"), attrs.get("run_dir")
    if not isinstance(pid, int) or not isinstance(rdir, str) or not is_trial_child(pid, rdir):
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return None
    return pid


def fail_dead_trials(study: optuna.Study, host: str | None = None) -> list[int]:
    """Mark FAIL the RUNNING trials started on this host by a process that is gone (killing
    their fit if it still runs); returns their numbers. Other hosts' trials: the heartbeat."""
    host = host or socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or pid_alive(pid):
            continue
        killed = kill_orphan(t.user_attrs)
        note = f"its tune process {pid} on {host} died (failed on resume)"
        if killed is not None:
            note += f"; its fit {killed}, still running, was killed"
        storage = study._storage
        try:  # the note first: a finished trial takes no attributes
            storage.set_trial_user_attr(t._trial_id, "error", note)
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed it (or the heartbeat did) meanwhile
    return failed
