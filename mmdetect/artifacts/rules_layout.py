"""The promoted rules' on-disk layout in a registry: rules/<name>/ with checksums and the
rules_current pointer; what the service reads (promotion and history stay in ops).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mmdetect.artifacts.bundle_format import BundleError, verify_checksums
from mmdetect.artifacts.registry_history import RegistryError
from mmdetect.policy.rules import RuleSet, load_rules
from mmdetect.policy.rules_yaml import RulesError

RULES, RULES_CURRENT, RULES_HISTORY, RULES_FILE = (
    "rules", "rules_current", "rules_history.jsonl", "rules.yaml")  # fmt: skip


def rules_current_name(root: Path) -> str | None:
    link = root / RULES_CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def resolve_rules(root: str | Path) -> Path | None:
    """The directory rules_current points to; None when no rules were ever promoted."""
    link = Path(root) / RULES_CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    try:
        return link.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise RegistryError(f"{link} points to {os.readlink(link)}, which does not exist") from None


def load_promoted(directory: Path, taxonomy=None) -> RuleSet:
    """A promoted rules directory, checksums verified and the file validated (RulesError)."""
    try:
        verify_checksums(directory)
    except BundleError as exc:
        raise RulesError(f"promoted rules do not verify: {exc}") from None
    return replace(load_rules(directory / RULES_FILE, taxonomy), name=directory.name)
