"""ImageTower: a backbone's features per photo, pooled over a listing's photos (attention or
masked mean); config, preprocessing and backbones are in mmdetect.models.image.
"""

from __future__ import annotations

import torch
from torch import nn

from mmdetect.models.image import ImageConfig, build_backbone
from mmdetect.models.speed import bucketed_features


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
    """One backbone for all photos: [B, K, 3, H, W] -> (pooled [B, D], per-photo [B, K, D],
    mask [B, K]); `preprocess` is what the photos must have gone through (ImagePreprocess).

    Masked-out photos never influence the output. A listing without any valid photo gets the
    learned `missing` embedding. The CNN runs on the valid photos only, gathered into one
    batch; the traced graph keeps a dynamic number of photos.
    """

    photo_bucket: int = 0  # > 0: pad the CNN's batch to a multiple of this (models/speed.py)

    def __init__(self, cfg: ImageConfig):
        super().__init__()
        if cfg.pooling not in ("mean", "attention"):
            raise ValueError(f"image pooling must be 'mean' or 'attention', got {cfg.pooling!r}")
        self.backbone, self.out_dim, self.preprocess = build_backbone(cfg)
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
