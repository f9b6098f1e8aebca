"""Names of bundles in a registry: `bundles/<name>`, shown by `mmdetect registry`, written into
history.jsonl and HTTP headers. Only `[A-Za-z0-9._-]`, starting with a letter or digit (no
hidden, `..`, newline, `<` or path separator), at most 128 characters."""

from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_bundle_name(name: str) -> str:
    """`name` if it may name a bundle in a registry; ValueError (one line) otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name)[:80]
        raise ValueError(
            f"bundle name {shown}: use 1-128 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
        )
    return name


def safe_name(text: str) -> str:
    """A directory name made into a valid bundle name (other characters become `_`)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")[:119]
    return name or "bundle"
