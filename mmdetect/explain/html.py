"""explanations.html: one self-contained card per listing (no script, no external file).

Every piece of listing text goes through html.escape (sellers type "<script>" too); photos
are inlined as small base64 JPEG thumbnails read from the resolved, checked path.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

THUMB = 96
STYLE = (
    "body{font-family:sans-serif;margin:1.5em;background:#fafafa}"
    ".card{background:#fff;border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0;"
    "max-width:60em}.card h2{font-size:1.05em;margin:0 0 .4em}"
    ".meta{color:#444;font-size:.9em}.text{line-height:1.9;white-space:pre-wrap}"
    ".hl{border-radius:3px;padding:1px 0}.photos{display:flex;gap:.8em;flex-wrap:wrap}"
    ".photo{text-align:center;font-size:.8em}.photo img{display:block;border:1px solid #ccc}"
    ".bar{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:2px 0}"
    ".bar .name{width:6em}.bar .track{width:16em;height:.9em;background:#eee;position:relative}"
    ".bar .fill{position:absolute;top:0;height:100%}table.sc{border-collapse:collapse;"
    "font-size:.8em}table.sc td{border:1px solid #ddd;padding:1px 5px}"
    ".hide{color:#b00;font-weight:bold}.review{color:#b60;font-weight:bold}.pass{color:#070}"
)


def card_anchor(listing_id: str, cls: str | None = None, kind: str | None = None) -> str:
    """The card's HTML id, from (kind, class, listing id): one listing can be an error for two
    classes, so the id alone would name two cards. Plain tokens are joined with ":" (not in a
    token, so unambiguous); anything else is hashed ("~" marks the hashed form)."""
    parts = [p for p in (kind, cls, listing_id) if p is not None]
    if all(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", p) for p in parts):
        return "card-" + ":".join(parts)
    key = "\x00".join(parts).encode("utf-8", "replace")
    return "card-~" + hashlib.sha256(key).hexdigest()[:16]


def _colour(value: float, scale: float) -> str:
    """Red for what pushed the score up, blue for what pulled it down; alpha by size."""
    a = min(abs(value) / scale, 1.0) * 0.75 if scale > 0 else 0.0
    return f"rgba(220,40,40,{a:.2f})" if value > 0 else f"rgba(40,90,220,{a:.2f})"


def highlight(text: str, spans: Sequence[dict], scale: float) -> str:
    """`text` escaped, each span wrapped in a coloured <span> with its attribution as title."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        if s["start"] < pos:  # overlapping spans never come from spans.py; skip, do not garble
            continue
        out.append(html.escape(text[pos : s["start"]]))
        word = html.escape(text[s["start"] : s["end"]])
        colour = _colour(s["attribution"], scale)
        out.append(f'<span class="hl" style="background:{colour}" '
                   f'title="{s["attribution"]:+.4f}">{word}</span>')  # fmt: skip
        pos = s["end"]
    out.append(html.escape(text[pos:]))
    return "".join(out)


def thumbnail(path: Path | None) -> str | None:
    """A base64 JPEG data URI of the photo at `path` (None if it cannot be read)."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bar(name: str, delta: float, scale: float, note: str = "") -> str:
    width = min(abs(delta) / scale, 1.0) * 50 if scale > 0 else 0
    left = 50 if delta >= 0 else 50 - width
    colour = _colour(delta, abs(delta) or 1)
    return (f'<div class="bar"><span class="name">{html.escape(name)}</span><span class="track">'
            f'<span class="fill" style="left:{left:.1f}%;width:{width:.1f}%;background:{colour}">'
            f'</span></span><span>{delta:+.3f}{html.escape(note)}</span></div>')  # fmt: skip


def card(e: dict[str, Any], thumbs: Sequence[str | None]) -> str:
    """One listing's card (thumbs: a data URI or None per photo of e["photos"])."""
    esc = html.escape
    spans = e["text"]["spans"]
    scale = max((abs(s["attribution"]) for s in spans), default=0.0)
    title = highlight(e["title"], [s for s in spans if s["field"] == "title"], scale)
    desc = highlight(e["description"], [s for s in spans if s["field"] == "description"], scale)
    score_kind = "calibrated" if e["calibrated"] else "model (no fitted calibration)"
    labels = "unlabeled" if e["labels"] is None else (", ".join(e["labels"]) or "clean")
    scores = "".join(f"<td>{esc(c)} {v:.3f} <i>{esc(e['decisions'][c])}</i></td>"
                     for c, v in e["scores"].items())  # fmt: skip
    text = e["text"]
    how = esc(f"{text['method'].replace('_', ' ')} ({text.get('units', 'probability')})")
    if "completeness_gap" in text:
        how += f", {text['steps']} steps, completeness gap {text['completeness_gap']:.2g}"
    if "groups" in text:
        how += f", {text['groups']} groups of up to {text['words_per_group']} words"
    photos = []
    for p, uri in zip(e["photos"], thumbs, strict=True):
        img = f'<img src="{uri}" alt="photo {p["index"]}">' if uri else "<i>(unreadable)</i>"
        photos.append(f'<div class="photo">{img}{p["delta"]:+.3f}</div>')
    mods = e["modalities"]
    mscale = max(abs(m["delta"]) for m in mods.values()) or 1.0
    bars = "".join(
        _bar(name, m["delta"], mscale, "" if m.get("present", True) else " (absent)")
        for name, m in mods.items()
    )
    return (
        f'<section class="card" id="{card_anchor(e["id"], e["class"], e.get("error"))}">'
        f"<h2>{esc(e['id'])}: {esc(e['class'])} {e['score']:.3f} "
        f'<span class="{esc(e["decision"])}">{esc(e["decision"])}</span></h2>'
        f'<div class="meta">score: {score_kind}; model probability {e["score_model"]:.3f}; '
        f"labels: {esc(labels)}; words: {how}</div>"
        f'<p class="text"><b>{title}</b>\n{desc}</p>'
        f'<div class="photos">{"".join(photos) or "<i>no photos</i>"}</div>'
        f'<div class="meta">modalities (score minus score with it masked):</div>{bars}'
        f'<table class="sc"><tr>{scores}</tr></table></section>'
    )


def render(explanations: Sequence[dict], thumbs: Sequence[Sequence[str | None]], title: str) -> str:
    legend = ("<p>Red: pushed the explained class's score up; blue: pulled it down (word "
              "colours scaled per card). Photo and modality deltas: the calibrated score minus "
              "the score with that photo or modality masked.</p>")  # fmt: skip
    cards = "\n".join(card(e, t) for e, t in zip(explanations, thumbs, strict=True))
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{legend}\n{cards}"
        "</body></html>\n"
    )
