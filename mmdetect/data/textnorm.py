"""Evasion-robust text normalisation beyond NFKC, applied in the one tokenisation path that
training, export and serving share (`tokenize.encode_batch(..., normalize=...)`).

Sellers hide a word from a filter by typing it in a form NFKC leaves alone. What is safe to
undo is undone here, each step switched by one option (`data.normalize` in a training config,
stored in the checkpoint and in the bundle's preprocess.json):

* `invisible`   zero-width and other invisible format characters (ZWSP, ZWJ, word joiner, BOM,
                soft hyphen, variation selectors, Hangul fillers) are dropped;
* `separators`  a run of at least three single letters joined by one repeated separator
                of one script (グ・ッ・チ, グ.ッ.チ, G U C C I after NFKC, グ★ッ★チ) becomes the word; a
                piece of two or more letters is a word of its own, so ルイ・ヴィトン and ジョン・F・ケネディ stay as they are;
* `homoglyphs`  look-alikes in context: 一 - — ‐ − after a katakana → ー (not before a kanji, つ
                or ヶ: カード一枚, 一つ); the kanji 口 工 力 夕 卜 inside or at the start of a katakana
                word → ロ エ カ タ ト (口コミ, 入口 and 協力サイト are kept);
                0 between Latin letters → O (B00K, L0UIS) and O between digits → 0; Cyrillic / Greek capitals
                and small letters that look Latin, in a word holding a Latin letter → Latin;
* `kana`        hiragana → katakana (jaconv), so ぐっち and グッチ are one word. Off by default: it
                folds every particle too, and the vocabulary should be built with it on.

Every step is idempotent and the whole is NFKC-stable, so `encode_batch`'s own NFKC after it
changes nothing. Hand-written because no library we use does context rules like these.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

OPTIONS: tuple[str, ...] = ("invisible", "separators", "homoglyphs", "kana")
DEFAULT_NORMALIZE: dict[str, bool] = {
    "invisible": True,
    "separators": True,
    "homoglyphs": True,
    "kana": False,
}


class NormalizeConfigError(ValueError):
    """An unknown normalisation option, or a value that is not true/false."""


def check_options(options: Mapping[str, object] | None, where: str = "data.normalize") -> dict:
    """The options as {name: bool} with every name present (missing ones False); an unknown
    key or a non-bool value raises NormalizeConfigError naming `where` and the key."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise NormalizeConfigError(
            f"{where}: expected a mapping of {list(OPTIONS)}, got {options!r}"
        )
    for key, value in options.items():
        if key not in OPTIONS:
            raise NormalizeConfigError(
                f"{where}: unknown option {key!r} (known: {', '.join(OPTIONS)})"
            )
        if not isinstance(value, bool):
            raise NormalizeConfigError(f"{where}.{key}: must be true or false, got {value!r}")
    return {name: bool(options.get(name, False)) for name in OPTIONS}


# Format characters (Cf) are invisible by definition; add the invisible letters and selectors.
_INVISIBLE_EXTRA = "\u115f\u1160\u3164\uffa0\u034f\u17b4\u17b5"
_INVISIBLE = re.compile(
    "[" + _INVISIBLE_EXTRA + "\ufe00-\ufe0f\U000e0100-\U000e01ef\U000e0000-\U000e007f]"
)


# Python counts every format (Cf) character as non-printable; these others are common in
# listings and are not Cf, so a text with only them skips the per-character lookup.
_NOT_FORMAT = str.maketrans("", "", "\n\r\t\u3000\u00a0")


def drop_invisible(text: str) -> str:
    """Remove format (Cf) characters, variation selectors and invisible filler letters."""
    text = _INVISIBLE.sub("", text)
    if text.translate(_NOT_FORMAT).isprintable():  # a C scan: no Cf character in the text
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


# One separator: a space, a dot, a dash or a symbol / emoji between two letters (not the comma
# or 、: 赤、青、白 is a list).
_SEP = (
    r"[ \u3000・.\-_*/|~+=!?･·•♪☆★♡♥◆◇○●■□◎※→"
    r"\u2600-\u27bf\U0001f000-\U0001faff]"
)
# A run of one script: no letter of that script just before; single letters joined by the same
# separator at least twice (possessive: a run that fails is never joined in part); no letter of
# that script just after (Bluetoothスピーカー, グ・ッ・チ財布 and グ・ッ・チです end the run).
_SCRIPTS = ("A-Za-z\u00c0-\u024f", "\u30a1-\u30fa\u30fc", "\u3041-\u3096\u30fc", "\u3400-\u9fff")
_SPACED = [
    # (?=(?P<run>...))(?P=run): an atomic group on Python 3.10 (no possessive quantifiers)
    re.compile(
        rf"(?<![{s}])[{s}](?P<sep>{_SEP})[{s}](?=(?P<run>(?:(?P=sep)[{s}])+))(?P=run)(?![{s}])"
    )
    for s in _SCRIPTS
]


def join_separated(text: str) -> str:
    """グ・ッ・チ / G U C C I / グ★ッ★チ → グッチ / GUCCI / グッチ (see the module docstring)."""
    if len(text) < 5:
        return text
    for pattern in _SPACED:
        text = pattern.sub(lambda m: m.group(0).replace(m.group("sep"), ""), text)
    return text


