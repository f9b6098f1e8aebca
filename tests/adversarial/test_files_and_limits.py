"""Issue #27 items 5-7: outputs that destroyed or half-wrote files, future review times, Markdown
injection in report.md, file arguments that hang or fill memory, and unclear messages.

Every hang-prone case runs the CLI in a subprocess with a timeout and an address-space limit,
so a regression fails in seconds instead of hanging the suite or exhausting memory.
"""

from __future__ import annotations

import errno
import hashlib
import html
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mmdetect.artifacts import bundle_format
from mmdetect.cli.commands import main
from mmdetect.evaluate.operating import apply_operating_point
from mmdetect.evaluate.run import evaluate_predictions_main, run_evaluation
from tests.unit.test_evaluate_report import CFG, TAX, fitted, make_records
from tests.unit.test_feedback import make_snapshot, review, write_reviews
from tests.unit.test_reader import row, write_snapshot

REPO = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def siblings(path: Path) -> list[str]:
    """Temporaries beside `path` (`.NAME.partial-*`, `.NAME.old-*`)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _limit_memory() -> None:  # in the child: a runaway read fails fast instead of OOM
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


# Runs each command line through mmdetect.cli.commands.main in one child (imports paid once), each under
# an alarm: a read that blocks or never ends is interrupted and reported, not waited for.
CHILD = """
import contextlib, io, json, signal, sys
from mmdetect.cli.commands import main
# the commands' own modules imported first, outside the alarms (seconds on a loaded machine)
import mmdetect.evaluate.run, mmdetect.cli.explain, mmdetect.ops.feedback, mmdetect.cli.operating

def alarm(*_):
    raise TimeoutError("still running after the alarm")

