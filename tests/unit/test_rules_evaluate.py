"""`evaluate --rules` on a hand-made snapshot of 8 listings: every figure worked out by hand.

    id  text          labels        model (codes cf/adult/game)  priority  rules that fire
    A   mirror wallet counterfeit   pass                          0.1      hide-cf (hide)
    B   rmt gold      game_account  pass                          0.2      review-game
    C   rmt coins     (clean)       review (game)                 0.9      review-game
    D   outlet bag    (clean)       hide (cf)                     0.95     allow-cf
    E   fake bag      counterfeit   review (cf)                   0.8      -
    F   r18 book      adult         review (adult)                0.7      (old-adult: expired)
    G   shoes         (clean)       review (cf)                   0.6      -
    H   hat           counterfeit   pass                          0.3      -

The model reviews 4 (C E F G) and hides D. Rules + model before the budget review B C D (by
rules) and E F G (the model's); the budget of 4 leaves room for 1 of the model's: E (0.8); F and
G are cut.
"""

from __future__ import annotations

from datetime import datetime, timezone

from mmdetect.data.records import Listing
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.evaluate.rules_report import format_rules_table
from mmdetect.evaluate.rules_table import rules_comparison
from mmdetect.policy.rules import parse_rules

TAX = ("counterfeit", "adult", "game_account")
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
RULES = """version: 1
rules:
  - {id: hide-cf, owner: cs, category: counterfeit, action: hide, when: {keyword: mirror}}
  - {id: review-game, owner: cs, category: game_account, action: review, when: {keyword: RMT}}
  - {id: allow-cf, owner: cs, category: counterfeit, action: allow, when: {keyword: outlet}}
  - {id: old-adult, owner: cs, category: adult, action: review, expires: 2026-11-01,
     when: {keyword: r18}}
"""
ROWS = [  # id, title, labels, per-class codes, priority
    ("A", "mirror wallet", ["counterfeit"], (0, 0, 0), 0.1),
    ("B", "rmt gold", ["game_account"], (0, 0, 0), 0.2),
    ("C", "ＲＭＴ coins", [], (0, 0, 1), 0.9),
    ("D", "outlet bag", [], (2, 0, 0), 0.95),
    ("E", "fake bag", ["counterfeit"], (1, 0, 0), 0.8),
    ("F", "r18 book", ["adult"], (0, 1, 0), 0.7),
    ("G", "shoes", [], (1, 0, 0), 0.6),
    ("H", "hat", ["counterfeit"], (0, 0, 0), 0.3),
]
TIER = ("pass", "review", "hide")


def snapshot() -> tuple[list[PredictionRecord], list[Listing]]:
    records, listings = [], []
    for rid, title, labels, codes, prio in ROWS:
        listings.append(Listing(id=rid, title=title, description="", price=1000, category=None,
                                images=(), created_at=NOW, labels=tuple(labels)))  # fmt: skip
        records.append(PredictionRecord(
            id=rid, scores=dict.fromkeys(TAX, 0.5), labels=tuple(labels), priority=prio,
            decision=TIER[max(codes)], decisions={c: TIER[k] for c, k in zip(TAX, codes, strict=True)},
        ))  # fmt: skip
    return records, listings


def counts(r: dict) -> tuple[int, int]:
    return r["count"], r["of"]


def test_rules_model_and_both_at_the_same_budget_hand_computed():
    records, listings = snapshot()
    rules = parse_rules(RULES, "r.yaml", TAX)
    res = rules_comparison(records, listings, rules, TAX, NOW)
    assert (res["listings"], res["labeled"], res["prohibited"]) == (8, 8, 5)
    assert res["review_budget"] == {"budget": 4, "rule_reviews": 3, "model_reviews": 1,
                                    "dropped": 2}  # fmt: skip
    s = res["systems"]
    want = {  # hidden, reviewed, recall, precision of flagged, hide precision
        "rules": (1, 2, (2, 5), (2, 3), (1, 1)),
        "model": (1, 4, (2, 5), (2, 5), (0, 1)),
        "combined": (1, 4, (3, 5), (3, 5), (1, 1)),
    }
    for k, (hidden, reviewed, recall, precision, hide_p) in want.items():
        got = s[k]
        assert (got["hidden"], got["reviewed"]) == (hidden, reviewed), k
        assert counts(got["recall"]) == recall and counts(got["precision"]) == precision, k
        assert counts(got["hide_precision"]) == hide_p, k
    recall = {k: {c: counts(s[k]["classes"][c]["recall"]) for c in TAX} for k in s}
    assert recall == {
        "rules": {"counterfeit": (1, 3), "adult": (0, 1), "game_account": (1, 1)},
        "model": {"counterfeit": (1, 3), "adult": (1, 1), "game_account": (0, 1)},
        "combined": {"counterfeit": (2, 3), "adult": (0, 1), "game_account": (1, 1)},
    }
    # per-class precision of the model: counterfeit flags D, E, G, one of them positive
    assert counts(s["model"]["classes"]["counterfeit"]["precision"]) == (1, 3)
    assert s["combined"]["classes"]["counterfeit"] == {
        "flagged": 3,
        "hidden": 1,
        "recall": s["combined"]["classes"]["counterfeit"]["recall"],
        "precision": s["combined"]["classes"]["counterfeit"]["precision"],
    }  # fmt: skip  (A hidden, D and E reviewed)
    assert counts(s["combined"]["classes"]["counterfeit"]["precision"]) == (2, 3)
    cov = res["coverage"]
    assert cov["overall"] == {"positives": 5, "model_beyond_rules": 2, "rules_beyond_model": 2,
                              "both": 0, "neither": 1}  # fmt: skip
    assert cov["classes"]["counterfeit"] == {"positives": 3, "model_beyond_rules": 1,
                                             "rules_beyond_model": 1, "both": 0, "neither": 1}  # fmt: skip
    assert cov["classes"]["game_account"]["rules_beyond_model"] == 1
    per_rule = {r["id"]: r for r in res["rules"]}
    assert (per_rule["hide-cf"]["hits"], counts(per_rule["hide-cf"]["precision"])) == (1, (1, 1))
    assert per_rule["hide-cf"]["beyond_model"] == 1
    assert per_rule["review-game"]["hits"] == 2  # ＲＭＴ (full-width) matches RMT
    assert counts(per_rule["review-game"]["precision"]) == (1, 2)
    assert per_rule["review-game"]["beyond_model"] == 1
    assert counts(per_rule["allow-cf"]["precision"]) == (1, 1)  # right: D is clean
    assert (per_rule["allow-cf"]["lowered"], per_rule["allow-cf"]["lowered_clean"]) == (1, 1)
    assert per_rule["old-adult"]["active"] is False and per_rule["old-adult"]["hits"] == 0
    table = format_rules_table(res)
    assert "| rules + model | 1 | 4 | 0.600 (3/5) | 0.600 (3/5) | 1.000 (1/1) |" in table
    assert "| old-adult (expired) | review | adult | 0 |" in table
    assert "warning: r.yaml:6: rule old-adult expired" in table


def test_no_rules_leaves_the_model_alone():
    records, listings = snapshot()
    res = rules_comparison(records, listings, parse_rules("version: 1\nrules: []\n", "e"), TAX)
    assert res["systems"]["combined"] == res["systems"]["model"]
    assert res["systems"]["rules"]["reviewed"] == 0 and res["review_budget"]["dropped"] == 0
