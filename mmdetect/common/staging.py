"""Temporaries beside an output that is renamed into place: who owns them, and cleaning up.

A writer creates `.<out name>.tmp-XXXX` beside `out` (tempfile.mkdtemp), puts OWNER_FILE in it,
writes, removes OWNER_FILE and renames the directory to `out`. A run that is killed leaves the
temporary behind; the next run for the same `out` removes it when its owner is gone.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

TMP_INFIX = ".tmp-"  # temporaries are `.<out name>.tmp-XXXX` beside the output
OWNER_FILE = ".owner.json"  # pid and host of the process writing a temporary


def owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine runs with this pid (unsure: assume it does, so its
    temporaries are never deleted under it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or a value we cannot check: assume alive
    return True


def clean_stale_temporaries(out: Path) -> list[str]:
    """Remove the temporaries of writes to `out` that were killed; report the others.

    A temporary is removed only if its owner file names a process on this host that no longer
    runs; one without an owner file, or of a live process, or of another host is left and
    reported.
    """
    notes = []
    for tmp in sorted(out.parent.glob(f".{glob.escape(out.name)}{TMP_INFIX}*")):
        try:
            if tmp.is_symlink() or not tmp.is_dir():
                raise ValueError("not a directory")
            info = json.loads((tmp / OWNER_FILE).read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), str(info["host"])
            if pid <= 0:  # os.kill(0 or -1, 0) would ask about whole process groups
                raise ValueError(f"bad pid {pid}")
        except (OSError, ValueError, TypeError, KeyError):
            notes.append(f"{tmp}: left in place (not ours, or from an older version: no owner)")
            continue
        if host == socket.gethostname() and not pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            notes.append(f"{tmp}: removed (left by process {pid}, which no longer runs)")
        else:
            notes.append(f"{tmp}: left in place (process {pid} on {host} may be running)")
    return notes
