"""Rules files: validation with file:line errors, matching after the model's normalisation,
expiry, refused and timed-out regular expressions, and the order rules combine with the model."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdetect.data.records import Listing
from mmdetect.policy import rules_match
from mmdetect.policy.combine import apply_rules, combine_codes, match_rules, rule_codes
from mmdetect.policy.decide import Decisions
from mmdetect.policy.rules import load_rules, parse_rules
from mmdetect.policy.rules_match import rule_input, rule_text
from mmdetect.policy.rules_yaml import RulesError

TAX = ("counterfeit", "adult", "game_account")
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def listing(i: str, title: str, description: str = "", price: int | None = 1000,
            category: str | None = "bags", photos: int = 1) -> Listing:  # fmt: skip
    return Listing(id=i, title=title, description=description, price=price, category=category,
                   images=tuple(f"p{k}.jpg" for k in range(photos)), created_at=NOW, labels=None)  # fmt: skip


def rules_doc(*rules: str) -> str:
    return "version: 1\nrules:\n" + "".join(rules)


def rule(rid: str, when: str, action: str = "hide", category: str = "counterfeit",
         extra: str = "") -> str:  # fmt: skip
    return (f"  - id: {rid}\n    owner: cs\n    category: {category}\n    action: {action}\n"
            f"{extra}    when: {when}\n")  # fmt: skip


def fired(text: str, *listings: Listing, at: datetime = NOW) -> list[tuple[str, ...]]:
    return match_rules(parse_rules(text, "r.yaml", TAX), listings, TAX, at).fired


def test_keywords_match_after_the_models_normalisation():
    doc = rules_doc(rule("gucci", "{keyword: [グッチ, GUCCI]}"))
    got = fired(doc, listing("half", "ｸﾞｯﾁ 財布"), listing("full", "ｇｕｃｃｉ purse"),
                listing("plain", "グッチ"), listing("other", "財布"))  # fmt: skip
    assert got == [("gucci",), ("gucci",), ("gucci",), ()]
    # the keyword itself is normalised too: a half-width keyword matches full-width text
    assert fired(rules_doc(rule("k", "{keyword: ｸﾞｯﾁ}")), listing("a", "グッチ")) == [("k",)]
    assert rule_text("ＲＭＴ\x00代行") == "rmt 代行"  # NFKC, casefold, control chars to spaces


def test_text_leaves_also_match_the_evasion_folded_text():
    """The sellers' evasions the model's normalisation undoes: a keyword or a pattern written
    plainly still fires, and folding only adds matches (plain-text matches are kept)."""
    doc = rules_doc(rule("gucci", "{keyword: [グッチ, GUCCI]}"),
                    rule("rolex", "{regex: 'ロレックス|rolex'}"))  # fmt: skip
    got = fired(doc, listing("sep", "グ・ッ・チ 財布"), listing("zw", "グ\u200bッ\u200bチ"),
                listing("spaced", "Ｇ Ｕ Ｃ Ｃ Ｉ"), listing("glyph", "口レックス 時計"),
                listing("cyr", "ROLЕX"), listing("list", "赤、青、白"),
                listing("plain", "ルイ・ヴィトン グッチです"))  # fmt: skip
    assert got == [("gucci",), ("gucci",), ("gucci",), ("rolex",), ("rolex",), (), ("gucci",)]
    # a pattern that needs the separator still matches the text as typed
    sep = rules_doc(rule("dot", "{regex: 'グ・ッ・チ'}"))
    assert fired(sep, listing("a", "グ・ッ・チ")) == [("dot",)]


def test_conditions_all_any_not_price_photos_category_and_fields():
    when = ("{all: [{any: [{keyword: 財布}, {regex: 'ミラー品?'}]}, {price: {min: 500, max: 5000}},"
            " {photos: {max: 1}}, {not: {listing_category: [books]}}]}")  # fmt: skip
    doc = rules_doc(rule("r", when))
    cases = {
        listing("ok", "長財布"): True,
        listing("regex", "ミラー 長袖"): True,
        listing("price-high", "財布", price=6000): False,
        listing("price-edge", "財布", price=5000): True,
        listing("no-price", "財布", price=None): False,
        listing("photos", "財布", photos=2): False,
        listing("books", "財布", category="books"): False,
        listing("no-category", "財布", category=None): True,
        listing("none", "時計"): False,
    }
    got = fired(doc, *cases)
    assert {x.id: bool(f) for x, f in zip(cases, got, strict=True)} == {
        x.id: want for x, want in cases.items()
    }
    title_only = rules_doc(rule("t", "{keyword: 財布, in: title}"))
    assert fired(title_only, listing("a", "時計", "財布もあります"), listing("b", "財布")) == [
        (),
        ("t",),
    ]


def test_expiry_a_date_applies_through_that_day_utc():
    doc = rules_doc(rule("old", "{keyword: 財布}", extra="    expires: 2026-11-30\n"),
                    rule("new", "{keyword: 財布}", extra="    expires: 2026-12-01\n"))  # fmt: skip
    x = listing("a", "財布")
    assert fired(doc, x, at=NOW) == [("new",)]
    assert fired(doc, x, at=datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)) == [("new",)]
    assert fired(doc, x, at=datetime(2026, 12, 2, tzinfo=timezone.utc)) == [()]
    rs = parse_rules(doc, "r.yaml")
    assert any("rule old expired" in w for w in rs.warnings)  # said at load, never silent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\nrules:\n  - id: a\n    owner: cs\n    category: counterfeit\n"
            "    action: block\n    when: {keyword: x}\n",
            "r.yaml:6: action: 'block' is not one of",
        ),
        (
            rules_doc(rule("a", "{keyword: x}"), rule("a", "{keyword: y}")),
            "r.yaml:8: id: 'a' already used at r.yaml:3",
        ),
        (rules_doc(rule("a", "{keywords: x}")), "r.yaml:7: condition: unknown key 'keywords'"),
        (rules_doc(rule("a", "{price: {min: 10, max: 1}}")), "r.yaml:7: price: min 10 must be"),
        (rules_doc(rule("a", "{price: {max: cheap}}")), "r.yaml:7: price.max: expected int or"),
        (rules_doc(rule("a", "{regex: '(unclosed'}")), "r.yaml:7: regex: does not compile"),
        (rules_doc(rule("a", "{all: []}")), "r.yaml:7: all: an empty list"),
        (
            rules_doc(rule("a", "{keyword: x, price: {max: 1}}")),
            "r.yaml:7: condition: give exactly",
        ),
        (
            rules_doc(rule("a", "{keyword: x}", extra="    expires: soon\n")),
            "r.yaml:7: expires: expected date or datetime",
        ),
        (
            rules_doc(rule("a", "{keyword: x}", category="weapons")),
            "r.yaml:3: category: 'weapons' is not a class of the model",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    owner: cs\n    owner: cs2\n",
            "r.yaml:5: rule: duplicate key 'owner'",
        ),
        ("version: 1\nrules:\n  - &x {id: a}\n  - *x\n", "r.yaml:4: YAML aliases"),
        ("version: 2\nrules: []\n", "r.yaml:1: version 2: this mmdetect reads version 1"),
        ("rules: []\n", "r.yaml:1: missing 'version'"),
        ("version: 1\nrules: [\n", "r.yaml:3: not valid YAML"),
        (
            "version: 1\nrules:\n  - id: a\n    owner: cs\n    category: counterfeit\n"
            "    action: hide\n",
            "r.yaml:3: rule: missing 'when'",
        ),
        ("version: 1\nrules: " + "[" * 100_000, "r.yaml:2: nested deeper than 40 levels"),
        ("version: 1\nrules: []\n---\nversion: 1\n", "r.yaml:3: not one YAML document"),
        (rules_doc(rule("a", '{keyword: [x, "\\x01"]}')), "r.yaml:7: keyword: empty once"),
        # a zero-width space alone survives NFKC but not the evasion folds: it would match all
        (rules_doc(rule("a", '{keyword: [x, "\\u200b"]}')), "r.yaml:7: keyword: empty once"),
        (rules_doc(rule("a", "{keyword: ['x', '\x01']}")), "r.yaml:7: not valid YAML: special"),
        (
            "version: 1\nrules:\n  - !!python/object:os.system {id: a}\n",
            "r.yaml:3: rule: tag 'tag:yaml.org,2002:python/object:os.system' is not",
        ),
    ],
)
def test_bad_rules_files_name_file_line_and_field(text, message):
    with pytest.raises(RulesError) as err:
        parse_rules(text, "r.yaml", TAX)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_load_rules_refuses_non_utf8_and_oversized_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: 1\nrules:\n  - id: \xff\n")
    with pytest.raises(RulesError, match=r"bad\.yaml:3: not UTF-8"):
        load_rules(bad)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(RulesError, match="over the limit"):
        load_rules(big)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)+$", "nests an unbounded repeat"),  # the textbook shape: refused by structure
        (r"(\w+\s?)*x", "nests an unbounded repeat"),
        (r"(a|aa)+$", "catastrophic backtracking"),  # no nesting: refused by the probes
    ],
)
def test_pathological_regex_is_refused_at_load_in_bounded_time(pattern, why):
    t0 = time.monotonic()
    with pytest.raises(RulesError, match=why) as err:
        parse_rules(rules_doc(rule("bad", f"{{regex: '{pattern}'}}")), "r.yaml")
    assert str(err.value).startswith("r.yaml:7: regex:")
    assert time.monotonic() - t0 < 30  # every probe is cut at PROBE_TIMEOUT_S


def test_safe_forms_of_those_patterns_are_accepted():
    for pattern in (r"a++$", r"(?>\w+\s?)*x", r"[\w\s]+x", r"\d{3,}円", r"LINE\s*ID"):
        parse_rules(rules_doc(rule("ok", f"{{regex: '{pattern}'}}")), "r.yaml")


def test_a_regex_that_times_out_while_scoring_does_not_fire_and_is_reported(monkeypatch):
    """Were a slow pattern to pass the load checks, one listing costs at most the timeout."""
    monkeypatch.setattr(rules_match, "check_pattern", lambda p, at: rules_match.regex.compile(p))
    doc = rules_doc(rule("slow", "{regex: '(a|aa)+$'}"), rule("fast", "{keyword: aaa}"))
    rs = parse_rules(doc, "r.yaml", TAX)
    t0 = time.monotonic()
    hits = match_rules(rs, [listing("evil", "a" * 5000 + "!")], TAX, NOW)
    assert time.monotonic() - t0 < 5 * rules_match.MATCH_TIMEOUT_S + 2
    assert hits.fired == [("fast",)] and hits.timed_out == [("slow",)]


def _hits(doc: str, *listings: Listing):
    return match_rules(parse_rules(doc, "r.yaml", TAX), listings, TAX, NOW)


def test_precedence_allow_lowers_hide_a_hide_rule_raises_review_rules_add():
    doc = rules_doc(
        rule("allow-cf", "{keyword: allow}", action="allow"),
        rule("hide-cf", "{keyword: block}", action="hide"),
        rule("review-adult", "{keyword: look}", action="review", category="adult"),
    )  # fmt: skip
    xs = [listing("a", "allow"), listing("b", "allow block"), listing("c", "look"),
          listing("d", "look"), listing("e", "allow")]  # fmt: skip
    hits = _hits(doc, *xs)
    model = np.array([[2, 0, 0],   # a: model hides counterfeit, allow -> review
                      [0, 0, 0],   # b: allow and hide rule: the explicit hide wins
                      [0, 0, 0],   # c: review rule adds to the queue
                      [2, 2, 0],   # d: a review rule never lowers a hide
                      [0, 1, 0]])  # e: allow of counterfeit leaves adult's review alone  # fmt: skip
    codes, overall = combine_codes(model, hits)
    assert codes.tolist() == [[1, 0, 0], [2, 0, 0], [0, 1, 0], [2, 2, 0], [0, 1, 0]]
    assert overall.tolist() == [1, 2, 1, 2, 1]
    assert hits.fired == [("allow-cf",), ("allow-cf", "hide-cf"), ("review-adult",),
                          ("review-adult",), ("allow-cf",)]  # fmt: skip
    assert rule_codes(hits)[1].tolist() == [0, 2, 1, 1, 0]  # the rules alone
    d = Decisions(np.zeros((5, 3)), np.zeros(5), model.astype(np.int8), model.max(axis=1))
    combined, _ = apply_rules(d, parse_rules(doc, "r.yaml", TAX), xs, TAX, NOW)
    assert combined.overall.tolist() == overall.tolist()


def test_the_example_rules_file_loads(tmp_path):
    from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

    path = Path(__file__).resolve().parents[2] / "configs" / "rules" / "example.yaml"
    assert path.read_text(encoding="utf-8").startswith("# mmdetect ")
    rs = load_rules(path, DEFAULT_TAXONOMY)
    assert len(rs.rules) >= 5 and {r.action for r in rs.rules} == {"hide", "review", "allow"}
    x = rule_input(listing("g", "ｹﾞｰﾑ", "引継ぎコードを送ります", category="games"))
    assert any(r.match(x) for r in rs.rules if r.id == "game-rmt-handover")


@settings(max_examples=200, deadline=None)
@given(
    model=hnp.arrays(np.int8, (6, 3), elements=st.integers(0, 2)),
    masks=hnp.arrays(bool, (3, 6, 3)),
)
def test_combination_invariants(model, masks):
    """For any model tiers and rule matches: a hide rule hides, a review rule never leaves a
    pass, an allow never auto-hides unless a hide rule says so and never drops below review,
    and with no rule firing the model's decision is kept."""
    from mmdetect.policy.combine import RuleHits

    hide, review, allow = masks
    hits = RuleHits((), np.zeros((6, 0), bool), hide, review, allow, [()] * 6, [()] * 6)
    codes, overall = combine_codes(model, hits)
    assert (codes[hide] == 2).all()
    assert (codes[review & ~hide] >= 1).all()
    lowered = allow & ~hide & (model == 2)
    assert (codes[lowered] == 1).all()
    untouched = ~(hide | review | allow)
    assert (codes[untouched] == model[untouched]).all()
    assert (overall == codes.max(axis=1)).all()
    assert (codes[allow & ~hide] <= np.maximum(model, 1)[allow & ~hide]).all()


@settings(max_examples=100, deadline=None)
@given(word=st.text("ABCXYZabcxyz0189", min_size=1, max_size=8), pad=st.text("あ 財布", max_size=5))
def test_a_keyword_matches_its_full_width_and_other_case_forms(word, pad):
    full = "".join(chr(ord(c) + 0xFEE0) for c in word.swapcase())  # ｇＵｃ... full-width
    doc = rules_doc(rule("k", f"{{keyword: '{word}'}}"))
    assert fired(doc, listing("a", pad + full + pad)) == [("k",)]
