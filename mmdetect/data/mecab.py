"""MeCab (fugashi, unidic-lite) segmentation shared by the encoder (mmdetect.data.tokenize) and
the vocabulary builder (mmdetect.data.vocab): a per-thread tagger cache, the v3-style tokenizer.
"""

from __future__ import annotations

import threading
from pathlib import Path

from transformers import BertJapaneseTokenizer
from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

MECAB_KWARGS = {"mecab_dic": "unidic_lite"}


def _v3_style_tokenizer(vocab_file: Path) -> BertJapaneseTokenizer:
    """Cased MeCab (unidic_lite) + WordPiece, as cl-tohoku/bert-base-japanese-v3."""
    return BertJapaneseTokenizer(
        str(vocab_file),
        do_lower_case=False,
        word_tokenizer_type="mecab",
        subword_tokenizer_type="wordpiece",
        mecab_kwargs=dict(MECAB_KWARGS),
    )


_THREAD = threading.local()


def _wakati_tagger(mecab_dic: str | None, mecab_option: str):
    """A fugashi tagger printing space-separated surfaces (`-Owakati`), one per thread
    (MeCab taggers are neither picklable nor safe to share between threads)."""
    taggers = _THREAD.__dict__.setdefault("taggers", {})
    key = (mecab_dic, mecab_option)
    if key not in taggers:
        option = f"-Owakati {mecab_option}".strip()
        taggers[key] = MecabTokenizer(mecab_dic=mecab_dic, mecab_option=option).mecab
    return taggers[key]


def _mecab_words(text: str, mecab_kwargs: dict | None) -> list[str]:
    """MeCab surfaces of an NFKC-normalised text, exactly as `MecabTokenizer.tokenize` gives them."""
    kw = mecab_kwargs or {}
    tagger = _wakati_tagger(kw.get("mecab_dic", "unidic_lite"), kw.get("mecab_option") or "")
    return tagger.parse(text).split()
