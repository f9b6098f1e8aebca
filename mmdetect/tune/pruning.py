"""Pruning inside a `mmdetect fit` run that is one trial of a study.

optuna-integration's PyTorchLightningPruningCallback (5.0 imports `lightning.pytorch`, so it
works with Lightning 2.6) reports the monitored metric after each validation and asks the pruner.
It takes a live `optuna.Trial`, which a fit run in its own process does not have: `TrialPruning`
rebuilds one from the storage URL, study name and trial number given on the command line, with
the same pruner as the study (a pruner is not stored in the database). Instead of raising
TrialPruned out of `trainer.fit` (a traceback and exit 1, indistinguishable from a crash), it
stops training cleanly and writes `pruned.json` in the run directory for `mmdetect tune` to read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from mmdetect.common.outputs import atomic_write_text
from mmdetect.tune.study import make_pruner, storage_for
from mmdetect.tune.trial import PRUNED_FILE

log = logging.getLogger(__name__)


class TrialPruning(PyTorchLightningPruningCallback):
    """Report `monitor` to trial `trial_number` of `study` in `storage`; stop when pruned."""

    def __init__(
        self,
        storage: str,
        study: str,
        trial_number: int,
        monitor: str = "val/macro_ap",
        pruner: dict[str, Any] | None = None,
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        loaded = optuna.load_study(
            study_name=study, storage=storage_for(storage),
            pruner=make_pruner(pruner or {"name": "median"}),
        )  # fmt: skip
        trial_id = loaded._storage.get_trial_id_from_study_id_trial_number(
            loaded._study_id, trial_number
        )
        super().__init__(optuna.trial.Trial(loaded, trial_id), monitor)
        self.trial_number = trial_number

    def on_validation_end(self, trainer, pl_module) -> None:
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            epoch = pl_module.current_epoch
            value = trainer.callback_metrics.get(self.monitor)
            doc = {"trial": self.trial_number, "epoch": epoch,
                   "value": None if value is None else float(value)}  # fmt: skip
            out = Path(trainer.default_root_dir) / PRUNED_FILE
            atomic_write_text(out, json.dumps(doc) + "\n")
            log.info("trial %d pruned at epoch %d (%s)", self.trial_number, epoch, doc)
            trainer.should_stop = True
