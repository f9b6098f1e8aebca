"""Checks on a tokenizer or encoder directory before transformers reads it (issue #27).

A directory a user hands us (a bundle's tokenizer/, a checkpoint's `text.pretrained`) is a
stranger's file. Two of its settings make transformers run or read things outside it:
- `auto_map` in tokenizer_config.json / config.json names Python modules to import; with
  `trust_remote_code` unset transformers *asks* on a terminal and runs them on "y". We always
  pass `trust_remote_code=False`, and refuse the file first so the answer is one clear line;
- MeCab / Sudachi options in tokenizer_config.json become the tagger's command line
  (`-r FILE`, `-d DIR`, `-u FILE` read arbitrary files): a directory may only pick one of the
  named dictionary packages, never options or paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Files transformers reads for AutoTokenizer (both) and AutoConfig / AutoModel (config.json).
TOKENIZER_FILES = ("tokenizer_config.json", "config.json")
MODEL_FILES = ("config.json",)
CODE_KEYS = ("auto_map",)
# MecabTokenizer(mecab_dic=...): the pip-installed dictionary packages it knows by name.
MECAB_DICTS = (None, "unidic_lite", "unidic", "ipadic")
MECAB_HARMLESS = {"do_lower_case", "never_split", "normalize_text"}
SUDACHI_HARMLESS = {"do_lower_case", "never_split", "normalize_text", "trim_whitespace",
                    "sudachi_split_mode", "sudachi_dict_type"}  # fmt: skip


class UnsafePretrainedError(ValueError):
    """A tokenizer / encoder directory whose settings would run code or read outside files."""


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsafePretrainedError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UnsafePretrainedError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _refuse_code(path: Path, doc: dict[str, Any]) -> None:
    for key in CODE_KEYS:
        if key in doc:
            raise UnsafePretrainedError(
                f"{path}: key {key!r} names custom code to run; mmdetect never runs code from a "
                "tokenizer or model directory (remove the key, or use a built-in architecture)"
            )


def _refuse_tagger_options(path: Path, doc: dict[str, Any]) -> None:
    mecab = doc.get("mecab_kwargs")
    if mecab is not None:
        if not isinstance(mecab, dict):
            raise UnsafePretrainedError(f"{path}: key 'mecab_kwargs' must be an object or null")
        extra = sorted(set(mecab) - MECAB_HARMLESS - {"mecab_dic"})
        if extra:
            raise UnsafePretrainedError(
                f"{path}: key 'mecab_kwargs.{extra[0]}': a tokenizer directory may not choose "
                "MeCab options (they can read arbitrary files)"
            )
        if mecab.get("mecab_dic") not in MECAB_DICTS:
            raise UnsafePretrainedError(
                f"{path}: key 'mecab_kwargs.mecab_dic' is {mecab.get('mecab_dic')!r}: must be "
                f"one of {[d for d in MECAB_DICTS if d]} (a dictionary package, not a path)"
            )
    sudachi = doc.get("sudachi_kwargs")
    if sudachi is not None:
        extra = sorted(set(sudachi) - SUDACHI_HARMLESS) if isinstance(sudachi, dict) else ["?"]
        if extra:
            raise UnsafePretrainedError(
                f"{path}: key 'sudachi_kwargs.{extra[0]}': a tokenizer directory may not choose "
                "Sudachi paths or options"
            )


def check_tokenizer_dir(path: str | Path) -> None:
    """UnsafePretrainedError naming file and key; a hub name (not a directory) passes."""
    root = Path(path)
    if not root.is_dir():
        return
    for name in TOKENIZER_FILES:
        doc = _read(root / name)
        if doc is not None:
            _refuse_code(root / name, doc)
            _refuse_tagger_options(root / name, doc)


def check_model_dir(path: str | Path) -> None:
    """UnsafePretrainedError when an encoder directory's config.json carries `auto_map`."""
    root = Path(path)
    if not root.is_dir():
        return
    for name in MODEL_FILES:
        doc = _read(root / name)
        if doc is not None:
            _refuse_code(root / name, doc)
