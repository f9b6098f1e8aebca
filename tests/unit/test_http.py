"""`mmdetect serve` over a fixed bundle: same numbers as predict, 4xx, limits, backpressure,
timeouts, health and metrics, graceful shutdown. The server runs in-process on a free port."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

from mmdetect.serving.app import ServeConfig, create_app
from mmdetect.serving.batcher import Batcher, QueueFull
from mmdetect.serving.inputs import Limits
from mmdetect.serving.predict import predict_main

pytestmark = pytest.mark.usefixtures("single_thread")

DRIFT = Path(__file__).resolve().parents[2] / "data_samples" / "drift"


class Server:
    """uvicorn in a thread on 127.0.0.1:<free port>; `post`/`get` return (status, headers, doc)."""

    def __init__(self, cfg: ServeConfig, **options):
        """`options`: more uvicorn.Config arguments (mmdetect.serving.guard.uvicorn_options)."""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.app = create_app(cfg)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=10, **options)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def service(self):
        return self.app.state.service

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("content-type", "")
            doc = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
            return resp.status, dict(resp.getheaders()), doc
        finally:
            conn.close()

    def post(self, doc, **kw):
        body = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
        return self.request("POST", "/v1/score", body, **kw)

    def get(self, path: str):
        return self.request("GET", path)


def drift_rows(n: int) -> list[dict]:
    lines = (DRIFT / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


LIMITS = Limits(max_body_bytes=1 << 20, max_listings=100, max_photo_bytes=200_000)


@pytest.fixture(scope="module")
def server(assets):
    cfg = ServeConfig(bundle=assets.bundle, images_root=DRIFT, max_batch_size=16, max_wait_ms=5,
                      max_queue=256, timeout_s=20, workers=2, limits=LIMITS)  # fmt: skip
    with Server(cfg) as s:
        yield s


def test_scores_match_predict_on_drift(assets, server, tmp_path):
    """Identical decisions and |dp| <= 1e-6 vs `mmdetect predict`, requests mixing single
    listings and batches sent concurrently (so model batches mix requests, and two scoring
    threads share one Predictor)."""
    rows = drift_rows(96)
    src = tmp_path / "listings.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    out = tmp_path / "decisions.jsonl"
    argv = ["--bundle", str(assets.bundle), "--input", str(src), "--images-root", str(DRIFT),
            "--out", str(out)]  # fmt: skip
    assert predict_main(argv) == 0
    want = {d["id"]: d for d in map(json.loads, out.read_text("utf-8").splitlines())}
    bodies = [rows[i] for i in range(0, 32)] + [
        {"listings": rows[i : i + 8]} for i in range(32, 96, 8)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(server.post, bodies))
    got = {}
    for status, _, doc in answers:
        assert status == 200, doc
        for item in doc.get("results", [doc]):
            got[item["id"]] = item
    assert set(got) == set(want) and len(got) == 96
    worst = 0.0
    for listing_id, w in want.items():
        g = got[listing_id]
        assert g["decision"] == w["decision"] and g["decisions"] == w["decisions"]
        assert list(g["scores"]) == list(w["scores"]) and g["bundle"] == "bundle"
        worst = max(worst, *(abs(g["scores"][c] - w["scores"][c]) for c in w["scores"]))
    assert worst <= 1e-6
    sizes = server.service.metrics.batch_sizes
    assert sizes.count < 96  # batches held listings of several requests


def test_bad_listings_fail_alone(server):
    rows = drift_rows(6)
    no_title = {k: v for k, v in rows[1].items() if k != "title"}
    bad = [no_title, {**rows[2], "price": -5}, {**rows[3], "images": [3]}, "not an object",
           {**rows[0]}]  # fmt: skip
    status, _, doc = server.post({"listings": [rows[0], *bad, rows[4]]})
    assert status == 207
    items = doc["results"]
    assert [x.get("decision") is not None for x in items] == [True, False, False, False, False,
                                                              False, True]  # fmt: skip
    errors = [x["error"] for x in items[1:6]]
    assert [(e["field"], e["reason"]) for e in errors] == [
        ("title", "missing_field"), ("price", "bad_price"), ("images", "wrong_type"),
        ("-", "not_an_object"), ("id", "duplicate_id")]  # fmt: skip
    assert items[2]["id"] == rows[2]["id"] and items[2]["index"] == 2
    status, _, doc = server.post({"listings": bad[:2]})
    assert status == 422 and all("error" in x for x in doc["results"])
    status, _, doc = server.post({**rows[5], "created_at": "yesterday"})
    assert status == 422 and doc["error"]["field"] == "created_at"
    assert doc["error"]["reason"] == "bad_date"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [(b"{not json", 400, "invalid JSON"), (b"[1]", 400, "expected a JSON object"),
     (b'{"listings": []}', 400, "non-empty list"), (b"\xff\xfe", 400, "not UTF-8"),
     (json.dumps({"listings": [{}] * 101}).encode(), 413, "over the limit of 100"),
     (b" " * (1 << 20) + b"{}", 413, "over the limit")],
    ids=["json", "array", "empty", "utf8", "listings", "body"],
)  # fmt: skip
def test_unusable_bodies(server, body, status, words):
    got, _, doc = server.post(body)
    assert got == status and words in doc["error"]


def test_photos_as_b64_and_hostile_paths(server):
    row = drift_rows(1)[0]
    photo = (DRIFT / row["images"][0]).read_bytes()
    status, _, by_path = server.post(row)
    assert status == 200 and "photo_problems" not in by_path
    b64 = {"b64": base64.b64encode(photo).decode()}
    status, _, by_b64 = server.post({**row, "images": [b64]})
    assert status == 200 and by_b64["scores"] == pytest.approx(by_path["scores"], abs=1e-6)
    hostile = ["../listings.jsonl", "/etc/passwd", "images/none.jpg", {"b64": "!!"},
               {"b64": base64.b64encode(b"x" * 200_001).decode()},
               {"b64": base64.b64encode(b"GIF89a" + b"\0" * 20).decode()}]  # fmt: skip
    status, _, doc = server.post({**row, "images": [*hostile, row["images"][0], b64]})
    assert status == 200
    reasons = [p["reason"] for p in doc["photo_problems"]]
    assert reasons == ["image_path_escapes", "image_path_escapes", "image_missing",
                       "image_corrupt", "image_too_large", "image_corrupt",
                       "duplicate_photo"]  # fmt: skip
    assert doc["scores"] == pytest.approx(by_path["scores"], abs=1e-6)  # the one good photo
    status, _, doc = server.post({**row, "images": ["../x.jpg"]})
    assert status == 200 and doc["photo_problems"][-1]["reason"] == "all_photos_failed"
    left = [p.name for p in server.service.staging.iterdir()]
    assert left == ["warmup"]  # request directories are removed once answered


def test_health_ready_and_metrics(server):
    assert server.get("/healthz")[:1] == (200,)
    status, _, doc = server.get("/readyz")
    assert status == 200 and doc["ready"] and doc["bundle"] == "bundle" and doc["refused"] is None
    server.post(drift_rows(1)[0])
    status, headers, text = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.splitlines()
    assert 'mmdetect_bundle_serving{bundle="bundle"} 1' in lines
    assert "mmdetect_queue_depth 0" in lines
    for family in ("mmdetect_request_seconds_bucket", "mmdetect_batch_size_count",
                   'mmdetect_decisions_total{tier="review",bundle="bundle"}',
                   'mmdetect_http_requests_total{path="/v1/score",code="200"}'):  # fmt: skip
        assert any(line.startswith(family) for line in lines), family
    count = next(x for x in lines if x.startswith("mmdetect_request_seconds_count"))
    assert int(count.split()[1]) >= 1


def _delay(service) -> dict:
    """Make every batch take `delay["s"]` longer (set it as the test goes)."""
    real, delay = service.batcher.score, {"s": 0.0}

    def slow(listings):
        time.sleep(delay["s"])
        return real(listings)

    service.batcher.score = slow
    return delay


def test_backpressure_timeout_and_graceful_drain(assets):
    """Queue of 2, batches of 1, 0.25 s a batch: 8 concurrent requests -> some 429 with
    Retry-After, the others answered; a request past --timeout-s gets 504; a stopping server
    still answers the requests it accepted."""
    cfg = ServeConfig(bundle=assets.bundle, images_root=DRIFT, max_batch_size=1, max_wait_ms=1,
                      max_queue=2, timeout_s=1.5, limits=LIMITS)  # fmt: skip
    rows = drift_rows(8)
    with Server(cfg) as s:
        delay = _delay(s.service)
        delay["s"] = 0.25
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(s.post, rows))
        codes = sorted(a[0] for a in answers)
        assert set(codes) == {200, 429} and 3 <= codes.count(200) <= 5, codes
        refused = [a for a in answers if a[0] == 429]
        assert all(int(h["retry-after"]) >= 1 and "queue full" in d["error"] for _, h, d in refused)
        delay["s"] = 2.0  # past the 1.5 s timeout
        status, headers, doc = s.post(rows[0])
        assert status == 504 and int(headers["retry-after"]) >= 1 and "not scored" in doc["error"]
        time.sleep(0.6)  # the slow batch ends
        delay["s"] = 0.3
        with ThreadPoolExecutor(2) as pool:
            pending = [pool.submit(s.post, r) for r in rows[:2]]
            time.sleep(0.15)
            s.server.should_exit = True  # as SIGTERM does: stop accepting, drain
            assert [f.result()[0] for f in pending] == [200, 200]


def test_batcher_groups_concurrent_listings_and_bounds_the_queue():
    sizes: list[int] = []

    def score(listings):
        sizes.append(len(listings))
        return [f"r{x}" for x in listings]

    async def main():
        b = Batcher(score, max_batch_size=4, max_wait_s=0.05, max_queue=6)
        b.start()
        futures = [f for x in range(6) for f in b.submit([x])]  # one request per listing
        with pytest.raises(QueueFull) as refused:
            b.submit([7])
        assert refused.value.retry_after_s >= 1
        results = await asyncio.gather(*futures)
        late = b.submit([8, 9])
        late[0].cancel()  # its request gave up: not scored
        assert await late[1] == "r9"
        await b.stop()
        return results

    assert asyncio.run(main()) == [f"r{x}" for x in range(6)]
    assert sizes == [4, 2, 1]


def test_batcher_workers_score_batches_at_once_and_drain():
    """Two workers: while one batch is being scored the next one is formed and scored beside
    it (no more than two at once); stop() waits for both and fails what is still queued."""
    running, peak, lock = [0], [0], threading.Lock()

    def score(listings):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return [x * 10 for x in listings]

    async def main():
        b = Batcher(score, max_batch_size=2, max_wait_s=0.001, max_queue=8, workers=2)
        assert b.retry_after_s() == 1
        b.start()
        first = b.submit([1, 2]) + b.submit([3, 4]) + b.submit([5, 6])
        got = await asyncio.gather(*first)
        late = b.submit([7, 8]) + b.submit([9, 10]) + b.submit([11, 12])
        await asyncio.sleep(0.03)  # two batches are being scored, the third waits
        await b.stop()
        outcomes = await asyncio.gather(*late, return_exceptions=True)
        return got, outcomes

    got, outcomes = asyncio.run(main())
    assert got == [10, 20, 30, 40, 50, 60] and peak[0] == 2
    assert outcomes[:4] == [70, 80, 90, 100]  # in progress at stop: finished
    assert all(isinstance(x, RuntimeError) and "shutting down" in str(x) for x in outcomes[4:])
    with pytest.raises(ValueError, match="workers"):
        Batcher(score, workers=0)


def test_batcher_fills_while_another_batch_is_scored():
    """Two workers, batches of up to 4: with no batch running a listing waits max_wait; while
    one runs, the next batch keeps filling while listings arrive (each within max_wait of the
    last) up to a worker's share (2), and goes when they stop: it does not wait for the other."""
    started: list[tuple[list[int], float]] = []

    def score(listings):
        started.append((list(listings), time.monotonic()))
        time.sleep(0.3)
        return list(listings)

    async def main():
        b = Batcher(score, max_batch_size=4, max_wait_s=0.05, max_queue=8, workers=2)
        b.start()
        first = b.submit([1])
        await asyncio.sleep(0.1)  # [1] is being scored alone
        second = b.submit([2])
        await asyncio.sleep(0.03)  # within max_wait of [2]: [3] joins it
        third = b.submit([3])
        await asyncio.gather(*first, *second, *third)
        fourth = b.submit([4])
        await asyncio.sleep(0.1)
        fifth = b.submit([5])  # nothing follows: [5] goes alone, beside [4]
        await asyncio.gather(*fourth, *fifth)
        await b.stop()

    asyncio.run(main())
    assert [x for x, _ in started] == [[1], [2, 3], [4], [5]]
    assert started[3][1] - started[2][1] < 0.25  # [5] did not wait for [4] to end


