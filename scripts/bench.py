"""Benchmarks as side-by-side ratios: `python scripts/bench.py [--quick] [--only ...]`.

Thin entry point; the benchmarks live in mmdetect/bench/. Figures go to docs/BENCHMARKS.md
together with the exact command and the machine header this prints.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdetect.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
