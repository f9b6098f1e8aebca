"""Rendered product photos for the synthetic sample snapshots (PIL only, PIL's default font).

`render_photo(kind, rng, size)` draws one photo. A kind is a listing category (a generic product
of that category), a hard-negative look-alike (`copy_paper`, `furisode`, `game_package`,
`card_case`, `gift_box`, `kids_clothes`) or a class cue (`counterfeit`, `stolen_goods`, `adult`,
`cash_voucher`, `game_account`, `inappropriate`). Each cue varies in layout, size and colour so a
model has to learn a shape, not one pixel. `drift=True` gives some cues their 2026-10 look.
Every random draw comes from `rng`, so a photo is a pure function of its seed.

Plain products are data: a list of primitives in coordinates normalised to the object's box,
coloured from a per-photo palette (0-3 random colours, 4 a shade of 0, then fixed colours).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from mmdetect.samples.drawing import (
    BAG,
    GREY,
    K_,
    KIMONO,
    PARTS,
    SHAPES,
    STAR,
    W_,
    YEL,
    _draw,
    _jit,
    _palette,
    _pts,
    _rgb,
    _scatter,
    _sub,
    _text,
)


# ---- products drawn with code -----------------------------------------------------------------
def _kids_clothes(img, d, rng, b, drift):
    _scatter(d, rng, b, "fashion", (4, 7), 0.45)


def _books_stack(img, d, rng, b, drift):
    y = b[1]
    while y < b[3] - 10:
        h, x0, x1 = rng.uniform(10, 26), b[0] + rng.uniform(0, 20), b[2] - rng.uniform(0, 20)
        d.rectangle((x0, y, x1, y + h), fill=_rgb(rng, 30, 230), outline=(40, 40, 40))
        y += h + 1


def _fill(img, b, pts, base, paint) -> None:
    """Fill polygon `pts` (normalised in b) with `base` overpainted by `paint(draw)`."""
    layer = Image.new("RGB", img.size, base)
    paint(ImageDraw.Draw(layer))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(_pts(b, pts), fill=255)
    img.paste(layer, (0, 0), mask)


def _furisode(img, d, rng, b, drift):
    col = _jit(rng, rng.choice([(200, 30, 60), (230, 120, 160), (30, 60, 140), (240, 220, 200)]))
    n, c = rng.randint(6, 12), _rgb(rng, 150, 255)
    xy = [(rng.uniform(0, 0.9), rng.uniform(0.05, 0.9)) for _ in range(n)]

    def paint(ld: ImageDraw.ImageDraw) -> None:
        for x, y in xy:
            ld.ellipse(_sub(b, x, y, x + 0.12, y + 0.12), c)

    _fill(img, b, KIMONO, col, paint)
    d.rectangle(_sub(b, 0.26, 0.4, 0.74, 0.52), fill=(210, 180, 80))


def _bag_pattern(img, d, rng, b, base, paint, wallet=False) -> None:
    if wallet:
        return _fill(img, b, [(0, 0.25), (1, 0.25), (1, 0.8), (0, 0.8)], base, paint)
    d.arc(_sub(b, 0.25, 0, 0.75, 0.7), 180, 360, fill=_jit(rng, base), width=int(b[2] - b[0]) // 16)
    _fill(img, b, BAG, base, paint)
    d.rectangle(_sub(b, 0.44, 0.5, 0.56, 0.6), fill=(210, 190, 120))


def _striped_bag(img, d, rng, b, drift):
    c2, st = _rgb(rng, 30, 230), rng.randint(16, 30)

    def paint(ld: ImageDraw.ImageDraw) -> None:
        for x in range(0, img.width, st):
            ld.rectangle((x, 0, x + st // 3, img.height), c2)

    _bag_pattern(img, d, rng, b, _rgb(rng, 30, 230), paint)


# ---- class cues -------------------------------------------------------------------------------
def _counterfeit(img, d, rng, b, drift):
    """A bag or wallet covered in a repeated brand monogram (diamonds, quatrefoils or letters)."""
    base, ink = rng.choice([((95, 65, 40), (205, 175, 100)), ((35, 35, 35), (170, 170, 170)),
                            ((35, 45, 85), (225, 225, 225)), ((205, 175, 125), (110, 75, 40))])  # fmt: skip
    base, ink = _jit(rng, base, 15), _jit(rng, ink, 15)
    st, motif, letters = rng.randint(20, 32), rng.randrange(4), rng.choice(["VM", "MR", "BX"])
    s = st * 0.32

    def paint(ld: ImageDraw.ImageDraw) -> None:
        for r, y in enumerate(range(0, img.height, st)):
            for x in range((r % 2) * st // 2, img.width, st):
                if motif == 0 or (motif == 3 and (x // st + r) % 2):
                    ld.polygon([(x, y - s), (x + s, y), (x, y + s), (x - s, y)], fill=ink)
                elif motif == 1:
                    for dx, dy in ((0, -s), (0, 0), (-s, -s / 2), (s, -s / 2)):
                        ld.ellipse((x + dx - s / 2, y + dy, x + dx + s / 2, y + dy + s), fill=ink)
                else:
                    _text(ld, (x - s, y - s), letters, st * 0.55, ink)

    _bag_pattern(img, d, rng, b, base, paint, wallet=rng.random() < 0.3)


def _stolen_goods(img, d, rng, b, drift):
    """Many identical boxes stacked, or a shelf of identical items with yellow price tags."""
    pal = _palette(rng)
    pal[1] = rng.choice([(250, 250, 250), (240, 220, 60), (30, 30, 30)])
    cols, rows, shelf = rng.randint(3, 6), rng.randint(2, 4), rng.random() < 0.35
    for r in range(rows):
        for c in range(cols):
            cell = _sub(b, c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)
            _draw(d, rng, cell, PARTS["shelf_item" if shelf else "box"], pal)
        if shelf:
            d.rectangle(_sub(b, 0, (r + 1) / rows - 0.015, 1, (r + 1) / rows), fill=pal[GREY])


def _adult(img, d, rng, b, drift):
    """Large pink/red blocks, sometimes a mosaic patch, and an '18' (October: often 'R18') seal."""
    for _ in range(rng.randint(2, 5)):
        x, y, w, h = rng.uniform(-0.1, 0.6), rng.uniform(-0.1, 0.6), rng.uniform(0.3, 0.6), 0.0
        h = rng.uniform(0.3, 0.6)
        c = rng.choice([(240, 120, 160), (220, 40, 70), (200, 30, 140), (250, 170, 190)])
        d.rectangle(_sub(b, x, y, x + w, y + h), fill=_jit(rng, c, 15))
    x0, y0 = rng.uniform(0, 0.5), rng.uniform(0, 0.5)
    for i in range(36 if rng.random() < 0.4 else 0):  # mosaic patch
        fx, fy = x0 + 0.07 * (i % 6), y0 + 0.07 * (i // 6)
        skin = (rng.randint(170, 250), rng.randint(90, 160), rng.randint(110, 170))
        d.rectangle(_sub(b, fx, fy, fx + 0.07, fy + 0.07), fill=skin)
    r = rng.uniform(0.18, 0.3)
    cx, cy = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
    circ = _sub(b, cx - r, cy - r, cx + r, cy + r)
    d.ellipse(circ, fill=(255, 255, 255), outline=(220, 20, 40), width=int(circ[2] - circ[0]) // 9)
    label = "R18" if drift and rng.random() < 0.6 else "18"
    xy = _sub(circ, 0.22 if label == "18" else 0.12, 0.22, 1, 1)[:2]
    _text(d, xy, label, (circ[3] - circ[1]) * 0.45, (220, 20, 40))


def _banknote(rng: random.Random, w: int) -> Image.Image:
    note, pal = Image.new("RGBA", (w, int(w / 2.1)), (0, 0, 0, 0)), _palette(rng)
    pal[0] = _jit(rng, rng.choice([(165, 140, 100), (120, 155, 115), (120, 130, 165)]), 15)
    pal[1], pal[2], pal[K_] = (110, 95, 80), _jit(rng, (235, 228, 205), 10), (60, 50, 40)
    amount = rng.choice(["10000", "5000", "1000"])
    _draw(ImageDraw.Draw(note), rng, (0, 0, w - 1, note.height - 1), PARTS["banknote"], pal, amount)
    return note.rotate(rng.uniform(-25, 25), expand=True, resample=Image.BICUBIC)


def _cash_voucher(img, d, rng, b, drift):
    """Fanned banknotes with a portrait oval, or gift cards with a barcode (new brands in Oct)."""
    bw, bh = b[2] - b[0], b[3] - b[1]
    if rng.random() < 0.7:  # a fan of 3-5 notes
        x, y, w = rng.uniform(-0.1, 0.1), rng.uniform(0, 0.25), int(bw * rng.uniform(0.9, 1.1))
        for i in range(rng.randint(3, 5)):
            note = _banknote(rng, w)
            img.paste(
                note, (int(b[0] + (x + 0.04 * i) * bw), int(b[1] + (y + 0.08 * i) * bh)), note
            )
        return
    for _ in range(rng.randint(1, 3)):
        pal, new = _palette(rng), drift and rng.random() < 0.6
        old = [(240, 140, 30), (30, 30, 30), (30, 90, 200), (200, 30, 40)]
        pal[0] = _jit(rng, rng.choice([(120, 40, 170), (20, 160, 150)] if new else old), 15)
        pal[1] = (250, 220, 60) if new else (250, 250, 250)
        star = ("poly", _pts((0.06, 0.1, 0.36, 0.55), STAR), 1)
        logo = star if new else ("ell", (0.06, 0.1, 0.3, 0.5), 1)
        brand = ("text", (0.4, 0.14), "PAY" if new else "GIFT", 0.22, W_)
        x, y = rng.uniform(-0.05, 0.1), rng.uniform(0, 0.4)
        prims, amount = [*PARTS["gift_card"], logo, brand], rng.choice(["5000", "3000", "10000"])
        _draw(d, rng, _sub(b, x, y, x + 0.95, y + 0.6), prims, pal, amount)


def _game_account(img, d, rng, b, drift):
    """A full-frame game screenshot: HP/MP bars, level, item grid (October: gacha results)."""
    W = img.width
    f, pal = (0, 0, W, W), _palette(rng)
    if drift and rng.random() < 0.6:
        top, bot = _rgb(rng, 90, 160), _rgb(rng, 20, 70)
        for y in range(0, W, 4):
            mix = tuple(int(a + (c - a) * y / W) for a, c in zip(top, bot, strict=True))
            d.rectangle((0, y, W, y + 4), mix)
        for i in range(10):
            pal[0] = _rgb(rng, 40, 250)
            pal[1] = rng.choice([(250, 210, 60), (230, 230, 240), (240, 120, 220)])
            x0, y0 = 0.04 + 0.19 * (i % 5), 0.18 + 0.4 * (i // 5)
            stars = [("poly", _pts((k / 5, 0.78, k / 5 + 0.2, 0.93), STAR), YEL) for k in range(3)]
            _draw(d, rng, _sub(f, x0, y0, x0 + 0.16, y0 + 0.32), PARTS["gacha_card"] + stars, pal)
        return _text(d, (W * 0.35, W * 0.03), "NEW!", W * 0.08, (255, 255, 255))
    d.rectangle(f, fill=_rgb(rng, 5, 50))
    hp, mp = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6)
    pal[0], pal[1] = (220, 40, 40), (40, 90, 230)
    bars = [("rect", (0.05, 0.05, 0.05 + hp, 0.095), 0), ("rect", (0.05, 0.12, 0.05 + mp, 0.17), 1)]
    _draw(d, rng, f, PARTS["hud"] + bars, pal)
    _text(d, (W * 0.66, W * 0.04), f"Lv.{rng.randint(50, 999)}", W * 0.07, (250, 230, 80))
    _text(d, (W * 0.05, W * 0.905), f"RANK {rng.randint(100, 999)}", W * 0.06, (230, 230, 230))
    cols, rows = rng.randint(4, 6), rng.randint(2, 4)
    gx, gy, cell = rng.uniform(0.04, 0.12), rng.uniform(0.22, 0.35), 0.8 / cols
    for i in range(cols * rows):
        x0, y0 = gx + (i % cols) * cell, gy + (i // cols) * cell
        pal[1] = rng.choice([(250, 200, 50), (150, 150, 170), (180, 80, 240)])
        pal[2] = _rgb(rng, 60, 255)
        _draw(d, rng, _sub(f, x0, y0, x0 + cell, y0 + cell), PARTS["icon"], pal)


def _inappropriate(img, d, rng, b, drift):
    """Pill blister packs, medicine bottles with a red cross, or a row of decanted vials."""
    kind, pal = rng.choices((0, 1, 2), (30, 55, 15))[0], _palette(rng)
    if kind == 0:
        pal[0] = _jit(rng, (195, 198, 205), 12)
        pal[1] = rng.choice([(250, 250, 250), (240, 200, 60), (230, 120, 120), (120, 170, 230)])
        for _ in range(rng.randint(1, 3)):
            x, y = rng.uniform(0, 0.15), rng.uniform(0, 0.45)
            _draw(d, rng, _sub(b, x, y, x + 0.85, y + 0.55), PARTS["blister"], pal)
    elif kind == 1:
        pal[0] = _jit(rng, (190, 110, 30), 25)
        for fx in (0.08, 0.52)[: rng.randint(1, 2)]:
            _draw(d, rng, _sub(b, fx, 0, fx + 1, 1), PARTS["bottle"], pal)
    else:
        pal[0], n = _rgb(rng, 120, 250), rng.randint(6, 12)
        for i in range(n):
            x = 0.02 + i * 0.96 / n
            _draw(d, rng, _sub(b, x, 0, x + 1 / n, 1), PARTS["vial"], pal)


CODED = {
    "kids_clothes": _kids_clothes, "furisode": _furisode, "counterfeit": _counterfeit,
    "stolen_goods": _stolen_goods, "adult": _adult, "cash_voucher": _cash_voucher,
    "game_account": _game_account, "inappropriate": _inappropriate,
}  # fmt: skip
KINDS: tuple[str, ...] = tuple(sorted(set(SHAPES) | set(CODED)))
CUES = ("counterfeit", "stolen_goods", "adult", "cash_voucher", "game_account", "inappropriate")


def render_photo(kind: str, rng: random.Random, size: int, drift: bool = False) -> Image.Image:
    """Draw one photo of `kind` at 2x, then rotate, crop, recolour, shrink and add noise."""
    W = 2 * size
    bg = _rgb(rng, 150, 250) if rng.random() < 0.8 else _rgb(rng, 40, 150)
    img = Image.new("RGB", (W, W), bg)
    d = ImageDraw.Draw(img)
    if rng.random() < 0.4:  # a table edge or floor
        d.rectangle((0, W * rng.uniform(0.55, 0.8), W, W), fill=_jit(rng, bg, 50))
    side = W * (rng.uniform(0.7, 0.95) if kind in CUES else rng.uniform(0.55, 0.85))
    x0, y0 = rng.uniform(0, W - side), rng.uniform(0, W - side)
    box = (x0, y0, x0 + side, y0 + side)
    if kind in CODED:
        CODED[kind](img, d, rng, box, drift)
    elif kind == "bags" and rng.random() < 0.3:
        _striped_bag(img, d, rng, box, drift)
    elif kind == "books" and rng.random() < 0.35:
        _books_stack(img, d, rng, box, drift)
    elif kind == "games" and rng.random() < 0.5:
        _draw(d, rng, box, rng.choice(SHAPES["game_package"]), _palette(rng))
    elif kind == "toys" and rng.random() < 0.3:
        _scatter(d, rng, box, "toys", (2, 3), 0.6)
    else:
        _draw(d, rng, box, rng.choice(SHAPES[kind]), _palette(rng))
    img = img.rotate(rng.uniform(-12, 12), resample=Image.BICUBIC, fillcolor=bg)
    crop = rng.uniform(0, 0.12) * W
    cx, cy = rng.uniform(0, crop), rng.uniform(0, crop)
    img = img.resize((size, size), Image.LANCZOS, box=(cx, cy, cx + W - crop, cy + W - crop))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.15))
    sigma = rng.uniform(1.0, 3.0)
    noise = np.random.default_rng(rng.getrandbits(63)).normal(0, sigma, (size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")
