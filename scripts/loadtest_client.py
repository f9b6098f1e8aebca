"""The load generator of scripts/loadtest.py: closed-loop asyncio clients on keep-alive
connections to 127.0.0.1, latency summaries, CPU seconds of a process, the service's counters."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import threading
import time
from pathlib import Path


async def _post(conn, body: bytes) -> tuple[int, dict]:
    """One POST /v1/score over a keep-alive connection (reader, writer): (status, JSON doc)."""
    reader, writer = conn
    writer.write(b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    doc = json.loads(await reader.readexactly(int(fields["content-length"])))
    return int(head[0].split()[1]), doc


def load(port: int, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int,
         stop: threading.Event | None = None):  # fmt: skip
    """Closed-loop clients (asyncio, one keep-alive connection each, all in this thread: the
    load generator shares the cores with the server, so it should cost little) until
    `max_requests` were sent, `seconds` passed or `stop` is set; [(t0, t1, status, bundle)]
    and the wall time."""
    out: list[tuple] = []
    sent, deadline = [0], time.monotonic() + seconds
    lost = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)

    async def client() -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            if sent[0] >= max_requests:
                break
            i, sent[0] = sent[0], sent[0] + 1
            t0 = time.time()
            for _attempt in range(2):
                try:
                    status, doc = await asyncio.wait_for(_post(conn, bodies[i % len(bodies)]), 60)
                    bundle = doc.get("bundle")
                    break
                except (OSError, asyncio.TimeoutError, ValueError, KeyError, *lost) as exc:
                    conn[1].close()
                    conn = await asyncio.open_connection("127.0.0.1", port)
                    status, bundle = -1, type(exc).__name__
                    # a keep-alive connection the server closed while idle: resend once, as
                    # HTTP clients do (urllib3); anything else counts as a failure
                    if not isinstance(exc, lost):
                        break
            out.append((t0, time.time(), status, bundle))
        conn[1].close()

    async def main() -> None:
        await asyncio.gather(*(client() for _ in range(concurrency)))

    start = time.monotonic()
    asyncio.run(main())
    return out, time.monotonic() - start


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process, all its threads (this one if pid is None)."""
    if pid is None:
        return sum(os.times()[:2])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_totals(port: int) -> tuple[float, float]:
    """(listings, model calls) so far, from the service's batch-size histogram."""
    lines = get(port, "/metrics")[1].splitlines()
    value = {x.split()[0]: float(x.split()[1]) for x in lines if x.startswith("mmdetect_batch")}
    return value["mmdetect_batch_size_sum"], value["mmdetect_batch_size_count"]


def summary(results: list, wall: float) -> dict:
    lat = sorted((t1 - t0) * 1000 for t0, t1, _, _ in results)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {"requests": len(results), "failed": sum(s != 200 for *_, s, _ in results),
            "listings_per_s": round(len(results) / wall, 1), "p50_ms": round(q[49], 1),
            "p99_ms": round(q[98], 1), "seconds": round(wall, 2)}  # fmt: skip


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
