"""Find the text a magic should use in the user's namespace: a DataFrame column, a Series or a list of str.

Shared by ``%%lm_train --df VAR --column COL [--where ...]`` and ``%lm_score``. Every problem is a
``DataError`` whose one-line message says what to do; nothing here imports IPython, so it is easy to test.

    >>> rows = text_rows(user_ns, "df", column="text", where="label == 'ham'")   # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from typing import Any, List, Mapping, Optional

from .errors import DataError

__all__ = ["lookup", "text_rows", "select_rows", "column_of", "describe", "is_dataframe", "is_series"]

_MAX_LISTED = 12      # columns or variables named in an error message


def _kind(obj: Any) -> str:
    return f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}".replace("builtins.", "")


def is_dataframe(obj: Any) -> bool:
    mod = type(obj).__module__
    return (mod.startswith("pandas") or mod.startswith("polars")) and hasattr(obj, "columns") \
        and type(obj).__name__ in ("DataFrame", "LazyFrame")


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


def _listing(names: List[str]) -> str:
    shown = ", ".join(repr(str(n)) for n in names[:_MAX_LISTED])
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
    expression (``label == 'ham'``; ``@var`` refers to notebook variables)."""
    where = where.strip()
    if not where:
        raise DataError("--where is empty; give a condition such as \"label == 'ham'\" or a boolean mask variable.")
    if where.isidentifier() and where in user_ns and not isinstance(user_ns[where], str):
        return _apply_mask(data, user_ns[where], where, data_name)
    if not is_dataframe(data):
        raise DataError(f"--where {where!r} is an expression, which needs a DataFrame; {data_name} is a "
                        f"{type(data).__name__}. Pass a boolean mask variable instead.")
    try:
        if _is_polars(data):
            import polars as pl

            out = data.filter(pl.sql_expr(where))
        else:
            out = data.query(where, local_dict=dict(user_ns), global_dict={})
    except Exception as exc:  # pandas raises many kinds (SyntaxError, UndefinedVariableError, TypeError...)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"Cannot filter {data_name} with --where {where!r}: {msg}. Columns: "
                        f"{_listing([str(c) for c in data.columns])}.") from None
    if len(out) == 0:
        raise DataError(f"--where {where!r} keeps no rows of {data_name} ({len(data):,} rows); loosen the condition.")
    return out


def _apply_mask(data: Any, mask: Any, mask_name: str, data_name: str) -> Any:
    import numpy as np

    values = mask.to_numpy() if hasattr(mask, "to_numpy") else mask
    try:
        arr = np.asarray(values)
    except Exception:
        arr = np.asarray([], dtype=object)
    if arr.dtype != bool:
        raise DataError(f"--where {mask_name}: '{mask_name}' is a {type(mask).__name__} of {arr.dtype}, not a "
                        f"boolean mask; build one like `{mask_name} = df['label'] == 'ham'`.")
    try:
        n = len(data)
    except TypeError:
        n = -1
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"--where {mask_name}: the mask has {arr.size:,} values but {data_name} has {n:,} rows; "
                        f"build the mask from the same data.")
    if not arr.any():
        raise DataError(f"--where {mask_name} keeps no rows of {data_name}; every value of the mask is False.")
    if is_dataframe(data) or is_series(data):
        if _is_polars(data):
            return data.filter(arr)
        return data[arr]
    return [v for v, keep in zip(data, arr) if keep]


# ---------------------------------------------------------------------------------------------- columns

def column_of(df: Any, column: str, df_name: str = "the DataFrame") -> Any:
    """The Series ``df[column]``; a DataError lists the columns when it is missing."""
    cols = [str(c) for c in df.columns]
    if column not in df.columns:
        near = difflib.get_close_matches(column, cols, n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise DataError(f"{df_name} has no column '{column}'.{hint} Columns: {_listing(cols)}.")
    return df[column]


def _text_columns(df: Any) -> List[str]:
    out = []
    for c in df.columns:
        try:
            col = df[c]
            if _is_polars(df):
                if str(col.dtype) in ("String", "Utf8", "Categorical"):
                    out.append(str(c))
            elif getattr(col.dtype, "kind", "O") in "OSU" or str(col.dtype) in ("string", "category"):
                out.append(str(c))
        except Exception:
            continue
    return out


def _check_text(values: Any, what: str, df: Any = None) -> None:
    """Reject a column without any text: numbers, dates, or only missing values."""
    from .engine.data import _is_missing

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
        hint = f" Text columns: {_listing(alt)}." if alt else " Convert it with .astype(str) if you mean it."
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
        if not column:
            cols = _text_columns(obj) or [str(c) for c in obj.columns]
            raise DataError(f"{name} is a DataFrame; say which text column to use with --column "
                            f"(text columns: {_listing(cols)}).")
        series = column_of(obj, column, name)
        _check_text(series, f"Column '{column}' of {name}", obj)
        return series
    if column:
        raise DataError(f"{name} is a {type(obj).__name__}, which has no columns; drop --column {column}.")
    if len(obj) == 0:
        raise DataError(f"{name} is empty; give it some rows of text.")
    _check_text(obj, name)
    return obj
