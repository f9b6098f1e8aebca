"""Slices, the whole evaluation, the report files and the `--predictions` front end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mmdetect.evaluate import (
    SCHEMA_VERSION,
    EvalConfig,
    PredictionRecord,
    evaluate_predictions_main,
    evaluate_records,
    format_console,
    read_predictions,
    run_evaluation,
    write_predictions,
)
from mmdetect.evaluate.operating import apply_operating_point
from mmdetect.evaluate.predictions import records_to_arrays
from mmdetect.evaluate.slices import slice_value
from mmdetect.policy import PolicyConfig, decide, fit_operating_point

TAX = ("a", "b", "c")
CFG = EvalConfig(bootstrap=50, min_slice_support=20)
POLICY = PolicyConfig(review_budget=0.1, min_positives=5, hide_precision=0.8)


def strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def make_records(n: int = 120, seed: int = 0, signal: float = 0.5) -> list[PredictionRecord]:
    """Months 2026-06 (n - 10 listings) and 2026-07 (10); class c never positive."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, 3)) < 0.25
    y[:, 2] = False
    s = signal * y + (1 - signal) * rng.random((n, 3))
    return [
        PredictionRecord(
            id=f"L{i:04d}",
            scores={c: float(s[i, j]) for j, c in enumerate(TAX)},
            labels=tuple(c for j, c in enumerate(TAX) if y[i, j]),
            created_at="2026-07-02T10:00:00+09:00" if i < 10 else "2026-06-30T23:30:00+09:00",
            category="cards" if i % 2 else None,
            n_photos=i % 3,
        )
        for i in range(n)
    ]


def fitted(seed: int = 1) -> dict:
    """An operating point fitted on other records of the same kind (a calibration split)."""
    cal = make_records(400, seed=seed)
    y, s = records_to_arrays(cal, TAX)
    return fit_operating_point(y, s, TAX, POLICY, source={"snapshot": "cal"})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    doc = fitted()
    records = apply_operating_point(make_records(), doc, TAX)
    baseline = apply_operating_point(make_records(seed=0, signal=0.2)[5:], doc, TAX)
    source = {"snapshot": "data_samples/drift", "model": "m.ckpt"}
    return out, run_evaluation(records, TAX, CFG, out, doc, baseline=baseline, source=source)


def test_slice_values() -> None:
    r = make_records(12)
    assert slice_value(r[11], "month") == "2026-06"  # local date as written, no UTC shift
    assert slice_value(r[0], "month") == "2026-07"
    assert (slice_value(r[0], "category"), slice_value(r[1], "category")) == ("(none)", "cards")
    assert [slice_value(x, "has_photo") for x in r[:3]] == ["no", "yes", "yes"]


def test_slices_by_month(run) -> None:
    _, result = run
    months = result["slices"]["month"]
    assert [m["value"] for m in months] == ["2026-06", "2026-07"]
    june, july = months
    assert june["count"] == 110 and july["count"] == 10
    assert june["macro_average_precision"] is not None and june["n_classes"] == 2
    assert june["average_precision"]["c"] is None
    assert 0 <= june["flag_rate"] <= 1
    assert july["macro_average_precision"] is None and july["flag_rate"] is None
    assert "fewer than 20" in july["note"]
    first10 = make_records()[:10]
    assert july["support"] == {c: sum(c in r.labels for r in first10) for c in TAX}


def test_result_shape_and_strict_json(run) -> None:
    out, result = run
    loaded = strict_json((out / "metrics.json").read_text(encoding="utf-8"))
    assert loaded == json.loads(json.dumps(result))
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["n_listings"] == 120 and loaded["n_labeled"] == 120
    assert loaded["metrics"]["classes"]["c"]["average_precision"] is None
    assert loaded["metrics"]["classes"]["c"]["note"] == "no positives in this snapshot"
    assert loaded["comparison"]["n_common"] == 115
    assert loaded["comparison"]["verdict"] == "better"
    assert set(loaded["slices"]) == {"month", "category", "has_photo"}
    o = loaded["operating"]
    assert o["hidden"] + o["reviewed"] + o["passed"] == 120
    assert o["review_budget"] == 0.1
    lo, hi = o["review_rate"]["ci"]
    assert lo <= o["review_rate"]["value"] <= hi


def test_decisions_in_predictions_are_those_of_the_operating_point(run) -> None:
    out, result = run
    doc = strict_json((out / "thresholds.json").read_text(encoding="utf-8"))
    assert doc["source"]["snapshot"] == "cal" and doc["fitted"] is True
    records, _ = read_predictions(out / "predictions.jsonl")
    raw = np.array([[r.model_scores[c] for c in TAX] for r in records])
    d = decide(doc, raw, TAX)
    assert [r.decision for r in records] == [d.tier_names(i, TAX)[1] for i in range(len(raw))]
    assert sum(r.decision == "hide" for r in records) == result["operating"]["hidden"]
    # the realised figures by hand: hidden listings that carry any label
    hidden = [r for r in records if r.decision == "hide"]
    hp = result["operating"]["hide_precision"]
    assert hp["count"] == sum(bool(r.labels) for r in hidden) and hp["of"] == len(hidden)