_DASHES = frozenset("一-—―‐−─")
_KANJI_LOOKALIKE = {"口": "ロ", "工": "エ", "力": "カ", "夕": "タ", "卜": "ト"}
_KEEP_KANJI = ("口コミ",)  # a real word: a kanji look-alike before katakana
_NOT_AFTER_DASH = frozenset("つヶヵ")  # 一つ, 一ヶ月: the kanji one, whatever stands before
_LOOKALIKE = re.compile("[" + re.escape("".join(sorted(_DASHES | set(_KANJI_LOOKALIKE)))) + "]")


def _is_kata(c: str) -> bool:
    return "\u30a1" <= c <= "\u30fa" and c not in "ヶヵ" or c == "ー"


def _is_cjk(c: str) -> bool:
    return "\u3400" <= c <= "\u9fff"


def _fold_kana_lookalikes(text: str) -> str:
    """One pass left to right, each character judged by the already folded one before it and
    the raw one after it (コ一卜 → コート: the 卜 sees the ー the 一 became). Only dashes and
    kanji look-alikes ever change, so only they are visited (found by one regex scan)."""
    out = list(text)
    for m in _LOOKALIKE.finditer(text):
        i, c = m.start(), m.group(0)
        prev = out[i - 1] if i else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        kata_next = _is_kata(nxt) or nxt in _KANJI_LOOKALIKE
        if c in _DASHES and _is_kata(prev) and prev != "ー":
            # after a katakana a dash is the long vowel; 一 (one) not before a kanji, つ or ヶ
            numeral = _is_cjk(nxt) and nxt not in _KANJI_LOOKALIKE or nxt in _NOT_AFTER_DASH
            if c != "一" or not numeral:
                c = "ー"
        elif c in _KANJI_LOOKALIKE and not any(text.startswith(w, i) for w in _KEEP_KANJI):
            # inside a katakana word, or starting one outside a kanji compound (入口, 協力サイト)
            in_word = _is_kata(prev) or (kata_next and not _is_cjk(prev))
            c = _KANJI_LOOKALIKE[c] if in_word else c
        out[i] = c
    return "".join(out)


_ZERO_IN_LATIN = re.compile(r"(?<=[A-Za-z])0+(?=[A-Za-z])")
_O_IN_DIGITS = re.compile(r"(?<=\d)[Oo](?=\d)")
_CONFUSABLE = dict(
    zip(
        "АВЕКМНОРСТХІЈЅаеорсухіјѕΑΒΕΖΗΙΚΜΝΟΡΤΥΧοι",
        "ABEKMHOPCTXIJSaeopcyxijsABEZHIKMNOPTYXoi",
        strict=True,
    )
)
# Digits belong to the run: in A0А the Cyrillic А sits beside a Latin letter only through the 0.
_MIXED_WORD = re.compile(r"[A-Za-z0-9" + "".join(_CONFUSABLE) + r"]+")
_HAS_CONFUSABLE = re.compile("[" + "".join(_CONFUSABLE) + "]")


def fold_homoglyphs(text: str) -> str:
    """Look-alike characters to the ones their context calls for (module docstring)."""
    if _LOOKALIKE.search(text):
        text = _fold_kana_lookalikes(text)

    def latin(m: re.Match) -> str:
        word = m.group(0)
        if not re.search("[A-Za-z]", word):
            return word
        return "".join(_CONFUSABLE.get(c, c) for c in word)

    if _HAS_CONFUSABLE.search(text):  # Cyrillic first: L0UІS has Latin on both sides of 0
        text = _MIXED_WORD.sub(latin, text)
    text = _ZERO_IN_LATIN.sub(lambda m: "O" * len(m.group(0)), text)
    return _O_IN_DIGITS.sub("0", text)


def fold_kana(text: str) -> str:
    """Hiragana → katakana (ぐっち → グッチ)."""
    import jaconv

    return jaconv.hira2kata(text)


def fold_key(c: str) -> str:
    """One character's context-free fold: the same key for a character and anything the steps
    below may turn it into one for one (kana, look-alikes), so an alignment of a text with its
    normalised form matches those as equal (explain/spans.py maps spans through it)."""
    if "\u3041" <= c <= "\u3096":
        return chr(ord(c) + 0x60)  # hiragana -> katakana, as jaconv.hira2kata
    if c in _DASHES or c == "ー":
        return "ー"
    if c in "0Oo":
        return "0"
    return _KANJI_LOOKALIKE.get(c) or _CONFUSABLE.get(c, c)


def normalize_text(text: str, options: Mapping[str, bool]) -> str:
    """NFKC, then the steps `options` switches on, in a fixed order (module docstring)."""
    from mmdetect.data.tokenize import clean_text, nfkc

    return fold_evasions(nfkc(clean_text(text)), options)


def fold_evasions(text: str, options: Mapping[str, bool]) -> str:
    """`normalize_text` of a text already through clean_text and NFKC (callers that hold that
    form too, the explainer's span map and the rules, do not compute it twice)."""
    from mmdetect.data.tokenize import nfkc

    if options.get("invisible"):
        text = drop_invisible(text)
    if options.get("separators"):  # before homoglyphs: グ-ッ-チ must not become グーッーチ
        text = join_separated(text)
    if options.get("homoglyphs"):
        text = fold_homoglyphs(text)
    if options.get("kana"):
        text = fold_kana(text)
    return nfkc(text)


def normalize_pairs(
    pairs: list[tuple[str, str]], options: Mapping[str, bool] | None
) -> list[tuple[str, str]]:
    """(title, description) pairs normalised; unchanged when no option is on."""
    opts = check_options(options)
    if not any(opts.values()):
        return pairs
    return [(normalize_text(t, opts), normalize_text(d, opts)) for t, d in pairs]
