"""Fusion of the towers' outputs into one [B, hidden] representation.

A fusion module is any nn.Module built as `cls(dims, hidden, dropout, **init_args)` whose
forward takes one `Encoded` and returns [B, hidden]. YAML names it by class path
(`model.fusion: {class_path: my_pkg.MyFusion, init_args: {...}}`) or by the short names of
FUSIONS, so a researcher's own module plugs in without a package edit.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn


@dataclass(frozen=True)
class FusionDims:
    """Widths of what the fusion receives: pooled vectors in order [text?, photos?, tabular]."""

    pooled: tuple[int, ...]
    text: int | None = None  # token-state width; None without a text tower
    photos: int | None = None  # per-photo feature width; None without an image tower


class Encoded(NamedTuple):
    """The towers' outputs for one batch (after modality dropout).

    pooled: [B, D_i] per modality, in FusionDims.pooled order. tokens [B, L, Dt] with
    token_mask [B, L] bool; photos [B, K, Dp] with photo_mask [B, K] bool (a dropped or
    missing modality has an all-False mask).
    """

    pooled: list[torch.Tensor]
    tokens: torch.Tensor | None
    token_mask: torch.Tensor | None
    photos: torch.Tensor | None
    photo_mask: torch.Tensor | None


class ConcatFusion(nn.Module):
    """LayerNorm and project each modality to `hidden`, concatenate, then a one-layer MLP.

    The projection gives every modality the same width: concatenating a 576-dim CNN vector with
    a 64-dim text vector directly lets the (from-scratch, slower-learning) image side dominate.
    """

    def __init__(self, dims: FusionDims, hidden: int, dropout: float):
        super().__init__()
        in_dims = dims.pooled
        self.projections = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden)) for d in in_dims
        )
        self.mlp = nn.Sequential(
            nn.GELU(), nn.Linear(hidden * len(in_dims), hidden), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, enc: Encoded) -> torch.Tensor:
        xs = enc.pooled
        return self.mlp(
            torch.cat([proj(x) for proj, x in zip(self.projections, xs, strict=True)], dim=-1)
        )


class GatedFusion(nn.Module):
    """Gated multimodal unit (Arevalo et al. 2017) generalised to N modalities.

    h_i = tanh(W_i x_i); per hidden unit, gates z = softmax over modalities of W_z [x_1; ...; x_N];
    output = sum_i z_i * h_i. With N = 2 this is the paper's sigmoid gate z, 1 - z.
    """

    def __init__(self, dims: FusionDims, hidden: int, dropout: float):
        super().__init__()
        in_dims = dims.pooled
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

    def forward(self, enc: Encoded) -> torch.Tensor:
        normed = [norm(x) for norm, x in zip(self.norms, enc.pooled, strict=True)]
        h = torch.stack(
            [torch.tanh(p(x)) for p, x in zip(self.projections, normed, strict=True)], dim=1
        )
        return self.dropout((self._gates(normed) * h).sum(1))


FUSIONS: dict[str, type[nn.Module]] = {"concat": ConcatFusion, "gated": GatedFusion}


def fusion_class(class_path: str) -> type[nn.Module]:
    """The nn.Module subclass a dotted class path names (a short name of FUSIONS also works).

    Checkpoints carry this path: anything that is not an nn.Module subclass is refused before
    it is called, so a crafted checkpoint cannot name an arbitrary callable.
    """
    if class_path in FUSIONS:
        return FUSIONS[class_path]
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"fusion {class_path!r}: expected one of {sorted(FUSIONS)} or a dotted class path"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"fusion {class_path!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"fusion {class_path!r} is not an nn.Module subclass")
    return cls


def fusion_spec(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class path, init_args) of a YAML fusion entry: a name/path or {class_path, init_args}."""
    if isinstance(spec, str):
        return spec, {}
    if not isinstance(spec, Mapping) or set(spec) - {"class_path", "init_args"}:
        raise ValueError(f"fusion must be a name or {{class_path, init_args}}, got {spec!r}")
    if not isinstance(spec.get("class_path"), str):
        raise ValueError(f"fusion needs a string class_path, got {spec!r}")
    init_args = dict(spec.get("init_args") or {})
    return spec["class_path"], init_args


def build_fusion(
    spec: str | Mapping[str, Any], dims: FusionDims, hidden: int, dropout: float
) -> nn.Module:
    """The fusion module a YAML entry names, built for these tower widths."""
    class_path, init_args = fusion_spec(spec)
    return fusion_class(class_path)(dims, hidden, dropout, **init_args)
