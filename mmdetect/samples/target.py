"""Where `mmdetect samples` may write: the paths it replaces must be its own earlier output.

`generate_samples` replaces train/, drift/, incoming/, traffic/, traffic_unlabeled/,
reviews.jsonl and README.md under `--out`, and leaves everything else. Before it runs, each of
those that exists must be what an earlier `samples` run wrote (a split snapshot named after the
split, a regular file), and `--out` may not be a bundle, a registry or a snapshot, nor inside one.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmdetect.common.outputs import OutputError, check_generated_dir

SPLITS = ("train", "drift", "incoming", "traffic", "traffic_unlabeled")
FILES = ("reviews.jsonl", "README.md")


def _is_sample_split(path: Path, split: str) -> bool:
    """A snapshot an earlier `samples` run wrote: snapshot.json named `<split>-<month>...`."""
    try:
        doc = json.loads((path / "snapshot.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    name = doc.get("name") if isinstance(doc, dict) else None
    return isinstance(name, str) and name.startswith(f"{split}-") and not path.is_symlink()


def check_samples_out(out: Path) -> Path:
    """OutputError (one line) unless `samples --out out` destroys nothing but its own output."""
    check_generated_dir(out)
    for split in SPLITS:
        target = out / split
        if (target.exists() or target.is_symlink()) and not _is_sample_split(target, split):
            raise OutputError(
                f"{target} exists and is not a sample split an earlier `mmdetect samples` "
                "wrote: it would be replaced; choose another --out"
            )
    for name in FILES:
        target = out / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise OutputError(f"{target} is not a regular file: it would be replaced")
    return out