def test_report_files(run) -> None:
    out, _ = run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<img alt="') == 2
    assert '<img alt="Precision-recall curves" src="data:image/png;base64,iVBOR' in html
    assert "Champion vs challenger" in html and "Drift by month" in html
    assert "Decisions of the served operating point" in html and "Calibration" in html
    assert "<link" not in html and "<script" not in html  # self-contained
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| macro |" in md and "![Score histograms](score_histograms.png)" in md
    assert (out / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "baseline_predictions.jsonl").exists()


def test_console_summary(run) -> None:
    _, result = run
    text = format_console(result)
    assert text.splitlines()[0].split()[:3] == ["class", "pos", "AP"]
    assert "review rate" in text and "budget 10.0%" in text
    assert "challenger vs baseline: better" in text


def test_unlabeled_snapshot_reports_rates_and_hidden_listings(tmp_path: Path) -> None:
    doc = fitted()
    records = [replace(r, labels=None) for r in make_records(200, seed=5)]
    records = apply_operating_point(records, doc, TAX)
    result = run_evaluation(records, TAX, EvalConfig(slices=("month",)), tmp_path, doc)
    o = result["operating"]
    assert result["metrics"] is None and result["n_labeled"] == 0
    n_hide = sum(r.decision == "hide" for r in records)
    assert o["hidden"] == n_hide and o["hidden_listings"]["count"] == n_hide
    assert o["hide_rate"]["value"] == pytest.approx(n_hide / 200) and o["hide_rate"]["ci"]
    assert o["hide_precision"] is None and o["classes"]["a"]["positives"] is None
    assert "no labels: rates only" in format_console(result)
    assert (tmp_path / "report.html").exists() and not (tmp_path / "pr_curves.png").exists()


def test_all_clean_snapshot_counts_false_hides(tmp_path: Path) -> None:
    doc = fitted()
    records = [replace(r, labels=()) for r in make_records(200, seed=6)]
    records = apply_operating_point(records, doc, TAX)
    o = evaluate_records(records, TAX, EvalConfig(slices=()), doc)["operating"]
    hidden = sum(r.decision == "hide" for r in records)
    assert o["false_hide_rate"]["count"] == hidden and o["false_hide_rate"]["of"] == 200
    assert o["recall_at_review"]["value"] is None  # no prohibited listing to recall


def test_cli_recomputes_from_predictions(run, tmp_path: Path, capsys) -> None:
    out, result = run
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bootstrap: 10\nslices: [month]\n", encoding="utf-8")
    pred = out / "predictions.jsonl"
    code = evaluate_predictions_main(
        ["--predictions", str(pred), "--config", str(cfg), "--out", str(tmp_path / "o")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "macro" in printed and f"report: {tmp_path / 'o' / 'report.html'}" in printed
    metrics = strict_json((tmp_path / "o/metrics.json").read_text(encoding="utf-8"))
    assert metrics["source"]["predictions"] == str(pred)
    assert metrics["operating"]["hidden"] == result["operating"]["hidden"]
    assert list(metrics["slices"]) == ["month"]


def test_cli_applies_another_operating_point(run, tmp_path: Path) -> None:
    out, _ = run
    other = fitted(seed=7)
    other["review"]["threshold"] = 2.0  # severity x probability never reaches 2: no review
    for c in TAX:  # and no auto-hide (a hide threshold below review is refused)
        other["classes"][c].update(hide=None, certified=False)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(other), encoding="utf-8")
    code = evaluate_predictions_main(["--predictions", str(out / "predictions.jsonl"),
                                      "--thresholds", str(path), "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "o/metrics.json").read_text(encoding="utf-8"))
    assert metrics["operating"]["reviewed"] == 0 and metrics["operating"]["hidden"] == 0
    assert metrics["operating"]["passed"] == 120


def test_cli_refuses_edited_decisions(run, tmp_path: Path, capsys) -> None:
    out, _ = run
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text("utf-8").splitlines()]
    victim = next(r for r in rows if r["decision"] == "pass")
    victim["decision"] = "hide"  # what an edited file, or another operating point, would say
    edited = tmp_path / "p"
    edited.mkdir()
    (edited / "predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    (edited / "thresholds.json").write_bytes((out / "thresholds.json").read_bytes())
    code = evaluate_predictions_main(
        ["--predictions", str(edited / "predictions.jsonl"), "--out", str(tmp_path / "o")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "1 stored decisions differ" in err and victim["id"] in err


def test_cli_errors_are_clear(tmp_path: Path, capsys) -> None:
    pred = write_predictions(tmp_path / "p.jsonl", make_records(5))  # no decisions, no thresholds
    code = evaluate_predictions_main(["--predictions", str(pred), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "pass --thresholds FILE" in capsys.readouterr().err
