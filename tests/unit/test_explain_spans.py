"""Character spans of explanations: the map original -> clean_text -> NFKC -> MeCab -> WordPiece
must land every word on exactly what the seller typed."""

from __future__ import annotations

import pytest

from mmdetect.data.evasions import EVASIONS
from mmdetect.data.tokenize import clean_text, encode_listing, load_tokenizer, nfkc
from mmdetect.explain.html import card_anchor, highlight
from mmdetect.explain.spans import listing_layout, normalisation_units, word_pieces

TRICKY = [
    "ﾎﾟｹﾓﾝｶｰﾄﾞ ｶﾞﾝﾀﾞﾑ 未開封",  # half-width kana; voiced marks compose across two characters
    "😀👍🏻 最高❤️ 👨‍👩‍👧 セット",  # emoji, skin tone, variation selector, ZWJ family
    "ＮＩＫＥ エアマックス９０ ２７ｃｍ １２３４円",  # full-width ASCII and digits
    "㌔ ① ﬁle Ⅻ ｶ\u3099 e\u0301",  # characters NFKC expands; combining marks
    "タブ\tと\x00制御\x7f文字 \ud800 end",  # control characters and a lone surrogate
    "",
]


@pytest.fixture(scope="module")
def tokenizer(ja_vocab_dir):
    return load_tokenizer(str(ja_vocab_dir))


@pytest.mark.parametrize("text", TRICKY)
def test_units_concatenate_to_the_nfkc_of_the_whole_text(text):
    units = normalisation_units(clean_text(text))
    assert "".join(u[2] for u in units) == nfkc(clean_text(text))
    assert [u[0] for u in units[1:]] == [u[1] for u in units[:-1]]  # contiguous, in order
    if text:
        assert units[0][0] == 0 and units[-1][1] == len(text)


def test_half_width_voiced_kana_is_one_unit():
    units = normalisation_units("ｶﾞ")
    assert units == [(0, 2, "ガ")]


@pytest.mark.parametrize("text", TRICKY)
def test_word_spans_round_trip_to_the_original_substrings(tokenizer, text):
    words = word_pieces(tokenizer, text, "title")
    assert words is not None
    norm = nfkc(clean_text(text))
    assert "".join(w.surface for w in words) == "".join(norm.split())
    end = 0
    for w in words:
        assert end <= w.start < w.end <= len(text)  # in order, never overlapping
        end = w.end
        # what the seller typed there is exactly what the tokenizer saw for this word
        assert nfkc(clean_text(text[w.start : w.end])) == w.surface


def test_spans_on_named_characters(tokenizer):
    text = "ﾎﾟｹﾓﾝ １２３４円 😀"
    words = {w.surface: (w.start, w.end) for w in word_pieces(tokenizer, text, "title")}
    # 5 half-width characters (the voiced mark is its own character) NFKC-compose to 4
    assert words["ポケモン"] == (0, 5) and text[0:5] == "ﾎﾟｹﾓﾝ"
    assert words["1234"] == (6, 10) and text[6:10] == "１２３４"
    assert words["😀"] == (12, 13)


@pytest.mark.parametrize("title,desc", [(TRICKY[0], TRICKY[1]), (TRICKY[2], TRICKY[4]),
                                        (TRICKY[3], ""), ("あ" * 80, "い" * 80)])  # fmt: skip
def test_layout_ids_are_those_of_encode_listing(tokenizer, title, desc):
    layout = listing_layout(tokenizer, title, desc, 32)
    assert layout.ids == encode_listing(tokenizer, title, desc, 32)
    for (a, b), w in zip(layout.positions, layout.words, strict=True):
        assert layout.ids[a:b] == list(w.ids)
    assert layout.truncated == (len(title) + len(desc) >= 160)
    assert not set(layout.special) & {i for a, b in layout.positions for i in range(a, b)}


def test_highlight_escapes_seller_html():
    text = "<script>alert(1)</script> 偽物"
    spans = [
        {"start": 0, "end": 8, "attribution": 0.5},
        {"start": 26, "end": 28, "attribution": -0.1},
    ]
    out = highlight(text, spans, 0.5)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.count('<span class="hl"') == 2 and 'title="+0.5000"' in out
    assert card_anchor("L0001") == "card-L0001"
    assert card_anchor('x"><b>').startswith("card-~") and '"' not in card_anchor('x"><b>')


