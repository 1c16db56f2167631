"""Data: text sources, missing values, files, the seeded split, tiny-input fallbacks, batch layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lm_magics as lm
from lm_magics.engine.data import batchify, prepare, rows_of, windows
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.errors import DataError

ROWS = [f"row {i} says hello to the world ." for i in range(200)]


def _rows(source, stats=None):
    return list(rows_of(source, stats)())


def test_str_is_split_into_lines():
    assert _rows("a b\nc d\n") == ["a b", "c d"]


def test_list_tuple_and_generator():
    assert _rows(["a", "b"]) == ["a", "b"]
    assert _rows(("a", "b")) == ["a", "b"]
    gen = (s for s in ["a", "b"])
    read = rows_of(gen)
    assert list(read()) == ["a", "b"]
    assert list(read()) == ["a", "b"]      # one-shot iterators are materialized: readable twice


def test_series_with_missing_values_skipped_and_counted():
    from lm_magics.engine.data import DataStats

    s = pd.Series(["a b", None, float("nan"), pd.NA, "c d", np.nan], dtype=object)
    stats = DataStats()
    assert _rows(s, stats) == ["a b", "c d"]
    assert stats.missing == 4
    s2 = pd.Series(["x", pd.NA, "y"], dtype="string")
    assert _rows(s2) == ["x", "y"]


def test_missing_values_noted_in_training_report():
    data = pd.Series(ROWS[:50] + [None] * 3)
    corpus = prepare(data, Tokenizer(), seed=0)
    assert corpus.stats.missing == 3
    assert any("3 missing" in n for n in corpus.stats.notes)


def test_non_text_inputs_are_refused_clearly():
    with pytest.raises(DataError, match="decode"):
        rows_of(b"bytes")
    with pytest.raises(DataError, match="text column"):
        rows_of(pd.Series([1, 2, 3], name="n"))
    with pytest.raises(DataError, match=r"df\['text'\]"):
        rows_of(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(DataError, match="Cannot read text"):
        rows_of(42)


def test_files_glob_and_path(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("three\n", encoding="utf-8")
    assert [r.rstrip("\n") for r in _rows(lm.files(tmp_path / "*.txt"))] == ["one", "two", "three"]
    assert [r.rstrip("\n") for r in _rows(tmp_path / "b.txt")] == ["three"]
    assert [r.rstrip("\n") for r in _rows(lm.files(str(tmp_path / "a.txt"), tmp_path / "b.txt"))] == \
        ["one", "two", "three"]


def test_files_errors(tmp_path: Path):
    with pytest.raises(DataError, match="No file matches"):
        rows_of(lm.files(tmp_path / "*.nothing"))
    with pytest.raises(DataError, match="not found"):
        rows_of(lm.files(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="directory"):
        rows_of(tmp_path)
    with pytest.raises(DataError):
        lm.files()


def test_split_is_seeded_and_deterministic():
    a = prepare(ROWS, Tokenizer(), seed=0)
    b = prepare(ROWS, Tokenizer(), seed=0)
    c = prepare(ROWS, Tokenizer(), seed=1)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert a.fingerprint == b.fingerprint
    assert not np.array_equal(a.val, c.val)
    assert a.train.dtype == np.int32
    # About 10% of the rows validate.
    assert 5 <= a.stats.val_rows <= 40 and a.stats.train_rows + a.stats.val_rows == 200
    assert a.stats.train_tokens == a.train.size and a.stats.val_tokens == a.val.size


def test_val_source_and_no_split():
    c = prepare(ROWS[:100], Tokenizer(), val_source=ROWS[100:], seed=0)
    assert c.stats.train_rows == 100 and c.stats.val_rows == 100
    c0 = prepare(ROWS, Tokenizer(), val_fraction=0.0)
    assert c0.val.size == 0 and c0.stats.train_rows == 200


def test_tiny_inputs_fall_back_and_say_so():
    few_rows = prepare(["one two three four five six seven eight nine ten " * 10] * 3, Tokenizer())
    assert few_rows.val.size > 0 and any("row(s)" in n for n in few_rows.stats.notes)
    tiny = prepare("just a few words here", Tokenizer())
    assert np.array_equal(tiny.train, tiny.val)
    assert any("training text" in n for n in tiny.stats.notes)


def test_empty_input_is_a_data_error():
    with pytest.raises(DataError, match="No text"):
        prepare("", Tokenizer())
    with pytest.raises(DataError, match="missing"):
        prepare([None, float("nan")], Tokenizer())


def test_unk_tokens_counted_with_fixed_vocabulary():
    tok = Tokenizer().fit(["the cat sat"])
    c = prepare(["the dog sat"] * 5, tok, val_fraction=0.0)
    assert c.stats.unk_tokens == 5
    assert tok.itos == ["<unk>", "<eos>", "cat", "sat", "the"]   # a fitted vocabulary is never changed


def test_batchify_matches_the_docstring_diagram():
    letters = "abcdefghijklmnopqrstuvwx"
    ids = np.arange(len(letters), dtype=np.int32)
    data = batchify(ids, 4)
    assert data.shape == (6, 4) and data.dtype == torch.int64
    grid = [[letters[i] for i in row] for row in data.tolist()]
    assert grid == [list("agms"), list("bhnt"), list("ciou"), list("djpv"), list("ekqw"), list("flrx")]
    # Leftovers (fewer than batch_size) are dropped.
    assert batchify(np.arange(26, dtype=np.int32), 4).shape == (6, 4)
    with pytest.raises(DataError, match="batch_size"):
        batchify(np.arange(5, dtype=np.int32), 4)


def test_windows_cover_every_target_once():
    data = batchify(np.arange(40, dtype=np.int32), 2)   # (20, 2)
    wins = list(windows(data, 7))
    assert [x.shape[0] for x, _ in wins] == [7, 7, 5]
    for x, y in wins:
        assert x.shape == y.shape
        assert torch.equal(y, x + 1)                     # targets are the next token of each stream
    targets = torch.cat([y for _, y in wins])
    assert torch.equal(targets, data[1:])


def test_bad_encoding_is_replaced_not_fatal(tmp_path: Path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"good line\nbad \xff\xfe bytes\n")
    rows = _rows(lm.files(p))
    assert rows[0].startswith("good") and "\ufffd" in rows[1]


def test_pathlike_and_home_expansion(tmp_path: Path, monkeypatch):
    (tmp_path / "t.txt").write_text("hello there\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert [r.strip() for r in _rows(lm.files("~/t.txt"))] == ["hello there"]
    assert os.fspath(tmp_path / "t.txt")  # Path objects accepted above via rows_of(Path)
