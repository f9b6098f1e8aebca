"""The LightningCLI behind `mmdetect pretrain` (the `fit` stage only).

`last_checkpoint` writes latest.ckpt every `every_n_train_steps` steps and links last.ckpt to
it, so `--ckpt_path last` resumes a run that was stopped or killed (even with -9).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mmdetect.cliutil import quiet_known_noise
from mmdetect.data.tokenize import VocabularyError
from mmdetect.outputs import OutputError
from mmdetect.pretrain.corpus import CorpusError
from mmdetect.pretrain.module import MLMDataModule, MLMModule


class PretrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.tokenizer")
        parser.link_arguments("data.max_length", "model.max_length")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.filename": "latest",
                "last_checkpoint.save_last": "link",
                "last_checkpoint.every_n_train_steps": 20,
            }
        )

    def before_instantiate_classes(self) -> None:
        # One fixed place for the checkpoints (not the logger's version_N), so that a later
        # `--ckpt_path last` finds the last.ckpt of the run it resumes.
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if not cfg.last_checkpoint.dirpath:
            cfg.last_checkpoint.dirpath = str(Path(cfg.trainer.default_root_dir) / "checkpoints")


def build_pretrain_cli(args: Sequence[str], run: bool = True) -> PretrainCLI:
    """Tests call this directly; `args` follow `mmdetect pretrain` (no stage name)."""
    quiet_known_noise()
    return PretrainCLI(
        MLMModule, MLMDataModule, args=["fit", *args] if run else list(args), run=run,
        seed_everything_default=0, save_config_kwargs={"overwrite": True},
    )  # fmt: skip


def pretrain_main(argv: Sequence[str]) -> int:
    """`mmdetect pretrain`: a bad corpus, tokenizer or output path is one line and exit 1."""
    if argv and argv[0] in ("-h", "--help"):
        build_pretrain_cli(argv)
        return 0
    try:
        build_pretrain_cli(argv)
    except (CorpusError, OutputError, VocabularyError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
