"""Image side: a torchvision CNN shared across a listing's photos, pooled to one vector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.transforms import v2

from mmdetect.models.speed import bucketed_features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_NAMES = ("fc", "classifier", "heads", "head")


@dataclass
class ImageConfig:
    """Image tower settings."""

    name: str = "resnet18"  # any torchvision.models.get_model name
    weights: str | None = None  # weights enum name ("IMAGENET1K_V1"), or a torch.save'd state dict
    image_size: int = 64
    max_photos: int = 4  # K: photos per listing the data pipeline keeps (and pads to)
    pooling: str = "mean"  # "mean" | "attention"
    enabled: bool = True


def build_transforms(cfg: ImageConfig, train: bool) -> v2.Compose:
    """PIL RGB image or uint8 [3, H, W] tensor -> normalised float [3, size, size]."""
    size = cfg.image_size
    if train:
        geometry = [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    else:
        geometry = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )


def _is_weights_file(weights: str) -> bool:
    return weights.endswith((".pt", ".pth")) or Path(weights).is_file()


def drop_classifier(model: nn.Module) -> tuple[int, str]:
    """Replace the last Linear of the classifier head with Identity, in place.

    Returns (feature size, qualified name of the removed layer). Norm/flatten layers that sit
    before the last Linear (ConvNeXt, VGG, MobileNet) are kept.
    """
    for head_name in HEAD_NAMES:
        head = getattr(model, head_name, None)
        if isinstance(head, nn.Linear):
            setattr(model, head_name, nn.Identity())
            return head.in_features, head_name
        if isinstance(head, nn.Sequential):
            linears = [name for name, m in head.named_children() if isinstance(m, nn.Linear)]
            if linears:
                last = linears[-1]
                out_dim = getattr(head, last).in_features
                setattr(head, last, nn.Identity())
                return out_dim, f"{head_name}.{last}"
    raise ValueError(f"no classifier head found among {HEAD_NAMES} in {type(model).__name__}")


def build_backbone(cfg: ImageConfig) -> tuple[nn.Module, int]:
    """A torchvision classifier without its last Linear, and its feature size.

    A weights file is a state dict of the full torchvision model (torch.save(m.state_dict()));
    the classifier's keys are ignored, so a checkpoint with any number of classes loads.
    """
    local = cfg.weights is not None and _is_weights_file(cfg.weights)
    weights = None if local or cfg.weights is None else cfg.weights
    model = torchvision.models.get_model(cfg.name, weights=weights)
    out_dim, removed = drop_classifier(model)
    if local:
        state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(removed + ".")}
        model.load_state_dict(state, strict=True)
    return model, out_dim


class AttentionPool(nn.Module):
    """Attention-MIL pooling (Ilse et al. 2018): softmax over valid photos of a learned score."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(feats).squeeze(-1)  # [B, K]
        # finfo.min, not -inf: a listing with no valid photo must not produce NaN (its
        # result is replaced by the missing embedding afterwards).
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask.to(scores.dtype)
        return (weights.unsqueeze(-1) * feats).sum(1)


def masked_mean(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of feats [B, K, D] over the photos where mask [B, K] is True (0 when none)."""
    weights = mask.to(feats.dtype).unsqueeze(-1)
    return (feats * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ImageTower(nn.Module):
    """One CNN for all photos: [B, K, 3, H, W] -> (pooled [B, D], per-photo [B, K, D], mask [B, K]).

    Masked-out photos never influence the output. A listing without any valid photo gets the
    learned `missing` embedding. The CNN runs on the valid photos only, gathered into one
    batch; the traced graph keeps a dynamic number of photos.
    """

    photo_bucket: int = 0  # > 0: pad the CNN's batch to a multiple of this (models/speed.py)

    def __init__(self, cfg: ImageConfig):
        super().__init__()
        if cfg.pooling not in ("mean", "attention"):
            raise ValueError(f"image pooling must be 'mean' or 'attention', got {cfg.pooling!r}")
        self.backbone, self.out_dim = build_backbone(cfg)
        self.pool = AttentionPool(self.out_dim) if cfg.pooling == "attention" else None
        self.missing = nn.Parameter(torch.randn(self.out_dim) * 0.02)

    def _photo_features(self, flat: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """CNN features [B*K, D] of the valid photos; rows of padding slots are zeros.

        Padding never reaches the CNN, in training (BatchNorm statistics) nor in eval (a batch
        is padded to its listing with the most photos: on data_samples 3x the real photos).
        In eval an empty selection goes through the CNN too (N=0 is fine there), so the traced
        graph has no data-dependent branch.
        """
        index = valid.nonzero().squeeze(1)
        if self.training and index.numel() == 0:  # BatchNorm refuses an empty training batch
            return flat.new_zeros(flat.shape[0], self.out_dim)
        photos = flat.index_select(0, index)
        feats = bucketed_features(self.backbone, photos, self.photo_bucket, cap=flat.shape[0])
        return feats.new_zeros(flat.shape[0], feats.shape[1]).index_copy(0, index, feats)

    def forward(
        self, images: torch.Tensor, image_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, k = image_mask.shape
        valid = image_mask.reshape(-1)
        feats = self._photo_features(images.flatten(0, 1), valid).unflatten(0, (b, k))
        pooled = (
            masked_mean(feats, image_mask) if self.pool is None else self.pool(feats, image_mask)
        )
        has_photo = image_mask.any(dim=1, keepdim=True)
        pooled = torch.where(has_photo, pooled, self.missing.to(pooled.dtype).expand_as(pooled))
        return pooled, feats, image_mask
