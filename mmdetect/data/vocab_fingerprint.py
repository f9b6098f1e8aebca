"""The vocabulary fingerprint that ties a tokenizer to the embeddings trained on it (issue #27).

Sizes and special ids say nothing about which row a token reads: a shuffled vocabulary of the
same size, or another tokenizer that happens to be smaller, feeds every token through the wrong
embedding without any error. The fingerprint is the SHA256 of the canonical token -> id map
(JSON, keys sorted, UTF-8, no spaces), recorded with its size in checkpoints (key `vocab`) and
bundles (preprocess.json `vocab_sha256` / `vocab_size`) and compared wherever a tokenizer meets
weights: fit (the encoder's own tokenizer files), warm start, checkpoint loading, bundle loading.
Files written before it existed carry none: the check is skipped, and said so once per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "vocab"  # {"sha256": ..., "size": ...}
BUNDLE_SHA, BUNDLE_SIZE = "vocab_sha256", "vocab_size"
_WARNED: set[str] = set()


class VocabMismatchError(ValueError):
    """A tokenizer whose token -> id map is not the one the weights were trained with."""


def vocab_map(tokenizer) -> dict[str, int]:
    """Token -> id, added tokens included (what `tokenizer.convert_tokens_to_ids` answers)."""
    return {str(t): int(i) for t, i in tokenizer.get_vocab().items()}


def fingerprint(vocab: Mapping[str, int]) -> str:
    """SHA256 hex of the canonical JSON of a token -> id map."""
    text = json.dumps(dict(vocab), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe(tokenizer) -> dict[str, Any]:
    """{"sha256", "size"} of a tokenizer: what checkpoints record."""
    vocab = vocab_map(tokenizer)
    return {"sha256": fingerprint(vocab), "size": len(vocab)}


def skipped_once(where: str, what: str) -> None:
    """One warning per file that predates fingerprints."""
    if where not in _WARNED:
        _WARNED.add(where)
        log.warning("%s has no vocabulary fingerprint (%s): vocabulary check skipped", where, what)


def compare(recorded: Any, actual: Mapping[str, Any], where: str, tokenizer_name: str) -> bool:
    """VocabMismatchError unless `recorded` ({"sha256", "size"}) is `actual`; False (after
    one warning) when nothing is recorded, True when checked."""
    if recorded is None:
        skipped_once(where, "written before fingerprints")
        return False
    if not isinstance(recorded, Mapping) or not isinstance(recorded.get("sha256"), str):
        raise VocabMismatchError(f"{where}: bad vocabulary fingerprint {recorded!r}")
    if recorded["sha256"] != actual["sha256"]:
        raise VocabMismatchError(
            f"{where}: tokenizer {tokenizer_name} ({actual['size']} tokens, vocab sha256 "
            f"{actual['sha256'][:12]}) is not the vocabulary its weights were trained with "
            f"({recorded.get('size')} tokens, sha256 {recorded['sha256'][:12]}): every token "
            "would read another token's embedding"
        )
    return True


def check_bundle_vocab(tokenizer, preprocess: Mapping[str, Any], where: str, name: str) -> bool:
    """compare() for a bundle's tokenizer against preprocess.json's fingerprint."""
    if BUNDLE_SHA not in preprocess:
        skipped_once(where, f"no {BUNDLE_SHA}: a bundle exported before them")
        return False
    recorded = {"sha256": preprocess[BUNDLE_SHA], "size": preprocess.get(BUNDLE_SIZE)}
    return compare(recorded, describe(tokenizer), where, name)
