"""Blue-green switching of `mmdetect serve --registry`: under concurrent requests no request
fails and every answer names a bundle serving during the request; a bundle that fails
verification is refused while the old one keeps serving."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from mmdetect.artifacts.bundle_format import write_checksums
from mmdetect.artifacts.registry_history import _append_history
from mmdetect.artifacts.registry_layout import BUNDLES
from mmdetect.ops.registry import switch_current
from mmdetect.serving.app import ServeConfig
from tests.unit.test_http import DRIFT, LIMITS, Server, drift_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def record_promotion(root: Path, name: str) -> None:
    """A history.jsonl promote line: only promoted bundles are served (served_bundle)."""
    _append_history(root, {"time": "2026-01-01T00:00:00+00:00", "action": "promote",
                           "bundle": name, "previous": None})  # fmt: skip


def make_registry(root: Path, bundle: Path) -> Path:
    """bundles/blue and bundles/green (the same model, distinct checksums), bundles/bad (a
    thresholds.json edited after export), current -> blue."""
    for name in ("blue", "green", "bad"):
        dst = root / BUNDLES / name
        shutil.copytree(bundle, dst)
        meta = json.loads((dst / "meta.json").read_text())
        (dst / "meta.json").write_text(json.dumps({**meta, "note": name}))
        write_checksums(dst)
        record_promotion(root, name)
    th = root / BUNDLES / "bad" / "thresholds.json"
    th.write_text(th.read_text().replace('"threshold": 0.5', '"threshold": 0.05'))
    switch_current(root, "blue")
    return root


def wait_for(server: Server, pred, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = server.get("/readyz")[2]
        if pred(doc):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.02)


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture
def registry(assets, tmp_path) -> Path:
    return make_registry(tmp_path / "registry", assets.bundle)


def config(registry: Path) -> ServeConfig:
    return ServeConfig(registry=registry, images_root=DRIFT, max_batch_size=8, max_wait_ms=2,
                       max_queue=256, timeout_s=20, poll_s=0.05, workers=2, limits=LIMITS)  # fmt: skip


def test_switch_under_concurrent_requests(registry):
    rows = drift_rows(16)
    log: list[tuple[float, float, int, str | None]] = []
    pointer = [(time.time(), "blue")]
    stop = threading.Event()
    with Server(config(registry)) as s:
        wait_for(s, lambda d: d["bundle"] == "blue")

        def client(k: int) -> None:
            i = k
            while not stop.is_set():
                t0 = time.time()
                status, _, doc = s.post(rows[i % len(rows)])
                log.append((t0, time.time(), status, doc.get("bundle")))
                i += 4

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for name in ("green", "blue", "green"):
            time.sleep(0.3)
            switch_current(registry, name)
            pointer.append((time.time(), name))
            wait_for(s, lambda d, name=name: d["bundle"] == name)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        switches = s.get("/readyz")[2]["switches"]
        metrics = s.get("/metrics")[2]
    assert len(log) > 20 and all(status == 200 for _, _, status, _ in log)
    assert {b for *_, b in log} == {"blue", "green"}
    # serving intervals from the service's switch log; the last one is open
    starts = [(_t(x["serving_utc"]), x["bundle"]) for x in switches]
    intervals = [(t, nxt[0] if nxt else float("inf"), b)
                 for (t, b), nxt in zip(starts, [*starts[1:], None], strict=True)]  # fmt: skip
    assert [b for *_, b in intervals] == ["blue", "green", "blue", "green"]
    lag = max(x["lag_s"] for x in switches) + 0.05  # load + warm-up after the pointer moved
    moved = [(t, nxt[0] if nxt else float("inf"), b)
             for (t, b), nxt in zip(pointer, [*pointer[1:], None], strict=True)]  # fmt: skip
    for t0, t1, _, bundle in log:
        assert any(b == bundle and a <= t1 and t0 <= z for a, z, b in intervals)
        assert any(b == bundle and a <= t1 and t0 - lag <= z for a, z, b in moved)
    assert "mmdetect_bundle_switches_total 4" in metrics.splitlines()


def test_a_bad_bundle_is_refused_and_the_old_keeps_serving(registry):
    row = drift_rows(1)[0]
    with Server(config(registry)) as s:
        wait_for(s, lambda d: d["bundle"] == "blue")
        switch_current(registry, "bad")
        doc = wait_for(s, lambda d: d["refused"] is not None)
        assert doc["ready"] and doc["bundle"] == "blue" and doc["refused"]["bundle"] == "bad"
        assert "thresholds.json does not match its SHA256" in doc["refused"]["reason"]
        status, _, answer = s.post(row)
        assert status == 200 and answer["bundle"] == "blue"
        time.sleep(0.2)  # several polls: the refused pointer is not retried
        metrics = s.get("/metrics")[2].splitlines()
        assert "mmdetect_bundle_refusals_total 1" in metrics
        assert 'mmdetect_bundle_serving{bundle="blue"} 1' in metrics
        switch_current(registry, "blue")  # back on the bundle serving: the refusal is over
        assert wait_for(s, lambda d: d["refused"] is None)["bundle"] == "blue"
        switch_current(registry, "green")
        doc = wait_for(s, lambda d: d["bundle"] == "green")
        assert doc["refused"] is None and s.post(row)[2]["bundle"] == "green"


def test_not_ready_until_a_bundle_is_promoted(assets, tmp_path):
    root = tmp_path / "registry"
    (root / BUNDLES).mkdir(parents=True)
    with Server(config(root)) as s:
        status, _, doc = s.get("/readyz")
        assert status == 503 and doc == {**doc, "ready": False, "bundle": None}
        status, headers, doc = s.post(drift_rows(1)[0])
        assert status == 503 and headers["retry-after"] == "1"
        assert s.get("/healthz")[0] == 200
        shutil.copytree(assets.bundle, root / BUNDLES / "first")
        record_promotion(root, "first")
        switch_current(root, "first")
        wait_for(s, lambda d: d["ready"] and d["bundle"] == "first")
        assert s.post(drift_rows(1)[0])[0] == 200
