"""Find the text a magic should use in the user's namespace: a DataFrame column, a Series or a list of str.

Shared by ``%%lm_train --df VAR --column COL [--where ...]`` and ``%lm_score``. Every problem is a
``DataError`` whose one-line message says what to do; nothing here imports IPython, so it is easy to test.

    >>> rows = text_rows(user_ns, "df", column="text", where="label == 'ham'")   # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import DataError

__all__ = ["lookup", "text_rows", "select_rows", "column_of", "describe", "is_dataframe", "is_series",
           "ColumnRef", "parse_column_ref", "ref_text", "spaced_column", "resolve_column", "text_overview",
           "column_role", "looks_like_time", "is_spark_dataframe"]

_MAX_LISTED = 12      # columns or variables named in an error message


def _kind(obj: Any) -> str:
    return f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}".replace("builtins.", "")


def is_dataframe(obj: Any) -> bool:
    mod = type(obj).__module__
    # A LazyFrame is recognized by name: asking it for .columns resolves its schema (and polars warns).
    return (mod.startswith("pandas") or mod.startswith("polars")) and (
        type(obj).__name__ == "LazyFrame" or (type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")))


def is_spark_dataframe(obj: Any) -> bool:
    """True for a pyspark DataFrame (classic or Spark Connect), recognised by its class without importing
    pyspark (which may be absent)."""
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pyspark.sql")


def is_series(obj: Any) -> bool:
    mod = type(obj).__module__
    return (mod.startswith("pandas") or mod.startswith("polars")) and type(obj).__name__ == "Series"


def _is_polars(obj: Any) -> bool:
    return type(obj).__module__.startswith("polars")


def describe(obj: Any) -> str:
    """A short description of a data object for messages: 'DataFrame (120 rows)'."""
    try:
        n = len(obj)
    except TypeError:
        return type(obj).__name__
    return f"{type(obj).__name__} ({n:,} rows)"


def _label(name: Any) -> str:
    """A column label as the user would write it: 'text', but 0 for an integer label."""
    return repr(name) if isinstance(name, (str, int, float, tuple)) else repr(str(name))


def _listing(names: List[Any]) -> str:
    shown = ", ".join(_label(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def lookup(user_ns: Mapping[str, Any], name: str) -> Any:
    """The value of a variable of the notebook, or a DataError naming close matches."""
    name = name.strip()
    if name in user_ns:
        return user_ns[name]
    public = [k for k in user_ns if not k.startswith("_")]
    near = difflib.get_close_matches(name, public, n=3)
    hint = f" Did you mean {_listing(near)}?" if near else " Run the cell that defines it first, or check the spelling."
    raise DataError(f"No variable named '{name}' in the notebook.{hint}")


# ---------------------------------------------------------------------------------------------- rows

def select_rows(data: Any, where: str, user_ns: Mapping[str, Any], data_name: str = "the data") -> Any:
    """Keep the rows picked by ``where``: the name of a boolean mask variable, or a DataFrame.query
    expression (``label == 'ham'``; ``@var`` refers to notebook variables). Either must give one
    True/False per row (missing values count as False, as in pandas and polars)."""
    where = where.strip()
    if not where:
        raise DataError("--where is empty; give a condition such as \"label == 'ham'\" or a boolean mask variable.")
    if where.isidentifier() and where in user_ns and not isinstance(user_ns[where], str):
        mask = user_ns[where]
        if is_series(mask) and not _is_polars(mask) and (is_dataframe(data) or is_series(data)) \
                and not _is_polars(data) and not mask.index.equals(data.index):
            raise DataError(f"--where {where}: the mask's index differs from the index of {data_name}; build "
                            f"the mask from the same data (e.g. `{where} = df['label'] == 'ham'`).")
        keep = _bool_mask(mask, data, f"--where {where}: the variable '{where}' holds",
                          f"build a boolean mask like `{where} = df['label'] == 'ham'`", data_name)
    elif re.search(r"__\w*__", where):
        raise DataError(f"--where {where!r} reaches into Python internals (a __name__); a condition may use "
                        f"the columns, their methods and plain values such as \"label == 'ham'\".")
    elif not is_dataframe(data):
        raise DataError(f"--where {where!r} is an expression, which needs a DataFrame; {data_name} is a "
                        f"{type(data).__name__}. Pass a boolean mask variable instead.")
    else:
        try:
            if _is_polars(data):
                import polars as pl

                values = data.select(pl.sql_expr(where).alias("__where__")).to_series()
                if len(values) == 1 and len(data) != 1:     # a literal such as `true`
                    values = values[0]
            else:
                # The condition sees the columns and the notebook's plain values (@limit), never its
                # functions, modules or objects: a condition filters, it does not run code.
                values = data.eval(where, local_dict=plain_values(user_ns), global_dict={})
        except Exception as exc:  # pandas raises many kinds (SyntaxError, UndefinedVariableError, TypeError...)
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            how = (" (a polars DataFrame takes a SQL condition, e.g. \"label = 'ham'\" or \"length(text) > 3\")"
                   if _is_polars(data) else "")
            raise DataError(f"Cannot filter {data_name} with --where {where!r}: {msg}{how}. Columns: "
                            f"{_listing(list(data.columns))}.") from None
        keep = _bool_mask(values, data, f"--where {where!r} gives",
                          "write a condition that is True or False for each row, such as \"label == 'ham'\"",
                          data_name)
    if not keep.any():
        raise DataError(f"--where {where!r} keeps no rows of {data_name} ({len(keep):,} rows); loosen the condition.")
    if _is_polars(data):
        return data.filter(keep)
    if is_dataframe(data) or is_series(data):
        return data[keep]
    return [v for v, k in zip(data, keep) if k]


_PLAIN = (int, float, complex, str, bool, type(None))


def plain_values(user_ns: Mapping[str, Any]) -> dict:
    """The notebook variables a --where condition may refer to (``@name``): numbers, texts, booleans,
    dates and small lists/tuples/sets of them. Callables, modules, classes and other objects are left
    out, so a condition cannot call anything from the namespace."""
    import datetime

    import numpy as np

    plain = _PLAIN + (np.generic, datetime.date, datetime.datetime, datetime.timedelta)
    out = {}
    for k, v in user_ns.items():
        if not isinstance(k, str) or not k.isidentifier() or k.startswith("_"):
            continue
        if isinstance(v, plain) or (isinstance(v, (list, tuple, set, frozenset)) and len(v) <= 100_000
                                    and all(isinstance(x, plain) for x in v)):
            out[k] = v
    return out


def _bool_mask(values: Any, data: Any, what: str, fix: str, data_name: str = "the data") -> Any:
    """values (a mask variable, or what a --where expression gave) as a numpy bool array with one entry
    per row of data (missing -> False), or a DataError that says what values is instead. ``what`` ends
    in a verb ("--where 'n + 1' gives"); ``fix`` says what to do."""
    import numpy as np

    from .engine.data import is_missing as _is_missing

    n = len(data)
    if is_dataframe(values):
        raise DataError(f"{what} a whole {type(values).__name__}, not one True/False per row; {fix}.")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise DataError(f"{what} a single value ({_short(values)}), not one True/False per row; {fix}.")
    if _is_polars(values):
        kind = str(values.dtype)
        if kind == "Boolean":
            values = values.fill_null(False).to_list()
    elif is_series(values):
        kind = str(values.dtype)
        if kind == "boolean":                         # pandas' nullable booleans: <NA> -> False
            values = values.to_numpy(dtype=bool, na_value=False)
        values = values.to_numpy() if hasattr(values, "to_numpy") else values
    try:
        arr = np.asarray(values)
    except Exception:
        arr = np.asarray([], dtype=object)
    flags = (bool, np.bool_)
    if arr.dtype == object and arr.ndim == 1 and any(isinstance(v, flags) for v in arr) \
            and all(v is None or isinstance(v, flags) for v in arr):
        arr = np.array([bool(v) for v in arr], dtype=bool)    # a list of True/False/None
    if arr.dtype != bool:
        if arr.dtype == object:
            kinds = sorted({type(v).__name__ for v in arr.ravel()[:1000] if not _is_missing(v)}) or ["missing"]
            desc = "/".join(kinds)
        else:
            desc = str(arr.dtype)
        raise DataError(f"{what} {desc} values, not True/False for each row; {fix}.")
    if arr.ndim != 1 or arr.size != n:
        raise DataError(f"{what} {arr.size:,} values but {data_name} has {n:,} rows; build the mask from the "
                        f"same data.")
    return arr


def _short(v: Any) -> str:
    r = " ".join(repr(v).split())
    return r if len(r) <= 40 else r[:37] + "..."


# ---------------------------------------------------------------------------------------------- columns

def check_hashable(values: List[Any], what: str) -> None:
    """A one-line DataError when a label or group column holds values that cannot be compared as keys
    (lists, dicts, arrays): they cannot name a class or a group."""
    for v in values:
        try:
            hash(v)
        except TypeError:
            raise DataError(f"{what} holds {type(v).__name__} values, which cannot be a label or group; "
                            f"use a column of texts, numbers or booleans.") from None


def column_of(df: Any, column: Any, df_name: str = "the DataFrame") -> Any:
    """The Series ``df[column]``; a DataError when the column is missing, ambiguous or not one column.

    ``column`` may be a label of another type written as text: ``--column 0`` finds the integer label 0.
    """
    cols = list(df.columns)
    if getattr(df.columns, "nlevels", 1) > 1 and not (isinstance(column, tuple) and column in cols):
        raise DataError(f"{df_name} has MultiIndex columns ({_listing(cols)}); flatten them first, e.g. "
                        f"`df.columns = ['_'.join(map(str, c)) for c in df.columns]`.")
    try:
        hash(column)
    except TypeError:
        raise DataError(f"A column is named by one label (str or int), got a {type(column).__name__}.") from None
    if isinstance(column, str) and not column.strip() and column not in cols:
        raise DataError(f"A column name cannot be empty; give one of {_listing(cols)}.")
    label = column
    if not any(_same(c, column) for c in cols) and isinstance(column, str):
        spelled = [c for c in cols if not isinstance(c, str) and str(c) == column.strip()]
        if len(spelled) == 1:             # --column 0 for the integer label 0
            label = spelled[0]
    hits = sum(_same(c, label) for c in cols)
    if hits == 0:
        strs = [str(c) for c in cols]
        near = difflib.get_close_matches(str(column), strs, n=1)
        hint = f" Did you mean {_label(cols[strs.index(near[0])])}?" if near else ""
        other = [c for c in cols if not isinstance(c, str)]
        numbers = f" (a label that is not text is given as written: --column {other[0]})" if other else ""
        msg = f"{df_name} has no column {_label(column)}.{hint} Columns: {_listing(cols)}{numbers}."
        raise DataError(msg[0].upper() + msg[1:])
    if hits > 1:
        raise DataError(f"{df_name} has {hits} columns labelled {_label(label)}; rename them so that each "
                        f"label is unique (df.columns = [...]), then pick one.")
    return df[label]


def _same(a: Any, b: Any) -> bool:
    """Label equality without surprises: 1 is not True, and '0' is not 0."""
    if isinstance(a, bool) != isinstance(b, bool) or isinstance(a, str) != isinstance(b, str):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _text_columns(df: Any) -> List[Any]:
    """The columns of df to suggest as text, for messages: those ``column_role`` calls text, else those
    whose dtype holds strings or objects (labels, dates written as strings ...)."""
    out = []
    for c in df.columns:
        try:
            if _dtype_role(df[c]) == "?":
                out.append(c)
        except Exception:
            continue
    try:
        return [c for c in out if column_role(df[c]) == "text"] or out
    except Exception:
        return out


def _dtype_role(values: Any) -> Optional[str]:
    """What the dtype alone says: "time" (datetime, date, time, duration), "label" (a categorical), "?"
    (strings or objects: the values decide), None (numbers, booleans: no text). Lists say "?"."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        return "?"
    name = str(dtype)
    if _is_polars(values):
        if name.startswith(("Datetime", "Date", "Time", "Duration")):
            return "time"
        if name.startswith(("Categorical", "Enum")):
            return "label"
        return "?" if name in ("String", "Utf8", "Object") else None
    kind = getattr(dtype, "kind", "O")
    if kind in "mM" or name.startswith(("datetime", "timedelta", "period")):
        return "time"
    if name == "category":
        return "label"
    return "?" if kind in "OSU" or name in ("string", "str") else None


