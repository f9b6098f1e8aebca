"""DetectorModule: the Lightning shell around MultimodalClassifier (loss, metrics, optimizers)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MultilabelAveragePrecision
from torchvision.ops import sigmoid_focal_loss

from mmdetect.checkpoint import CheckpointError, read_checkpoint, state_mismatch
from mmdetect.data.dataset import DEFAULT_CATEGORIES
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.data.tokenize import check_vocabulary, load_tokenizer
from mmdetect.models.classifier import MODEL_INPUTS, ModelConfig, MultimodalClassifier
from mmdetect.models.image import ImageConfig
from mmdetect.models.speed import apply_speedups
from mmdetect.models.text import TextConfig
from mmdetect.optim import PRETRAINED, group_lambdas, group_names, param_groups

log = logging.getLogger(__name__)


def model_inputs(batch: dict) -> tuple[torch.Tensor, ...]:
    """The collated batch in MultimodalClassifier.forward's argument order."""
    return tuple(batch[name] for name in MODEL_INPUTS)


def bundle_checkpoint(bundle: Path) -> Path:
    """The source checkpoint of a verified bundle, unchanged since export (else CheckpointError)."""
    from mmdetect.bundle import META_FILE, BundleError, read_json, sha256_file, verify_checksums

    try:
        verify_checksums(bundle)  # before reading anything in it
        source = read_json(bundle / META_FILE)["checkpoint"]
        ckpt, digest = Path(source["path"]), source["sha256"]
    except (BundleError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{bundle}: not a bundle with a source checkpoint: {exc}") from None
    if not ckpt.is_file():
        raise CheckpointError(f"{bundle}: its source checkpoint {ckpt} does not exist")
    if sha256_file(ckpt) != digest:
        raise CheckpointError(
            f"{bundle}: {ckpt} has changed since the bundle was exported "
            "(SHA256 differs from meta.json); warm-start from the checkpoint explicitly"
        )
    log.info("bundle %s: warm start from its checkpoint %s", bundle, ckpt)
    return ckpt


class DetectorModule(L.LightningModule):
    """Multi-label BCE (or focal) training of a MultimodalClassifier with per-class AP."""

    def __init__(
        self,
        text: TextConfig = TextConfig(),  # noqa: B008 (a frozen-by-convention default config)
        image: ImageConfig = ImageConfig(),  # noqa: B008
        fusion: str | dict = "concat",  # a name or {class_path, init_args}
        hidden: int = 128,
        dropout: float = 0.1,
        modality_dropout: float = 0.0,
        category_dim: int = 16,
        taxonomy: Sequence[str] = DEFAULT_TAXONOMY,
        categories: Sequence[str] = DEFAULT_CATEGORIES,
        tokenizer: str | None = None,
        lr: float = 1e-3,
        pretrained_lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        freeze_towers_epochs: int = 0,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        max_pos_weight: float = 20.0,
        aux_weight: float = 0.5,
        init_from: str | None = None,
        # Speed levers (configs/train/gpu_fast.yaml); none changes what is computed.
        photo_bucket: int = 0,  # pad the CNN's photo batch to a multiple of this (models/speed.py)
        channels_last: bool = False,  # the CNN's convolutions in NHWC
        compile: str | None = None,  # torch.compile mode for the text tower and fusion
        fused_adamw: bool = False,  # one fused AdamW kernel (CUDA only; ignored elsewhere)
    ):
        super().__init__()
        if loss not in ("bce", "focal"):
            raise ValueError(f"loss must be 'bce' or 'focal', got {loss!r}")
        # Checkpoints store the tower configs as plain dicts; accept both forms.
        text = TextConfig(**text) if isinstance(text, dict) else text
        image = ImageConfig(**image) if isinstance(image, dict) else image
        self.save_hyperparameters()
        # The tokenizer comes with a pretrained encoder unless one is named; recorded resolved
        # (a dict updates hparams and hparams_initial alike; a plain assignment only the first).
        tokenizer = tokenizer or text.pretrained
        self.save_hyperparameters({"tokenizer": tokenizer})
        tok = load_tokenizer(tokenizer) if tokenizer is not None and text.enabled else None
        if tok is not None and text.pretrained is None:
            text = replace(text, vocab_size=len(tok))
        self.taxonomy = tuple(taxonomy)
        self.net = MultimodalClassifier(
            ModelConfig(
                text=text,
                image=image,
                num_labels=len(self.taxonomy),
                num_categories=len(categories),
                category_dim=category_dim,
                fusion=fusion,
                hidden=hidden,
                dropout=dropout,
                modality_dropout=modality_dropout,
            )
        )
        if tok is not None and text.pretrained and self.net.text is not None:
            check_vocabulary(tok, tokenizer, self.net.text.vocab_rows, text.pretrained)
        if text.init_vectors and text.pretrained:
            raise ValueError(
                "model.text.init_vectors is for a from-scratch encoder, not pretrained"
            )
        self.vectors_info: dict | None = None  # what init_vectors wrote; saved in checkpoints
        # Filled from the training split in setup(); a buffer, so checkpoints carry it.
        self.register_buffer("pos_weight", torch.ones(len(self.taxonomy)))
        c = len(self.taxonomy)
        self.val_ap = MultilabelAveragePrecision(num_labels=c, average=None)
        self.test_ap = MultilabelAveragePrecision(num_labels=c, average=None)
        if init_from:
            self.warm_start(init_from)
        if self.net.image is not None:
            self.net.image.photo_bucket = photo_bucket

    def configure_model(self) -> None:
        """Trainer hook, before the move to the device: the levers that change modules in place
        (a checkpoint loaded for export or serving never runs it)."""
        hp = self.hparams
        for lever in apply_speedups(self.net, hp.compile, hp.channels_last):
            log.info("speed lever: %s", lever)

    def warm_start(self, path: str) -> None:
        """Initialise the network from a checkpoint (fine-tuning, e.g. after review feedback).

        `path` may also be an exported bundle directory (e.g. REGISTRY/current): its SHA256SUMS
        must verify, and the source checkpoint its meta.json names must still have the SHA256
        recorded there. Read with weights_only=True; raises CheckpointError (a ValueError).
        """
        ckpt_path = bundle_checkpoint(Path(path)) if Path(path).is_dir() else Path(path)
        state = read_checkpoint(ckpt_path)["state_dict"]
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        mismatch = state_mismatch(self.net.state_dict(), state)
        if mismatch:
            raise CheckpointError(f"{ckpt_path}: checkpoint does not match this model: {mismatch}")
        self.net.load_state_dict(state, strict=True)
        log.info("warm start from %s", ckpt_path)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.net.cfg.text.init_vectors and not self.hparams.init_from:
            self._init_vectors()  # a resumed run's checkpoint state overwrites it afterwards
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and datamodule is not None and hasattr(datamodule, "pos_weight"):
            self.pos_weight.copy_(datamodule.pos_weight(self.hparams.max_pos_weight))
            log.info("pos_weight %s", [round(x, 2) for x in self.pos_weight.tolist()])

    def _init_vectors(self) -> None:
        """model.text.init_vectors: word vectors into the whole-word rows of the text embedding."""
        from mmdetect.data.vectors import embedding_init
        from mmdetect.models.wordvec import init_embedding_rows

        spec, embedding = self.net.cfg.text.init_vectors, self.net.text.get_input_embeddings()
        vocab = load_tokenizer(self.hparams.tokenizer).get_vocab()
        ids, values, info = embedding_init(spec, vocab, embedding.embedding_dim)
        init_embedding_rows(
            embedding, torch.as_tensor(ids), torch.as_tensor(values), info["mode"], info["seed"]
        )
        self.vectors_info = info
        log.info("init_vectors: %s", info)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.vectors_info is not None:
            checkpoint["init_vectors"] = self.vectors_info

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.vectors_info = checkpoint.get("init_vectors", self.vectors_info)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(*model_inputs(batch))

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean multi-label loss, over the listings selected by `rows` (all by default)."""
        if self.hparams.loss == "focal":
            per = sigmoid_focal_loss(
                logits, labels, alpha=-1, gamma=self.hparams.focal_gamma, reduction="none"
            )
        else:
            per = F.binary_cross_entropy_with_logits(
                logits, labels, pos_weight=self.pos_weight, reduction="none"
            )
        if rows is None:
            return per.mean()
        return (per * rows[:, None]).sum() / (rows.sum() * per.shape[1]).clamp(min=1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels, n = batch["labels"], len(batch["labels"])
        logits, aux = self.net.forward_with_aux(*model_inputs(batch))
        loss = self.loss(logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        if aux and self.hparams.aux_weight > 0:
            text_logits, image_logits = aux
            # The image head learns only from listings that have a photo.
            has_photo = batch["image_mask"].any(dim=1).to(logits.dtype)
            aux_loss = self.loss(text_logits, labels) + self.loss(image_logits, labels, has_photo)
            self.log("train/aux_loss", aux_loss, batch_size=n)
            loss = loss + self.hparams.aux_weight * aux_loss
        return loss

    def _eval_step(self, batch: dict, prefix: str, metric: MultilabelAveragePrecision) -> None:
        logits = self(batch)
        labels = batch["labels"]
        self.log(
            f"{prefix}/loss", self.loss(logits, labels), batch_size=len(labels), sync_dist=True
        )
        metric.update(torch.sigmoid(logits), labels.long())

    def _eval_epoch_end(self, prefix: str, metric: MultilabelAveragePrecision) -> None:
        per_class = metric.compute()
        metric.reset()
        # torchmetrics gives NaN (or a negative AP) for a class with no positives: skip it
        has_pos = torch.isfinite(per_class) & (per_class >= 0)
        macro = per_class[has_pos].mean() if has_pos.any() else torch.tensor(float("nan"))
        self.log(f"{prefix}/macro_ap", macro, prog_bar=True, sync_dist=True)
        for name, value in zip(self.taxonomy, per_class, strict=True):
            self.log(f"{prefix}/ap_{name}", value, sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_ap)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_ap)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_ap)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_ap)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"index": batch["index"], "probs": torch.sigmoid(self(batch))}

    def frozen_steps(self) -> int:
        """Optimizer steps during which the pretrained groups learn at lr 0 (whole epochs)."""
        epochs = self.hparams.freeze_towers_epochs
        if epochs <= 0:
            return 0
        trainer = self.trainer
        per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        return epochs * per_epoch

    def configure_optimizers(self):
        hp = self.hparams
        groups = param_groups(self.net, hp.lr, hp.pretrained_lr, hp.weight_decay)
        for name, params in group_names(groups, self.net):
            log.info("optimizer group %s: %d tensors", name, len(params))
        fused = True if hp.fused_adamw and self.device.type == "cuda" else None
        optimizer = torch.optim.AdamW(groups, fused=fused)
        # estimated_stepping_batches sets up the train loader, so num_training_batches is known
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_fraction * total))
        frozen = self.frozen_steps()
        if frozen and not any(g["kind"] == PRETRAINED for g in groups):
            log.warning(
                "freeze_towers_epochs=%d but no tower is pretrained", hp.freeze_towers_epochs
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, group_lambdas(groups, warmup, total, frozen)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
