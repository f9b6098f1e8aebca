"""LightningCLI entry point: `mmdetect fit` and `mmdetect lightning validate|test|predict`.

`--run-dir DIR` puts a run in one directory: DIR/checkpoints/ (best-*.ckpt, latest.ckpt,
last.ckpt), DIR/logs/version_N/ (metrics.csv, hparams.yaml and the saved config.yaml, one version
per run so a resume keeps the earlier logs) and, for `lightning predict`, DIR/predictions.jsonl.
It overrides the same settings given in a config file or before it on the command line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mmdetect.common.cliargs import quiet_known_noise
from mmdetect.common.outputs import OutputError, atomic_output, check_output
from mmdetect.data.augment import AugmentConfigError
from mmdetect.data.reader import SnapshotError
from mmdetect.data.textnorm import NormalizeConfigError
from mmdetect.data.tokenize import resolve_tokenizer
from mmdetect.data.vocab import VocabularyError
from mmdetect.training.datamodule import DetectorDataModule
from mmdetect.training.module import DetectorModule

log = logging.getLogger(__name__)


class PredictionsWriter(BasePredictionWriter):
    """`lightning predict` writes predictions.jsonl (id, probability per class), atomically, to
    `out` (default: the trainer's log dir; one file per rank when several processes predict)."""

    def __init__(self, out: str | None = None):
        super().__init__(write_interval="epoch")
        self.out = out

    def path(self, trainer) -> Path:
        out = Path(self.out) if self.out else Path(trainer.log_dir or ".") / "predictions.jsonl"
        if trainer.world_size > 1:
            out = out.with_name(f"{out.stem}.rank{trainer.global_rank}{out.suffix}")
        return out

    def on_predict_start(self, trainer, pl_module) -> None:
        inputs = trainer.datamodule.hparams.predict_snapshots or []
        check_output(self.path(trainer), inputs)  # before anything is scored

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        dataset = trainer.datamodule.datasets["predict"]
        out = self.path(trainer)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out) as fh:
            for batch in predictions:
                for i, probs in zip(batch["index"].tolist(), batch["probs"].tolist(), strict=True):
                    listing = dataset.items[i].listing
                    scores = dict(zip(pl_module.taxonomy, probs, strict=True))
                    fh.write(json.dumps({"id": listing.id, "scores": scores}) + "\n")
        log.info("predictions written to %s", out)


def apply_run_dir(cfg: Namespace, run: Path) -> None:
    """Point the trainer, every logger, both checkpoint callbacks and the writer into `run`."""
    cfg.trainer.default_root_dir = str(run)
    loggers = cfg.trainer.logger if isinstance(cfg.trainer.logger, list) else [cfg.trainer.logger]
    for logger in loggers:
        if isinstance(logger, Namespace) and "save_dir" in (logger.get("init_args") or {}):
            logger.init_args.save_dir = str(run)
    for key in ("checkpoint", "last_checkpoint"):
        cfg[key].dirpath = str(run / "checkpoints")
    cfg.predictions.out = str(run / "predictions.jsonl")


class DetectorCLI(LightningCLI):
    """Links the settings that data and model must share, so a config states each once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.taxonomy", "model.taxonomy")
        parser.link_arguments("data.categories", "model.categories")
        # The tokenizer comes with model.text.pretrained unless data.tokenizer names one.
        parser.link_arguments(
            ("data.tokenizer", "model.text.pretrained"), "model.tokenizer", resolve_tokenizer
        )
        parser.link_arguments("model.text.pretrained", "data.text_pretrained")
        parser.link_arguments("model.text.max_length", "data.max_length")
        parser.link_arguments("model.image.image_size", "data.image_size")
        parser.link_arguments("model.image.max_photos", "data.max_photos")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(PredictionsWriter, "predictions")
        parser.add_argument(
            "--run-dir", "--run_dir", dest="run_dir", type=str | None, default=None,
            help="one directory for the run: checkpoints/, logs/version_N/ (with config.yaml), "
            "predictions.jsonl; overrides default_root_dir, the logger's save_dir, "
            "checkpoint dirpaths and predictions.out",
        )  # fmt: skip
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/macro_ap",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-epoch{epoch:02d}-ap{val/macro_ap:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                # Lightning 2.6 refreshes last.ckpt only when a top-k checkpoint was written in
                # the same step, so a run whose metric stopped improving would resume from an
                # old state. A monitor-less callback writes `latest.ckpt` every epoch and
                # links last.ckpt to it, which is what `--ckpt_path last` resumes from.
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.filename": "latest",
                "last_checkpoint.save_last": "link",
            }
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("run_dir"):
            apply_run_dir(cfg, Path(cfg.run_dir))


def build_cli(args: Sequence[str], run: bool = True) -> DetectorCLI:
    """Tests call this directly; `args` is what follows `mmdetect` on the command line."""
    torch.set_float32_matmul_precision("high")
    quiet_known_noise()
    return DetectorCLI(
        DetectorModule,
        DetectorDataModule,
        args=list(args),
        run=run,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )


def run_lightning(args: Sequence[str]) -> int:
    """Run a stage; a bad snapshot, output path, tokenizer/encoder pair or warm-start model
    (`init_from`: a damaged or crafted checkpoint, a tampered bundle) is one line on stderr and
    exit 1."""
    from mmdetect.artifacts.bundle_format import BundleError
    from mmdetect.training.checkpoint import CheckpointError

    try:
        build_cli(args)
    except (SnapshotError, OutputError, CheckpointError, BundleError, VocabularyError,
            NormalizeConfigError, AugmentConfigError) as exc:  # fmt: skip
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


class _ParseOnlyCLI(DetectorCLI):
    def instantiate_classes(self) -> None:  # parse and type-check only; build nothing
        pass


def check_config(args: Sequence[str]):
    """Parse a training command line against the code's signatures without building anything.

    Catches unknown keys and wrong types in a config (e.g. one that names a pretrained model
    that is not downloaded here) at the cost of a parse. Returns the parsed namespace.
    """
    quiet_known_noise()
    return _ParseOnlyCLI(DetectorModule, DetectorDataModule, args=list(args), run=False).config
