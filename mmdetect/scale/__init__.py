"""Beyond one machine: LitData shards for training, Ray Data for batch scoring (docs/scale.md).

Everything here needs the optional extra `pip install -e '.[scale]'` (litdata, ray[data]); the
core install never imports this package. `require` turns a missing engine into one clear line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install -e '.[scale]'"


class MissingExtra(RuntimeError):
    """An engine of the `scale` extra is not installed."""


def require(module: str, what: str) -> ModuleType:
    """Import `module` or raise MissingExtra naming the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{what} needs {module.split('.')[0]} ({exc}); install the scale extra: {INSTALL_HINT}"
        ) from None
