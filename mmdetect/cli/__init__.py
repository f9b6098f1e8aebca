"""`mmdetect <verb>`: the one registry of verbs (cli/commands.py COMMANDS) and the verbs that span
stages (evaluate/thresholds, registry, explain). Imports everything; nothing imports it.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The console script `mmdetect` (pyproject.toml): dispatch to mmdetect.cli.commands.COMMANDS."""
    from mmdetect.cli.commands import main as run

    return run(argv)
