"""Text tower: a Hugging Face encoder (BERT from scratch by default) over token ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, BertConfig, BertModel


@dataclass
class TextConfig:
    """Text tower settings. `vocab_size` is for from-scratch models; callers set len(tokenizer)."""

    pretrained: str | None = None  # HF name or directory; None = BERT from scratch
    vocab_size: int = 8000
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    max_length: int = 128
    pooling: str = "cls"  # "cls" | "mean"
    enabled: bool = True


def _load_pretrained(name_or_dir: str) -> nn.Module:
    """AutoModel without the pooler head when the architecture allows it."""
    try:
        return AutoModel.from_pretrained(name_or_dir, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_pretrained(name_or_dir)


class TextTower(nn.Module):
    """A BERT encoder over [B, L] ids -> (pooled [B, D], token states [B, L, D], mask [B, L] bool).

    The default attention implementation (sdpa in transformers 5) traces correctly: under
    torch.jit.trace the padding mask is always materialised, never skipped.
    """

    def __init__(self, cfg: TextConfig):
        super().__init__()
        if cfg.pooling not in ("cls", "mean"):
            raise ValueError(f"text pooling must be 'cls' or 'mean', got {cfg.pooling!r}")
        self.pooling = cfg.pooling
        if cfg.pretrained:
            self.encoder = _load_pretrained(cfg.pretrained)
        else:
            bert_cfg = BertConfig(
                vocab_size=cfg.vocab_size,
                hidden_size=cfg.hidden_size,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                intermediate_size=cfg.intermediate_size,
                max_position_embeddings=cfg.max_length,
            )
            self.encoder = BertModel(bert_cfg, add_pooling_layer=False)
        max_pos = getattr(self.encoder.config, "max_position_embeddings", cfg.max_length)
        if cfg.max_length > max_pos:
            raise ValueError(f"max_length {cfg.max_length} > model's {max_pos} positions")
        self.out_dim: int = self.encoder.config.hidden_size

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        if self.pooling == "cls":
            return hidden[:, 0], hidden, mask
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0), hidden, mask
