"""Reading a rules file's YAML nodes with their line numbers: the error type and the typed
node readers that the rules file (rules.py) and the conditions (rules_match.py) share.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mmdetect.policy.config import PolicyError

MAX_DEPTH = 16  # nesting of all/any/not


class RulesError(PolicyError):
    """A rules file that cannot be used: one line naming file:line and the field."""


def where(path: str, node: Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def scalar(node: Node, path: str, name: str, kinds: tuple[type, ...]) -> Any:
    """The value of a scalar node of one of `kinds` (bool is never an int here)."""
    if not isinstance(node, ScalarNode):
        raise RulesError(f"{where(path, node)}: {name}: expected a single value, got a "
                         f"{_kind(node)}")  # fmt: skip
    try:
        value = SafeConstructor().construct_object(node)
    except yaml.YAMLError as exc:
        raise RulesError(f"{where(path, node)}: {name}: {exc.problem or exc}") from None
    bad_bool = isinstance(value, bool) and bool not in kinds
    if not isinstance(value, kinds) or bad_bool:
        names = " or ".join(k.__name__ for k in kinds)
        raise RulesError(f"{where(path, node)}: {name}: expected {names}, got {value!r}")
    return value


def _plain(node: Node, path: str, name: str, tag: str) -> None:
    """A list or mapping with an explicit tag (!!python/object...) is refused, not ignored."""
    if node.tag != f"tag:yaml.org,2002:{tag}":
        raise RulesError(f"{where(path, node)}: {name}: tag {node.tag!r} is not allowed")


def mapping(node: Node, path: str, name: str, allowed: set[str]) -> dict[str, tuple[Node, Node]]:
    """{key: (key node, value node)} of a mapping node; duplicate and unknown keys refused."""
    if isinstance(node, MappingNode):
        _plain(node, path, name, "map")
    if not isinstance(node, MappingNode):
        raise RulesError(f"{where(path, node)}: {name}: expected a mapping, got a {_kind(node)}")
    out: dict[str, tuple[Node, Node]] = {}
    for k, v in node.value:
        key = scalar(k, path, f"{name} key", (str,))
        if key in out:
            raise RulesError(f"{where(path, k)}: {name}: duplicate key {key!r}")
        if key not in allowed:
            raise RulesError(f"{where(path, k)}: {name}: unknown key {key!r} "
                             f"(allowed: {', '.join(sorted(allowed))})")  # fmt: skip
        out[key] = (k, v)
    return out


def sequence(node: Node, path: str, name: str) -> list[Node]:
    if not isinstance(node, SequenceNode):
        raise RulesError(f"{where(path, node)}: {name}: expected a list, got a {_kind(node)}")
    _plain(node, path, name, "seq")
    return list(node.value)


def _kind(node: Node) -> str:
    return {ScalarNode: "value", SequenceNode: "list", MappingNode: "mapping"}[type(node)]
