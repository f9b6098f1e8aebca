"""Hostile output paths and interruptions: nothing a command writes may destroy an input, a
bundle or a registry, or leave a file at --out that looks complete when it is not.

Each test builds its files in tmp_path; `assets` (tests/conftest.py) is a tiny exported bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmdetect.artifacts import bundle_format
from mmdetect.artifacts.registry_history import read_history
from mmdetect.cli.commands import main
from mmdetect.common.outputs import (
    OutputError,
    atomic_output,
    atomic_write_text,
    check_output,
    partial_path,
)
from mmdetect.ops.registry import HISTORY, RegistryError
from mmdetect.ops.registry_promote import rollback

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_pid() -> int:
    """The pid of a process that has exited (what a killed run leaves in its partial name)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def incoming(assets, tmp_path: Path) -> Path:
    """A copy of the unlabeled listings (the photos stay under assets: --images-root)."""
    dst = tmp_path / "in" / "listings.jsonl"
    dst.parent.mkdir()
    shutil.copy(assets.samples / "incoming" / "listings.jsonl", dst)
    return dst


def predict(assets, src: Path, out: Path | str, *extra: str) -> int:
    return main(["predict", "--bundle", str(assets.bundle), "--input", str(src), "--out",
                 str(out), "--images-root", str(assets.samples / "incoming"), *extra])  # fmt: skip


@pytest.fixture
def reference(assets, incoming: Path, tmp_path: Path) -> bytes:
    """The decisions of an uninterrupted run."""
    out = tmp_path / "reference.jsonl"
    assert predict(assets, incoming, out, "--chunk-size", "3") == 0
    return out.read_bytes()


def same_decisions(got: bytes, want: bytes) -> bool:
    """Same ids in the same order, same tiers, scores equal up to float32 batching noise."""
    a = [json.loads(x) for x in got.splitlines()]
    b = [json.loads(x) for x in want.splitlines()]
    return [(r["id"], r["decisions"]) for r in a] == [(r["id"], r["decisions"]) for r in b] and all(
        abs(r["scores"][c] - q["scores"][c]) < 1e-5
        for r, q in zip(a, b, strict=True)
        for c in r["scores"]
    )


# ---- predict --out ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_predict_out_is_the_input_keeps_it_byte_for_byte(
    assets, incoming, how, capsys, monkeypatch
):
    before = digest(incoming)
    out = incoming
    if how == "relative":
        monkeypatch.chdir(incoming.parent.parent)
        out = Path("in/../in/listings.jsonl")
    elif how == "symlink":
        out = incoming.with_name("link.jsonl")
        out.symlink_to(incoming.name)
    elif how == "hardlink":
        out = incoming.with_name("hard.jsonl")
        os.link(incoming, out)
    assert predict(assets, incoming, out) == 1
    err = capsys.readouterr().err
    assert "is the input" in err and str(incoming) in err
    assert digest(incoming) == before and incoming.stat().st_size > 0
    assert not list(incoming.parent.glob(".*partial*"))


