"""A registry's history.jsonl: one line per promotion, refusal and rollback, checked line by
line, and the stack of bundles that were current (what a rollback returns to).

Split from registry.py (which writes it under the registry lock); `mmdetect registry` reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HISTORY = "history.jsonl"


class RegistryError(RuntimeError):
    """A registry operation that cannot proceed, worded for the person who ran it."""


HISTORY_KEYS = {"time": str, "action": str, "bundle": str, "previous": (str, type(None))}
ACTIONS = ("promote", "refuse", "rollback")


def _history_entry(
    raw: bytes, where: str, keys: Mapping[str, Any] = HISTORY_KEYS
) -> dict[str, Any]:  # fmt: skip
    """One history.jsonl line, checked; RegistryError naming file:line and what is wrong."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}: damaged line (not UTF-8 JSON: {exc})") from None
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: damaged line (a {type(entry).__name__}, not an object)")
    for key, kind in keys.items():
        if not isinstance(entry.get(key), kind):
            raise RegistryError(f"{where}: {key}: missing or of the wrong type")
    if entry["action"] not in ACTIONS:
        raise RegistryError(f"{where}: action: {entry['action']!r} is not one of {ACTIONS}")
    return entry


def scan_history(
    root: str | Path, name: str = HISTORY, keys: Mapping[str, Any] = HISTORY_KEYS
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """(valid entries, one message per damaged line naming history.jsonl:line); `name`, `keys`:
    another history of the registry (registry_rules.py: rules_history.jsonl)."""
    path = Path(root) / name
    entries, problems = [], []
    if not path.exists():
        return entries, problems
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    for lineno, raw in enumerate(data.splitlines(), 1):
        if raw.strip():
            try:
                entries.append(_history_entry(raw, f"{path}:{lineno}", keys))
            except RegistryError as exc:
                problems.append(str(exc))
    return entries, problems


def read_history(
    root: str | Path, name: str = HISTORY, keys: Mapping[str, Any] = HISTORY_KEYS
) -> list[dict[str, Any]]:  # fmt: skip
    """Every entry; RegistryError at the first damaged line (promote and rollback rely on it)."""
    entries, problems = scan_history(root, name, keys)
    if problems:
        raise RegistryError(f"{problems[0]}; repair or remove that line by hand")
    return entries


def _append_history(root: Path, entry: Mapping[str, Any], name: str = HISTORY) -> None:
    with (root / name).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def pointer_stack(history: Sequence[Mapping[str, Any]], key: str = "bundle") -> list[str]:
    """Bundles (or `key`s) that were current, oldest first: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for e in history:
        if e["action"] == "promote":
            stack.append(e[key])
        elif e["action"] == "rollback" and stack:
            stack.pop()
    return stack
