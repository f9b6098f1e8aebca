"""Tokenization: `encode_batch` against BertJapaneseTokenizer called per listing, same ids.

Contenders, all over the same (title, description) pairs and alternated:
  encode_batch      the project's path (MeCab -Owakati + per-word cached WordPiece, prefix cut)
  naive             tokenizer(nfkc(title), nfkc(desc), truncation="only_second", max_length=L,
                    split_special_tokens=True) per listing, as a user would write it
  titles            encode_batch over titles alone (the per-core goal is stated in titles/s)
  fugashi titles    the MeCab parse of the same NFKC titles alone: the ceiling of any
                    MeCab-based tokenizer in Python
"""

from __future__ import annotations

import time
from pathlib import Path

from mmdetect.bench.common import alternate, median, per_second, speedup
from mmdetect.data.mecab import _wakati_tagger
from mmdetect.data.reader import read_snapshot
from mmdetect.data.tokenize import _word_ids, encode_batch, load_tokenizer, nfkc

TITLES_PER_CORE_GOAL = 20_000


def naive_encode(tokenizer, pairs, max_length: int) -> list[list[int]]:
    """The per-listing transformers call (only_second: the description is truncated first)."""
    return [
        tokenizer(
            nfkc(title),
            nfkc(desc),
            truncation="only_second",
            max_length=max_length,
            split_special_tokens=True,  # as encode_listing: a typed "[SEP]" is plain text
        )["input_ids"]
        for title, desc in pairs
    ]


def load_pairs(snapshots, limit: int | None) -> list[tuple[str, str]]:
    pairs = []
    for snap in snapshots:
        listings = read_snapshot(snap, check_images=False).listings
        pairs += [(x.title, x.description) for x in listings]
    return pairs[:limit]


def cpu_rate(fn, count: int) -> float:
    """Items per CPU-second of this process (a figure per core, whatever the load)."""
    start = time.process_time()
    fn()
    return count / max(time.process_time() - start, 1e-9)


def bench_tokenize(
    snapshots=("data_samples/train", "data_samples/drift", "data_samples/incoming"),
    tokenizer: str | Path = "data_samples/tokenizer",
    max_length: int = 96,
    limit: int | None = None,
    reps: int = 5,
) -> dict:
    """Figures of the tokenization benchmark; raises AssertionError if any ids differ."""
    tok = load_tokenizer(str(tokenizer))
    pairs = load_pairs(snapshots, limit)
    titles = [(t, "") for t, _ in pairs]
    norm_titles = [nfkc(t) for t, _ in pairs]

    _word_ids.cache_clear()
    start = time.perf_counter()
    fast = encode_batch(tok, pairs, max_length)
    cold_s = time.perf_counter() - start
    naive = naive_encode(tok, pairs, max_length)
    differ = sum(a != b for a, b in zip(fast, naive, strict=True))
    assert differ == 0, f"{differ} of {len(pairs)} listings encode differently"
    assert encode_batch(tok, titles, max_length) == naive_encode(tok, titles, max_length)

    tagger = _wakati_tagger(tok.mecab_kwargs.get("mecab_dic"), "")
    times = alternate(
        {
            "encode_batch": lambda: encode_batch(tok, pairs, max_length),
            "naive": lambda: naive_encode(tok, pairs, max_length),
            "titles": lambda: encode_batch(tok, titles, max_length),
            "fugashi_titles": lambda: [tagger.parse(t) for t in norm_titles],
        },
        reps=reps,
    )
    n = len(pairs)
    titles_cpu = cpu_rate(lambda: encode_batch(tok, titles, max_length), n)
    fugashi_cpu = cpu_rate(lambda: [tagger.parse(t) for t in norm_titles], n)
    return {
        "listings": n,
        "max_length": max_length,
        "reps": reps,
        "ids_identical": differ == 0,
        "mean_ids_per_listing": sum(map(len, fast)) / max(n, 1),
        "encode_batch_listings_per_s": per_second(n, times["encode_batch"]),
        "encode_batch_cold_listings_per_s": n / cold_s,
        "naive_listings_per_s": per_second(n, times["naive"]),
        "speedup_vs_naive": speedup(times, "encode_batch", "naive"),
        "titles_per_s": per_second(n, times["titles"]),
        "titles_per_cpu_s": titles_cpu,
        "fugashi_titles_per_s": per_second(n, times["fugashi_titles"]),
        "fugashi_titles_per_cpu_s": fugashi_cpu,
        "titles_share_of_fugashi": median(times["fugashi_titles"]) / median(times["titles"]),
        "titles_goal_met": titles_cpu >= TITLES_PER_CORE_GOAL,
    }


def format_tokenize(r: dict) -> list[str]:
    goal = "met" if r["titles_goal_met"] else "NOT met"
    return [
        f"tokenize: {r['listings']} listings (title+description, max_length {r['max_length']}, "
        f"{r['mean_ids_per_listing']:.1f} ids/listing), median of {r['reps']} alternated reps; "
        f"ids identical: {r['ids_identical']}",
        f"  encode_batch  {r['encode_batch_listings_per_s']:9.0f} listings/s "
        f"(first call, cold word cache: {r['encode_batch_cold_listings_per_s']:.0f}/s)",
        f"  naive HF call {r['naive_listings_per_s']:9.0f} listings/s",
        f"  ratio encode_batch / naive: {r['speedup_vs_naive']:.2f}x",
        f"  titles alone  {r['titles_per_s']:9.0f} titles/s wall, "
        f"{r['titles_per_cpu_s']:.0f} titles per CPU-second (1 thread: per core); "
        f"goal {TITLES_PER_CORE_GOAL} {goal}",
        f"  fugashi alone {r['fugashi_titles_per_s']:9.0f} titles/s wall, "
        f"{r['fugashi_titles_per_cpu_s']:.0f} per CPU-second (ceiling); "
        f"encode_batch reaches {r['titles_share_of_fugashi']:.0%} of it",
    ]
