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
    ├── ModelFileError     a model file is missing, truncated, corrupt, foreign or of a newer format
    └── ExecutorError      a job on a cluster's workers failed (a Spark executor died, its tasks ran out of retries)

Ctrl-C is not a mistake: a command it ends raises ``Interrupted``, a ``KeyboardInterrupt`` whose
message says what was kept; IPython shows it as that one line, and the CLI prints it and exits 130.
"""

from __future__ import annotations

from typing import List

__all__ = ["clip_message", "MAX_MESSAGE", "LMError", "ConfigError", "TrainingDiverged", "DataError", "ModelNotFoundError", "ModelFileError",
           "ExecutorError", "Interrupted"]


# A message quotes what the user gave (a name, a column, a condition, a path); whatever its size, the
# message stays short: a run of characters without a space longer than MAX_WORD is cut, and a message
# longer than MAX_MESSAGE keeps its start and its end (where the fix is said).
MAX_WORD = 200
MAX_MESSAGE = 1000


def clip_message(text: str) -> str:
    """``text`` with every over-long word cut ("'xxxx…' (100,002 characters)") and its middle left out
    when it is still longer than MAX_MESSAGE: an error quoting a 1 MB value stays one short line."""
    if len(text) <= MAX_WORD:
        return text
    import re

    def cut(m: "re.Match") -> str:
        word = m.group(0)
        return f"{word[:MAX_WORD // 2]}…({len(word):,} characters)"

    text = re.sub(r"\S{%d,}" % (MAX_WORD + 1), cut, text)
    if len(text) > MAX_MESSAGE:
        left = len(text) - (MAX_MESSAGE - 400) - 300
        text = f"{text[:MAX_MESSAGE - 400]} …({left:,} characters not shown)… {text[-300:]}"
    return text


class LMError(Exception):
    """Base class of every user-facing lm_magics error. Its message is kept short (``clip_message``)
    however long the values it quotes."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (clip_message(args[0]),)
        super().__init__(*args)


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


class ExecutorError(LMError, RuntimeError):
    """A job on a cluster's workers failed after its retries; nothing was written or bound."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a command; the message says what is unchanged or where the result went."""

    def _render_traceback_(self) -> List[str]:   # how IPython shows an exception: one line, no traceback
        return [f"KeyboardInterrupt: {self}"]