# A value that reads as a date or a time: 2015-02-24, 24/02/2015, 2015-02-24 11:35:52 -0800, 11:35, 24 Feb
# 2015, Tue Feb 24 11:35:52 +0000 2015 (a tweet's), 2015-02-24T11:35:52Z. Everything in it is a number,
# a separator, a month or day name, am/pm or a time zone; and it has a date or a clock time.
_MONTHS = r"jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|june|july|" \
          r"august|september|october|november|december"
_DAYS = r"mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_TIME_WORDS = re.compile(rf"\b(?:{_MONTHS}|{_DAYS}|am|pm|utc|gmt|[a-z]{{1,4}}t)\b\.?|(?<=\d)(?:st|nd|rd|th|z)\b|(?<=\d)t(?=\d)",
                         re.I)
_TIME_PARTS = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{4}/\d{1,2}/\d{1,2}|"
                         r"\d{1,2}:\d{2}")
_TIME_CHARS = re.compile(r"[\d\s:/.,+\-()]*")


def looks_like_time(value: str) -> bool:
    """True for a string that reads as a date or time ("2015-02-24 11:35:52 -0800", "24 Feb 2015", "11:35")."""
    v = value.strip()
    if not v or len(v) > 40 or not any(c.isdigit() for c in v):
        return False
    named = bool(re.search(rf"\b(?:{_MONTHS})\b", v, re.I))
    rest = _TIME_WORDS.sub(" ", v)
    if not _TIME_CHARS.fullmatch(rest):
        return False
    return bool(_TIME_PARTS.search(v)) or (named and bool(re.search(r"\d", rest)))


