"""Hostile JSON Lines, read one line at a time: bounded length, UTF-8 checked per line, BOM dropped.

Every JSONL the project reads (listings, reviews, predictions) goes through `iter_jsonl`, so a bad
byte, an endless line or a BOM costs one counted line and never the rest of the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# A listing row is about 1 KB; a line over 1 MiB is not a listing, and reading it whole could
# exhaust memory. Its bytes are skipped in 1 MiB pieces and the line is counted.
MAX_LINE_BYTES = 1 << 20
BOM = "\ufeff"
SURROGATE = re.compile("[\ud800-\udfff]")
# Python refuses to convert longer integers (sys.get_int_max_str_digits); a number that long is
# no field's value: it is kept as a LongNumber and refused with its field by check_decoded.
MAX_INT_DIGITS = 4300
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class RowProblem(Exception):
    """One unusable row: `reason` is the counted problem, `field` the JSON field ("-" = row)."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field = reason, field


class LongNumber:
    """An integer literal over MAX_INT_DIGITS digits, kept unconverted (only its length)."""

    def __init__(self, literal: str):
        self.digits = len(literal.lstrip("-"))

    def __repr__(self) -> str:
        return f"<{self.digits}-digit integer>"


class DuplicateKeys(dict):
    """A JSON object that named some key more than once (the last value is kept, as json does)."""

    duplicates: tuple[str, ...] = ()


def loads(text: str) -> tuple[Any, bool]:
    """(value, suspect): json.loads that keeps what a row may not hold for check_decoded to
    refuse by field: duplicated keys (DuplicateKeys) and integers too long to convert
    (LongNumber); `suspect` says whether there is any (else the walk can be skipped). The
    snapshot reader (decode_line) and the HTTP service both parse with this, so they agree."""
    found: list[bool] = []

    def obj(pairs: list[tuple[str, Any]]) -> dict:
        d = dict(pairs)
        if len(d) == len(pairs):
            return d
        seen: set[str] = set()
        d = DuplicateKeys(d)
        d.duplicates = tuple(dict.fromkeys(k for k, _ in pairs if k in seen or seen.add(k)))
        found.append(True)
        return d

    def num(literal: str) -> int | LongNumber:
        if len(literal) <= MAX_INT_DIGITS:
            return int(literal)
        found.append(True)
        return LongNumber(literal)

    return json.loads(text, object_pairs_hook=obj, parse_int=num), bool(found)


def check_decoded(value: Any) -> None:
    """RowProblem naming the field of the first duplicated key (`duplicate_key`) or over-long
    integer (`number_too_long`) in a value from `loads`. Iterative, like find_surrogate."""
    stack: list[tuple[str, Any]] = [("-", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, LongNumber):
            message = f"{where}: {v.digits}-digit integer: over {MAX_INT_DIGITS} digits"
            raise RowProblem("number_too_long", where, message)
        if isinstance(v, dict):
            for key in getattr(v, "duplicates", ()):
                name = key if where == "-" else f"{where}.{key}"
                shown = name.encode("utf-8", "backslashreplace").decode("utf-8")[:120]
                raise RowProblem("duplicate_key", shown, f"key {shown!r} appears more than once")
            stack.extend((k if where == "-" else f"{where}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))


def iter_lines(path: Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw bytes) per non-blank line; None in place of a line over `max_bytes`."""
    with Path(path).open("rb") as fh:
        yield from iter_file_lines(fh, max_bytes)


def iter_file_lines(
    fh: IO[bytes], max_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """`iter_lines` on an open binary file (a reader that also needs `fh.tell()`): the one
    line limit of every JSONL reader, so what `check` skips no command scores."""
    lineno = 0
    while raw := fh.readline(max_bytes + 1):
        lineno += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest without keeping it
                raw = fh.readline(1 << 20)
            yield lineno, None
        elif raw.strip():
            yield lineno, raw


def decode_line(raw: bytes | None) -> Any:
    """One raw line to its JSON value; RowProblem `line_too_long`, `invalid_utf8`, `invalid_json`,
    `duplicate_key` and `number_too_long` (check_decoded, with the field).

    A BOM at the start of a line is dropped (the first line of a file saved by some editors, or
    of files joined with cat). Blank after that: returns `Ellipsis` (nothing to read).
    """
    if raw is None:
        raise RowProblem("line_too_long", "-", f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 4]
        raise RowProblem("invalid_utf8", "-", f"not UTF-8: byte {exc.start}: {bad!r}") from None
    text = text.removeprefix(BOM)
    if not text.strip():
        return ...
    try:
        value, suspect = loads(text)
    except RecursionError:
        raise RowProblem("invalid_json", "-", "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError
        raise RowProblem("invalid_json", "-", f"invalid JSON: {exc}") from None
    if suspect:
        check_decoded(value)
    return value


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any, RowProblem | None]]:
    """Yield (line number, decoded value or None, problem or None); blank lines are skipped."""
    for lineno, raw in iter_lines(path):
        try:
            value = decode_line(raw)
        except RowProblem as exc:
            yield lineno, None, exc
            continue
        if value is not ...:
            yield lineno, value, None


def find_surrogate(value: Any) -> str | None:
    """The field path of the first string (key or value) holding a lone surrogate, else None.

    JSON's "\\ud800" decodes to one; UTF-8 cannot encode it, so MeCab and every writer would fail.
    Iterative: a row nested a thousand deep must not overflow the stack.
    """
    stack: list[tuple[str, Any]] = [("-", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if SURROGATE.search(v):
                return where
        elif isinstance(v, dict):
            for key, x in v.items():
                name = key if where == "-" else f"{where}.{key}"
                if SURROGATE.search(key):
                    return name.encode("utf-8", "backslashreplace").decode("utf-8")
                stack.append((name, x))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    return None


def check_text(row: Any) -> None:
    """RowProblem `bad_text` for a row holding a lone surrogate anywhere."""
    where = find_surrogate(row)
    if where is not None:
        raise RowProblem("bad_text", where, "lone surrogate (\\ud800-\\udfff): not encodable text")
