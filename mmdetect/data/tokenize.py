"""Tokenization: any Hugging Face tokenizer, the Japanese default (MeCab + WordPiece), listing encoding
(vocabulary building: mmdetect.data.vocab; MeCab segmentation: mmdetect.data.mecab).

`load_tokenizer` goes through `AutoTokenizer` (BERT WordPiece, SentencePiece DeBERTa-v2 / RoBERTa
/ T5, any fast tokenizer); a directory holding only `vocab.txt` is the cl-tohoku v3 default.
MeCab + WordPiece tokenizers take a fast per-word cached path in `encode_batch`; every other
tokenizer is called in batches, and the pair is framed by its own special tokens.
Tokenization runs once per snapshot in the main process and is cached by the data pipeline.
The fugashi tagger is not picklable: it is kept in a per-thread cache (`mecab._wakati_tagger`),
never on an object, so tokenizers and datasets can be sent to DataLoader workers
(`BertJapaneseTokenizer` itself drops and rebuilds its tagger when pickled).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertJapaneseTokenizer

from mmdetect.common.safe_pretrained import check_tokenizer_dir
from mmdetect.data.mecab import MECAB_KWARGS, _mecab_words, _v3_style_tokenizer, _wakati_tagger

DEFAULT_TOKENIZER = "data_samples/tokenizer"  # when neither data.tokenizer nor a pretrained encoder

# A text is first cut to CHARS_PER_TOKEN * limit + CUT_MARGIN_CHARS characters; the cut is used
# only if it still yields `limit + CUT_MARGIN_TOKENS` tokens, so the kept tokens lie far enough
# before the cut for MeCab's segmentation of them not to change. Otherwise the whole text is used.
CHARS_PER_TOKEN = 3
CUT_MARGIN_CHARS = 32
CUT_MARGIN_TOKENS = 16


# C0/C1 control characters other than tab and newlines: MeCab reads its input as a C string and
# stops at NUL (the rest of the text would vanish silently), and none of them carries meaning.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates cannot be encoded for MeCab


def clean_text(text: str) -> str:
    """Control characters to spaces and lone surrogates to U+FFFD, so any str can be tokenized.

    The reader rejects surrogates already (docs/snapshot-format.md); this keeps every other
    caller (predict, the HTTP service) from crashing on them. Ordinary text is returned as is.
    """
    text = _CONTROL.sub(" ", text)
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def nfkc(text: str) -> str:
    """NFKC normalisation: full-width ASCII and half-width katakana to their usual forms."""
    return unicodedata.normalize("NFKC", text)


def load_tokenizer(name_or_dir: str):
    """Any Hugging Face tokenizer, by hub name (from the local cache when offline) or directory.

    A directory holding `vocab.txt` and no tokenizer files gets the cl-tohoku/bert-base-japanese-v3
    settings (MeCab with unidic_lite, then WordPiece); otherwise `AutoTokenizer` reads its
    `tokenizer_config.json` / `tokenizer.json`. Remote code is never run and a directory may not
    choose MeCab options (safe_pretrained: UnsafePretrainedError naming file and key).
    """
    check_tokenizer_dir(name_or_dir)
    path = Path(name_or_dir)
    bare = not any((path / f).exists() for f in ("tokenizer_config.json", "tokenizer.json"))
    if path.is_dir() and bare and (path / "vocab.txt").is_file():
        return _v3_style_tokenizer(path / "vocab.txt")
    return AutoTokenizer.from_pretrained(name_or_dir, trust_remote_code=False)


def resolve_tokenizer(tokenizer: str | None, pretrained: str | None) -> str:
    """The tokenizer to use: the one named, else the pretrained encoder's own, else the default."""
    return tokenizer or pretrained or DEFAULT_TOKENIZER


def is_one_word(word: str) -> bool:
    """True when MeCab (our tokenizer's word splitter) keeps `word` as one word."""
    return _mecab_words(nfkc(word), MECAB_KWARGS) == [word]


