"""GPU benchmark of BERT-base + ResNet-50: bf16-mixed training and inference, listings/s.

`prep` runs here, on CPU, where MeCab is installed: it tokenizes a snapshot once and saves the
ids with the listing fields to a .pt file. `run` runs on the GPU machine from that file alone
(plus the snapshot's JPEGs): it never builds a tokenizer, so fugashi and unidic-lite are not
needed there. Driven by scripts/bench_gpu.sh; results go to stdout and a JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from itertools import islice
from pathlib import Path

import torch

from mmdetect.bench.gpu_profile import format_profile

FORMAT = 1


def prep(snapshot: str, tokenizer: str, max_length: int, out: Path) -> dict:
    """Tokenize `snapshot` (labeled rows) and save ids + listing fields to `out` (CPU, MeCab)."""
    from mmdetect.data.reader import read_snapshot
    from mmdetect.data.tokenize import encode_batch, load_tokenizer

    tok = load_tokenizer(tokenizer)
    snap = read_snapshot(snapshot)
    listings = [x for x in snap.listings if x.labels is not None]
    ids = encode_batch(tok, [(x.title, x.description) for x in listings], max_length)
    rows = [
        {"id": x.id, "price": x.price, "category": x.category, "images": list(x.images),
         "created_at": x.created_at.isoformat(), "labels": list(x.labels)}
        for x in listings
    ]  # fmt: skip
    doc = {"format": FORMAT, "snapshot": str(snapshot), "taxonomy": list(snap.taxonomy),
           "max_length": max_length, "pad_id": tok.pad_token_id or 0, "ids": ids,
           "rows": rows}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(doc, out)
    return {"listings": len(rows), "out": str(out), "mean_ids": sum(map(len, ids)) / len(ids)}


def load_dataset(doc: dict, image_size: int, max_photos: int, train: bool):
    from mmdetect.data.dataset import DEFAULT_CATEGORIES, Item, ListingDataset, fit_price_stats
    from mmdetect.data.records import Listing
    from mmdetect.models.image import ImagePreprocess, build_transforms

    root = Path(doc["snapshot"])
    items = [
        Item(Listing(id=r["id"], title="", description="", price=r["price"],
                     category=r["category"], images=tuple(r["images"]),
                     created_at=datetime.fromisoformat(r["created_at"]),
                     labels=tuple(r["labels"])), root)
        for r in doc["rows"]
    ]  # fmt: skip
    transform = build_transforms(ImagePreprocess(image_size), train=train)
    price = fit_price_stats(r["price"] for r in doc["rows"])  # as training fits its split's
    return ListingDataset(items, doc["ids"], doc["taxonomy"], DEFAULT_CATEGORIES, transform,
                          max_photos, price.mean, price.std)  # fmt: skip


def build_module(model: str, taxonomy: Sequence[str]):
    from mmdetect.bench.assets import big_config, tiny_config
    from mmdetect.lit import DetectorModule

    cfg = big_config() if model == "big" else tiny_config(vocab_size=2000)
    torch.manual_seed(0)
    return DetectorModule(text=cfg.text, image=cfg.image, hidden=cfg.hidden,
                          taxonomy=taxonomy, tokenizer=None), cfg  # fmt: skip


def loader(ds, doc: dict, image_size: int, batch_size: int, workers: int, shuffle: bool):
    from torch.utils.data import DataLoader

    from mmdetect.data.dataset import collate_listings

    collate = partial(collate_listings, pad_id=doc["pad_id"], image_size=image_size)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0, drop_last=shuffle)  # fmt: skip


def setup(args: argparse.Namespace) -> tuple[dict, object, object, dict]:
    """(tokens doc, DetectorModule, ModelConfig, result header) for `run` and `profile`."""
    doc = torch.load(args.tokens, map_location="cpu", weights_only=True)
    if doc.get("format") != FORMAT:
        raise SystemExit(f"{args.tokens}: format {doc.get('format')!r}, expected {FORMAT}")
    if args.limit:
        doc["rows"], doc["ids"] = doc["rows"][: args.limit], doc["ids"][: args.limit]
    module, cfg = build_module(args.model, doc["taxonomy"])
    if doc["max_length"] > cfg.text.max_length:
        raise SystemExit(f"{args.tokens}: ids up to {doc['max_length']} tokens, the {args.model} "
                         f"model takes {cfg.text.max_length}: prep with --max-length")  # fmt: skip
    cuda = torch.device(args.device).type == "cuda"
    head = {"device": torch.cuda.get_device_name() if cuda else "cpu",
            "torch": torch.__version__, "model": args.model, "precision": args.precision,
            "batch_size": args.batch_size, "workers": args.workers,
            "listings": len(doc["rows"]), "image_size": cfg.image.image_size,
            "max_photos": cfg.image.max_photos}  # fmt: skip
    return doc, module, cfg, head


def profile(args: argparse.Namespace) -> dict:
    """mmdetect.bench.gpu_profile over `--batches` training batches already on the device."""
    from mmdetect.bench.gpu_profile import profile_steps

    doc, module, cfg, out = setup(args)
    size, k, device = cfg.image.image_size, cfg.image.max_photos, torch.device(args.device)
    torch.backends.cudnn.benchmark = False  # as in `run`'s training
    ds = load_dataset(doc, size, k, train=True)
    batches = loader(ds, doc, size, args.batch_size, args.workers, shuffle=True)
    batches = [{n: v.to(device) for n, v in b.items()} for b in islice(batches, args.batches)]
    out["profile"] = profile_steps(module.to(device), batches, args.precision != "32-true")
    return out


def run(args: argparse.Namespace) -> dict:
    import lightning as L

    from mmdetect.bench.train import StepTimer, summarize
    from mmdetect.lit import model_inputs

    doc, module, cfg, out = setup(args)
    size, k = cfg.image.image_size, cfg.image.max_photos
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    train_ds = load_dataset(doc, size, k, train=True)
    # Training runs the CNN on the valid photos only, a different count every step: cuDNN
    # autotuning would re-benchmark every step (measured: 0.49 steps/s against 230 ms median
    # compute on an H200). Inference pads to fixed photo slots, where autotuning pays.
    torch.backends.cudnn.benchmark = False
    timer = StepTimer(sync=sync, skip=args.warmup_steps)
    trainer = L.Trainer(
        accelerator=device.type if device.type == "cpu" else "gpu", devices=1,
        precision=args.precision, max_steps=args.steps + args.warmup_steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
        default_root_dir=str(Path(args.out).parent),
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader(train_ds, doc, size, args.batch_size,
                                                 args.workers, shuffle=True))  # fmt: skip
    out["train"] = summarize(timer)
    if device.type == "cuda":
        out["train"]["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    net = module.net.to(device).eval()
    eval_ds = load_dataset(doc, size, k, train=False)
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()  # the loader alone: the ceiling for end to end
    n_loaded = sum(len(b["labels"]) for b in loader(eval_ds, doc, size, args.infer_batch_size,
                                                    args.workers, False))  # fmt: skip
    loader_only = n_loaded / (time.perf_counter() - start)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision != "32-true")
    batches = 0
    with torch.no_grad(), amp:
        for _ in range(2):  # the second pass is timed (workers, cudnn autotune warm)
            sync()
            start = time.perf_counter()
            for batch in loader(eval_ds, doc, size, args.infer_batch_size, args.workers, False):
                batch = {n: v.to(device, non_blocking=True) for n, v in batch.items()}
                net(*model_inputs(batch))
                batches += 1
            sync()
            seconds = time.perf_counter() - start
        cached = [
            {n: v.to(device) for n, v in b.items()}
            for b, _ in zip(loader(eval_ds, doc, size, args.infer_batch_size, 0, False),
                            range(args.model_only_batches), strict=False)
        ]  # fmt: skip
        for b in cached[:2]:
            net(*model_inputs(b))
        sync()
        start = time.perf_counter()
        for b in cached:
            net(*model_inputs(b))
        sync()
        model_only_s = time.perf_counter() - start
    n_cached = sum(len(b["labels"]) for b in cached)
    out["inference"] = {
        "batch_size": args.infer_batch_size,
        "end_to_end_listings_per_s": len(eval_ds) / seconds,
        "model_only_listings_per_s": n_cached / model_only_s,
        "end_to_end_share_of_model_only": (len(eval_ds) / seconds) / (n_cached / model_only_s),
        "loader_only_listings_per_s": loader_only,
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmdetect.bench.gpu", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prep", help="tokenize on CPU (MeCab) and save the ids")
    pp.add_argument("--snapshot", default="data_samples/train")
    pp.add_argument("--tokenizer", default="data_samples/tokenizer")
    pp.add_argument("--max-length", type=int, default=128)
    pp.add_argument("--out", type=Path, default=Path("runs/bench_gpu/tokens.pt"))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tokens", type=Path, default=Path("runs/bench_gpu/tokens.pt"))
    common.add_argument("--model", choices=["big", "tiny"], default="big")
    common.add_argument("--device", default="cuda")
    common.add_argument("--precision", default="bf16-mixed")
    common.add_argument("--batch-size", type=int, default=32)
    common.add_argument("--workers", type=int, default=8)
    common.add_argument("--limit", type=int, help="first N listings only (smoke runs)")
    pr = sub.add_parser("run", parents=[common], help="train and infer from the saved ids")
    pr.add_argument("--out", type=Path, default=Path("runs/bench_gpu/results.json"))
    pr.add_argument("--infer-batch-size", type=int, default=128)
    pr.add_argument("--steps", type=int, default=30, help="timed training steps")
    pr.add_argument("--warmup-steps", type=int, default=5)
    pr.add_argument("--model-only-batches", type=int, default=8)
    pf = sub.add_parser("profile", parents=[common], help="where a training step goes")
    pf.add_argument("--out", type=Path, default=Path("runs/bench_gpu/profile.json"))
    pf.add_argument("--batches", type=int, default=8, help="distinct training batches")
    args = p.parse_args(argv)
    if args.cmd == "prep":
        print(json.dumps(prep(args.snapshot, args.tokenizer, args.max_length, args.out)))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device visible (use --device cpu for a smoke run)", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    result = profile(args) if args.cmd == "profile" else run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.cmd == "profile":
        print(f"{result['device']}: {result['model']} {result['precision']}, batch "
              f"{result['batch_size']}: {format_profile(result['profile'])}")  # fmt: skip
        return 0
    t, i = result["train"], result["inference"]
    print(json.dumps(result))
    print(f"{result['device']}: {result['model']} {result['precision']}: train "
          f"{t['listings_per_s']:.0f} listings/s ({t['steps_per_s']:.2f} steps/s, data wait "
          f"{t['data_wait_share']:.0%}); inference {i['end_to_end_listings_per_s']:.0f} "
          f"listings/s end to end, {i['model_only_listings_per_s']:.0f} model only, "
          f"{i['loader_only_listings_per_s']:.0f} loader only")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
