"""``python -m lm_magics ...``: the same command line as ``lm-magics``."""

import os
import sys

try:   # a Ctrl-C while starting is one line and exit 130, as in the rest of the command
    from .cli import main
    from .engine.distributed import in_torchrun
except KeyboardInterrupt:
    sys.stderr.write("lm-magics: interrupted while starting; nothing was done\n")
    raise SystemExit(130) from None

code = main()
if in_torchrun():
    # A torchrun rank has done its work (rank 0 has written the model). Leave without the interpreter's
    # shutdown: tearing down gloo's threads there can abort the process ("terminate called without an
    # active exception"), which torchrun would report as a failed rank after a successful run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
sys.exit(code)
