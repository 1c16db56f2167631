"""lm_magics: train a small, fast word-level LSTM language model on your own text, in a notebook.

    import lm_magics as lm
    model = lm.train(text, seed=0)
    model.next_words("the cat", k=5)

In IPython / Jupyter: ``%load_ext lm_magics``, then ``%%lm_train``, ``%lm_complete``, ... (``%lm_train?``).
"""

import os as _os
import sys as _sys


def _run_as_command() -> bool:
    """True when this import is the start of the ``lm-magics`` / ``python -m lm_magics`` command."""
    argv = list(getattr(_sys, "orig_argv", None) or [])
    as_module = any(a == "-m" and b == "lm_magics" for a, b in zip(argv, argv[1:]))
    return as_module or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "lm-magics"


try:   # importing torch takes seconds: a Ctrl-C then, in the command line, is one line and exit 130
    from .analysis import compare_groups, explain, score_frame
    from .api import LanguageModel, load, train
    from .config import GenerateConfig, TrainConfig
    from .engine.data import files
    from .engine.training import EpochInfo, StepInfo, StopTraining, TrainReport
    from .errors import ConfigError, DataError, LMError, ModelFileError, ModelNotFoundError, TrainingDiverged
except KeyboardInterrupt:
    if not _run_as_command():
        raise
    _sys.stderr.write("lm-magics: interrupted while starting; nothing was done\n")
    raise SystemExit(130) from None

__version__ = "0.1.0"

__all__ = [
    "train", "load", "files", "LanguageModel",
    "TrainConfig", "GenerateConfig", "TrainReport", "StepInfo", "EpochInfo", "StopTraining",
    "LMError", "ConfigError", "TrainingDiverged", "DataError", "ModelFileError", "ModelNotFoundError",
    "load_ipython_extension", "unload_ipython_extension",
    "CompletionPanel", "ChatAssistant", "score_frame", "explain", "compare_groups",
    "__version__",
]

_LAZY = {"CompletionPanel": "lm_magics.widgets.panel", "ChatAssistant": "lm_magics.widgets.chat"}


def __getattr__(name: str):
    # The widgets need ipywidgets: import them on first use, so
    # `import lm_magics` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lm_magics' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext lm_magics``: register the magics (models already in the session are kept)."""
    from .magics import load_ipython_extension as _load

    _load(_shell(ipython))


def unload_ipython_extension(ipython) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(_shell(ipython))


def _shell(ipython):
    if not hasattr(ipython, "register_magics"):
        raise ConfigError(f"lm_magics' extension hooks take an IPython shell, got {type(ipython).__name__}; "
                          f"run `%load_ext lm_magics` in IPython or Jupyter.")
    return ipython