def test_parallelism_defaults():
    from mmdetect.serving.cli import DEFAULT_WORKERS, parallelism

    assert parallelism(1, None, None) == (1, 1)
    workers, threads = parallelism(2, None, None)
    assert workers == min(DEFAULT_WORKERS, 2) and threads == 2 // workers
    assert parallelism(16, 2, None) == (2, 8) and parallelism(16, 3, 1) == (3, 1)
    assert parallelism(2, 4, None) == (4, 1)  # more workers than cores: one thread each


def test_config_needs_one_source(assets):
    with pytest.raises(ValueError, match="exactly one"):
        from mmdetect.serving.app import Service

        Service(replace(ServeConfig(), bundle=None))


def test_serve_cli_refuses_bad_arguments(tmp_path, capsys):
    from mmdetect.serving.cli import serve_main

    assert serve_main(["--bundle", str(tmp_path / "none")]) == 1
    assert "--bundle" in capsys.readouterr().err
    args = ["--bundle", str(tmp_path), "--max-batch-size", "64", "--max-queue", "8"]
    assert serve_main(args) == 1
    assert "--max-queue must be at least --max-batch-size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_main(["--bundle", str(tmp_path), "--registry", str(tmp_path)])


@pytest.mark.slow  # a fresh interpreter importing torch: 5-20 s on the shared machine
def test_serving_imports_no_lightning():
    """In a fresh process: importing the service loads neither Lightning nor the training code
    (the registry's promote path imports them lazily, the service never calls it)."""
    import subprocess
    import sys

    code = ("import sys, mmdetect.serving.app, mmdetect.serving.cli; print(sorted(m for m in "
            "sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') or m in "
            "('mmdetect.training.module', 'mmdetect.training.run', 'mmdetect.training.datamodule')))")  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
