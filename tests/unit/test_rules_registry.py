"""Rules in the registry (promote, rollback, show, their history) and in the running service:
switched under concurrent requests without a restart, a tampered file refused."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from mmdetect.artifacts.registry_history import RegistryError
from mmdetect.artifacts.rules_layout import RULES, RULES_CURRENT, RULES_FILE, load_promoted
from mmdetect.cli.rules import rules_main
from mmdetect.ops.registry import switch_current
from mmdetect.ops.registry_rules import promote_rules, rollback_rules, rules_history
from mmdetect.policy.rules_yaml import RulesError
from mmdetect.serving.app import ServeConfig
from tests.unit.test_http import DRIFT, LIMITS, Server, drift_rows
from tests.unit.test_http_switch import make_registry, wait_for

# matches every listing: {photos: {min: 0}}
HIDE_ALL = """version: 1
rules:
  - {id: hide-all, owner: test, category: counterfeit, action: hide, when: {photos: {min: 0}}}
"""
REVIEW_ALL = """version: 1
rules:
  - {id: review-all, owner: test, category: adult, action: review, when: {photos: {min: 0}}}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_promote_rollback_show_and_history(tmp_path, capsys):
    root = tmp_path / "registry"
    a, b = write(tmp_path / "a.yaml", HIDE_ALL), write(tmp_path / "b.yaml", REVIEW_ALL)
    first = promote_rules(root, a, reason="scam wave")
    assert first["previous"] is None and first["ids"] == ["hide-all"]
    name_a = first["rules"]
    assert name_a.startswith("a-") and (root / RULES / name_a / RULES_FILE).read_bytes() == (
        a.read_bytes()
    )
    second = promote_rules(root, b)
    assert second["previous"] == name_a
    assert (root / RULES_CURRENT).resolve() == (root / RULES / second["rules"]).resolve()
    with pytest.raises(RegistryError, match="already the current rules"):
        promote_rules(root, b)
    back = rollback_rules(root, reason="too broad")
    assert (back["rules"], back["previous"]) == (name_a, second["rules"])
    with pytest.raises(RegistryError, match="first promoted rules"):
        rollback_rules(root)
    assert [e["action"] for e in rules_history(root)] == ["promote", "promote", "rollback"]
    assert rules_main(["show", "--registry", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"rules current: {name_a}" in out and "hide-all: hide counterfeit" in out
    assert "reason: too broad" in out


def test_a_bad_file_is_refused_with_its_line_and_nothing_switches(tmp_path, capsys):
    root = tmp_path / "registry"
    promote_rules(root, write(tmp_path / "a.yaml", HIDE_ALL))
    before = (root / RULES_CURRENT).resolve()
    bad = write(tmp_path / "bad.yaml", HIDE_ALL.replace("action: hide", "action: ban"))
    assert rules_main(["promote", "--registry", str(root), "--file", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:3: action: 'ban' is not one of") and err.count("\n") == 1
    assert (root / RULES_CURRENT).resolve() == before and len(rules_history(root)) == 1
    assert not list((root / RULES).glob(".tmp-*"))


def test_promoted_rules_are_checked_against_the_current_bundle_and_verified(assets, tmp_path):
    root = make_registry(tmp_path / "registry", assets.bundle)
    weapons = write(tmp_path / "w.yaml", HIDE_ALL.replace("counterfeit", "weapons"))
    with pytest.raises(RulesError, match="'weapons' is not a class of the model"):
        promote_rules(root, weapons)
    name = promote_rules(root, write(tmp_path / "a.yaml", HIDE_ALL))["rules"]
    path = root / RULES / name / RULES_FILE
    path.write_text(path.read_text() + "# edited after promotion\n")
    with pytest.raises(RulesError, match="does not match its SHA256"):
        load_promoted(root / RULES / name)


def config(registry: Path) -> ServeConfig:
    return ServeConfig(registry=registry, images_root=DRIFT, max_batch_size=8, max_wait_ms=2,
                       max_queue=256, timeout_s=20, poll_s=0.05, workers=2, limits=LIMITS)  # fmt: skip


def test_promote_records_the_rules_serving(assets, tmp_path):
    from mmdetect.ops.registry_promote import promote

    root = tmp_path / "registry"
    name = promote_rules(root, write(tmp_path / "a.yaml", HIDE_ALL))["rules"]
    entry = promote(root, assets.bundle, assets.drift)  # unfitted: refused, and recorded
    assert entry["action"] == "refuse" and entry["rules"] == name


@pytest.mark.usefixtures("single_thread")
def test_rules_switch_under_concurrent_requests_without_restart(assets, tmp_path):
    root = make_registry(tmp_path / "registry", assets.bundle)
    rows, log, stop = drift_rows(16), [], threading.Event()
    a, b = write(tmp_path / "a.yaml", HIDE_ALL), write(tmp_path / "b.yaml", REVIEW_ALL)
    with Server(config(root)) as s:
        wait_for(s, lambda d: d["bundle"] == "blue" and d["rules"] is None)

        def client(k: int) -> None:
            i = k
            while not stop.is_set():
                t0 = time.time()
                status, _, doc = s.post(rows[i % len(rows)])
                log.append((t0, time.time(), status, doc))
                i += 4

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        moved, served = [(0.0, None)], []
        for path in (a, b):
            time.sleep(0.3)
            before = time.time()  # the pointer moves after this
            name = promote_rules(root, path)["rules"]
            moved.append((before, name))
            wait_for(s, lambda d, name=name: d["rules"] == name)
            served.append(time.time())
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)
        # a tampered rules directory behind the pointer: refused, the last rules keep serving
        shutil.copytree(root / RULES / moved[2][1], root / RULES / "bad")
        write(root / RULES / "bad" / RULES_FILE, HIDE_ALL)
        switch_current(root, "bad", RULES_CURRENT, RULES)
        doc = wait_for(s, lambda d: d["rules_refused"] is not None)
        assert doc["rules"] == moved[2][1] and "SHA256" in doc["rules_refused"]["reason"]
        status, _, last = s.post(rows[0])
    assert status == 200 and last["ruleset"] == moved[2][1] and last["rules"] == ["review-all"]
    assert len(log) > 20 and all(status == 200 for *_, status, _ in log)
    names = [n for _, n in moved]
    assert {doc["ruleset"] for *_, doc in log} == set(names)  # all three served
    for _, t1, _, doc in log:
        k = names.index(doc["ruleset"])
        # the rule set answering was pointed at before the request ended ...
        assert moved[k][0] <= t1
        # ... and each answer is that one rule set's decision, never a mix
        want = {None: ([], None), names[1]: (["hide-all"], "hide"),
                names[2]: (["review-all"], None)}[doc["ruleset"]]  # fmt: skip
        assert doc["rules"] == want[0]
        if want[1]:
            assert doc["decision"] == want[1] and doc["decisions"]["counterfeit"] == "hide"
        if doc["ruleset"] == names[2]:
            assert doc["decision"] in ("review", "hide") and doc["decisions"]["adult"] != "pass"
    # once /readyz said it serves the new rules, no request that starts later gets older ones
    for k, t_served in enumerate(served, 1):
        later = [doc["ruleset"] for t0, _, _, doc in log if t0 > t_served]
        assert later and all(names.index(r) >= k for r in later)
