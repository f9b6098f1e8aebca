"""Prediction files and the evaluation config: round trips and clear errors."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from mmdetect.evaluate import (
    EvalConfig,
    EvaluationError,
    PredictionRecord,
    load_eval_config,
    read_predictions,
    records_to_arrays,
    write_predictions,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "configs/evaluate/default.yaml"


def rec(i: int, labels=("b",), **scores) -> PredictionRecord:
    return PredictionRecord(
        id=f"L{i}",
        scores=scores or {"a": 0.1, "b": 0.8},
        labels=labels,
        created_at="2026-07-01T10:00:00+09:00",
        category="cards",
        n_photos=2,
    )


def test_predictions_round_trip(tmp_path: Path) -> None:
    records = [rec(1), rec(2, labels=None), rec(3, labels=())]
    path = write_predictions(tmp_path / "p.jsonl", records)
    back, taxonomy = read_predictions(path)
    assert back == records
    assert taxonomy == ("a", "b")


def test_records_to_arrays() -> None:
    y, s = records_to_arrays([rec(1), rec(2, labels=("a", "b"))], ["a", "b"])
    assert y.tolist() == [[0, 1], [1, 1]] and y.dtype == np.int64
    assert s.tolist() == [[0.1, 0.8], [0.1, 0.8]] and s.dtype == np.float64


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "p.jsonl:2: invalid JSON: Expecting value"),
        ("[1]", "p.jsonl:2: expected a JSON object"),
        ('{"scores": {"a": 0.1, "b": 0.2}}', "p.jsonl:2: id:"),
        (
            '{"id": "x", "scores": {"a": 1.5, "b": 0.2}}',
            "p.jsonl:2: scores.a: expected a probability",
        ),
        ('{"id": "x", "scores": {"a": 0.1}}', "p.jsonl:2: scores: classes differ"),
        ('{"id": "L1", "scores": {"a": 0.1, "b": 0.2}}', "p.jsonl:2: id: duplicate"),
        ('{"id": "x", "scores": {"a": 0.1, "b": 0.2}, "created_at": "soon"}', "created_at"),
        ('{"id": "x", "scores": {"a": 0.1, "b": 0.2}, "labels": "a"}', "p.jsonl:2: labels"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(rec(1).to_json()) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=message.replace(".", r"\.")):
        read_predictions(path)


def test_unlabeled_and_unknown_labels_are_clear_errors() -> None:
    with pytest.raises(EvaluationError, match="snapshot has no labels: evaluation needs labeled"):
        records_to_arrays([rec(1, labels=None)], ["a", "b"])
    with pytest.raises(EvaluationError, match=r"labels outside the taxonomy.*\['zz'\]"):
        records_to_arrays([rec(1, labels=("a", "zz"))], ["a", "b"])


def test_logits_instead_of_probabilities_are_rejected() -> None:
    with pytest.raises(EvaluationError, match="not probabilities"):
        records_to_arrays([rec(1, a=-2.0, b=3.0)], ["a", "b"])


def test_default_yaml_equals_the_dataclass_defaults() -> None:
    assert load_eval_config(DEFAULT_YAML) == EvalConfig() == load_eval_config(None)
    first = DEFAULT_YAML.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# mmdetect evaluate --model ")
    text = DEFAULT_YAML.read_text(encoding="utf-8")
    assert all(f"\n{f.name}:" in text for f in fields(EvalConfig))  # every setting is shown


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ece_bins: 5\ntarget_recal: 0.8\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match="target_recal"):
        load_eval_config(path)


@pytest.mark.parametrize(
    "bad",
    [{"precision_at_recall": [1.5]}, {"recall_at_precision": [0.0]}, {"slices": ["weekday"]},
     {"ece_bins": 0}],
)  # fmt: skip
def test_bad_config_values(bad: dict) -> None:
    with pytest.raises(EvaluationError, match="config"):
        EvalConfig(**bad)
