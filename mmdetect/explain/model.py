"""What an explanation needs of a model: one interface over a checkpoint and a bundle.

A checkpoint gives the eager `MultimodalClassifier` (gradients: Integrated Gradients); a
TorchScript or ONNX bundle gives only a function of the MODEL_INPUTS tensors (no gradients we
can rely on: occlusion). Both get their listing tensors from the same preprocessing the
served model uses (`pipeline.build_items_dataset` over a preprocess.json; a checkpoint's is
rebuilt by `export.preprocess_doc`, as export writes it), and their calibrated scores and
decisions from mmdetect.policy. Loading lives in loading.py, so that the HTTP service, which
only wraps the Predictor it already holds (`from_predictor`), reaches no training code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mmdetect.data.dataset import Item, collate_listings
from mmdetect.data.photos import normalize_photos
from mmdetect.data.pipeline import build_items_dataset, photo_settings
from mmdetect.models.classifier import MODEL_INPUTS
from mmdetect.policy import Decisions, decide

Inputs = dict[str, torch.Tensor]


class ExplainError(ValueError):
    """A model, input or option explain cannot use: one line naming the file or flag."""


@dataclass
class Explainable:
    """A model to explain. `net` is the eager classifier (checkpoints only); `module` maps
    MODEL_INPUTS tensors to probabilities [B, C] for every kind."""

    source: str
    kind: str  # "checkpoint" | "torchscript" | "onnx"
    taxonomy: tuple[str, ...]
    tokenizer: Any
    pre: dict[str, Any]
    operating_point: dict[str, Any]
    module: Callable[..., torch.Tensor]
    net: torch.nn.Module | None = None

    @property
    def fitted(self) -> bool:
        return bool(self.operating_point.get("fitted"))

    @property
    def pad_id(self) -> int:
        return int(self.pre["pad_id"])

    def probs(self, inputs: Inputs, batch_size: int = 32) -> np.ndarray:
        """Model probabilities [B, C] float64, in chunks of `batch_size` rows."""
        b = inputs["input_ids"].shape[0]
        out = []
        with torch.no_grad():
            for i in range(0, b, batch_size):
                chunk = [inputs[n][i : i + batch_size] for n in MODEL_INPUTS]
                out.append(self.module(*chunk).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def decide(self, probs: np.ndarray) -> Decisions:
        return decide(self.operating_point, probs, self.taxonomy)


def from_predictor(predictor) -> Explainable:
    """The bundle a `serve.Predictor` holds (the HTTP service's, already loaded and warm)."""
    b = predictor.bundle
    kind = b.meta.get("format", "torchscript")
    return Explainable(str(b.root), kind, tuple(predictor.taxonomy), predictor.tokenizer,
                       dict(b.preprocess), dict(b.thresholds), b.module)  # fmt: skip


def listing_inputs(model: Explainable, item: Item) -> tuple[Inputs, list[str | None]]:
    """The model's tensors for one listing (batch of 1, photos normalised) and, per photo
    slot, the image path it holds (photos that fail to decode are left out, as in scoring)."""
    pre = model.pre
    dataset = build_items_dataset([item], model.tokenizer, pre)
    sample = dataset[0]
    refs = list(dict.fromkeys(item.listing.images))[: pre["max_photos"]]
    if int(sample["photo_problems"].sum()):  # which ones failed: decode each alone
        ok = []
        for ref in refs:
            one = Item(replace(item.listing, images=(ref,)), item.root)
            if dataset.photos(one)[0]:
                ok.append(ref)
        refs = ok
    batch = collate_listings([sample], pad_id=pre["pad_id"], image_size=pre["image_size"])
    mean, std, _ = photo_settings(pre)
    batch["images"] = normalize_photos(batch["images"], batch["image_mask"], mean, std)
    inputs = {name: batch[name] for name in MODEL_INPUTS}
    return inputs, refs


def repeat(inputs: Inputs, n: int) -> Inputs:
    """n copies of a batch of one (clones: each row is edited on its own)."""
    return {k: v.repeat(n, *([1] * (v.dim() - 1))).clone() for k, v in inputs.items()}


def concat(batches: Sequence[Mapping[str, torch.Tensor]]) -> Inputs:
    return {k: torch.cat([b[k] for b in batches]) for k in MODEL_INPUTS}
