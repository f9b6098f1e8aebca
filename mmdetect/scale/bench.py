"""Measurements of the scale extra (scripts/bench_scale.py; figures in docs/BENCHMARKS.md).

At each size N: synthetic listings with photos (the sample generator), then, each in its own
process so its peak memory is its own (resident set of the process and all its descendants,
sampled every 0.2 s from /proc): `mmdetect shard`, a fixed number of training steps from the
JSONL snapshot and from the shards (tiny.yaml, mmdetect/bench/train.StepTimer), `mmdetect
predict` and `mmdetect score --engine ray` on the same listings. At the first size also a kill
-9 in the middle of an epoch and a resume, counting that each remaining listing is trained once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[2]


class IdLog(Callback):
    """Appends (step, ids) of every trained batch to a file, flushed at once (survives kill -9);
    `sleep` slows the steps so the run can be killed in the middle of an epoch."""

    def __init__(self, path: str, sleep: float = 0.0):
        self.path, self.sleep = path, sleep

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": trainer.global_step, "ids": batch["ids"]}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(self.sleep)


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/PID/task/*/children (no scan of all of /proc)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(x) for x in fh.read().split()]
        except (OSError, ValueError):
            continue
    return kids


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant (Linux /proc)."""
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [c for c in _children(frontier.pop()) if c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def measured(cmd: list[str], timeout: float = 3600) -> dict:
    """Run `cmd` (cwd: the repository); wall seconds, peak tree RSS (MiB), stdout's last line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    start, peak = time.perf_counter(), 0
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    import threading

    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip("oe", proc.communicate(), strict=True)))
    reader.start()
    while proc.poll() is None and time.perf_counter() - start < timeout:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.get('e', '')[-2000:]}")
    lines = [x for x in out.get("o", "").splitlines() if x.strip()]
    return {"wall_s": time.perf_counter() - start, "peak_rss_mib": peak / 2**20,
            "last_line": lines[-1] if lines else ""}  # fmt: skip


def train_phase(data: str, steps: int, val_from: str = "2026-09-01") -> dict:
    """`steps` optimizer steps of tiny.yaml from a snapshot directory (listings created from
    `val_from` on held out, as `mmdetect shard --val-from` does) or a shards directory."""
    from mmdetect.bench.train import summarize, train_steps

    shards = (Path(data) / "manifest.json").is_file()
    kind = {"shards": data} if shards else {"snapshots": [data], "val_from": val_from}
    timer = train_steps(steps, **kind)
    timer.skip = 3
    out = summarize(timer)
    out.pop("losses")
    return out


def kill_resume(shards: Path, work: Path, kill_after: int = 8) -> dict:
    """Fit one epoch from `shards` (batches of 8), kill -9 after `kill_after` steps, resume with
    `--ckpt_path last`: listings trained before the checkpoint + after the resume, counted."""
    from mmdetect.training.checkpoint import read_checkpoint

    run, first, second = work / "run", work / "first.jsonl", work / "second.jsonl"
    cb = "mmdetect.scale.bench.IdLog"
    cmd = [sys.executable, "-m", "mmdetect.cli.commands", "fit", "--config",
           "configs/train/tiny_shards.yaml", f"--data.shards={shards}", "--data.num_workers=0",
           "--data.batch_size=32", "--trainer.max_epochs=1", f"--run-dir={run}",
           "--last_checkpoint.every_n_train_steps=3", "--trainer.limit_val_batches=0",
           "--trainer.enable_progress_bar=false"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    log = f'--trainer.callbacks+={{"class_path": "{cb}", "init_args": {{"path": "%s"%s}}}}'
    proc = subprocess.Popen([*cmd, log % (first, ', "sleep": 0.5')], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while len(read_log(first)) < kill_after and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    subprocess.run([*cmd, "--ckpt_path=last", log % (second, "")], cwd=REPO, env=env,
                   check=True, capture_output=True)  # fmt: skip
    before = [i for r in read_log(first) if r["step"] <= step for i in r["ids"]]
    after = [i for r in read_log(second) for i in r["ids"]]
    total = json.loads((shards / "manifest.json").read_text())["subsets"]["train"]["listings"]
    seen = before + after
    return {"killed_after_steps": len(read_log(first)), "checkpoint_step": step,
            "trained_before": len(before), "trained_after_resume": len(after),
            "distinct": len(set(seen)), "train_listings": total,
            "exactly_once": len(seen) == len(set(seen)) == total}  # fmt: skip