signal.signal(signal.SIGALRM, alarm)
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    signal.alarm(int(sys.argv[2]))
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code
        except BaseException as exc:  # MemoryError, TimeoutError: the old behaviour
            rc = "Traceback: " + repr(exc)[:200]
    signal.alarm(0)
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def run_cli(*cases: list[str], per_case_s: int = 15) -> list[tuple[object, str]]:
    """(exit code, stderr) of each command line, run one after another in one child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases), str(per_case_s)], capture_output=True,
        text=True, timeout=180 + per_case_s * len(cases), env=env, preexec_fn=_limit_memory,
        cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [tuple(x) for x in json.loads(proc.stdout.splitlines()[-1])]


def one_line_error(result: tuple[object, str], *words: str) -> str:
    """The command exited 1 with exactly one `error:` line naming `words`, no traceback."""
    rc, err = result
    err = err.strip()
    assert rc == 1, (rc, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith("error: ") and all(w in err for w in words), err
    return err


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    """A finished evaluation (labeled, so with PNGs) whose predictions.jsonl is reused."""
    doc = fitted()
    records = apply_operating_point(make_records(), doc, TAX)
    out = tmp_path / "first"
    run_evaluation(records, TAX, CFG, out, doc)
    return out / "predictions.jsonl"


# ---- item 5: evaluate staged whole, a full disk, vocab and samples --out --------------------


def _full_disk(monkeypatch, after: int = 0) -> None:
    """Path.write_bytes writes half its data, then fails as a full disk does (after `after`
    successful calls): the ENOSPC of a PNG written mid-report."""
    real, calls = Path.write_bytes, []

    def write_bytes(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) <= after:
            return real(self, data)
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "earlier-report"])
def test_evaluate_on_a_full_disk_leaves_nothing_half_written(
    predictions, tmp_path, monkeypatch, capsys, existing
):
    out = tmp_path / "report"
    thresholds = predictions.parent / "thresholds.json"
    args = ["--predictions", str(predictions), "--thresholds", str(thresholds), "--out", str(out)]
    if existing:
        assert evaluate_predictions_main(args) == 0
        capsys.readouterr()
    before = tree(out) if existing else None
    _full_disk(monkeypatch, after=1)  # the first PNG is written whole, the second cut
    assert evaluate_predictions_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err, err
    assert "nothing was written" in err and str(out) in err
    assert (tree(out) == before) if existing else not out.exists()
    assert siblings(out) == []


def test_evaluate_replaces_an_earlier_report_whole(predictions, tmp_path, capsys):
    """An unlabeled rerun into the same --out: the old PNGs go (before: left beside a report
    that no longer links them, the directory rewritten file by file)."""
    out = tmp_path / "report"
    th = predictions.parent / "thresholds.json"
    base = ["--thresholds", str(th), "--out", str(out)]
    assert evaluate_predictions_main(["--predictions", str(predictions), *base]) == 0
    assert (out / "pr_curves.png").is_file()
    rows = [json.loads(x) for x in predictions.read_text("utf-8").splitlines()]
    unlabeled = tmp_path / "u" / "predictions.jsonl"
    unlabeled.parent.mkdir()
    unlabeled.write_text("".join(json.dumps({**r, "labels": None}) + "\n" for r in rows), "utf-8")
    assert evaluate_predictions_main(["--predictions", str(unlabeled), *base]) == 0
    assert not (out / "pr_curves.png").exists() and (out / "report.html").is_file()
    assert json.loads((out / "metrics.json").read_text("utf-8"))["n_labeled"] == 0
    assert siblings(out) == []


def test_evaluate_refuses_a_directory_that_is_not_a_report(predictions, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    code = evaluate_predictions_main(["--predictions", str(predictions), "--thresholds",
                                      str(predictions.parent / "thresholds.json"),
                                      "--out", str(out)])  # fmt: skip
    assert code == 1
    assert "not an earlier output" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_evaluate_predictions_out_may_not_hold_its_input(predictions, capsys):
    code = evaluate_predictions_main(
        ["--predictions", str(predictions), "--out", str(predictions.parent)]
    )
    assert code == 1 and "contains the input" in capsys.readouterr().err
    assert (predictions.parent / "report.html").is_file()


@pytest.fixture
def bundle_copy(assets, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(assets.bundle, dst)
    return dst


def test_vocab_refuses_a_bundles_tokenizer(assets, bundle_copy, capsys):
    before = tree(bundle_copy)
    code = main(["vocab", str(assets.drift), "--size", "300", "--out",
                 str(bundle_copy / "tokenizer")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "inside the bundle" in err and len(err.strip().splitlines()) == 1
    assert tree(bundle_copy) == before
    bundle_format.verify_checksums(bundle_copy)


def test_vocab_refuses_a_snapshot_and_a_foreign_directory(assets, tmp_path, capsys):
    snap = tmp_path / "snap"
    shutil.copytree(assets.drift, snap)
    before = tree(snap)
    assert main(["vocab", str(assets.drift), "--out", str(snap)]) == 1
    assert "is the snapshot" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x", encoding="utf-8")
    assert main(["vocab", str(assets.drift), "--out", str(mine)]) == 1
    assert "not an earlier output" in capsys.readouterr().err
    assert tree(snap) == before and [p.name for p in mine.iterdir()] == ["a.txt"]


def test_vocab_bad_snapshot_and_size_are_one_line(tmp_path, assets):
    out, empty = str(tmp_path / "tok"), tmp_path / "empty"
    empty.mkdir()
    bad, small = run_cli(["vocab", str(empty), "--out", out],
                         ["vocab", str(assets.drift), "--size", "100", "--out", out])  # fmt: skip
    one_line_error(bad, "no listings.jsonl")
    one_line_error(small, "--size")
    assert not Path(out).exists()


def test_vocab_writes_and_replaces_its_own_output(assets, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["vocab", str(assets.drift), "--size", "300", "--out", str(out)]) == 0
    first = (out / "vocab.txt").read_text("utf-8").splitlines()
    assert 150 < len(first) <= 300 and first[0] == "[PAD]"
    assert main(["vocab", str(assets.drift), "--size", "150", "--out", str(out)]) == 0
    second = (out / "vocab.txt").read_text("utf-8").splitlines()
    assert len(second) <= 150 < len(first) and second[:5] == first[:5]
    assert siblings(out) == []


def test_samples_refuses_bundles_snapshots_and_foreign_splits(
    assets, bundle_copy, tmp_path, capsys
):
    snap = tmp_path / "snap"
    shutil.copytree(assets.drift, snap)
    foreign = tmp_path / "data"
    write_snapshot(foreign / "train", [row(1)])  # a user's own snapshot named train/
    cases = [(bundle_copy, "is a bundle"), (snap, "is the snapshot"),
             (snap / "images", "inside the snapshot"), (foreign, "not a sample split")]  # fmt: skip
    for out, words in cases:
        before = tree(out.parent)
        assert main(["samples", "--out", str(out), "--n-train", "5"]) == 1
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert tree(out.parent) == before
    from mmdetect.samples.target import check_samples_out

    assert check_samples_out(assets.samples) == assets.samples  # its own output: replaceable


# ---- item 6: future review times; report.md escaped ------------------------------------------


def _future(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat(timespec="seconds")


def test_a_review_from_the_future_is_a_counted_skip(tmp_path):
    from mmdetect.ops.feedback import merge_reviews

    snap = make_snapshot(tmp_path / "snap")
    reviews = write_reviews(tmp_path / "reviews.jsonl", [
        review(1, ["adult"], "9999-12-31T00:00:00+00:00"),  # would win forever
        review(1, ["counterfeit"], "2026-10-03T09:00:00+09:00"),  # the genuine review
        review(2, ["adult"], _future(minutes=5)),  # within the clock skew: accepted
        review(3, ["adult"], _future(minutes=30)),  # beyond it
    ])  # fmt: skip
    result = merge_reviews(snap, reviews, tmp_path / "out")
    r = result["counts"]["reviews"]
    assert r["skipped_by_reason"] == {"future_time": 2} and r["applied"] == 2
    rows = {x.id: x for x in read_snapshot_rows(tmp_path / "out")}
    assert rows["L0001"].labels == ("counterfeit",)
    assert rows["L0001"].reviewed_at.year == 2026 and rows["L0002"].labels == ("adult",)
    assert rows["L0003"].labels is None
    assert any(
        "reviews.jsonl:1: reviewed_at" in x for x in result["examples"]["skipped"]["future_time"]
    )
    wide = merge_reviews(snap, reviews, tmp_path / "out2",
                         max_clock_skew=timedelta(hours=1))  # fmt: skip
    assert wide["counts"]["reviews"]["skipped_by_reason"] == {"future_time": 1}


def read_snapshot_rows(root: Path):
    from mmdetect.data.reader import read_snapshot

    return read_snapshot(root, check_images=False).listings


def test_check_reports_rows_reviewed_in_the_future(tmp_path, capsys):
    snap = write_snapshot(tmp_path / "s", [
        row(1, reviewed_at="9999-12-31T00:00:00+00:00", label_source="review"),
        row(2, reviewed_at="2026-10-01T00:00:00+00:00", label_source="review"),
    ])  # fmt: skip
    assert main(["check", str(snap), "--no-images"]) == 0
    out = capsys.readouterr().out
    assert "1 listings reviewed in the future" in out and "'L0001'" in out
    assert "L0002" not in out.split("reviewed in the future")[1]
    assert main(["check", str(snap), "--no-images", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["future_reviews"] == {"count": 1, "examples": ["L0001"]}


HOSTILE_IDS = ["<script>alert(1)</script>", "a|b|c", "x\ny", "[l](javascript:x)", "*bold*\\|"]
HOSTILE_CAT = "<img src=x onerror=alert(1)>|cat"


def _cells(line: str) -> list[str]:
    """A GFM table row split on its unescaped pipes (an escaped `\\|` stays in the cell)."""
    parts = re.split(r"(?<!\\)((?:\\\\)*)\|", line.strip())
    cells, buf = [], ""
    for i, part in enumerate(parts):
        if i % 2:  # the even run of backslashes before a separator belongs to the cell
            cells.append(buf + part)
            buf = ""
        else:
            buf += part
    cells.append(buf)
    return [c.strip() for c in cells[1:-1]]


def _unescape(cell: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", cell))


def test_report_md_escapes_hostile_ids_and_categories(tmp_path):
    doc = fitted()
    records = make_records(120)
    records = [replace(r, id=HOSTILE_IDS[i] if i < len(HOSTILE_IDS) else r.id,
                       category=HOSTILE_CAT if r.category else None,
                       scores={**r.scores, "a": 0.999} if i < len(HOSTILE_IDS) else r.scores)
               for i, r in enumerate(records)]  # fmt: skip
    records = apply_operating_point(records, doc, TAX)
    out = tmp_path / "r"
    run_evaluation(records, TAX, CFG, out, doc)
    md = (out / "report.md").read_text("utf-8")
    assert "<" not in md and ">" not in md.replace("&gt;", "")  # no raw HTML at all
    tables, current = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            current = current if current is not None else []
            current.append(line)
        elif current is not None:
            tables.append(current)
            current = None
    assert len(tables) >= 5
    for table in tables:
        widths = {len(_cells(line)) for line in table}
        assert len(widths) == 1, table  # every row as many columns as the header
    hidden = next(t for t in tables if _cells(t[0])[0] == "id")
    shown = {_unescape(_cells(line)[0]) for line in hidden[2:]}
    assert {i.replace("\n", " ") for i in HOSTILE_IDS} <= shown  # read back as written
    assert any(_unescape(_cells(x)[0]) == HOSTILE_CAT for t in tables for x in t[2:])


# ---- item 7: file arguments that hang or fill memory; messages -----------------------------


def test_config_policy_thresholds_from_dev_zero_or_a_fifo(predictions, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pred, out = str(predictions), str(tmp_path / "o")
    cases = [
        (["evaluate", "--predictions", "/dev/zero", "--out", out], "--predictions"),
        (["evaluate", "--predictions", pred, "--config", "/dev/zero", "--out", out], "--config"),
        (["evaluate", "--predictions", pred, "--thresholds", str(fifo), "--out", out],
         "--thresholds"),
        (["evaluate", "--model", "m.ckpt", "--snapshot", str(tmp_path / "s"), "--thresholds",
          "/dev/zero", "--out", out], "--thresholds"),
        (["thresholds", "fit", "--model", "m.ckpt", "--snapshot", str(tmp_path / "s"), "--policy",
          "/dev/zero", "--out", out], "--policy"),
        (["promote", "--registry", str(tmp_path / "reg"), "--bundle", "b", "--on", "s",
          "--config", "/dev/zero"], "/dev/zero"),
    ]  # fmt: skip
    for result, (_, flag) in zip(run_cli(*(c for c, _ in cases)), cases, strict=True):
        one_line_error(result, flag, "not a regular file")
    assert not Path(out).exists()


def test_an_oversized_config_is_refused_before_parsing(predictions, tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (5 << 20))
    code = evaluate_predictions_main(["--predictions", str(predictions), "--config", str(big),
                                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 1 and "over 4194304 bytes" in capsys.readouterr().err


def test_fifo_inputs_say_not_a_regular_file(tmp_path):
    snap = make_snapshot(tmp_path / "snap")
    fifo = tmp_path / "reviews.jsonl"
    os.mkfifo(fifo)
    fifo_snap = tmp_path / "fifo_snap"
    fifo_snap.mkdir()
    os.mkfifo(fifo_snap / "listings.jsonl")
    results = run_cli(
        ["feedback", "merge", "--snapshot", str(snap), "--reviews", str(fifo), "--out",
         str(tmp_path / "o")],
        ["check", str(fifo_snap)],
        ["check", "/dev/zero"],
        ["explain", "--model", "m.ckpt", "--input", str(fifo), "--out", str(tmp_path / "e")],
        ["explain", "--model", "m.ckpt", "--input", "/dev/zero", "--out", str(tmp_path / "e")],
    )  # fmt: skip
    words = ["not a regular file"] * 2 + ["not a directory"] + ["not a regular file"] * 2
    for result, word in zip(results, words, strict=True):
        one_line_error(result, word)


def test_predict_skips_a_line_over_the_limit_as_check_does(assets, tmp_path, capsys):
    from mmdetect.data.jsonl import MAX_LINE_BYTES

    rows = (assets.drift / "listings.jsonl").read_bytes().splitlines(keepends=True)[:3]
    huge = json.loads(rows[1])
    huge["description"] = "あ" * (MAX_LINE_BYTES // 3 + 10)  # one listing over 1 MiB
    src = tmp_path / "in" / "listings.jsonl"
    src.parent.mkdir()
    src.write_bytes(rows[0] + json.dumps(huge, ensure_ascii=False).encode() + b"\n" + rows[2])
    shutil.copytree(assets.drift / "images", src.parent / "images")
    assert main(["check", str(src.parent), "--json", "--no-images"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == {"line_too_long": 1}
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--bundle", str(assets.bundle), "--input", str(src), "--out",
                 str(out), "--num-workers", "0"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "skipped: 1 (line_too_long 1)" in printed and "scored: 2" in printed
    ids = [json.loads(x)["id"] for x in out.read_text("utf-8").splitlines()]
    assert ids == [json.loads(rows[0])["id"], json.loads(rows[2])["id"]]


def _registry_with(tmp_path: Path, bundle: Path, name: str = "b1") -> Path:
    root = tmp_path / "reg"
    (root / "bundles").mkdir(parents=True)
    shutil.copytree(bundle, root / "bundles" / name)
    (root / "history.jsonl").write_text(json.dumps({"time": "2026-10-01T00:00:00Z",
        "action": "promote", "bundle": name, "previous": None}) + "\n", encoding="utf-8")  # fmt: skip
    (root / "current").symlink_to(f"bundles/{name}")
    return root


def test_promote_name_of_the_current_bundle_with_other_content(assets, tmp_path, capsys):
    root = _registry_with(tmp_path, assets.bundle)
    sums = root / "bundles" / "b1" / "SHA256SUMS"  # another bundle: same files listed otherwise
    sums.write_text("".join(reversed(sums.read_text().splitlines(keepends=True))))
    before = tree(root)
    code = main(["promote", "--registry", str(root), "--bundle", str(assets.bundle),
                 "--on", str(assets.drift), "--name", "b1"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "(the current bundle) exists with other content" in err
    assert "already the current bundle" not in err
    assert {k: v for k, v in tree(root).items() if k != ".lock"} == before  # the writers' lock


@pytest.mark.parametrize("name", ["a\nb", "<b>", "../x", ".hidden", "a/b", "", "x" * 129, "é"])
def test_promote_refuses_bundle_names_outside_the_safe_set(assets, tmp_path, capsys, name):
    root = _registry_with(tmp_path, assets.bundle)
    before = tree(root)
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--registry", str(root), "--bundle", str(assets.bundle), "--on",
              str(assets.drift), "--name", name])  # fmt: skip
    assert exc.value.code == 2 and "A-Z a-z 0-9" in capsys.readouterr().err
    assert tree(root) == before


def test_bundle_names():
    from mmdetect.ops.registry_names import check_bundle_name, safe_name

    for ok in ["b1", "bundle-2026.10_x", "A" * 128]:
        assert check_bundle_name(ok) == ok
    assert safe_name("my bundle<1>\n") == "my_bundle_1__"
    assert check_bundle_name(safe_name("...\u00e9")) == "bundle"
    assert check_bundle_name(safe_name("\u00e9x")) == "x"
