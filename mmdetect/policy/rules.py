"""Customer-support rules beside the model: the rules file, validated with file:line errors.

A rules file (docs/rules.md) is YAML::

    version: 1
    rules:
      - id: rmt-gold                  # unique; [A-Za-z0-9_.-]
        owner: cs-games               # who answers for it
        category: game_account        # a class of the model's taxonomy
        action: hide                  # hide | review | allow (never auto-hide this category)
        expires: 2027-03-31           # optional: applies through that day (UTC)
        when: {all: [{keyword: [RMT, 代行]}, {price: {max: 3000}}]}

It is read from PyYAML's node tree (`yaml.compose`), not from constructed values, so every error
names the file and line of the offending node; aliases, duplicate keys, unknown keys, oversized
files and regular expressions that can backtrack catastrophically are refused at load
(policy/rules_match.py compiles the conditions). Files a user gives us are hostile: nothing here
constructs a Python object other than str, int, float, bool, date and lists/dicts of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from mmdetect.policy.rules_yaml import MAX_DEPTH, RulesError, mapping, scalar, sequence, where

FORMAT_VERSION = 1
ACTIONS = ("hide", "review", "allow")
MAX_FILE_BYTES = 1 << 20  # a rules file is edited by hand: a megabyte is far beyond any real one
MAX_RULES = 2000
MAX_YAML_DEPTH = 2 * MAX_DEPTH + 8  # lists and mappings: each all/any level takes two
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RULE_KEYS = {"id", "owner", "category", "action", "when", "expires", "note"}


@dataclass(frozen=True)
class Rule:
    """One validated rule; `match` is its compiled condition (rules_match.Condition)."""

    id: str
    owner: str
    category: str
    action: str
    match: Any
    expires: datetime | None
    where: str  # file:line of the rule, for later errors and reports
    note: str | None = None

    def active(self, at: datetime) -> bool:
        return self.expires is None or at < self.expires


@dataclass(frozen=True)
class RuleSet:
    """A loaded rules file: its rules in file order, its sha256 and load-time warnings."""

    rules: tuple[Rule, ...]
    source: str
    sha256: str
    warnings: tuple[str, ...] = field(default=())
    # what decision rows call it: <file stem>-<8 hex of sha256>, or its registry name
    name: str = ""

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rules)

    def active(self, at: datetime | None = None) -> tuple[Rule, ...]:
        at = at or datetime.now(timezone.utc)
        return tuple(r for r in self.rules if r.active(at))

    def check_taxonomy(self, taxonomy: Sequence[str]) -> None:
        """RulesError for a rule whose category the model does not score."""
        for r in self.rules:
            if r.category not in taxonomy:
                raise RulesError(
                    f"{r.where}: category: {r.category!r} is not a class of the model "
                    f"({', '.join(taxonomy)})"
                )


EMPTY = RuleSet((), "(no rules)", hashlib.sha256(b"").hexdigest(), name="none")


def _check_events(text: str, path: str) -> None:
    """Aliases let a few lines expand into millions of nodes (a "billion laughs" file), and
    deep nesting would exhaust the composer's recursion: both refused from the event stream."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                raise RulesError(f"{path}:{line}: YAML aliases (*name) are not allowed in rules")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise RulesError(f"{path}:{line}: nested deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise RulesError(f"{_yaml_at(exc, text, path)}: not valid YAML: {_why(exc)}") from None


def _yaml_at(exc: yaml.YAMLError, text: str, path: str) -> str:
    """file:line of a PyYAML error (a mark, or the reader's character position)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{path}:{mark.line + 1}"
    position = getattr(exc, "position", None)
    return f"{path}:{text[:position].count(chr(10)) + 1}" if position is not None else path


def _why(exc: yaml.YAMLError) -> str:
    """PyYAML's reason on one line."""
    why = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return " ".join(str(why).split())


def expiry(node: Node, path: str) -> datetime:
    """A date applies through that day (expires at the next 00:00 UTC); a datetime at that
    instant (naive: UTC)."""
    value = scalar(node, path, "expires", (date, datetime))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value + timedelta(days=1), time(), timezone.utc)


