"""The service under attack (issue #27, item 4), on the real server on a free 127.0.0.1 port,
bounded (a few hundred connections, a few seconds): slow clients (headers that never end, a
body byte then nothing, a byte at a time), a connection flood, clients leaving mid-body, and
requests that cost parsing (120,000 photo paths, missing photos, a parse past the deadline,
values that broke whole batches)."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest

import mmdetect.serving.inputs as inputs
from mmdetect.data.jsonl import decode_line
from mmdetect.data.rows import parse_row
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.serving.app import ServeConfig
from mmdetect.serving.guard import uvicorn_options
from mmdetect.serving.inputs import DeadlinePassed, Limits, parse_request
from tests.unit.test_http import DRIFT, Server, drift_rows

pytestmark = pytest.mark.usefixtures("single_thread")

HEADER_S, TIMEOUT_S, MAX_CONNECTIONS = 1.0, 2.0, 300
LIMITS = Limits(max_body_bytes=4 << 20, max_listings=100, max_photo_bytes=200_000)


@pytest.fixture(scope="module")
def server(assets):
    cfg = ServeConfig(bundle=assets.bundle, images_root=DRIFT, max_batch_size=16, max_wait_ms=5,
                      max_queue=256, timeout_s=TIMEOUT_S, workers=1, limits=LIMITS)  # fmt: skip
    with Server(cfg, **uvicorn_options(HEADER_S, MAX_CONNECTIONS)) as s:
        yield s


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def closed_within(socks: list[socket.socket], seconds: float) -> tuple[int, float]:
    """(how many of `socks` the server closed within `seconds`, when the last one was)."""
    start, last, done = time.monotonic(), 0.0, 0
    for sock in socks:
        sock.settimeout(max(0.01, start + seconds - time.monotonic()))
        try:
            while sock.recv(4096):  # a 408 first, then the close
                pass
            done, last = done + 1, time.monotonic() - start
        except TimeoutError:
            pass
        except OSError:  # reset
            done, last = done + 1, time.monotonic() - start
        finally:
            sock.close()
    return done, last


POST = b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


def test_slowloris_is_cut_and_healthz_answers(server):
    """200 idle connections: 100 mid-headers, 100 with the headers and one body byte of 1000.
    /healthz answers meanwhile; the first are cut at the header deadline, the others at the
    request deadline (408), all within 2 s of it (a loaded machine accepts late)."""
    start = time.monotonic()
    half = [connect(server.port, POST) for _ in range(100)]
    body = [connect(server.port, POST + b"Content-Length: 1000\r\n\r\n{") for _ in range(100)]
    t = time.monotonic()
    assert server.get("/healthz")[0] == 200 and time.monotonic() - t < 2.0
    n, last = closed_within(half, HEADER_S + 2.0 - (time.monotonic() - start))
    assert n == 100, f"{n} of 100 mid-header connections cut"
    n, last = closed_within(body, TIMEOUT_S + 2.0 - (time.monotonic() - start))
    assert n == 100, f"{n} of 100 one-byte-body connections cut"
    assert server.get("/healthz")[0] == 200


def test_a_byte_a_second_body_gets_408(server):
    sock = connect(server.port, POST + b"Content-Length: 100\r\n\r\n")
    start, got = time.monotonic(), b""
    sock.settimeout(0.25)
    while time.monotonic() - start < TIMEOUT_S + 1.5:
        try:
            sock.sendall(b" ")
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    sock.close()
    assert got.startswith(b"HTTP/1.1 408"), got[:80]
    assert time.monotonic() - start < TIMEOUT_S + 1.5


def test_a_connection_flood_is_bounded(server):
    """Connections beyond --max-connections are closed at once; the rest are cut at the
    header deadline; afterwards /healthz answers."""
    socks = [connect(server.port) for _ in range(MAX_CONNECTIONS + 20)]
    time.sleep(0.2)
    extra, _ = closed_within(socks[MAX_CONNECTIONS:], 1.5)
    assert extra == 20
    cut, _ = closed_within(socks[:MAX_CONNECTIONS], HEADER_S + 2.5)
    assert cut == MAX_CONNECTIONS
    assert server.get("/healthz")[0] == 200


def test_a_client_leaving_mid_body_is_one_info_line(server, caplog):
    caplog.set_level(logging.INFO)
    for _ in range(3):
        sock = connect(server.port, POST + b"Content-Length: 1000\r\n\r\n" + b"{" * 10)
        time.sleep(0.05)
        sock.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lines = [r for r in caplog.records if r.getMessage() == "client disconnected mid-body"]
        if len(lines) >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # anything logged after the info lines (a traceback) is in too
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    lines = [r for r in caplog.records if r.getMessage() == "client disconnected mid-body"]
    assert len(lines) == 3 and all(r.levelno == logging.INFO and not r.exc_info for r in lines)


def raw_row(row: dict, **replace: str) -> str:
    """A row's JSON with fields replaced by raw JSON text (what json.dumps cannot write)."""
    text = json.dumps(row, ensure_ascii=False)
    for field, raw in replace.items():
        text = text.replace(f'"{field}": ', f'"{field}": {raw}, "{field}": ', 1)
    return text


