"""Model registry: the promotion rule, promote/refuse/force/rollback end to end with real bundles,
and the atomic `current` pointer under a concurrent reader.

Bundles: `tiny_assets`'s exported bundle ("good") and the same checkpoint with its head negated
("bad": every class ranked in reverse). The comparison snapshot is tiny_assets' drift/ relabeled
(through `feedback merge`) so that the good bundle ranks it perfectly: the bad one is then
certainly worse, whatever the untrained model's weights are.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmdetect import bundle as B
from mmdetect.cli import main
from mmdetect.evaluate.config import EvalConfig
from mmdetect.export import export_bundle
from mmdetect.feedback import merge_reviews
from mmdetect.registry import (
    BUNDLES,
    RegistryError,
    bundle_name,
    promote,
    promotion_decision,
    read_history,
    resolve_current,
    rollback,
    switch_current,
)
from tests.unit.test_export import Assets, small_config

pytestmark = pytest.mark.usefixtures("single_thread")

CFG = EvalConfig(bootstrap=200)  # enough resamples for a clear verdict, quick on 30 listings
TOP = 4  # positives per class in the relabeled snapshot


@dataclass(frozen=True)
class Pair:
    good: Path
    bad: Path
    snapshot: Path  # labeled so that `good` ranks every class perfectly
    config: Path  # evaluate config for the CLI (bootstrap 200)


@pytest.fixture(scope="module")
def pair(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    from mmdetect.scoring import score_snapshot

    base = tmp_path_factory.mktemp("registry_pair")
    ckpt = torch.load(assets.ckpt, weights_only=False)
    for key in ("net.head.weight", "net.head.bias"):
        ckpt["state_dict"][key] = -ckpt["state_dict"][key]
    torch.save(ckpt, base / "bad.ckpt")
    bad = base / "bad"
    export_bundle(base / "bad.ckpt", bad, small_config(), parity_snapshot=assets.drift)

    records, taxonomy, _ = score_snapshot(assets.bundle, assets.drift, num_workers=0)
    top = {c: {r.id for r in sorted(records, key=lambda r: -r.scores[c])[:TOP]} for c in taxonomy}
    reviews = base / "reviews.jsonl"
    reviews.write_text("".join(
        json.dumps({"id": r.id, "labels": [c for c in taxonomy if r.id in top[c]],
                    "reviewed_at": "2027-01-05T10:00:00+09:00"}) + "\n" for r in records
    ), encoding="utf-8")  # fmt: skip
    snapshot = base / "relabeled"
    merge_reviews(assets.drift, reviews, snapshot)
    config = base / "eval.yaml"
    config.write_text("bootstrap: 200\n", encoding="utf-8")
    return Pair(assets.bundle, bad, snapshot, config)


def variant(src: Path, dst: Path, tag: str) -> Path:
    """The same model with another thresholds note: a distinct bundle, identical scores."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / B.THRESHOLDS_FILE).read_text())
    B.write_json(dst / B.THRESHOLDS_FILE, {**doc, "note": tag})
    B.write_checksums(dst)
    return dst


def promote_cli(reg: Path, bundle: Path, pair: Pair, *extra: str) -> int:
    return main(["promote", "--registry", str(reg), "--bundle", str(bundle), "--on",
                 str(pair.snapshot), "--config", str(pair.config), *extra])  # fmt: skip


# ---- the rule ----------------------------------------------------------------------------


def comparison(verdict: str, class_deltas: dict[str, float], margin: float = 0.05) -> dict:
    """The parts of evaluate's comparison that the rule reads (champion AP 0.8 per class)."""
    macro = sum(class_deltas.values()) / len(class_deltas)
    ap = lambda d: {"average_precision": 0.8 + d}  # noqa: E731
    return {
        "verdict": verdict,
        "class_margin": margin,
        "bootstrap": {
            "macro_average_precision": {"delta": macro, "ci_low": macro - 0.02,
                                        "ci_high": macro + 0.02},
            "classes": {c: {"delta": d, "worse_than_margin": d < -margin}
                        for c, d in class_deltas.items()},
        },  # fmt: skip
        "baseline": {"metrics": {"macro": ap(0), "classes": {c: ap(0) for c in class_deltas}}},
        "challenger": {"metrics": {"macro": ap(macro),
                                   "classes": {c: ap(d) for c, d in class_deltas.items()}}},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("verdict", "deltas", "accepted", "words"),
    [
        ("better", {"a": 0.10, "b": 0.02}, True, []),
        ("no significant difference", {"a": 0.01, "b": -0.04}, True, []),
        ("not tested", {"a": 0.0, "b": 0.0}, True, []),
        ("no significant difference", {"a": 0.08, "b": -0.06}, False,
         ["b: AP 0.8000 -> 0.7400 (-0.0600)", "class margin 0.05"]),
        ("worse", {"a": -0.04, "b": -0.04}, False,
         ["macro AP significantly worse: 0.8000 -> 0.7600 (-0.0400, 95% CI -0.0600 .. -0.0200)"]),
    ],
)  # fmt: skip
def test_promotion_decision(verdict, deltas, accepted, words) -> None:
    decision = promotion_decision(comparison(verdict, deltas), CFG)
    assert decision.accepted is accepted
    assert len(decision.reasons) == (0 if accepted else 1)
    for w in words:
        assert w in decision.reasons[0]


# ---- end to end --------------------------------------------------------------------------


