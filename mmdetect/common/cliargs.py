"""What every command line shares: argument types, and silencing the known noise of libraries.

The filters are targeted: each matches one known message (by text and category or logger), so
any other warning from the same library still shows.
"""

from __future__ import annotations

import argparse
import logging
import warnings

# (message regex, category) of warnings users see on every run and can do nothing about.
NOISY_WARNINGS = (
    # We pass LightningCLI its args explicitly (mmdetect's own argv), which it cannot tell apart
    # from a mistake when sys.argv is also set.
    (r"LightningCLI's args parameter is intended to run from within Python", UserWarning),
    # TorchScript is deprecated in torch 2.14; the bundle format is TorchScript on purpose
    # (docs/bundle-format.md). The Python 3.14 "may break" variant stays visible.
    (r"`torch\.jit\.\w+` is deprecated\. Please switch to", FutureWarning),
    # Lightning's own pytree helper on torch 2.14, not our code.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
)
# (logger, message prefix) of log lines with no action for the user.
NOISY_LOGS = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    # BertModel has no loss of its own; the detector computes its loss itself.
    ("transformers.modeling_utils", "`loss_type=None` was set in the config but it is unrec"),
)


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_known_noise() -> None:
    """Install the filters above (idempotent)."""
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefix in NOISY_LOGS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (batch sizes, chunk sizes, counts)."""
    return _int_at_least(text, 1)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (timeouts, intervals, sizes)."""
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a tolerance that may be zero)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (worker counts, seeds)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value
