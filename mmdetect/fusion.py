"""Fusion of per-modality vectors into one [B, hidden] representation."""

from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    """LayerNorm and project each modality to `hidden`, concatenate, then a one-layer MLP.

    The projection gives every modality the same width: concatenating a 576-dim CNN vector with
    a 64-dim text vector directly lets the (from-scratch, slower-learning) image side dominate.
    """

    def __init__(self, in_dims: list[int], hidden: int, dropout: float):
        super().__init__()
        self.projections = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden)) for d in in_dims
        )
        self.mlp = nn.Sequential(
            nn.GELU(), nn.Linear(hidden * len(in_dims), hidden), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(
            torch.cat([proj(x) for proj, x in zip(self.projections, xs, strict=True)], dim=-1)
        )


class GatedFusion(nn.Module):
    """Gated multimodal unit (Arevalo et al. 2017) generalised to N modalities.

    h_i = tanh(W_i x_i); per hidden unit, gates z = softmax over modalities of W_z [x_1; ...; x_N];
    output = sum_i z_i * h_i. With N = 2 this is the paper's sigmoid gate z, 1 - z.
    """

    def __init__(self, in_dims: list[int], hidden: int, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in in_dims)
        self.projections = nn.ModuleList(nn.Linear(d, hidden) for d in in_dims)
        self.gate = nn.Linear(sum(in_dims), hidden * len(in_dims))
        self.dropout = nn.Dropout(dropout)
        self.num_modalities = len(in_dims)
        self.hidden = hidden

    def _gates(self, normed: list[torch.Tensor]) -> torch.Tensor:
        logits = self.gate(torch.cat(normed, dim=-1))
        return torch.softmax(logits.unflatten(-1, (self.num_modalities, self.hidden)), dim=1)

    def gates(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Gate weights [B, N, hidden], summing to 1 over the N modalities (for inspection)."""
        return self._gates([norm(x) for norm, x in zip(self.norms, xs, strict=True)])

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        normed = [norm(x) for norm, x in zip(self.norms, xs, strict=True)]
        h = torch.stack(
            [torch.tanh(p(x)) for p, x in zip(self.projections, normed, strict=True)], dim=1
        )
        return self.dropout((self._gates(normed) * h).sum(1))


FUSIONS = {"concat": ConcatFusion, "gated": GatedFusion}


def build_fusion(kind: str, in_dims: list[int], hidden: int, dropout: float) -> nn.Module:
    """A fusion module by name: "concat" or "gated"."""
    if kind not in FUSIONS:
        raise ValueError(f"unknown fusion {kind!r}; expected one of {sorted(FUSIONS)}")
    return FUSIONS[kind](list(in_dims), hidden, dropout)
