"""lm_magics: train a small, fast word-level LSTM language model on your own text, in a notebook.

    import lm_magics as lm
    model = lm.train(text, seed=0)
    model.next_words("the cat", k=5)

In IPython / Jupyter: ``%load_ext lm_magics``, then ``%%lm_train``, ``%lm_complete``, ... (``%lm_train?``).
"""

from .analysis import compare_groups, explain, score_frame
from .api import LanguageModel, load, train
from .config import GenerateConfig, TrainConfig
from .engine.data import files
from .engine.training import EpochInfo, StepInfo, StopTraining, TrainReport
from .errors import ConfigError, DataError, LMError, ModelFileError, ModelNotFoundError, TrainingDiverged

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