@functools.lru_cache(maxsize=1 << 18)
def _word_ids(tokenizer: BertJapaneseTokenizer, word: str) -> tuple[int, ...]:
    """WordPiece ids of one MeCab word (cached: words repeat a lot across listings)."""
    keep_case = (tokenizer.never_split or []) + tokenizer.all_special_tokens
    if tokenizer.do_lower_case and word not in keep_case:
        word = word.lower()
    unk = tokenizer.vocab.get(tokenizer.unk_token)
    return tuple(tokenizer.vocab.get(p, unk) for p in tokenizer.subword_tokenizer.tokenize(word))


def _is_mecab_wordpiece(tokenizer) -> bool:
    return (
        isinstance(tokenizer, BertJapaneseTokenizer)
        and tokenizer.do_word_tokenize
        and tokenizer.word_tokenizer_type == "mecab"
        and tokenizer.do_subword_tokenize
        and tokenizer.subword_tokenizer_type == "wordpiece"
    )


def _ids_function(tokenizer) -> Callable[[str], list[int]]:
    """`token_ids` bound to one tokenizer, for many calls in one thread.

    The fast path looks the tagger and the special-token handling up once, and keeps a plain
    dict of word -> ids in front of the shared `_word_ids` cache for the life of the function
    (one `encode_batch` call): words repeat a lot across listings, and a dict lookup is cheaper
    than the LRU wrapper. Ids are those of `tokenizer.tokenize` (checked by scripts/bench.py).
    """
    if not _is_mecab_wordpiece(tokenizer):
        return lambda text: tokenizer.convert_tokens_to_ids(
            tokenizer.tokenize(text, split_special_tokens=True)
        )
    kw = tokenizer.mecab_kwargs or {}
    parse = _wakati_tagger(kw.get("mecab_dic", "unidic_lite"), kw.get("mecab_option") or "").parse
    words: dict[str, tuple[int, ...]] = {}

    def ids_of(text: str) -> list[int]:
        ids: list[int] = []
        for word in parse(text).split():
            pieces = words.get(word)
            if pieces is None:
                pieces = words[word] = _word_ids(tokenizer, word)
            ids += pieces
        return ids

    return ids_of


def token_ids(tokenizer, text: str) -> list[int]:
    """Ids of an already NFKC-normalised text, no special tokens.

    Same ids as `tokenizer.tokenize(text, split_special_tokens=True)`: a seller typing "[SEP]"
    gets ordinary pieces, not the special token. MeCab + WordPiece tokenizers take a faster path.
    """
    return _ids_function(tokenizer)(text)


def _first_ids(ids_of: Callable[[str], list[int]], text: str, limit: int) -> list[int]:
    """The first `limit` ids of `text`, tokenizing only a prefix when the text is long."""
    if limit <= 0 or not text:
        return []
    text = clean_text(text)
    budget = CHARS_PER_TOKEN * limit + CUT_MARGIN_CHARS
    if len(text) > budget:
        ids = ids_of(nfkc(text[:budget]))
        if len(ids) >= limit + CUT_MARGIN_TOKENS:
            return ids[:limit]
    return ids_of(nfkc(text))[:limit]