def test_card_anchor_names_kind_class_and_listing():
    one = card_anchor("L1", "counterfeit", "false_hide")
    assert one == "card-false_hide:counterfeit:L1"
    assert one != card_anchor("L1", "adult", "false_hide") != card_anchor("L1", "adult")
    odd = card_anchor("商品 1", "adult", "false_hide")  # not a plain token: hashed, still per class
    assert odd.startswith("card-~") and odd != card_anchor("商品 1", "counterfeit", "false_hide")
    assert card_anchor("a:b") != card_anchor("b", "a")  # ":" in an id is hashed, never joined


def test_the_http_explanation_reaches_no_training_code():
    """Static, as test_serve's check: mmdetect.explain.service (imported by the HTTP app) never
    imports Lightning or the training modules, even lazily (checkpoints load in loading.py)."""
    from tests.unit.test_serve import reachable_imports

    seen, found = reachable_imports("mmdetect.explain.service")
    assert {"mmdetect.explain.core", "mmdetect.explain.model"} <= seen
    assert "mmdetect.serving.explainable" not in seen and found == []


NORMALIZE = {"invisible": True, "separators": True, "homoglyphs": True, "kana": True}
EVADED = [  # (title, the word the model sees, what the seller typed for it)
    ("グ・ッ・チ 財布 新品", "グッチ", "グ・ッ・チ"),
    ("グ\u200bッ\u200bチ の 財布", "グッチ", "グ\u200bッ\u200bチ"),
    ("Ｇ Ｕ Ｃ Ｃ Ｉ バッグ", "GUCCI", "Ｇ Ｕ Ｃ Ｃ Ｉ"),
    ("口レックス 時計", "ロレックス", "口レックス"),
    ("ぐっち の 財布", "グッチ", "ぐっち"),
    ("ｸﾞ・ｯ・ﾁ 財布", "グッチ", "ｸﾞ・ｯ・ﾁ"),
]


@pytest.mark.parametrize("title,word,typed", EVADED)
def test_spans_follow_the_evasion_normalisation(tokenizer, title, word, typed):
    desc = "説明\u200bです。グ★ッ★チ"
    layout = listing_layout(tokenizer, title, desc, 64, NORMALIZE)
    assert layout.ids == encode_listing(tokenizer, title, desc, 64, NORMALIZE)  # what the model saw
    spans = {w.surface: (w.start, w.end) for w in layout.words if w.field == "title"}
    assert word in spans and title[slice(*spans[word])] == typed
    starts = [(w.field, w.start, w.end) for w in layout.words]
    for field, text in (("title", title), ("description", desc)):
        pos = [(a, b) for f, a, b in starts if f == field]
        assert all(0 <= a <= b <= len(text) for a, b in pos)
        assert all(b0 <= a1 for (_, b0), (a1, _) in zip(pos, pos[1:], strict=False))  # ordered


@pytest.mark.parametrize("text", TRICKY)
def test_normalisation_off_keeps_the_nfkc_map(tokenizer, text):
    plain = [(w.start, w.end, w.surface) for w in word_pieces(tokenizer, text, "title")]
    off = {k: False for k in NORMALIZE}
    assert [
        (w.start, w.end, w.surface) for w in word_pieces(tokenizer, text, "title", off)
    ] == plain


@pytest.mark.parametrize("kind", sorted(EVASIONS))
def test_every_evasion_keeps_the_spans_on_the_models_ids(tokenizer, kind):
    """On sample listings with each evasion applied, the layout is the model's input (so the
    explainer keeps its spans) and the words' original spans are in order, non-empty, inside
    the field (the folds depend on context, so a span alone need not normalise to its word)."""
    import json
    import random
    from pathlib import Path

    rows = Path(__file__).resolve().parents[2] / "data_samples/train/listings.jsonl"
    for i, line in enumerate(rows.read_text(encoding="utf-8").splitlines()[:40]):
        x = json.loads(line)
        rng = random.Random(i)
        title, desc = (EVASIONS[kind](t, rng, 0.7) for t in (x["title"], x["description"]))
        layout = listing_layout(tokenizer, title, desc, 96, NORMALIZE)
        assert layout.ids == encode_listing(tokenizer, title, desc, 96, NORMALIZE), (kind, title)
        for field, text in (("title", title), ("description", desc)):
            pos = [(w.start, w.end) for w in layout.words if w.field == field]
            assert all(0 <= a < b <= len(text) for a, b in pos), (kind, text)
            assert all(b0 <= a1 for (_, b0), (a1, _) in zip(pos, pos[1:], strict=False))
