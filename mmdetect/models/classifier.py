"""MultimodalClassifier, pure torch: text tower -> image tower -> tabular -> fusion -> head.

Inputs of one batch (the collate function and the server both build exactly these):
  input_ids [B, L] long, attention_mask [B, L] long   from text.encode_batch + text.pad_batch
  images [B, K, 3, H, W] float, image_mask [B, K] bool  K >= 1 is safest for traced graphs
  price [B] float (data.dataset.price_features), price_mask [B] bool, category_id [B] long
Output: logits [B, num_labels] (multi-label: apply a sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmdetect.models.fusion import Encoded, FusionDims, build_fusion
from mmdetect.models.image import ImageConfig, ImagePreprocess, ImageTower
from mmdetect.models.text import TextConfig, build_text_tower

# forward()'s argument order; the Lightning shell, export and the server all read it from here.
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "images",
    "image_mask",
    "price",
    "price_mask",
    "category_id",
)


@dataclass
class ModelConfig:
    """The whole classifier. Category ids >= num_categories (or < 0) share one unknown bucket."""

    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    num_labels: int = 7
    num_categories: int = 10
    category_dim: int = 16
    # "concat" | "gated" | "cross_attention" (short names), or {class_path: ..., init_args: {...}}
    fusion: str | Mapping[str, Any] = "concat"
    hidden: int = 128
    dropout: float = 0.1
    modality_dropout: float = 0.0  # training only: per-sample chance to drop text / photos
    aux_heads: bool = True  # unimodal heads for an auxiliary loss (built only with both towers)


class TabularEncoder(nn.Module):
    """Price (value and presence flag) and category embedding -> [B, 2 + category_dim]."""

    def __init__(self, num_categories: int, category_dim: int):
        super().__init__()
        self.num_categories = num_categories
        self.category = nn.Embedding(num_categories + 1, category_dim)
        self.out_dim = 2 + category_dim

    def forward(
        self, price: torch.Tensor, price_mask: torch.Tensor, category_id: torch.Tensor
    ) -> torch.Tensor:
        known = (category_id >= 0) & (category_id < self.num_categories)
        category_id = torch.where(
            known, category_id, torch.full_like(category_id, self.num_categories)
        )
        value = torch.where(price_mask, price, torch.zeros_like(price))
        price_part = torch.stack([value, price_mask.to(price.dtype)], dim=-1)
        return torch.cat([price_part, self.category(category_id).to(price.dtype)], dim=-1)


class MultimodalClassifier(nn.Module):
    """Multi-label classifier over a listing's text, photos, price and category.

    A disabled tower (cfg.text.enabled / cfg.image.enabled False) is not built and its inputs
    are ignored, which gives the text-only and image-only ablations with the same signature.
    `preprocess` is what photos must go through before `images` (the backbone's own; ImageNet
    values at cfg.image.image_size without an image tower, whose inputs are then ignored).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dims: list[int] = []
        self.text = build_text_tower(cfg.text) if cfg.text.enabled else None
        if self.text is not None:
            self.missing_text = nn.Parameter(torch.randn(self.text.out_dim) * 0.02)
            dims.append(self.text.out_dim)
        self.image = ImageTower(cfg.image) if cfg.image.enabled else None
        if self.image is not None:
            dims.append(self.image.out_dim)
        self.preprocess: ImagePreprocess = (
            self.image.preprocess
            if self.image is not None
            else ImagePreprocess(cfg.image.image_size or ImagePreprocess.image_size)
        )
        self.tabular = TabularEncoder(cfg.num_categories, cfg.category_dim)
        dims.append(self.tabular.out_dim)
        self.fusion_dims = FusionDims(
            pooled=tuple(dims),
            text=self.text.out_dim if self.text is not None else None,
            photos=self.image.out_dim if self.image is not None else None,
        )
        self.fusion = build_fusion(cfg.fusion, self.fusion_dims, cfg.hidden, cfg.dropout)
        self.head = nn.Linear(cfg.hidden, cfg.num_labels)
        both = self.text is not None and self.image is not None
        self.aux = (
            nn.ModuleList(nn.Linear(d, cfg.num_labels) for d in dims[:2])
            if cfg.aux_heads and both
            else None
        )

    def _modality_drops(self, image_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (drop_text, drop_photos) bool [B]; all False outside training.

        Each is drawn with probability p; when both are drawn a fair coin keeps one. Text is
        never dropped for a listing without photos, so no sample loses all its content.
        """
        b = image_mask.shape[0]
        none = torch.zeros(b, dtype=torch.bool, device=image_mask.device)
        p = self.cfg.modality_dropout
        if not (self.training and p > 0 and self.text is not None and self.image is not None):
            return none, none
        drop_text = torch.rand(b, device=image_mask.device) < p
        drop_photos = torch.rand(b, device=image_mask.device) < p
        keep_text = torch.rand(b, device=image_mask.device) < 0.5
        both = drop_text & drop_photos
        drop_text = drop_text & ~(both & keep_text) & image_mask.any(dim=1)
        drop_photos = drop_photos & ~(both & ~keep_text)
        return drop_text, drop_photos

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: torch.Tensor,
        image_mask: torch.Tensor,
        price: torch.Tensor,
        price_mask: torch.Tensor,
        category_id: torch.Tensor,
    ) -> tuple[Encoded, list[torch.Tensor]]:
        """(inputs of the fusion, after modality dropout; raw pooled tower outputs, before it).

        A dropped modality gets its learned missing embedding as pooled vector and an
        all-False sequence mask, so sequence-level fusions ignore it too.
        """
        drop_text, drop_photos = self._modality_drops(image_mask)
        pooled: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []
        tokens = token_mask = photos = photo_mask = None
        if self.text is not None:
            text, tokens, token_mask = self.text(input_ids, attention_mask)
            missing = self.missing_text.to(text.dtype).expand_as(text)
            # torch.where keeps missing_text in the graph (zero grad when unused: DDP-friendly).
            pooled.append(torch.where(drop_text.unsqueeze(-1), missing, text))
            token_mask = token_mask & ~drop_text.unsqueeze(-1)
            raw.append(text)
        if self.image is not None:
            pooled_photos, photos, photo_mask = self.image(images, image_mask)
            missing = self.image.missing.to(pooled_photos.dtype).expand_as(pooled_photos)
            pooled.append(torch.where(drop_photos.unsqueeze(-1), missing, pooled_photos))
            photo_mask = photo_mask & ~drop_photos.unsqueeze(-1)
            raw.append(pooled_photos)
        pooled.append(self.tabular(price, price_mask, category_id))
        return Encoded(pooled, tokens, token_mask, photos, photo_mask), raw

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: torch.Tensor,
        image_mask: torch.Tensor,
        price: torch.Tensor,
        price_mask: torch.Tensor,
        category_id: torch.Tensor,
    ) -> torch.Tensor:
        enc, _ = self.encode(
            input_ids, attention_mask, images, image_mask, price, price_mask, category_id
        )
        return self.head(self.fusion(enc))

    def forward_with_aux(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Fused logits plus [text, image] logits of the unimodal heads (training only).

        Jointly trained towers compete: the from-scratch CNN fits the training photos fast and
        the fused head then under-uses the text. A loss on each tower's own head makes both
        learn as they would alone (the exported model never runs these heads).
        """
        enc, raw = self.encode(*inputs)
        logits = self.head(self.fusion(enc))
        if self.aux is None:
            return logits, []
        return logits, [head(x) for head, x in zip(self.aux, raw, strict=True)]
