"""`mmdetect worker` against a real redis-server: the numbers of predict, the action per tier,
idempotency under redelivery, dead letters, claiming a dead consumer's events, a broker that
goes away mid-run, bad broker URLs, /metrics."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mmdetect.serving.predict import predict_main
from mmdetect.serving.reload import Slot, load_active
from mmdetect.serving.worker.broker import Commit
from mmdetect.serving.worker.cli import worker_main
from mmdetect.serving.worker.loop import Worker, WorkerConfig
from mmdetect.serving.worker.metrics import WorkerMetrics, serve_metrics
from mmdetect.serving.worker.redis_streams import RedisStreams
from tests.redis_server import free_port, running_redis

pytestmark = pytest.mark.usefixtures("single_thread")
DRIFT = Path(__file__).resolve().parents[2] / "data_samples" / "drift"
OUTPUTS = {"decisions": "decisions", "actions": "actions", "reviews": "review_queue",
           "dead": "listings.dead"}  # fmt: skip


def drift_rows(n: int | None = None) -> list[dict]:
    lines = (DRIFT / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def event(row: dict, event_id: str, version: str | int | None = None) -> dict[str, str]:
    doc = {"event_id": event_id, "version": version or row["created_at"], "listing": row}
    return {"event": json.dumps(doc, ensure_ascii=False), "published_at": f"{time.time():.6f}"}


def broker_for(server, consumer: str = "w1") -> RedisStreams:
    return RedisStreams(server.url, "listings", "mmdetect", consumer, OUTPUTS,
                        "mmdetect:done:decisions:", block_ms=200)  # fmt: skip


def stream(client, name: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(name)]


@pytest.fixture
def redis_server(tmp_path):
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def slot(assets, tmp_path_factory) -> Slot:
    staging = tmp_path_factory.mktemp("worker-staging")
    s = Slot()
    s.switch(load_active(assets.bundle, "bundle", staging, None, 16), time.time())
    return s


class Running:
    """A Worker on a thread; `until(pred)` waits for the streams to satisfy pred."""

    def __init__(self, broker, slot, tmp_path: Path, **cfg):
        staging = tmp_path / f"staging-{broker.consumer}"
        staging.mkdir()
        defaults = dict(max_batch=16, max_wait_ms=5, claim_idle_ms=3000, claim_every_s=0.1,
                        images_root=DRIFT)  # fmt: skip
        self.worker = Worker(broker, slot, staging, WorkerConfig(**{**defaults, **cfg}))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 (the test reads it)
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def until(self, pred, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)


def test_decisions_match_predict_and_actions_follow_tiers(assets, slot, redis_server, tmp_path):
    """Every drift listing: predict's decision row (identical tiers, |dp| <= 1e-6), `hide` in
    the actions stream, `review` in the review queue with predict's queue row, nothing else."""
    rows = drift_rows()
    src = tmp_path / "listings.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    out = tmp_path / "decisions.jsonl"
    assert predict_main(["--bundle", str(assets.bundle), "--input", str(src), "--images-root",
                         str(DRIFT), "--out", str(out)]) == 0  # fmt: skip
    want = {d["id"]: d for d in map(json.loads, out.read_text("utf-8").splitlines())}
    queue = out.with_name("decisions.review_queue.jsonl").read_text("utf-8").splitlines()
    want_queue = {q["id"]: q for q in map(json.loads, queue)}
    client = redis_server.client()
    broker = broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    with Running(broker, slot, tmp_path) as w:
        w.until(lambda: client.xlen("decisions") >= len(rows))
    got = {json.loads(d["decision"])["id"]: d for d in stream(client, "decisions")}
    assert len(got) == len(rows) == client.xlen("decisions") and set(got) == set(want)
    worst = 0.0
    for listing_id, w in want.items():
        d = got[listing_id]
        row = json.loads(d["decision"])
        assert list(row) == list(w) and row["decision"] == w["decision"]
        assert row["decisions"] == w["decisions"] and d["bundle"] == "bundle"
        assert d["idempotency_key"] == f"{listing_id}:{d['version']}:bundle"
        for key in ("scores", "model_scores"):
            worst = max(worst, *(abs(row[key][c] - w[key][c]) for c in w[key]))
        assert abs(row["priority"] - w["priority"]) <= 1e-6
    assert worst <= 1e-6
    hides = {a["listing_id"] for a in stream(client, "actions")}
    assert hides == {i for i, w in want.items() if w["decision"] == "hide"}
    reviews = {r["listing_id"]: json.loads(r["review"]) for r in stream(client, "review_queue")}
    assert set(reviews) == set(want_queue) and len(reviews) > 0
    for listing_id, r in reviews.items():
        q = want_queue[listing_id]
        assert r["top_class"] == q["top_class"] and r["flagged"] == q["flagged"]
    assert client.xpending("listings", "mmdetect")["pending"] == 0


