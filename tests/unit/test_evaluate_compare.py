"""Champion vs challenger: the fast bootstrap AP, determinism, CIs and verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mmdetect.evaluate.bootstrap import (
    paired_bootstrap_ap,
    resample_counts,
    weighted_average_precision,
)
from mmdetect.evaluate.compare import compare, verdict
from mmdetect.evaluate.config import EvalConfig
from mmdetect.evaluate.predictions import PredictionRecord

TAX = ("a", "b", "c")
CFG = EvalConfig(bootstrap=200, seed=0)


def labels_and_noise(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(TAX))) < 0.2).astype(np.int64)
    return y, rng.random((n, len(TAX)))


def to_records(
    y: np.ndarray, s: np.ndarray, ids: list[str] | None = None
) -> list[PredictionRecord]:
    ids = ids or [f"L{i:04d}" for i in range(len(y))]
    return [
        PredictionRecord(
            id=i,
            scores={c: float(s[k, j]) for j, c in enumerate(TAX)},
            labels=tuple(c for j, c in enumerate(TAX) if y[k, j]),
        )
        for k, i in enumerate(ids)
    ]


def test_weighted_ap_equals_sklearn_on_the_resampled_listings() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(60) < 0.3).astype(np.int64)
    s = np.round(rng.random(60), 1)  # heavy ties
    counts = resample_counts(rng, 60, 30)
    assert (counts.sum(axis=1) == 60).all()
    ap = weighted_average_precision(y, s, counts)
    for row, value in zip(counts, ap, strict=True):
        idx = np.repeat(np.arange(60), row)
        expected = average_precision_score(y[idx], s[idx]) if y[idx].any() else np.nan
        np.testing.assert_allclose(value, expected, atol=1e-12)
    none = weighted_average_precision(np.zeros(60, dtype=np.int64), s, counts[:2])
    assert np.isnan(none).all()


def test_bootstrap_is_deterministic_and_paired() -> None:
    y, s = labels_and_noise()
    a1, b1 = paired_bootstrap_ap(y, s, s, 50, seed=7)
    a2, b2 = paired_bootstrap_ap(y, s, s, 50, seed=7)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(a1, b1)  # same resamples for both models
    a3, _ = paired_bootstrap_ap(y, s, s, 50, seed=8)
    assert not np.array_equal(a1, a3)


def test_better_worse_and_no_difference() -> None:
    y, noise = labels_and_noise()
    good, weak = to_records(y, 0.5 * y + 0.5 * noise), to_records(y, noise)
    better = compare(weak, good, TAX, CFG)
    assert better["verdict"] == "better"
    m = better["bootstrap"]["macro_average_precision"]
    assert m["ci_low"] > 0 and m["ci_low"] <= m["delta"] <= m["ci_high"]
    for c in TAX:
        b = better["bootstrap"]["classes"][c]
        assert b["ci_low"] <= b["delta"] <= b["ci_high"]
    assert compare(good, weak, TAX, CFG)["verdict"] == "worse"
    same = compare(good, good, TAX, CFG)
    assert same["verdict"] == "no significant difference"
    assert same["bootstrap"]["macro_average_precision"]["ci_low"] == 0.0
    assert same["delta"]["macro"]["average_precision"] == 0.0


def test_compare_is_deterministic() -> None:
    y, noise = labels_and_noise()
    a, b = to_records(y, noise), to_records(y, 0.2 * y + 0.8 * noise)
    assert compare(a, b, TAX, CFG) == compare(a, b, TAX, CFG)


def test_inner_join_reports_missing_ids_and_label_mismatches() -> None:
    y, noise = labels_and_noise(100)
    chal = to_records(y, noise)
    base = to_records(y, noise)[10:] + to_records(y[:2], noise[:2], ["X1", "X2"])
    other = () if base[0].labels else ("a",)
    base[0] = PredictionRecord(base[0].id, base[0].scores, other)  # relabeled since
    result = compare(base, chal, TAX, EvalConfig(bootstrap=20))
    assert result["n_common"] == 90
    assert result["missing_from_baseline"] == {
        "count": 10, "ids": [f"L{i:04d}" for i in range(10)],
    }  # fmt: skip
    assert result["missing_from_challenger"] == {"count": 2, "ids": ["X1", "X2"]}
    assert result["label_mismatches"] == {"count": 1, "ids": ["L0010"]}
    assert result["challenger"]["metrics"]["classes"]["a"]["count"] == 90


def test_worse_than_margin_flag() -> None:
    y, noise = labels_and_noise()
    s = 0.5 * y + 0.5 * noise
    s_worse = s.copy()
    s_worse[:, 1] = noise[:, 1]  # class b loses its signal, a and c unchanged
    result = compare(to_records(y, s), to_records(y, s_worse), TAX, CFG)
    flags = {c: b["worse_than_margin"] for c, b in result["bootstrap"]["classes"].items()}
    assert flags == {"a": False, "b": True, "c": False}
    assert result["classes_worse_than_margin"] == ["b"]
    assert "b" in result["verdict_line"]


def test_baseline_missing_a_class_compares_the_shared_ones() -> None:
    y, noise = labels_and_noise(100)
    base = [
        PredictionRecord(r.id, {k: v for k, v in r.scores.items() if k != "c"}, r.labels)
        for r in to_records(y, noise)
    ]
    result = compare(base, to_records(y, noise), TAX, EvalConfig(bootstrap=10))
    assert result["classes_compared"] == ["a", "b"]
    assert result["classes_skipped"] == ["c"]


def test_no_bootstrap_means_not_tested() -> None:
    y, noise = labels_and_noise(100)
    result = compare(to_records(y, noise), to_records(y, noise), TAX, EvalConfig(bootstrap=0))
    assert result["verdict"] == "not tested"
    assert result["bootstrap"]["macro_average_precision"]["ci_low"] is None


@pytest.mark.parametrize(
    ("ci", "word"),
    [((0.01, 0.2), "better"), ((-0.2, -0.01), "worse"), ((-0.1, 0.1), "no significant difference")],
)
def test_verdict_words(ci: tuple[float, float], word: str) -> None:
    assert verdict(ci) == word
