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
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime
from functools import partial
from itertools import islice
from pathlib import Path

import torch

from mmdetect.bench.gpu_profile import format_profile
from mmdetect.bench.gpu_run import VARIANTS, Levers, format_variants, run_variants
from mmdetect.models.classifier import ModelConfig

FORMAT = 1


def prep(snapshot: str, tokenizer: str, max_length: int, out: Path, limit: int = 0) -> dict:
    """Tokenize `snapshot` (labeled rows) and save ids + listing fields to `out` (CPU, MeCab)."""
    from mmdetect.data.reader import read_snapshot
    from mmdetect.data.tokenize import encode_batch, load_tokenizer

    tok = load_tokenizer(tokenizer)
    snap = read_snapshot(snapshot)
    listings = [x for x in snap.listings if x.labels is not None][: limit or None]
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


def model_config(model: str) -> ModelConfig:
    """BERT-base + ResNet-50 ("big") or the tiny training config's model."""
    from mmdetect.bench.assets import big_config, tiny_config

    return big_config() if model == "big" else tiny_config(vocab_size=2000)


def build_module(model: str, taxonomy: Sequence[str], lv: Levers = Levers()):  # noqa: B008
    """A seeded DetectorModule (random weights) with the variant's model levers, and its config."""
    from mmdetect.training.module import DetectorModule

    cfg = model_config(model)
    torch.manual_seed(0)
    module = DetectorModule(text=cfg.text, image=cfg.image, hidden=cfg.hidden,
                            taxonomy=taxonomy, tokenizer=None, photo_bucket=lv.photo_bucket,
                            channels_last=lv.channels_last, compile=lv.compile,
                            fused_adamw=lv.fused_adamw)  # fmt: skip
    return module, cfg


def loader(ds, doc: dict, image_size: int, lv: Levers, shuffle: bool):
    """Training (shuffled, full batches) or eval loader at the variant's sizes and workers."""
    from torch.utils.data import DataLoader

    from mmdetect.data.dataset import collate_listings

    collate = partial(collate_listings, pad_id=doc["pad_id"], image_size=image_size)
    batch = lv.batch_size if shuffle else lv.infer_batch_size
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=lv.workers,
                      collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      persistent_workers=lv.workers > 0, drop_last=shuffle,
                      prefetch_factor=lv.prefetch_factor if lv.workers else None)  # fmt: skip


def device_header(device: torch.device) -> dict:
    """What the GPU figures were measured on (the CPU side too: it decodes the photos)."""
    from mmdetect.bench.common import machine

    head = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpu": machine()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        head.update(device=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    capability=f"{p.major}.{p.minor}")  # fmt: skip
    else:
        head["device"] = "cpu"
    return head


def format_header(head: dict) -> str:
    from mmdetect.bench.common import format_machine

    gpu = head["device"]
    if "gpu_memory_gib" in head:
        gpu += f", {head['gpu_memory_gib']} GiB, compute capability {head['capability']}"
    return f"# device: {gpu}; torch {head['torch']}, cuda {head['cuda']}\n" + format_machine(
        head["cpu"]
    )


def setup(args: argparse.Namespace) -> tuple[dict, ModelConfig, dict]:
    """(tokens doc, ModelConfig, result header) for `run` and `profile`."""
    doc = torch.load(args.tokens, map_location="cpu", weights_only=True)
    if doc.get("format") != FORMAT:
        raise SystemExit(f"{args.tokens}: format {doc.get('format')!r}, expected {FORMAT}")
    if args.limit:
        doc["rows"], doc["ids"] = doc["rows"][: args.limit], doc["ids"][: args.limit]
    cfg = model_config(args.model)
    if doc["max_length"] > cfg.text.max_length:
        raise SystemExit(f"{args.tokens}: ids up to {doc['max_length']} tokens, the {args.model} "
                         f"model takes {cfg.text.max_length}: prep with --max-length")  # fmt: skip
    head = {**device_header(torch.device(args.device)), "model": args.model,
            "precision": args.precision, "listings": len(doc["rows"]),
            "image_size": cfg.image.image_size, "max_photos": cfg.image.max_photos}  # fmt: skip
    return doc, cfg, head


def _sized(args: argparse.Namespace, lv: Levers) -> Levers:
    sizes = {"batch_size": args.batch_size, "infer_batch_size": args.infer_batch_size,
             "workers": args.workers}  # fmt: skip
    return replace(lv, **{k: v for k, v in sizes.items() if v is not None})


