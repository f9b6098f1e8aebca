"""Rule conditions: compiled once at load, matched per listing after the model's normalisation.

Leaves: `keyword` (a string or a list, any of them; substring), `regex` (one pattern, searched),
both on the normalised title + description (`in: title | description | text`, default text);
`price` and `photos` ({min, max}, inclusive; a listing without a price matches no price range);
`listing_category` (a string or a list). Combinators: `all: [...]`, `any: [...]`, `not: {...}`.

Text: `rule_text` is the one function all rule text goes through, the listing's and the
keywords' alike, so a keyword written グッチ matches ｸﾞｯﾁ and GUCCI matches ｇｕｃｃｉ. Each text leaf
also matches the evasion-folded text (`folded_text`: the model's `data.normalize` steps as
tiny.yaml sets them, invisible characters, separators, look-alikes), with the keyword folded
the same way: グッチ matches グ・ッ・チ, グ\u200bッチ and 口レックス's ロレックス too. A leaf fires on
either text, so folding only adds matches (a pattern written for the plain text keeps its own).

Regular expressions use the `regex` module: every search has a timeout (MATCH_TIMEOUT_S; a
timed-out rule does not fire and is reported as such), and at load a pattern is refused if it
nests an unbounded quantifier inside a repeat (the classic catastrophic shape, `(a+)+`, `(\\w+\\s?)*`)
or if any search of PROBES takes longer than PROBE_TIMEOUT_S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import regex
from yaml.nodes import Node, ScalarNode

from mmdetect.data.textnorm import DEFAULT_NORMALIZE, fold_evasions, normalize_text
from mmdetect.data.tokenize import clean_text, nfkc
from mmdetect.policy.rules_yaml import MAX_DEPTH, RulesError, mapping, scalar, sequence, where

try:  # Python's own regex parser: the structure check reads its tree
    import re._parser as sre_parse  # 3.11+
except ImportError:  # pragma: no cover (3.10)
    import sre_parse  # type: ignore[no-redef]

MATCH_TIMEOUT_S = 0.05
PROBE_TIMEOUT_S = 0.2
PROBE_LENGTH = 4000
MAX_PATTERN_CHARS = 1000
MAX_KEYWORDS = 500
TEXT_FIELDS = ("text", "title", "description")
OPERATORS = ("all", "any", "not", "keyword", "regex", "price", "photos", "listing_category")


class RuleTimeout(Exception):
    """A regular expression ran past MATCH_TIMEOUT_S on a listing."""


def rule_text(text: str) -> str:
    """The normalisation every rule text goes through (listing fields and keywords): the
    model's (clean_text, then NFKC), then casefold, since rules match without case."""
    return nfkc(clean_text(text)).casefold()


def folded_text(text: str) -> str:
    """`rule_text` after the evasion folds (data/textnorm.py, DEFAULT_NORMALIZE: tiny.yaml's;
    kana off, it folds particles): what a second match reads."""
    return normalize_text(text, DEFAULT_NORMALIZE).casefold()


@dataclass(frozen=True)
class RuleInput:
    """What conditions read of a listing (built once per listing by `rule_input`); the
    `*_folded` texts are `folded_text`'s (the same string when no fold changed anything)."""

    text: str
    title: str
    description: str
    price: float | None
    category: str | None
    n_photos: int
    text_folded: str = ""
    title_folded: str = ""
    description_folded: str = ""


def rule_input(listing) -> RuleInput:
    """A Listing (data.records) as the conditions see it."""
    # rule_text and folded_text of each field, sharing its clean_text + NFKC form
    base = [nfkc(clean_text(t)) for t in (listing.title or "", listing.description or "")]
    title, desc = (b.casefold() for b in base)
    title_f, desc_f = (fold_evasions(b, DEFAULT_NORMALIZE).casefold() for b in base)
    return RuleInput(f"{title}\n{desc}", title, desc, listing.price, listing.category,
                     len(listing.images), f"{title_f}\n{desc_f}", title_f, desc_f)  # fmt: skip


Condition = Callable[[RuleInput], bool]


def compile_condition(node: Node, path: str, depth: int) -> Condition:
    """A condition node to a predicate (RulesError naming file:line for anything wrong)."""
    if depth > MAX_DEPTH:
        raise RulesError(f"{where(path, node)}: when: nested deeper than {MAX_DEPTH}")
    keys = mapping(node, path, "condition", {*OPERATORS, "in"})
    ops = [k for k in keys if k != "in"]
    if len(ops) != 1:
        raise RulesError(f"{where(path, node)}: condition: give exactly one of "
                         f"{', '.join(OPERATORS)} (got {', '.join(ops) or 'none'})")  # fmt: skip
    op, (_, value) = ops[0], keys[ops[0]]
    if "in" in keys and op not in ("keyword", "regex"):
        raise RulesError(f"{where(path, keys['in'][0])}: in: only with keyword or regex")
    if op in ("all", "any"):
        parts = [compile_condition(n, path, depth + 1) for n in sequence(value, path, op)]
        if not parts:
            raise RulesError(f"{where(path, value)}: {op}: an empty list")
        combine = all if op == "all" else any
        return lambda x: combine(p(x) for p in parts)
    if op == "not":
        inner = compile_condition(value, path, depth + 1)
        return lambda x: not inner(x)
    if op in ("keyword", "regex"):
        field = scalar(keys["in"][1], path, "in", (str,)) if "in" in keys else "text"
        if field not in TEXT_FIELDS:
            raise RulesError(f"{where(path, keys['in'][1])}: in: {field!r} is not one of "
                             f"{', '.join(TEXT_FIELDS)}")  # fmt: skip
        if op == "keyword":
            return _keywords(value, path, field)
        return _regex(scalar(value, path, "regex", (str,)), where(path, value), field)
    if op == "listing_category":
        names = _strings(value, path, op)
        return lambda x: x.category in names
    lo, hi = _range(value, path, op)
    if op == "price":
        return lambda x: x.price is not None and lo <= x.price <= hi
    return lambda x: lo <= x.n_photos <= hi


