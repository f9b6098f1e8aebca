"""Word attributions: Integrated Gradients (checkpoints) and word occlusion (any model).

Both explain the model's probability for one class, in probability units, against the same
baseline: every content token replaced by the baseline token ([PAD] by default: a zero row in
a from-scratch BERT's embedding table, which padding never trains), with the special tokens
([CLS], [SEP]), the attention mask, the photos, price and category kept. So a word's IG
attribution and its occlusion delta answer nearly the same question: how much of the score
this word's tokens carry relative to having no content there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmdetect.explain.model import Explainable, ExplainError, Inputs, repeat
from mmdetect.explain.spans import Layout
from mmdetect.models.fusion import Encoded

BASELINE_TOKENS = ("pad", "mask")
# "probability": attributions sum to a probability difference (reads like the deltas);
# "logit": to a logit difference, which still separates words when the score is saturated.
UNITS = ("probability", "logit")


@dataclass(frozen=True)
class Budget:
    """Work per listing: IG steps, the most occlusion passes, the forward batch size."""

    ig_steps: int = 32
    ig_max_steps: int = 128  # steps double up to this while the completeness gap is too large
    ig_tolerance: float = 0.01  # |sum of attributions - (p(x) - p(baseline))|, probability
    max_words: int = 48  # occlusion: at most this many groups (+1 pass for the listing)
    batch_size: int = 64  # one call for a listing's occlusions (TorchScript: one shape)
    baseline: str = "pad"
    units: str = "probability"


def baseline_id(model: Explainable, name: str) -> int:
    if name not in BASELINE_TOKENS:
        raise ValueError(f"baseline token must be one of {BASELINE_TOKENS}, got {name!r}")
    tok_id = model.pad_id if name == "pad" else model.tokenizer.mask_token_id
    if tok_id is None:
        raise ValueError(f"the tokenizer has no {name} token")
    return int(tok_id)


def baseline_ids(ids: torch.Tensor, layout: Layout, base: int) -> torch.Tensor:
    """ids [1, L] with every word's tokens replaced by `base` (special tokens and padding kept)."""
    out = ids.clone()
    for a, b in layout.positions:
        out[0, a:b] = base
    return out


def word_groups(n_words: int, max_groups: int) -> list[list[int]]:
    """Words in at most `max_groups` runs of neighbours (one word each when they fit), so every
    word is occluded by a bounded number of forward passes."""
    if n_words <= max_groups:
        return [[i] for i in range(n_words)]
    edges = np.linspace(0, n_words, max_groups + 1).round().astype(int)
    return [list(range(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def occlusion_variants(
    model: Explainable, inputs: Inputs, layout: Layout, budget: Budget
) -> tuple[Inputs | None, list[list[int]]]:
    """One row per word group, its words' tokens replaced by the baseline token (None when
    the listing has no word); the groups."""
    groups = word_groups(len(layout.words), budget.max_words)
    if not groups:
        return None, []
    base = baseline_id(model, budget.baseline)
    variants = repeat(inputs, len(groups))
    for row, group in enumerate(groups):
        for w in group:
            a, b = layout.positions[w]
            variants["input_ids"][row, a:b] = base
    return variants, groups


def to_units(probs: np.ndarray, units: str) -> np.ndarray:
    """Probabilities as they are, or their logits (clipped away from 0 and 1)."""
    if units == "probability":
        return np.asarray(probs, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def occlusion_scores(
    groups: list[list[int]], probs: np.ndarray, full: float, units: str = "probability"
) -> list[float]:
    """Per word: f(listing) - f(listing with its group occluded), f the probability or its
    logit; a group's delta is split evenly over its words."""
    values = to_units(np.append(probs, full), units)
    scores = [0.0] * sum(map(len, groups))
    for group, v in zip(groups, values[:-1], strict=True):
        for w in group:
            scores[w] = float(values[-1] - v) / len(group)
    return scores


def _cached_forward(net, inputs: Inputs, cls: int, units: str = "probability"):
    """p(class) as a function of (input_ids, attention_mask) only: the photo and tabular
    encodings of the listing are computed once (IG runs the text tower `steps` times, the CNN
    would otherwise run as often). Same graph as MultimodalClassifier.forward in eval mode."""
    with torch.no_grad():
        rest = [inputs[k] for k in ("images", "image_mask", "price", "price_mask", "category_id")]
        photos = photo_mask = pooled_photos = None
        if net.image is not None:
            pooled_photos, photos, photo_mask = net.image(rest[0], rest[1])
        tab = net.tabular(*rest[2:])

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[0]
        text, tokens, token_mask = net.text(input_ids, attention_mask)
        pooled = [text]
        if pooled_photos is not None:
            pooled.append(pooled_photos.expand(n, -1))
        pooled.append(tab.expand(n, -1))
        grow = lambda t: None if t is None else t.expand(n, *t.shape[1:])  # noqa: E731
        enc = Encoded(pooled, tokens, token_mask, grow(photos), grow(photo_mask))
        logits = net.head(net.fusion(enc))[:, cls]
        return logits if units == "logit" else torch.sigmoid(logits)

    return forward


def integrated_gradients(
    model: Explainable, inputs: Inputs, layout: Layout, cls: int, budget: Budget
) -> tuple[list[float], float, float, int, int]:
    """Per word: the sum of its tokens' IG attributions (LayerIntegratedGradients on the word
    embedding layer, summed over the embedding dimension); the completeness gap |sum of all
    attributions - (f(x) - f(baseline))|; f(baseline); the steps of the final run; the steps
    of all runs together (f: the probability of the class, or its logit with units "logit").

    A steep model (a cue word that flips the class) needs more steps than a smooth one: the
    steps double, up to `ig_max_steps`, until the gap is within `ig_tolerance`."""
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise ExplainError(
            "Integrated Gradients needs captum: pip install 'mmdetect[explain]' "
            "(or use --method occlusion)"
        ) from None
    net = model.net
    if net is None or net.text is None:
        raise ValueError("Integrated Gradients needs a checkpoint with a text tower")
    forward = _cached_forward(net, inputs, cls, budget.units)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():  # the shortcut must be the model: checked on the listing itself
        direct = net(*inputs.values())[0, cls]
        direct = direct if budget.units == "logit" else torch.sigmoid(direct)
        if not torch.allclose(forward(ids, mask)[0], direct, atol=1e-5):
            raise RuntimeError("cached forward differs from the model (fusion changed?)")
    base = baseline_ids(ids, layout, baseline_id(model, budget.baseline))
    lig = LayerIntegratedGradients(forward, net.text.encoder.get_input_embeddings())
    steps, total = budget.ig_steps, 0
    while True:
        with torch.enable_grad():
            attr, delta = lig.attribute(
                inputs=ids, baselines=base, additional_forward_args=(mask,),
                n_steps=steps, internal_batch_size=budget.batch_size,
                return_convergence_delta=True,
            )  # fmt: skip
        total += steps  # every run costs its steps, not just the one kept
        gap = float(delta.abs().max())
        if gap <= budget.ig_tolerance or steps * 2 > budget.ig_max_steps:
            break
        steps *= 2
    per_token = attr.sum(-1)[0].detach().double()
    with torch.no_grad():
        p_base = float(forward(base, mask)[0])
    words = [float(per_token[a:b].sum()) for a, b in layout.positions]
    return words, gap, p_base, steps, total
