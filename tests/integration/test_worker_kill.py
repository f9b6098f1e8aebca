"""Two `mmdetect worker` processes on one group: one is killed with -9 while it holds events,
the other claims them after the idle time; then SIGTERM stops the survivor cleanly. Every
listing ends with exactly one decision and at most one action. Slow: two processes start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_server import running_redis
from tests.unit.test_worker import DRIFT, broker_for, drift_rows, event, stream

REPO = Path(__file__).resolve().parents[2]


def start_worker(url: str, bundle: Path, name: str, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "mmdetect.cli.commands", "worker", "--broker", url, "--bundle", str(bundle),
            "--images-root", str(DRIFT), "--consumer", name, "--max-batch", "8",
            "--claim-idle-ms", "1500", "--claim-every-s", "0.2", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))  # fmt: skip


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill9_then_sigterm(assets, tmp_path):
    rows = drift_rows(300)
    with running_redis(tmp_path / "redis") as server:
        client, broker = server.client(), broker_for(server)
        broker.ensure_group()
        a = start_worker(server.url, assets.bundle, "wA", tmp_path / "a.log")
        b = start_worker(server.url, assets.bundle, "wB", tmp_path / "b.log")
        try:
            broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])

            def a_holds() -> bool:
                for p, log in ((a, "a.log"), (b, "b.log")):
                    assert p.poll() is None, (tmp_path / log).read_text()[-2000:]
                held = client.xpending_range("listings", "mmdetect", "-", "+", 100, "wA")
                return client.xlen("decisions") >= 40 and len(held) > 0

            wait(a_holds, 180, "worker A to hold events")
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            held = client.xpending_range("listings", "mmdetect", "-", "+", 100, "wA")
            assert held, "A held nothing when killed"
            wait(lambda: client.xlen("decisions") >= len(rows), 180, "every decision")
            wait(lambda: client.xpending("listings", "mmdetect")["pending"] == 0, 30, "acks")
            b.send_signal(signal.SIGTERM)
            assert b.wait(30) == 0
        finally:
            for p in (a, b):
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        decided = [json.loads(d["decision"])["id"] for d in stream(client, "decisions")]
        actions = [x["listing_id"] for s in ("actions", "review_queue") for x in stream(client, s)]
    assert sorted(decided) == sorted(r["id"] for r in rows)  # exactly one each
    assert len(actions) == len(set(actions))  # at most one action each
    log = (tmp_path / "b.log").read_text()
    assert '"msg": "stopped"' in log and "Traceback" not in log
    claimed_ids = {m["message_id"] for m in held}
    assert claimed_ids  # A's events were decided by B (all decided, A dead)
