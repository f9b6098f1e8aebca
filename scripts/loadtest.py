"""Load test of `mmdetect serve` on 127.0.0.1, bounded in requests and time (docs/serving.md).

    HF_HUB_OFFLINE=1 nice python scripts/loadtest.py --json runs/loadtest.json

1. exports the tiny bundle (configs/train/tiny.yaml, untrained) twice under two names, makes a
   registry (first promotion forced: an unfitted operating point) and starts `mmdetect serve
   --registry` as a subprocess;
2. throughput and p50/p99 latency at concurrency 1, 8, 32 (one listing per request, listings
   of data_samples/drift in turn), each level bounded by --seconds and --max-requests;
3. side by side, alternated: `mmdetect predict` (in this process, bundle load included) and
   a loaded Predictor on the same listings vs the service answering them at concurrency 32;
4. the same load at concurrency 8 while promote and rollback switch bundles --switches times:
   failed requests, and answers naming a bundle that was not current during the request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DRIFT, TOKENIZER = REPO / "data_samples" / "drift", REPO / "data_samples" / "tokenizer"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtest_client import batch_totals, cpu_seconds, free_port, get, load, summary  # noqa: E402


def setup(work: Path) -> tuple[Path, Path, Path]:
    """(registry with blue current, green bundle, a 60-listing labeled promotion snapshot)."""
    from mmdetect.artifacts.bundle_format import write_checksums
    from mmdetect.bench.assets import export_tiny_bundle
    from mmdetect.ops.registry_promote import promote

    os.chdir(REPO)  # configs/ paths are relative
    (work / "blue").mkdir(parents=True, exist_ok=True)
    _, blue = export_tiny_bundle(work / "blue", str(TOKENIZER), str(DRIFT))
    green = work / "green"
    shutil.copytree(blue, green)
    meta = json.loads((green / "meta.json").read_text())
    (green / "meta.json").write_text(json.dumps({**meta, "note": "loadtest green"}))
    write_checksums(green)
    snap = work / "promotion_snapshot"
    rows = (DRIFT / "listings.jsonl").read_text("utf-8").splitlines()[:60]
    (snap / "images").mkdir(parents=True)
    for row in map(json.loads, rows):
        for rel in row["images"]:
            shutil.copy(DRIFT / rel, snap / rel)
    (snap / "listings.jsonl").write_text("\n".join(rows) + "\n", "utf-8")
    registry = work / "registry"
    promote(registry, blue, snap, force=True, reason="loadtest", name="blue")
    return registry, green, snap


def side_by_side(port: int, lines: list[str], work: Path, bundle: Path, reps: int,
                 server_pid: int | None = None) -> dict:  # fmt: skip
    """Alternated on the same listings: `mmdetect predict` (in this process, bundle load and
    file writing included), a loaded Predictor over predict's own reader (batches of 64), and
    the service at concurrency 32 (one listing per request)."""
    from mmdetect.serving.predict import predict_main
    from mmdetect.serving.predictor import Predictor
    from mmdetect.serving.stream import RunSummary, read_listings

    n, src = len(lines), work / "side_by_side.jsonl"
    src.write_text("\n".join(lines) + "\n", "utf-8")
    bodies = [line.encode() for line in lines]
    predictor = Predictor.from_bundle(bundle, batch_size=64)
    rates: dict[str, list[float]] = {"predict": [], "predictor": [], "served": []}
    failed, cpu = 0, {"predict": [], "served": []}  # CPU ms per listing (server + clients)
    for rep in range(reps):
        order = ["predict", "predictor", "served"]
        for name in order if rep % 2 == 0 else order[::-1]:
            start, cpu0 = time.monotonic(), cpu_seconds(server_pid) if server_pid else 0.0
            own0 = cpu_seconds()
            if name == "predict":
                argv = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(DRIFT),
                        "--out", str(work / "side_decisions.jsonl")]  # fmt: skip
                assert predict_main(argv) == 0
            elif name == "predictor":
                with src.open("rb") as fh:
                    rows = list(read_listings(fh, src, DRIFT, predictor.taxonomy, RunSummary()))
                predictor.predict(rows, DRIFT)
            else:
                results, _ = load(port, bodies, 32, 600, n)
                failed += sum(s != 200 for *_, s, _ in results)
            rates[name].append(n / (time.monotonic() - start))
            if name == "predict":
                cpu["predict"].append((cpu_seconds() - own0) * 1000 / n)
            elif name == "served" and server_pid:
                spent = cpu_seconds(server_pid) - cpu0 + cpu_seconds() - own0
                cpu["served"].append(spent * 1000 / n)
    ratio = {k: statistics.median(s / p for s, p in zip(rates["served"], rates[k], strict=True))
             for k in ("predict", "predictor")}  # fmt: skip
    cpu_ms = {k: round(statistics.median(v), 2) for k, v in cpu.items() if v}
    return {k: round(statistics.median(v), 1) for k, v in rates.items()} | {"cpu_ms": cpu_ms} | {
        "served_vs_predict": round(ratio["predict"], 3), "listings": n, "served_failed": failed,
        "served_vs_loaded_predictor": round(ratio["predictor"], 3), "reps": reps}  # fmt: skip


def switching(port: int, bodies, registry: Path, green: Path, snap: Path, args) -> dict:
    """Concurrency 8 while promote/rollback alternate; every answer is checked against the
    pointer's history (a bundle may keep serving for the switch lag after the pointer moved)."""
    box, stop = {}, threading.Event()

    def run() -> None:
        box["results"], box["wall"] = load(port, bodies, 8, 600, args.max_requests * 10, stop)

    pointer = [(0.0, time.time(), "blue")]  # (call started, call returned, name)
    clients = threading.Thread(target=run)
    clients.start()
    for k in range(args.switches):
        time.sleep(args.pause_s)
        t0 = time.time()
        # as an operator would: the CLI in its own process (promote re-evaluates green
        # against blue on the snapshot; forced: both are untrained)
        name = "green" if k % 2 == 0 else "blue"
        cmd = ["promote", "--registry", str(registry), "--bundle", str(green), "--on", str(snap),
               "--force", "--reason", "loadtest", "--name", "green"] if name == "green" else [
               "rollback", "--registry", str(registry), "--reason", "loadtest"]  # fmt: skip
        subprocess.run([sys.executable, "-m", "mmdetect.cli.commands", *cmd], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)  # fmt: skip
        pointer.append((t0, time.time(), name))
        while json.loads(get(port, "/readyz")[1])["bundle"] != name:
            time.sleep(0.05)
    time.sleep(args.pause_s)
    stop.set()
    clients.join()
    ready = json.loads(get(port, "/readyz")[1])
    lag = max(x["lag_s"] for x in ready["switches"]) + args.poll_s
    # a bundle was current from its call's start to the next call's return
    spans = [(p[0], nxt[1] if nxt else float("inf"), p[2])
             for p, nxt in zip(pointer, [*pointer[1:], None], strict=True)]  # fmt: skip
    wrong = sum(not any(b == bundle and a <= t1 and t0 - lag <= z for a, z, b in spans)
                for t0, t1, s, bundle in box["results"] if s == 200)  # fmt: skip
    errors = sorted({b for *_, s, b in box["results"] if s == -1})
    return summary(box["results"], box["wall"]) | {"client_errors": errors,
        "switches": args.switches, "wrong_bundle": wrong, "max_switch_lag_s": round(lag, 3),
        "bundles_seen": sorted({b for *_, b in box["results"] if b}),
        "switch_log": ready["switches"]}  # fmt: skip