def profile(args: argparse.Namespace) -> dict:
    """mmdetect.bench.gpu_profile over `--batches` training batches already on the device."""
    from mmdetect.bench.gpu_profile import profile_steps

    doc, cfg, out = setup(args)
    lv = _sized(args, VARIANTS[args.variant])
    module, _ = build_module(args.model, doc["taxonomy"], lv)
    module.configure_model()
    size, k, device = cfg.image.image_size, cfg.image.max_photos, torch.device(args.device)
    torch.backends.cudnn.benchmark = lv.cudnn_benchmark  # as in `run`'s training
    ds = load_dataset(doc, size, k, train=True)
    batches = loader(ds, doc, size, lv, shuffle=True)
    batches = [{n: v.to(device) for n, v in b.items()} for b in islice(batches, args.batches)]
    out.update(variant=args.variant, levers=asdict(lv))
    out["profile"] = profile_steps(module.to(device), batches, args.precision != "32-true",
                                   fused=lv.fused_adamw)  # fmt: skip
    return out


def run(args: argparse.Namespace, save) -> dict:
    """Every variant of --variants (mmdetect.bench.gpu_run), results saved after each."""
    doc, cfg, head = setup(args)
    print(format_header(head), flush=True)
    size, k = cfg.image.image_size, cfg.image.max_photos
    train_ds, eval_ds = (load_dataset(doc, size, k, train=t) for t in (True, False))

    def build(lv: Levers):
        return build_module(args.model, doc["taxonomy"], lv)[0]

    def make_loader(ds, lv: Levers, shuffle: bool):
        return loader(ds, doc, size, lv, shuffle)

    levers = {name: _sized(args, VARIANTS[name]) for name in args.variants}
    return run_variants(args, head, levers, build, make_loader, (train_ds, eval_ds), save)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmdetect.bench.gpu", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prep", help="tokenize on CPU (MeCab) and save the ids")
    pp.add_argument("--snapshot", default="data_samples/train")
    pp.add_argument("--tokenizer", default="data_samples/tokenizer")
    pp.add_argument("--max-length", type=int, default=128)
    pp.add_argument("--out", type=Path, default=Path("runs/bench_gpu/tokens.pt"))
    pp.add_argument("--limit", type=int, default=0, help="first N labeled listings (smoke)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tokens", type=Path, default=Path("runs/bench_gpu/tokens.pt"))
    common.add_argument("--model", choices=["big", "tiny"], default="big")
    common.add_argument("--device", default="cuda")
    common.add_argument("--precision", default="bf16-mixed")
    common.add_argument("--batch-size", type=int, help="training batch, all variants")
    common.add_argument("--infer-batch-size", type=int, help="inference batch, all variants")
    common.add_argument("--workers", type=int, help="DataLoader workers, all variants")
    common.add_argument("--limit", type=int, help="first N listings only (smoke runs)")
    pr = sub.add_parser("run", parents=[common], help="train and infer from the saved ids")
    pr.add_argument("--out", type=Path, default=Path("runs/bench_gpu/results.json"))
    pr.add_argument("--variants", type=_variants, default=["off", "on"],
                    help=f"comma-separated, of {','.join(VARIANTS)} (gpu_run.VARIANTS)")  # fmt: skip
    pr.add_argument("--steps", type=int, default=30, help="timed training steps")
    pr.add_argument("--warmup-steps", type=int, default=5)
    pr.add_argument("--model-only-batches", type=int, default=8)
    pr.add_argument("--infer-passes", type=int, default=3, help="timed passes over the data")
    pr.add_argument("--budget-s", type=float, default=1e9,
                    help="start no variant after this many seconds (the rest: skipped)")  # fmt: skip
    pf = sub.add_parser("profile", parents=[common], help="where a training step goes")
    pf.add_argument("--out", type=Path, default=Path("runs/bench_gpu/profile.json"))
    pf.add_argument("--batches", type=int, default=8, help="distinct training batches")
    pf.add_argument("--variant", choices=list(VARIANTS), default="off")
    args = p.parse_args(argv)
    if args.cmd == "prep":
        print(
            json.dumps(prep(args.snapshot, args.tokenizer, args.max_length, args.out, args.limit))
        )
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device visible (use --device cpu for a smoke run)", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:  # after each variant: a timed-out run keeps what it measured
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")

    if args.cmd == "profile":
        result = profile(args)
        save(result)
        lv = result["levers"]
        print(f"{result['device']}: {result['model']} {result['precision']}, variant "
              f"{args.variant}, batch {lv['batch_size']}: {format_profile(result['profile'])}")  # fmt: skip
        return 0
    result = run(args, save)
    print("\n".join(format_variants(result)))
    print(f"results: {args.out}")
    return 0


def _variants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    return names


if __name__ == "__main__":
    raise SystemExit(main())
