"""Which labeled listings certify auto-hide, and how they are weighted (a policy choice).

Precision at a threshold depends on prevalence: measured on a 25 %-prohibited review queue it is
far higher than on 1 %-prohibited traffic. So certification rests on labeled listings re-weighted
to traffic prevalence whenever their sampling design gives weights (docs/operating-points.md,
"Traffic prevalence and sampling designs"). Modes (`mmdetect thresholds fit --certify-on`):

* `auto` (default): every labeled listing has a known inclusion probability -> all of them,
  re-weighted ("random" when the weights are equal, else "weighted"); otherwise the listings whose
  probability is known (the random subset) alone, re-weighted, when they hold at least
  `min_positives` prohibited listings ("random_subset"); otherwise all of them unweighted, marked
  "enriched": the certified precision is a snapshot figure, not a traffic figure.
* `random`: the listings with a known probability alone, re-weighted (an error if none).
* `snapshot`: all labeled listings unweighted, whatever the design (the behaviour before designs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmdetect.policy.config import PolicyError

MODES = ("auto", "random", "snapshot")
NOT_TRAFFIC = (
    "certified on an enriched sample of unknown inclusion rates: the hide precision is a "
    "snapshot figure, NOT a traffic figure (traffic prevalence is lower, so is its precision)"
)


def certification_sample(
    inclusion: np.ndarray, prohibited: np.ndarray, mode: str, min_positives: int
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(rows [N] bool, weights of those rows or None, the `certification` record).

    `inclusion`: inclusion probability per labeled listing (NaN = unknown); `prohibited`: the
    listing carries any label. Equal weights are returned as None (the unweighted figures are
    then exactly the traffic figures)."""
    if mode not in MODES:
        raise PolicyError(f"--certify-on must be one of {list(MODES)}, got {mode!r}")
    inclusion = np.asarray(inclusion, dtype=np.float64)
    prohibited = np.asarray(prohibited, dtype=bool)
    known = ~np.isnan(inclusion)
    everyone = np.ones(len(inclusion), bool)
    if mode == "snapshot":
        return everyone, None, _record("snapshot", everyone, prohibited, mode,
                                       "unweighted, whatever the design (--certify-on snapshot): "
                                       "the hide precision is a snapshot figure")  # fmt: skip
    if mode == "auto" and known.all() and len(known):
        rows = everyone
    elif known.any() and (mode == "random" or int(prohibited[known].sum()) >= min_positives):
        rows = known
    elif mode == "random":
        raise PolicyError(
            "--certify-on random: no labeled listing has a known inclusion probability "
            "(snapshot.json `sampling` describes no random subset of them)"
        )
    else:
        why = (
            f"; its random part has {int(prohibited[known].sum())} prohibited listings "
            f"< min_positives {min_positives}"
            if known.any()
            else ""
        )
        return everyone, None, _record("enriched", everyone, prohibited, mode, NOT_TRAFFIC + why)
    p = inclusion[rows]
    equal = np.ptp(p) == 0
    basis = ("random" if equal else "weighted") if rows.all() else "random_subset"
    note = "re-weighted to traffic prevalence by inclusion weights (1 / inclusion probability)"
    if equal:
        note = "an equal-probability sample of traffic: unweighted figures are traffic figures"
    if not rows.all():
        note = (
            f"the {int(rows.sum())} labeled listings with a known inclusion probability alone "
            f"(of {len(rows)}); " + note
        )
    return rows, None if equal else 1.0 / p, _record(basis, rows, prohibited, mode, note)


def _record(basis: str, rows: np.ndarray, prohibited: np.ndarray, mode: str, note: str) -> dict:
    return {
        "basis": basis,
        "mode": mode,
        "traffic_figures": basis != "enriched" and basis != "snapshot",
        "listings": int(rows.sum()),
        "prohibited": int(prohibited[rows].sum()),
        "note": note,
    }
