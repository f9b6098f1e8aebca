"""The review round trip against a REAL Label Studio server (slow: it starts in 1-2 minutes).

The server comes from `make labelstudio` (.venv-labelstudio; `make test` installs it), or from
MMDETECT_LABEL_STUDIO (a `label-studio` executable). It runs on a free loopback port with a
temporary data directory, and is stopped at the end. While iterating, MMDETECT_LABEL_STUDIO_URL
with LABEL_STUDIO_API_KEY points the test at a server already running instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from mmdetect.cli.commands import main as cli

REPO = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef0123456789abcdef01234567"
START_TIMEOUT_S = 420


def label_studio_binary() -> Path:
    given = os.environ.get("MMDETECT_LABEL_STUDIO")
    path = Path(given) if given else REPO / ".venv-labelstudio" / "bin" / "label-studio"
    if not path.is_file():  # not a skip: `make test` installs it, so its absence is a defect
        pytest.fail(f"{path} missing: run `make labelstudio` (or set MMDETECT_LABEL_STUDIO)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if os.environ.get("MMDETECT_LABEL_STUDIO_URL"):
        yield os.environ["MMDETECT_LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"]
        return
    binary, port = label_studio_binary(), free_port()
    data = tmp_path_factory.mktemp("label_studio_data")
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data)}
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--username", "reviewer@example.com", "--password", "reviewer-pass-1",
         "--user-token", TOKEN, "--enable-legacy-api-token"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=data,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (data / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Label Studio did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(2)
        yield url, TOKEN
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_round_trip_through_a_real_label_studio(
    label_studio, assets, tmp_path, monkeypatch, capsys
):
    from label_studio_sdk import LabelStudio

    label_studio, token = label_studio
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    decisions, tasks_file = tmp_path / "decisions.jsonl", tmp_path / "tasks.json"
    assert cli(["predict", "--bundle", str(assets.bundle), "--input",
                str(assets.drift / "listings.jsonl"), "--out", str(decisions)]) == 0  # fmt: skip
    capsys.readouterr()
    assert cli(["review", "export", "--decisions", str(decisions), "--snapshot", str(assets.drift),
                "--bundle", str(assets.bundle), "--pass-rate", "0.3", "--hide-rate", "1",
                "--out", str(tasks_file), "--push", label_studio,
                "--create-project", "mmdetect round trip"]) == 0  # fmt: skip
    pushed = json.loads(capsys.readouterr().out)["pushed"]
    tasks = json.loads(tasks_file.read_text())
    assert pushed["tasks"] == len(tasks) > 0
    ls = LabelStudio(base_url=label_studio, api_key=token)
    server_tasks = list(ls.tasks.list(project=pushed["project"]))
    assert len(server_tasks) == len(tasks)
    # a reviewer answers every other task through the API (what the UI posts)
    answers = {}
    for k, t in enumerate(sorted(server_tasks, key=lambda t: t.id)):
        if k % 2:
            continue
        labels = ["counterfeit"] if k % 4 == 0 else []
        answers[t.data["listing_id"]] = labels
        ls.annotations.create(id=t.id, result=[
            {"from_name": "labels", "to_name": "title", "type": "choices",
             "value": {"choices": labels or ["none"]}},
            {"from_name": "note", "to_name": "title", "type": "textarea",
             "value": {"text": ["<b>checked</b> | ok"]}}])  # fmt: skip
    reviews = tmp_path / "reviews.jsonl"
    assert cli(["review", "import", "--pull", label_studio, "--project", str(pushed["project"]),
                "--tasks", str(tasks_file), "--out", str(reviews)]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["reviews"] == len(answers)
    assert report["tasks_without_review_by_reason"] == {"no_annotation": len(tasks) - len(answers)}
    rows = [json.loads(line) for line in reviews.read_text().splitlines()]
    assert {r["id"]: r["labels"] for r in rows} == answers
    assert all(r["note"] == "<b>checked</b> | ok" for r in rows)
    merged = tmp_path / "merged"
    assert cli(["feedback", "merge", "--snapshot", str(assets.drift), "--reviews", str(reviews),
                "--out", str(merged)]) == 0  # fmt: skip
    merged_rows = [
        json.loads(line) for line in (merged / "listings.jsonl").read_text().splitlines()
    ]
    got = {r["id"]: r["labels"] for r in merged_rows if r["id"] in answers}
    assert got == answers
    assert all(r["label_source"] == "review" for r in merged_rows if r["id"] in answers)
