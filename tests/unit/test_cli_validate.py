"""`mmdetect validate` on real files: summary printed, strict exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from mmdetect.cli.commands import main
from tests.unit.test_reader import row, write_snapshot


def test_validate_prints_summary_and_problems(tmp_path: Path, capsys) -> None:
    rows = [row(1, labels=["adult"]), row(2, price=-3), row(3)]
    path = write_snapshot(tmp_path, rows)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rows       2" in out
    assert "adult" in out and "bad_price" in out and "listings.jsonl:2" in out


def test_validate_strict_fails_with_location(tmp_path: Path, capsys) -> None:
    path = write_snapshot(tmp_path, [row(1), row(2, labels=["nope"])])
    assert main(["validate", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "listings.jsonl:2: labels:" in err and "nope" in err


def test_validate_json(tmp_path: Path, capsys) -> None:
    path = write_snapshot(tmp_path, [row(1, labels=["adult", "counterfeit"])])
    assert main(["validate", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"]["adult"] == 1 and summary["multi_label"] == 1


def test_unknown_command(capsys) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
