"""frames.py: finding the text of `--df VAR --column COL --where ...` in pandas and polars data, and saying
clearly what is wrong when it cannot (issue 11: duplicated, MultiIndex and integer column labels, a --where
that is not one True/False per row)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lm_magics as lm
from lm_magics.frames import column_of, column_role, looks_like_time, select_rows, text_rows


def _fails(call, *hints):
    with pytest.raises(lm.DataError) as e:
        call()
    msg = str(e.value)
    assert type(e.value) is lm.DataError and "\n" not in msg and len(msg) < 400, msg
    for h in hints:
        assert re.search(h, msg), f"{h!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------ column labels

def test_duplicated_column_labels_are_named_as_such():
    ns = {"df": pd.DataFrame([["the cat", "a dog", 1]] * 3, columns=["text", "text", "n"])}
    _fails(lambda: text_rows(ns, "df", "text"), r"'df' has 2 columns labelled 'text'; rename them")
    assert list(text_rows({"df": ns["df"].iloc[:, 1:]}, "df", "text")) == ["a dog"] * 3


def test_multiindex_columns_say_to_flatten():
    df = pd.DataFrame({("a", "text"): ["the cat"] * 3, ("a", "n"): [1, 2, 3]})
    for column in ("text", "a", "('a', 'text')"):
        _fails(lambda: text_rows({"df": df}, "df", column), r"'df' has MultiIndex columns \(\('a', 'text'\)",
               r"flatten them first")
    assert list(column_of(df, ("a", "text"))) == ["the cat"] * 3      # the Python API may name the tuple


def test_integer_labels_are_found_from_the_command_line_text():
    ns = {"df": pd.DataFrame({0: ["the cat sat", "a dog ran"], 1: [1, 2], "2": ["x", "y"]})}
    assert list(text_rows(ns, "df", "0")) == ["the cat sat", "a dog ran"]      # --column 0 -> the label 0
    assert list(text_rows(ns, "df", 0)) == ["the cat sat", "a dog ran"]        # Python: the int itself
    assert list(text_rows(ns, "df", "2")) == ["x", "y"]                        # a text label stays text
    _fails(lambda: text_rows(ns, "df", "1"), r"Column 1 of 'df' holds int values, not text",
           r"Text columns: 0, '2'")
    _fails(lambda: text_rows(ns, "df", "7"), r"'df' has no column '7'\. Columns: 0, 1, '2'",
           r"a label that is not text is given as written: --column 0")
    _fails(lambda: text_rows(ns, "df", 2), r"'df' has no column 2\. Did you mean '2'\?")
    _fails(lambda: text_rows(ns, "df"), r"say which text column.*text columns: 0, '2'")


def test_other_label_types_and_unhashable_names():
    df = pd.DataFrame([["the cat", "a dog"]], columns=[0.5, pd.Timestamp("2024-01-01")])
    assert list(column_of(df, "0.5")) == ["the cat"] and list(column_of(df, 0.5)) == ["the cat"]
    assert list(column_of(df, "2024-01-01 00:00:00")) == ["a dog"]
    _fails(lambda: column_of(df, "1"), r"The DataFrame has no column '1'\. Columns: 0\.5, '2024-01-01 00:00:00'")
    _fails(lambda: column_of(df, ["text"]), r"A column is named by one label \(str or int\), got a list")


# ------------------------------------------------------------------------------------------ --where

FRAME = pd.DataFrame({"n": [1, 2, 3, 4], "text": ["the cat", "a dog", None, "the mat"],
                      "label": ["ham", "spam", "ham", "ham"]})


@pytest.mark.parametrize("where, hint", [
    ("n + 1", r"--where 'n \+ 1' gives int64 values, not True/False for each row; write a condition"),
    ("text", r"gives str values, not True/False"),
    ("label", r"gives str values"),
    ("n * 0.5", r"gives float64 values"),
    ("1 == 1", r"gives a single value \(True\), not one True/False per row"),
    ("a = n", r"gives a whole DataFrame"),
    ("n > 100", r"keeps no rows of 'df' \(4 rows\)"),
    ("nosuch == 1", r"Cannot filter 'df' with --where 'nosuch == 1'.*Columns: 'n', 'text', 'label'"),
])
def test_where_expressions_that_are_not_a_row_condition(where, hint):
    _fails(lambda: text_rows({"df": FRAME}, "df", "text", where), hint)


@pytest.mark.parametrize("mask, hint", [
    ([1, 0, 1, 1], r"the variable 'm' holds int64 values, not True/False for each row; build a boolean mask"),
    (pd.Series(["a", "b", "c", "d"]), r"holds str values"),
    (np.array([0.0, 1.0, 1.0, 0.0]), r"holds float64 values"),
    ([True, False], r"holds 2 values but 'df' has 4 rows"),
    (np.ones((2, 2), bool), r"holds 4 values but 'df' has 4 rows"),
    (pd.Series([True, False, True, True], index=[9, 8, 7, 6]), r"the mask's index differs from the index of 'df'"),
    (pd.DataFrame({"a": [True] * 4}), r"holds a whole DataFrame"),
    (True, r"holds a single value \(True\)"),
    ([None, None, None, None], r"holds missing values"),
    ([False] * 4, r"keeps no rows"),
])
def test_where_mask_variables_that_are_not_boolean_masks(mask, hint):
    _fails(lambda: text_rows({"df": FRAME, "m": mask}, "df", "text", "m"), hint)


def test_where_masks_and_conditions_that_work():
    ns = {"df": FRAME, "m": FRAME["label"] == "ham", "lst": [True, False, False, True],
          "nullable": pd.Series([True, pd.NA, True, False], dtype="boolean"), "texts": ["a", "b", "c", "d"]}
    assert list(text_rows(ns, "df", "text", "label == 'ham'").fillna("-")) == ["the cat", "-", "the mat"]
    assert list(text_rows(ns, "df", "text", "m").fillna("-")) == ["the cat", "-", "the mat"]
    assert list(text_rows(ns, "df", "text", "lst")) == ["the cat", "the mat"]
    assert list(text_rows(ns, "df", "text", "nullable").fillna("-")) == ["the cat", "-"]   # NA counts as False
    assert text_rows(ns, "texts", None, "lst") == ["a", "d"]
    _fails(lambda: select_rows(ns["texts"], "n > 1", ns, "'texts'"), r"is an expression, which needs a DataFrame")


# ------------------------------------------------------------------------------------------ polars

def test_polars_frames_columns_and_where():
    pl = pytest.importorskip("polars", reason="polars is optional (the test extra installs it)")
    df = pl.DataFrame({"n": [1, 2, 3, 4], "text": ["the cat", "a dog", None, "the mat"],
                       "label": ["ham", "spam", "ham", "ham"]})
    ns = {"df": df, "m": df["label"] == "ham", "ints": pl.Series([1, 0, 1, 1]), "short": pl.Series([True]),
          "nullmask": pl.Series([True, None, True, False])}
    assert text_rows(ns, "df", "text", "label = 'ham'").to_list() == ["the cat", None, "the mat"]
    assert text_rows(ns, "df", "text", "m").to_list() == ["the cat", None, "the mat"]
    assert text_rows(ns, "df", "text", "nullmask").to_list() == ["the cat", None]
    _fails(lambda: text_rows(ns, "df", "text", "n + 1"), r"--where 'n \+ 1' gives int64 values")
    _fails(lambda: text_rows(ns, "df", "text", "true"), r"gives a single value \(True\)")
    _fails(lambda: text_rows(ns, "df", "text", "ints"), r"the variable 'ints' holds int64 values")
    _fails(lambda: text_rows(ns, "df", "text", "short"), r"holds 1 values but 'df' has 4 rows")
    _fails(lambda: text_rows(ns, "df", "txt"), r"'df' has no column 'txt'\. Did you mean 'text'\?")
    _fails(lambda: text_rows(ns, "df", "n"), r"Column 'n' of 'df' holds int values, not text")
    _fails(lambda: text_rows({"lf": df.lazy()}, "lf", "text"), r"polars LazyFrame; collect it first")


# ---------------------------------------------------------------------------------------------- column roles

def _tweets(n: int = 60) -> "pd.DataFrame":
    """Like the airline tweets: a label, a time written as text, a free-text column and a few short ones."""
    moods = ["negative", "neutral", "positive"]
    return pd.DataFrame({
        "airline_sentiment": [moods[i % 3] for i in range(n)],
        "airline": [["Virgin America", "United", "US Airways", "Delta"][i % 4] for i in range(n)],
        "tweet_created": [f"2015-02-{10 + i % 15} 11:{i % 60:02d}:52 -0800" for i in range(n)],
        "text": [f"@united flight {i} was late again and the crew did not say why" for i in range(n)],
        "name": [f"user{i}" for i in range(n)],             # short but all different: not a category
        "retweets": list(range(n)),
        "when": pd.date_range("2015-02-01", periods=n, freq="h"),
        "mood": pd.Categorical([moods[i % 3] for i in range(n)]),
    })


@pytest.mark.parametrize("column, role", [("airline_sentiment", "label"), ("airline", "label"),
                                          ("tweet_created", "time"), ("text", "text"), ("name", "text"),
                                          ("retweets", None), ("when", "time"), ("mood", "label")])
def test_column_role_tells_text_from_labels_and_times(column, role):
    assert column_role(_tweets()[column]) == role


def test_column_role_of_polars_lists_and_odd_values():
    pl = pytest.importorskip("polars", reason="polars is optional (the test extra installs it)")
    df = pl.from_pandas(_tweets().drop(columns=["mood"]))
    assert [column_role(df[c]) for c in ("airline_sentiment", "tweet_created", "text", "retweets", "when")] == \
        ["label", "time", "text", None, "time"]
    assert column_role(["the cat sat", "a dog ran"]) == "text"           # two rows, two texts: not a category
    assert column_role(["spam", "ham", "ham", "spam", "ham", None]) == "label"
    assert column_role(pd.Series([None, None], dtype=object)) is None    # nothing to read
    assert column_role(pd.Series([{"a": 1}, [2]], dtype=object)) is None
    import datetime

    assert column_role(pd.Series([datetime.date(2020, 1, 1), None], dtype=object)) == "time"
    long_labels = [f"a rather long category name {i % 3}" for i in range(30)]       # 6 words: text
    assert column_role(long_labels) == "text"
    codes = [f"E{i % 120}" for i in range(2000)]               # a log's 120 event codes over 2,000 lines
    assert column_role(codes) == "label" and column_role([f"node-{i}" for i in range(2000)]) == "text"


@pytest.mark.parametrize("value, is_time", [
    ("2015-02-24 11:35:52 -0800", True), ("2015-02-24T11:35:52Z", True), ("24 Feb 2015", True), ("11:35", True),
    ("Tue Feb 24 11:35:52 +0000 2015", True), ("12/31/2020", True), ("May 5th, 2020", True),
    ("3.5", False), ("2015", False), ("hello 2015", False), ("may I go", False), ("Feb", False),
    ("flight 11:35 was late", False), ("", False),
])
def test_looks_like_time(value, is_time):
    assert looks_like_time(value) is is_time


def test_text_columns_suggested_in_messages_are_text_first():
    ns = {"tweets": _tweets()}
    _fails(lambda: text_rows(ns, "tweets", "retweets"), r"Text columns: 'text', 'name'\.")
    _fails(lambda: text_rows(ns, "tweets"), r"text columns: 'text', 'name'\)")