def start_server(registry: Path, port: int, args, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mmdetect.cli.commands", "serve", "--registry", str(registry),
           "--images-root", str(DRIFT), "--host", "127.0.0.1", "--port", str(port),
           "--poll-s", str(args.poll_s), "--timeout-s", str(args.timeout_s),
           *(["--threads", str(args.server_threads)] if args.server_threads else []),
           *args.server_args.split()]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=log.open("w"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if get(port, "/readyz")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not become ready; see {log}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    p.add_argument("--seconds", type=float, default=10.0, help="at most this long per level")
    p.add_argument("--max-requests", type=int, default=2000, help="at most this many per level")
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--reps", type=int, default=3, help="side-by-side repetitions")
    p.add_argument("--side-listings", type=int, default=200, help="listings per side-by-side run")
    p.add_argument("--timeout-s", type=float, default=60.0, help="the server's --timeout-s")
    p.add_argument(
        "--server-threads",
        type=int,
        help="the server's --threads, and predict's here (default: torch's)",
    )
    p.add_argument("--server-args", default="", help="more `mmdetect serve` flags (default: none)")
    p.add_argument("--switches", type=int, default=5)
    p.add_argument("--pause-s", type=float, default=1.5, help="between two switches")
    p.add_argument("--poll-s", type=float, default=1.0)
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    from mmdetect.bench.common import format_machine, machine

    if args.server_threads:  # the same intra-op threads for predict in this process: fair
        import torch

        torch.set_num_threads(args.server_threads)
    header = machine()
    print(format_machine(header), flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="mmdetect-loadtest-"))
    if (work / "registry" / "current").is_symlink():  # a previous run's: reuse, back on blue
        from mmdetect.ops.registry import current_name
        from mmdetect.ops.registry_promote import rollback

        registry, green, snap = work / "registry", work / "green", work / "promotion_snapshot"
        if current_name(registry) != "blue":
            rollback(registry, reason="loadtest: start on blue")
    else:
        registry, green, snap = setup(work)
    lines = (DRIFT / "listings.jsonl").read_text("utf-8").splitlines()
    bodies = [line.encode() for line in lines]
    port = free_port()
    server = start_server(registry, port, args, work / "server.log")
    report: dict = {"machine": header, "listings": len(bodies), "levels": {}}
    for line in (work / "server.log").read_text().splitlines():  # what the server chose
        if '"parallelism"' in line:
            report["server"] = {k: v for k, v in json.loads(line).items() if k != "time"}
            print(f"server: {report['server']}", flush=True)
    try:
        load(port, bodies, 8, 30, 64)  # warm-up
        for c in (int(x) for x in args.levels.split(",") if x):
            cpu, batches = (cpu_seconds(server.pid), cpu_seconds()), batch_totals(port)
            results, wall = load(port, bodies, c, args.seconds, args.max_requests)
            n = max(1, len(results))  # CPU ms per request: who uses the cores
            (listings, calls), before = batch_totals(port), batches
            report["levels"][c] = summary(results, wall) | {
                "server_cpu_ms": round((cpu_seconds(server.pid) - cpu[0]) * 1000 / n, 2),
                "client_cpu_ms": round((cpu_seconds() - cpu[1]) * 1000 / n, 2),
                "mean_batch": round((listings - before[0]) / max(1, calls - before[1]), 1)}  # fmt: skip
            print(f"concurrency {c}: {report['levels'][c]}", flush=True)
        report["side_by_side"] = side_by_side(
            port, lines[: args.side_listings], work, registry / "bundles" / "blue", args.reps,
            server.pid)  # fmt: skip
        print(f"side by side: {report['side_by_side']}", flush=True)
        if args.switches:
            report["switching"] = switching(port, bodies, registry, green, snap, args)
            shown = {k: v for k, v in report["switching"].items() if k != "switch_log"}
            print(f"switching: {shown}", flush=True)
        report["batch_sizes"] = [x for x in get(port, "/metrics")[1].splitlines()
                                 if x.startswith("mmdetect_batch_size_")]  # fmt: skip
    finally:
        server.terminate()  # SIGTERM: the server drains and exits
        server.wait(30)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    sw = report.get("switching", {"failed": 0, "wrong_bundle": 0})
    return 0 if sw["failed"] == 0 and sw["wrong_bundle"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
