"""Blue-green bundles: load and verify the new one beside the old, warm it up, switch, drop.

`Slot.active` is the one reference each scoring thread reads, once per batch: a batch is scored
by a single bundle from start to end, and its answers name that bundle. The watcher polls the
registry's `current` pointer (`served_bundle`: the rule `mmdetect registry` applies too: a
bundle promoted into the registry's bundles/, nothing outside it); when it names another bundle,
the new one is loaded
in a loader thread (load_bundle: checksums, documents, thresholds; then the Predictor's own
checks), warmed up on one batch, and only then assigned to `active` (one attribute store,
atomic). The old Predictor is dropped when the last batch holding it ends. A bundle that fails
is refused, as is a pointer the rule refuses: the old one keeps serving, the refusal is logged
(in full) and shown by /readyz (one line), and the same pointer is not retried until it moves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from mmdetect.artifacts.bundle_format import BundleError
from mmdetect.artifacts.registry_history import RegistryError
from mmdetect.artifacts.registry_layout import CURRENT, served_bundle
from mmdetect.data.dataset import Item
from mmdetect.data.records import Listing
from mmdetect.serving.decision import Decision
from mmdetect.serving.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Active:
    """A verified, warmed-up bundle and its name (the registry's bundles/<name>)."""

    name: str
    path: Path
    predictor: Predictor
    since: float  # time.time() it started serving


@dataclass
class Slot:
    """What is serving, what was refused, and the switch log (newest last, kept short)."""

    active: Active | None = None
    refused: dict | None = None
    switches: list[dict] = field(default_factory=list)
    rules: Any = None  # serving/rules_reload.ActiveRules, switched by RulesWatcher
    rules_refused: dict | None = None

    def switch(self, new: Active, seen_at: float) -> None:
        old, self.active = self.active, new  # the switch: one reference store
        self.switches = [*self.switches[-19:], {
            "bundle": new.name, "previous": old.name if old else None,
            "pointer_seen_utc": _iso(seen_at), "serving_utc": _iso(new.since),
            "lag_s": round(new.since - seen_at, 3)}]  # fmt: skip


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An error's first line (a TorchScript error is a whole traceback), for /readyz."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
    more = f" (+{len(lines) - 1} lines in the log)" if len(lines) > 1 else ""
    return lines[0][: limit - len(more)] + more


def warmup_listings(staging: Path) -> list[Listing]:
    """One listing with a photo, one without: both paths through the model are compiled."""
    (staging / "warmup").mkdir(exist_ok=True)
    Image.new("RGB", (48, 40), (200, 30, 30)).save(staging / "warmup" / "p0.png")
    now = datetime.now(timezone.utc)
    common = dict(description="warm-up", price=1000, category=None, created_at=now, labels=None)
    return [Listing(id="warmup-0", title="ウォームアップ", images=("warmup/p0.png",), **common),
            Listing(id="warmup-1", title="warm up", images=(), **common)]  # fmt: skip


def load_active(
    path: Path, name: str, staging: Path, device: str | None, batch_size: int
) -> Active:
    """Load + verify (BundleError if it fails), warm up twice (TorchScript's profiling executor
    optimises on the second call), and check that the warm-up gave finite scores."""
    predictor = Predictor.from_bundle(path, device, batch_size=batch_size)
    items = [staged_item(x, staging) for x in warmup_listings(staging)]
    for _ in range(2):
        probs = predictor.predict_items(items)
    if not (probs == probs).all() or probs.min() < 0 or probs.max() > 1:
        raise BundleError(f"{path}: warm-up scores are not probabilities: {probs.tolist()}")
    return Active(name, path, predictor, time.time())


def staged_item(listing: Listing, staging: Path) -> Item:
    """The listing with its photos' paths given: they are the service's own names under the
    (resolved) staging root, checked when staged, so the data loader need not resolve them
    again (as predict's read_items hands over the paths it checked)."""
    return Item(listing, staging, tuple(staging / rel for rel in listing.images))


def score_with(slot: Slot, staging: Path) -> Callable[[Sequence[Listing]], list]:
    """The batcher's score function: one bundle per batch; if the batch fails, listing by
    listing (as predict's score_chunk), so one bad listing costs one answer."""

    def score(listings: Sequence[Listing]) -> list:
        active, on = slot.active, slot.rules  # read once: the whole batch is theirs
        if active is None:
            return [RuntimeError("no bundle loaded")] * len(listings)
        p, items = active.predictor, [staged_item(x, staging) for x in listings]
        rules = on.rules if on is not None else None
        try:
            return [(active.name, d) for d in p.predict_batch(items, rules=rules)]
        except Exception:  # noqa: BLE001
            log.exception("a batch of %d failed; scoring one by one", len(listings))
        out: list[tuple[str, Decision] | Exception] = []
        for x, item in zip(listings, items, strict=True):
            try:
                out.append((active.name, p.predict_batch([item], rules=rules)[0]))
            except Exception as exc:  # noqa: BLE001
                log.error("scoring failed", extra={"listing": x.id, "error": str(exc)})
                out.append(exc)
        return out

    return score


class Watcher:
    """Polls REGISTRY/current every `poll_s` and switches the slot (see the module doc)."""

    def __init__(self, registry: Path, slot: Slot, load: Callable[[Path, str], Active],
                 poll_s: float = 1.0, on_change: Callable[[Slot, bool], None] | None = None):  # fmt: skip
        self.registry, self.slot, self.load, self.poll_s = registry, slot, load, poll_s
        self.on_change = on_change or (lambda slot, refused: None)
        self._refused_target: Path | str | None = None  # a bundle path, or a pointer's problem
        self.also: list[Callable[[], object]] = []  # run after each check (RulesWatcher)

    def target(self) -> Path | None:
        """The bundle `current` names (served_bundle's rule; RegistryError if it refuses), or
        None while nothing is promoted yet."""
        link = self.registry / CURRENT
        if not link.is_symlink() and not link.exists():
            return None
        return served_bundle(self.registry)

    def _refuse(self, key: Path | str, bundle: str | None, exc: Exception, seen_at: float) -> None:
        if key == self._refused_target:
            return  # refused already: not logged or counted again until the pointer moves
        self._refused_target = key
        active = self.slot.active
        self.slot.refused = {"bundle": bundle, "reason": one_line(exc), "at_utc": _iso(seen_at)}
        log.error("bundle refused: the old one keeps serving",
                  extra={"bundle": bundle, "error": str(exc),
                         "serving": active.name if active else None})  # fmt: skip
        self.on_change(self.slot, True)

    def check_once(self) -> bool:
        """Load the pointer's bundle if it is new; True if the slot switched. Blocking."""
        seen_at, active = time.time(), self.slot.active
        try:
            path = self.target()
        except (RegistryError, OSError) as exc:
            try:
                bundle = Path(os.readlink(self.registry / CURRENT)).name
            except OSError:
                bundle = None
            self._refuse(f"pointer: {exc}", bundle, exc, seen_at)
            return False
        if active and path == active.path and self._refused_target is not None:
            self._refused_target = self.slot.refused = None  # pointer back on what serves
        if path is None or (active and path == active.path) or path == self._refused_target:
            return False
        log.info("new bundle under current: loading beside the old one",
                 extra={"bundle": path.name, "serving": active.name if active else None})  # fmt: skip
        try:
            new = self.load(path, path.name)
        except Exception as exc:  # noqa: BLE001 (whatever fails, the old bundle keeps serving)
            self._refuse(path, path.name, exc, seen_at)
            return False
        self._refused_target = None
        self.slot.refused = None
        self.slot.switch(new, seen_at)
        log.info("switched", extra={"bundle": new.name, "previous": active.name if active else None,
                                    "lag_s": round(new.since - seen_at, 3)})  # fmt: skip
        self.on_change(self.slot, False)
        return True

    def poll(self) -> None:
        """check_once, then the other pointers' checks (the rules'). Blocking."""
        self.check_once()
        for check in self.also:
            check()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, self.poll)
            await asyncio.sleep(self.poll_s)
