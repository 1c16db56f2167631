"""``python -m lm_magics ...``: the same command line as ``lm-magics``."""

import os
import sys

from .cli import main
from .engine.distributed import in_torchrun

code = main()
if in_torchrun():
    # A torchrun rank has done its work (rank 0 has written the model). Leave without the interpreter's
    # shutdown: tearing down gloo's threads there can abort the process ("terminate called without an
    # active exception"), which torchrun would report as a failed rank after a successful run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
sys.exit(code)
