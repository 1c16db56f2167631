"""What a chat message means: slash commands, column references, ``where``/``with``/``top``/``as`` words,
and hints for plain messages that read like a request for a command.

Columns are named as in Python: ``reviews.text`` or ``reviews["review text"]`` (``frames.parse_column_ref``).
Everything here is text in, plain values out (or a one-line ``LMError`` that says what to write); nothing
imports ipywidgets or IPython.

    >>> split_command("/unusual reviews.text top 3")
    ('unusual', 'reviews.text top 3')
"""

from __future__ import annotations

import glob
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..engine.data import files
from ..errors import ConfigError, DataError
from ..rules import check_name
from ..frames import ColumnRef, lookup, parse_column_ref, ref_text, resolve_column, select_rows, spaced_column

__all__ = ["HELP_ROWS", "HELP", "COMMANDS", "USAGE", "split_command", "quote", "number", "positive_int",
           "column_and_options", "LearnRequest", "learn_request", "hint"]

# (command, what it does, an example). COLUMN is reviews.text or reviews["review text"].
HELP_ROWS = [
    ("/help", "this list", "/help"),
    ("/data", "the DataFrames, Series and text lists of the notebook: text columns (rows, missing, mean "
     "words), then label and time columns", "/data"),
    ("/unusual COLUMN [with MODEL] [top N]", "score every row (adds COL_ppl, COL_bits, COL_unusual) and show "
     "the most and least unusual, with why", "/unusual reviews.text top 3"),
    ("/explain TEXT", "the surprisal of each word and what the model expected instead",
     "/explain the cat sat on the river"),
    ("/compare COLUMN by GROUP [with MODEL] [min N]", "which groups are most unusual, and their words",
     "/compare reviews.text by product"),
    ("/learn COLUMN [where EXPR] [as NAME]", "train a model in the background (Stop in the chat)",
     "/learn reviews.text where stars > 3 as happy"),
    ("/learn FILES... [as NAME]", "train on text files (glob patterns allowed)", "/learn notes/*.txt as notes"),
    ("/stop", "stop the trainings (the best model so far is kept) and long commands started here", "/stop"),
    ("/models", "the models of this session", "/models"),
    ("/use NAME", "answer with another model", "/use happy"),
    ("/next TEXT", "the most likely next words after TEXT", "/next the cat"),
    ("/score TEXT", "perplexity of TEXT and its most surprising words", "/score the cat sat"),
    ("/temp T", "sampling temperature (0 = always the most likely word)", "/temp 0.5"),
    ("/k K", "how many next-word alternatives to show (1 to 50)", "/k 5"),
    ("/len N", "words per answer", "/len 30"),
    ("/clear", "forget the conversation", "/clear"),
    ("/export VAR", "the conversation as a DataFrame (or list of dicts) in variable VAR", "/export convo"),
]
COMMANDS = tuple(dict.fromkeys(c.split()[0][1:] for c, _, _ in HELP_ROWS))
PLAIN = "Any other message: the model continues your text."
_W = max(len(c) for c, _, _ in HELP_ROWS) + 2
HELP = "\n".join(f"{command:<{_W}}{what} (e.g. {example})" for command, what, example in HELP_ROWS) + \
    "\n" + PLAIN

# What to write, for the messages of a command given the wrong way.
USAGE = {
    "unusual": "/unusual COLUMN [with MODEL] [top N], e.g. /unusual reviews.text top 3",
    "compare": ("/compare COLUMN by GROUP [with MODEL] [min N], e.g. /compare reviews.text by product "
                "(a group name with spaces in quotes: by \"product line\")"),
    "learn": "/learn COLUMN [where EXPR] [as NAME] or /learn FILES... [as NAME]",
}

# A plain message that reads like a request for a command gets a one-line hint: (words, command).
_WANTS = [
    (re.compile(r"\b(unusual|surprising|odd|weird|strange|outliers?|anomal\w*|rare)\b"), "unusual"),
    (re.compile(r"\b(compare|comparing|differ\w*|versus|vs)\b"), "compare"),
    (re.compile(r"\b(train|learn|fit)\b"), "learn"),
    (re.compile(r"\b(explain|why)\b"), "explain"),
    (re.compile(r"\b(data\s?frames?|columns?|datasets?|variables|what data)\b"), "data"),
]
# A reference to a notebook variable inside running text: name.column or name["column"].
_REF_IN_TEXT = re.compile(r"""\b([A-Za-z_]\w*)(\[\s*(["']).*?\3\s*\]|\.[^\s,;:!?]*[^\s,;:!?.])""")


def split_command(line: str) -> Tuple[str, str]:
    """``/Name rest`` -> (``name`` lowercased, ``rest`` stripped); a ConfigError for an unknown command."""
    name, _, arg = line.strip()[1:].partition(" ")
    if name.lower() not in COMMANDS:
        raise ConfigError(f"Unknown command /{name}; type /help for the list.")
    return name.lower(), arg.strip()


def quote(value: str) -> str:
    """A magic's argument as a person writes it: as is, or in double quotes ("label == 'ham'") when it has
    spaces or quotes; shlex's '"'"' dance only for a value that has both kinds of quote."""
    if re.fullmatch(r"[\w@%+=:,./*?-]+", value):
        return value
    if '"' not in value and not re.search(r"[$`\\!]", value):
        return f'"{value}"'
    return shlex.quote(value)


def number(arg: str, usage: str, typ: type) -> Any:
    """One number (int or float) from a command's argument; a ConfigError that names the command if not."""
    try:
        parts = shlex.split(arg)
        if len(parts) != 1:
            raise ValueError
        v = typ(parts[0])
    except ValueError:
        kind = "a whole number" if typ is int else "a number"
        raise ConfigError(f"{usage} needs {kind}, got {arg!r}.") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{usage} needs a finite number, got {arg!r}.")
    return v