def test_first_accepted_worse_refused_force_recorded_rollback(pair, tmp_path, capsys) -> None:
    reg = tmp_path / "reg"
    good, bad = bundle_name(pair.good), bundle_name(pair.bad)
    assert promote_cli(reg, pair.good, pair) == 0
    assert resolve_current(reg) == (reg / BUNDLES / good).resolve()
    B.verify_checksums(resolve_current(reg))
    assert (pair.good / "model.ts").exists()  # copied in, the source stays
    first = read_history(reg)[0]
    assert (first["action"], first["previous"], first["metrics"]) == ("promote", None, None)
    assert "first promotion" in first["decision"]["reasons"][0]

    capsys.readouterr()
    assert promote_cli(reg, pair.bad, pair) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "macro AP significantly worse: 1.0000 -> " in out
    assert resolve_current(reg).name == good
    assert sorted(p.name for p in (reg / BUNDLES).iterdir()) == [good]  # nothing kept, no temp
    refused = read_history(reg)[1]
    m = refused["metrics"]
    assert (refused["action"], refused["bundle"], refused["previous"]) == ("refuse", bad, good)
    assert m["verdict"] == "worse" and m["champion_macro_ap"] == pytest.approx(1.0)
    assert m["challenger_macro_ap"] < 0.5 and m["delta"] < 0 and m["ci"][1] < 0
    assert m["n_listings"] == 30 and m["classes_worse_than_margin"]
    report = json.loads((reg / refused["report"] / "metrics.json").read_text())
    assert report["comparison"]["verdict"] == "worse"

    assert promote_cli(reg, pair.bad, pair, "--force") == 1
    assert "--force needs --reason" in capsys.readouterr().err
    assert promote_cli(reg, pair.bad, pair, "--force", "--reason", "hotfix for ticket 42") == 0
    assert "FORCED despite" in capsys.readouterr().out
    forced = read_history(reg)[2]
    assert (forced["action"], forced["forced"], forced["reason"]) == ("promote", True,
                                                                       "hotfix for ticket 42")  # fmt: skip
    assert forced["decision"]["accepted"] is False and forced["user"]
    assert resolve_current(reg).name == bad

    assert main(["rollback", "--registry", str(reg)]) == 0
    assert resolve_current(reg).name == good
    back = read_history(reg)[3]
    assert (back["action"], back["bundle"], back["previous"]) == ("rollback", good, bad)
    assert main(["rollback", "--registry", str(reg)]) == 1  # the first promotion: nothing before
    assert "nothing to roll back to" in capsys.readouterr().err
    with pytest.raises(RegistryError, match="already the current bundle"):
        promote(reg, pair.good, pair.snapshot, CFG)

    assert main(["registry", "--registry", str(reg)]) == 0
    listing = capsys.readouterr().out
    assert f"current: {good}" in listing and "FORCED reason: hotfix for ticket 42" in listing
    assert len(listing.strip().splitlines()) == 2 + 4
    assert main(["promote", "--registry", str(reg), "--list"]) == 0
    assert capsys.readouterr().out == listing


def test_a_better_challenger_is_promoted(pair, tmp_path) -> None:
    reg = tmp_path / "reg"
    assert promote(reg, pair.bad, pair.snapshot, CFG)["action"] == "promote"
    entry = promote(reg, pair.good, pair.snapshot, CFG)
    assert entry["action"] == "promote" and entry["metrics"]["verdict"] == "better"
    assert entry["forced"] is False and entry["decision"] == {"accepted": True, "reasons": []}
    assert resolve_current(reg).name == bundle_name(pair.good)
    with pytest.raises(RegistryError, match="plain directory name"):
        promote(reg, pair.bad, pair.snapshot, CFG, name="../elsewhere")


def test_readers_never_see_a_partial_bundle(pair, tmp_path, monkeypatch) -> None:
    for plot in ("pr_curves_png", "histograms_png"):  # empty PNGs: plotting is not tested here
        monkeypatch.setattr(f"mmdetect.evaluate.report.{plot}", lambda *a, **k: b"")
    reg = tmp_path / "reg"
    v1, v2 = (variant(pair.good, tmp_path / f"v{i}", f"variant {i}") for i in (1, 2))
    promote(reg, pair.good, pair.snapshot, CFG)
    stop, seen, errors = threading.Event(), set(), []

    def reader() -> None:
        n = 0
        while not stop.is_set():
            try:
                path = resolve_current(reg)  # resolve once, then read from that directory
                if path.name not in seen or n % 20 == 0:  # hashing is slow: not every time
                    B.verify_checksums(path)
                seen.add(path.name)
            except Exception as exc:  # noqa: BLE001 (any failure is the finding)
                errors.append(repr(exc))
            n += 1
            time.sleep(0.0002)  # leave the CPU to the promotions

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for v in (v1, v2, v1):  # v1 twice: the second time it is already under bundles/
            entry = promote(reg, v, pair.snapshot, CFG)
            assert entry["action"] == "promote", entry["decision"]  # same model: not worse
            rollback(reg)
        names = [bundle_name(pair.good), bundle_name(v1)]
        for i in range(300):  # and the bare pointer switch, many times
            switch_current(reg, names[i % 2])
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen <= {bundle_name(b) for b in (pair.good, v1, v2)} and len(seen) >= 2
    assert [e["action"] for e in read_history(reg)] == ["promote"] + ["promote", "rollback"] * 3
    assert all(not p.name.startswith(".") for p in reg.iterdir() if p.name != ".lock")
