"""Rules reach the running service as bundles do: the pointer polled, verified, one store.

`RulesWatcher.check_once` (run by the bundle Watcher's poll, serving/reload.py) reads the
registry's `rules_current`; when it names other rules, they are loaded and verified beside the
ones serving (checksums, the file validated again, regexes probed, categories checked against
the bundle serving) and only then assigned to `Slot.rules` (one attribute store, atomic). Each
batch reads `Slot.rules` once, so a batch is decided under one rule set and its answers name it
(`ruleset`). Rules that fail are refused: the old ones keep serving, /readyz shows the refusal,
and the same pointer is not retried until it moves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mmdetect.artifacts.registry_history import RegistryError
from mmdetect.artifacts.rules_layout import load_promoted, resolve_rules
from mmdetect.policy.rules import RuleSet
from mmdetect.serving.reload import _iso  # the bundles' switch times, the same format

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveRules:
    """Verified rules and the registry name they serve under (rules/<name>)."""

    name: str
    path: Path
    rules: RuleSet
    since: float


class RulesWatcher:
    """Switches `slot.rules` to the registry's rules_current (see the module doc)."""

    def __init__(self, registry: Path, slot):
        self.registry, self.slot = registry, slot
        self._refused: Path | None = None

    def check_once(self) -> bool:
        """Load the pointer's rules if they are new; True if the slot switched. Blocking."""
        seen_at = time.time()
        try:
            path = resolve_rules(self.registry)
        except RegistryError as exc:
            log.warning("rules pointer unusable", extra={"error": str(exc)})
            return False
        serving = self.slot.rules
        if serving and path == serving.path and self._refused is not None:
            self._refused = self.slot.rules_refused = None  # pointer back on what serves
        if path is None or (serving and path == serving.path) or path == self._refused:
            return False
        active = self.slot.active
        taxonomy = active.predictor.taxonomy if active else None
        try:
            new = ActiveRules(path.name, path, load_promoted(path, taxonomy), time.time())
        except Exception as exc:  # noqa: BLE001 (whatever fails, the old rules keep serving)
            self._refused = path
            self.slot.rules_refused = {"rules": path.name, "reason": str(exc),
                                       "at_utc": _iso(seen_at)}  # fmt: skip
            log.error("rules refused: the old ones keep serving",
                      extra={"rules": path.name, "error": str(exc)})  # fmt: skip
            return False
        self._refused, self.slot.rules_refused = None, None
        self.slot.rules = new  # the switch: one reference store
        log.info("rules switched", extra={"rules": new.name,
                                          "previous": serving.name if serving else None})  # fmt: skip
        return True
