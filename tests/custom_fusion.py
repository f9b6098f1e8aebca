"""A researcher's fusion module living outside the package (named by class path in YAML)."""

from __future__ import annotations

import torch
from torch import nn

from mmdetect.models.fusion import Encoded, FusionDims


class TokenPhotoSumFusion(nn.Module):
    """Masked means of tokens and photos plus the pooled vectors, each projected, summed."""

    def __init__(self, dims: FusionDims, hidden: int, dropout: float, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        widths = [*dims.pooled, *(d for d in (dims.text, dims.photos) if d is not None)]
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in widths)
        self.dropout = nn.Dropout(dropout)

    def forward(self, enc: Encoded) -> torch.Tensor:
        seqs = [(enc.tokens, enc.token_mask), (enc.photos, enc.photo_mask)]
        means = []
        for x, mask in seqs:
            if x is not None and mask is not None:
                w = mask.to(x.dtype).unsqueeze(-1)
                means.append((x * w).sum(1) / w.sum(1).clamp(min=1.0))
        parts = [p(x) for p, x in zip(self.projections, [*enc.pooled, *means], strict=True)]
        return self.dropout(self.scale * torch.stack(parts).sum(0))
