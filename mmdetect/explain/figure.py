"""A card as a picture for docs, without a browser: `python -m mmdetect.explain.figure`.

matplotlib draws the photos with their deltas and the modality bars (PNG); the highlighted
Japanese text is written as text (`[[word +0.123]]` marks), since a machine without a CJK font
would draw its glyphs as boxes. Reads explanations.jsonl; writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def text_depiction(e: dict[str, Any], threshold: float = 0.2) -> str:
    """Title and description with each word whose |attribution| is at least `threshold` of
    the largest marked `[[word +0.123]]`."""
    spans = e["text"]["spans"]
    scale = max((abs(s["attribution"]) for s in spans), default=0.0)
    out = []
    for name in ("title", "description"):
        text, pos, parts = e[name], 0, []
        for s in sorted((s for s in spans if s["field"] == name), key=lambda s: s["start"]):
            if scale and abs(s["attribution"]) >= threshold * scale:
                parts += [text[pos : s["start"]], f"[[{s['text']} {s['attribution']:+.3f}]]"]
                pos = s["end"]
        out.append(f"{name}: " + "".join([*parts, text[pos:]]))
    return "\n".join(out)


def card_png(e: dict[str, Any], root: Path, out: Path) -> None:
    """Photos (with their deltas) and the modality bars of one explanation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from mmdetect.data.images import resolve_image_path

    photos = e["photos"]
    n = max(len(photos), 1)
    fig = plt.figure(figsize=(2.2 * n + 4.5, 2.8))
    grid = fig.add_gridspec(1, n + 2)
    for j, p in enumerate(photos):
        ax = fig.add_subplot(grid[0, j])
        try:
            with Image.open(resolve_image_path(root, p["path"])) as img:
                ax.imshow(img.convert("RGB"))
        except Exception:  # noqa: BLE001 (a docs picture: show the gap, do not fail)
            ax.text(0.5, 0.5, "unreadable", ha="center")
        ax.set_title(f"photo {j}: {p['delta']:+.3f}", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, n:])
    names = list(e["modalities"])
    deltas = [e["modalities"][m]["delta"] for m in names]
    ax.barh(names, deltas, color=["#d33" if d > 0 else "#35d" for d in deltas])
    ax.axvline(0, color="#444", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("score - score with it masked (calibrated)", fontsize=8)
    fig.suptitle(f"{e['id']}: {e['class']} {e['score']:.3f} -> {e['decision']} "
                 f"(words: {e['text']['method'].replace('_', ' ')})", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmdetect.explain.figure")
    p.add_argument("explanations", type=Path, help="explanations.jsonl")
    p.add_argument("--id", required=True)
    p.add_argument("--images-root", type=Path, required=True)
    p.add_argument("--png", type=Path, required=True)
    args = p.parse_args(argv)
    rows = [json.loads(x) for x in args.explanations.read_text(encoding="utf-8").splitlines()]
    e = next((r for r in rows if r["id"] == args.id), None)
    if e is None:
        print(f"error: {args.explanations}: no explanation of {args.id!r}", file=sys.stderr)
        return 1
    card_png(e, args.images_root, args.png)
    print(text_depiction(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
