"""Two-tier threshold choice and the decision table on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from mmdetect.evaluate.thresholds import choose_thresholds, decision_table, thresholds_document

# precision by threshold: .95:1 .9:1 .85:2/3 .8:3/4 .7:4/5 .6:2/3 .5:5/7 .4:5/8 .3:5/9 .2:1/2
# recall by threshold:    .95:.2 .9:.4 .85:.4 .8:.6 .7:.8 .6:.8 .5:1 (and 1 below)
S10 = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
Y10 = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0])


@pytest.mark.parametrize(
    ("target_precision", "target_recall", "hide", "review"),
    [
        (0.95, 0.9, 0.9, 0.5),  # lowest t with precision >= .95: .9; highest recall >= .9: .5
        (0.75, 0.8, 0.7, 0.7),  # .7 (4/5) is the lowest with precision >= .75; recall .8 at .7
        (0.75, 0.6, 0.7, 0.7),  # review would be .8 > hide .7: clamped to .7
        (1.0, 0.4, 0.9, 0.9),  # exact targets count: precision 1 and recall .4 both at .9
        (0.5, 1.0, 0.2, 0.2),  # hide at the lowest score (1/2): review .5 is clamped down to it
    ],
)
def test_exact_threshold_choice(
    target_precision: float, target_recall: float, hide: float, review: float
) -> None:
    t = choose_thresholds(Y10, S10, target_precision, target_recall)
    assert t["hide"] == hide
    assert t["review"] == review


def test_review_above_hide_is_clamped_with_a_note() -> None:
    t = choose_thresholds(Y10, S10, 0.75, 0.6)
    assert t["review"] == t["hide"] == 0.7
    assert "clamped" in t["note"]


def test_exact_precision_target_is_reached() -> None:
    # 19 positives above 1 negative above the rest: precision 19/20 must meet a 0.95 target
    s = np.linspace(1, 0.01, 100)
    y = np.zeros(100, dtype=np.int64)
    y[:19] = 1
    y[20] = 1
    t = choose_thresholds(y, s, 0.95, 0.9)
    assert t["hide"] == s[20]  # 20 positives in the top 21: 20/21 >= .95 is the lowest
    assert choose_thresholds(y[:20], s[:20], 0.95, 0.9)["hide"] == s[19]  # exactly 19/20


def test_unreachable_precision_hides_nothing() -> None:
    t = choose_thresholds(np.array([0, 1]), np.array([0.9, 0.1]), 0.95, 0.9)
    assert t["hide"] is None
    assert t["review"] == 0.1
    assert "unreachable" in t["note"] and "best 0.500" in t["note"]


def test_no_positives_gives_null_thresholds() -> None:
    t = choose_thresholds(np.zeros(5, dtype=np.int64), np.linspace(0, 1, 5), 0.95, 0.9)
    assert t["hide"] is None and t["review"] is None
    assert "no positives" in t["note"]


def test_thresholds_document_shape() -> None:
    y = np.stack([Y10, np.zeros(10, dtype=np.int64)], axis=1)
    s = np.stack([S10, S10], axis=1)
    doc = thresholds_document(y, s, ["a", "b"], 0.95, 0.9, {"snapshot": "drift", "model": "m.pt"})
    assert doc["taxonomy"] == ["a", "b"]
    assert doc["classes"]["a"] == {"hide": 0.9, "review": 0.5, "note": None}
    assert doc["classes"]["b"]["hide"] is None
    assert doc["source"] == {"snapshot": "drift", "model": "m.pt"}
    assert (doc["target_precision"], doc["target_recall"]) == (0.95, 0.9)


def test_decision_table_counts() -> None:
    # class a: hide >= .9, review [.5, .9); class b: hide nothing, review >= .85
    y = np.stack([Y10, np.zeros(10, dtype=np.int64)], axis=1)
    y[9, 1] = 1
    s = np.stack([S10, S10[::-1]], axis=1)  # b's scores: .2 .3 ... .95
    th = {"classes": {"a": {"hide": 0.9, "review": 0.5}, "b": {"hide": None, "review": 0.85}}}
    d = decision_table(y, s, ["a", "b"], th)
    assert d["classes"]["a"] == {
        "hide": 2, "review": 5, "pass": 3,
        "hide_positives": 2, "review_positives": 3, "pass_positives": 0,
    }  # fmt: skip
    assert d["classes"]["b"]["hide"] == 0
    assert d["classes"]["b"]["review"] == 3  # b >= .85 on the last 3 listings
    # per listing: rows 0-1 hidden by a; rows 2-6 reviewed by a; rows 7-9 reviewed by b
    assert d["overall"] == {
        "hide": 2, "review": 8, "pass": 0,
        "hide_positives": 2, "review_positives": 4, "pass_positives": 0,
    }  # fmt: skip
