"""Where scoring's preprocessing time goes, per photo and per listing (docs/BENCHMARKS.md).

    HF_HUB_OFFLINE=1 python scripts/profile_scoring.py [--limit 300] [--without-model-only]

A diagnostic, not a benchmark: it prints absolute times (best of 3, one torch thread) of each
step that `Predictor` runs before the model, on data_samples/incoming with the untrained tiny
bundle that `scripts/bench.py --only score` exports: the photo check (header only, and header
plus decode on one open as `mmdetect predict` does now, at the DCT scale of `draft_side`; full
decode before), the decode and transform (uint8 `eval_photo` now, the float `build_transforms`
per photo before), and the per-batch normalisation; it checks that the new order of the same
torchvision ops gives bit-identical tensors, and how far the DCT-scaled pixels are from a full
decode's.
"""

import argparse
import contextlib
import dataclasses
import io
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision.transforms.v2.functional as F  # noqa: E402

from mmdetect.bench.assets import export_tiny_bundle  # noqa: E402
from mmdetect.data.dataset import Item  # noqa: E402
from mmdetect.data.images import (  # noqa: E402
    check_header,
    check_image,
    load_checked,
    load_image,
    resolve_image_path,
)
from mmdetect.data.photos import draft_side, eval_photo  # noqa: E402
from mmdetect.models.image import ImagePreprocess, build_transforms  # noqa: E402
from mmdetect.serving.predict import predict_main  # noqa: E402  # noqa: E402
from mmdetect.serving.predictor import Predictor  # noqa: E402
from mmdetect.serving.stream import RunSummary, read_listings


def load_bundle_checks(root: Path) -> None:
    """load_bundle's work before the model file is loaded (verification and JSON checks)."""
    from mmdetect.artifacts import bundle_check as C
    from mmdetect.artifacts.bundle import check_thresholds  # fmt: skip
    from mmdetect.artifacts.bundle_format import (
        META_FILE,
        PREPROCESS_FILE,
        THRESHOLDS_FILE,
        read_json,
        verify_checksums,
    )

    verify_checksums(root)
    meta, pre = read_json(root / META_FILE), read_json(root / PREPROCESS_FILE)
    C.check_meta(meta, root / META_FILE)
    C.check_preprocess(pre, root / PREPROCESS_FILE)
    thresholds = read_json(root / THRESHOLDS_FILE)
    C.check_taxonomy_order(root, meta, pre, thresholds)
    check_thresholds(thresholds, pre["taxonomy"], str(root / THRESHOLDS_FILE))
    C.check_tokenizer(root)


def gil_share(fn: Callable) -> float:
    """A Python thread's counting rate while `fn` runs, over its rate while the caller sleeps:
    near 0 when `fn` holds the GIL (no Python work could overlap it), near 1 when it lets go."""
    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    rates = []
    for work in (lambda: time.sleep(0.3), fn):
        count[0] = 0
        stop.clear()
        thread = threading.Thread(target=spin)
        thread.start()
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join()
        rates.append(count[0] / elapsed)
    return rates[1] / rates[0]


def predict_without_model(bundle: Path, src: Path, root: Path, out: Path) -> float:
    """Best of 3 seconds of `mmdetect predict` over all of `src` with the model replaced by a
    constant after it loads: everything the CLI does that is not the model (bundle load and
    verification included)."""
    real_load = Predictor.load_model

    def load_then_stub(self: Predictor) -> None:
        real_load(self)
        classes = len(self.taxonomy)
        stub = lambda *x: torch.full((x[0].shape[0], classes), 0.5)  # noqa: E731
        self.bundle = dataclasses.replace(self.bundle, module=stub)

    argv = ["--bundle", str(bundle), "--input", str(src), "--images-root", str(root), "--out",
            str(out)]  # fmt: skip
    Predictor.load_model = load_then_stub
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return best_of(lambda: predict_main(argv))[0]
    finally:
        Predictor.load_model = real_load


