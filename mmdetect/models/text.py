"""Text tower: any Hugging Face encoder (`AutoModel`) over token ids, BERT from scratch by default.

`pretrained` names a hub model (from the local cache when offline) or a directory written by
`save_pretrained`: BERT, DeBERTa-v2, RoBERTa, ... Only the encoder is loaded, never a task head;
its pooler too is left out when the architecture allows. The weights loaded from `pretrained`
are exactly those of `TextTower.encoder`; the attention pooling is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel

POOLINGS = ("cls", "mean", "attention")


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
    pooling: str = "cls"  # "cls" (first token) | "mean" | "attention" (learned, masked)
    enabled: bool = True
    kind: str = "bert"  # "bert" | "wordvec" (bag of word vectors + MLP, models/wordvec.py)
    embedding_dim: int | None = None  # wordvec only: vector size (None: hidden_size)
    # Word vectors for the embedding rows of whole-word tokens, applied when fit starts from
    # scratch: {source: ja_ginza | FILE, mode: pca | random | native, seed: 0} (data/vectors.py)
    init_vectors: dict[str, Any] | None = None


def load_encoder(name_or_dir: str) -> nn.Module:
    """AutoModel without the pooler head when the architecture allows it.

    Under a meta default device (shapes only, e.g. checking a checkpoint before loading it)
    the architecture is built from its config: there are no weights to load into.
    """
    if torch.empty(0).device.type == "meta":
        config = AutoConfig.from_pretrained(name_or_dir)
        build = lambda **kw: AutoModel.from_config(config, **kw)  # noqa: E731
    else:
        build = lambda **kw: AutoModel.from_pretrained(name_or_dir, **kw)  # noqa: E731
    try:
        return build(add_pooling_layer=False)
    except TypeError as exc:  # DeBERTa, T5 encoders... have no pooler argument
        if "add_pooling_layer" not in str(exc):
            raise
        return build()


def build_text_tower(cfg: TextConfig) -> nn.Module:
    """The text tower `cfg.kind` names: TextTower (any HF encoder) or WordVecTower."""
    if cfg.kind == "wordvec":
        from mmdetect.models.wordvec import WordVecTower

        if cfg.pretrained:
            raise ValueError("text kind wordvec has no pretrained encoder; unset pretrained")
        dim = cfg.embedding_dim or cfg.hidden_size
        return WordVecTower(cfg.vocab_size, dim, cfg.hidden_size, dropout=0.1)
    if cfg.kind != "bert":
        raise ValueError(f"text kind must be 'bert' or 'wordvec', got {cfg.kind!r}")
    return TextTower(cfg)


class AttentionPooling(nn.Module):
    """A learned score per token, softmax over the real tokens, weighted sum of token states."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(hidden).squeeze(-1)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)
        return (hidden * weights).sum(1)


class TextTower(nn.Module):
    """An encoder over [B, L] ids -> (pooled [B, D], token states [B, L, D], mask [B, L] bool).

    The default attention implementation (sdpa in transformers 5) traces correctly: under
    torch.jit.trace the padding mask is always materialised, never skipped.
    """

    def __init__(self, cfg: TextConfig):
        super().__init__()
        if cfg.pooling not in POOLINGS:
            raise ValueError(f"text pooling must be one of {list(POOLINGS)}, got {cfg.pooling!r}")
        self.pooling = cfg.pooling
        if cfg.pretrained:
            self.encoder = load_encoder(cfg.pretrained)
            if getattr(self.encoder.config, "is_encoder_decoder", False):
                raise ValueError(
                    f"text encoder {cfg.pretrained} is an encoder-decoder "
                    f"({self.encoder.config.model_type}); use an encoder-only model"
                )
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
        max_pos = getattr(self.encoder.config, "max_position_embeddings", None)
        if max_pos is not None and cfg.max_length > max_pos:
            raise ValueError(f"max_length {cfg.max_length} > model's {max_pos} positions")
        self.out_dim: int = self.encoder.config.hidden_size
        self.attention = AttentionPooling(self.out_dim) if cfg.pooling == "attention" else None

    @property
    def vocab_rows(self) -> int:
        """Embedding rows of the encoder: every token id must be below this."""
        return self.encoder.get_input_embeddings().num_embeddings

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        if self.attention is not None:
            return self.attention(hidden, mask), hidden, mask
        if self.pooling == "cls":
            return hidden[:, 0], hidden, mask
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0), hidden, mask
