"""Error analysis for `mmdetect evaluate --explain-errors N`: why the served operating point
hid clean listings and let positives pass.

Per class, at most N false hides (hidden for the class, not labeled with it; highest calibrated
score first) and N missed positives (labeled with it, decided `pass` for it: neither hidden nor
sent to review; lowest score first) are explained for that class, written as cards
(errors/explanations.html) and summarised: the words with the most positive attribution summed
over the class's errors, with links to the cards. Cost: at most 2 N explanations per class.
A listing whose explanation fails is counted by reason (`skipped`), not fatal.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmdetect.data.dataset import Item
from mmdetect.data.records import Snapshot
from mmdetect.data.tokenize import nfkc
from mmdetect.explain.core import explain_listing
from mmdetect.explain.html import card_anchor
from mmdetect.explain.model import ExplainError
from mmdetect.explain.output import HTML, photo_thumbs, write_outputs
from mmdetect.serving.explainable import load_explainable

log = logging.getLogger(__name__)
KINDS = ("false_hide", "missed_positive")
SUBDIR = "errors"
TOP_WORDS = 8


def select_errors(records: Sequence, taxonomy: Sequence[str], n: int) -> list[tuple[str, str, str]]:
    """(kind, class, listing id) of the errors to explain: at most n per kind and class."""
    out = []
    labeled = [r for r in records if r.labels is not None and r.decisions is not None]
    for c in taxonomy:
        hides = [r for r in labeled if r.decisions[c] == "hide" and c not in r.labels]
        missed = [r for r in labeled if r.decisions[c] == "pass" and c in r.labels]
        hides.sort(key=lambda r: -r.scores[c])
        missed.sort(key=lambda r: r.scores[c])
        out += [("false_hide", c, r.id) for r in hides[:n]]
        out += [("missed_positive", c, r.id) for r in missed[:n]]
    return out


def top_words(explanations: Sequence[Mapping[str, Any]], k: int = TOP_WORDS) -> list[dict]:
    """Words (NFKC surface) by summed positive attribution over the explanations."""
    total: dict[str, float] = defaultdict(float)
    seen: dict[str, set] = defaultdict(set)
    for e in explanations:
        for s in e["text"]["spans"]:
            if s["attribution"] > 0:
                word = nfkc(s["text"]).strip()
                total[word] += s["attribution"]
                seen[word].add(e["id"])
    ranked = sorted(total, key=lambda w: -total[w])[:k]
    return [
        {"word": w, "attribution": round(total[w], 6), "listings": len(seen[w])} for w in ranked
    ]


def error_analysis(
    model: str | Path, thresholds: str | Path | None, records: Sequence, snapshot: Snapshot,
    taxonomy: Sequence[str], out_dir: Path, n: int,
) -> dict[str, Any]:  # fmt: skip
    """Explain the selected errors, write their cards under out_dir/errors/, and return the
    summary evaluate puts in metrics.json (`error_analysis`) and the report."""
    chosen = select_errors(records, taxonomy, n)
    listings = {x.id: x for x in snapshot.listings}
    explainer = load_explainable(model, thresholds)
    explanations, thumbs, groups = [], [], defaultdict(list)
    skipped: Counter = Counter()
    for kind, c, lid in tqdm(chosen, desc="explain errors", unit="listing"):
        if lid not in listings:  # a prediction for a listing the snapshot does not hold
            skipped["not_in_snapshot"] += 1
            continue
        item = Item(listings[lid], snapshot.root)
        try:
            e = explain_listing(explainer, item, c)
            json.dumps(e, allow_nan=False)  # a NaN would fail the whole file later
        except ExplainError:  # the model cannot be explained at all: every listing would fail
            raise
        except Exception as exc:  # noqa: BLE001 (one listing's failure costs that listing)
            skipped["explain_error"] += 1
            log.error("%s (%s, %s): explanation failed: %s", lid, kind, c, exc)
            continue
        e["error"] = kind
        explanations.append(e)
        thumbs.append(photo_thumbs(item, e))
        groups[(kind, c)].append(e)
    write_outputs(out_dir / SUBDIR, explanations, thumbs, "mmdetect evaluate: errors explained")
    rows = []
    for (kind, c), es in groups.items():
        rows.append({"kind": kind, "class": c, "explained": len(es), "top_words": top_words(es),
                     "cards": [f"{SUBDIR}/{HTML}#{card_anchor(e['id'], c, kind)}" for e in es],
                     "ids": [e["id"] for e in es]})  # fmt: skip
    methods = sorted({e["text"]["method"] for e in explanations})
    return {"per_class_limit": n, "method": methods, "groups": rows,
            "skipped": dict(skipped), "cards": f"{SUBDIR}/{HTML}"}  # fmt: skip
