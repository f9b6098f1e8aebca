"""`mmdetect evaluate` over a checkpoint trained by a fixture, on generated snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmdetect.cli import main
from tests.unit.test_reader import row, write_snapshot


def test_evaluate_checkpoint_writes_report(
    tiny_checkpoint: Path, small_samples: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(tiny_checkpoint), "--snapshot", str(small_samples / "drift"),
                 "--out", str(out), "--num-workers", "0"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    n = sum(1 for _ in (small_samples / "drift/listings.jsonl").open())
    assert metrics["n_listings"] == n
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n and all(0 <= p <= 1 for r in preds for p in r["scores"].values())
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds["taxonomy"] == metrics["taxonomy"]
    assert "report:" in capsys.readouterr().out
    # recomputing from predictions alone gives the same metrics
    again = tmp_path / "again"
    assert (
        main(["evaluate", "--predictions", str(out / "predictions.jsonl"), "--out", str(again)])
        == 0
    )
    assert json.loads((again / "metrics.json").read_text())["metrics"] == metrics["metrics"]


def test_evaluate_with_baseline_and_period(
    tiny_checkpoint: Path, small_samples: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    code = main(["evaluate", "--model", str(tiny_checkpoint), "--baseline", str(tiny_checkpoint),
                 "--snapshot", str(small_samples / "train"), "--created-from", "2026-09-01",
                 "--out", str(out), "--num-workers", "0"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["value"] for s in metrics["slices"]["month"]] == ["2026-09"]
    comparison = metrics["comparison"]
    assert comparison["verdict"] == "no significant difference"  # a model against itself
    assert comparison["bootstrap"]["macro_average_precision"]["delta"] == pytest.approx(0.0)


def test_evaluate_unlabeled_snapshot_is_a_clear_error(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    r = row(1)
    del r["labels"]
    snap = write_snapshot(tmp_path / "snap", [r])
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--snapshot", str(snap),
                 "--out", str(tmp_path / "o"), "--num-workers", "0"]) == 1  # fmt: skip
    assert "no labels" in capsys.readouterr().err


def test_evaluate_labels_outside_the_model_taxonomy(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    snap = write_snapshot(tmp_path / "snap", [row(1, labels=["phishing"]), row(2)])
    (snap / "snapshot.json").write_text(json.dumps({"taxonomy": ["phishing", "adult"]}))
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--snapshot", str(snap),
                 "--out", str(tmp_path / "o"), "--num-workers", "0"]) == 1  # fmt: skip
    assert "phishing" in capsys.readouterr().err
