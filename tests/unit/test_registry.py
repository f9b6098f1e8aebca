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

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.artifacts.registry_history import read_history
from mmdetect.artifacts.registry_layout import BUNDLES, resolve_current
from mmdetect.cli.commands import main
from mmdetect.evaluate.config import EvalConfig
from mmdetect.evaluate.predictions import PredictionRecord, records_to_arrays
from mmdetect.ops.export import export_bundle
from mmdetect.ops.feedback import merge_reviews
from mmdetect.ops.promotion import false_hide_gate, promotion_decision
from mmdetect.ops.registry import (
    RegistryError,
    bundle_name,
    switch_current,
)
from mmdetect.ops.registry_promote import promote, rollback
from mmdetect.policy import PolicyConfig, fit_operating_point
from mmdetect.policy.io import write_operating_point
from tests.unit.test_export import Assets, small_config

pytestmark = pytest.mark.usefixtures("single_thread")

CFG = EvalConfig(bootstrap=200)  # enough resamples for a clear verdict, quick on 30 listings
# 4 positives per class can certify only a lenient claim; the review budget fits 30 listings
LENIENT = PolicyConfig(review_budget=0.3, min_positives=1, hide_precision=0.5, hide_confidence=0.5)
TOP = 4  # positives per class in the relabeled snapshot


@dataclass(frozen=True)
class Pair:
    good: Path
    bad: Path
    snapshot: Path  # labeled so that `good` ranks every class perfectly
    config: Path  # evaluate config for the CLI (bootstrap 200)


