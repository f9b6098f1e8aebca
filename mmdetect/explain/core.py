"""One listing's explanation: scores and decision, word spans, photos, modalities.

Deltas are `score(listing) - score(listing with X masked)`: positive means X pushed the score
up. Photos and modalities are reported on the calibrated score (what hide/review compare) and
on the model's probability; word attributions on the model's probability (IG is defined on
the model's output; calibration is monotone, so signs and ranks carry over).

How each modality is masked, with the masks the model already has:
  text      title and description emptied: only the special tokens remain ([CLS] [SEP] [SEP]),
            what the model sees for a listing with no text;
  photos    every photo slot masked (image_mask False): the image tower's `missing` embedding;
  price     price_mask False: price unknown (the value is zeroed by the model);
  category  category id set to the unknown bucket (len(categories)), as for an unseen category.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mmdetect.data.dataset import Item
from mmdetect.explain.attribution import (
    Budget,
    integrated_gradients,
    occlusion_scores,
    occlusion_variants,
)
from mmdetect.explain.model import (
    Explainable,
    ExplainError,
    Inputs,
    concat,
    listing_inputs,
    repeat,
)
from mmdetect.explain.spans import Layout, listing_layout

METHODS = ("integrated_gradients", "occlusion")
MODALITIES = ("text", "photos", "price", "category")


def default_method(model: Explainable) -> str:
    return "integrated_gradients" if model.net is not None else "occlusion"


def class_index(model: Explainable, name: str | None, calibrated: np.ndarray) -> int:
    """The requested class, else the top calibrated one."""
    if name is None:
        return int(np.argmax(calibrated))
    if name not in model.taxonomy:
        raise ExplainError(
            f"--class {name!r} is not in the model's taxonomy {list(model.taxonomy)}"
        )
    return model.taxonomy.index(name)


def masked_variants(model: Explainable, inputs: Inputs) -> Inputs:
    """One row per photo (that photo masked), then one per modality in MODALITIES order."""
    k = int(inputs["image_mask"][0].sum())
    v = repeat(inputs, k + len(MODALITIES))
    for j in range(k):
        v["image_mask"][j, j] = False
    t = k  # text: keep the special tokens only ([CLS] ... [SEP] ... [SEP] -> [CLS][SEP][SEP])
    ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()]
    keep = set(model.tokenizer.all_special_ids) - {model.tokenizer.unk_token_id}  # [UNK]: content
    specials = torch.tensor([i for i in ids.tolist() if i in keep], dtype=torch.long)
    v["input_ids"][t] = model.pad_id
    v["attention_mask"][t] = 0
    v["input_ids"][t, : len(specials)] = specials
    v["attention_mask"][t, : len(specials)] = 1
    v["image_mask"][k + 1] = False
    v["price_mask"][k + 2] = False
    v["category_id"][k + 3] = len(model.pre["categories"])
    return v


def _deltas(full_raw: float, full_cal: float, raw: np.ndarray, cal: np.ndarray) -> list[dict]:
    return [{"delta": round(float(full_cal - c), 6), "delta_model": round(float(full_raw - r), 6)}
            for r, c in zip(raw, cal, strict=True)]  # fmt: skip


def word_spans(layout: Layout, scores: list[float], title: str, desc: str) -> list[dict]:
    out = []
    for w, s, (a, b) in zip(layout.words, scores, layout.positions, strict=True):
        text = (title if w.field == "title" else desc)[w.start : w.end]
        out.append({"field": w.field, "start": w.start, "end": w.end, "text": text,
                    "tokens": b - a, "attribution": round(s, 6)})  # fmt: skip
    return out


def explain_listing(
    model: Explainable, item: Item, class_name: str | None = None, method: str | None = None,
    budget: Budget | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The explanation of one listing (a JSON-ready dict; docs/explain.md lists its fields)."""
    started = time.perf_counter()
    budget = budget or Budget()
    method = method or default_method(model)
    if method not in METHODS:
        raise ExplainError(f"--method must be one of {METHODS}, got {method!r}")
    if method == "integrated_gradients" and model.net is None:
        raise ExplainError(f"{model.source}: a {model.kind} bundle has no gradients: use occlusion")
    x = item.listing
    inputs, refs = listing_inputs(model, item)
    probs = model.probs(inputs)
    d = model.decide(probs)
    per_class, overall = d.tier_names(0, model.taxonomy)
    c = class_index(model, class_name, d.calibrated[0])
    full_raw, full_cal = float(probs[0, c]), float(d.calibrated[0, c])

    layout = listing_layout(model.tokenizer, x.title, x.description, model.pre["max_length"],
                            model.pre.get("normalize"))  # fmt: skip
    if layout is not None and layout.ids != inputs["input_ids"][0].tolist():
        layout = None  # never attribute to the wrong words (a tokenizer path we do not map)
    # every masked copy of the listing in one batch: photos, modalities, then word groups
    variants, groups = masked_variants(model, inputs), []
    if layout is not None and method == "occlusion":
        words, groups = occlusion_variants(model, inputs, layout, budget)
        variants = concat([variants, words]) if words is not None else variants
    v_raw = model.probs(variants, budget.batch_size)
    n_masks = len(v_raw) - len(groups)
    v_cal = model.decide(v_raw[:n_masks]).calibrated[:, c]
    deltas = _deltas(full_raw, full_cal, v_raw[:n_masks, c], v_cal)
    k = len(refs)
    photos = [{"index": j, "path": ref, **deltas[j]} for j, ref in enumerate(refs)]
    modalities = {m: deltas[k + i] for i, m in enumerate(MODALITIES)}
    modalities["photos"]["present"] = k > 0
    modalities["price"]["present"] = x.price is not None
    modalities["category"]["present"] = x.category in model.pre["categories"]  # else: unknown
    passes = 1 + len(v_raw)

    text: dict[str, Any] = {"method": method, "units": budget.units, "spans": [],
                            "baseline_token": budget.baseline}  # fmt: skip
    if layout is None:
        text["note"] = "no character spans for this tokenizer (MeCab + WordPiece only)"
    elif method == "integrated_gradients":
        scores, gap, p_base, steps, total = integrated_gradients(model, inputs, layout, c, budget)
        text.update(steps=steps, steps_total=total, completeness_gap=float(f"{gap:.3g}"),
                    baseline_value=round(p_base, 6))  # fmt: skip
        text["spans"] = word_spans(layout, scores, x.title, x.description)
        passes += total + 2  # each doubling reran IG from scratch
    else:
        scores = occlusion_scores(groups, v_raw[n_masks:, c], full_raw, budget.units)
        text.update(groups=len(groups), words_per_group=max(map(len, groups), default=0))
        text["spans"] = word_spans(layout, scores, x.title, x.description)
    if layout is not None:
        text["truncated"] = layout.truncated
    return {
        "id": x.id,
        "model": model.source,
        "model_kind": model.kind,
        "class": model.taxonomy[c],
        "class_requested": class_name is not None,
        "score": round(full_cal, 6),
        "score_model": round(full_raw, 6),
        "calibrated": model.fitted,
        "decision": overall,
        "decisions": per_class,
        "scores": {
            t: round(float(s), 6) for t, s in zip(model.taxonomy, d.calibrated[0], strict=True)
        },
        "labels": list(x.labels) if x.labels is not None else None,
        "title": x.title,
        "description": x.description,
        "text": text,
        "photos": photos,
        "modalities": modalities,
        "cost": {"forward_passes": passes, "seconds": round(time.perf_counter() - started, 4)},
    }


def top_spans(expl: dict[str, Any], n: int = 5) -> list[dict]:
    """The `n` spans with the largest positive attribution (what pushed the score up)."""
    spans = [s for s in expl["text"]["spans"] if s["attribution"] > 0]
    return sorted(spans, key=lambda s: -s["attribution"])[:n]
