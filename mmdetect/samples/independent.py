"""An independent-phrasing evaluation snapshot: the same taxonomy, other words.

`generate_independent(out_dir, seed)` writes one labeled snapshot (docs/snapshot-format.md) of
violations of every class of the default taxonomy and benign listings, many of them confusers
(an official replica jersey, a nude-colour lipstick, a wallet for bills, a console reset for
resale). Its vocabulary, sentence shapes and fictional brands are its own
(independent_lexicon.py), never those of the sample generator (mmdetect/data/samples*.py): a
model that learned the generator's strings rather than what a violating listing says scores
lower here than on its validation month. It is for evaluation only: never train on it, fit
thresholds on it or tune on it, and do not tune the sample generator towards it.

No photos: the sample photos are drawings whose cues are the sample generator's own, so
drawing photos here would copy them (not independent) or invent cues no model could know. The
set measures the text's generalisation; a fused model scores it as it scores a no-photo
listing. Labels are exact (no label noise); listings are created in 2026-11, after every
training month. Same seed, same bytes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import jaconv

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples import independent_lexicon as L

MONTH = "2026-11"
# class -> (title templates, body sentences, items, categories, price range or None)
CLASSES = {
    "counterfeit": (L.FAKE_TITLES, L.FAKE_BODY, L.FAKE_ITEMS, ("bags", "fashion"), (1800, 12000)),
    "stolen_goods": (L.HOT_TITLES, L.HOT_BODY, L.HOT_ITEMS, ("electronics", "cosmetics"), (900, 7000)),
    "adult": (L.ADULT_TITLES, L.ADULT_BODY, L.ADULT_ITEMS, ("books", "toys", "fashion"), (700, 6000)),
    "cash_voucher": (L.CASH_TITLES, L.CASH_BODY, [""], ("tickets", "handmade"), None),
    "game_account": (L.GAME_TITLES, L.GAME_BODY, [""], ("games",), (1500, 40000)),
    "inappropriate": (None, None, [""], ("cosmetics", "tickets", "toys"), (600, 30000)),
}  # fmt: skip
SECOND = {"counterfeit": "keyword_stuffing", "stolen_goods": "counterfeit",
          "game_account": "cash_voucher", "cash_voucher": "game_account"}  # fmt: skip


def _fill(rng: random.Random, template: str, item: str = "", amt: int = 10000) -> str:
    return template.format(
        brand=rng.choice(L.BRANDS), latin=rng.choice(L.BRANDS_LATIN), hint=rng.choice(L.HINTS),
        item=item, emoji=rng.choice(L.EMOJI), n=rng.randint(2, 9), game=rng.choice(L.GAMES),
        pay=rng.choice(L.PAY), quiet=rng.choice(L.QUIET), amt=f"{amt:,}" if amt % 7 else amt,
    ).strip()  # fmt: skip


def _mixed_script(rng: random.Random, title: str) -> str:
    """How sellers type: sometimes half-width katakana or full-width ASCII in a title."""
    r = rng.random()
    if r < 0.08:
        return jaconv.z2h(title, kana=True, ascii=False, digit=False)
    if r < 0.16:
        return jaconv.h2z(title, kana=False, ascii=True, digit=True)
    return title


def _body(rng: random.Random, sentences: list[str], style: str) -> str:
    """One of three shapes: polite prose, a terse bulleted list, or a casual one-liner."""
    if style == "terse":
        lines = [f"・{s}" for s in sentences] + [
            "・" + t.format(cond=rng.choice(L.CONDITIONS)) for t in rng.sample(L.TERSE, 2)
        ]
        return "\n".join(lines)
    if style == "casual":
        return " ".join(s.rstrip("。") for s in sentences) + rng.choice(
            ["！", "〜", "。", " よろしく"]
        )
    return "\n".join(x for x in [rng.choice(L.OPENERS), *sentences, rng.choice(L.CLOSERS)] if x)


def _violation(rng: random.Random, cls: str) -> tuple[str, str, int, str]:
    titles, body, items, categories, price = CLASSES[cls]
    item, amt = rng.choice(items), rng.choice((10000, 20000, 30000, 50000))
    if titles is None:  # a title with the sentences that go with it
        titles, body = rng.choice(L.BAD)
        titles = [titles]
    title = _fill(rng, rng.choice(titles), item, amt)
    sentences = [_fill(rng, s) for s in rng.sample(body, rng.randint(1, min(3, len(body))))]
    if rng.random() < 0.3:
        sentences.append(rng.choice(L.QUIET) + "。")
    if price is None:  # money sells above its face value
        value = int(amt * rng.uniform(1.05, 1.4)) // 10 * 10
    else:
        value = rng.randint(*price) // 100 * 100
    style = rng.choice(("polite", "polite", "terse", "casual"))
    return _mixed_script(rng, title), _body(rng, sentences, style), value, rng.choice(categories)


def _benign(rng: random.Random) -> tuple[str, str, int, str]:
    category, title, body, (lo, hi) = rng.choice(L.BENIGN)
    sentences = [_fill(rng, s) for s in rng.sample(body, rng.randint(1, len(body)))]
    style = rng.choice(("polite", "polite", "terse", "casual"))
    price = rng.randint(lo, hi) // 100 * 100
    return _mixed_script(rng, _fill(rng, title)), _body(rng, sentences, style), price, category


def _stuff(rng: random.Random, title: str, desc: str) -> tuple[str, str]:
    words = rng.sample(L.STUFF_WORDS + L.BRANDS + L.BRANDS_LATIN, rng.randint(7, 12))
    title = f"{title} {' '.join(words[: rng.randint(4, 6)])}"
    lead = rng.choice(L.STUFF_LEADS)
    joiner = " #" if "ハッシュタグ" in lead else " "
    return title, desc + lead + joiner.join(words)


def _created(rng: random.Random) -> str:
    start = datetime.strptime(MONTH + "-01", "%Y-%m-%d")
    t = start + timedelta(seconds=rng.randrange(30 * 24 * 3600))
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "+09:00"


def generate_independent(out_dir: str | Path, seed: int = 0, per_class: int = 50,
                         n_benign: int = 350) -> dict:  # fmt: skip
    """Write `out_dir/listings.jsonl` and `snapshot.json`; returns the counts."""
    rng = random.Random(f"independent/{seed}")
    plans: list[tuple[str, ...]] = []
    for cls in DEFAULT_TAXONOMY:
        for _ in range(per_class):
            second = SECOND.get(cls) if rng.random() < 0.15 else None
            plans.append(tuple(sorted({cls, second} - {None})))
    plans += [()] * n_benign
    rng.shuffle(plans)
    rows = []
    for i, labels in enumerate(plans):
        r = random.Random(f"independent/{seed}/{i}")
        text_cls = [c for c in labels if c != "keyword_stuffing"]
        title, desc, price, cat = _violation(r, text_cls[0]) if text_cls else _benign(r)
        for other in text_cls[1:]:  # a second label shows its own cue too
            body = CLASSES[other][1] or [s for _, b in L.BAD for s in b]
            desc += "\n" + _fill(r, r.choice(body))
        if "keyword_stuffing" in labels:
            title, desc = _stuff(r, title, desc)
        rows.append({"id": f"ind-{i:05d}", "title": title, "description": desc,
                     "price": price, "category": cat, "images": [], "created_at": _created(r),
                     "labels": list(labels), "label_source": "independent_generator"})  # fmt: skip
    rows.sort(key=lambda x: x["created_at"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "listings.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    label_counts = Counter(c for r in rows for c in r["labels"])
    counts = {"listings": len(rows), "labels": {c: label_counts[c] for c in DEFAULT_TAXONOMY},
              "clean": sum(not r["labels"] for r in rows), "photos": 0}  # fmt: skip
    manifest = {"name": f"independent-{MONTH}-seed{seed}", "taxonomy": list(DEFAULT_TAXONOMY),
                "parents": [], "counts": counts,
                "description": "independent-phrasing evaluation set (mmdetect/samples/"
                "independent.py): evaluation only, never train, fit thresholds or tune on it"}  # fmt: skip
    (out / "snapshot.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return counts