@pytest.fixture(scope="module")
def pair(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    from mmdetect.serving.scoring import score_snapshot

    base = tmp_path_factory.mktemp("registry_pair")
    ckpt = torch.load(assets.ckpt, weights_only=False)
    for key in ("net.head.weight", "net.head.bias"):
        ckpt["state_dict"][key] = -ckpt["state_dict"][key]
    torch.save(ckpt, base / "bad.ckpt")

    records, taxonomy, _, _ = score_snapshot(assets.bundle, assets.drift, num_workers=0)
    top = {c: {r.id for r in sorted(records, key=lambda r: -r.scores[c])[:TOP]} for c in taxonomy}
    reviews = base / "reviews.jsonl"
    reviews.write_text("".join(
        json.dumps({"id": r.id, "labels": [c for c in taxonomy if r.id in top[c]],
                    "reviewed_at": "2026-11-05T10:00:00+09:00"}) + "\n" for r in records
    ), encoding="utf-8")  # fmt: skip
    snapshot = base / "relabeled"
    merge_reviews(assets.drift, reviews, snapshot)
    # an operating point fitted on the good model's scores (lenient: 4 positives per class)
    records, taxonomy, _, _ = score_snapshot(assets.bundle, snapshot, num_workers=0)
    y, s = records_to_arrays(records, taxonomy)
    doc = fit_operating_point(y, s, taxonomy, LENIENT)
    write_operating_point(base / "thresholds.json", doc)
    good, bad = base / "good", base / "bad"
    export_bundle(assets.ckpt, good, small_config(), base / "thresholds.json", assets.drift)
    export_bundle(base / "bad.ckpt", bad, small_config(), base / "thresholds.json", assets.drift)
    config = base / "eval.yaml"
    config.write_text("bootstrap: 200\n", encoding="utf-8")
    return Pair(good, bad, snapshot, config)


def variant(src: Path, dst: Path, tag: str) -> Path:
    """The same model with another thresholds note: a distinct bundle, identical scores."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / bundle_format.THRESHOLDS_FILE).read_text())
    B.write_json(dst / bundle_format.THRESHOLDS_FILE, {**doc, "note": tag})
    bundle_format.write_checksums(dst)
    return dst


def promote_cli(reg: Path, bundle: Path, pair: Pair, *extra: str) -> int:
    return main(["promote", "--registry", str(reg), "--bundle", str(bundle), "--on",
                 str(pair.snapshot), "--config", str(pair.config), *extra])  # fmt: skip


# ---- the rule ----------------------------------------------------------------------------


def _rec(i: int, decision: str, labels: tuple[str, ...] | None = ()) -> PredictionRecord:
    return PredictionRecord(f"L{i}", {"a": 0.5}, labels, decision=decision)


@pytest.mark.parametrize(
    ("only_challenger", "only_champion", "passed"),
    [(6, 0, False), (5, 0, False), (4, 0, True), (8, 2, True), (10, 1, False), (0, 0, True)],
)
def test_false_hide_gate_is_an_exact_mcnemar_test(only_challenger, only_champion, passed):
    # one-sided exact test p = P(X >= b), X ~ Binomial(b + c, 1/2): 5 of 5 = 1/32 refuses,
    # 4 of 4 = 1/16 does not; 8 of 10 = 56/1024 = 0.055 does not; 10 of 11 = 12/2048 refuses
    n = 40
    base = [_rec(i, "hide" if only_challenger <= i < only_challenger + only_champion else "pass")
            for i in range(n)]  # fmt: skip
    chal = [_rec(i, "hide" if i < only_challenger else "pass") for i in range(n)]
    chal += [_rec(99, "hide", ("a",))]  # a prohibited listing: not counted
    gate = false_hide_gate(base, chal)
    b, c = only_challenger, only_champion
    from math import comb

    p = sum(comb(b + c, k) for k in range(b, b + c + 1)) / 2 ** (b + c) if b + c else 1.0
    assert gate["p_value"] == pytest.approx(p)
    assert gate["clean_listings"] == n and gate["only_challenger_hides"] == b
    assert gate["passed"] is passed is (p >= 0.05)


def test_promotion_decision_lists_failed_gates() -> None:
    gates = {"a": {"passed": True, "reason": "x"}, "b": {"passed": False, "reason": "why b"}}
    decision = promotion_decision(gates)
    assert decision.accepted is False and decision.reasons == ("why b",)
    assert promotion_decision({"a": {"passed": True, "reason": "x"}}).accepted


# ---- end to end --------------------------------------------------------------------------


def test_first_accepted_worse_refused_force_recorded_rollback(pair, tmp_path, capsys) -> None:
    reg = tmp_path / "reg"
    good, bad = bundle_name(pair.good), bundle_name(pair.bad)
    assert promote_cli(reg, pair.good, pair) == 0
    assert resolve_current(reg) == (reg / BUNDLES / good).resolve()
    bundle_format.verify_checksums(resolve_current(reg))
    assert (pair.good / "model.ts").exists()  # copied in, the source stays
    first = read_history(reg)[0]
    assert (first["action"], first["previous"], first["metrics"]) == ("promote", None, None)
    assert "first promotion" in first["decision"]["reasons"][0]
    assert first["gates"]["operating_point"]["passed"] is True

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
    gates = refused["gates"]
    assert set(gates) == {"operating_point", "review_load", "false_hides", "macro_ap", "class_ap"}
    assert gates["operating_point"]["passed"] and not gates["macro_ap"]["passed"]
    assert gates["review_load"]["budget"] == pytest.approx(0.3)

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


def test_unfitted_thresholds_are_refused(assets, tmp_path, capsys) -> None:
    reg = tmp_path / "reg"
    entry = promote(reg, assets.bundle, assets.drift, CFG)  # exported without --thresholds
    assert entry["action"] == "refuse" and "not fitted" in entry["decision"]["reasons"][0]
    assert not (reg / "current").exists()


def test_a_better_challenger_is_promoted(pair, tmp_path) -> None:
    reg = tmp_path / "reg"
    assert promote(reg, pair.bad, pair.snapshot, CFG)["action"] == "promote"
    entry = promote(reg, pair.good, pair.snapshot, CFG)
    assert entry["action"] == "promote" and entry["metrics"]["verdict"] == "better"
    assert entry["forced"] is False and entry["decision"] == {"accepted": True, "reasons": []}
    assert resolve_current(reg).name == bundle_name(pair.good)
    with pytest.raises(RegistryError, match="use 1-128 of A-Z a-z 0-9"):
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
                    bundle_format.verify_checksums(path)
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
