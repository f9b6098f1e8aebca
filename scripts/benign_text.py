"""Real benign Japanese text as a labeled-clean snapshot: paragraphs of the Japanese manual pages
(Debian package manpages-ja, /usr/share/man/ja; `apt-get install manpages-ja`).

    python scripts/benign_text.py --out runs/quality/benign_text --n 400

None of it is a listing and none of it sells anything, so every flag the detector raises on it
is a false alarm: the ablation reports the share it would hide or send to review at the served
operating point. Licence: the JM Project translations are distributed under the licences of the
original man pages (DFSG-free: GPL, BSD and others; /usr/share/doc/manpages-ja/copyright), so
the text is read from the installed package at run time and never committed here.
Each listing: the paragraph's first sentence (at most 40 characters) as title, the paragraph
as description, no photo, no price, no category, labels [] (clean).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

MAN_JA = Path("/usr/share/man/ja")
_ESCAPES = re.compile(r"\\f[A-Z0-9]|\\f\(..|\\[-&|^/,e]|\\\(..|\\s[-+]?\d|\\\*.")
_INLINE = re.compile(r"^\.(?:[BI]|BR|RB|IR|RI|BI|IB|SM|SB)\s+(.*)$")
_JAPANESE = re.compile("[\u3040-\u30ff\u3400-\u9fff]")


def paragraphs(page: Path) -> list[str]:
    """Text paragraphs of one roff page: macro lines end a paragraph, escapes are dropped."""
    out, cur = [], []
    with gzip.open(page, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for line in lines:
        inline = _INLINE.match(line)
        if inline:  # a font macro (.B word, .IR a b): its words belong to the sentence
            line = " " + inline.group(1).replace('"', "") + " "
        elif line.startswith((".", "'")):
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(_ESCAPES.sub("", line).strip())
    if cur:
        out.append("".join(cur))
    return [re.sub(r"\s+", " ", p).strip() for p in out]


def japanese_paragraphs(root: Path = MAN_JA, min_chars: int = 40) -> list[str]:
    """Paragraphs mostly in Japanese (over half kana / kanji), at least `min_chars` long."""
    if not root.is_dir():
        raise SystemExit(f"error: {root}: not found; install the Debian package manpages-ja")
    keep = []
    for page in sorted(root.rglob("*.gz")):
        for p in paragraphs(page):
            if len(p) >= min_chars and len(_JAPANESE.findall(p)) > len(p) / 2:
                keep.append(p[:400])
    return list(dict.fromkeys(keep))


def write_snapshot(out: Path, texts: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "listings.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            title = re.split("(?<=。)", text, maxsplit=1)[0][:40]
            row = {"id": f"man-{i:05d}", "title": title, "description": text, "price": None,
                   "category": None, "images": [], "created_at": "2026-11-01T00:00:00+09:00",
                   "labels": [], "label_source": "benign_text"}  # fmt: skip
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    manifest = {"name": "benign-text-manpages-ja", "description": "paragraphs of manpages-ja "
                "(DFSG-free licences of the original man pages): real text that sells nothing"}  # fmt: skip
    (out / "snapshot.json").write_text(json.dumps(manifest, ensure_ascii=False) + "\n")
    return len(texts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=400, help="paragraphs, evenly spaced over all")
    args = p.parse_args()
    texts = japanese_paragraphs()
    step = max(1, len(texts) // args.n)
    chosen = texts[::step][: args.n]
    n = write_snapshot(args.out, chosen)
    print(f"{n} paragraphs of {len(texts)} from {MAN_JA} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
