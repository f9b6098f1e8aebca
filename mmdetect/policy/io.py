"""Reading and writing thresholds.json (an operating point) with errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdetect.common.outputs import atomic_write_text
from mmdetect.policy.config import PolicyError
from mmdetect.policy.decide import check_operating_point


def read_json_doc(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PolicyError(f"{path}: cannot read JSON: {exc}") from None


def read_operating_point(path: str | Path, taxonomy: Sequence[str]) -> dict[str, Any]:
    """A checked operating point for a model scoring `taxonomy` (PolicyError otherwise)."""
    doc = read_json_doc(path)
    check_operating_point(doc, taxonomy, str(path))
    return doc


def write_operating_point(path: str | Path, doc: Any) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a thresholds.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n")
    return path
