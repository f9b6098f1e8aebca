"""Token -> character spans of the ORIGINAL title and description.

The model never sees the seller's string: `tokenize._first_ids` applies `clean_text` (control
characters to spaces, lone surrogates to U+FFFD: one character for one), then NFKC (which may
merge characters: half-width "ｶﾞ" -> "ガ", or expand one: "㌔" -> "キロ"), then MeCab cuts words
and WordPiece cuts each word into pieces. An attribution is only useful to a reviewer if it lands
on what the seller typed, so the map is built in three steps, each exact:

1. normalisation units: the shortest runs of original characters whose NFKC forms concatenate to
   the NFKC form of the whole text (a unit is one character unless NFKC composes across it);
   with the bundle's `data.normalize` (data/textnorm.py: invisible characters and separators
   deleted, look-alikes folded one for one) each unit's span is carried through an alignment,
   so グ・ッ・チ explained as the word グッチ highlights the five characters typed;
2. MeCab surfaces are found, in order, in the normalised text (whitespace is all they drop);
3. a word's WordPiece ids are attributed to the word as a whole (attributions are summed per
   word: a reviewer reads words, not pieces).

A span is (start, end) in the original string: `original[start:end]` is exactly what the seller
typed for that word (tests check the round trip on half-width kana, emoji and full-width digits).
Only MeCab + WordPiece tokenizers (the project default, `tokenize._is_mecab_wordpiece`) are
mapped; any other tokenizer gets None from `word_pieces` and explanations say spans are missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmdetect.data.mecab import _mecab_words
from mmdetect.data.textnorm import check_options, fold_evasions, fold_key
from mmdetect.data.tokenize import _is_mecab_wordpiece, _word_ids, clean_text, nfkc


@dataclass(frozen=True)
class Word:
    """A MeCab word of one field: its original span, its normalised surface, its token ids."""

    field: str  # "title" | "description"
    start: int  # in the original string
    end: int
    surface: str  # NFKC surface (what the tokenizer saw)
    ids: tuple[int, ...]


def normalisation_units(text: str) -> list[tuple[int, int, str]]:
    """(start, end, nfkc form) of each unit of `text`; the forms concatenate to nfkc(text).

    A character joins the previous unit when NFKC of the pair differs from the two NFKC forms
    side by side (composition across characters, e.g. a half-width voiced sound mark).
    """
    units: list[list] = []
    for i, ch in enumerate(text):
        if units:
            prev = text[units[-1][0] : i]
            if nfkc(prev + ch) != nfkc(prev) + nfkc(ch):
                units[-1][1] = i + 1
                continue
        units.append([i, i + 1])
    out = [(a, b, nfkc(text[a:b])) for a, b in units]
    if "".join(u[2] for u in out) != nfkc(text):  # a composition the pairwise test missed
        return [(0, len(text), nfkc(text))] if text else []
    return out


def normalised_offsets(
    text: str, normalize: Mapping[str, bool] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """(the text the tokenizer sees, for each of its characters the original span it came from).

    That text is nfkc(clean_text(text)), then `data.normalize`'s evasion steps when given.
    """
    cleaned = clean_text(text)  # same length as text: one character for one
    norm, owner = [], []
    for a, b, form in normalisation_units(cleaned):
        norm.append(form)
        owner += [(a, b)] * len(form)
    base = "".join(norm)
    opts = check_options(normalize)
    if not any(opts.values()):
        return base, owner
    out = fold_evasions(base, opts)
    return out, _carry_owners(base, out, owner)


def _carry_owners(base: str, out: str, owner: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The owners of `base`'s characters carried to `out` through a character alignment.

    The evasion steps delete characters (invisible ones, separators) and substitute one for one
    (look-alikes, kana): keyed by `fold_key`, `out` is a subsequence of `base`, and the first
    fit, left to right, is the alignment (a deleted character is never one the output keeps
    next, as separators and invisible characters are what the steps remove). Should a
    character not fit (a final NFKC composing what a fold produced), the rest is spread over
    what is left in order, so spans never run backwards.
    """
    kb, ko = "".join(map(fold_key, base)), "".join(map(fold_key, out))
    got: list[tuple[int, int]] = []
    i = 0
    for j, c in enumerate(ko):
        at = kb.find(c, i)
        if at < 0:
            rest = owner[i:] or owner[-1:] or [(0, 0)]
            left = len(ko) - j
            return got + [rest[k * len(rest) // left] for k in range(left)]
        got.append(owner[at])
        i = at + 1
    return got


def word_pieces(
    tokenizer, text: str, field: str, normalize: Mapping[str, bool] | None = None
) -> list[Word] | None:
    """The MeCab words of one field with their original spans and ids (as `encode_batch` gives
    them with the same `normalize`); None for a tokenizer that is not MeCab + WordPiece."""
    if not _is_mecab_wordpiece(tokenizer):
        return None
    norm, owner = normalised_offsets(text, normalize)
    words, cursor = [], 0
    for surface in _mecab_words(norm, tokenizer.mecab_kwargs):
        at = norm.find(surface, cursor)
        if at < 0:  # MeCab changed a surface (never seen): keep the ids, span the rest
            at, end = cursor, len(norm)
        else:
            end = at + len(surface)
        cursor = end
        start, stop = (owner[at][0], owner[end - 1][1]) if end > at else (0, 0)
        words.append(Word(field, start, stop, surface, _word_ids(tokenizer, surface)))
    return words


def truncate_words(words: Sequence[Word], limit: int) -> tuple[list[Word], bool]:
    """The words whose tokens fit in `limit` ids (a word cut inside keeps its first ids);
    True if anything was cut."""
    kept, used = [], 0
    for w in words:
        if used >= limit:
            return kept, True
        take = w.ids[: limit - used]
        kept.append(
            w if len(take) == len(w.ids) else Word(w.field, w.start, w.end, w.surface, take)
        )
        used += len(take)
        if len(take) < len(w.ids):
            return kept, True
    return kept, False


@dataclass(frozen=True)
class Layout:
    """One listing's token sequence: its ids and, per word, the positions of its ids in it."""

    ids: list[int]
    words: list[Word]
    positions: list[tuple[int, int]]  # [first, last + 1) in `ids`, per word
    special: list[int]  # positions of the special tokens (kept in every baseline)
    truncated: bool


def listing_layout(
    tokenizer, title: str, description: str, max_length: int,
    normalize: Mapping[str, bool] | None = None,
) -> Layout | None:  # fmt: skip
    """`encode_listing`'s sequence (with the bundle's `normalize`) with word positions (same
    budget: title first, then the description); None for a tokenizer without spans."""
    from mmdetect.data.tokenize import pair_template

    t_words = word_pieces(tokenizer, title, "title", normalize)
    d_words = word_pieces(tokenizer, description, "description", normalize)
    if t_words is None or d_words is None:
        return None
    head, middle, tail = pair_template(tokenizer)
    body = max_length - len(head) - len(middle) - len(tail)
    t_kept, t_cut = truncate_words(t_words, body)
    used = sum(len(w.ids) for w in t_kept)
    d_kept, d_cut = truncate_words(d_words, body - used)
    ids, positions, special = list(head), [], list(range(len(head)))
    for w in t_kept:
        positions.append((len(ids), len(ids) + len(w.ids)))
        ids += w.ids
    special += range(len(ids), len(ids) + len(middle))
    ids += middle
    for w in d_kept:
        positions.append((len(ids), len(ids) + len(w.ids)))
        ids += w.ids
    special += range(len(ids), len(ids) + len(tail))
    ids += tail
    return Layout(ids, t_kept + d_kept, positions, special, t_cut or d_cut)
