"""A bundle's source checkpoint, verified against the bundle's checksums and meta.json: what
DetectorModule warm-starts from when given a bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmdetect.training.checkpoint import CheckpointError

log = logging.getLogger(__name__)


def bundle_checkpoint(bundle: Path) -> Path:
    """The source checkpoint of a verified bundle, unchanged since export (else CheckpointError)."""
    from mmdetect.artifacts.bundle_format import (
        META_FILE,
        BundleError,
        read_json,
        sha256_file,
        verify_checksums,
    )

    try:
        verify_checksums(bundle)  # before reading anything in it
        source = read_json(bundle / META_FILE)["checkpoint"]
        ckpt, digest = Path(source["path"]), source["sha256"]
    except (BundleError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{bundle}: not a bundle with a source checkpoint: {exc}") from None
    if not ckpt.is_file():
        raise CheckpointError(f"{bundle}: its source checkpoint {ckpt} does not exist")
    if sha256_file(ckpt) != digest:
        raise CheckpointError(
            f"{bundle}: {ckpt} has changed since the bundle was exported "
            "(SHA256 differs from meta.json); warm-start from the checkpoint explicitly"
        )
    log.info("bundle %s: warm start from its checkpoint %s", bundle, ckpt)
    return ckpt
