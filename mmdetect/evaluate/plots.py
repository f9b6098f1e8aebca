"""Report figures as PNG bytes (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmdetect.evaluate.curves import binary_curve


def _grid(n: int, ncols: int = 4) -> tuple[Figure, list[Any]]:
    cols = min(ncols, max(n, 1))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows))
    FigureCanvasAgg(fig)
    # fixed spacing: constrained layout would triple the rendering time
    gaps = {"hspace": 0.5, "wspace": 0.35, "left": 0.06, "right": 0.98, "bottom": 0.1, "top": 0.92}
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=gaps).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def to_png(fig: Figure) -> bytes:
    """Render a figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def pr_curves_png(
    y_true: np.ndarray,
    curves: Mapping[str, np.ndarray],
    taxonomy: Sequence[str],
    ap: Mapping[str, Mapping[str, float | None]],
) -> bytes:
    """One precision-recall panel per class; `curves` maps a model name to its scores [N, C]
    and `ap[model][class]` gives the AP shown in the legend."""
    fig, axes = _grid(len(taxonomy))
    for j, (ax, name) in enumerate(zip(axes, taxonomy, strict=True)):
        for model, scores in curves.items():
            c = binary_curve(y_true[:, j], scores[:, j])
            if c.n_pos == 0:
                continue
            value = ap[model].get(name)
            label = f"{model} AP={value:.3f}" if value is not None else model
            ax.step(np.r_[0, c.recall], np.r_[1, c.precision], where="post", label=label)
        if y_true[:, j].sum() == 0:
            ax.text(0.5, 0.5, "no positives", ha="center", va="center")
        else:
            ax.legend(fontsize=7, loc="lower left")
        ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    return to_png(fig)


def histograms_png(
    y_true: np.ndarray,
    y_score: np.ndarray,
    taxonomy: Sequence[str],
    hide: Mapping[str, float | None],
) -> bytes:
    """Calibrated-score histograms of positives vs negatives per class, with the hide line."""
    fig, axes = _grid(len(taxonomy))
    bins = np.linspace(0, 1, 21)
    for j, (ax, name) in enumerate(zip(axes, taxonomy, strict=True)):
        pos = y_true[:, j] == 1
        for mask, label, color in ((~pos, "negatives", "C0"), (pos, "positives", "C3")):
            ax.hist(
                y_score[mask, j], bins, histtype="stepfilled", alpha=0.5, label=label, color=color
            )
        if hide.get(name) is not None:
            ax.axvline(hide[name], color="black", linestyle="--", label="hide")
        ax.set_yscale("log")
        ax.set(title=name, xlabel="calibrated score", ylabel="listings", xlim=(0, 1))
        ax.legend(fontsize=7)
    return to_png(fig)
