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
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

Box = tuple[float, float, float, float]
W_, K_, GOLD, GREY, RED, YEL = 5, 6, 7, 8, 9, 10  # fixed palette slots

# fmt: off
SHIRT = [(.32, 0), (.42, .07), (.58, .07), (.68, 0), (1, .2), (.88, .4), (.78, .32), (.78, 1),
         (.22, 1), (.22, .32), (.12, .4), (0, .2)]
SNEAKER = [(0, .5), (.06, .3), (.38, .28), (.56, .05), (.78, .05), (.82, .3), (1, .5), (1, .75), (0, .75)]
BAG = [(.1, .35), (.9, .35), (1, 1), (0, 1)]
KIMONO = [(0, .05), (1, .05), (1, .48), (.74, .48), (.74, 1), (.26, 1), (.26, .48), (0, .48)]
STAR = [(.5, 0), (.61, .35), (1, .38), (.69, .6), (.8, 1), (.5, .76), (.2, 1), (.31, .6), (0, .38), (.39, .35)]
SHAPES: dict[str, list[list[tuple]]] = {
    "fashion": [[("poly", SHIRT, 0)], [("poly", SHIRT, 0), ("ell", (.35, .35, .65, .6), 1)],
                [("poly", SHIRT, 0), ("rect", (.22, .55, .78, .62), 1), ("rect", (.22, .72, .78, .79), 1)]],
    "sneakers": [[("poly", SNEAKER, 0), ("rect", (0, .72, 1, .9), W_), ("arc", (.2, .35, .8, .8), 200, 340, 1),
                  ("line", [(.45, .2), (.55, .24), (.52, .3), (.62, .34)], W_)]],
    "bags": [[("arc", (.25, 0, .75, .7), 180, 360, 4), ("poly", BAG, 0), ("ell", (.46, .55, .54, .63), GOLD)],
             [("arc", (.25, 0, .75, .7), 180, 360, 4), ("poly", BAG, 0),
              ("poly", [(.1, .35), (.9, .35), (.8, .6), (.2, .6)], 4), ("ell", (.46, .55, .54, .63), GOLD)]],
    "electronics": [
        [("rrect", (.28, 0, .72, 1), K_), ("rect", (.31, .08, .69, .9), 1)],
        [("rrect", (.2, .45, .8, .95), W_), ("ell", (.25, .05, .4, .25), W_), ("rect", (.3, .2, .35, .42), W_),
         ("ell", (.6, .05, .75, .25), W_), ("rect", (.65, .2, .7, .42), W_)],
        [("rect", (.12, .1, .88, .65), K_), ("rect", (.16, .14, .84, .61), 1),
         ("poly", [(.12, .65), (.88, .65), (1, .85), (0, .85)], GREY)],
        [("rrect", (0, .25, 1, .85), K_), ("ell", (.3, .3, .7, .8), GREY), ("ell", (.4, .42, .6, .68), 0)]],
    "game_package": [[("rect", (.18, 0, .82, 1), 0), ("rect", (.18, 0, .82, .12), RED), ("ell", (.3, .3, .6, .5), 1),
                      ("ell", (.45, .5, .75, .75), 2), ("text", (.24, .86), "GAME", .1, W_)]],
    "games": [[("rrect", (.18, .3, .82, .75), K_), ("rect", (.22, .34, .78, .71), 1),
               ("rrect", (0, .3, .2, .75), 2), ("rrect", (.8, .3, 1, .75), 3)]],
    "books": [[("rect", (.15, 0, .85, 1), 0), ("rect", (.22, .08, .78, .22), 1), ("ell", (.29, .35, .71, .8), 2)],
              [("rect", (.15, 0, .85, 1), 0), ("text", (.22, .1), "BOOK", .1, W_), ("poly", STAR, 1)]],
    "cosmetics": [
        [("rect", (.3, .3, .6, 1), 0), ("rect", (.38, .12, .52, .3), 1), ("rect", (.34, .5, .56, .75), W_)],
        [("rect", (.15, .3, .45, 1), 0), ("rect", (.23, .12, .37, .3), 1), ("rect", (.55, .4, .85, 1), 2),
         ("rect", (.63, .25, .77, .4), K_)],
        [("ell", (.1, .1, .9, .9), 0), ("ell", (.22, .22, .78, .78), 1)],
        [("rrect", (0, .2, 1, .8), K_)] + [("rect", (.06 + .235 * (i % 4), .26 + .27 * (i // 4),
                                              .24 + .235 * (i % 4), .48 + .27 * (i // 4)), i % 4) for i in range(8)]],
    "tickets": [[("rect", (0, .28, 1, .72), W_), ("rect", (0, .28, .75, .39), 0), ("line", [(.76, .28), (.76, .72)], GREY),
                 ("rect", (.06, .45, .5, .49), GREY), ("rect", (.06, .53, .6, .57), GREY), ("rect", (.06, .61, .4, .65), GREY)],
                [("rect", (0, .28, 1, .72), 1), ("rect", (0, .28, .75, .39), 0), ("bar", (.8, .36, .96, .64)),
                 ("rect", (.06, .5, .5, .55), K_), ("rect", (.06, .6, .45, .65), K_)]],
    "toys": [[("ell", (.15, .05, .35, .25), 0), ("ell", (.65, .05, .85, .25), 0), ("ell", (.2, .1, .8, .55), 0),
              ("ell", (.15, .45, .85, 1), 4), ("ell", (.35, .25, .42, .32), K_), ("ell", (.58, .25, .65, .32), K_)],
             [("rrect", (0, .4, 1, .75), 0), ("rect", (.25, .2, .75, .42), 4), ("ell", (.12, .62, .34, .88), K_),
              ("ell", (.68, .62, .9, .88), K_)],
             [("rect", (0, .5, .45, .95), 0), ("rect", (.45, .5, .9, .95), 1), ("rect", (.2, .1, .65, .5), 2)]],
    "card_case": [[("rrect", (.1, .25, .9, .8), 0), ("line", [(.1, .42), (.9, .42)], 4), ("ell", (.47, .37, .53, .47), GOLD)]],
    "gift_box": [[("rect", (.12, .3, .88, 1), 0), ("rect", (.45, .3, .55, 1), 1), ("rect", (.12, .58, .88, .68), 1),
                  ("arc", (.3, .12, .5, .32), 0, 360, 1), ("arc", (.5, .12, .7, .32), 0, 360, 1)]],
    "handmade": [[("arc", (.2, 0, .35, .2), 180, 360, GOLD), ("ell", (.18, .25, .4, .55), 0), ("ell", (.22, .6, .36, .8), 1),
                  ("arc", (.6, 0, .75, .2), 180, 360, GOLD), ("ell", (.58, .25, .8, .55), 0), ("ell", (.62, .6, .76, .8), 1)],
                 [("rect", (.15, .2, .7, .95), 0), ("arc", (.55, .35, .92, .75), 270, 90, 0)],
                 [("chord", (0, 0, 1, 1.1), 180, 360, 0),
                  ("line", [(.05 + .09 * i, .2 if i % 2 else .5) for i in range(11)], 1)]],
    "copy_paper": [[("rect", (.05, .1 + .22 * i, .85, .45 + .22 * i), W_) for i in range(k)]
                   + [("rect", (.05, .22 + .22 * i, .85, .31 + .22 * i), 0) for i in range(k)]
                   + [("text", (.08, .23 + .22 * i), "A4", .09, W_) for i in range(k)] for k in (1, 2, 3)],
}
PARTS: dict[str, list[tuple]] = {  # pieces of the class cues, drawn in grids or stacks
    "box": [("poly", [(0, .2), (.2, 0), (1, 0), (.8, .2)], 4), ("rect", (0, .2, .8, 1), 0), ("rect", (.15, .45, .65, .7), 1)],
    "shelf_item": [("rect", (.05, .1, .95, .8), 0), ("rrect", (.3, .82, .7, .98), YEL)],
    "blister": [("rrect", (0, 0, 1, 1), 0)] + [("ell", (.06 + .19 * (i % 5), .12 + .44 * (i // 5), .2 + .19 * (i % 5),
                                                   .44 + .44 * (i // 5)), 1) for i in range(10)],
    "bottle": [("rect", (0, .3, .38, 1), 0), ("rect", (-.02, .18, .4, .3), W_), ("rect", (.03, .5, .35, .8), W_),
               ("rect", (.16, .54, .22, .76), RED), ("rect", (.09, .62, .29, .68), RED)],
    "vial": [("rect", (0, .3, .6, .9), W_), ("rect", (0, .5, .6, .9), 0), ("rect", (0, .22, .6, .3), K_)],
    "icon": [("rect", (.04, .04, .96, .96), 1), ("rect", (.12, .12, .88, .88), K_), ("ell", (.25, .25, .75, .75), 2)],
    "gacha_card": [("rect", (0, 0, 1, 1), 1), ("rect", (.1, .06, .9, .74), 0)],
    "hud": [("rect", (.05, .05, .6, .095), GREY), ("rect", (.05, .12, .6, .165), GREY), ("rect", (0, .9, 1, 1), K_)],
    "gift_card": [("rrect", (0, 0, 1, 1), 0), ("text", (.5, .52), "AMOUNT", .2, W_), ("rect", (.05, .66, .45, .92), W_),
                  ("bar", (.07, .7, .43, .88))],
    "banknote": [("rect", (0, 0, 1, 1), 0), ("rect", (.05, .1, .95, .9), 2), ("ell", (.6, .12, .92, .88), W_),
                 ("ell", (.7, .22, .82, .48), 1), ("chord", (.65, .5, .87, 1.0), 180, 360, 1),
                 ("ell", (.42, .55, .56, .85), RED), ("text", (.08, .12), "AMOUNT", .26, K_)],
}
# fmt: on
SHAPES["handmade"] += SHAPES["card_case"]


@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, px))


def _rgb(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def _jit(rng: random.Random, c: tuple, d: int = 25) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + rng.randint(-d, d))) for v in c)  # type: ignore[return-value]


def _pts(b: Box, pts: list) -> list[tuple[float, float]]:
    return [(b[0] + x * (b[2] - b[0]), b[1] + y * (b[3] - b[1])) for x, y in pts]


def _sub(b: Box, fx0: float, fy0: float, fx1: float, fy1: float) -> Box:
    (x0, y0), (x1, y1) = _pts(b, [(fx0, fy0), (fx1, fy1)])
    return (x0, y0, x1, y1)


def _text(d: ImageDraw.ImageDraw, xy: tuple, s: str, px: float, fill: tuple) -> None:
    d.text(xy, s, font=_font(int(px)), fill=fill)


def _barcode(d: ImageDraw.ImageDraw, rng: random.Random, b: Box) -> None:
    x = b[0]
    while x < b[2]:
        w = rng.choice((1, 1, 2, 3))
        d.rectangle((x, b[1], x + w, b[3]), fill=(20, 20, 20))
        x += w + rng.choice((1, 2, 3))


def _palette(rng: random.Random) -> list[tuple[int, int, int]]:
    c = [_rgb(rng, 20, 240) for _ in range(4)]
    return c + [_jit(rng, c[0], 35), _jit(rng, (240, 240, 235), 10), _jit(rng, (30, 30, 35), 15),
                (205, 180, 110), (135, 135, 140), (215, 35, 45), (250, 215, 45)]  # fmt: skip


def _draw(d, rng: random.Random, b: Box, prims: list, pal: list, amount: str = "") -> None:
    """Interpret primitives (op, normalised geometry, ..., palette slot) inside box b."""
    lw = max(2, int((b[2] - b[0]) / 22))
    for op, geo, *rest in prims:
        col = pal[rest[-1]] if rest and isinstance(rest[-1], int) else None
        if op == "poly":
            d.polygon(_pts(b, geo), fill=col, outline=pal[K_])
        elif op == "rect":
            d.rectangle(_sub(b, *geo), fill=col, outline=pal[K_])
        elif op == "rrect":
            d.rounded_rectangle(_sub(b, *geo), radius=(b[2] - b[0]) / 14, fill=col)
        elif op == "ell":
            d.ellipse(_sub(b, *geo), fill=col)
        elif op in ("arc", "chord"):
            fn = d.arc if op == "arc" else d.chord
            kw = {"width": lw} if op == "arc" else {}
            fn(_sub(b, *geo), rest[0], rest[1], fill=col, **kw)
        elif op == "line":
            d.line(_pts(b, geo), fill=col, width=lw)
        elif op == "text":
            txt = amount if rest[0] == "AMOUNT" else rest[0]
            _text(d, _pts(b, [geo])[0], txt, (b[3] - b[1]) * rest[1], col)
        elif op == "bar":
            _barcode(d, rng, _sub(b, *geo))


def _scatter(d, rng, b, kind: str, n: tuple[int, int], frac: float) -> None:
    for _ in range(rng.randint(*n)):
        x, y = rng.uniform(0, 1 - frac), rng.uniform(0, 1 - frac)
        _draw(d, rng, _sub(b, x, y, x + frac, y + frac), rng.choice(SHAPES[kind]), _palette(rng))


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
