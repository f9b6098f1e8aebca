"""Binding a tokenizer to the text encoder it feeds, at fit and warm start (issue #27).

A pretrained encoder directory saved with its own tokenizer files learned its embeddings on
that vocabulary: another tokenizer (e.g. a 286-token `mmdetect vocab` one) would index rows
that mean other tokens. It is refused unless the config says `text.resize_embeddings: true`,
which re-initialises the word embeddings (resized to the new vocabulary) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmdetect.data.tokenize import load_tokenizer
from mmdetect.data.vocab import VocabularyError
from mmdetect.data.vocab_fingerprint import describe

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")


def encoder_tokenizer_dir(pretrained: str | None) -> Path | None:
    """The encoder's directory when it holds tokenizer files of its own, else None."""
    if not pretrained or not Path(pretrained).is_dir():
        return None
    root = Path(pretrained)
    return root if any((root / f).is_file() for f in TOKENIZER_FILES) else None


def reinit_word_embeddings(encoder: nn.Module, size: int) -> None:
    """Word embeddings resized to `size` rows, all re-initialised (the old rows meant other
    tokens); position and type embeddings are kept."""
    encoder.resize_token_embeddings(size)
    emb = encoder.get_input_embeddings()
    std = getattr(encoder.config, "initializer_range", 0.02)
    with torch.no_grad():
        nn.init.normal_(emb.weight, mean=0.0, std=std)
        pad = getattr(encoder.config, "pad_token_id", None)
        if pad is not None and 0 <= pad < size:
            emb.weight[pad].zero_()


def bind_vocabulary(tok, tokenizer: str, pretrained: str, encoder: nn.Module, resize: bool) -> None:
    """VocabularyError when `tok` is not the encoder's own tokenizer, unless `resize` (then the
    word embeddings are re-initialised for `tok`). Nothing to compare: one info line."""
    own_dir = encoder_tokenizer_dir(pretrained)
    if own_dir is None:
        log.info("text encoder %s has no tokenizer files: vocabulary fingerprint not compared",
                 pretrained)  # fmt: skip
        return
    if Path(tokenizer).resolve() == own_dir.resolve():
        return
    mine, own = describe(tok), describe(load_tokenizer(str(own_dir)))
    if mine["sha256"] == own["sha256"]:
        return
    if not resize:
        raise VocabularyError(
            f"tokenizer {tokenizer} ({mine['size']} tokens, vocab sha256 {mine['sha256'][:12]}) "
            f"is not the vocabulary text encoder {pretrained} was trained with ({own['size']} "
            f"tokens, sha256 {own['sha256'][:12]}): leave data.tokenizer unset to use the "
            "encoder's own, or set text.resize_embeddings: true to re-initialise its embeddings"
        )
    log.warning("text.resize_embeddings: word embeddings of %s re-initialised for %s (%d tokens)",
                pretrained, tokenizer, mine["size"])  # fmt: skip
    reinit_word_embeddings(encoder, len(tok))


def embedding_key(net: nn.Module) -> str | None:
    """The state-dict key of the text encoder's word embeddings inside `net`, if any."""
    text = getattr(net, "text", None)
    if text is None:
        return None
    emb = text.encoder.get_input_embeddings()
    for name, module in net.named_modules():
        if module is emb:
            return f"{name}.weight"
    return None


def without_embeddings(state: Mapping[str, Any], net: nn.Module) -> dict[str, Any]:
    """`state` with the word embeddings replaced by `net`'s own (re-initialised) rows."""
    key = embedding_key(net)
    return dict(state) if key is None else {**state, key: net.state_dict()[key]}
