"""Data: text sources, missing values, files, the seeded split, tiny-input fallbacks, batch layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lm_magics as lm
from lm_magics.engine.data import DataStats, batchify, prepare, rows_of, windows
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


def test_a_few_undecodable_bytes_are_replaced_and_noted(tmp_path: Path):
    # One damaged spot must not cost a whole corpus; it is replaced by U+FFFD and the summary says so.
    p = tmp_path / "bad.txt"
    p.write_bytes(b"good line\n" * 300 + b"bad \xff\xfe bytes\n")
    stats = DataStats()
    rows = _rows(lm.files(p), stats)
    assert rows[0].startswith("good") and "\ufffd" in rows[-1]
    assert stats.notes == [f"'{p}': 2 of 3,013 characters are undecodable bytes (read as U+FFFD) or NULs"]


def test_pathlike_and_home_expansion(tmp_path: Path, monkeypatch):
    (tmp_path / "t.txt").write_text("hello there\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert [r.strip() for r in _rows(lm.files("~/t.txt"))] == ["hello there"]
    assert os.fspath(tmp_path / "t.txt")  # Path objects accepted above via rows_of(Path)


# ------------------------------------------------------------------------ special files (issue 11)

from conftest import no_hang  # noqa: E402


@pytest.mark.parametrize("kind", ["named pipe", "socket", "character device"])
def test_special_files_are_refused_before_they_are_read(special_files, kind, tmp_path: Path):
    # A FIFO blocked the reader forever and /dev/zero was read until MemoryError; a socket could not be
    # opened at all. Anything but a regular file is refused, by every way of naming files.
    path = special_files[kind]
    fifo = special_files["named pipe"]
    (tmp_path / "ok.txt").write_text("the cat sat on the mat\n" * 20, encoding="utf-8")
    sources = [lm.files(path), path, lm.files(tmp_path / "ok.txt", path)]
    if kind == "named pipe":   # a glob that matches it among text files (sorted: ok.txt, pipe.txt)
        sources.append(lm.files(tmp_path / "*.txt"))
    for source in sources:
        with pytest.raises(DataError, match=rf"is a {kind}.*not a regular file.*save the text to a file") as e:
            no_hang(lambda: prepare(source, Tokenizer()), unblock=fifo)
        assert "\n" not in str(e.value)
    from lm_magics.engine.streaming import prepare_stream

    with pytest.raises(DataError, match=rf"is a {kind}"):
        no_hang(lambda: prepare_stream(lm.files(path), Tokenizer(), cache_dir=tmp_path / "cache"), unblock=fifo)


def test_a_path_swapped_for_a_fifo_after_the_check_is_still_refused(special_files, tmp_path: Path):
    # The check and the read use the same open descriptor, so a race cannot slip a pipe in.
    from lm_magics.engine.data import file_lines

    fifo = special_files["named pipe"]
    with pytest.raises(DataError, match=r"is a named pipe"):
        no_hang(lambda: list(file_lines(fifo)), unblock=fifo)


# ------------------------------------------------------------------------ undecodable files (issue 11)

def _gzip(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode())


SENTENCES = "Le café est près de la forêt; naïve élève, déjà vu.\nThe cat sat on the mat.\n" * 40

NOT_TEXT = {   # name: (bytes, what the message says it looks like, the encoding that reads it or None)
    "gzip": (_gzip(SENTENCES), r"gzip-compressed data.*decompress it", None),
    "zip": (b"PK\x03\x04" + bytes(200), r"a zip archive \(or an lm_magics model file\)", None),
    "bzip2": (__import__("bz2").compress(SENTENCES.encode(), 1), r"bzip2-compressed data.*bunzip2", None),
    "utf16-bom": (SENTENCES.encode("utf-16"), r"UTF-16 text with a byte-order mark.*--encoding utf-16", "utf-16"),
    "utf16le": (SENTENCES.encode("utf-16-le"), r"UTF-16 text without a byte-order mark.*utf-16-le", "utf-16-le"),
    "utf16be": (SENTENCES.encode("utf-16-be"), r"UTF-16 text without.*utf-16-be", "utf-16-be"),
    "utf32": (SENTENCES.encode("utf-32"), r"UTF-32 text", "utf-32"),
    "latin1": (SENTENCES.encode("latin-1"), r"Latin-1 text.*--encoding latin-1.*encoding='latin-1'", "latin-1"),
    "cp1252": (("\u201cQuoted\u201d " + SENTENCES).encode("cp1252"), r"Windows-1252.*--encoding cp1252", "cp1252"),
    "binary": (bytes(range(256)) * 40, r"binary data with NUL bytes.*give a text file", None),
    "elf": (b"\x7fELF\x02\x01\x01" + bytes(500), r"an executable", None),
}


@pytest.mark.parametrize("name", sorted(NOT_TEXT))
def test_files_that_are_not_utf8_text_are_refused_with_what_they_look_like(tmp_path: Path, name):
    data, looks_like, encoding = NOT_TEXT[name]
    p = tmp_path / f"{name}.txt"
    p.write_bytes(data)
    with pytest.raises(DataError, match=rf"'{p}' is not UTF-8 text \(it looks like {looks_like}") as e:
        prepare(lm.files(p), Tokenizer())
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    if encoding is not None:   # with the right encoding the same file trains, with the right words
        corpus = prepare(lm.files(p, encoding=encoding), Tokenizer())
        assert {"café", "près", "forêt", "naïve", "cat"} <= set(corpus.tokenizer.itos)
        assert not any("\ufffd" in w or "\x00" in w for w in corpus.tokenizer.itos)


def test_binary_data_is_refused_whatever_the_encoding(tmp_path: Path):
    (tmp_path / "g.gz").write_bytes(_gzip(SENTENCES))
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DataError, match=r"not latin-1 text \(it looks like gzip"):
        prepare(lm.files(tmp_path / "g.gz", encoding="latin-1"), Tokenizer())
    with pytest.raises(DataError, match=r"not latin-1 text \(it looks like binary data"):
        prepare(lm.files(tmp_path / "b.bin", encoding="latin-1"), Tokenizer())


def test_a_bad_stretch_late_in_a_long_file_is_found(tmp_path: Path):
    p = tmp_path / "late.txt"
    p.write_bytes(b"the cat sat on the mat\n" * 60_000 + "caf\xe9 na\xefve\n".encode("latin-1") * 20_000)
    with pytest.raises(DataError, match=r"more than one encoding, or damaged: 40,000 of its 1,600,000 characters"
                                        r".*--encoding latin-1"):
        prepare(lm.files(p), Tokenizer())


def test_text_that_starts_like_a_magic_number_is_text(tmp_path: Path):
    p = tmp_path / "notes.txt"
    for start in ("BZh is not a word.", "%PDF-ish notes follow.", "PK, the initials."):
        p.write_text(start + "\nthe cat sat on the mat\n", encoding="utf-8")
        assert _rows(lm.files(p))[0] == start + "\n"


def test_utf8_with_a_bom_and_crlf_lines_read_cleanly(tmp_path: Path):
    p = tmp_path / "bom.txt"
    p.write_bytes("the café\r\nthe cat\r\n".encode("utf-8-sig"))
    assert _rows(lm.files(p)) == ["the café\n", "the cat\n"]


@pytest.mark.parametrize("encoding", ["nope", "rot13", "base64", 8, None])
def test_unknown_encodings_are_config_errors(tmp_path: Path, encoding):
    with pytest.raises(lm.ConfigError, match=r"encoding"):
        lm.files(tmp_path / "x.txt", encoding=encoding)


def test_a_huge_file_of_nul_bytes_is_refused_from_its_head(tmp_path: Path):
    # 200 MB of NULs without a newline would be read as one line before any line could be judged.
    import time

    p = tmp_path / "zeros.txt"
    with open(p, "wb") as fh:
        fh.truncate(200 * 2**20)            # sparse: no disk used
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"binary data with NUL bytes: 65,536 of the first 65,536 characters"):
        prepare(lm.files(p), Tokenizer())
    assert time.perf_counter() - t0 < 5


def test_the_wrong_explicit_encoding_is_caught_or_noted(tmp_path: Path):
    p = tmp_path / "utf8.txt"
    p.write_text(SENTENCES, encoding="utf-8")
    for enc in ("utf-16", "utf-16-le", "utf-32"):
        with pytest.raises(DataError, match=rf"is not {enc} text \(it looks like UTF-8 text: it has no NUL bytes\); "
                                            rf"drop --encoding {enc}"):
            prepare(lm.files(p, encoding=enc), Tokenizer())
    stats = DataStats()
    _rows(lm.files(p, encoding="latin-1"), stats)          # mojibake, but said
    assert stats.notes == [f"'{p}' also reads as UTF-8 (its non-ASCII bytes are valid UTF-8); if it is UTF-8, "
                           f"drop --encoding latin-1"]
    stats = DataStats()
    _rows(lm.files(p), stats)
    assert stats.notes == []


@pytest.mark.parametrize("val", [[], "", [""], ["   "], [None, float("nan")], pd.Series([], dtype=object)])
def test_given_validation_text_that_is_empty_is_refused(tiny_text, val):
    # An empty val_data is nearly always a slice past the end of a list; it used to train with NaN
    # validation perplexities and no word about it.
    with pytest.raises(lm.DataError, match=r"val_data has no text to validate on .*leave val_data out"):
        lm.train(tiny_text, val_data=val, epochs=1, baseline=False)
    assert lm.train(tiny_text, val_data=["a"], epochs=1, baseline=False).report.best_val_ppl is not None


def test_empty_validation_text_is_refused_when_streaming_too(tiny_text, tmp_path):
    from lm_magics.engine.streaming import prepare_stream

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_text)
    with pytest.raises(lm.DataError, match=r"val_data has no text to validate on"):
        prepare_stream(lm.files(corpus), Tokenizer(), val_source=[], cache_dir=tmp_path / "cache")
