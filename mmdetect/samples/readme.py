"""data_samples/README.md, written by the sample generator from the counts it computed."""

from __future__ import annotations

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

# the sizes scripts/make_samples.py uses when given no flag: the README shows only the others
DEFAULTS = {"n_train": 1800, "n_drift": 500, "n_incoming": 600, "image_size": 128,
            "n_traffic": 2500, "n_traffic_unlabeled": 2500}  # fmt: skip


def readme(summary: dict, sizes: dict, modes: tuple[str, ...]) -> str:
    """data_samples/README.md from the generator's summary and the sizes it was called with."""
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in sizes.items() if DEFAULTS[k] != v)
    splits, rev = summary["splits"], summary["reviews"]
    head = (
        "| split | months | listings | clean | "
        + " | ".join(DEFAULT_TAXONOMY)
        + " | photos | no photo |"
    )
    table = [head, "|" + "---|" * (len(DEFAULT_TAXONOMY) + 6)]
    for name, c in splits.items():
        labels = " | ".join(
            str(c["labels"][k]) if c["unlabeled"] == 0 else "-" for k in DEFAULT_TAXONOMY
        )
        clean = c["clean"] if c["unlabeled"] == 0 else "unlabeled"
        months = ", ".join(f"{m}: {n}" for m, n in c["months"].items())
        table.append(
            f"| {name}/ | {months} | {c['listings']} | {clean} | {labels} | {c['photos']} | {c['no_photo']} |"
        )
    cues = [f"| {cls} | " + " | ".join(str(splits["train"]["cue_modes"].get(f"{cls}:{m}", 0)) for m in modes) + " |"
            for cls in DEFAULT_TAXONOMY]  # fmt: skip
    true = ", ".join(f"{k} {v}" for k, v in rev["incoming_true_labels"].items())
    return f"""# data_samples: synthetic marketplace listings

Generated (byte-identical on every run) by

    python scripts/make_samples.py --out data_samples --seed {summary["seed"]}{extra}

with `mmdetect.samples.generator.generate_samples`. Everything except `tokenizer/` and
`independent/` comes from that command; do not edit these files by hand. Format:
docs/snapshot-format.md.

`independent/` is the independent-phrasing evaluation set, written by a separate generator
with its own vocabulary (mmdetect/samples/independent.py; no photos, 2026-11, exact labels):

    mmdetect samples --independent --out data_samples/independent --seed 0

It is for evaluation only (`mmdetect evaluate ... --independent data_samples/independent`):
never train, fit thresholds or tune on it.

Synthetic Japanese C2C listings in ten categories (fashion, sneakers, bags, electronics, games,
books, cosmetics, tickets, toys, handmade) with fictional brands, games and gift-card names, and
photos drawn with PIL ({sizes["image_size"]} px JPEG, 0-4 per listing). Labels follow the default taxonomy.

* `train/` labeled listings of four months, 2026-06..2026-09.
* `drift/` labeled listings of 2026-10, the held-out evaluation month.
* `incoming/` 2026-10 listings flagged for review, without labels.
* `reviews.jsonl` review decisions on incoming ids (id, labels, reviewed_at, reviewer).
{_traffic_bullets(splits)}
## Counts (computed by the generator)

{chr(10).join(table)}

Labels are as stored, with about 2.5% of labeled rows deliberately wrong (label noise:
{splits["train"]["cue_modes"].get("flipped", 0)} in train, {splits["drift"]["cue_modes"].get("flipped", 0)} in drift). A row may carry two labels.

## Where the cue is

Each violation shows its cue in the text only, in the photos only, or in both. Photo-only
violations have ordinary text for their category and a normal price (a plain bag title over a
monogram-pattern bag photo, a clean listing with a banknote photo); text-only ones have generic
photos or none. keyword_stuffing is always text-only. Violations per cue location in train/
(true labels, before label noise):

| class | image only | text only | both |
|---|---|---|---|
{chr(10).join(cues)}

Photo cues: counterfeit = repeated monogram on a bag or wallet; stolen_goods = stacks of identical
boxes or a shelf with price tags; adult = pink/red blocks with an "18" seal; cash_voucher =
banknotes with a portrait oval, or gift cards with a barcode; game_account = a dark game screen
with HP/MP bars and an item grid; inappropriate = blister packs, medicine bottles or decanted vials.
Hard negatives are labeled clean: コピー用紙 / コピー機, 成人式の振袖, Switch ソフト パッケージ版,
カードケース / ギフトボックス, 正規品 レシート付き at a plausible price, 子供服 まとめ売り 大量.

## Drift (2026-10)

October brings vocabulary that June-September never contain: new game titles (ステラリンク,
幻想戦記ルミナス, ...), account slang (ID譲渡, 引継ぎコード, リセマラ済み), gift-card brands
(ネクストペイ, ルナギフト), counterfeit slang (工場直送 1:1, ミラー品), stuffing trend words
(ハロウィン, Y3K), plus new photo styles (gacha-result screens, new gift-card designs, "R18" seals)
and a larger share of game_account. A model trained on train/ loses accuracy on drift/;
merging the reviewed incoming/ listings, which use the same new vocabulary, brings it back.

## Reviews

{rev["rows"]} decisions on {rev["ids"]} ids: about 76% of incoming ids, about 2% of decisions wrong,
{rev["reviewed_twice"]} ids reviewed twice (the later decision is the right one) and
{rev["unknown_ids"]} ids that exist in no snapshot. True label counts of incoming/ (known only to
the generator): {true}.
{_traffic_section(splits)}"""


