"""Rules every front-end applies the same way: the names a user gives.

One function per rule, called in one line by each entry point (magics, chat commands, the CLI, the public
API through the registry), so that a new entry point gets the rule by calling it, and a test can cross
every entry point with every kind of input (tests/test_matrix.py).

A name a user gives (a model name, a result variable ``-o VAR``, a chat ``/export VAR`` or ``as NAME``)
is refused in one line when it is empty, a Python keyword, or a name the shell or Python itself needs
(``In``, ``Out``, ``get_ipython``, ``exit``, ``quit``, dunders); where it becomes a variable it must
also be an identifier and not hide a builtin (``print``, ``len``).
"""

from __future__ import annotations

import builtins
import keyword
from typing import Any

from .errors import MAX_MESSAGE, ConfigError, clip_message

__all__ = ["RESERVED_NAMES", "BUILTIN_NAMES", "check_name", "clip_text", "clip_message", "clip_rows",
           "more_note", "MAX_ECHO", "MAX_ROWS", "MAX_MESSAGE", "MAX_CHAT_ECHO"]

# Names IPython and Python rely on in a user's namespace: overwriting one breaks the session (``In`` and
# ``Out`` hold the history, ``get_ipython`` is how extensions find the shell, ``exit``/``quit`` end it).
RESERVED_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii",
                            "_ih", "_oh", "_dh"})
# A variable of these names would hide the builtin for the rest of the session (``print``, ``len``, ...).
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_"))

MAX_ECHO = 80      # characters of a user's value shown back in a message
MAX_ROWS = 50      # rows (models, groups, columns, scored rows, completions) a table shows; the rest are counted
MAX_CHAT_ECHO = 2000   # characters of a user's chat message shown back in the conversation


def clip_rows(items: Any, limit: int = MAX_ROWS) -> "tuple[list, int]":
    """(the first ``limit`` items, how many more there are): what a table shows of a list of any length."""
    items = list(items)
    return items[:limit], max(0, len(items) - limit)


def more_note(more: int, what: str = "") -> str:
    """'(12,345 more not shown)' ('' for none): the line a clipped table ends with."""
    return f"({more:,} more{' ' + what if what else ''} not shown)" if more > 0 else ""


def clip_text(value: Any, limit: int = MAX_ECHO) -> str:
    """repr(value), cut to about ``limit`` characters: a message that echoes an input stays one short line
    whatever its size."""
    text = value if isinstance(value, str) and value.startswith(("'", '"')) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_name(name: Any, what: str = "model name", *, variable: bool = False, example: str = "") -> str:
    """Return ``name`` if a user may give it as ``what``; else raise a one-line ConfigError saying why and
    what would do.

    ``variable=True`` for a name that becomes a variable (``-o VAR``, ``/export VAR``): it must also be an
    identifier. A model name may hold other characters ("reviews-2024") but not be empty, only spaces, a
    keyword or a reserved name (a model name is offered back as ``--name NAME`` and ``as NAME``).

    >>> check_name("shake")
    'shake'
    >>> check_name("class")                       # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: ...
    """
    eg = f", e.g. {example}" if example else ""
    if not isinstance(name, str):
        raise ConfigError(f"A {what} must be text, got {type(name).__name__}{eg}.")
    shown = clip_text(name)
    if not name.strip():
        raise ConfigError(f"A {what} cannot be empty; give one{eg}.")
    if name != name.strip() or any(ch in name for ch in "\n\r\t\0"):
        raise ConfigError(f"A {what} cannot hold spaces at its ends or line breaks, got {shown}{eg}.")
    if len(name) > 200:
        raise ConfigError(f"A {what} must be at most 200 characters, got {len(name):,}{eg}.")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ConfigError(f"{shown} is a Python keyword and cannot be a {what}; pick another name{eg}.")
    if name in RESERVED_NAMES or (name.startswith("__") and name.endswith("__")) or \
            (variable and name in BUILTIN_NAMES):
        raise ConfigError(f"{shown} is a name Python or IPython needs and cannot be a {what}; pick another "
                          f"name{eg}.")
    if variable and not name.isidentifier():
        raise ConfigError(f"A {what} must be a Python variable name (letters, digits, _; not starting with a "
                          f"digit), got {shown}{eg}.")
    return name