def parse_rule(node: Node, path: str, seen: dict[str, str]) -> Rule:
    from mmdetect.policy.rules_match import compile_condition

    keys = mapping(node, path, "rule", RULE_KEYS)
    for required in ("id", "owner", "category", "action", "when"):
        if required not in keys:
            raise RulesError(f"{where(path, node)}: rule: missing {required!r}")
    rule_id = scalar(keys["id"][1], path, "id", (str,))
    if not ID_PATTERN.fullmatch(rule_id):
        raise RulesError(f"{where(path, keys['id'][1])}: id: {rule_id!r} must be 1-64 of "
                         "A-Z a-z 0-9 _ . -")  # fmt: skip
    if rule_id in seen:
        raise RulesError(f"{where(path, keys['id'][1])}: id: {rule_id!r} already used at "
                         f"{seen[rule_id]}")  # fmt: skip
    at = where(path, node)
    seen[rule_id] = at
    text = {k: scalar(keys[k][1], path, k, (str,)).strip() for k in ("owner", "category")}
    for k, v in text.items():
        if not v:
            raise RulesError(f"{where(path, keys[k][1])}: {k}: must not be empty")
    action = scalar(keys["action"][1], path, "action", (str,))
    if action not in ACTIONS:
        raise RulesError(f"{where(path, keys['action'][1])}: action: {action!r} is not one of "
                         f"{', '.join(ACTIONS)}")  # fmt: skip
    expires = expiry(keys["expires"][1], path) if "expires" in keys else None
    note = scalar(keys["note"][1], path, "note", (str,)) if "note" in keys else None
    match = compile_condition(keys["when"][1], path, 0)
    return Rule(rule_id, text["owner"], text["category"], action, match, expires, at, note)


def parse_rules(text: str, path: str, taxonomy: Sequence[str] | None = None) -> RuleSet:
    """Validate a rules document; RulesError (file:line: field: why) at the first problem."""
    _check_events(text, path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:  # e.g. two documents in one file
        raise RulesError(
            f"{_yaml_at(exc, text, path)}: not one YAML document: {_why(exc)}"
        ) from None
    if root is None:
        raise RulesError(f"{path}: empty file (give `version: {FORMAT_VERSION}` and `rules: []`)")
    top = mapping(root, path, "rules file", {"version", "rules"})
    if "version" not in top:
        raise RulesError(f"{where(path, root)}: missing 'version' (this mmdetect reads "
                         f"version {FORMAT_VERSION})")  # fmt: skip
    version = scalar(top["version"][1], path, "version", (int,))
    if version != FORMAT_VERSION:
        raise RulesError(f"{where(path, top['version'][1])}: version {version}: this mmdetect "
                         f"reads version {FORMAT_VERSION}")  # fmt: skip
    if "rules" not in top:
        raise RulesError(f"{where(path, root)}: missing 'rules' (a list; [] for none)")
    nodes = sequence(top["rules"][1], path, "rules")
    if len(nodes) > MAX_RULES:
        raise RulesError(f"{where(path, top['rules'][1])}: {len(nodes)} rules, more than "
                         f"{MAX_RULES}")  # fmt: skip
    seen: dict[str, str] = {}
    rules = tuple(parse_rule(n, path, seen) for n in nodes)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    now = datetime.now(timezone.utc)
    warnings = tuple(f"{r.where}: rule {r.id} expired at {r.expires.isoformat()}: it never fires"
                     for r in rules if not r.active(now))  # fmt: skip
    out = RuleSet(rules, path, digest, warnings, f"{Path(path).stem}-{digest[:8]}")
    if taxonomy is not None:
        out.check_taxonomy(taxonomy)
    return out


def load_rules(path: str | Path, taxonomy: Sequence[str] | None = None) -> RuleSet:
    """Read and validate a rules file (RulesError: one line naming file:line and field)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RulesError(f"{path}: not a regular file")
        if size > MAX_FILE_BYTES:
            raise RulesError(f"{path}: {size} bytes, over the limit of {MAX_FILE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RulesError(f"{path}:{line}: not UTF-8 text") from None
    return parse_rules(text.removeprefix("\ufeff"), str(path), taxonomy)