def positive_int(v: Any, name: str, most: Optional[int] = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {v!r}.")
    if most is not None and v > most:
        raise ConfigError(f"{name} must be a whole number from 1 to {most}, got {v!r}.")
    return v


def column_and_options(ns: Mapping[str, Any], arg: str, usage: str,
                       kinds: Dict[str, type]) -> Tuple[ColumnRef, dict]:
    """Parse ``COLUMN [key value]...`` (keys from kinds: ``with pets``, ``top 3``, ``by product``) and
    resolve the column in the namespace ns."""
    if not arg.strip():
        raise ConfigError(f"Name a column: {usage}.")
    var, column, rest = parse_column_ref(arg)
    try:
        words = shlex.split(rest)
    except ValueError:
        raise ConfigError(f"Unbalanced quotes in {rest!r}; {usage}.") from None
    opts: dict = {}
    i = 0
    while i < len(words):
        key = words[i].lower()
        if key not in kinds or i + 1 >= len(words):
            meant = spaced_column(ns, var, column, rest)
            if meant:
                raise DataError(f"A column name with spaces needs brackets: {meant}.")
            lookup(ns, var)       # an unknown variable is the clearer message
            raise ConfigError(f"Did not understand {' '.join(words[i:])!r}; {usage}.")
        value = words[i + 1]
        if kinds[key] is int:
            value = number(value, f"{key} N", int)
        opts[key] = value
        i += 2
    return resolve_column(ns, ref_text(var, column)), opts


@dataclass
class LearnRequest:
    """What ``/learn`` trains on: the model's name, the data (rows or files), how the magic names the
    source (``%%lm_train`` options: df/column/where or file) and a short description for the chat."""

    name: str
    data: Any
    source: Dict[str, Any] = field(default_factory=dict)
    what: str = ""
    rows: Optional[int] = None
    name_given: bool = True     # False: derived from the column or file (the chat then picks a free one)


def learn_request(ns: Mapping[str, Any], arg: str) -> LearnRequest:
    """Parse ``COLUMN [where EXPR] [as NAME]`` or ``FILES... [as NAME]`` (a name that is neither a variable
    nor a file names the variables it may have meant)."""
    usage = USAGE["learn"]
    if not arg.strip():
        raise ConfigError(f"Say what to learn from: {usage}, e.g. /learn reviews.text as reviews.")
    m = re.search(r"\s+as\s+(\S+)\s*$", arg)
    name = check_name(m.group(1), example="/learn reviews.text as reviews") if m else None
    body = arg[:m.start()] if m else arg
    var, column, rest = parse_column_ref(body) if re.match(r"\s*[A-Za-z_]", body) else ("", None, body)
    if var and var in ns:
        where = None
        if rest:
            w = re.match(r"where\s+(.+)$", rest, re.S)
            if not w:
                meant = spaced_column(ns, var, column, rest)
                raise DataError(f"A column name with spaces needs brackets: {meant}." if meant else
                                f"Did not understand {rest!r}; {usage}.")
            where = w.group(1).strip()
        ref = resolve_column(ns, ref_text(var, column))
        data = ref.values
        if where:
            frame = select_rows(ref.frame, where, ns, f"'{var}'")
            data = frame[column] if column is not None else frame
        name = name or re.sub(r"\W+", "_", f"{var}_{column}" if column else var)
        source = {"df": var, "column": column, "where": where}
        what = f"{ref} ({len(data):,} rows{', where ' + where if where else ''})"
        return LearnRequest(name, data, source, what, len(data), name_given=m is not None)
    try:
        patterns = shlex.split(body)
    except ValueError:
        raise ConfigError(f"Unbalanced quotes in {body!r}; {usage}.") from None
    looks_like_ref = len(patterns) == 1 and re.fullmatch(r"[A-Za-z_]\w*(\.[^/\\*?]+|\[.*\])?", patterns[0])
    if var and looks_like_ref and not glob.glob(os.path.expanduser(patterns[0])):
        # Neither a variable nor a file: name the variables it may have meant.
        try:
            lookup(ns, var)
        except DataError as exc:
            raise DataError(f"{exc} (No file {patterns[0]!r} either.)") from None
    data = files(*patterns)
    paths = data.paths()                    # a DataError now for a pattern that matches nothing
    name = name or re.sub(r"\W+", "_", os.path.splitext(paths[0].name)[0]) or "model"
    return LearnRequest(name, data, {"file": patterns}, f"{len(paths)} file{'s' if len(paths) != 1 else ''}",
                        name_given=m is not None)


def hint(text: str, ns: Mapping[str, Any]) -> Optional[str]:
    """The command a plain message seems to ask for ("unusual rows in reviews.text" -> /unusual
    reviews.text), or None."""
    low = text.lower()
    ref = None
    for m in _REF_IN_TEXT.finditer(text):
        if m.group(1) in ns:
            ref = m.group(0)
            break
    for pattern, command in _WANTS:
        if not pattern.search(low):
            continue
        if command in ("unusual", "learn") and ref:
            return f"/{command} {ref}"
        if command == "compare" and ref:
            by = re.search(r"\bby\s+([\w\"'][^\s,;:!?]*)", text)
            return f"/compare {ref} by {by.group(1) if by else 'GROUP'}"
        if command == "explain":
            after = re.split(r"\b(?:explain|why)\b", text, maxsplit=1, flags=re.I)[-1].strip(" :?\"'")
            return f"/explain {after or 'TEXT'}"
        if command == "data":
            return "/data"
    return None
