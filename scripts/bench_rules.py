"""What the rules cost on the scoring path, beside what tokenization costs, in one run.

    python scripts/bench_rules.py [--rules configs/rules/example.yaml] [--snapshot data_samples/traffic]

Times, on the same listings: matching the rules (policy/combine.match_rules, text normalisation
and the evasion folds included) and tokenizing them (data/tokenize.encode_batch with
data_samples/tokenizer, max length 128: one step every served listing takes), plain and with
tiny.yaml's data.normalize (what its bundles do); prints the CPU and each per listing, and the
ratios. Best of --repeat runs each, interleaved.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmdetect.common.hardware import cpu_info
from mmdetect.data.reader import read_snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.data.tokenize import encode_batch, load_tokenizer
from mmdetect.policy.combine import match_rules
from mmdetect.policy.rules import load_rules
from mmdetect.training.run import check_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rules", default="configs/rules/example.yaml")
    p.add_argument("--snapshot", default="data_samples/traffic")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, flags = cpu_info()
    print(f"cpu: {model}; avx2 {'avx2' in flags}, avx512f {'avx512f' in flags}")
    listings = read_snapshot(args.snapshot, check_images=False).listings
    rules = load_rules(args.rules, DEFAULT_TAXONOMY)
    tokenizer = load_tokenizer("data_samples/tokenizer")
    pairs = [(x.title, x.description) for x in listings]
    # tiny.yaml's data.normalize: what a bundle trained from it tokenises with
    normalize = check_config(["--config", "configs/train/tiny.yaml"]).data.normalize
    best = {"rules": float("inf"), "tokenize": float("inf"), "tokenize+normalize": float("inf")}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        hits = match_rules(rules, listings, DEFAULT_TAXONOMY)
        t1 = time.perf_counter()
        encode_batch(tokenizer, pairs, 128)
        t2 = time.perf_counter()
        encode_batch(tokenizer, pairs, 128, normalize)
        t3 = time.perf_counter()
        for k, v in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            best[k] = min(best[k], v)
    n = len(listings)
    print(f"{n} listings of {args.snapshot}, {len(rules.rules)} rules of {args.rules}; "
          f"{int(hits.matched.any(axis=1).sum())} listings matched by a rule")  # fmt: skip
    for k, v in best.items():
        print(f"{k:>18}: {1e6 * v / n:8.1f} us/listing (best of {args.repeat})")
    print(
        f"rules / tokenize: {best['rules'] / best['tokenize']:.3f}; "
        f"rules / tokenize+normalize: {best['rules'] / best['tokenize+normalize']:.3f}"
    )


if __name__ == "__main__":
    main()
