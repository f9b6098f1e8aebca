"""Slices, the whole evaluation, the report files and the `--predictions` front end."""

from __future__ import annotations

import json
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
from mmdetect.evaluate.slices import slice_value
from mmdetect.evaluate.thresholds import decision_table

TAX = ("a", "b", "c")
CFG = EvalConfig(bootstrap=50, min_slice_support=20)


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


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    records = make_records()
    baseline = make_records(seed=0, signal=0.2)[5:]
    source = {"snapshot": "data_samples/drift", "model": "m.ckpt"}
    return out, run_evaluation(records, TAX, CFG, out, baseline=baseline, source=source)


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
    assert loaded["n_listings"] == 120
    assert loaded["metrics"]["classes"]["c"]["average_precision"] is None
    assert loaded["metrics"]["classes"]["c"]["note"] == "no positives in this snapshot"
    assert loaded["comparison"]["n_common"] == 115
    assert loaded["comparison"]["verdict"] == "better"
    assert set(loaded["slices"]) == {"month", "category", "has_photo"}


def test_thresholds_json_round_trips(run) -> None:
    out, result = run
    doc = strict_json((out / "thresholds.json").read_text(encoding="utf-8"))
    assert doc == result["thresholds"]
    assert doc["taxonomy"] == list(TAX)
    assert doc["source"] == {"snapshot": "data_samples/drift", "model": "m.ckpt"}
    assert doc["classes"]["c"] == {
        "hide": None, "review": None,
        "note": "no positives in this snapshot: hides and reviews nothing",
    }  # fmt: skip
    records, _ = read_predictions(out / "predictions.jsonl")
    y = np.array([[c in r.labels for c in TAX] for r in records])
    s = np.array([[r.scores[c] for c in TAX] for r in records])
    assert decision_table(y, s, TAX, doc) == result["decisions"]  # reloaded file -> same decisions


def test_report_files(run) -> None:
    out, _ = run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<img alt="') == 2
    assert '<img alt="Precision-recall curves" src="data:image/png;base64,iVBOR' in html
    assert "Champion vs challenger" in html and "Drift by month" in html
    assert "<link" not in html and "<script" not in html  # self-contained
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| macro |" in md and "![Score histograms](score_histograms.png)" in md
    assert (out / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "baseline_predictions.jsonl").exists()


def test_console_summary(run) -> None:
    _, result = run
    text = format_console(result)
    assert text.splitlines()[0].split()[:3] == ["class", "pos", "AP"]
    assert "macro (2 classes)" in text and "challenger vs baseline: better" in text


def test_unlabeled_records_are_skipped_and_counted() -> None:
    records = make_records(40)
    records[0] = PredictionRecord(records[0].id, records[0].scores, None)
    result = evaluate_records(records, TAX, EvalConfig(slices=("month",)))
    assert (result["n_listings"], result["n_unlabeled_skipped"]) == (39, 1)
    assert result["comparison"] is None


def test_cli_recomputes_from_predictions(tmp_path: Path, capsys) -> None:
    pred = write_predictions(tmp_path / "p.jsonl", make_records(60))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bootstrap: 10\nslices: [month]\n", encoding="utf-8")
    code = evaluate_predictions_main(
        ["--predictions", str(pred), "--config", str(cfg), "--out", str(tmp_path / "o")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "macro" in printed and f"report: {tmp_path / 'o' / 'report.html'}" in printed
    metrics = strict_json((tmp_path / "o/metrics.json").read_text(encoding="utf-8"))
    assert metrics["source"]["predictions"] == str(pred)
    assert list(metrics["slices"]) == ["month"]


def test_cli_errors_are_clear(tmp_path: Path, capsys) -> None:
    unlabeled = [PredictionRecord(r.id, r.scores, None) for r in make_records(5)]
    pred = write_predictions(tmp_path / "p.jsonl", unlabeled)
    code = evaluate_predictions_main(["--predictions", str(pred), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "snapshot has no labels: evaluation needs labeled listings" in capsys.readouterr().err
