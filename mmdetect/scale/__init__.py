"""Beyond one machine: shard writing (LitData) and Ray batch scoring (docs/scale.md), with the
`scale` extra. A leaf: imports bench, ops, serving and below; only cli imports it.
"""

from __future__ import annotations
