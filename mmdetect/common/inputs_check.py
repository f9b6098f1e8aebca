"""The one check every file argument goes through before it is opened.

A FIFO blocks `open`, `/dev/zero` never ends, and a config file of gigabytes is read whole by
YAML and JSON parsers: `check_input_file` refuses anything but a regular file (symlinks
followed) with one line, and `read_config_text` adds a size cap for the small documents
(YAML configs, policies, thresholds.json) that are parsed in one piece. JSONL inputs are read
line by line under their own limit (mmdetect/data/jsonl.py `MAX_LINE_BYTES`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# A config, policy or operating point is a few KB; 4 MiB leaves room for a long isotonic
# calibration table and still stops a hostile file before a parser holds it.
MAX_CONFIG_BYTES = 4 << 20


class InputFileError(ValueError):
    """A file argument that cannot be read as a file; one line naming it."""


def check_input_file(path: str | Path, what: str = "", max_bytes: int | None = None) -> Path:
    """`path` if it is a regular file (after symlinks) of at most `max_bytes`; InputFileError
    ("no such file", "not a regular file", "is a directory", "over N bytes") otherwise.
    Only `stat` is called: a FIFO or a device is never opened."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{label}: no such file") from None
    except OSError as exc:  # a loop of links, a name too long, permissions on a parent
        raise InputFileError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{label}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{label}: not a regular file (a FIFO, a device or a socket)")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputFileError(f"{label}: over {max_bytes} bytes ({st.st_size}): not a config file")
    return path


def read_config_text(path: str | Path, what: str = "") -> str:
    """The UTF-8 text of a small document given on the command line (regular file, size-capped:
    at most MAX_CONFIG_BYTES are read even if the file grows meanwhile)."""
    path = check_input_file(path, what, MAX_CONFIG_BYTES)
    label = f"{what} {path}" if what else str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise InputFileError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputFileError(f"{label}: over {MAX_CONFIG_BYTES} bytes: not a config file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{label}: not UTF-8 (byte {exc.start})") from None


def check_input_files(*items: tuple[str, str | Path | None], config: bool = False) -> None:
    """check_input_file on each (flag, path) given (None: not given); `config` adds the cap."""
    for what, path in items:
        if path is not None:
            check_input_file(path, what, MAX_CONFIG_BYTES if config else None)
