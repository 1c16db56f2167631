"""``python -m lm_magics ...``: the same command line as ``lm-magics``."""

import sys

from .cli import main

sys.exit(main())
