"""The shard format's names, shared by the writer (mmdetect.scale.shard) and the reader
(mmdetect.data.streaming): docs/scale.md.
"""

from __future__ import annotations

FORMAT = "mmdetect-shards/1"


MANIFEST = "manifest.json"
