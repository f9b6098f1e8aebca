"""Server settings compared side by side with `mmdetect predict` (how serve's defaults were chosen).

    HF_HUB_OFFLINE=1 python scripts/loadtest_configs.py --work /tmp/lt --reps 2 \\
        "--workers 1" "--workers 2" "--workers 1 --max-wait-ms 20" "--workers 2 --max-wait-ms 20"

For each repetition and each setting (in turn, the order reversed every other repetition):
start `mmdetect serve` with those flags on loadtest.py's registry, and run loadtest.py's side
by side on the same listings (predict in this process at torch's defaults, a loaded
Predictor, the service at concurrency 32). Prints the medians per setting; every figure is
from one machine at one time, so only the ratios compare across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest as lt  # noqa: E402 (the script's own directory)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("settings", nargs="+", help="`mmdetect serve` flags, one string per setting")
    p.add_argument("--work", type=Path, help="loadtest.py's scratch directory (reused)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--side-listings", type=int, default=200)
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    from mmdetect.bench.common import format_machine, machine

    header = machine()
    print(format_machine(header), flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="mmdetect-loadtest-"))
    if (work / "registry" / "current").is_symlink():
        registry = work / "registry"
    else:
        registry = lt.setup(work)[0]
    lines = (lt.DRIFT / "listings.jsonl").read_text("utf-8").splitlines()[: args.side_listings]
    bundle = (registry / "current").resolve()
    runs: dict[str, list[dict]] = {s: [] for s in args.settings}
    for rep in range(args.reps):
        for setting in args.settings if rep % 2 == 0 else args.settings[::-1]:
            server_args = argparse.Namespace(poll_s=1.0, timeout_s=60.0, server_threads=None,
                                             server_args=setting)  # fmt: skip
            port = lt.free_port()
            server = lt.start_server(registry, port, server_args, work / "server.log")
            try:
                lt.load(port, [x.encode() for x in lines], 8, 30, 64)  # warm-up
                got = lt.side_by_side(port, lines, work, bundle, 1, server.pid)
            finally:
                server.terminate()
                server.wait(30)
            runs[setting].append(got)
            print(f"{setting!r}: {got}", flush=True)
    table = {s: {k: statistics.median(r[k] for r in rs)
                 for k in ("predict", "served", "served_vs_predict")} for s, rs in runs.items()}  # fmt: skip
    for setting, row in table.items():
        print(f"median {setting!r}: {row}")
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "runs": runs, "medians": table},
                                        indent=2, default=str) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
