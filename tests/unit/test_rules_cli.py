"""The rules verbs end to end on the tiny bundle: `rules test`, `evaluate --rules`,
`predict --rules` and `rules check`; every figure checked against the snapshot's own labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmdetect.cli.commands import main
from mmdetect.data.reader import read_snapshot

pytestmark = pytest.mark.usefixtures("single_thread")
EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "rules" / "example.yaml"
HIDE_ALL = """version: 1
rules:
  - {id: hide-all, owner: test, category: counterfeit, action: hide, when: {photos: {min: 0}}}
  - {id: expired, owner: test, category: adult, action: hide, expires: 2020-01-01,
     when: {photos: {min: 0}}}
"""


@pytest.fixture
def hide_all(tmp_path) -> Path:
    path = tmp_path / "hide_all.yaml"
    path.write_text(HIDE_ALL, encoding="utf-8")
    return path


def test_rules_test_shows_what_would_change(assets, hide_all, tmp_path, capsys):
    out = tmp_path / "dry"
    argv = ["rules", "test", str(hide_all), "--snapshot", str(assets.drift), "--model",
            str(assets.bundle), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    diff = json.loads((out / "changes.json").read_text())
    n = diff["listings"]
    assert n == len(read_snapshot(assets.drift, check_images=False).listings) == 30
    before = diff["decisions"]["before"]
    assert diff["decisions"]["after"] == {"pass": 0, "review": 0, "hide": n}
    assert diff["summary"]["newly_hidden"]["count"] == n - before["hide"] == len(diff["changes"])
    assert diff["summary"]["newly_passed"]["count"] == 0
    assert all(r["to"] == "hide" and r["rules_after"] == ["hide-all"] for r in diff["changes"])
    assert f"newly hidden: {n - before['hide']}" in printed
    assert "rule expired expired" in printed  # the load-time warning is shown, not swallowed
    # against itself: nothing changes
    assert main([*argv[:-2], "--against", str(hide_all)]) == 0
    assert "newly hidden: 0" in capsys.readouterr().out


def test_evaluate_rules_table_against_the_labels(assets, hide_all, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(assets.bundle), "--snapshot", str(assets.drift),
            "--rules", str(hide_all), "--num-workers", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "| rules + model |" in capsys.readouterr().out
    res = json.loads((out / "rules.json").read_text())
    listings = read_snapshot(assets.drift, check_images=False).listings
    labeled = [x for x in listings if x.labels is not None]
    prohibited = sum(bool(x.labels) for x in labeled)
    counterfeit = sum("counterfeit" in x.labels for x in labeled)
    s = res["systems"]
    assert s["rules"]["hidden"] == s["combined"]["hidden"] == len(listings)
    assert s["combined"]["recall"]["count"] == s["combined"]["recall"]["of"] == prohibited
    assert s["rules"]["precision"]["count"] == prohibited
    rule = {r["id"]: r for r in res["rules"]}
    assert rule["hide-all"]["hits"] == len(listings)
    assert (rule["hide-all"]["precision"]["count"], rule["hide-all"]["precision"]["of"]) == (
        counterfeit,
        len(labeled),
    )
    assert rule["expired"]["active"] is False and rule["expired"]["hits"] == 0
    # model alone is what evaluate reports without rules
    metrics = json.loads((out / "metrics.json").read_text())
    assert s["model"]["reviewed"] == metrics["operating"]["reviewed"]
    cov = res["coverage"]["overall"]
    assert cov["model_beyond_rules"] == 0 and cov["neither"] == 0
    assert cov["rules_beyond_model"] + cov["both"] == prohibited
    assert (out / "rules.md").read_text().startswith("# Rules beside the model")


def test_predict_rules_names_the_rules_in_each_row(assets, hide_all, tmp_path):
    src = assets.drift / "listings.jsonl"
    out = tmp_path / "decisions.jsonl"
    assert main(["predict", "--bundle", str(assets.bundle), "--input", str(src), "--out",
                 str(out), "--rules", str(hide_all)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and all(r["decision"] == "hide" for r in rows)
    assert all(r["rules"] == ["hide-all"] and r["ruleset"].startswith("hide_all-") for r in rows)
    review = tmp_path / "review.yaml"
    review.write_text(HIDE_ALL.replace("action: hide, when: {photos", "action: review, when: "
                                       "{photos").replace("hide-all", "review-all"))  # fmt: skip
    out2 = tmp_path / "d2.jsonl"
    assert main(["predict", "--bundle", str(assets.bundle), "--input", str(src), "--out",
                 str(out2), "--rules", str(review)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out2.read_text().splitlines()]
    queue = [json.loads(x) for x in (tmp_path / "d2.review_queue.jsonl").read_text().splitlines()]
    reviewed = [r["id"] for r in rows if r["decision"] == "review"]
    assert all(r["decision"] != "pass" for r in rows)  # the review rule flags every listing
    assert sorted(q["id"] for q in queue) == sorted(reviewed)
    assert all(q["rules"] == ["review-all"] for q in queue)


def test_rules_check_and_bad_files(assets, tmp_path, capsys):
    assert main(["rules", "check", str(EXAMPLE), "--bundle", str(assets.bundle)]) == 0
    assert "rules, valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {id: x, owner: o, category: counterfeit, "
                   "action: hide, when: {regex: '(a+)+$'}}\n")  # fmt: skip
    assert main(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:3: regex:") and "Traceback" not in err
    assert main(["rules", "bogus"]) == 2


def test_rules_test_against_the_registrys_current_rules_and_bundle(assets, hide_all, tmp_path):
    from mmdetect.ops.registry_rules import promote_rules
    from tests.unit.test_http_switch import make_registry

    root = make_registry(tmp_path / "registry", assets.bundle)
    promote_rules(root, hide_all)
    none = tmp_path / "none.yaml"
    none.write_text("# mmdetect rules test\nversion: 1\nrules: []\n", encoding="utf-8")
    out = tmp_path / "dry"
    argv = ["rules", "test", str(none), "--snapshot", str(assets.drift), "--registry", str(root),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    diff = json.loads((out / "changes.json").read_text())
    n, after, s = diff["listings"], diff["decisions"]["after"], diff["summary"]
    assert diff["old"].startswith("hide_all-") and diff["decisions"]["before"]["hide"] == n
    assert s["newly_hidden"]["count"] == 0
    assert s["newly_reviewed"]["count"] == after["review"]
    assert s["newly_passed"]["count"] == after["pass"]
    assert len(diff["changes"]) == n - after["hide"]
