"""Snapshot scoring on CPU, raw JSONL + JPEG -> decisions, for an untrained tiny model.

Contenders, alternated over the same listings:
  predict_cli     `mmdetect predict` (predict_main): bundle load and verification, reading,
                  validation, batched TorchScript inference with DataLoader workers, writing
  predictor_warm  the same loop with the Predictor already loaded (a long-lived server)
  predictor_w0    the same, without DataLoader workers
  naive           what a user would write: the eager checkpoint module, one listing at a time,
                  the HF tokenizer call and PIL + transforms inline, then json.dumps
  model_only      pre-collated batches through the bundle's TorchScript module, nothing else
  read_validate   serve.read_listings alone: JSON parsing and the photo check, which decodes
                  every photo once in the main process before the DataLoader decodes it again
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
from mmdetect.bench.common import alternate, median, per_second, speedup
from mmdetect.data.dataset import price_features
from mmdetect.data.tokenize import load_tokenizer, nfkc
from mmdetect.models.image import build_transforms
from mmdetect.serve import (
    Predictor,
    RunSummary,
    build_loader,
    chunked,
    predict_main,
    read_listings,
    score_chunk,
)

SPEEDUP_GOAL, MODEL_SHARE_GOAL = 5.0, 0.8


def score_file(predictor: Predictor, path: Path, root: Path, out: Path, chunk: int = 512) -> int:
    """predict_main's loop over an already loaded Predictor; returns listings scored."""
    summary, n = RunSummary(), 0
    with path.open("rb") as fin, out.open("w", encoding="utf-8") as fout:
        listings = read_listings(fin, path, root, predictor.taxonomy, summary)
        for part in chunked(listings, chunk):
            for d in score_chunk(predictor, part, root, summary):
                fout.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
                n += 1
    return n


def naive_score(ckpt: Path, path: Path, root: Path, out: Path) -> int:
    """One listing at a time through the eager checkpoint module; review at p >= 0.5."""
    from mmdetect.export import load_checkpoint

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
        outs = {name: work / f"{name}.jsonl" for name in ("cli", "warm", "w0", "naive")}
        cli_args = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(root),
                    "--batch-size", str(batch_size), "--num-workers", str(num_workers)]  # fmt: skip
        warm = Predictor.from_bundle(bundle, "cpu", batch_size, num_workers)
        w0 = Predictor.from_bundle(bundle, "cpu", batch_size, 0)
        listings = list(read_listings(src.open("rb"), src, root, warm.taxonomy, RunSummary()))
        n = len(listings)
        pre = warm.bundle.preprocess
        collated = list(build_loader(warm.dataset(listings, root), pre, batch_size))
        batches = [tuple(b[name] for name in pre["inputs"]) for b in collated]
        slots = sum(b["image_mask"].numel() for b in collated)  # padded photo slots
        photos = sum(int(b["image_mask"].sum()) for b in collated)

        def cli() -> None:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                assert predict_main([*cli_args, "--out", str(outs["cli"])]) == 0

        def model_only() -> None:
            with torch.no_grad():
                for inputs in batches:
                    warm.bundle.module(*inputs)

        times = alternate(
            {
                "predict_cli": cli,
                "predictor_warm": lambda: score_file(warm, src, root, outs["warm"]),
                "predictor_w0": lambda: score_file(w0, src, root, outs["w0"]),
                "naive": lambda: naive_score(ckpt, src, root, outs["naive"]),
                "model_only": model_only,
                "read_validate": lambda: list(
                    read_listings(src.open("rb"), src, root, warm.taxonomy, RunSummary())
                ),
            },
            reps=reps,
        )
        ref, naive = _read_scores(outs["cli"]), _read_scores(outs["naive"])
        assert ref.keys() == naive.keys(), "the two paths scored different listings"
        dp = max(float(np.abs(np.subtract(ref[i][0], naive[i][0])).max()) for i in ref)
        same = sum(ref[i][1] == naive[i][1] for i in ref)
        assert dp < 1e-3, f"naive and project probabilities differ by {dp:.3g}"
        rate = {name: per_second(n, t) for name, t in times.items()}
        return {
            "listings": n,
            "reps": reps,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "listings_per_s": rate,
            "speedup_cli_vs_naive": speedup(times, "predict_cli", "naive"),
            "speedup_warm_vs_naive": speedup(times, "predictor_warm", "naive"),
            "speedup_w0_vs_naive": speedup(times, "predictor_w0", "naive"),
            "model_share_cli": rate["predict_cli"] / rate["model_only"],
            "model_share_warm": rate["predictor_warm"] / rate["model_only"],
            "model_share_w0": rate["predictor_w0"] / rate["model_only"],
            "read_validate_share_of_warm": median(times["read_validate"])
            / median(times["predictor_warm"]),
            "photo_slots": slots,
            "real_photos": photos,
            "naive_vs_project_max_abs_dp": dp,
            "decisions_agree": same / max(n, 1),
        }
    finally:
        if tmp:
            tmp.cleanup()


def format_scoring(r: dict) -> list[str]:
    rate = r["listings_per_s"]
    best = max(r["speedup_cli_vs_naive"], r["speedup_warm_vs_naive"], r["speedup_w0_vs_naive"])
    share = max(r["model_share_warm"], r["model_share_w0"])
    return [
        f"score: {r['listings']} listings JSONL + JPEG -> decisions, tiny model (untrained), "
        f"batch {r['batch_size']}, median of {r['reps']} alternated reps; naive vs project "
        f"max |dp| {r['naive_vs_project_max_abs_dp']:.2g}, decisions agree "
        f"{r['decisions_agree']:.1%}",
        *(f"  {name:15s} {v:8.0f} listings/s" for name, v in rate.items()),
        f"  ratio predict_cli / naive: {r['speedup_cli_vs_naive']:.2f}x (incl. bundle load, "
        f"{r['num_workers']} workers); predictor_warm / naive: "
        f"{r['speedup_warm_vs_naive']:.2f}x; predictor_w0 / naive: "
        f"{r['speedup_w0_vs_naive']:.2f}x; goal {SPEEDUP_GOAL:g}x "
        f"{'met' if best >= SPEEDUP_GOAL else 'NOT met'}",
        f"  share of model-only throughput: predict_cli {r['model_share_cli']:.0%}, "
        f"predictor_warm {r['model_share_warm']:.0%}, predictor_w0 {r['model_share_w0']:.0%}; "
        f"goal {MODEL_SHARE_GOAL:.0%} {'met' if share >= MODEL_SHARE_GOAL else 'NOT met'}",
        f"  reading + photo validation alone take {r['read_validate_share_of_warm']:.0%} of "
        "predictor_warm's time (main process; photos are decoded again in the DataLoader)",
        f"  batches carry {r['photo_slots']} photo slots for {r['real_photos']} real photos "
        "(padded to each batch's most photos); the CNN runs on the real ones only",
    ]