_LABEL_MAX_WORDS = 3.0      # a label column's values have at most this many words on average, and either
_LABEL_MAX_VALUES = 50      # ... there are at most this many distinct ones, repeated (under half the rows),
_LABEL_MAX_SHARE = 0.2      # ... or they are codes that repeat a lot: distinct under this share of the rows


def column_role(values: Any, sample: int = 1000) -> Optional[str]:
    """How a column (pandas or polars Series, or a list) reads to someone who wants text to model:

    * ``"text"``: sentences, messages, documents (what ``/learn`` and ``/unusual`` want);
    * ``"label"``: a category: a categorical dtype, or short values (3 words or fewer on average) that
      repeat: at most 50 distinct ones in under half the rows (``airline_sentiment``), or any number in
      under a fifth of the rows (event codes of a log);
    * ``"time"``: a datetime dtype, or strings that read as dates or times (``tweet_created``);
    * ``None``: no text (numbers, booleans, other objects, or only missing values).

    Looks at most ``sample`` evenly spaced values.

    >>> column_role(["positive", "negative", "positive", "neutral", "negative"])
    'label'
    """
    from .engine.data import is_missing as _is_missing

    role = _dtype_role(values)
    if role != "?":
        return role
    n = len(values)
    step = max(1, n // sample)
    if hasattr(values, "gather_every"):          # polars
        picked = values.gather_every(step).to_list()
    elif hasattr(values, "iloc"):                # pandas
        picked = values.iloc[::step].to_list()
    else:
        picked = list(values)[::step]
    present = [v for v in picked if not _is_missing(v)]
    texts = [v for v in present if isinstance(v, str)]
    if not texts:
        import datetime

        return "time" if present and all(isinstance(v, (datetime.date, datetime.time)) for v in present) else None
    if sum(looks_like_time(v) for v in texts) >= 0.9 * len(texts):
        return "time"
    distinct = len(set(texts))
    words = sum(len(v.split()) for v in texts) / len(texts)
    few = distinct <= _LABEL_MAX_VALUES and distinct <= len(texts) / 2
    if words <= _LABEL_MAX_WORDS and (few or distinct <= _LABEL_MAX_SHARE * len(texts)):
        return "label"
    return "text"


def _check_text(values: Any, what: str, df: Any = None) -> None:
    """Reject a column without any text: numbers, dates, or only missing values."""
    from .engine.data import is_missing as _is_missing

    texts = 0
    missing = 0
    other: Optional[str] = None
    for v in (values.to_list() if hasattr(values, "to_list") else list(values)):
        if isinstance(v, str):
            texts += 1
            break
        if _is_missing(v):
            missing += 1
        elif other is None:
            other = type(v).__name__
    if texts:
        return
    if other is not None:
        alt = _text_columns(df) if df is not None else []
        convert = ".cast(pl.Utf8)" if _is_polars(values) else ".astype(str)"
        hint = f" Text columns: {_listing(alt)}." if alt else f" Convert it with {convert} if you mean it."
        raise DataError(f"{what} holds {other} values, not text.{hint}")
    raise DataError(f"{what} has no text: all {missing:,} values are missing. Pick another column or fill it.")


def text_rows(user_ns: Mapping[str, Any], var: str, column: Optional[str] = None,
              where: Optional[str] = None) -> Any:
    """The text rows named by ``--df VAR [--column COL] [--where ...]``: a Series or a list of str.

    VAR may hold a pandas (or polars) DataFrame (``column`` needed), a Series, or a list/tuple of str.
    """
    obj = lookup(user_ns, var)
    name = f"'{var}'"
    if not (is_dataframe(obj) or is_series(obj) or isinstance(obj, (list, tuple))):
        extra = (f" For a single text use `%%lm_train` with the text in the cell, or `lm.train({var})`."
                 if isinstance(obj, str) else "")
        raise DataError(f"{name} is a {_kind(obj)}, not a DataFrame, Series or list of str.{extra}")
    if type(obj).__name__ == "LazyFrame":
        raise DataError(f"{name} is a polars LazyFrame; collect it first: `{var} = {var}.collect()`.")
    if where:
        obj = select_rows(obj, where, user_ns, name)
    if is_dataframe(obj):
        if column is None or column == "":
            cols = _text_columns(obj) or list(obj.columns)
            raise DataError(f"{name} is a DataFrame; say which text column to use with --column "
                            f"(text columns: {_listing(cols)}).")
        series = column_of(obj, column, name)
        _check_text(series, f"Column {_label(series.name)} of {name}", obj)
        return series
    if column is not None and column != "":
        raise DataError(f"{name} is a {type(obj).__name__}, which has no columns; drop --column {column}.")
    if len(obj) == 0:
        raise DataError(f"{name} is empty; give it some rows of text.")
    _check_text(obj, name)
    return obj


# ---------------------------------------------------------------------------------------------- column references

# A column named the way Python code names it: ``reviews.text`` (everything after the first dot is the
# column, so ``df.text.clean`` names the column 'text.clean'), ``reviews["review text"]`` or
# ``reviews['review text']`` for names with spaces, or a bare ``reviews`` for a Series or list of str.
_REF = re.compile(r"""^\s*(?P<var>[A-Za-z_]\w*)\s*(?:\[\s*(?P<q>["'])(?P<quoted>.*?)(?P=q)\s*\]|\.(?P<dotted>\S+))?""")


def parse_column_ref(text: str) -> Tuple[str, Optional[str], str]:
    """Split ``reviews.text rest...`` or ``reviews["review text"] rest...`` into (variable, column or None,
    the rest of the text). A DataError says how to write one when text does not start with a name."""
    m = _REF.match(text)
    if not m:
        raise DataError(f"Name a column like reviews.text or reviews[\"review text\"], got {text.strip()!r}.")
    column = m.group("quoted") if m.group("q") else m.group("dotted")
    return m.group("var"), column, text[m.end():].strip()


def ref_text(var: str, column: Optional[str]) -> str:
    """How to write a reference back: ``reviews.text``, or ``reviews["review text"]`` when needed."""
    if column is None:
        return var
    if re.fullmatch(r"[^\s\[\]'\"]+", column):
        return f"{var}.{column}"
    return f'{var}["{column}"]' if '"' not in column else f"{var}[{column!r}]"


def spaced_column(user_ns: Mapping[str, Any], var: str, column: Optional[str], rest: str) -> Optional[str]:
    """The reference a user most likely meant when ``reviews.review text`` split a name with a space:
    ``reviews["review text"]`` if that column exists, else None."""
    obj = user_ns.get(var)
    if column is None or not rest or not is_dataframe(obj):
        return None
    typed = f"{column} {rest}"
    for c in sorted((str(c) for c in obj.columns), key=len, reverse=True):
        if " " in c and (typed == c or typed.startswith(c + " ")):
            return ref_text(var, c)
    return None


@dataclass
class ColumnRef:
    """A resolved column: the variable's name, the column (None for a Series or list), the object the
    variable holds and the text values (a Series or list)."""

    var: str
    column: Optional[str]
    frame: Any
    values: Any

    def __str__(self) -> str:
        return ref_text(self.var, self.column)


def resolve_column(user_ns: Mapping[str, Any], ref: str, *, need_text: bool = True) -> ColumnRef:
    """The column a reference names, checked: the variable exists (close matches if not), holds a
    DataFrame with that column (close matches, and the bracket syntax for names with spaces) or a Series
    or list of str, and (``need_text``) holds text."""
    var, column, rest = parse_column_ref(ref)
    if rest:
        meant = spaced_column(user_ns, var, column, rest) or ref_text(var, "name with spaces")
        raise DataError(f"Unexpected {rest!r} after {ref_text(var, column)}; for a column name with spaces "
                        f"write {meant}.")
    obj = lookup(user_ns, var)
    if type(obj).__name__ == "LazyFrame":
        raise DataError(f"'{var}' is a polars LazyFrame; collect it first: `{var} = {var}.collect()`.")
    if is_dataframe(obj):
        if column is None:
            cols = _text_columns(obj) or [str(c) for c in obj.columns]
            example = ref_text(var, cols[0]) if cols else f"{var}.text"
            raise DataError(f"'{var}' is a DataFrame; name one of its columns, e.g. {example} "
                            f"(text columns: {_listing(cols)}).")
        if column not in obj.columns:
            cols = [str(c) for c in obj.columns]
            near = difflib.get_close_matches(column, cols, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(ref_text(var, c) for c in near)}?" if near else ""
            raise DataError(f"'{var}' has no column '{column}'.{hint} Columns: {_listing(cols)}.")
        values = obj[column]
        if need_text:
            _check_text(values, f"Column '{column}' of '{var}'", obj)
        return ColumnRef(var, column, obj, values)
    if column is not None:
        raise DataError(f"'{var}' is a {_kind(obj)}, which has no columns; name it alone: {var}.")
    if not (is_series(obj) or isinstance(obj, (list, tuple))):
        raise DataError(f"'{var}' is a {_kind(obj)}, not a DataFrame, Series or list of str; run /data to see "
                        f"what there is.")
    if need_text:
        if len(obj) == 0:
            raise DataError(f"'{var}' is empty; give it some rows of text.")
        _check_text(obj, f"'{var}'")
    return ColumnRef(var, None, obj, obj)


# ---------------------------------------------------------------------------------------------- overview

_SHELL_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}   # IPython's own, not the user's data
_SAMPLE_ROWS = 10_000   # mean words are counted over at most this many (evenly spaced) rows


