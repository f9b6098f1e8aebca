"""`mmdetect thresholds fit`, `evaluate` and `predict` over a checkpoint trained by a fixture, on
generated snapshots: fitting is separate from judging, and evaluate and predict agree on every
listing's decision (labeled, unlabeled and all-clean snapshots)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmdetect.cli.commands import main
from tests.unit.test_reader import row, write_snapshot

LENIENT = (
    "# tiny test data: a lenient claim can be certified on a few positives\n"
    "review_budget: 0.1\nhide_precision: 0.5\nhide_confidence: 0.5\nmin_positives: 1\n"
)


@pytest.fixture(scope="module")
def fitted(tiny_checkpoint: Path, small_samples: Path, tmp_path_factory) -> Path:
    """thresholds.json fitted on September of the small train snapshot."""
    out = tmp_path_factory.mktemp("fit")
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"  # never inside --out
    policy.write_text(LENIENT, encoding="utf-8")
    code = main(["thresholds", "fit", "--model", str(tiny_checkpoint), "--snapshot",
                 str(small_samples / "train"), "--created-from", "2026-09-01", "--policy",
                 str(policy), "--out", str(out), "--num-workers", "0"])  # fmt: skip
    assert code == 0
    return out / "thresholds.json"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Path, small_samples: Path, fitted: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--thresholds", str(fitted),
                 "--parity-snapshot", str(small_samples / "drift"), "--out", str(out)]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def mid_bundle(
    tiny_checkpoint: Path, small_samples: Path, fitted: Path, bundle: Path, tmp_path_factory
) -> Path:
    """`bundle` with the review threshold moved to the median priority of the drift listings it
    does not hide: whatever a CPU's numerics do to the 2-epoch model's scores (the fitted
    threshold can review none of the drift listings), this one reviews about half of them."""
    work = tmp_path_factory.mktemp("mid")
    dec = work / "decisions.jsonl"
    assert main(["predict", "--bundle", str(bundle), "--input",
                 str(small_samples / "drift" / "listings.jsonl"), "--out", str(dec)]) == 0  # fmt: skip
    prio = [d["priority"] for d in map(json.loads, dec.open()) if d["decision"] != "hide"]
    doc = json.loads(fitted.read_text(encoding="utf-8"))
    doc["review"]["threshold"] = float(np.median(prio))
    moved = work / "thresholds.json"
    moved.write_text(json.dumps(doc), encoding="utf-8")
    out = work / "b"
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--thresholds", str(moved),
                 "--parity-snapshot", str(small_samples / "drift"), "--out", str(out)]) == 0  # fmt: skip
    return out


def test_fit_writes_a_fitted_operating_point(fitted: Path, capsys) -> None:
    doc = json.loads(fitted.read_text(encoding="utf-8"))
    assert doc["fitted"] is True and doc["format_version"] == 2
    assert doc["policy"]["review_budget"] == 0.1 and doc["source"]["created_from"] == "2026-09-01"
    assert doc["review"]["fitted_rate"] <= 0.1
    assert set(doc["calibration"]["classes"]) == set(doc["taxonomy"])


def test_a_checkpoint_needs_thresholds(
    tiny_checkpoint: Path, small_samples: Path, tmp_path, capsys
):
    code = main(["evaluate", "--model", str(tiny_checkpoint), "--snapshot",
                 str(small_samples / "drift"), "--out", str(tmp_path / "o"), "--num-workers", "0"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "serves no thresholds" in err and "mmdetect thresholds fit" in err


def variants(drift: Path, base: Path) -> dict[str, Path]:
    """The drift snapshot as is, without labels, and with every listing labeled clean."""
    rows = [json.loads(x) for x in (drift / "listings.jsonl").read_text("utf-8").splitlines()]
    out = {"labeled": drift}
    for name, change in (("unlabeled", lambda r: r.pop("labels", None)),
                         ("clean", lambda r: r.update(labels=[]))):  # fmt: skip
        root = base / name
        shutil.copytree(drift, root)
        for r in rows:
            change(r)
        (root / "listings.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        out[name] = root
    return out


@pytest.mark.parametrize("which", ["fitted", "mid"])
def test_evaluate_and_predict_agree_on_every_listing(
    which: str, request, small_samples: Path, tmp_path: Path, capsys
) -> None:
    bundle = request.getfixturevalue({"fitted": "bundle", "mid": "mid_bundle"}[which])
    reviewed = 0
    for name, snap in variants(small_samples / "drift", tmp_path).items():
        ev, dec = tmp_path / f"eval_{name}", tmp_path / f"decisions_{name}.jsonl"
        assert main(["evaluate", "--model", str(bundle), "--snapshot", str(snap), "--out", str(ev),
                     "--num-workers", "0"]) == 0  # fmt: skip
        assert main(["predict", "--bundle", str(bundle), "--input", str(snap / "listings.jsonl"),
                     "--out", str(dec)]) == 0  # fmt: skip
        preds = {p["id"]: p for p in map(json.loads, (ev / "predictions.jsonl").open())}
        decisions = [json.loads(x) for x in dec.open()]
        assert len(decisions) == len(preds) > 0
        for d in decisions:
            p = preds[d["id"]]
            assert (p["decision"], p["decisions"]) == (d["decision"], d["decisions"]), d["id"]
            assert p["priority"] == pytest.approx(d["priority"], abs=1e-6)
            assert p["scores"] == pytest.approx(d["scores"], abs=1e-6)
        metrics = json.loads((ev / "metrics.json").read_text())
        o = metrics["operating"]
        assert o["hidden"] == sum(d["decision"] == "hide" for d in decisions)
        assert o["reviewed"] == sum(d["decision"] == "review" for d in decisions)
        assert o["review_rate"]["ci"] is not None and o["hide_rate"]["ci"] is not None
        assert (metrics["metrics"] is None) is (name == "unlabeled")
        if name == "clean":
            assert o["false_hide_rate"]["count"] == o["hidden"]
        reviewed += o["reviewed"]
    if which == "mid":
        assert reviewed > 0  # the tiers were exercised, not all "pass"
    assert "no labels: rates only" in capsys.readouterr().out


def test_checkpoint_with_thresholds_decides_like_its_bundle(
    tiny_checkpoint: Path, bundle: Path, fitted: Path, small_samples: Path, tmp_path: Path
) -> None:
    runs = {}
    for name, extra in (("ckpt", ["--model", str(tiny_checkpoint), "--thresholds", str(fitted)]),
                        ("bundle", ["--model", str(bundle)])):  # fmt: skip
        out = tmp_path / name
        assert main(["evaluate", *extra, "--snapshot", str(small_samples / "drift"),
                     "--out", str(out), "--num-workers", "0"]) == 0  # fmt: skip
        runs[name] = {
            p["id"]: p["decision"] for p in map(json.loads, (out / "predictions.jsonl").open())
        }
    assert runs["ckpt"] == runs["bundle"]


def test_evaluate_with_baseline_and_period(
    tiny_checkpoint: Path, fitted: Path, small_samples: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    code = main(["evaluate", "--model", str(tiny_checkpoint), "--thresholds", str(fitted),
                 "--baseline", str(tiny_checkpoint), "--baseline-thresholds", str(fitted),
                 "--snapshot", str(small_samples / "train"), "--created-from", "2026-09-01",
                 "--out", str(out), "--num-workers", "0"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["value"] for s in metrics["slices"]["month"]] == ["2026-09"]
    comparison = metrics["comparison"]
    assert comparison["verdict"] == "no significant difference"  # a model against itself
    assert comparison["bootstrap"]["macro_average_precision"]["delta"] == pytest.approx(0.0)
    # recomputing from the predictions alone (their decisions, the thresholds.json beside them)
    again = tmp_path / "again"
    assert main(["evaluate", "--predictions", str(out / "predictions.jsonl"), "--out",
                 str(again)]) == 0  # fmt: skip
    redo = json.loads((again / "metrics.json").read_text())
    assert redo["metrics"] == metrics["metrics"] and redo["operating"] == metrics["operating"]


def test_evaluate_labels_outside_the_model_taxonomy(
    tiny_checkpoint: Path, fitted: Path, tmp_path: Path, capsys
) -> None:
    snap = write_snapshot(tmp_path / "snap", [row(1, labels=["phishing"]), row(2)])
    (snap / "snapshot.json").write_text(json.dumps({"taxonomy": ["phishing", "adult"]}))
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--thresholds", str(fitted),
                 "--snapshot", str(snap), "--out", str(tmp_path / "o"), "--num-workers", "0"]) == 1  # fmt: skip
    assert "phishing" in capsys.readouterr().err


def test_evaluate_shows_independent_sets_side_by_side(
    tiny_checkpoint: Path, fitted: Path, small_samples: Path, tmp_path: Path, capsys
) -> None:
    """--independent: each set scored by the same model under the same operating point; its
    figures are those evaluate gives that set on its own."""
    independent = Path(__file__).resolve().parents[2] / "data_samples" / "independent"
    base = ["evaluate", "--model", str(tiny_checkpoint), "--thresholds", str(fitted),
            "--num-workers", "0"]  # fmt: skip
    out = tmp_path / "gen"
    code = main([*base, "--snapshot", str(small_samples / "drift"), "--independent",
                 str(independent), "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "## Generalisation" in printed and str(independent) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    table = metrics["generalisation"]
    own = table["sets"][str(small_samples / "drift")]
    macro = metrics["metrics"]["macro"]["average_precision"]
    assert own["macro_ap"] == pytest.approx(macro)
    alone = tmp_path / "alone"
    assert main([*base, "--snapshot", str(independent), "--out", str(alone)]) == 0
    solo = json.loads((alone / "metrics.json").read_text())
    ind = table["sets"][str(independent)]
    assert ind["listings"] == 700 and ind["violating"] == 350
    assert ind["macro_ap"] == pytest.approx(solo["metrics"]["macro"]["average_precision"])
    for c, ap in ind["classes"].items():
        assert ap == pytest.approx(solo["metrics"]["classes"][c]["average_precision"])
    assert table["gap"][str(independent)] == pytest.approx(macro - ind["macro_ap"])
    assert (out / "generalisation.md").read_text().startswith("## Generalisation")