def test_each_bad_listing_fails_alone_with_its_field(server):
    """A lone surrogate in id, a 5000-digit price, a bad photo path, a duplicated key, 120,000
    photo paths: each listing fails alone, naming its field; the good ones are scored; the
    120,000 paths cost no file lookups."""
    rows = drift_rows(7)
    many = json.dumps({**rows[5], "images": [f"images/none-{i}.jpg" for i in range(120_000)]})
    listings = [json.dumps(rows[0]),
                json.dumps({**rows[1], "id": "\ud800"}),  # json.dumps writes "\\ud800"
                json.dumps(rows[2]).replace(f'"price": {rows[2]["price"]}', '"price": ' + "9" * 5000),
                json.dumps({**rows[3], "images": ["\udc80.jpg"]}),
                raw_row(rows[4], price="1"),
                many, json.dumps(rows[6])]  # fmt: skip
    body = ('{"listings": [' + ", ".join(listings) + "]}").encode()
    start = time.monotonic()
    status, headers, doc = server.post(body)
    assert time.monotonic() - start < 1.5
    assert status == 207 and headers["content-type"].startswith("application/json"), doc
    items = doc["results"]
    assert "decision" in items[0] and "decision" in items[6]
    got = [(x["error"]["field"], x["error"]["reason"]) for x in items[1:6]]
    assert got == [("id", "bad_text"), ("price", "number_too_long"), ("images[0]", "bad_text"),
                   ("price", "duplicate_key"), ("images", "too_many_photos")]  # fmt: skip
    assert items[1]["id"] is None and items[4]["id"] == rows[4]["id"]


def test_the_reader_and_the_service_agree_on_duplicate_keys(server):
    row = drift_rows(1)[0]
    line = raw_row(row, title='"first"')
    with pytest.raises(Exception) as reader:
        parse_row(decode_line(line.encode()), DEFAULT_TAXONOMY)
    status, _, doc = server.post(line.encode())
    assert status == 422
    assert (doc["error"]["field"], doc["error"]["reason"]) == (
        reader.value.field,
        reader.value.reason,
    )
    assert reader.value.reason == "duplicate_key" and reader.value.field == "title"


def test_missing_photos_count_toward_max_photos(tmp_path):
    """12 missing paths then a good photo: only the first max_photos entries are looked at."""
    good = sorted((DRIFT / "images").iterdir())[0].name
    row = {
        **drift_rows(1)[0],
        "images": [f"images/gone-{i}.jpg" for i in range(12)] + [f"images/{good}"],
    }
    parsed, _, rdir = parse_request(json.dumps(row).encode(), DEFAULT_TAXONOMY, DRIFT, tmp_path,
                                    Limits())  # fmt: skip
    reasons = [p["reason"] for p in parsed[0].photo_problems]
    assert reasons == ["image_missing"] * 10 + ["photos_over_limit", "all_photos_failed"]
    assert parsed[0].listing.images == ()


def test_parsing_has_the_request_deadline(server, monkeypatch, tmp_path):
    """A request whose photo checks take 10 x 0.4 s is answered 504 at the 2 s deadline; the
    parser stops there and leaves nothing staged."""
    real = inputs.check_image

    def slow(path: Path):
        time.sleep(0.4)
        return real(path)

    monkeypatch.setattr(inputs, "check_image", slow)
    photos = sorted(p.name for p in (DRIFT / "images").iterdir())[:10]
    row = {**drift_rows(1)[0], "images": [f"images/{p}" for p in photos]}
    start = time.monotonic()
    status, _, doc = server.post(row)
    took = time.monotonic() - start
    assert status == 504 and "not parsed within" in doc["error"]
    assert took < TIMEOUT_S + 0.6
    time.sleep(0.6)  # the parser notices the deadline at its next photo
    assert [p.name for p in server.service.staging.iterdir()] == ["warmup"]
    with pytest.raises(DeadlinePassed):
        parse_request(json.dumps(row).encode(), DEFAULT_TAXONOMY, DRIFT, tmp_path, Limits(),
                      time.monotonic() - 1)  # fmt: skip
    assert list(tmp_path.iterdir()) == []
