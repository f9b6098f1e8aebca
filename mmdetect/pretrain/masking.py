"""Whole-word masking over MeCab words for our MeCab + WordPiece tokenizer.

transformers' DataCollatorForLanguageModeling(whole_word_mask=True) finds words from the
tokens' character offsets, which only fast tokenizers give; BertJapaneseTokenizer is a slow
one. Within a MeCab word every piece after the first carries WordPiece's `##` mark, so the word
boundaries are known from the ids alone: `word_offsets` writes offsets that are contiguous
inside a word and leave a gap between words, and HF's own masking does the rest (choose
words with `mlm_probability`, mask every piece of a chosen word; with whole words it always
writes [MASK], never a random token).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from transformers import DataCollatorForLanguageModeling


def word_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Fake character offsets: a `##` piece touches its predecessor, a new word starts after a
    gap, so HF's word finder groups exactly the pieces of each MeCab word."""
    out, pos = [], 0
    for i, token in enumerate(tokens):
        if i and not token.startswith("##"):
            pos += 1  # the gap that starts a new word
        out.append((pos, pos + 1))
        pos += 1
    return out


class WholeWordMaskCollator:
    """Lists of ids (special tokens included) -> padded MLM batch with whole-word masks."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15):
        with warnings.catch_warnings():  # "needs a fast tokenizer": we give offsets ourselves
            warnings.simplefilter("ignore")
            self.hf = DataCollatorForLanguageModeling(
                tokenizer, whole_word_mask=True, mlm_probability=mlm_probability,
                mask_replace_prob=1.0, random_replace_prob=0.0,
            )  # fmt: skip
        self.tokenizer = tokenizer
        self.special = set(tokenizer.all_special_ids)
        self.pad_id = tokenizer.pad_token_id

    def __call__(self, seqs: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        length = max(len(s) for s in seqs)
        n = len(seqs)
        ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, length), dtype=torch.long)
        special = torch.ones((n, length), dtype=torch.long)  # padding counts as special
        offsets = torch.zeros((n, length, 2), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.as_tensor(s)
            attention[i, : len(s)] = 1
            special[i, : len(s)] = torch.as_tensor([int(t in self.special) for t in s])
            tokens = self.tokenizer.convert_ids_to_tokens(list(s))
            offsets[i, : len(s)] = torch.as_tensor(word_offsets(tokens))
        inputs, labels = self.hf.torch_mask_tokens(ids, special, offsets)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}
