"""Optional extras: `require` imports an engine of an extra or raises MissingExtra naming the
command that installs it.
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