def best_of(fn: Callable, reps: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshot", type=Path, default=Path("data_samples/incoming"))
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--without-model-only", action="store_true",
                   help="only time mmdetect predict with the model replaced by a constant")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    root, src = args.snapshot, args.snapshot / "listings.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        _, bundle = export_tiny_bundle(Path(tmp), "data_samples/tokenizer", "data_samples/drift")
        if args.without_model_only:
            seconds = predict_without_model(bundle, src, root, Path(tmp) / "out.jsonl")
            print(
                f"mmdetect predict on all of {src}, model replaced by a constant: {seconds:.3f} s"
            )
            return 0
        predictor = Predictor.from_bundle(bundle, "cpu", 64, 0)
        start = time.perf_counter()
        listings = list(read_listings(src.open("rb"), src, root, predictor.taxonomy, RunSummary()))
        listings = listings[: args.limit]
        read_s = time.perf_counter() - start  # includes the photo validation (a full decode)
        n, rels = len(listings), [rel for x in listings for rel in x.images]
        dataset = predictor.dataset(listings, root)
        getitem_s, _ = best_of(lambda: [dataset[i] for i in range(n)])
        predict_s, _ = best_of(lambda: predictor.predict_proba(listings, root))
        # what `mmdetect predict` pays before its first batch, and what optimize_for_inference
        # buys back: the same batches through the module loaded with and without it
        load_s, _ = best_of(lambda: Predictor.from_bundle(bundle, "cpu", 64, 0))
        plain_s, plain = best_of(lambda: Predictor.from_bundle(bundle, "cpu", 64, 0, False))
        checks_s, _ = best_of(lambda: load_bundle_checks(bundle))
        gil = gil_share(lambda: Predictor.from_bundle(bundle, "cpu", 64, 0))
        batches = [b for b in predictor.batches([Item(x, root) for x in listings])]
        stubbed_s = predict_without_model(bundle, src, root, Path(tmp) / "out.jsonl")
        opt_s = best_of(lambda: [predictor.score_batch(b) for b in batches])[0]
        noopt_s = best_of(lambda: [plain.score_batch(b) for b in batches])[0]
    per_photo = 1e3 / len(rels)
    resolve_s, paths = best_of(lambda: [resolve_image_path(root, r) for r in rels])
    header_s, _ = best_of(lambda: [check_header(path) for path in paths])
    full_s, _ = best_of(lambda: [check_image(path) for path in paths])
    decode_s, images = best_of(lambda: [load_image(path) for path in paths])
    side = draft_side(64)  # what every consumer passes: a JPEG decoded at a DCT scale
    once_full_s, _ = best_of(lambda: [load_checked(path) for path in paths])
    once_s, drafted = best_of(lambda: [load_checked(path, side) for path in paths])
    fast = eval_photo(64)
    fast_s, fast_out = best_of(lambda: [fast(img) for img in images])
    draft_tf_s, draft_out = best_of(lambda: [fast(img) for img in drafted])
    gap = (torch.stack(draft_out).int() - torch.stack(fast_out).int()).abs()
    pre = ImagePreprocess.from_doc(predictor.bundle.preprocess)
    transform = build_transforms(pre, train=False)
    compose_s, composed = best_of(lambda: [transform(img) for img in images])

    def uint8(img):
        return F.center_crop(F.resize(F.pil_to_tensor(img), [64], antialias=True), [64, 64])

    uint8_s, small = best_of(lambda: [uint8(img) for img in images])
    stacked = torch.stack(small)
    norm_s, batched = best_of(
        lambda: F.normalize(
            F.to_dtype(stacked, torch.float32, scale=True), list(pre.mean), list(pre.std)
        )
    )
    identical = torch.equal(torch.stack(composed), batched)
    identical = identical and torch.equal(torch.stack(fast_out), stacked)
    print(f"{n} listings, {len(rels)} photos of {root}; one torch thread, best of 3")
    print(f"  read + validate (read_listings)        {1e3 * read_s / n:6.3f} ms/listing (one pass)")
    print(f"  bundle load (Predictor.from_bundle) {1e3 * load_s:.0f} ms, of which checksums, JSON "
          f"and operating-point checks {1e3 * checks_s:.0f} ms; without optimize_for_inference "
          f"{1e3 * plain_s:.0f} ms; a Python thread runs at {gil:.0%} of its rate meanwhile")  # fmt: skip
    print(f"  model on the same {len(batches)} batches: optimized {1e3 * opt_s / n:.3f} ms/listing, "
          f"plain {1e3 * noopt_s / n:.3f} ms/listing")  # fmt: skip
    print(f"  ListingDataset.__getitem__             {1e3 * getitem_s / n:6.3f} ms/listing")
    print(f"  mmdetect predict on all of {src} with the model replaced by a constant (the rest "
          f"of the run, bundle load included): {stubbed_s:.3f} s")  # fmt: skip
    print(f"  Predictor.predict_proba (incl. model)  {1e3 * predict_s / n:6.3f} ms/listing")
    print(
        f"  per photo: resolve path {resolve_s * per_photo:.3f} ms, PIL decode "
        f"{decode_s * per_photo:.3f} ms, v2 eval transform {compose_s * per_photo:.3f} ms"
    )
    print(f"  photo check in the main process: header {header_s * per_photo:.3f} ms/photo, "
          f"old full decode {full_s * per_photo:.3f} ms/photo")  # fmt: skip
    print(f"  header check + decode on one open (load_checked, what predict does now) "
          f"{once_s * per_photo:.3f} ms/photo at a DCT scale (min side {side}), "
          f"{once_full_s * per_photo:.3f} decoded fully; two opens, full decode "
          f"{(header_s + decode_s) * per_photo:.3f}")  # fmt: skip
    print(f"  worker transform: eval_photo (uint8) {draft_tf_s * per_photo:.3f} ms/photo on the "
          f"DCT-scaled photo, {fast_s * per_photo:.3f} on the full decode; pixels vs full decode: "
          f"mean {gap.float().mean():.2f}, max {int(gap.max())} levels of 255")  # fmt: skip
    print(f"  lever: uint8 resize + crop {uint8_s * per_photo:.3f} ms/photo + batched ToDtype + "
          f"Normalize {norm_s * per_photo:.3f} ms/photo; bit-identical: {identical}")  # fmt: skip
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
