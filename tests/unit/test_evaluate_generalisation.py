"""evaluate.generalisation: figures of a set under the operating point, the gap table."""

from __future__ import annotations

import pytest

from mmdetect.evaluate.generalisation import format_generalisation, generalisation, set_figures
from mmdetect.evaluate.predictions import PredictionRecord

TAX = ("a", "b")


def _r(i: int, labels, sa: float, sb: float, decision: str) -> PredictionRecord:
    per = {"a": decision if "a" in labels else "pass", "b": "pass"}
    return PredictionRecord(id=str(i), scores={"a": sa, "b": sb}, labels=tuple(labels),
                            decision=decision, decisions=per)  # fmt: skip


def test_set_figures_values():
    recs = [_r(0, ["a"], 0.9, 0.1, "hide"), _r(1, ["a"], 0.4, 0.2, "pass"),
            _r(2, [], 0.5, 0.3, "review"), _r(3, [], 0.1, 0.9, "pass"),
            _r(4, ["b"], 0.2, 0.8, "review")]  # fmt: skip
    f = set_figures(recs, TAX)
    # a: positives 0 (0.9) and 1 (0.4) ranked 1st and 3rd: AP = (1 + 2/3) / 2
    assert f["classes"]["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert f["classes"]["b"] == pytest.approx(0.5)  # its one positive ranked 2nd (0.9 above)
    assert f["macro_ap"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert f["violating"] == 3 and f["recall_at_operating_point"] == pytest.approx(2 / 3)
    assert f["hidden_share_of_violating"] == pytest.approx(1 / 3)
    assert f["clean_hidden"] == 0.0 and f["clean_to_review"] == pytest.approx(0.5)


def test_gap_and_table():
    good = [_r(0, ["a"], 0.9, 0.1, "hide"), _r(1, [], 0.1, 0.1, "pass"),
            _r(2, ["b"], 0.1, 0.9, "review")]  # fmt: skip
    bad = [_r(0, ["a"], 0.1, 0.1, "pass"), _r(1, [], 0.9, 0.9, "hide"),
           _r(2, ["b"], 0.1, 0.1, "pass")]  # fmt: skip
    doc = generalisation(("val", good), [("ind", bad)], TAX)
    assert doc["sets"]["val"]["macro_ap"] == 1.0
    assert doc["gap"]["ind"] == pytest.approx(1.0 - doc["sets"]["ind"]["macro_ap"])
    text = format_generalisation(doc)
    assert "| val | 3 | 2 | 1.000 | - |" in text and "| ind | 3 | 2 |" in text
    assert "| a | 1.000 |" in text
