"""Event worker benchmark (docs/BENCHMARKS.md, "Event worker"), side by side in one run:
`mmdetect predict` on N listings vs `mmdetect worker` with 1 and 2 processes on the same N
listings published at once (throughput), then one worker at a steady publish rate (latency
from publish to the decision's commit, p50 / p99). Each contender runs `--repeat` times, the
order rotated on every repetition; a worker is started and has joined the group before its
clock starts.

python scripts/bench_worker.py --bundle BUNDLE [--n 1500] [--repeat 3] [--rate 40 --latency-s 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mmdetect.bench.common import format_machine, machine  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

DRIFT = REPO / "data_samples" / "drift"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
PREDICT = """
import sys, time, torch
torch.set_num_threads(1)
from mmdetect.serving.predict import predict_main
t = time.perf_counter()
assert predict_main(sys.argv[1:]) == 0
print("SECONDS", time.perf_counter() - t)
"""


def listings(n: int, path: Path) -> None:
    """N drift listings (repeated, ids made unique) as a listings JSONL."""
    rows = [json.loads(x) for x in (DRIFT / "listings.jsonl").read_text("utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            row = dict(rows[i % len(rows)], id=f"{rows[i % len(rows)]['id']}-{i // len(rows)}")
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_predict(bundle: Path, src: Path, out: Path) -> float:
    argv = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(DRIFT),
            "--out", str(out)]  # fmt: skip
    res = subprocess.run([sys.executable, "-c", PREDICT, *argv], env=ENV, cwd=REPO,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(res.stdout.split("SECONDS")[-1])


def start_workers(url: str, bundle: Path, stream: str, k: int, log_dir: Path, batch: int):
    procs = []
    for i in range(k):
        argv = [sys.executable, "-m", "mmdetect.cli.commands", "worker", "--broker", url, "--bundle",
                str(bundle), "--images-root", str(DRIFT), "--stream", stream,
                "--decisions", f"{stream}.decisions", "--actions", f"{stream}.actions",
                "--reviews", f"{stream}.reviews", "--consumer", f"w{i}", "--threads", "1",
                "--max-batch", str(batch), "--claim-idle-ms", "600000"]  # fmt: skip
        log = (log_dir / f"{stream}-w{i}.log").open("w")
        procs.append(subprocess.Popen(argv, env=ENV, cwd=REPO, stdout=log, stderr=log))
    return procs


def joined(log_dir: Path, stream: str, k: int, procs, timeout: float = 300) -> None:
    """Wait until the k workers have loaded their bundle and started reading (their "consuming"
    log line; a blocked XREADGROUP does not register a consumer in Redis 7.0)."""
    deadline = time.monotonic() + timeout
    while True:
        assert all(p.poll() is None for p in procs), "a worker exited at start"
        logs = [(log_dir / f"{stream}-w{i}.log").read_text() for i in range(k)]
        if all('"msg": "consuming"' in x for x in logs):
            time.sleep(0.5)  # the first read is issued right after the line
            return
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.1)


def stop(procs) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)


def publish(url: str, src: Path, stream: str, rate: float | None = None) -> None:
    argv = [sys.executable, "-m", "mmdetect.cli.commands", "publish", str(src), "--broker", url,
            "--stream", stream, "--chunk", "500"] + (["--rate", str(rate)] if rate else [])  # fmt: skip
    subprocess.run(argv, env=ENV, cwd=REPO, check=True, capture_output=True)


def committed(client: redis.Redis, stream: str) -> list[tuple[float, float]]:
    """(published_at, committed at: the decision entry's server time) of each decision."""
    out = []
    for mid, f in client.xrange(f"{stream}.decisions"):
        out.append((float(f[b"published_at"]), int(mid.split(b"-")[0]) / 1000))
    return out


def run_workers(server, bundle, src, n, k, tag, log_dir, batch) -> float:
    """Events per second for k workers: N published at once, first publish to last commit."""
    client, stream = server.client(), f"bench-{tag}"
    client.xgroup_create(stream, "mmdetect", id="0", mkstream=True)
    procs = start_workers(server.url, bundle, stream, k, log_dir, batch)
    try:
        joined(log_dir, stream, k, procs)
        publish(server.url, src, stream)
        deadline = time.monotonic() + 1800
        while client.xlen(f"{stream}.decisions") < n:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
    finally:
        stop(procs)
    times = committed(client, stream)
    first_published = min(t for t, _ in times)
    return n / (max(c for _, c in times) - first_published)


def latency(server, bundle, src, rate, seconds, log_dir, batch) -> dict:
    client, stream = server.client(), "bench-latency"
    client.xgroup_create(stream, "mmdetect", id="0", mkstream=True)
    n = int(rate * seconds)
    procs = start_workers(server.url, bundle, stream, 1, log_dir, batch)
    try:
        joined(log_dir, stream, 1, procs)
        part = src.with_name("latency.jsonl")
        part.write_text("".join(src.read_text("utf-8").splitlines(True)[:n]), "utf-8")
        publish(server.url, part, stream, rate)
        deadline = time.monotonic() + 600
        while client.xlen(f"{stream}.decisions") < n:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop(procs)
    ms = sorted((c - p) * 1000 for p, c in committed(client, stream))
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"events": n, "rate": rate, "p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1),
            "max_ms": round(ms[-1], 1)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--rate", type=float, default=40.0, help="events/s of the latency run")
    p.add_argument("--latency-s", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args()
    print(format_machine(machine()))
    print(f"# bundle {args.bundle}; {args.n} listings (data_samples/drift repeated); "
          f"1 torch thread per process; max batch {args.max_batch}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        tmp = Path(tmp)
        src = tmp / "listings.jsonl"
        listings(args.n, src)
        server = RedisServer(tmp / "redis").start()
        results: dict[str, list[float]] = {"predict": [], "worker x1": [], "worker x2": []}
        try:
            order = list(results)
            for rep in range(args.repeat):
                for name in order[rep % 3 :] + order[: rep % 3]:
                    if name == "predict":
                        rate = args.n / run_predict(args.bundle, src, tmp / f"d{rep}.jsonl")
                    else:
                        k = int(name[-1])
                        rate = run_workers(server, args.bundle, src, args.n, k, f"{rep}-{k}",
                                           tmp, args.max_batch)  # fmt: skip
                    results[name].append(rate)
                    print(f"rep {rep}: {name}: {rate:.1f} listings/s", flush=True)
            lat = latency(server, args.bundle, src, args.rate, args.latency_s, tmp, args.max_batch)
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\n| contender | listings/s (median) | runs | vs predict |\n| --- | --- | --- | --- |")
    for k, v in results.items():
        runs = ", ".join(f"{x:.0f}" for x in v)
        print(f"| {k} | {med[k]:.0f} | {runs} | {med[k] / med['predict']:.0%} |")
    print(f"\nlatency, 1 worker, {lat['events']} events at {lat['rate']:g}/s: p50 "
          f"{lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"throughput": results, "latency": lat}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
