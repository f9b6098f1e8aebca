"""Beyond one machine: LitData shards for training, Ray Data for batch scoring (docs/scale.md).

Everything here needs the optional extra `pip install -e '.[scale]'` (litdata, ray[data]); the
core install never imports this package. `require` turns a missing engine into one clear line.
"""

from __future__ import annotations
