"""Evasion normalisation (data/textnorm.py), the evasions (data/evasions.py) and the seeded
training-time augmentation (data/augment.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdetect.data.augment import AugmentConfigError, augment_pairs, check_augment
from mmdetect.data.evasions import EVASIONS, evade
from mmdetect.data.textnorm import (
    DEFAULT_NORMALIZE,
    NormalizeConfigError,
    _fold_kana_lookalikes,
    check_options,
    drop_invisible,
    normalize_pairs,
    normalize_text,
)
from mmdetect.data.tokenize import nfkc

ON = dict(DEFAULT_NORMALIZE)
KANA = {**ON, "kana": True}


@pytest.mark.parametrize(
    ("evaded", "plain"),
    [
        ("グ・ッ・チ の財布", "グッチ の財布"),
        ("グ.ッ.チ", "グッチ"),
        ("グ★ッ★チです", "グッチです"),
        ("新品 グ-ッ-チ", "新品 グッチ"),
        ("Ｇ Ｕ Ｃ Ｃ Ｉ", "GUCCI"),
        ("Ｇ\u3000Ｕ\u3000Ｃ\u3000Ｃ\u3000Ｉ", "GUCCI"),
        ("グ\u200bッ\u2060チ\ufeff", "グッチ"),
        ("ｸﾞｯﾁ", "グッチ"),
        ("セ一タ一", "セーター"),
        ("セ－ター", "セーター"),
        ("口レックス", "ロレックス"),
        ("工ルメス 力バン", "エルメス カバン"),
        ("L0UIS", "LOUIS"),
        ("1O00円", "1000円"),
        ("GUССI", "GUCCI"),  # two Cyrillic С
    ],
)
def test_each_evasion_is_normalised(evaded, plain):
    assert normalize_text(evaded, ON) == plain


@pytest.mark.parametrize(
    "legit",
    [
        "ルイ・ヴィトン 長財布",
        "ジョン・F・ケネディ 伝記",
        "新品 S 黒 美品",
        "赤、青、白 3色セット",
        "T-シャツ Mサイズ",
        "ブランド一覧 一セット 一ヶ月",
        "口コミ 入口 人口 協力サイト",
        "iPhone15 PS5 2026年",
        "ありがとうございます。",
        "U-NEXT ギフト",
    ],
)
def test_legit_text_is_unchanged(legit):
    assert normalize_text(legit, ON) == nfkc(legit)


def test_kana_folding_only_when_asked():
    assert normalize_text("ぐっち", ON) == "ぐっち"
    assert normalize_text("ぐっち", KANA) == "グッチ"


def test_all_off_is_exactly_nfkc_and_pairs_pass_through():
    pairs = [("Ｇ Ｕ Ｃ Ｃ Ｉ\u200b", "グ・ッ・チ")]
    off = dict.fromkeys(DEFAULT_NORMALIZE, False)
    assert normalize_pairs(pairs, None) is pairs
    assert normalize_pairs(pairs, off) is pairs
    assert normalize_text(pairs[0][1], off) == nfkc(pairs[0][1])


def test_unknown_option_is_a_clear_error():
    with pytest.raises(NormalizeConfigError, match=r"data.normalize: unknown option 'zerowidth'"):
        check_options({"zerowidth": True})
    with pytest.raises(NormalizeConfigError, match=r"data.normalize.kana: must be true or false"):
        check_options({"kana": "yes"})


_KATA = st.text(alphabet=st.sampled_from("グッチシャネルプラダエルメスロレックスカバンセーター"),
                min_size=3, max_size=8).filter(lambda w: w[0] != "ー")  # fmt: skip
_LATIN = st.text(alphabet=st.sampled_from("ABCDEGHIKLMNOPRSTUVWXYZabcdefghiklmnoprstuvwxyz"),
                 min_size=3, max_size=8)  # fmt: skip
_OTHER = st.sampled_from(["新品", "未使用", "財布", "の", "です", "送料無料", "【美品】", "2026年"])
# Words on lines of their own: two spaced-out words in a row (A A A B B B) cannot be told apart
# from one, whatever the normaliser does; on one line they are covered by the cases above.
_TEXT = st.lists(st.one_of(_KATA, _LATIN, _OTHER), min_size=1, max_size=6).map("\n".join)
# what each evasion needs switched on to be undone
_UNDONE_BY = {"katakana_separators": ON, "zero_width": ON, "homoglyphs": ON,
              "fullwidth_spaced": ON, "halfwidth": ON, "hiragana": KANA}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(text=_TEXT, kind=st.sampled_from(sorted(EVASIONS)), seed=st.integers(0, 10**6))
def test_normalise_undoes_the_invertible_evasions(text, kind, seed):
    options = _UNDONE_BY[kind]
    evaded = evade(text, kind, random.Random(seed), rate=0.7)
    assert normalize_text(evaded, options) == normalize_text(text, options)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40))
def test_normalisation_is_idempotent_and_nfkc_stable(text):
    once = normalize_text(text, KANA)
    assert normalize_text(once, KANA) == once
    assert nfkc(once) == once


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(
            "一ー－—口力工夕卜コトタカロセ入協つヶ0Oo1AaАС \u200b\u00ad\ufeff\U000e0041ぁ"
        ),
        max_size=30,
    )
    | st.text(max_size=30)
)
def test_scanning_folds_match_their_per_character_definitions(text):
    """The C-scan shortcuts (drop_invisible, the look-alike pass visiting only dashes and kanji
    look-alikes) give what the plain per-character definitions give."""
    import unicodedata

    from mmdetect.data.textnorm import _INVISIBLE, _is_cjk, _is_kata

    want = "".join(c for c in _INVISIBLE.sub("", text) if unicodedata.category(c) != "Cf")
    assert drop_invisible(text) == want
    out: list[str] = []
    for i, c in enumerate(text):  # the definition: every character judged in turn
        prev, nxt = (out[-1] if out else ""), (text[i + 1] if i + 1 < len(text) else "")
        if c in "一-—―‐−─" and _is_kata(prev) and prev != "ー":
            numeral = _is_cjk(nxt) and nxt not in set("口工力夕卜") or nxt in set("つヶヵ")
            c = "ー" if c != "一" or not numeral else c
        elif c in "口工力夕卜" and not text.startswith("口コミ", i):
            kata_next = _is_kata(nxt) or nxt in set("口工力夕卜")
            if _is_kata(prev) or (kata_next and not _is_cjk(prev)):
                c = dict(zip("口工力夕卜", "ロエカタト", strict=True))[c]
        out.append(c)
    assert _fold_kana_lookalikes(text) == "".join(out)


def test_evasions_change_text_and_are_seeded():
    text = "グッチ 風 ショルダーバッグ LOUIS 新品"
    for kind in EVASIONS:
        a = evade(text, kind, random.Random(3))
        assert a == evade(text, kind, random.Random(3))
        assert a != text, kind
    with pytest.raises(ValueError, match="unknown evasion 'leet'"):
        evade(text, "leet", random.Random(0))


def test_augmentation_is_seeded_by_listing_and_touches_about_rate():
    pairs = [(f"グッチ 財布 LOUIS {i}", "ロレックス の時計です") for i in range(400)]
    ids = [f"x{i}" for i in range(400)]
    cfg = {"rate": 0.25, "seed": 7}
    a = augment_pairs(pairs, ids, cfg)
    assert a == augment_pairs(pairs, ids, cfg)
    assert augment_pairs(pairs[::-1], ids[::-1], cfg) == a[::-1]  # per listing, not per position
    assert a != augment_pairs(pairs, ids, {**cfg, "seed": 8})
    changed = sum(x != y for x, y in zip(a, pairs, strict=True))
    assert 70 <= changed <= 130  # 25 % of 400, binomial spread
    assert augment_pairs(pairs, ids, {"rate": 0.0}) == pairs
    assert augment_pairs(pairs, ids, None) == pairs


def test_augment_config_errors_name_the_key():
    assert check_augment(None) is None
    assert check_augment({"kinds": ["hiragana"]})["rate"] == 0.3
    with pytest.raises(AugmentConfigError, match=r"data.augment: unknown option 'prob'"):
        check_augment({"prob": 0.3})
    with pytest.raises(
        AugmentConfigError, match=r"data.augment.rate: must be a number in \[0, 1\]"
    ):
        check_augment({"rate": 2})
    with pytest.raises(AugmentConfigError, match=r"data.augment.kinds: unknown evasion 'leet'"):
        check_augment({"kinds": ["leet"]})
