"""The settings of `mmdetect predict`'s prefetch, side by side (docs/BENCHMARKS.md, run F).

    HF_HUB_OFFLINE=1 python scripts/score_settings.py [LIMIT] [REPS]

Alternated repetitions on data_samples/incoming with the untrained tiny bundle that
`scripts/bench.py --only score` exports: `mmdetect predict` with 0, 1 and 2 DataLoader workers
and with the prefetch thread niced (serve.PREFETCH_NICE); the loaded Predictor's stream with a
1 ms GIL switch interval (predict_cli.SWITCH_INTERVAL_S) and 4 batches ahead
(serve.PREFETCH_BATCHES); the serial loop; the model alone. A diagnostic for choosing the
defaults, not a benchmark of record: the goals are measured by scripts/bench.py.
"""

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import mmdetect.serving.predict as PC  # noqa: E402
import mmdetect.serving.predictor as S  # noqa: E402
from mmdetect.bench.assets import export_tiny_bundle  # noqa: E402
from mmdetect.bench.common import alternate, format_machine, machine, median  # noqa: E402
from mmdetect.bench.scoring import score_file  # noqa: E402
from mmdetect.serving import stream


def main() -> int:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(format_machine(machine()), flush=True)
    root = Path("data_samples/incoming")
    with tempfile.TemporaryDirectory(prefix="score-settings-") as tmp:
        work = Path(tmp)
        _, bundle = export_tiny_bundle(
            work, str(Path("data_samples/tokenizer").resolve()), "data_samples/drift"
        )
        lines = (root / "listings.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        src = work / "listings.jsonl"
        src.write_text("".join(lines[:limit]), encoding="utf-8")
        new = S.Predictor.from_bundle(bundle, "cpu", 64, 0)
        summary = stream.RunSummary()
        items = list(stream.read_items(src.open("rb"), src, root, new.taxonomy, summary))
        pre = new.bundle.preprocess
        dataset = S.build_items_dataset(items, new.tokenizer, pre)
        batches = [tuple(b[n] for n in pre["inputs"]) for b in S.build_loader(dataset, pre, 64)]

        def cli(workers: int, nice: int = 0) -> None:
            S.PREFETCH_NICE = nice
            argv = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(root),
                    "--batch-size", "64", "--num-workers", str(workers),
                    "--out", str(work / f"cli{workers}{nice}.jsonl")]  # fmt: skip
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # fmt: skip
                    assert PC.predict_main(argv) == 0
            finally:
                S.PREFETCH_NICE = 0

        def warm(switch: float | None = None, ahead: int = 0, stream: bool = True) -> None:
            stream.SWITCH_INTERVAL_S, S.PREFETCH_BATCHES = switch, ahead
            try:
                score_file(new, src, root, work / "warm.jsonl", stream=stream)
            finally:
                stream.SWITCH_INTERVAL_S, S.PREFETCH_BATCHES = None, 0

        def model_only() -> None:
            with torch.no_grad():
                for inputs in batches:
                    new.bundle.module(*inputs)

        contenders = {
            "predict_w0": lambda: cli(0),
            "predict_w1": lambda: cli(1),
            "predict_w2": lambda: cli(2),
            "predict_w0_nice10": lambda: cli(0, 10),
            "warm_stream": warm,
            "warm_stream_switch_1ms": lambda: warm(0.001),
            "warm_stream_ahead_4": lambda: warm(ahead=4),
            "warm_serial": lambda: warm(stream=False),
            "model_only": model_only,
        }
        start = time.perf_counter()
        times = alternate(contenders, reps=reps)
    m = median(times["model_only"])
    print(f"{len(items)} listings, batch 64, median of {reps} alternated reps")
    for name, t in times.items():
        print(f"  {name:24s} {len(items) / median(t):6.0f}/s  {m / median(t):5.0%} of model-only")
    print(f"  ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
