"""Building a WordPiece vocabulary from texts (`mmdetect vocab`) and checking a tokenizer's
vocabulary (VocabularyError); encoding stays in mmdetect.data.tokenize.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from mmdetect.data.mecab import MECAB_KWARGS, _mecab_words, _v3_style_tokenizer
from mmdetect.data.tokenize import clean_text, nfkc

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


ASCII_KEPT = string.ascii_letters + string.digits


class VocabularyError(ValueError):
    """A tokenizer and a text encoder that do not fit together."""


def check_vocabulary(tokenizer, tokenizer_path: str, rows: int, encoder_path: str) -> None:
    """VocabularyError when the tokenizer can emit ids the encoder has no embedding row for.

    An encoder may have more rows than the tokenizer has tokens (vocabularies are often padded
    to a multiple of 64), never fewer.
    """
    size = len(tokenizer)
    ids = {n: getattr(tokenizer, f"{n}_token_id", None) for n in ("pad", "cls", "sep", "unk")}
    bad = {n: i for n, i in ids.items() if i is not None and not 0 <= i < rows}
    if size > rows or bad:
        what = f"special ids {bad} out of range" if bad else "more tokens than embedding rows"
        raise VocabularyError(
            f"tokenizer {tokenizer_path} ({size} tokens) does not match text encoder "
            f"{encoder_path} ({rows} embedding rows): {what}; use the encoder's own tokenizer "
            "(leave data.tokenizer unset) or one built for it"
        )


def build_vocab(
    texts: Iterable[str], size: int, out_dir: Path, extra_words: Sequence[str] = ()
) -> Path:
    """Train a WordPiece vocab on MeCab words and save a BertJapaneseTokenizer directory.

    The vocab starts with SPECIAL_TOKENS, then every ASCII letter and digit with and without the
    `##` prefix (so they never become [UNK]), then the learned pieces, `size` tokens in all.
    Only the `size // 4` most frequent characters enter the alphabet (with their `##` forms, up
    to half the vocab), leaving room for merges; rarer characters become [UNK].
    `extra_words` (e.g. lexicon words, data/vectors.py) are appended after them when new.
    """
    n_fixed = len(SPECIAL_TOKENS) + 2 * len(ASCII_KEPT)
    if size <= n_fixed:
        raise ValueError(f"vocab size must be > {n_fixed} (special tokens + ASCII), got {size}")
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordPieceTrainer(
        vocab_size=size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=list(ASCII_KEPT),
        limit_alphabet=size // 4,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    words = (" ".join(_mecab_words(nfkc(clean_text(t)), MECAB_KWARGS)) for t in texts)
    wordpiece.train_from_iterator(words, trainer=trainer)

    learned = sorted(wordpiece.get_vocab().items(), key=lambda kv: kv[1])
    fixed = [*SPECIAL_TOKENS, *ASCII_KEPT, *(f"##{c}" for c in ASCII_KEPT)]
    seen = set(fixed)
    vocab = (fixed + [tok for tok, _ in learned if tok not in seen])[:size]
    known = set(vocab)
    vocab += list(dict.fromkeys(w for w in extra_words if w not in known))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _v3_style_tokenizer(out_dir / "vocab.txt").save_pretrained(str(out_dir))
    return out_dir
