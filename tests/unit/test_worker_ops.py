"""The worker's operations: a blue-green switch under load (the HTTP service's Watcher and
Slot), a stop in the middle of a stream, `mmdetect publish` (rate, skips, resume)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from mmdetect.ops.registry import switch_current
from mmdetect.serving.reload import Slot, Watcher, load_active
from mmdetect.serving.worker.publish import publish_main
from tests.redis_server import running_redis
from tests.unit.test_http_switch import make_registry
from tests.unit.test_worker import Running, broker_for, drift_rows, event, stream

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def redis_server(tmp_path):
    with running_redis(tmp_path / "redis") as server:
        yield server


def test_switch_under_load(assets, redis_server, tmp_path):
    """Events flow while the registry moves blue -> green -> bad (refused): every listing gets
    exactly one decision, each names the bundle that scored it, blue strictly before green."""
    registry = make_registry(tmp_path / "registry", assets.bundle)
    staging = tmp_path / "loads"
    staging.mkdir()
    slot = Slot()
    watcher = Watcher(registry, slot, lambda p, n: load_active(p, n, staging, None, 8), 0.05)
    assert watcher.check_once() and slot.active.name == "blue"
    rows = drift_rows(160)
    client, broker = redis_server.client(), broker_for(redis_server)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            watcher.check_once()

    def publish() -> None:
        for i in range(0, len(rows), 8):
            broker.publish([event(r, f"e{i + k}") for k, r in enumerate(rows[i : i + 8])])
            if i == 64:
                switch_current(registry, "green")
            if i == 128:
                switch_current(registry, "bad")  # fails verification: green keeps scoring
            time.sleep(0.05)

    threads = [threading.Thread(target=watch), threading.Thread(target=publish)]
    with Running(broker, slot, tmp_path, max_batch=8) as w:
        for t in threads:
            t.start()
        w.until(lambda: client.xlen("decisions") >= len(rows), timeout=120)
        done.set()
        for t in threads:
            t.join(30)
    decided = stream(client, "decisions")
    ids = [json.loads(d["decision"])["id"] for d in decided]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    bundles = [d["bundle"] for d in decided]
    assert set(bundles) == {"blue", "green"}
    first_green = bundles.index("green")
    assert set(bundles[first_green:]) == {"green"}  # one bundle per batch, batches in order
    assert all(d["idempotency_key"].endswith(f":{d['bundle']}") for d in decided)
    assert slot.active.name == "green" and slot.refused["bundle"] == "bad"


def test_stop_finishes_the_batch_and_leaves_the_rest(assets, redis_server, tmp_path):
    """A stop (what SIGTERM sets) mid-stream: what was read is committed, the rest is left in
    the stream for the group, nothing is pending."""
    slot = Slot()
    staging = tmp_path / "loads"
    staging.mkdir()
    slot.switch(load_active(assets.bundle, "b", staging, None, 8), time.time())
    rows = drift_rows(300)
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    with Running(broker, slot, tmp_path, max_batch=8) as w:
        w.until(lambda: client.xlen("decisions") >= 16)
    decided = client.xlen("decisions")
    assert 16 <= decided < len(rows)
    assert client.xpending("listings", "mmdetect")["pending"] == 0
    assert client.xinfo_groups("listings")[0]["lag"] == len(rows) - decided


def test_publish_rate_skips_and_resume(redis_server, tmp_path, capsys):
    rows = drift_rows(40)
    src = tmp_path / "october.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(10, "{broken")
    src.write_text("\n".join(lines) + "\n", "utf-8")
    base = [str(src), "--broker", redis_server.url, "--stream", "listings"]
    t0 = time.monotonic()
    assert publish_main([*base, "--limit", "20", "--rate", "100"]) == 0
    assert time.monotonic() - t0 >= 0.15  # 20 events at 100/s: about 0.2 s
    out = capsys.readouterr()
    assert f"{src}:11: skipped: invalid JSON" in out.err and "invalid_json 1" in out.out
    assert publish_main([*base, "--resume"]) == 0
    assert "resuming" in capsys.readouterr().err
    entries = stream(redis_server.client(), "listings")
    assert [int(e["line"]) for e in entries] == [n for n in range(1, 42) if n != 11]
    docs = [json.loads(e["event"]) for e in entries]
    assert [d["listing"]["id"] for d in docs] == [r["id"] for r in rows]
    assert docs[0]["event_id"] == "october.jsonl:1" and docs[0]["version"] == rows[0]["created_at"]
    assert all(float(e["published_at"]) > 0 for e in entries)
    groups = redis_server.client().xinfo_groups("listings")
    assert groups[0]["name"] == b"mmdetect" and groups[0]["lag"] == 40  # none missed
    assert publish_main([*base, "--resume"]) == 0  # nothing left: nothing published twice
    assert redis_server.client().xlen("listings") == 40


def test_publish_bad_broker(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_text('{"id": "x"}\n')
    assert publish_main([str(src), "--broker", "redis://127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: redis://127.0.0.1:1/0: ") and "Traceback" not in err
