"""The Label Studio round trip without a server: labeling config, audit selection, tasks,
import of a real Label Studio 1.23.2 export (tests/fixtures/labelstudio, written by
scripts/labelstudio_fixture.py against a live server), hostile exports, traffic estimates."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdetect.cli.commands import main as cli
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.ops.review.estimate import estimate
from mmdetect.ops.review.importer import task_reviews
from mmdetect.ops.review.labeling import labeling_config
from mmdetect.ops.review.selection import Design, select, uniform
from mmdetect.ops.review.tasks import evidence_results, utf16_offset

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "labelstudio"
REPO = Path(__file__).resolve().parents[2]
TAX = list(DEFAULT_TAXONOMY)
NOW = datetime(2026, 12, 31, tzinfo=timezone.utc)


def ours() -> dict[str, dict]:
    return {
        t["data"]["listing_id"]: t["data"] for t in json.loads((FIXTURE / "tasks.json").read_text())
    }


def export() -> list[dict]:
    return json.loads((FIXTURE / "export.json").read_text())


def row(i: int, tier: str, priority: float = 0.5) -> dict:
    return {"id": f"L{i:06d}", "decision": tier, "priority": priority,
            "decisions": {c: "pass" for c in TAX}, "scores": {c: 0.1 for c in TAX}}  # fmt: skip


def test_committed_labeling_config_is_the_generated_one():
    committed = (REPO / "configs/review/labeling.xml").read_text().split("\n", 1)[1]
    assert committed == labeling_config(TAX)
    view = ET.fromstring(committed)
    choices = [c.get("value") for c in view.iter("Choice")]
    assert choices == [*TAX, "none"]
    assert {c.get("name") for c in view.iter("TextArea")} == {"note"}


def test_labeling_config_refuses_a_reserved_or_repeated_class():
    with pytest.raises(ValueError, match="reserved"):
        labeling_config(["counterfeit", "none"])
    with pytest.raises(ValueError, match="repeats"):
        labeling_config(["a", "a"])


def test_selection_takes_the_review_tier_whole_and_audits_at_the_rates():
    rows = [
        row(i, tier) for i, tier in enumerate(["review"] * 50 + ["pass"] * 20000 + ["hide"] * 2000)
    ]
    design = Design(pass_rate=0.05, hide_rate=0.2, seed=3)
    chosen = select(rows, design)
    review = [s for s in chosen if s.source == "review"]
    audit_pass = [s for s in chosen if s.source == "audit" and s.tier == "pass"]
    audit_hide = [s for s in chosen if s.source == "audit" and s.tier == "hide"]
    assert len(review) == 50 and all(s.inclusion_prob == 1.0 for s in review)
    # binomial: within 4 standard deviations of n * rate
    assert abs(len(audit_pass) - 1000) < 4 * np.sqrt(20000 * 0.05 * 0.95)
    assert abs(len(audit_hide) - 400) < 4 * np.sqrt(2000 * 0.2 * 0.8)
    assert {s.inclusion_prob for s in audit_pass} == {0.05}
    assert {s.inclusion_prob for s in audit_hide} == {0.2}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["hide", "review", "pass"]), min_size=1, max_size=60), st.randoms())
def test_selection_does_not_depend_on_order(tiers, rnd):
    rows = [row(i, t, priority=(i * 7 % 11) / 11) for i, t in enumerate(tiers)]
    design = Design(pass_rate=0.3, hide_rate=0.5, uncertainty=3, seed=1)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    key = lambda s: (s.id, s.source, s.inclusion_prob)  # noqa: E731
    assert sorted(map(key, select(rows, design))) == sorted(map(key, select(shuffled, design)))


def test_uncertainty_picks_are_the_passed_listings_nearest_review_and_not_a_sample():
    rows = [row(i, "pass", priority=i / 100) for i in range(100)]
    chosen = select(rows, Design(pass_rate=0.0, hide_rate=0.0, uncertainty=3))
    assert [s.id for s in chosen] == ["L000099", "L000098", "L000097"]
    assert all(s.source == "uncertainty" and s.inclusion_prob is None for s in chosen)


def test_the_audit_coin_is_fixed_by_seed_and_id():
    assert uniform(0, "L1") == uniform(0, "L1") != uniform(1, "L1")
    assert 0 <= uniform(5, "\ud800") < 1  # a lone surrogate id still draws


def test_evidence_spans_use_javascript_offsets_and_refuse_spans_of_another_text():
    from mmdetect.data.records import Listing

    x = Listing(id="L1", title="😀グッチ 財布", description="本物です", price=None, category=None,
                images=(), created_at=None, labels=None)  # fmt: skip
    expl = {"text": {"spans": [
        {"field": "title", "start": 1, "end": 4, "text": "グッチ", "attribution": 0.9},
        {"field": "description", "start": 0, "end": 2, "text": "偽物", "attribution": 0.5},
        {"field": "title", "start": 5, "end": 7, "text": "財布", "attribution": -0.2},
    ]}}  # fmt: skip
    (span,) = evidence_results(x, expl)
    assert span["value"]["start"] == 2 and span["value"]["end"] == 5  # the emoji is 2 UTF-16 units
    assert utf16_offset("😀グ", 2) == 3


def test_import_of_a_real_label_studio_export():
    rows, report = task_reviews(export(), ours(), TAX, now=NOW)
    got = {r["id"]: r["labels"] for r in rows}
    assert got == {"L0001803": ["counterfeit"], "L0001809": ["adult"],
                   "L0001815": ["stolen_goods"], "L0001816": ["counterfeit", "keyword_stuffing"]}  # fmt: skip
    info = report.to_json(TAX)
    assert info["tasks_without_review_by_reason"] == {
        "annotator_tie": 1, "skipped_by_reviewer": 1, "no_annotation": 1}  # fmt: skip
    assert info["annotations_skipped_by_reason"] == {"cancelled": 1}
    assert info["changed_annotations"] == 1 and info["multi_annotated_tasks"] == 2
    assert info["agreement_per_class"]["game_account"] == 0.5
    assert info["agreement_per_class"]["adult"] == 1.0
    first = next(r for r in rows if r["id"] == "L0001803")
    assert first["note"].startswith("<script>")  # kept as text: whatever renders it escapes it
    assert (first["inclusion_prob"], first["source"], first["tier"]) == (1.0, "review", "review")
    audit = next(r for r in rows if r["id"] == "L0001815")
    assert (audit["inclusion_prob"], audit["source"]) == (0.01, "audit")
    assert audit["reviewed_at"] == "2026-12-07T16:05:31.669583+00:00"  # the changed answer's time


@pytest.mark.parametrize("tamper, reason", [
    (lambda d: d[0]["data"].__setitem__("listing_id", "L_UNKNOWN"), "unknown_task"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"].__setitem__("choices", ["weapons"]), "unknown_label"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"].__setitem__("choices", "counterfeit"), "wrong_type"),
    (lambda d: d[0]["annotations"][0].__setitem__("result", {"x": 1}), "wrong_type"),
    (lambda d: d[0]["annotations"][0].__setitem__("created_at", 17), "wrong_type"),
    (lambda d: d[0]["annotations"][0].__setitem__("updated_at", "9999-12-31T00:00:00Z"), "future_time"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"].__setitem__("choices", ["none", "adult"]), "none_with_class"),
    (lambda d: d[0]["annotations"][0].__setitem__("completed_by", [1]), "wrong_type"),
    (lambda d: d[0].__setitem__("annotations", "yes"), "wrong_type"),
])  # fmt: skip
def test_a_tampered_task_is_counted_and_changes_no_other_listing(tamper, reason):
    clean, _ = task_reviews(export(), ours(), TAX, now=NOW)
    data = export()
    target = data[0]["data"]["listing_id"]
    tamper(data)
    rows, report = task_reviews(data, ours(), TAX, now=NOW)
    info = report.to_json(TAX)
    assert (
        reason in info["tasks_without_review_by_reason"]
        or reason in info["annotations_skipped_by_reason"]
    )
    assert {r["id"]: r["labels"] for r in rows} == {
        r["id"]: r["labels"] for r in clean if r["id"] != target
    }


def test_a_huge_note_is_cut_and_a_tampered_inclusion_probability_is_ignored():
    data = export()
    data[0]["annotations"][0]["result"][1]["value"]["text"] = ["x" * 10_000_000]
    data[4]["data"]["inclusion_prob"] = 1.0  # the export lies; our tasks file says 0.01
    rows, report = task_reviews(data, ours(), TAX, now=NOW)
    by_id = {r["id"]: r for r in rows}
    assert len(by_id["L0001803"]["note"]) == 2000 and report.notes_cut == 1
    assert by_id["L0001815"]["inclusion_prob"] == 0.01


def test_a_duplicate_task_pools_its_answers_and_is_counted():
    data = export()
    twin = copy.deepcopy(data[0])
    twin["annotations"][0]["result"][0]["value"]["choices"] = ["counterfeit"]
    twin["annotations"][0]["completed_by"] = 7
    rows, report = task_reviews(data + [twin], ours(), TAX, now=NOW)
    assert report.duplicate_tasks == 1
    assert next(r for r in rows if r["id"] == "L0001803")["annotators"] == 2


def test_import_cli_refuses_hostile_files_with_one_line(tmp_path, capsys):
    tasks = FIXTURE / "tasks.json"
    (tmp_path / "bad.json").write_text("{not json")
    assert cli(["review", "import", str(tmp_path / "bad.json"), "--tasks", str(tasks),
                "--out", str(tmp_path / "r.jsonl")]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not JSON" in err and "\n" not in err
    (tmp_path / "obj.json").write_text('{"a": 1}')
    assert cli(["review", "import", str(tmp_path / "obj.json"), "--tasks", str(tasks),
                "--out", str(tmp_path / "r.jsonl")]) == 1  # fmt: skip
    assert "expected a JSON list" in capsys.readouterr().err
    assert cli(["review", "import", str(FIXTURE / "export.json"), "--tasks", str(tasks),
                "--out", str(tasks)]) == 1  # fmt: skip
    assert "is the input" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_estimates_on_a_hand_made_audit():
    """Pass tier: 1000 listings audited at 0.1 (100 tasks, all reviewed): 5 violations found,
    so 50 missed on traffic. Review tier: 20 listings, 15 violations, flagged for counterfeit.
    Hide tier: 10 audited at 0.5 (5 tasks): 4 correct. Traffic positives 50 + 15 + 8 = 73;
    caught 15 + 8 = 23: recall 23/73; hide precision 4/5; review precision 15/20."""
    tasks, reviews = [], []

    def add(i, tier, prob, flagged, positive):
        decisions = {c: "pass" for c in TAX}
        if flagged:
            decisions["counterfeit"] = tier
        tasks.append({"listing_id": f"L{i}", "tier": tier, "inclusion_prob": prob,
                      "source": "review" if tier == "review" else "audit",
                      "decisions": decisions, "scores": {c: 0.0 for c in TAX}})  # fmt: skip
        reviews.append({"id": f"L{i}", "labels": ["counterfeit"] if positive else []})

    for i in range(100):
        add(i, "pass", 0.1, False, i < 5)
    for i in range(100, 120):
        add(i, "review", 1.0, True, i < 115)
    for i in range(120, 125):
        add(i, "hide", 0.5, True, i < 124)
    tasks.append({"listing_id": "U1", "tier": "pass", "inclusion_prob": None, "source": "uncertainty",
                  "decisions": {c: "pass" for c in TAX}, "scores": {}})  # fmt: skip
    reviews.append({"id": "U1", "labels": ["counterfeit"]})  # never enters an estimate
    out = estimate(reviews, tasks, TAX)
    c = out["per_class"]["counterfeit"]
    assert c["recall"]["value"] == pytest.approx(23 / 73)
    assert c["hide_precision"]["value"] == pytest.approx(4 / 5)
    assert c["review_precision"]["value"] == pytest.approx(15 / 20)
    assert c["recall"]["weight"] == pytest.approx(73)
    lo, hi = c["recall"]["ci"]
    assert lo < 23 / 73 < hi
    assert out["overall"]["prevalence"]["value"] == pytest.approx(73 / (1000 + 20 + 10))
    # half the pass-tier tasks never came back: the other half stand for the whole tier
    half = [r for r in reviews if not (r["id"].startswith("L") and int(r["id"][1:]) < 100
                                       and int(r["id"][1:]) % 2)]  # fmt: skip
    assert estimate(half, tasks, TAX)["response_rate"]["pass"] == 0.5


def _as_label_studio_export(tasks: list[dict], answers: dict[str, list[str]]) -> list[dict]:
    """What Label Studio exports after one reviewer answered some tasks (the shape of the
    committed real export: ids, annotations with result, times, completed_by)."""
    out = []
    for i, t in enumerate(tasks, 1):
        anns = []
        if t["data"]["listing_id"] in answers:
            result = [{"from_name": "labels", "to_name": "title", "type": "choices",
                       "value": {"choices": answers[t["data"]["listing_id"]] or ["none"]}}]  # fmt: skip
            anns.append({"id": i, "completed_by": 1, "result": result, "was_cancelled": False,
                         "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z"})  # fmt: skip
        out.append({"id": i, "data": t["data"], "annotations": anns, "predictions": [i]})
    return out


def test_export_from_predict_then_import_then_feedback_merge(assets, tmp_path, capsys):
    """The whole loop without a server: predict -> review export -> answers -> review import
    -> feedback merge; the merged snapshot carries exactly the reviewers' labels."""
    import base64

    decisions, tasks_file = tmp_path / "decisions.jsonl", tmp_path / "tasks.json"
    assert cli(["predict", "--bundle", str(assets.bundle), "--input",
                str(assets.drift / "listings.jsonl"), "--out", str(decisions)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert cli(["review", "export", "--decisions", str(decisions), "--snapshot", str(assets.drift),
                "--bundle", str(assets.bundle), "--pass-rate", "0.5", "--hide-rate", "1",
                "--out", str(tasks_file)]) == 0  # fmt: skip
    capsys.readouterr()
    tasks = json.loads(tasks_file.read_text())
    chosen = select(rows, Design(pass_rate=0.5, hide_rate=1.0))
    assert [t["data"]["listing_id"] for t in tasks] == [s.id for s in chosen]
    by_id = {r["id"]: r for r in rows}
    for t in tasks:
        d = t["data"]
        assert d["scores"] == by_id[d["listing_id"]]["scores"]
        assert d["model_version"].startswith(assets.bundle.name + "@")
        assert ("predictions" in t) == (d["source"] == "review")  # audits: no anchoring
        listing = json.loads(next(line for line in (assets.drift / "listings.jsonl").read_text().splitlines()
                                  if json.loads(line)["id"] == d["listing_id"]))  # fmt: skip
        assert [base64.b64decode(p.split(",", 1)[1]) for p in d["photos"]] == [
            (assets.drift / rel).read_bytes() for rel in listing.get("images", [])]  # fmt: skip
    manifest = json.loads((tmp_path / "tasks.json.manifest.json").read_text())
    assert manifest["population"] == {
        t: sum(r["decision"] == t for r in rows) for t in ("hide", "review", "pass")
    }
    answers = {
        t["data"]["listing_id"]: (["adult"] if k % 3 == 0 else []) for k, t in enumerate(tasks)
    }
    ls_export = tmp_path / "ls_export.json"
    ls_export.write_text(json.dumps(_as_label_studio_export(tasks, answers)))
    reviews = tmp_path / "reviews.jsonl"
    assert (
        cli(["review", "import", str(ls_export), "--tasks", str(tasks_file), "--out", str(reviews)])
        == 0
    )
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert cli(["feedback", "merge", "--snapshot", str(assets.drift), "--reviews", str(reviews),
                "--out", str(merged)]) == 0  # fmt: skip
    merged_rows = [
        json.loads(line) for line in (merged / "listings.jsonl").read_text().splitlines()
    ]
    assert {r["id"]: r["labels"] for r in merged_rows if r["id"] in answers} == answers


def test_evaluate_audit_writes_traffic_figures_from_the_real_export(tmp_path, capsys):
    reviews = tmp_path / "reviews.jsonl"
    assert cli(["review", "import", str(FIXTURE / "export.json"), "--tasks", str(FIXTURE / "tasks.json"),
                "--out", str(reviews)]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "audit"
    assert cli(["evaluate", "--audit", str(reviews), "--tasks", str(FIXTURE / "tasks.json"),
                "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "audit.json").read_text())
    # review tier: 4 tasks, 2 came back; pass tier: 2 audited, 1 back; hide: 1 of 1
    assert result["response_rate"] == {"review": 0.5, "pass": 0.5, "hide": 1.0}
    assert result["per_class"]["keyword_stuffing"]["hide_precision"]["value"] == 1.0
    # L0001815 (pass tier, audited at 0.01, back at 50%: weight 200) is the one stolen_goods
    # violation: recall 0 on traffic
    assert result["per_class"]["stolen_goods"]["recall"]["value"] == 0.0
    assert result["per_class"]["stolen_goods"]["recall"]["weight"] == pytest.approx(200)
    table = (out / "audit.md").read_text()
    assert table.count("\n| ") == len(TAX) + 2  # header + all classes + one row per class