@functools.lru_cache(maxsize=16)
def pair_template(tokenizer) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(before the title, between, after the description): the special ids the tokenizer's own
    pair call puts around two texts, e.g. BERT `[CLS] a [SEP] b [SEP]`, RoBERTa
    `<s> a </s></s> b </s>`, T5 `a </s> b </s>`. ValueError if it frames a pair otherwise."""
    full = tokenizer("a", "b")["input_ids"]
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("a", "b"))
    special = set(tokenizer.all_special_ids)
    for i in range(len(full) - len(a) + 1):
        if full[i : i + len(a)] != a:
            continue
        for j in range(i + len(a), len(full) - len(b) + 1):
            if full[j : j + len(b)] == b:
                parts = (full[:i], full[i + len(a) : j], full[j + len(b) :])
                if all(t in special for part in parts for t in part):
                    return tuple(tuple(part) for part in parts)
    raise ValueError(
        f"{type(tokenizer).__name__} does not frame a pair as <specials> title <specials> "
        f"description <specials> (got {full} for 'a', 'b'); it cannot encode listings"
    )


def _batch_function(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """The tokenizer's own batch call, content ids only.

    A special token typed by a seller must not become structure: `split_special_tokens` stops
    the tokenizer matching it as an added token, but SentencePiece vocabularies converted to
    `tokenizers` still hold "[SEP]" / "</s>" as ordinary pieces; those ids become [UNK].
    """
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids) - {unk}

    def encode(texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        ids = tokenizer(
            texts, add_special_tokens=False, split_special_tokens=True,
            return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]  # fmt: skip
        if unk is None:
            return [[t for t in x if t not in special] for x in ids]
        return [[unk if t in special else t for t in x] for x in ids]

    return encode


def _first_ids_batch(encode, texts: Sequence[str], limits: Sequence[int]) -> list[list[int]]:
    """`_first_ids` over many texts, in at most two batch calls (prefix cuts, then the texts
    whose cut fell too close to the kept tokens)."""
    cleaned = [clean_text(t) if lim > 0 else "" for t, lim in zip(texts, limits, strict=True)]
    budgets = [CHARS_PER_TOKEN * lim + CUT_MARGIN_CHARS for lim in limits]
    cut = [len(t) > b for t, b in zip(cleaned, budgets, strict=True)]
    ids = encode([nfkc(t[:b] if c else t) for t, b, c in zip(cleaned, budgets, cut, strict=True)])
    redo = [i for i, c in enumerate(cut) if c and len(ids[i]) < limits[i] + CUT_MARGIN_TOKENS]
    for i, full in zip(redo, encode([nfkc(cleaned[i]) for i in redo]), strict=True):
        ids[i] = full
    return [x[: max(lim, 0)] for x, lim in zip(ids, limits, strict=True)]


def encode_listing(
    tokenizer, title: str, description: str, max_length: int, normalize: dict | None = None
) -> list[int]:
    """`[CLS] title [SEP] description [SEP]` (the tokenizer's own special tokens around the
    pair), NFKC-normalised, at most `max_length` ids.

    The description is truncated first; a title too long on its own is truncated too, and the
    special tokens are always kept (the description is then empty).
    """
    return encode_batch(tokenizer, [(title, description)], max_length, normalize)[0]


def encode_batch(
    tokenizer, pairs: Iterable[tuple[str, str]], max_length: int, normalize: dict | None = None
) -> list[list[int]]:
    """`encode_listing` over (title, description) pairs: MeCab + WordPiece tokenizers through the
    cached per-word path, any other through its own batch call. `normalize`: the evasion
    normalisation options (data/textnorm.py; None or all off: NFKC only, as before)."""
    pairs = list(pairs)
    if normalize:
        from mmdetect.data.textnorm import normalize_pairs

        pairs = normalize_pairs(pairs, normalize)
    head, middle, tail = pair_template(tokenizer)
    n_special = len(head) + len(middle) + len(tail)
    body = max_length - n_special
    if body < 1:
        raise ValueError(
            f"max_length must be >= {n_special + 1} ({n_special} special tokens + 1), "
            f"got {max_length}"
        )
    if _is_mecab_wordpiece(tokenizer):
        ids_of = _ids_function(tokenizer)
        titles = [_first_ids(ids_of, t, body) for t, _ in pairs]
        descs = [
            _first_ids(ids_of, d, body - len(t)) for (_, d), t in zip(pairs, titles, strict=True)
        ]
    else:
        encode = _batch_function(tokenizer)
        titles = _first_ids_batch(encode, [t for t, _ in pairs], [body] * len(pairs))
        descs = _first_ids_batch(encode, [d for _, d in pairs], [body - len(t) for t in titles])
    return [[*head, *t, *middle, *d, *tail] for t, d in zip(titles, descs, strict=True)]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists: (input_ids [B, L] long, attention_mask [B, L] long, 1 = real token)."""
    length = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
