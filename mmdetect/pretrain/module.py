"""MLMModule (a LightningModule around BertForMaskedLM) and MLMDataModule (listing texts).

The encoder has the same shape as model.text's from-scratch BERT, so the directory it writes
loads as `model.text.pretrained` with the tokenizer it was trained with.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForMaskedLM

from mmdetect.data.tokenize import encode_batch, load_tokenizer
from mmdetect.outputs import check_output
from mmdetect.pretrain.corpus import read_texts
from mmdetect.pretrain.masking import WholeWordMaskCollator

log = logging.getLogger(__name__)
ENCODER_FILES = ("config.json", "model.safetensors")  # a directory holding both is ours


class MLMDataModule(L.LightningDataModule):
    """Texts of `corpus` (JSONL files or snapshot directories), encoded once as the classifier
    encodes listings ([CLS] title [SEP] description [SEP]); the last `val_fraction` held out."""

    def __init__(
        self,
        corpus: list[str],
        tokenizer: str = "data_samples/tokenizer",
        max_length: int = 96,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        mlm_probability: float = 0.15,
        num_workers: int = 0,
    ):
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.ids: dict[str, list[list[int]]] = {}

    def setup(self, stage: str) -> None:
        if self.ids:
            return
        hp = self.hparams
        tok = load_tokenizer(hp.tokenizer)
        pairs = [p for path in hp.corpus for p in read_texts(path)]
        seqs = encode_batch(tok, pairs, hp.max_length)
        # Same order every run: a resumed run holds out the same texts.
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(len(seqs), generator=g).tolist()
        n_val = int(len(seqs) * hp.val_fraction)
        self.ids = {
            "val": [seqs[i] for i in order[:n_val]],
            "train": [seqs[i] for i in order[n_val:]],
        }
        self.collate = WholeWordMaskCollator(tok, hp.mlm_probability)
        log.info("pretrain corpus: %d train, %d val texts", len(self.ids["train"]), n_val)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.ids[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
            collate_fn=self.collate, num_workers=self.hparams.num_workers,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False) if self.ids["val"] else []


class MLMModule(L.LightningModule):
    """BertForMaskedLM from scratch over `tokenizer`'s vocabulary; AdamW with linear warmup and
    decay; `out_dir` receives the encoder and its tokenizer when fitting ends."""

    def __init__(
        self,
        tokenizer: str = "data_samples/tokenizer",
        out_dir: str = "runs/pretrain/encoder",
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        intermediate_size: int = 128,
        max_length: int = 96,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.06,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(tokenizer)
        config = BertConfig(
            vocab_size=len(self.tokenizer), hidden_size=hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads,
            intermediate_size=intermediate_size, max_position_embeddings=max_length,
            pad_token_id=self.tokenizer.pad_token_id,
        )  # fmt: skip
        self.mlm = BertForMaskedLM(config)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.mlm(**batch).loss
        self.log("train/mlm_loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.mlm(**batch).loss
        self.log("val/mlm_loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.mlm.named_parameters() if p.ndim > 1]
        rest = [p for n, p in self.mlm.named_parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": rest, "weight_decay": 0},
            ],
            lr=hp.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warm = max(int(total * hp.warmup_fraction), 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_start(self) -> None:
        corpus = getattr(self.trainer.datamodule, "hparams", {}).get("corpus", [])
        check_output(self.hparams.out_dir, [*corpus, self.hparams.tokenizer], kind="dir")

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            save_encoder(self.mlm, self.tokenizer, Path(self.hparams.out_dir))


def save_encoder(mlm: BertForMaskedLM, tokenizer, out: Path) -> None:
    """save_pretrained of the model and its tokenizer, into a partial directory renamed over
    `out` at the end (a killed run never leaves a half-written encoder). An existing `out`
    is replaced only when it holds an encoder (config.json and model.safetensors)."""
    if out.exists() and not all((out / f).is_file() for f in ENCODER_FILES):
        raise FileExistsError(f"{out}: exists and is not an encoder directory; not replacing it")
    part = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    mlm.save_pretrained(str(part))
    tokenizer.save_pretrained(str(part))
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    log.info("pretrained encoder and tokenizer written to %s", out)
