"""The evasions sellers type to slip a word past a filter, as seeded text transforms.

One module for both users: training-time augmentation (data/augment.py) and the perturbation
benchmark (scripts/bench_evasion.py), so the model is trained on exactly the forms it is
measured on. Each evasion is `fn(text, rng) -> text` and draws only from the `random.Random`
it is given; `rate` is the share of eligible words (or character gaps) it touches, at least
one eligible word when there is any.

| name               | what it does                                     | undone by (textnorm)   |
|--------------------|--------------------------------------------------|------------------------|
| katakana_separators| グッチ → グ・ッ・チ / グ.ッ.チ / グ★ッ★チ (3+ letters) | separators, when the word stands alone or before hiragana |
| zero_width         | ZWSP / ZWJ / word joiner / BOM between characters| invisible              |
| hiragana           | グッチ → ぐっち                                  | kana                   |
| homoglyphs         | ー → 一 / －, ロ → 口, エ → 工, O → 0, C → С (Cyrillic) | homoglyphs      |
| fullwidth_spaced   | GUCCI → Ｇ Ｕ Ｃ Ｃ Ｉ (Latin words of 3+ letters)  | NFKC + separators      |
| halfwidth          | グッチ → ｸﾞｯﾁ                                      | NFKC (always on)       |
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import jaconv

_KATA_WORD = re.compile("[\u30a1-\u30fa\u30fc]{3,}")
_LATIN_WORD = re.compile("[A-Za-z]{3,}")
_SEPARATORS = ("・", ".", "･", "★", "☆", "♪", "-", "_", " ", "/", "✨")
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_KANA_GLYPH = {"ー": ("一", "－", "—"), "ロ": ("口",), "エ": ("工",), "カ": ("力",), "タ": ("夕",),
               "ト": ("卜",)}  # fmt: skip
_LATIN_GLYPH = {"O": ("0", "О"), "o": ("о", "0"), "C": ("С",), "c": ("с",), "A": ("А",),
                "a": ("а",), "E": ("Е",), "e": ("е",), "P": ("Р",), "p": ("р",), "I": ("І",),
                "H": ("Н",), "K": ("К",), "M": ("М",), "T": ("Т",), "X": ("Х",)}  # fmt: skip


def _some(rng: random.Random, matches: list[re.Match], rate: float) -> set[int]:
    """Indices of the matches to change: each with probability `rate`, at least one."""
    if not matches:
        return set()
    chosen = {i for i in range(len(matches)) if rng.random() < rate}
    return chosen or {rng.randrange(len(matches))}


def _per_word(pattern: re.Pattern, change: Callable[[str, random.Random], str]):
    def evade(text: str, rng: random.Random, rate: float = 0.5) -> str:
        matches = list(pattern.finditer(text))
        chosen = _some(rng, matches, rate)
        out, last = [], 0
        for i, m in enumerate(matches):
            out.append(text[last : m.start()])
            out.append(change(m.group(0), rng) if i in chosen else m.group(0))
            last = m.end()
        return "".join(out) + text[last:]

    return evade


def _separate(word: str, rng: random.Random) -> str:
    return rng.choice(_SEPARATORS).join(word)


def _hiragana(word: str, rng: random.Random) -> str:
    return jaconv.kata2hira(word)


def _kana_glyphs(word: str, rng: random.Random) -> str:
    # position 0 keeps its letter: a word never starts with ー, and 口 at a word start is ambiguous
    return word[0] + "".join(
        rng.choice(_KANA_GLYPH[c]) if c in _KANA_GLYPH else c for c in word[1:]
    )


def _latin_glyphs(word: str, rng: random.Random) -> str:
    out = [rng.choice(_LATIN_GLYPH[c]) if c in _LATIN_GLYPH and rng.random() < 0.5 else c
           for c in word]  # fmt: skip
    if out == list(word):  # at least one look-alike where the word has a candidate
        i = next((k for k, c in enumerate(word) if c in _LATIN_GLYPH), None)
        if i is not None:
            out[i] = rng.choice(_LATIN_GLYPH[word[i]])
    for i, c in enumerate(out):  # a digit 0 only between two letters (L0UIS, not 0LD): the
        inner = 0 < i < len(out) - 1 and out[i - 1].isalpha() and out[i + 1].isalpha()
        if c == "0" and not inner:  # form sellers use, and the one textnorm reads back
            out[i] = word[i]
    if all(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" for c in out):
        out[0] = word[0]  # a word with no Latin letter left reads as Cyrillic, not as a disguise
    return "".join(out)


def _fullwidth_spaced(word: str, rng: random.Random) -> str:
    return rng.choice((" ", "\u3000")).join(jaconv.h2z(word, kana=False, ascii=True, digit=True))


def _halfwidth(word: str, rng: random.Random) -> str:
    return jaconv.z2h(word, kana=True, ascii=False, digit=False)


katakana_separators = _per_word(_KATA_WORD, _separate)
hiragana = _per_word(_KATA_WORD, _hiragana)
fullwidth_spaced = _per_word(_LATIN_WORD, _fullwidth_spaced)
halfwidth = _per_word(re.compile("[\u30a1-\u30fa\u30fc]+"), _halfwidth)
_kana_homoglyphs = _per_word(
    re.compile("[\u30a1-\u30fa\u30fc]*[ーロエカタト][\u30a1-\u30fa\u30fc]*"), _kana_glyphs
)
_latin_homoglyphs = _per_word(_LATIN_WORD, _latin_glyphs)


def homoglyphs(text: str, rng: random.Random, rate: float = 0.5) -> str:
    """Look-alikes in katakana words (ー → 一, ロ → 口, ...) and in Latin words (O → 0, C → С)."""
    return _latin_homoglyphs(_kana_homoglyphs(text, rng, rate), rng, rate)


def zero_width(text: str, rng: random.Random, rate: float = 0.5) -> str:
    """An invisible character in `rate` of the gaps between two non-space characters."""
    out = []
    for i, c in enumerate(text):
        out.append(c)
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt and not c.isspace() and not nxt.isspace() and rng.random() < rate:
            out.append(rng.choice(_ZERO_WIDTH))
    return "".join(out)


EVASIONS: dict[str, Callable[..., str]] = {
    "katakana_separators": katakana_separators,
    "zero_width": zero_width,
    "hiragana": hiragana,
    "homoglyphs": homoglyphs,
    "fullwidth_spaced": fullwidth_spaced,
    "halfwidth": halfwidth,
}


def evade(text: str, kind: str, rng: random.Random, rate: float = 0.5) -> str:
    """`text` with the evasion `kind` applied (KeyError-free: ValueError naming the kind)."""
    if kind not in EVASIONS:
        raise ValueError(f"unknown evasion {kind!r} (known: {', '.join(EVASIONS)})")
    return EVASIONS[kind](text, rng, rate)
