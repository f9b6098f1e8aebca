"""Fusion of the towers' outputs into one [B, hidden] representation.

A fusion module is any nn.Module built as `cls(dims, hidden, dropout, **init_args)` whose
forward takes one `Encoded` and returns [B, hidden]. YAML names it by class path
(`model.fusion: {class_path: my_pkg.MyFusion, init_args: {...}}`) or by the short names of
FUSIONS, so a researcher's own module plugs in without a package edit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from mmdetect.common.safe_classpath import allowed_modules, import_class


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


class CrossAttentionLayer(nn.Module):
    """Post-norm transformer block whose attention reads another sequence:
    x = LN(x + MHA(x, kv, kv)); x = LN(x + FFN(x))."""

    def __init__(self, hidden: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
        )
        self.norm2 = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, kv_ignore: torch.Tensor) -> torch.Tensor:
        attended = self.attn(x, kv, kv, key_padding_mask=kv_ignore, need_weights=False)[0]
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.ffn(x)))


class CrossAttentionFusion(nn.Module):
    """Text tokens attend to the listing's photos; the result joins the pooled vectors.

    Keys/values: the per-photo features (projected to `hidden`) plus one learned "no photo"
    token that is always present, so a listing without photos (or whose photos were dropped)
    attends to that token alone: never an all-masked softmax, never NaN. Masked photos
    (key_padding_mask) and masked tokens (excluded from the mean) change nothing. The masked
    mean of the attended tokens is concatenated with every modality's pooled vector (each
    LayerNormed and projected, as ConcatFusion does) and an MLP maps it to `hidden`.
    Needs both towers: there is nothing to cross without text tokens and photos.
    """

    def __init__(
        self, dims: FusionDims, hidden: int, dropout: float, num_heads: int = 4, layers: int = 1
    ):
        super().__init__()
        if dims.text is None or dims.photos is None:
            missing = [n for n, d in (("text", dims.text), ("image", dims.photos)) if d is None]
            raise ValueError(
                f"cross_attention fusion needs both the text and the image tower; this model has "
                f"no {' and no '.join(missing)} tower (use 'concat' or 'gated')"
            )
        if layers < 1 or num_heads < 1 or hidden % num_heads:
            raise ValueError(
                f"cross_attention: need layers >= 1 and hidden ({hidden}) divisible by "
                f"num_heads ({num_heads}), got layers={layers}"
            )
        self.query = nn.Sequential(nn.LayerNorm(dims.text), nn.Linear(dims.text, hidden))
        self.key = nn.Sequential(nn.LayerNorm(dims.photos), nn.Linear(dims.photos, hidden))
        self.no_photo = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.layers = nn.ModuleList(
            CrossAttentionLayer(hidden, num_heads, dropout) for _ in range(layers)
        )
        self.projections = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden)) for d in dims.pooled
        )
        self.mlp = nn.Sequential(
            nn.GELU(), nn.Linear(hidden * (1 + len(dims.pooled)), hidden), nn.GELU(),
            nn.Dropout(dropout),
        )  # fmt: skip

    def attend(self, enc: Encoded) -> torch.Tensor:
        """The tokens after cross-attention, [B, L, hidden] (for inspection and forward)."""
        assert enc.tokens is not None and enc.photos is not None  # checked at build time
        assert enc.token_mask is not None and enc.photo_mask is not None
        x = self.query(enc.tokens)
        photos = self.key(enc.photos)
        b = photos.shape[0]
        kv = torch.cat([self.no_photo.to(photos.dtype).expand(b, 1, -1), photos], dim=1)
        always = torch.zeros(b, 1, dtype=torch.bool, device=photos.device)
        ignore = torch.cat([always, ~enc.photo_mask], dim=1)  # True: not attended to
        for layer in self.layers:
            x = layer(x, kv, ignore)
        return x

    def forward(self, enc: Encoded) -> torch.Tensor:
        x = self.attend(enc)
        weights = enc.token_mask.to(x.dtype).unsqueeze(-1)  # a dropped text: all zero -> 0
        text = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        pooled = [proj(p) for proj, p in zip(self.projections, enc.pooled, strict=True)]
        return self.mlp(torch.cat([text, *pooled], dim=-1))


FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "cross_attention": CrossAttentionFusion,
}


def fusion_class(class_path: str, allowed: Sequence[str] = ()) -> type[nn.Module]:
    """The nn.Module subclass a dotted class path names (a short name of FUSIONS also works).

    Checkpoints carry this path: its module must lie inside mmdetect, torch.nn, `allowed` or
    MMDETECT_ALLOW_MODULES, checked before anything is imported (safe_classpath), and anything
    that is not an nn.Module subclass is refused before it is called.
    """
    if class_path in FUSIONS:
        return FUSIONS[class_path]
    if "." not in class_path:
        raise ValueError(
            f"fusion {class_path!r}: expected one of {sorted(FUSIONS)} or a dotted class path"
        )
    return import_class(class_path, nn.Module, allowed_modules(allowed), "fusion")


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
    spec: str | Mapping[str, Any],
    dims: FusionDims,
    hidden: int,
    dropout: float,
    allowed: Sequence[str] = (),
) -> nn.Module:
    """The fusion module a YAML entry names, built for these tower widths."""
    class_path, init_args = fusion_spec(spec)
    return fusion_class(class_path, allowed)(dims, hidden, dropout, **init_args)
