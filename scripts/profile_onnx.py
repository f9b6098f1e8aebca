"""Where an ONNX Runtime int8 call of BERT-base + ResNet-50 spends its time, per operator type.

    HF_HUB_OFFLINE=1 python scripts/profile_onnx.py [--batch 8] [--modes dynamic_int8,hybrid_int8]

A diagnostic, not a benchmark (docs/BENCHMARKS.md, Scoring pipeline, run G): the random-weight
model of `scripts/bench.py --only export` exported as `mmdetect export --format onnx` does it,
quantized with each mode (hybrid and static calibrate on two random batches, as the benchmark
does), then one warm call at `--batch` (one photo per listing) under ONNX Runtime's profiler, two
threads; prints the call's seconds and the top operator types by kernel time.
"""

import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from mmdetect.artifacts import onnx_export as OX  # noqa: E402
from mmdetect.artifacts.onnx_runtime import OnnxModule  # noqa: E402
from mmdetect.bench.assets import big_config, build_net, random_batch  # noqa: E402


def profile(path: Path, inputs: tuple, prefix: str) -> tuple[float, collections.Counter]:
    """(seconds of the second call, kernel microseconds per operator type in it)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 2, 1, 3
    opts.enable_profiling, opts.profile_file_prefix = True, prefix
    session = ort.InferenceSession(str(path), sess_options=opts,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    module = OnnxModule(session, torch.device("cpu"))
    module(*inputs)
    start = time.perf_counter()
    module(*inputs)
    seconds = time.perf_counter() - start
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_op: collections.Counter = collections.Counter()
    for e in kernels[len(kernels) // 2 :]:  # the second call's
        per_op[e["args"]["op_name"]] += e["dur"]
    return seconds, per_op


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--modes", default="dynamic_int8,hybrid_int8")
    args = p.parse_args()
    torch.set_num_threads(2)
    cfg = big_config()
    pre = {"max_length": cfg.text.max_length, "image_size": cfg.image.image_size, "pad_id": 0}
    inputs = random_batch(cfg, args.batch, 1, seed=2)
    with tempfile.TemporaryDirectory(prefix="mmdetect-profile-onnx-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        wrapper = OX.exportable(build_net(cfg), torch.float32)
        OX.to_onnx(wrapper, OX.example_inputs(pre, torch.device("cpu")), pre["max_length"], fp32)
        for mode in args.modes.split(","):
            path = Path(tmp) / f"{mode}.onnx"
            calib = lambda: (random_batch(cfg, 8, 1, seed=100 + i) for i in range(2))  # noqa: E731
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                OX.quantize(fp32, path, mode, calib)
            seconds, per_op = profile(path, inputs, str(Path(tmp) / mode))
            total = sum(per_op.values())
            print(
                f"{mode}: one call at batch {args.batch}: {seconds:.2f} s; kernel time by operator"
            )
            for op, us in per_op.most_common(8):
                print(f"  {op:26s} {us / 1e3:8.1f} ms {us / total:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
