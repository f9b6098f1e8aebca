"""Traffic prevalence: weighted estimators, re-weighted certification, a weighted review budget
and evaluate's traffic figures, on constructed data whose traffic-level answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmdetect.data.reader import read_snapshot
from mmdetect.evaluate import EvalConfig, evaluate_records
from mmdetect.evaluate.operating import apply_operating_point, rate
from mmdetect.evaluate.predictions import prediction_from_listing
from mmdetect.evaluate.report import build_sections, format_console
from mmdetect.evaluate.traffic import sampling_design
from mmdetect.policy import PolicyConfig, PolicyError, fit_operating_point, review_threshold
from mmdetect.policy.design import certification_sample
from mmdetect.policy.fit import certify_hide
from mmdetect.policy.weighted import effective_n, weighted_rate

PI = 0.01  # traffic prevalence
POS, NEG = (0.3, 1.0), (0.0, 0.72)  # score ~ U(POS) for prohibited, U(NEG) for clean


def traffic_precision(t: float) -> float:
    """Closed form: precision of `score >= t` on traffic (uniform scores, prevalence PI)."""
    s1 = max(0.0, POS[1] - t) / (POS[1] - POS[0])
    s0 = max(0.0, NEG[1] - t) / (NEG[1] - NEG[0])
    return PI * s1 / (PI * s1 + (1 - PI) * s0)


def enriched_sample(n_traffic: int = 2_000_000, seed: int = 0):
    """Traffic at 1 % prevalence; user reports catch 60 % of prohibited and 0.6 % of clean
    listings, so the reported listings are ~50 % prohibited. Reported listings are sampled at
    0.5, the rest at 0.002 (a random audit). Returns (y, s, w) of the sample and the traffic."""
    rng = np.random.default_rng(seed)
    y = rng.random(n_traffic) < PI
    s = np.where(y, rng.uniform(*POS, n_traffic), rng.uniform(*NEG, n_traffic))
    reported = rng.random(n_traffic) < np.where(y, 0.6, 0.006)
    incl = np.where(reported, 0.5, 0.002)
    take = rng.random(n_traffic) < incl
    return y[take], s[take], 1.0 / incl[take], (y, s)


def test_equal_weights_give_exactly_the_unweighted_figures():
    hit, among = np.arange(40) % 3 == 0, np.arange(40) < 30
    got, want = weighted_rate(hit, among, np.full(40, 500.0)), rate((hit & among).sum(), 30)
    assert got["value"] == want["value"] and got["ci"] == want["ci"] and got["n_eff"] == 30
    assert effective_n(np.array([1.0, 1.0, 2.0])) == pytest.approx(16 / 6)


def test_reweighted_precision_matches_full_traffic_within_its_interval():
    y, s, w, (ty, ts) = enriched_sample()
    assert 0.3 < y.mean() < 0.45  # the sample is heavily enriched; traffic is 1 %
    t = 0.70
    truth, on_traffic = traffic_precision(t), ty[ts >= t].mean()
    assert on_traffic == pytest.approx(truth, abs=0.01)  # the closed form is right
    weighted = weighted_rate(y, s >= t, w)
    assert weighted["ci"][0] <= truth <= weighted["ci"][1]
    assert weighted["ci"][0] <= on_traffic <= weighted["ci"][1]
    assert weighted["n_eff"] < weighted["of"]  # unequal weights widen the interval
    naive = rate((y & (s >= t)).sum(), (s >= t).sum())
    assert naive["ci"][0] > 3 * truth  # the snapshot figure is not a traffic figure


def test_reweighted_interval_covers_the_traffic_precision():
    """Over 300 enriched samples drawn stratum by stratum, the 95 % interval of the re-weighted
    precision at t = 0.7 covers the closed-form traffic precision close to 95 % of the time."""
    rng, n, t = np.random.default_rng(3), 2_000_000, 0.70
    # (prohibited, share of traffic, inclusion probability) per stratum: reported or not
    strata = [(1, PI * 0.6, 0.5), (1, PI * 0.4, 0.002),
              (0, (1 - PI) * 0.006, 0.5), (0, (1 - PI) * 0.994, 0.002)]  # fmt: skip
    covered = 0
    for _ in range(300):
        ys, ss, ws = [], [], []
        for pos, share, incl in strata:
            k = rng.binomial(int(n * share), incl)
            ys.append(np.full(k, bool(pos)))
            ss.append(rng.uniform(*(POS if pos else NEG), k))
            ws.append(np.full(k, 1 / incl))
        y, s, w = np.concatenate(ys), np.concatenate(ss), np.concatenate(ws)
        lo, hi = weighted_rate(y, s >= t, w)["ci"]
        covered += lo <= traffic_precision(t) <= hi
    assert 0.90 <= covered / 300 <= 1.0


def test_reweighted_certification_holds_on_traffic_where_the_snapshot_one_does_not():
    y, s, w, _ = enriched_sample(seed=1)
    policy = PolicyConfig(hide_precision=0.8, min_positives=10)
    weighted = certify_hide(y.astype(np.int64), s, policy, w)
    naive = certify_hide(y.astype(np.int64), s, policy)
    assert weighted["certified"] and naive["certified"]
    assert traffic_precision(weighted["hide"]) >= 0.8  # true traffic precision meets the target
    assert traffic_precision(naive["hide"]) < 0.3  # enriched: certified far too low
    assert weighted["evidence"]["weighted"] and "effective" in weighted["note"]
    # equal weights change nothing (a random sample)
    same = certify_hide(y.astype(np.int64), s, policy, np.full(len(y), 500.0))
    assert same["hide"] == pytest.approx(naive["hide"])


def test_weighted_review_budget_meets_the_traffic_quantile():
    """10 % of traffic has priority ~ U(0.5, 1), sampled at 0.5; 90 % ~ U(0, 0.5) at 0.01. A 5 %
    budget reviews priority >= 0.75 on traffic (0.1 x (1 - t) / 0.5 = 0.05)."""
    rng = np.random.default_rng(2)
    high, low = rng.uniform(0.5, 1, 5000), rng.uniform(0, 0.5, 900)
    prio = np.r_[high, low]
    w = np.r_[np.full(5000, 2.0), np.full(900, 100.0)]
    t, share = review_threshold(prio, np.zeros(len(prio), bool), 0.05, w)
    assert t == pytest.approx(0.75, abs=0.01) and share <= 0.05
    t_naive, _ = review_threshold(prio, np.zeros(len(prio), bool), 0.05)
    assert t_naive > 0.95  # unweighted, the budget is a share of the enriched sample
    # through fit_operating_point: one class, identity calibration, labeled calibration listings
    y = np.r_[np.ones(40), np.zeros(60)][:, None].astype(np.int64)
    probs = np.r_[np.linspace(0.6, 1, 40), np.linspace(0, 0.6, 60)][:, None]
    doc = fit_operating_point(y, probs, ["a"], PolicyConfig(calibration="none"),
                              prio[:, None], w)  # fmt: skip
    assert doc["review"]["threshold"] == pytest.approx(0.75, abs=0.01)
    assert doc["review"]["fitted_on"] == "traffic"


def test_traffic_per_day_is_the_weighted_volume_over_the_period():
    from mmdetect.ops.traffic_fit import per_day

    recs = [prediction_from_listing(x, {"a": 0.1, "b": 0.1}) for x in _listings(60)]
    assert per_day(recs, np.full(60, 500.0), "2026-09-01", "2026-10-01") == pytest.approx(1000)
    assert per_day(recs, None, "2026-09-01", "2026-10-01") == pytest.approx(2)
    assert per_day(recs[:1], None) is None  # no span, no volume


def _listings(n: int):
    from datetime import datetime

    from mmdetect.data.records import Listing

    t = datetime.fromisoformat("2026-09-02T10:00:00+09:00")
    return [Listing(f"L{i}", "t", "", 1, "toys", (), t, ()) for i in range(n)]


def test_certification_sample_modes():
    incl = np.array([0.002] * 6 + [np.nan] * 4)
    pos = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1, 1], bool)
    rows, w, rec = certification_sample(incl, pos, "auto", min_positives=2)
    assert rec["basis"] == "random_subset" and rows.sum() == 6 and w is None
    rows, w, rec = certification_sample(incl, pos, "auto", min_positives=3)
    assert rec["basis"] == "enriched" and rows.all() and not rec["traffic_figures"]
    assert "NOT a traffic figure" in rec["note"]
    rows, w, rec = certification_sample(np.r_[[0.002] * 6, [0.5] * 4], pos, "auto", 30)
    assert rec["basis"] == "weighted" and rows.all() and w.tolist() == [500] * 6 + [2] * 4
    assert certification_sample(np.full(10, 0.1), pos, "auto", 30)[2]["basis"] == "random"
    assert certification_sample(incl, pos, "snapshot", 1)[2]["basis"] == "snapshot"
    with pytest.raises(PolicyError, match="no labeled listing has a known inclusion"):
        certification_sample(np.full(3, np.nan), pos[:3], "random", 1)


# ---- evaluate's traffic figures on a real snapshot --------------------------------------------
TAX = ["a", "b"]


def write_snapshot(root: Path, rows: list[dict], sampling: list[dict]) -> Path:
    root.mkdir(parents=True)
    (root / "listings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    (root / "snapshot.json").write_text(json.dumps({"taxonomy": TAX, "sampling": sampling}))
    return root


def mixed_rows() -> list[dict]:
    """100 random listings (2 prohibited 'a'), 50 queue listings (25 prohibited 'a')."""
    rows = []
    for i in range(150):
        subset, k = ("traffic", i) if i < 100 else ("queue", i - 100)
        labels = ["a"] if (subset == "traffic" and k < 2) or (subset == "queue" and k < 25) else []
        rows.append({"id": f"L{i:03d}", "title": f"item {i}", "description": "", "price": 100,
                     "category": "toys", "images": [], "created_at": "2026-10-02T10:00:00+09:00",
                     "labels": labels, "subset": subset})  # fmt: skip
    return rows


def scored(snap, hide_ids: set[str], review_ids: set[str]):
    """Records whose raw score of 'a' hides (0.95), reviews (0.6) or passes (0.1) them."""
    recs = []
    for x in snap.listings:
        a = 0.95 if x.id in hide_ids else 0.6 if x.id in review_ids else 0.1
        recs.append(prediction_from_listing(x, {"a": a, "b": 0.0}))
    doc = fit_operating_point(
        np.zeros((2, 2)), np.zeros((2, 2)), TAX, PolicyConfig(calibration="none")
    )
    doc["review"].update(threshold=0.5, budget=0.05)
    doc["classes"]["a"].update(hide=0.9, certified=True)
    return apply_operating_point(recs, doc, TAX), doc


@pytest.mark.parametrize("queue_rate", [0.5, None])
def test_evaluate_traffic_figures_on_a_mixed_snapshot(tmp_path, queue_rate):
    sampling = [{"subset": "traffic", "design": "random", "rate": 0.01},
                {"subset": "queue", "design": "review_queue", "rate": queue_rate}]  # fmt: skip
    snap = read_snapshot(write_snapshot(tmp_path / "s", mixed_rows(), sampling), strict=True)
    # hidden: L000 (prohibited, random), L100..L119 (prohibited, queue), L125 + L140 (clean, queue)
    hide = {"L000", *(f"L{i}" for i in range(100, 120)), "L125", "L140"}
    # reviewed: L001 (prohibited) + L010 (clean), L120..L124 (prohibited) + L126..L129 (clean)
    review = {"L001", "L010", *(f"L{i}" for i in range(120, 130) if i != 125)}
    records, doc = scored(snap, hide, review)
    result = evaluate_records(records, TAX, EvalConfig(), doc, traffic=sampling_design(snap))
    t = result["operating"]["traffic"]
    if queue_rate is None:
        assert not t["available"] and t["basis"] == "enriched"
        assert "not traffic figures" in t["note"]
        assert "not available" in format_console(result)
        return
    assert t["basis"] == "weighted" and t["available"]
    # closed form: random listings weigh 100, queue listings 2
    assert t["estimated_traffic_listings"] == pytest.approx(100 * 100 + 50 * 2)
    assert t["prevalence"]["value"] == pytest.approx((2 * 100 + 25 * 2) / 10100)
    assert t["hide_precision"]["value"] == pytest.approx((100 + 20 * 2) / (100 + 22 * 2))
    assert t["recall_at_review"]["value"] == pytest.approx((2 * 100 + 25 * 2) / 250)
    assert t["hide_rate"]["value"] == pytest.approx((100 + 22 * 2) / 10100)
    assert t["review_rate"]["value"] == pytest.approx((2 * 100 + 9 * 2) / 10100)
    w = np.r_[np.full(100, 100.0), np.full(50, 2.0)]
    hidden = np.isin([r.id for r in records], sorted(hide))
    assert t["hide_rate"]["n_eff"] == pytest.approx(effective_n(w))
    lo, hi = t["hide_precision"]["ci"]
    assert lo < t["hide_precision"]["value"] < hi
    assert t["hide_precision"]["n_eff"] == pytest.approx(effective_n(w[hidden]))
    # the snapshot figures are unchanged (unweighted)
    assert result["operating"]["hide_precision"]["value"] == pytest.approx(21 / 23)
    titles = [s.title for s in build_sections(result)]
    assert "Expected on traffic" in titles
    assert "traffic auto-hide precision" in format_console(result)


def test_random_snapshot_traffic_figures_equal_the_snapshot_figures(tmp_path):
    rows = [r for r in mixed_rows() if r["subset"] == "traffic"]
    sampling = [{"subset": "traffic", "design": "random", "rate": 0.002}]
    snap = read_snapshot(write_snapshot(tmp_path / "s", rows, sampling), strict=True)
    records, doc = scored(snap, {"L000", "L050"}, {"L001", "L002"})
    result = evaluate_records(records, TAX, EvalConfig(), doc, traffic=sampling_design(snap))
    o, t = result["operating"], result["operating"]["traffic"]
    assert t["basis"] == "random" and t["equal_to_snapshot"]
    for key in ("hide_rate", "review_rate", "hide_precision", "recall_at_review"):
        assert (t[key]["value"], t[key]["ci"]) == (o[key]["value"], o[key]["ci"]), key
    assert t["estimated_traffic_listings"] == pytest.approx(100 * 500)


def test_cli_fits_the_budget_on_traffic_and_evaluate_reports_traffic(tmp_path, monkeypatch, capsys):
    """`thresholds fit --traffic` and `evaluate` wiring, with scores faked from the listing id."""
    from mmdetect.cli import operating as operating_cli

    def fake_score(model, args, traffic=False):
        snap = read_snapshot(args.traffic if traffic else args.snapshot)
        recs = [prediction_from_listing(x, {"a": (int(x.id[1:]) % 97) / 97, "b": 0.01})
                for x in snap.listings]  # fmt: skip
        return recs, tuple(TAX), snap, None

    monkeypatch.setattr(operating_cli, "_score", fake_score)
    rows = mixed_rows()
    cal = write_snapshot(tmp_path / "cal", [{**r, "subset": "queue"} for r in rows],
                         [{"subset": "queue", "design": "enriched_by_score"}])  # fmt: skip
    unlabeled = [
        {k: v for k, v in r.items() if k != "labels"} | {"subset": "traffic"} for r in rows
    ]
    trf = write_snapshot(tmp_path / "trf", unlabeled,
                         [{"subset": "traffic", "design": "random", "rate": 0.002}])  # fmt: skip
    out = tmp_path / "thr"
    argv = ["fit", "--model", "m", "--snapshot", str(cal), "--traffic", str(trf), "--out", str(out)]
    assert operating_cli.thresholds_main(argv) == 0
    doc = json.loads((out / "thresholds.json").read_text())
    traffic = doc["review"]["traffic"]
    assert traffic["basis"] == "random" and traffic["weighting"] == "inclusion weights"
    assert traffic["estimated_traffic_listings"] == pytest.approx(150 * 500)
    assert doc["review"]["fitted_on"] == "traffic" and doc["review"]["fitted_rate"] <= 0.05
    assert doc["certification"]["basis"] == "enriched"
    assert not doc["certification"]["traffic_figures"]
    ev = tmp_path / "ev"
    argv = ["--model", "m", "--thresholds", str(out / "thresholds.json"), "--snapshot", str(trf),
            "--out", str(ev)]  # fmt: skip
    assert operating_cli.evaluate_main(argv) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["operating"]["traffic"]["basis"] == "random"
    assert "Expected on traffic" in (ev / "report.md").read_text()
    # recomputed from the predictions alone: sampling.json beside them carries the design
    from mmdetect.evaluate.run import evaluate_predictions_main

    again = tmp_path / "again"
    assert evaluate_predictions_main(["--predictions", str(ev / "predictions.jsonl"),
                                      "--out", str(again)]) == 0  # fmt: skip
    redo = json.loads((again / "metrics.json").read_text())
    assert redo["operating"]["traffic"] == metrics["operating"]["traffic"]
    (ev / "sampling.json").write_text('{"design": {}, "inclusion_prob": {"L000": 2}}')
    assert evaluate_predictions_main(["--predictions", str(ev / "predictions.jsonl"),
                                      "--out", str(again)]) == 1  # fmt: skip
    assert "sampling.json: no inclusion_prob for listing 'L001'" in capsys.readouterr().err
    # a traffic period without --traffic is refused, not ignored
    argv = ["fit", "--model", "m", "--snapshot", str(cal), "--traffic-created-from", "2026-09-01",
            "--out", str(tmp_path / "x")]  # fmt: skip
    assert operating_cli.thresholds_main(argv) == 1
    assert "need --traffic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        operating_cli.thresholds_main([*argv[:-2], "--traffic", str(trf), "--traffic-created-to",
                                       "October", "--out", str(tmp_path / "x")])  # fmt: skip
