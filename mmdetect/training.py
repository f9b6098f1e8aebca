"""LightningCLI entry point: `mmdetect fit|validate|test|predict --config configs/train/*.yaml`."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mmdetect.datamodule import DetectorDataModule
from mmdetect.lit import DetectorModule

log = logging.getLogger(__name__)


class PredictionsWriter(BasePredictionWriter):
    """Writes `predictions.jsonl` (id, probability per class) under the trainer's log dir."""

    def __init__(self, filename: str = "predictions.jsonl"):
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        dataset = trainer.datamodule.datasets["predict"]
        out = Path(trainer.log_dir or ".") / self.filename
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for batch in predictions:
                for i, probs in zip(batch["index"].tolist(), batch["probs"].tolist(), strict=True):
                    listing = dataset.items[i].listing
                    scores = dict(zip(pl_module.taxonomy, probs, strict=True))
                    fh.write(json.dumps({"id": listing.id, "scores": scores}) + "\n")
        log.info("predictions written to %s", out)


class DetectorCLI(LightningCLI):
    """Links the settings that data and model must share, so a config states each once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.taxonomy", "model.taxonomy")
        parser.link_arguments("data.categories", "model.categories")
        parser.link_arguments("data.tokenizer", "model.tokenizer")
        parser.link_arguments("model.text.max_length", "data.max_length")
        parser.link_arguments("model.image.image_size", "data.image_size")
        parser.link_arguments("model.image.max_photos", "data.max_photos")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
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


def build_cli(args: Sequence[str], run: bool = True) -> DetectorCLI:
    """Tests call this directly; `args` is what follows `mmdetect` on the command line."""
    torch.set_float32_matmul_precision("high")
    return DetectorCLI(
        DetectorModule,
        DetectorDataModule,
        args=list(args),
        run=run,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )


def run_lightning(args: Sequence[str]) -> int:
    build_cli(args)
    return 0


class _ParseOnlyCLI(DetectorCLI):
    def instantiate_classes(self) -> None:  # parse and type-check only; build nothing
        pass


def check_config(args: Sequence[str]):
    """Parse a training command line against the code's signatures without building anything.

    Catches unknown keys and wrong types in a config (e.g. one that names a pretrained model
    that is not downloaded here) at the cost of a parse. Returns the parsed namespace.
    """
    return _ParseOnlyCLI(DetectorModule, DetectorDataModule, args=list(args), run=False).config
