"""Pretraining inputs: whole-word masking over MeCab words, and the corpus reader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmdetect.data.tokenize import encode_batch, load_tokenizer
from mmdetect.pretrain.corpus import CorpusError, read_texts
from mmdetect.pretrain.masking import WholeWordMaskCollator, word_offsets
from tests.conftest import JA_LISTINGS

REPO = Path(__file__).resolve().parents[2]


def test_word_offsets_join_pieces_and_separate_words():
    tokens = ["[CLS]", "偽", "##物", "##です", "本", "[SEP]"]
    assert word_offsets(tokens) == [(0, 1), (2, 3), (3, 4), (4, 5), (6, 7), (8, 9)]


def words_of(tokens: list[str], special: set[str]) -> list[list[int]]:
    """Positions of each word: a ## piece continues the word before it."""
    words: list[list[int]] = []
    for i, t in enumerate(tokens):
        if t in special:
            continue
        if t.startswith("##") and words:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def test_whole_words_are_masked_together_and_specials_never():
    tok = load_tokenizer(str(REPO / "data_samples" / "tokenizer"))
    seqs = encode_batch(tok, JA_LISTINGS * 20, 64)
    torch.manual_seed(0)
    batch = WholeWordMaskCollator(tok, mlm_probability=0.4)(seqs)
    special = set(tok.all_special_tokens)
    n_words = n_masked = 0
    for i, seq in enumerate(seqs):
        tokens = tok.convert_ids_to_tokens(seq)
        labels, inputs = batch["labels"][i], batch["input_ids"][i]
        assert batch["attention_mask"][i].sum() == len(seq)
        assert (labels[len(seq) :] == -100).all()  # padding is never a target
        for w in words_of(tokens, special):
            masked = [int(labels[p]) != -100 for p in w]
            assert all(masked) or not any(masked), tokens  # a whole word or nothing
            n_words += 1
            if masked[0]:
                n_masked += 1
                assert [int(labels[p]) for p in w] == [seq[p] for p in w]
                assert all(int(inputs[p]) == tok.mask_token_id for p in w)
        for p, t in enumerate(tokens):
            if t in special:
                assert int(labels[p]) == -100 and int(inputs[p]) == seq[p]
    assert any(len(w) > 1 for s in seqs for w in words_of(tok.convert_ids_to_tokens(s), special))
    assert 0.3 < n_masked / n_words < 0.5


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_corpus_reads_titles_and_descriptions_and_counts_the_rest(tmp_path, caplog):
    path = write_jsonl(tmp_path / "c.jsonl", [{"title": "偽物", "description": "です"},
                       {"title": "", "description": "説明だけ"}, {"title": 3}, [1, 2]])  # fmt: skip
    with path.open("a", encoding="utf-8") as fh:
        fh.write("{broken\n")
    assert read_texts(path) == [("偽物", "です"), ("", "説明だけ")]
    assert "skipped 3 rows" in caplog.text


@pytest.mark.parametrize("rows", [[], [{"title": "", "description": " "}, {"id": 1}]])
def test_corpus_without_text_is_an_error_naming_the_file(tmp_path, rows):
    path = write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(CorpusError, match=f"^{path}: no usable text"):
        read_texts(path)
    with pytest.raises(CorpusError, match="no such corpus file"):
        read_texts(tmp_path / "missing.jsonl")