def _column_facts(values: Any, role: Optional[str] = None) -> Dict[str, Any]:
    """Rows, missing values and mean words of a column (and, for a label column, its number of distinct
    values): one pass over at most _SAMPLE_ROWS values."""
    from .engine.data import is_missing as _is_missing

    n = len(values)
    if hasattr(values, "null_count"):                 # polars
        missing = int(values.null_count())
    elif hasattr(values, "isna"):                     # pandas
        missing = int(values.isna().sum())
    else:
        missing = sum(1 for v in values if _is_missing(v))
    step = max(1, n // _SAMPLE_ROWS)
    sample = values[::step] if not hasattr(values, "gather_every") else values.gather_every(step)
    words = [len(v.split()) for v in (sample.to_list() if hasattr(sample, "to_list") else sample)
             if isinstance(v, str)]
    facts = {"rows": n, "missing": missing, "mean_words": sum(words) / len(words) if words else float("nan"),
             "sampled": step > 1}
    if role == "label":
        try:
            facts["values"] = int(values.nunique()) if hasattr(values, "nunique") else int(values.n_unique())
        except Exception:
            facts["values"] = len({v for v in values if isinstance(v, str)})
    return facts


def text_overview(user_ns: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The notebook's DataFrames and Series (pandas, polars) and lists of str, with their text, label and
    time columns (``column_role``): one dict per column (var, column, kind, role, rows, missing,
    mean_words, sampled; labels also ``values``: their number of distinct values), by variable name. A
    DataFrame without any gets one entry with column None."""
    out: List[Dict[str, Any]] = []
    for var in sorted(k for k in user_ns if not k.startswith("_") and k not in _SHELL_NAMES):
        obj = user_ns[var]
        kind = _kind(obj)
        try:
            if is_dataframe(obj) and type(obj).__name__ == "DataFrame":
                cols = [(c, column_role(obj[c])) for c in obj.columns]
                cols = [(c, role) for c, role in cols if role is not None]
                if not cols:
                    out.append({"var": var, "column": None, "kind": kind, "rows": len(obj)})
                for c, role in cols:
                    out.append({"var": var, "column": c, "kind": kind, "role": role, **_column_facts(obj[c], role)})
            elif (is_series(obj) or isinstance(obj, list) and obj and all(isinstance(v, str) for v in obj[:100])) \
                    and _has_text(obj):
                role = column_role(obj)
                if role is not None:
                    out.append({"var": var, "column": None, "kind": kind, "role": role, **_column_facts(obj, role)})
        except Exception:   # an odd object in the namespace must not break the listing
            continue
    return out


def _has_text(values: Any) -> bool:
    """True when the first non-missing values include a str (object columns may hold anything)."""
    head = values.head(50) if hasattr(values, "head") else values[:50]
    vals = head.to_list() if hasattr(head, "to_list") else list(head)
    return any(isinstance(v, str) for v in vals)


check_text_values = _check_text    # the public name, for the analysis layer