def _traffic_bullets(splits: dict) -> str:
    out = ""
    if "traffic" in splits:
        out += ("* `traffic/` a labeled uniform random sample of 2026-09..2026-10 traffic at "
                "realistic prevalence (see Traffic below).\n")  # fmt: skip
    if "traffic_unlabeled" in splits:
        out += "* `traffic_unlabeled/` an unlabeled random sample of the same traffic.\n"
    return out


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.2f} %" if total else "-"


def _traffic_section(splits: dict) -> str:
    """Prevalence per class of the traffic samples, and how every split was sampled."""
    names = [s for s in ("traffic", "traffic_unlabeled") if s in splits]
    if not names:
        return ""
    head = (
        "| class | "
        + " | ".join(
            f"{s}/ stored labels | {s}/ true" if splits[s]["unlabeled"] == 0 else f"{s}/ true"
            for s in names
        )
        + " |"
    )
    rows = [head, "|---|" + "---|" * sum(2 if splits[s]["unlabeled"] == 0 else 1 for s in names)]
    for cls in (*DEFAULT_TAXONOMY, "any"):
        cells = []
        for s in names:
            c, n = splits[s], splits[s]["listings"]
            if c["unlabeled"] == 0:
                stored = n - c["clean"] if cls == "any" else c["labels"][cls]
                cells.append(f"{stored} ({_pct(stored, n)})")
            cells.append(f"{c['true_labels'][cls]} ({_pct(c['true_labels'][cls], n)})")
        rows.append(f"| {'any prohibited' if cls == 'any' else cls} | " + " | ".join(cells) + " |")
    info = "; ".join(
        f"{s}/ {splits[s]['listings']} listings, {splits[s]['pool_photos']} pool photos"
        for s in names
    )
    pool = splits[names[0]]["pool_per_kind"]
    flipped = splits.get("traffic", {}).get("cue_modes", {}).get("flipped", 0)
    return f"""
## Traffic (2026-09..2026-10)

Uniform random samples of all listings created in September and October 2026: each draws
0.2 % of a traffic of 1.25 M new listings a month (the `sampling` entry in its snapshot.json:
design `random`, rate 0.002, population 2026-09-01..2026-11-01), so every listing weighs 500.
Violations use the same templates, cue locations and photo cues as train/ and drift/ (October's
with the drift vocabulary), at the prevalence of live traffic; per-class counts are fixed by
quota, not drawn. Stored labels carry 0.1 % label noise ({flipped} rows in traffic/), so a few
"violations" are clean listings a reviewer got wrong. Listings per class ("true" = before label
noise; a listing may have two labels):

{chr(10).join(rows)}

{info}.

Photos that show no cue are shared from `images/pool/` ({pool} variants per photo kind), so
the same clean photo appears under many listings; every cue photo belongs to its listing alone.
Ids are T... (traffic/) and U... (traffic_unlabeled/); the `subset` field of each row names its
sampling entry.

## How each split was sampled (`sampling` in snapshot.json)

* `traffic/`, `traffic_unlabeled/`: `random`, rate 0.002; weights 1 / 0.002 per listing.
* `train/`, `drift/`: `enriched_by_score`, rate unknown (`default: true`, so their listings need
  no `subset` field): what reviewers were sent, about a quarter prohibited. Precision measured on
  them is far above the precision on traffic; they give no traffic weights.
* `incoming/` has no description; `mmdetect feedback merge` adds a `review_queue` subset for the
  listings its reviews label.
"""