def test_commit_is_idempotent_and_atomic(redis_server):
    """A commit retried after a lost reply, or a second event for the same listing version,
    writes nothing more; a new version is decided again. Dead letters are always written."""
    client, broker = redis_server.client(), broker_for(redis_server)
    ids = broker.publish([{"event": "{}"}] * 3)
    broker.read(3, 100)
    first = Commit(ids[0], [("decisions", {"x": "1"}), ("actions", {"a": "hide"})], done="L1:1")
    assert broker.commit([first]) == [True]
    assert broker.commit([first]) == [False]  # the retry: no second decision, no second action
    again = Commit(ids[1], [("decisions", {"x": "2"}), ("actions", {"a": "hide"})], done="L1:1")
    newer = Commit(ids[2], [("decisions", {"x": "3"})], done="L1:2")
    assert broker.commit([again, newer]) == [False, True]
    assert [d["x"] for d in stream(client, "decisions")] == ["1", "3"]
    assert client.xlen("actions") == 1
    assert client.xpending("listings", "mmdetect")["pending"] == 0
    ttl = client.ttl("mmdetect:done:decisions:L1:1")
    assert 0 < ttl <= 7 * 86400


def test_redelivered_event_gives_no_second_action(slot, redis_server, tmp_path):
    """The same listing version published twice, and an event claimed from a consumer that
    read it and died: one decision, one action per listing."""
    rows = drift_rows(40)
    client = redis_server.client()
    dead = broker_for(redis_server, "dead")
    dead.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    assert len(dead.read(20, 100)) == 20  # read by a consumer that never acks: pending
    dead.publish([event(r, f"again{i}") for i, r in enumerate(rows[:10])])  # same versions
    with Running(broker_for(redis_server, "live"), slot, tmp_path) as w:
        w.until(lambda: client.xpending("listings", "mmdetect")["pending"] == 0
                and client.xinfo_groups("listings")[0]["lag"] == 0)  # fmt: skip
        w.until(lambda: w.worker.metrics.events[(("outcome", "duplicate"),)] == 10)
    decided = [json.loads(d["decision"])["id"] for d in stream(client, "decisions")]
    assert sorted(decided) == sorted(r["id"] for r in rows)
    actions = [a["listing_id"] for a in stream(client, "actions")]
    actions += [a["listing_id"] for a in stream(client, "review_queue")]
    assert len(actions) == len(set(actions))
    assert client.xlen("listings.dead") == 0


def test_poison_events_fail_alone(slot, redis_server, tmp_path):
    """Bad JSON, a missing version, an invalid field, an undecodable photo, a message without
    an event: each a dead letter with its reason, in one batch with good listings that are
    decided; the group is left with nothing pending."""
    rows = drift_rows(6)
    client, broker = redis_server.client(), broker_for(redis_server)
    bad_photo = {**rows[3], "images": [{"b64": base64.b64encode(b"not a photo").decode()}]}
    no_version = json.dumps({"event_id": "nv", "listing": rows[2]})
    entries = [event(rows[0], "ok0"), {"event": "{not json"}, {"event": no_version},
               event({**rows[1], "price": "cheap"}, "badprice"), event(bad_photo, "photo"),
               {"other": "x"}, event(rows[4], "ok4")]  # fmt: skip
    broker.publish(entries)
    with Running(broker, slot, tmp_path, max_wait_ms=200) as w:
        w.until(lambda: client.xlen("listings.dead") == 5 and client.xlen("decisions") == 2)
        w.until(lambda: client.xpending("listings", "mmdetect")["pending"] == 0)
    reasons = [(d["reason"], d["field"]) for d in stream(client, "listings.dead")]
    assert reasons == [("bad_json", "event"), ("missing_field", "version"),
                       ("wrong_type", "listing.price"), ("image_corrupt", "listing.images[0]"),
                       ("missing_field", "event")]  # fmt: skip
    assert stream(client, "listings.dead")[0]["event"] == "{not json"
    decided = {json.loads(d["decision"])["id"] for d in stream(client, "decisions")}
    assert decided == {rows[0]["id"], rows[4]["id"]}
    assert w.worker.metrics.dead[(("reason", "bad_json"),)] == 1