def test_predict_out_unwritable(assets, incoming, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:  # root writes anywhere, but not a new file in /proc
        out = ro / "d.jsonl" if not os.access(ro, os.W_OK) else Path("/proc/d.jsonl")
        assert predict(assets, incoming, out) == 1
        assert f"{out} was not written" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_predict_out_an_existing_directory_or_under_a_file(assets, incoming, tmp_path, capsys):
    assert predict(assets, incoming, tmp_path) == 1
    assert f"output {tmp_path} is a directory; give a file path" in capsys.readouterr().err
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    assert predict(assets, incoming, blocker / "decisions.jsonl") == 1
    assert "error:" in capsys.readouterr().err and blocker.read_text() == "keep me"


def test_predict_out_inside_a_bundle_or_a_registry(assets, incoming, tmp_path, capsys):
    reg = registry(tmp_path / "reg", assets.bundle, ["a"])
    sums = (assets.bundle / bundle_format.SUMS_FILE).read_bytes()
    for out in (assets.bundle / "decisions.jsonl", assets.bundle / "thresholds.json",
                reg / "current" / "decisions.jsonl", reg / "decisions.jsonl",
                reg / "bundles" / "a" / "x.jsonl"):  # fmt: skip
        assert predict(assets, incoming, out) == 1
        err = capsys.readouterr().err
        assert "error: output" in err and ("bundle" in err or "registry" in err), err
        assert not out.exists() or out.name == "thresholds.json"
    bundle_format.verify_checksums(assets.bundle)
    bundle_format.verify_checksums(reg / "bundles" / "a")
    assert (assets.bundle / bundle_format.SUMS_FILE).read_bytes() == sums


# ---- predict: atomic output, interruptions, resume -----------------------------------------


def test_an_interrupted_predict_leaves_no_complete_looking_output(
    assets, incoming, reference, tmp_path, monkeypatch, capsys
):
    from mmdetect.serving import stream

    out = tmp_path / "out" / "decisions.jsonl"
    out.parent.mkdir()
    out.write_text("the previous complete run\n")
    real, calls = stream.score_chunk, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second chunk is scored
        return real(*a, **k)

    monkeypatch.setattr(stream, "score_chunk", interrupted)
    assert predict(assets, incoming, out, "--chunk-size", "3") == 130
    assert "rerun with --resume" in capsys.readouterr().err
    assert out.read_text() == "the previous complete run\n"  # untouched until a run finishes
    partial = partial_path(out)
    assert len(partial.read_text().splitlines()) == 3
    monkeypatch.setattr(stream, "score_chunk", real)
    # the partial of a dead run: renamed as a kill would leave it
    os.rename(partial, partial_path(out, dead_pid()))
    assert predict(assets, incoming, out, "--chunk-size", "3", "--resume") == 0
    captured = capsys.readouterr()
    assert "resuming from" in captured.err and "3 listings already written" in captured.err
    assert "resumed (already written by the interrupted run): 3" in captured.out
    assert out.read_bytes() == reference
    names = sorted(p.name for p in out.parent.iterdir())  # no partial left behind
    assert names == ["decisions.jsonl", "decisions.review_queue.jsonl"]


def test_resume_drops_a_row_cut_by_a_kill_and_rescoring_it(assets, incoming, reference, tmp_path):
    out = tmp_path / "decisions.jsonl"
    lines = reference.splitlines(keepends=True)
    partial_path(out, dead_pid()).write_bytes(b"".join(lines[:4]) + lines[4][:25])  # cut row
    assert predict(assets, incoming, out, "--resume") == 0
    assert same_decisions(out.read_bytes(), reference)  # other batches than the reference run
    assert out.read_bytes().startswith(b"".join(lines[:4]))
    assert not list(tmp_path.glob(".*partial*"))


def test_a_rerun_without_resume_says_it_starts_over(assets, incoming, reference, tmp_path, capsys):
    out = tmp_path / "decisions.jsonl"
    stale = partial_path(out, dead_pid())
    stale.write_bytes(reference[:200])
    assert predict(assets, incoming, out) == 0
    assert f"note: {stale} is left by an interrupted run; starting over" in capsys.readouterr().err
    assert same_decisions(out.read_bytes(), reference) and not stale.exists()
    assert predict(assets, incoming, out, "--resume") == 0  # nothing to resume: a full run
    err = capsys.readouterr().err
    assert "nothing to resume" in err and same_decisions(out.read_bytes(), reference)


COPIES = 12  # x 10 listings: long enough to be killed mid-run with one listing per chunk


def test_sigkill_during_predict_then_resume(assets, tmp_path):
    """A real kill -9 of `mmdetect predict` in another process."""
    rows = [
        json.loads(x) for x in (assets.samples / "incoming/listings.jsonl").read_text().splitlines()
    ]
    src = tmp_path / "many.jsonl"
    with src.open("w", encoding="utf-8") as fh:
        for k in range(COPIES):
            for r in rows:
                fh.write(json.dumps({**r, "id": f"{r['id']}-{k}"}, ensure_ascii=False) + "\n")
    out = tmp_path / "decisions.jsonl"
    cmd = [sys.executable, "-m", "mmdetect.cli.commands", "predict", "--bundle", str(assets.bundle),
           "--input", str(src), "--out", str(out), "--chunk-size", "1", "--batch-size", "1",
           "--images-root", str(assets.samples / "incoming")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = partial_path(out, proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "predict finished before it could be killed"
    assert not out.exists()  # nothing at --out: the kill left only the named partial file
    assert partial.exists()
    assert predict(assets, src, out, "--resume") == 0
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == COPIES * len(rows)
    assert not partial.exists()


# ---- outputs.py --------------------------------------------------------------------------------


def test_atomic_output_on_error_leaves_nothing_or_a_named_partial(tmp_path):
    target = tmp_path / "x.jsonl"
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), atomic_output(target, keep_partial=True) as fh:
        fh.write("half\n")
        raise KeyboardInterrupt
    assert not target.exists() and partial_path(target).read_text() == "half\n"
    atomic_write_text(target, "whole\n")
    atomic_write_text(target, "replaced\n")
    assert target.read_text() == "replaced\n"


def test_check_output_names_both_paths(tmp_path, assets):
    snap = tmp_path / "snap"
    (snap / "images").mkdir(parents=True)
    (snap / "listings.jsonl").write_text("{}\n")
    cases = [
        (snap / "listings.jsonl", snap / "listings.jsonl", "is the input"),
        (snap / "x" / ".." / "listings.jsonl", snap / "listings.jsonl", "is the input"),
        (snap / "images" / "out.jsonl", snap, "is inside the input"),
        (tmp_path, snap, "contains the input"),
        (assets.bundle / "meta.json", snap, "is inside the bundle"),
    ]
    for out, inp, words in cases:
        kind = "dir" if out == tmp_path else "file"
        with pytest.raises(OutputError, match=words) as exc:
            check_output(out, [inp], kind)
        assert str(out) in str(exc.value)
    with pytest.raises(OutputError, match="is a bundle"):
        check_output(assets.bundle, [], "dir")
    with pytest.raises(OutputError, match="is a file; give a directory"):
        check_output(snap / "listings.jsonl", [], "dir")
    assert check_output(tmp_path / "new" / "out", [snap], "dir") == tmp_path / "new" / "out"


# ---- registry ----------------------------------------------------------------------------------


def registry(root: Path, bundle: Path, names: list[str]) -> Path:
    """A registry made by hand: one copy of `bundle` per name, promoted in order."""
    (root / "bundles").mkdir(parents=True)
    previous = None
    with (root / HISTORY).open("w", encoding="utf-8") as fh:
        for name in names:
            shutil.copytree(bundle, root / "bundles" / name)
            fh.write(json.dumps({"time": "2026-10-01T00:00:00Z", "action": "promote",
                                 "bundle": name, "previous": previous}) + "\n")  # fmt: skip
            previous = name
    (root / "current").symlink_to(f"bundles/{names[-1]}")
    return root


@pytest.mark.parametrize("command", ["rollback", "registry", "promote --list"])
def test_a_mistyped_registry_is_not_created(command, tmp_path, capsys):
    missing = tmp_path / "regsitry"
    assert main([*command.split(), "--registry", str(missing)]) == 1
    assert "no such registry" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("command", ["rollback", "registry", "promote"])
def test_a_registry_path_that_is_a_file(command, tmp_path, assets, capsys):
    path = tmp_path / "reg"
    path.write_text("not a registry")
    extra = (
        ["--bundle", str(assets.bundle), "--on", str(assets.drift)] if command == "promote" else []
    )
    assert main([command, "--registry", str(path), *extra]) == 1
    assert f"{path}: is a file, not a registry directory" in capsys.readouterr().err
    assert path.read_text() == "not a registry"


def test_promote_refuses_a_directory_that_is_not_a_registry(tmp_path, assets, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.json").write_text("{}")
    argv = ["promote", "--registry", str(results), "--bundle", str(assets.bundle), "--on",
            str(assets.drift)]  # fmt: skip
    assert main(argv) == 1
    assert "not a registry" in capsys.readouterr().err
    assert sorted(p.name for p in results.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("damage", ["deleted", "tampered", "not_a_link"])
def test_a_broken_current_is_flagged_and_rollback_refuses(damage, tmp_path, assets, capsys):
    reg = registry(tmp_path / "reg", assets.bundle, ["a", "b"])
    if damage == "deleted":
        shutil.rmtree(reg / "bundles" / "b")
    elif damage == "tampered":
        (reg / "bundles" / "b" / bundle_format.THRESHOLDS_FILE).write_text("{}")
    else:
        (reg / "current").unlink()
        (reg / "current").mkdir()
    assert main(["registry", "--registry", str(reg)]) == 1
    flagged = capsys.readouterr()
    assert "error:" in flagged.err and "current" in flagged.err
    assert "promote  b" in flagged.out  # the history is still shown
    argv = ["promote", "--registry", str(reg), "--bundle", str(assets.bundle), "--on", "x"]
    assert main(argv) == 1  # no champion to compare with: refused before any evaluation
    assert "repair the registry" in capsys.readouterr().err
    if damage == "not_a_link":
        with pytest.raises(RegistryError, match="nothing promoted"):
            rollback(reg)
        return
    assert main(["rollback", "--registry", str(reg)]) == 1
    err = capsys.readouterr().err
    assert "rollback refuses a damaged registry" in err
    assert os.readlink(reg / "current") == "bundles/b"  # not moved
    assert len(read_history(reg)) == 2


def test_rollback_on_a_sound_registry_still_works(tmp_path, assets):
    reg = registry(tmp_path / "reg", assets.bundle, ["a", "b"])
    assert main(["rollback", "--registry", str(reg)]) == 0
    assert os.readlink(reg / "current") == "bundles/a"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "damaged line (not UTF-8 JSON"),
        ('["a", "list"]', "damaged line (a list, not an object)"),
        ('{"time": "t", "action": "promote", "previous": null}', "bundle: missing"),
        ('{"time": "t", "action": "delete", "bundle": "a", "previous": null}', "action: 'delete'"),
        (b"\xff\xfe bytes", "not UTF-8 JSON"),
    ],
)  # fmt: skip
def test_a_damaged_history_line_is_named(line, words, tmp_path, assets, capsys):
    reg = registry(tmp_path / "reg", assets.bundle, ["a", "b"])
    with (reg / HISTORY).open("ab") as fh:
        fh.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    assert main(["rollback", "--registry", str(reg)]) == 1
    err = capsys.readouterr().err
    assert f"{reg / HISTORY}:3: " in err and words in err
    assert main(["registry", "--registry", str(reg)]) == 1
    shown = capsys.readouterr()
    assert "1 damaged history lines skipped" in shown.err and f"{HISTORY}:3" in shown.err
    assert "promote  a" in shown.out and "promote  b" in shown.out  # the good lines shown


def test_a_history_that_is_a_directory(tmp_path, assets, capsys):
    reg = registry(tmp_path / "reg", assets.bundle, ["a"])
    (reg / HISTORY).unlink()
    (reg / HISTORY).mkdir()
    for command in ("registry", "rollback"):
        assert main([command, "--registry", str(reg)]) == 1
        assert f"{reg / HISTORY}: cannot read" in capsys.readouterr().err


def test_predict_input_a_directory_and_resume_of_a_changed_input(assets, incoming, reference,
                                                                 tmp_path, capsys):  # fmt: skip
    assert predict(assets, tmp_path, tmp_path / "o.jsonl") == 1
    assert "not a regular file" in capsys.readouterr().err
    out = tmp_path / "decisions.jsonl"
    other = b'{"id": "gone", "scores": {}, "decisions": {}, "decision": "pass"}\n'
    partial_path(out, dead_pid()).write_bytes(other)
    assert predict(assets, incoming, out, "--resume") == 0
    assert "1 rows resumed from the partial file are not in" in capsys.readouterr().err


def test_stale_staging_left_by_a_killed_promote_is_reported_then_cleaned(tmp_path, assets, capsys):
    from mmdetect.ops.registry_promote import promote

    reg = tmp_path / "reg"
    # the first promotion: no evaluation (forced: this test bundle has unfitted thresholds)
    promote(reg, assets.bundle, assets.drift, force=True, reason="test bundle")
    stale = reg / "bundles" / ".tmp-bundle-0123abcd-deadbeef"
    shutil.copytree(assets.bundle, stale)
    (reg / ".current.tmp-cafe0000").symlink_to("bundles/nothing")
    assert main(["registry", "--registry", str(reg)]) == 0
    err = capsys.readouterr().err
    assert f"note: {stale} was left by a killed promote" in err
    with pytest.raises(RegistryError, match="already the current bundle"):
        promote(reg, assets.bundle, assets.drift)  # takes the lock, cleans, then refuses
    assert not stale.exists() and not (reg / ".current.tmp-cafe0000").is_symlink()


@pytest.mark.parametrize(
    ("command", "out", "extra", "message"),
    [
        ("evaluate", "snap/eval", [], "is inside the input"),
        ("evaluate", "bundle/eval", [], "is inside the input"),
        ("evaluate", "o", ["--created-from", "notadate"], "--created-from: not an ISO date"),
        ("evaluate", "o", ["--created-to", "2026-13-01"], "--created-to: not an ISO date"),
        ("thresholds fit", "snap", [], "is the input"),
        ("thresholds fit", "o", ["--policy", "o/p.yaml"], "contains the input"),
    ],
)
def test_evaluate_and_fit_refuse_bad_outputs_and_dates(
    tmp_path, capsys, command, out, extra, message
):
    from mmdetect.cli.commands import main

    (tmp_path / "snap").mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "SHA256SUMS").write_text("")
    (bundle / "meta.json").write_text("{}")
    argv = [*command.split(), "--model", str(bundle), "--snapshot", str(tmp_path / "snap"),
            "--out", str(tmp_path / out), *[str(tmp_path / e) if e.startswith("o/") else e
                                            for e in extra]]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in bundle.iterdir()) == ["SHA256SUMS", "meta.json"]
