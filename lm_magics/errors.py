"""Errors raised by lm_magics.

Every error a user can cause is an ``LMError``; its message is one line that says what went wrong and
what to do next. The magics turn exactly these into ``UsageError`` (no traceback); anything else is a bug
and keeps its full traceback.

::

    LMError
    ├── ConfigError        an option has a bad value (negative size, NaN learning rate, unknown name)
    │   └── TrainingDiverged   the loss became NaN/inf (the learning rate is too high for this data)
    ├── DataError          the text to train on or score is unusable (empty, missing column, no file)
    ├── ModelNotFoundError no model of that name in the session
    └── ModelFileError     a model file is missing, truncated, corrupt, foreign or of a newer format

Ctrl-C is not a mistake: a command it ends raises ``Interrupted``, a ``KeyboardInterrupt`` whose
message says what was kept; IPython shows it as that one line, and the CLI prints it and exits 130.
"""

from __future__ import annotations

from typing import List

__all__ = ["LMError", "ConfigError", "TrainingDiverged", "DataError", "ModelNotFoundError", "ModelFileError",
           "Interrupted"]


class LMError(Exception):
    """Base class of every user-facing lm_magics error."""


class ConfigError(LMError, ValueError):
    """An option has a value that cannot work."""


class TrainingDiverged(ConfigError, FloatingPointError):
    """The run diverged (its loss or weights stopped being finite numbers, or it ended far worse than
    guessing); a smaller lr fixes it. ``model``: the useless model, for inspection (None when the loop
    stopped at a NaN loss)."""

    model = None


class DataError(LMError, ValueError):
    """The input text cannot be used as given."""


class ModelNotFoundError(LMError, KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelFileError(LMError, OSError):
    """A model file cannot be read or written."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a command; the message says what is unchanged or where the result went."""

    def _render_traceback_(self) -> List[str]:   # how IPython shows an exception: one line, no traceback
        return [f"KeyboardInterrupt: {self}"]
