"""Operating points on constructed scores whose right answer is known in closed form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmdetect.policy import (
    PolicyConfig,
    PolicyError,
    check_operating_point,
    decide,
    fit_operating_point,
    load_policy,
    review_threshold,
    unfitted_operating_point,
)
from mmdetect.policy.calibration import (
    apply_calibration,
    fit_calibration,
    fit_platt,
    fit_temperature,
)
from mmdetect.policy.fit import RUNTIME_TOLERANCE, certify_hide
from mmdetect.policy.stats import interval, lower_bound, min_hits_to_certify, upper_bound

TAX = ["a", "b"]


def test_clopper_pearson_closed_forms():
    # k = n: the lower bound is alpha ** (1 / n); k = 0: the upper bound is 1 - alpha ** (1 / n)
    assert lower_bound(3, 3, 0.95) == pytest.approx(0.05 ** (1 / 3))
    assert upper_bound(0, 10, 0.95) == pytest.approx(1 - 0.05 ** (1 / 10))
    assert min_hits_to_certify(0.95, 0.95) == 59  # ln 0.05 / ln 0.95 = 58.4
    assert lower_bound(59, 59, 0.95) >= 0.95 > lower_bound(58, 58, 0.95)
    lo, hi = interval(5, 10, 0.95)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    assert interval(0, 0) is None
    # Wilson is narrower than the exact interval
    assert lower_bound(9, 10, 0.95, "wilson") > lower_bound(9, 10, 0.95)


def test_three_positives_never_certify():
    y = np.array([1, 1, 1] + [0] * 97)
    s = np.r_[[0.99, 0.98, 0.97], np.linspace(0.0, 0.5, 97)]
    entry = certify_hide(y, s, PolicyConfig(min_positives=1))
    assert entry["hide"] is None and entry["certified"] is False
    assert "59" in entry["note"]


def test_certify_at_exactly_59_clean_hits():
    y = np.array([1] * 59 + [0] * 200)
    s = np.r_[np.linspace(0.99, 0.9, 59), np.linspace(0.0, 0.5, 200)]
    entry = certify_hide(y, s, PolicyConfig(min_positives=30))
    assert entry["certified"] and entry["hide"] == pytest.approx(0.9 - RUNTIME_TOLERANCE, abs=1e-12)
    assert (s >= entry["hide"]).sum() == 59  # the certified set, and no listing more
    assert entry["evidence"]["hidden"] == 59 and entry["evidence"]["correct"] == 59
    # one positive fewer: 58 clean hits cannot reach 0.95 at 95 %
    y58, s58 = y[1:], s[1:]
    assert not certify_hide(y58, s58, PolicyConfig(min_positives=30))["certified"]


def test_fixed_sequence_stops_at_first_failure():
    # 100 clean hits, then 20 negatives, then 100 more positives: the cumulative precision
    # recovers further down (200/220 = 0.91 < 0.95 anyway) but the test stops at the first dip.
    y = np.array([1] * 100 + [0] * 20 + [1] * 100 + [0] * 300)
    s = np.linspace(1.0, 0.0, len(y))
    entry = certify_hide(y, s, PolicyConfig())
    assert entry["certified"]
    hidden = entry["evidence"]["hidden"]
    assert 100 <= hidden < 120  # never beyond the dip
    assert lower_bound(entry["evidence"]["correct"], hidden, 0.95) >= 0.95


def test_budget_of_five_percent_on_1000_queues_at_most_50():
    rng = np.random.default_rng(0)
    prio = rng.random(1000)
    t, rate = review_threshold(prio, np.zeros(1000, bool), 0.05)
    assert (prio >= t).sum() == 50 and rate == pytest.approx(0.05)
    # ties at the boundary are kept whole: a tie that would exceed the budget is left out
    tied = np.r_[np.full(60, 0.9), rng.random(940) * 0.5]
    t, rate = review_threshold(tied, np.zeros(1000, bool), 0.05)
    assert (tied >= t).sum() == 0 and rate == 0.0
    # hidden listings do not use review capacity
    hidden = prio >= np.sort(prio)[-10]
    t, _ = review_threshold(prio, hidden, 0.05)
    assert ((prio >= t) & ~hidden).sum() == 50


def test_weighted_budget():
    prio = np.array([0.9, 0.8, 0.7, 0.6])
    w = np.array([1.0, 1.0, 10.0, 88.0])  # the first two stand for 2 % of the weight
    t, rate = review_threshold(prio, np.zeros(4, bool), 0.05, w)
    assert t == pytest.approx(0.8 - RUNTIME_TOLERANCE, abs=1e-12) and rate == pytest.approx(0.02)


def test_thresholds_sit_between_scores_not_on_them():
    """A score 1e-7 lower in another runtime (ONNX Runtime vs torch) keeps its decision."""
    prio = np.array([0.9, 0.8, 0.8 - 4e-7, 0.6])
    t, _ = review_threshold(prio, np.zeros(4, bool), 0.5)
    assert prio[1] - 1e-7 >= t > prio[2]  # halfway when the next score is closer than 1e-6
    assert (prio >= t).sum() == 2


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(size=20000) * 3
    y = (rng.random(20000) < 1 / (1 + np.exp(-z / 2))).astype(float)  # true T = 2
    assert fit_temperature(y, 1 / (1 + np.exp(-z))) == pytest.approx(2.0, rel=0.05)


def test_platt_recovers_a_known_slope_and_intercept():
    # scores trained with pos_weight 4 are shifted by log 4: temperature cannot undo a shift
    rng = np.random.default_rng(4)
    z = rng.normal(-2.0, 2.0, size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.8 * z - 1.0)))).astype(float)
    a, b = fit_platt(y, 1 / (1 + np.exp(-z)))
    assert a == pytest.approx(0.8, rel=0.05) and b == pytest.approx(-1.0, abs=0.08)
    p = 1 / (1 + np.exp(-z))
    cal = {m: fit_calibration(y[:, None], p[:, None], ["a"], m) for m in ("platt", "temperature")}
    err = {
        m: abs(apply_calibration(c, p[:, None], ["a"]).mean() - y.mean()) for m, c in cal.items()
    }
    assert err["platt"] < 0.005 < err["temperature"]  # the mean is only right with an intercept


def test_isotonic_is_monotone_and_calibrates_in_sample():
    rng = np.random.default_rng(2)
    p = rng.random(3000)
    y = (rng.random(3000) < p**2).astype(np.int64)
    cal = fit_calibration(y[:, None], p[:, None], ["a"], "isotonic")
    out = apply_calibration(cal, np.sort(p)[:, None], ["a"]).ravel()
    assert np.all(np.diff(out) >= 0)
    assert abs(apply_calibration(cal, p[:, None], ["a"]).mean() - y.mean()) < 0.01


def _doc(hide_a=None, review=0.5, certified=True):
    doc = unfitted_operating_point(TAX)
    doc["review"]["threshold"] = review
    doc["severity"] = {"a": 1.0, "b": 0.5}
    doc["classes"]["a"].update(hide=hide_a, certified=certified)
    return doc


def test_decide_on_known_arrays():
    doc = _doc(hide_a=0.9, review=0.4)
    probs = np.array([[0.95, 0.0], [0.5, 0.0], [0.1, 0.9], [0.1, 0.7], [0.0, 0.0]])
    d = decide(doc, probs, TAX)
    assert d.overall.tolist() == [2, 1, 1, 0, 0]  # b weighs 0.5: 0.9 -> 0.45 >= 0.4, 0.7 -> 0.35
    assert d.priority.tolist() == pytest.approx([0.95, 0.5, 0.45, 0.35, 0.0])
    assert d.codes.tolist() == [[2, 0], [1, 0], [0, 1], [0, 0], [0, 0]]
    assert (d.codes.max(axis=1) == d.overall).all()
    assert d.tier_names(2, TAX) == ({"a": "pass", "b": "review"}, "review")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format_version=1), "format 1"),
        (lambda d: d.update(taxonomy=["b", "a"]), "taxonomy"),
        (lambda d: d["review"].update(threshold=None), "review.threshold"),
        (lambda d: d["classes"]["a"].update(hide=0.3), "below the review threshold"),
        (lambda d: d["classes"]["a"].update(certified=False), "not certified"),
        (lambda d: d["classes"]["a"].update(hide=1.5), "probability"),
        (lambda d: d["calibration"]["classes"]["a"].update(temperature=0), "temperature"),
        (lambda d: d["calibration"].update(method="magic"), "calibration.method"),
        (lambda d: d["calibration"]["classes"]["a"].update(slope=-1.0, intercept=0.0), "slope"),
        (
            lambda d: d["calibration"]["classes"]["a"].update(
                isotonic={"x": [0.5, 0.1], "y": [0, 1]}
            ),
            "breakpoints",
        ),
        (lambda d: d["severity"].update(b=-1), "severity.b"),
        (lambda d: d["policy"].update(review_budget=3), "review_budget"),
        (lambda d: d.pop("classes"), "classes"),
    ],
)
def test_refused_operating_points(mutate, message):
    doc = _doc(hide_a=0.9)
    check_operating_point(doc, TAX)  # the unmutated document is fine
    mutate(doc)
    with pytest.raises(PolicyError, match=message):
        check_operating_point(doc, TAX)


def test_fit_end_to_end_on_constructed_scores():
    rng = np.random.default_rng(3)
    n = 2000
    y = np.zeros((n, 2), dtype=np.int64)
    y[:200, 0] = 1  # class a: 200 positives, well separated
    y[200:210, 1] = 1  # class b: 10 positives: never auto-hides
    probs = np.clip(rng.normal(0.1, 0.05, size=(n, 2)), 0, 1)
    probs[:200, 0] = rng.uniform(0.6, 1.0, 200)
    probs[200:210, 1] = rng.uniform(0.6, 1.0, 10)
    doc = fit_operating_point(y, probs, TAX, PolicyConfig(severity={"b": 0.5}))
    check_operating_point(doc, TAX)
    json.dumps(doc, allow_nan=False)
    assert doc["classes"]["a"]["certified"] and not doc["classes"]["b"]["certified"]
    d = decide(doc, probs, TAX)
    hidden, review = (d.overall == 2), (d.overall == 1)
    assert review.sum() <= 0.05 * n
    assert review.sum() == pytest.approx(doc["review"]["fitted_rate"] * n)
    assert y[hidden, 0].mean() >= 0.95  # in-sample precision of what it hides
    assert math.isclose(doc["review"]["budget"], 0.05)


@pytest.mark.parametrize("path", sorted(Path("configs/policy").glob("*.yaml")), ids=str)
def test_every_policy_config_loads(path):
    policy = load_policy(path)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# mmdetect thresholds fit") and f"--policy {path}" in first
    assert 0 < policy.review_budget < 1 and policy.severities(["adult", "x"])["x"] == 1.0


def test_policy_file_and_per_day_budget(tmp_path):
    policy = load_policy("configs/policy/default.yaml")
    assert policy == PolicyConfig()
    assert PolicyConfig(review_per_day=100).budget(listings_per_day=10000) == 0.01
    assert PolicyConfig(review_per_day=10000).budget(listings_per_day=10000) == 0.05
    bad = tmp_path / "p.yaml"
    bad.write_text("review_budgett: 0.1\n")
    with pytest.raises(PolicyError, match="review_budgett"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="outside the taxonomy"):
        PolicyConfig(severity={"zzz": 1.0}).severities(TAX)


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic", "none"])
def test_the_documented_decision_rule_is_policy_decide(method):
    """docs/bundle-format.md's Python block (for consumers without mmdetect) == policy.decide."""
    text = Path("docs/bundle-format.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    code = next(b for b in blocks if "def decide(th, probs)" in b)
    scope: dict = {}
    exec(compile(code, "docs/bundle-format.md", "exec"), scope)  # our own doc, not user input
    rng = np.random.default_rng(5)
    y = (rng.random((600, 2)) < 0.2).astype(np.int64)
    probs = np.clip(0.5 * y + 0.6 * rng.random((600, 2)), 0, 1)
    doc = fit_operating_point(y, probs, TAX, PolicyConfig(calibration=method, min_positives=5,
                              hide_precision=0.8, hide_confidence=0.8, severity={"b": 0.5}))  # fmt: skip
    d = decide(doc, probs, TAX)
    for i in range(len(probs)):
        overall, priority, per, cal = scope["decide"](
            doc, dict(zip(TAX, probs[i].tolist(), strict=True))
        )
        assert (per, overall) == d.tier_names(i, TAX)
        assert priority == pytest.approx(d.priority[i], abs=1e-12)
    assert len(set(d.overall.tolist())) >= 2  # the tiers were exercised