def _strings(node: Node, path: str, name: str) -> frozenset[str]:
    nodes = [node] if isinstance(node, ScalarNode) else sequence(node, path, name)
    values = [scalar(n, path, name, (str,)) for n in nodes]
    if not values or len(values) > MAX_KEYWORDS or not all(v.strip() for v in values):
        raise RulesError(f"{where(path, node)}: {name}: 1 to {MAX_KEYWORDS} non-empty strings")
    return frozenset(values)


def _keywords(node: Node, path: str, field: str) -> Condition:
    given = _strings(node, path, "keyword")
    words = tuple(sorted({rule_text(w).strip() for w in given}))
    folded = tuple(sorted({folded_text(w).strip() for w in given}))
    if "" in words or "" in folded:  # e.g. a control character or a space: it would match all
        raise RulesError(f"{where(path, node)}: keyword: empty once normalised (rule_text)")
    fold_field = f"{field}_folded"

    def match(x: RuleInput) -> bool:
        text, text_f = getattr(x, field), getattr(x, fold_field)
        return any(w in text for w in words) or any(w in text_f for w in folded)

    return match


def _range(node: Node, path: str, name: str) -> tuple[float, float]:
    keys = mapping(node, path, name, {"min", "max"})
    if not keys:
        raise RulesError(f"{where(path, node)}: {name}: give min, max or both")
    kinds = (int,) if name == "photos" else (int, float)
    floor = 0 if name == "photos" else float("-inf")
    lo = scalar(keys["min"][1], path, f"{name}.min", kinds) if "min" in keys else floor
    hi = scalar(keys["max"][1], path, f"{name}.max", kinds) if "max" in keys else float("inf")
    if lo > hi or (name == "photos" and lo < 0):
        raise RulesError(f"{where(path, node)}: {name}: min {lo} must be <= max {hi}"
                         + (" and >= 0" if name == "photos" else ""))  # fmt: skip
    return lo, hi


def _regex(pattern: str, at: str, field: str) -> Condition:
    compiled = check_pattern(pattern, at)

    def match(x: RuleInput) -> bool:
        text, text_f = getattr(x, field), getattr(x, f"{field}_folded")
        try:
            if compiled.search(text, timeout=MATCH_TIMEOUT_S) is not None:
                return True
            return text_f != text and compiled.search(text_f, timeout=MATCH_TIMEOUT_S) is not None
        except TimeoutError:
            raise RuleTimeout(f"{at}: regex timed out after {MATCH_TIMEOUT_S} s") from None

    return match


def check_pattern(pattern: str, at: str) -> regex.Pattern:
    """Compile a pattern, refusing catastrophic structure and patterns slow on PROBES."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise RulesError(f"{at}: regex: 1 to {MAX_PATTERN_CHARS} characters")
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE)
    except (regex.error, ValueError) as exc:
        raise RulesError(f"{at}: regex: does not compile: {exc}") from None
    if _nested_repeat(pattern):
        raise RulesError(
            f"{at}: regex: {pattern!r} nests an unbounded repeat inside another repeat: it can "
            "backtrack catastrophically (write it without the nesting, or make the inner "
            "repeat possessive, e.g. a++, or atomic, (?>...))"
        )
    for probe in probes(pattern):
        try:
            compiled.search(probe, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise RulesError(
                f"{at}: regex: {pattern!r} took over {PROBE_TIMEOUT_S} s on a "
                f"{len(probe)}-character probe ({probe[:12]!r}...): catastrophic backtracking"
            ) from None
    return compiled


def probes(pattern: str) -> list[str]:
    """Texts that make backtracking patterns slow: runs of one character (letters, digits,
    space, kana and each character of the pattern itself) ending in a character that fails."""
    chars = {"a", "1", " ", "ア", "x"} | {c for c in pattern if c.isalnum()}
    out = []
    for c in sorted(chars)[:40]:
        run = c * PROBE_LENGTH
        out += [run + "!", run + "\n"]
    return out


def _nested_repeat(pattern: str) -> bool:
    """Whether an unbounded repeat (of something non-empty) sits inside another repeat. Patterns
    Python's parser does not read (regex-module syntax) are left to the probes."""
    try:
        tree = sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 (regex syntax re does not know: the probes still run)
        return False
    return _walk(tree, False)


_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT}


def _walk(items, inside: bool) -> bool:
    for op, av in items:
        if op in _REPEATS:
            lo, hi, sub = av
            unbounded = hi == sre_parse.MAXREPEAT
            if unbounded and inside and _has_width(sub):
                return True
            found = _walk(sub, inside or hi > 1)
        elif op is getattr(sre_parse, "POSSESSIVE_REPEAT", None):
            found = _walk(av[2], False)  # never gives back: safe inside a repeat
        elif op is getattr(sre_parse, "ATOMIC_GROUP", None):
            found = _walk(av, False)
        elif op is sre_parse.SUBPATTERN:
            found = _walk(av[3], inside)
        elif op is sre_parse.BRANCH:
            found = any(_walk(s, inside) for s in av[1])
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            found = _walk(av[1], inside)
        else:
            found = False
        if found:
            return True
    return False


def _has_width(sub) -> bool:
    lo, hi = sub.getwidth()
    return hi > 0