def test_scoring_failure_is_retried_then_dead_lettered(slot, redis_server, tmp_path):
    """A listing whose scoring fails is left pending, claimed again after the idle time, and
    dead-lettered at max_deliveries; the others of its batch are decided at once."""
    rows = drift_rows(5)
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    from mmdetect.serving.reload import score_with

    running = Running(broker, slot, tmp_path, max_deliveries=3, claim_idle_ms=800)
    real = score_with(slot, running.worker.staging)

    def score(listings):
        out = real(listings)
        return [RuntimeError("model blew up") if x.id == rows[2]["id"] else r
                for x, r in zip(listings, out, strict=True)]  # fmt: skip

    running.worker.score = score
    with running as w:
        w.until(lambda: client.xlen("listings.dead") == 1)
    dead = stream(client, "listings.dead")[0]
    assert dead["reason"] == "scoring_error" and dead["deliveries"] == "3"
    assert "model blew up" in dead["message"]
    assert client.xlen("decisions") == 4
    # 2 retries; 1 where a claim found the event still held (XAUTOCLAIM counts a delivery)
    assert w.worker.metrics.events[(("outcome", "retry"),)] in (1, 2)


def test_broker_restart_mid_run_loses_nothing(slot, redis_server, tmp_path):
    """The server stops while events are being scored and comes back on the same directory:
    the worker retries with backoff, and every event gets exactly one decision."""
    rows = drift_rows(120)
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    with Running(broker, slot, tmp_path, max_batch=8) as w:
        w.until(lambda: client.xlen("decisions") >= 16)
        redis_server.stop()
        time.sleep(1.0)
        redis_server.start()
        w.until(lambda: client.xlen("decisions") >= len(rows))
        w.until(lambda: client.xpending("listings", "mmdetect")["pending"] == 0)
        time.sleep(0.3)
    decided = [json.loads(d["decision"])["id"] for d in stream(client, "decisions")]
    assert sorted(decided) == sorted(r["id"] for r in rows)
    assert w.worker.metrics.reconnects >= 1


@pytest.fixture
def own_logging():
    """worker_main sets up JSON logs on the mmdetect logger: put it back for the next tests."""
    import logging

    logger = logging.getLogger("mmdetect")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers, logger.propagate, logger.level = saved


def test_worker_cli_bad_url_and_unreachable_broker(assets, capsys, own_logging):
    base = ["--bundle", str(assets.bundle), "--connect-timeout-s", "1"]
    assert worker_main(["--broker", "http://localhost:1/0", *base]) == 1
    err = capsys.readouterr().err
    assert "expected redis://HOST:PORT/DB" in err and "Traceback" not in err
    assert worker_main(["--broker", "redis://127.0.0.1:notaport/0", *base]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --broker") and "Traceback" not in err
    assert worker_main(["--broker", f"redis://127.0.0.1:{free_port()}/0", *base]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot reach the broker in 1 s" in err and "Connection refused" in err


def test_metrics_and_healthz(slot, redis_server, tmp_path):
    rows = drift_rows(20)
    broker = broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)] + [{"event": "[]"}])
    with Running(broker, slot, tmp_path) as w:
        m: WorkerMetrics = w.worker.metrics
        w.until(lambda: m.events[(("outcome", "decided"),)] == 20 and m.dead)
        m.bundle, m.lag = "bundle", broker.lag()
        server = serve_metrics(m, "127.0.0.1", 0, lambda: (True, {"alive": True}))
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        server.shutdown()
    assert health == {"alive": True}
    assert 'mmdetect_worker_events_total{outcome="decided"} 20' in body
    assert 'mmdetect_worker_dead_letters_total{reason="not_an_object"} 1' in body
    assert 'mmdetect_bundle_serving{bundle="bundle"} 1' in body
    assert "mmdetect_worker_latency_seconds_count 20" in body
    assert "mmdetect_worker_consumer_lag 0" in body
    tiers = sum(v for (t, _), v in m.decisions.items())
    assert tiers == 20


