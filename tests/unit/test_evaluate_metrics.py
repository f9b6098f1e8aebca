"""Metric values on hand-computed cases, and cross-checks against scikit-learn / torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torchmetrics.functional.classification import (
    binary_precision_at_fixed_recall,
    binary_recall_at_fixed_precision,
)

from mmdetect.evaluate.config import EvalConfig
from mmdetect.evaluate.curves import (
    binary_curve,
    precision_at_recall,
    rates_at,
    recall_at_precision,
)
from mmdetect.evaluate.metrics import (
    average_precision,
    class_metrics,
    expected_calibration_error,
    macro_average,
    roc_auc,
    summarize_metrics,
)

# 10 listings, 5 positives; worked out by hand in the comments of each test
S10 = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
Y10 = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0])


def test_curve_counts_by_hand() -> None:
    c = binary_curve(Y10, S10)
    assert c.thresholds.tolist() == S10.tolist()
    assert c.tp.tolist() == [1, 2, 2, 3, 4, 4, 5, 5, 5, 5]
    assert c.fp.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 4, 5]


def test_ap_auc_by_hand() -> None:
    # AP = 0.2 * (1 + 1 + 3/4 + 4/5 + 5/7); AUC = pairs ranked right / 25 = 21/25
    assert average_precision(Y10, S10) == pytest.approx(
        0.2 * (1 + 1 + 0.75 + 0.8 + 5 / 7), abs=1e-6
    )
    assert roc_auc(Y10, S10) == pytest.approx(21 / 25, abs=1e-6)


def test_operating_points_by_hand() -> None:
    c = binary_curve(Y10, S10)
    assert precision_at_recall(c, 0.8) == pytest.approx(0.8)  # t = 0.7: 4 of 5 flagged
    assert precision_at_recall(c, 0.9) == pytest.approx(5 / 7)  # t = 0.5: all 5 in 7 flagged
    assert recall_at_precision(c, 0.9) == pytest.approx(0.4)  # t = 0.9: 2 of 2 flagged
    assert recall_at_precision(c, 0.75) == pytest.approx(0.8)  # t = 0.7: precision 4/5
    never = binary_curve(np.array([0, 1]), np.array([0.9, 0.1]))
    assert recall_at_precision(never, 0.95) == 0.0


def test_rates_at_threshold_by_hand() -> None:
    assert rates_at(Y10, S10, 0.7) == pytest.approx({"precision": 0.8, "recall": 0.8, "f1": 0.8})
    # t = 0.5: 7 flagged, 5 true -> P 5/7, R 1, F1 = 10 / 12
    r = rates_at(Y10, S10, 0.5)
    assert r == pytest.approx({"precision": 5 / 7, "recall": 1.0, "f1": 10 / 12})
    assert rates_at(Y10, S10, None) == {"precision": None, "recall": 0.0, "f1": 0.0}


def test_ece_by_hand() -> None:
    # 2 bins: [0, .5) holds .2 and .4 (mean .3, 1 of 2 positive); [.5, 1] holds .6 and .8
    # (mean .7, both positive): ECE = .5 * |.3 - .5| + .5 * |.7 - 1| = 0.25
    y, s = np.array([0, 1, 1, 1]), np.array([0.2, 0.4, 0.6, 0.8])
    assert expected_calibration_error(y, s, n_bins=2) == pytest.approx(0.25, abs=1e-6)


def test_curve_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(np.int64)
    s = np.round(rng.random(300) * 0.5 + y * 0.3, 2)  # rounding makes many ties
    c = binary_curve(y, s)
    p, r, t = precision_recall_curve(y, s)
    # sklearn: ascending thresholds, a final (1, 0) point; ours: descending, no extra point
    np.testing.assert_allclose(c.thresholds[::-1], t)
    np.testing.assert_allclose(c.precision[::-1], p[:-1])
    np.testing.assert_allclose(c.recall[::-1], r[:-1])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_match_sklearn_and_torchmetrics_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.15).astype(np.int64)
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-5)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-5)
    c = binary_curve(y, s)
    prec, rec, _ = precision_recall_curve(y, s)
    ts, ty = torch.from_numpy(s).float(), torch.from_numpy(y)
    for r in (0.5, 0.8, 0.9):
        assert precision_at_recall(c, r) == pytest.approx(prec[rec >= r].max())
        expected = float(binary_precision_at_fixed_recall(ts, ty, min_recall=r)[0])
        assert precision_at_recall(c, r) == pytest.approx(expected, abs=1e-5)
    for p in (0.5, 0.7):
        assert recall_at_precision(c, p) == pytest.approx(rec[prec >= p].max())
        # float32 input: with float64 torchmetrics compares float32 precisions in float64, so an
        # exact 0.7 (e.g. 28/40) reads 0.69999999 and misses the target (ours counts exactly)
        expected = float(binary_recall_at_fixed_precision(ts, ty, min_precision=p)[0])
        assert recall_at_precision(c, p) == pytest.approx(expected, abs=1e-5)


def test_class_without_positives_is_null_with_note() -> None:
    y, s = np.zeros(10, dtype=np.int64), np.linspace(0, 0.9, 10)
    m = class_metrics(y, s, EvalConfig())
    assert m["support"] == 0 and m["count"] == 10
    assert m["average_precision"] is None and m["roc_auc"] is None
    assert m["precision_at_recall"] == {"0.8": None, "0.9": None}
    assert m["recall_at_precision"] == {"0.9": None, "0.95": None}
    assert m["ece"] is not None  # calibration is defined without positives
    assert m["note"] == "no positives in this snapshot"


def test_all_positive_class_has_ap_but_no_auc() -> None:
    m = class_metrics(np.ones(5, dtype=np.int64), np.linspace(0.1, 0.9, 5), EvalConfig())
    assert m["average_precision"] == pytest.approx(1.0)
    assert m["roc_auc"] is None and "no negatives" in m["note"]


def test_macro_skips_nulls_and_counts_classes() -> None:
    blocks = [
        {"average_precision": 0.5, "at_review": {"f1": 0.2}, "support": 3, "note": None},
        {"average_precision": None, "at_review": {"f1": None}, "support": 0, "note": "x"},
        {"average_precision": 0.9, "at_review": {"f1": 0.4}, "support": 1, "note": None},
    ]
    macro = macro_average(blocks)
    assert macro["average_precision"] == pytest.approx(0.7)
    assert macro["at_review"] == pytest.approx({"f1": 0.3})
    assert macro["n_classes"] == {"average_precision": 2, "at_review": {"f1": 2}}
    assert "support" not in macro


def test_summary_macro_and_micro_against_sklearn() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random((200, 3)) < 0.2).astype(np.int64)
    y[:, 2] = 0
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    tax = ["a", "b", "c"]
    m = summarize_metrics(y, s, tax, EvalConfig())
    per_class = [average_precision_score(y[:, j], s[:, j]) for j in range(2)]
    assert m["macro"]["average_precision"] == pytest.approx(np.mean(per_class), abs=1e-5)
    assert m["macro"]["n_classes"]["average_precision"] == 2
    assert m["micro"]["average_precision"] == pytest.approx(
        average_precision_score(y.ravel(), s.ravel()), abs=1e-5
    )
    assert m["micro"]["count"] == 600 and m["micro"]["support"] == int(y.sum())
