"""`python -m mmdetect <verb>`: the same as the `mmdetect` console script."""

import sys

from mmdetect.cli import main

sys.exit(main())
