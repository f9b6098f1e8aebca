"""Seeded training-time augmentation with the evasions sellers type (data/evasions.py).

`data.augment` in a training config, e.g. `{rate: 0.3, kinds: [zero_width, hiragana], seed: 0}`:
a `rate` share of the training listings get one evasion (drawn from `kinds`, all by default)
applied to title and description. The choice depends only on the seed and the listing id, so
a fit is reproducible and the same listing gets the same text on every machine. Only the
datamodule's training split is augmented (`DetectorDataModule.build_dataset(train=True)`):
validation, test, scoring and serving never are. Text is tokenised once per fit, so the
augmented form is fixed for the fit (not redrawn each epoch).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from mmdetect.data.evasions import EVASIONS, evade

AUGMENT_KEYS = ("rate", "kinds", "seed", "word_rate")


class AugmentConfigError(ValueError):
    """An unknown augmentation key, kind, or a rate outside [0, 1]."""


def check_augment(cfg: Mapping[str, object] | None, where: str = "data.augment") -> dict | None:
    """The settings with defaults filled in (rate 0.3, every kind, seed 0, word_rate 0.5), or
    None when off; AugmentConfigError names `where` and the bad key."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise AugmentConfigError(
            f"{where}: expected a mapping of {list(AUGMENT_KEYS)}, got {cfg!r}"
        )
    for key in cfg:
        if key not in AUGMENT_KEYS:
            raise AugmentConfigError(
                f"{where}: unknown option {key!r} (known: {', '.join(AUGMENT_KEYS)})"
            )
    out = {"rate": 0.3, "kinds": list(EVASIONS), "seed": 0, "word_rate": 0.5, **cfg}
    for key in ("rate", "word_rate"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise AugmentConfigError(f"{where}.{key}: must be a number in [0, 1], got {value!r}")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int):
        raise AugmentConfigError(f"{where}.seed: must be an integer, got {out['seed']!r}")
    kinds = out["kinds"]
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise AugmentConfigError(f"{where}.kinds: must be a non-empty list, got {kinds!r}")
    bad = [k for k in kinds if k not in EVASIONS]
    if bad:
        raise AugmentConfigError(
            f"{where}.kinds: unknown evasion {bad[0]!r} (known: {', '.join(EVASIONS)})"
        )
    out["kinds"] = list(kinds)
    return out


def augment_pairs(
    pairs: Sequence[tuple[str, str]], ids: Sequence[str], cfg: Mapping[str, object] | None
) -> list[tuple[str, str]]:
    """(title, description) pairs with `cfg['rate']` of them evaded, seeded by listing id."""
    settings = check_augment(cfg)
    if settings is None or settings["rate"] == 0:
        return list(pairs)
    out = []
    for (title, desc), listing_id in zip(pairs, ids, strict=True):
        rng = random.Random(f"augment/{settings['seed']}/{listing_id}")
        if rng.random() >= settings["rate"]:
            out.append((title, desc))
            continue
        kind = rng.choice(settings["kinds"])
        rate = float(settings["word_rate"])
        out.append((evade(title, kind, rng, rate), evade(desc, kind, rng, rate)))
    return out
