"""Smoke test of the benchmarks (scripts/bench.py) at tiny sizes, so that they cannot rot.

The figures themselves mean nothing here; only that every benchmark runs end to end and gives
sane numbers (positive rates and ratios, identical token ids, agreeing decisions).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmdetect.bench import gpu, latency, scoring, tokenize, train
from mmdetect.bench.common import alternate, machine, percentile, speedup

pytestmark = pytest.mark.usefixtures("single_thread")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check_gpu_results(result: dict, variants: list[str], listings: int) -> None:
    """Sane figures of `mmdetect.bench.gpu run` (scripts/gpu_check.sh) for every variant."""
    assert result["listings"] == listings and list(result["variants"]) == variants
    assert (
        result["levers"]["on"]["photo_bucket"] > 0 and result["levers"]["off"]["photo_bucket"] == 0
    )
    for name in variants:
        fig = result["variants"][name]
        train, model, inference = fig["train"], fig["train_model_only"], fig["inference"]
        assert train["steps_timed"] == 1 and 0 <= train["data_wait_share"] < 1, name
        assert positive(train["listings_per_s"]) and positive(model["listings_per_s"]), name
        for key in ("end_to_end", "model_only", "loader_only"):
            assert positive(inference[f"{key}_listings_per_s"]), (name, key)
        share = inference["end_to_end_share_of_model_only"]
        assert share == pytest.approx(
            inference["end_to_end_listings_per_s"] / inference["model_only_listings_per_s"]
        )


def test_benchmarks_run_at_tiny_sizes(tiny_config, tmp_path, monkeypatch):
    m = machine()
    assert m["cores"] >= 1 and len(m["loadavg"]) == 3 and m["torch"]
    times = alternate({"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}, reps=3)
    assert positive(speedup(times, "a", "b")) and percentile([1.0, 2.0, 3.0], 99) == 3.0

    tok = tokenize.bench_tokenize(snapshots=("data_samples/drift",), limit=30, reps=1)
    assert tok["ids_identical"] and positive(tok["speedup_vs_naive"])
    assert positive(tok["titles_per_cpu_s"]) and positive(tok["fugashi_titles_per_s"])

    score = scoring.bench_scoring(limit=6, reps=1, batch_size=4, num_workers=0,
                                  parity_listings=8, workdir=tmp_path / "score")  # fmt: skip
    assert score["listings"] == 6 and score["decisions_agree"] == 1.0
    assert all(positive(v) for v in score["listings_per_s"].values())
    assert positive(score["speedup_cli_vs_naive"]) and positive(score["model_share_warm"])

    names = tuple(v for v in latency.VARIANTS if v != "compiled")
    cfg = tiny_config(text={"vocab_size": 100, "max_length": 16})
    fig = latency.bench_model(cfg, names, photos=1, reps1=2, reps32=1, big_batch=3)
    assert set(fig["variants"]) == set(names)
    for name, v in fig["variants"].items():
        assert positive(v["p50_ms"]) and positive(v["batch_listings_per_s"]), name
        assert 0 <= v["flips"] <= v["decisions"] == 3 * cfg.num_labels
    assert fig["variants"]["ts_fp32"]["max_abs_dp"] < 1e-4
    assert latency.format_export({"tiny": fig})

    fig = train.bench_train(steps=2, reps=1, workers=(0,), buckets=(0, 8), batch_size=8)
    tr = fig["by_workers"][0]
    assert tr["steps_timed"] == 1 and positive(tr["steps_per_s"])
    assert 0 <= tr["data_wait_share"] < 1
    assert set(fig["by_bucket"]) == {0, 8} and positive(fig["by_bucket"][8]["steps_per_s"])
    assert fig["bucket_max_abs_loss_delta"] < 1e-4  # same batches, same losses
    assert any("photo_bucket=8" in line for line in train.format_train(fig))

    tokens, out = tmp_path / "tokens.pt", tmp_path / "gpu.json"
    assert gpu.main(["prep", "--snapshot", "data_samples/drift", "--max-length", "48",
                     "--out", str(tokens)]) == 0  # fmt: skip
    monkeypatch.setitem(sys.modules, "fugashi", None)  # `run` must not need MeCab
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    run = ["run", "--tokens", str(tokens), "--out", str(out), "--model", "tiny", "--device",
           "cpu", "--precision", "32-true", "--steps", "1", "--warmup-steps", "1",
           "--batch-size", "4", "--infer-batch-size", "8", "--workers", "0", "--limit", "12",
           "--model-only-batches", "1", "--infer-passes", "1", "--variants", "off,on"]  # fmt: skip
    assert gpu.main(run) == 0
    check_gpu_results(json.loads(out.read_text(encoding="utf-8")), ["off", "on"], listings=12)

    prof = ["profile", "--tokens", str(tokens), "--out", str(tmp_path / "profile.json"),
            "--model", "tiny", "--device", "cpu", "--precision", "32-true", "--batch-size", "4",
            "--workers", "0", "--limit", "12", "--batches", "2"]  # fmt: skip
    assert gpu.main(prof) == 0
    fig = json.loads((tmp_path / "profile.json").read_text(encoding="utf-8"))["profile"]
    assert fig["batches"] == 2 and fig["kernel_launches_per_step"] == 0  # no GPU here
    for phases in (fig["new_shapes"], fig["seen_shapes"]):
        assert all(positive(v) for v in phases.values())
        assert phases["step_ms"] == pytest.approx(
            phases["forward_ms"] + phases["backward_ms"] + phases["optimizer_ms"]
        )
    assert positive(fig["cpu_ms_per_step"]) and "aten::" in fig["top_ops"]


@pytest.mark.slow
def test_gpu_check_script_smoke_mode(tmp_path):
    """scripts/gpu_check.sh --smoke: the device script itself, on CPU (tiny model, 12 listings)."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--smoke"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "gpu_check.log").read_text(encoding="utf-8")
    assert log.startswith("# scripts/gpu_check.sh --smoke") and "# device: cpu" in log
    assert "  on (batch 4/8, 0 workers): train " in log
    result = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    check_gpu_results(result, ["off", "on"], listings=12)
