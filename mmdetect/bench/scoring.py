"""Snapshot scoring on CPU, raw JSONL + JPEG -> decisions, for an untrained tiny model.

Contenders, alternated over the same listings:
  predict_cli     `mmdetect predict` (predict_main) as a user runs it: bundle load and
                  verification, reading, photo checks, batched TorchScript inference, writing;
                  the CLI's default `--num-workers` (0: photos decoded in the main process)
  predict_cli_w1  the same with one DataLoader worker process
  predict_cli_w   the same with `num_workers` workers (2)
  warm_new        predict_main's loop with the Predictor already loaded (a long-lived server):
                  Predictor.stream, each photo opened once
  warm_serial     the loop before Predictor.stream: each chunk read (header checks) and then
                  scored, no prefetch thread, photos opened twice
  warm_bucketed   warm_new with batches grouped by photo count (Predictor.bucket)
  warm_old        the same loop over the data path before data/photos.py (bench/legacy.py):
                  full-decode validation, paths resolved twice, float photos per photo
  naive           what a user would write: the eager checkpoint module, one listing at a time,
                  the HF tokenizer call and PIL (full decode) + transforms inline, then json.dumps
  model_only      pre-collated batches through the bundle's TorchScript module, nothing else
  read_validate   serve.read_items alone: JSON parsing and the photo header checks
  read_validate_old  the same with the old full-decode photo check
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmdetect.bench.assets import export_tiny_bundle
from mmdetect.bench.common import alternate, per_second, speedup
from mmdetect.bench.legacy import LegacyPredictor, read_legacy
from mmdetect.data.dataset import price_features
from mmdetect.data.tokenize import load_tokenizer, nfkc
from mmdetect.models.image import build_transforms
from mmdetect.serving.predict import predict_main
from mmdetect.serving.predictor import Predictor, build_items_dataset, build_loader
from mmdetect.serving.stream import RunSummary, chunked, read_items, score_chunk, score_stream

SPEEDUP_GOAL, MODEL_SHARE_GOAL = 5.0, 0.8


def score_file(
    predictor: Predictor, path: Path, root: Path, out: Path, chunk: int = 512, read=read_items,
    stream: bool = True,
) -> int:  # fmt: skip
    """predict_main's loop over an already loaded Predictor; returns listings scored.
    stream False: each chunk read, then scored (the loop before Predictor.stream)."""
    summary, n = RunSummary(), 0
    with path.open("rb") as fin, out.open("w", encoding="utf-8") as fout:
        if stream:  # as predict_main: photos resolved here, opened once by the loader
            items = read(fin, path, root, predictor.taxonomy, summary, check=None)
            first = None if predictor.num_workers else min(predictor.batch_size, chunk)
            chunks = chunked(items, chunk, first)
            scored = score_stream(predictor, chunks, summary, checked=False)
        else:
            items = read(fin, path, root, predictor.taxonomy, summary)
            scored = (score_chunk(predictor, part, summary) for part in chunked(items, chunk))
        for decisions in scored:
            for d in decisions:
                fout.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
                n += 1
    return n


def naive_score(ckpt: Path, path: Path, root: Path, out: Path) -> int:
    """One listing at a time through the eager checkpoint module; review at p >= 0.5."""
    from mmdetect.training.loading import load_checkpoint

    module, data = load_checkpoint(ckpt)  # weights_only=True
    tok = load_tokenizer(data["tokenizer"])
    size, k, length = data["image_size"], data["max_photos"], data["max_length"]
    transform = build_transforms(module.net.preprocess, train=False)
    categories = {c: i for i, c in enumerate(data["categories"])}
    n = 0
    with path.open(encoding="utf-8") as fin, out.open("w", encoding="utf-8") as fout:
        for line in fin:
            if not line.strip():
                continue
            row = json.loads(line)
            enc = tok(nfkc(row["title"]), nfkc(row["description"]), truncation="only_second",
                      max_length=length, split_special_tokens=True, return_tensors="pt")  # fmt: skip
            photos = []
            for rel in row["images"][:k]:
                with contextlib.suppress(OSError):
                    photos.append(transform(Image.open(root / rel).convert("RGB")))
            images = torch.stack(photos)[None] if photos else torch.zeros(1, 1, 3, size, size)
            mask = torch.ones(1, max(1, len(photos)), dtype=torch.bool) & bool(photos)
            price, has_price = price_features(row["price"], data["price_mean"], data["price_std"])
            cat = torch.tensor([categories.get(row["category"] or "", len(categories))])
            with torch.no_grad():
                logits = module.net(enc["input_ids"], enc["attention_mask"], images, mask,
                                    torch.tensor([price]), torch.tensor([has_price]), cat)  # fmt: skip
            probs = torch.sigmoid(logits)[0].tolist()
            scores = dict(zip(module.taxonomy, probs, strict=True))
            decision = "review" if max(probs) >= 0.5 else "pass"
            fout.write(json.dumps({"id": row["id"], "scores": scores, "decision": decision}) + "\n")
            n += 1
    return n


def _read_scores(path: Path) -> dict[str, tuple[list[float], str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["id"]: (list(r["scores"].values()), r["decision"]) for r in rows}


def bench_scoring(
    snapshot: str = "data_samples/incoming",
    tokenizer: str = "data_samples/tokenizer",
    parity_snapshot: str = "data_samples/drift",
    limit: int | None = None,
    reps: int = 3,
    batch_size: int = 64,
    num_workers: int = 2,
    workdir: Path | None = None,
    parity_listings: int = 64,
) -> dict:
    tmp = tempfile.TemporaryDirectory(prefix="bench-score-") if workdir is None else None
    work = Path(tmp.name if tmp else workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        ckpt, bundle = export_tiny_bundle(
            work, str(Path(tokenizer).resolve()), parity_snapshot, parity_listings
        )
        root = Path(snapshot)
        lines = (root / "listings.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        src = work / "listings.jsonl"
        src.write_text("".join(lines[:limit]), encoding="utf-8")
        names = ("cli", "cli_w1", "cli_w", "new", "serial", "bucketed", "old", "naive")
        outs = {name: work / f"{name}.jsonl" for name in names}
        cli_args = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(root),
                    "--batch-size", str(batch_size)]  # fmt: skip
        new = Predictor.from_bundle(bundle, "cpu", batch_size, 0)
        bucketed = Predictor.from_bundle(bundle, "cpu", batch_size, 0)
        bucketed.bucket = True
        old = LegacyPredictor.from_bundle(bundle, "cpu", batch_size, 0)
        items = list(read_items(src.open("rb"), src, root, new.taxonomy, RunSummary()))
        n = len(items)
        pre = new.bundle.preprocess
        dataset = build_items_dataset(items, new.tokenizer, pre)
        collated = list(build_loader(dataset, pre, batch_size))
        batches = [tuple(b[name] for name in pre["inputs"]) for b in collated]
        slots = sum(b["image_mask"].numel() for b in collated)  # padded photo slots
        photos = sum(int(b["image_mask"].sum()) for b in collated)

        def cli(workers: int | None, out: Path) -> None:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                flags = [] if workers is None else ["--num-workers", str(workers)]
                assert predict_main([*cli_args, *flags, "--out", str(out)]) == 0

        def model_only() -> None:
            with torch.no_grad():
                for inputs in batches:
                    new.bundle.module(*inputs)

        def read(fn) -> None:
            with src.open("rb") as fh:
                list(fn(fh, src, root, new.taxonomy, RunSummary()))

        times = alternate(
            {
                "predict_cli": lambda: cli(None, outs["cli"]),
                "predict_cli_w1": lambda: cli(1, outs["cli_w1"]),
                "predict_cli_w": lambda: cli(num_workers, outs["cli_w"]),
                "warm_new": lambda: score_file(new, src, root, outs["new"]),
                "warm_serial": lambda: score_file(new, src, root, outs["serial"], stream=False),
                "warm_bucketed": lambda: score_file(bucketed, src, root, outs["bucketed"]),
                "warm_old": lambda: score_file(
                    old, src, root, outs["old"], read=read_legacy, stream=False
                ),
                "naive": lambda: naive_score(ckpt, src, root, outs["naive"]),
                "model_only": model_only,
                "read_validate": lambda: read(read_items),
                "read_validate_old": lambda: read(read_legacy),
            },
            reps=reps,
        )
        ref, naive = _read_scores(outs["cli"]), _read_scores(outs["naive"])
        assert ref.keys() == naive.keys(), "the two paths scored different listings"
        dp = max(float(np.abs(np.subtract(ref[i][0], naive[i][0])).max()) for i in ref)
        same = sum(ref[i][1] == naive[i][1] for i in ref)
        # The naive loop decodes every JPEG fully; the project at a DCT scale (photos.draft_side),
        # a few levels of 255 apart: held to the reduced-precision export gate, not to 1e-3.
        assert dp <= 0.02, f"naive and project probabilities differ by {dp:.3g}"
        assert same >= 0.995 * len(ref), f"naive and project decisions agree on {same}/{len(ref)}"
        dp_paths = {}
        for name in ("cli_w1", "cli_w", "new", "serial", "bucketed", "old"):
            other = _read_scores(outs[name])
            assert other.keys() == ref.keys(), f"{name} scored other listings"
            dp_paths[name] = max(float(np.abs(np.subtract(ref[i][0], other[i][0])).max())
                                 for i in ref)  # fmt: skip
        rate = {name: per_second(n, t) for name, t in times.items()}
        share = {name: rate[name] / rate["model_only"] for name in rate if name != "model_only"}
        return {
            "listings": n,
            "reps": reps,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "listings_per_s": rate,
            "best_s": {name: min(t) for name, t in times.items()},
            "speedup_vs_naive": {
                name: speedup(times, name, "naive") for name in rate if name != "naive"
            },
            "model_share": share,
            "speedup_cli_vs_naive": speedup(times, "predict_cli", "naive"),
            "model_share_cli": share["predict_cli"],
            "model_share_warm": share["warm_new"],
            "new_vs_old_warm": speedup(times, "warm_new", "warm_old"),
            "stream_vs_serial_warm": speedup(times, "warm_new", "warm_serial"),
            "photo_slots": slots,
            "real_photos": photos,
            "naive_vs_project_max_abs_dp": dp,
            "paths_vs_cli_max_abs_dp": dp_paths,
            "decisions_agree": same / max(n, 1),
        }
    finally:
        if tmp:
            tmp.cleanup()


def format_scoring(r: dict) -> list[str]:
    rate, up, share = r["listings_per_s"], r["speedup_vs_naive"], r["model_share"]
    cli, met = up["predict_cli"], share["predict_cli"]
    return [
        f"score: {r['listings']} listings JSONL + JPEG -> decisions, tiny model (untrained), "
        f"batch {r['batch_size']}, median of {r['reps']} alternated reps; naive vs project "
        f"max |dp| {r['naive_vs_project_max_abs_dp']:.2g}, decisions agree "
        f"{r['decisions_agree']:.1%}; other paths vs predict_cli max |dp| "
        + ", ".join(f"{k} {v:.2g}" for k, v in r["paths_vs_cli_max_abs_dp"].items()),
        f"  {'contender':18s} {'listings/s':>10s} {'x naive':>8s} {'of model':>8s}",
        *(
            f"  {name:18s} {v:10.0f} {up.get(name, float('nan')):7.2f}x "
            f"{share.get(name, float('nan')):8.0%}"
            for name, v in rate.items()
        ),
        f"  predict_cli (mmdetect predict, default flags) / naive: {cli:.2f}x, goal "
        f"{SPEEDUP_GOAL:g}x {'met' if cli >= SPEEDUP_GOAL else 'NOT met'}; share of model-only "
        f"throughput {met:.0%}, goal {MODEL_SHARE_GOAL:.0%} "
        f"{'met' if met >= MODEL_SHARE_GOAL else 'NOT met'} (predict_cli_w: "
        f"{r['num_workers']} workers)",
        f"  new data path / old, Predictor loaded: {r['new_vs_old_warm']:.2f}x; "
        f"Predictor.stream / the serial loop: {r['stream_vs_serial_warm']:.2f}x",
        f"  batches carry {r['photo_slots']} photo slots for {r['real_photos']} real photos "
        "(padded to each batch's most photos); the CNN runs on the real ones only",
    ]
