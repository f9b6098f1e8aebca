"""The vector shapes (SHAPES, PARTS), colours and drawing primitives the sample photos are drawn
with; the per-kind recipes and render_photo are in mmdetect.samples.images.
"""

from __future__ import annotations

import random
from functools import lru_cache

from PIL import ImageDraw, ImageFont

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