def test_review_actions_carry_the_explanation(slot, redis_server, tmp_path):
    """--explain-reviews: each review action holds the HTTP service's explanation of the
    listing (explain_scored on the same staged photos), the same document."""
    from mmdetect.data.rows import parse_row
    from mmdetect.explain.service import explain_scored

    predictor = slot.active.predictor
    rows = drift_rows(40)
    listings = [parse_row({k: v for k, v in r.items() if k != "labels"}, predictor.taxonomy)
                for r in rows]  # fmt: skip
    tiers = [d.decision for d in predictor.predict(listings, DRIFT)]
    picked = [r for r, t in zip(rows, tiers, strict=True) if t == "review"][:2]
    assert picked, "no review listing among the first 40"
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(picked)])
    with Running(broker, slot, tmp_path, explain_reviews=True) as w:
        w.until(lambda: client.xlen("review_queue") == len(picked))
    for review, row, listing in zip(stream(client, "review_queue"), picked,
                                    [x for x in listings if x.id in {r["id"] for r in picked}],
                                    strict=True):  # fmt: skip
        assert review["listing_id"] == row["id"] == listing.id
        want = json.loads(json.dumps(explain_scored(predictor, listing, DRIFT)))
        got = json.loads(review["explanation"])
        assert got.pop("cost")["seconds"] > 0 and want.pop("cost")  # timings differ
        assert got == want and "error" not in want


def test_stop_while_the_broker_is_away_leaves_events_pending(slot, redis_server, tmp_path):
    """SIGTERM while the server is down: the commit is retried for drain_timeout_s, then the
    worker gives up (BrokerUnavailable, no hang); once the server is back, another worker
    claims what the first had read, and every listing is decided once."""
    from mmdetect.serving.worker.broker import BrokerUnavailable

    rows = drift_rows(80)
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(r, f"e{i}") for i, r in enumerate(rows)])
    w = Running(broker, slot, tmp_path, max_batch=8, drain_timeout_s=1.0)
    w.thread.start()
    w.until(lambda: client.xlen("decisions") >= 8)
    redis_server.stop()
    w.stop.set()
    w.thread.join(30)
    assert not w.thread.is_alive()  # no hang on a broker that stays away
    # a batch read and not committed gives up after drain_timeout_s; one not read yet: none
    assert w.error is None or isinstance(w.error, BrokerUnavailable)
    redis_server.start()
    with Running(broker_for(redis_server, "w2"), slot, tmp_path, claim_idle_ms=200) as w2:
        w2.until(lambda: client.xlen("decisions") >= len(rows))
        w2.until(lambda: client.xpending("listings", "mmdetect")["pending"] == 0)
    decided = [json.loads(d["decision"])["id"] for d in stream(client, "decisions")]
    assert sorted(decided) == sorted(r["id"] for r in rows)


def test_photo_problems_score_mode(slot, redis_server, tmp_path):
    """--photo-problems score: a listing with an undecodable photo is scored without it, as
    predict does, and its decision entry says which photo was dropped and why."""
    row = drift_rows(1)[0]
    bad = {**row, "images": [*row["images"], {"b64": base64.b64encode(b"junk").decode()}]}
    client, broker = redis_server.client(), broker_for(redis_server)
    broker.publish([event(bad, "e0")])
    with Running(broker, slot, tmp_path, score_photo_problems=True) as w:
        w.until(lambda: client.xlen("decisions") == 1)
    d = stream(client, "decisions")[0]
    problems = json.loads(d["photo_problems"])
    assert [(p["field"], p["reason"]) for p in problems] == [("images[1]", "image_corrupt")]
    assert json.loads(d["decision"])["id"] == row["id"] and client.xlen("listings.dead") == 0
