"""Streaming corpora: memory-mapped token files, cached by content, same split and ids as in memory."""

import numpy as np
import pytest
import torch

import lm_magics as lm
from lm_magics.engine.data import batchify, prepare, windows
from lm_magics.engine.streaming import StreamBatches, prepare_stream, should_stream
from lm_magics.engine.tokenizer import Tokenizer

from conftest import make_text

OPTS = dict(hidden_dim=32, embed_dim=16, epochs=2, seed=0, batch_size=4, seq_len=8)


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(200, seed=1) + "\n")
    return path


def test_stream_matches_in_memory_ids_and_split(corpus_file, tmp_path):
    mem = prepare(lm.files(corpus_file), Tokenizer(), seed=3)
    streamed = prepare_stream(lm.files(corpus_file), Tokenizer(), seed=3, cache_dir=tmp_path / "cache")
    assert isinstance(streamed.train, np.memmap) and streamed.train.dtype == np.int32
    assert streamed.tokenizer.itos == mem.tokenizer.itos
    np.testing.assert_array_equal(streamed.train, mem.train)
    np.testing.assert_array_equal(streamed.val, mem.val)
    assert streamed.stats.train_rows == mem.stats.train_rows and streamed.stats.unk_tokens == 0


def test_cache_is_reused_and_keyed_by_content(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    a = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    entries = [p for p in cache.iterdir()]
    assert len(entries) == 1 and not any(p.name.startswith(".tmp") for p in entries)
    b = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert a.fingerprint == b.fingerprint and len(list(cache.iterdir())) == 1
    corpus_file.write_text(corpus_file.read_text() + "a brand new line of text .\n")
    c = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert c.fingerprint != a.fingerprint and len(list(cache.iterdir())) == 2
    # Other settings (lowercase) are another entry too.
    d = prepare_stream(lm.files(corpus_file), Tokenizer(lowercase=True), cache_dir=cache)
    assert d.fingerprint != c.fingerprint


def test_failed_pass_leaves_no_partial_entry(tmp_path):
    cache = tmp_path / "cache"

    def rows():
        yield "the cat sat on the mat ."
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        prepare_stream(rows, Tokenizer(), cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_one_shot_generator_is_spooled_not_lost(tmp_path):
    lines = make_text(100).splitlines()
    gen = (line for line in lines)
    c = prepare_stream(gen, Tokenizer(), cache_dir=tmp_path, val_fraction=0.0)
    ref = prepare(lines, Tokenizer(), val_fraction=0.0)
    np.testing.assert_array_equal(c.train, ref.train)


def test_stream_batches_equal_batchify_windows():
    ids = np.arange(103, dtype=np.int32)
    path_ids = ids  # in memory reference
    ref = batchify(path_ids, 4)
    sb = StreamBatches(ids, 4)
    assert sb.size(0) == ref.size(0) and sb.shape == tuple(ref.shape)
    for (x1, y1), (x2, y2) in zip(windows(ref, 5), windows(sb, 5)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_train_stream_equals_in_memory_model(corpus_file, tmp_path):
    a = lm.train(lm.files(corpus_file), stream=True, cache_dir=tmp_path, **OPTS)
    b = lm.train(lm.files(corpus_file), stream=False, **OPTS)
    assert any("memory-mapped" in n for n in a.report.notes)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    assert a.report.history[-1].train_loss < a.report.history[0].train_loss or a.meta["val_ppl"]
    assert a.next_words("the cat", k=3)


def test_auto_stream_only_for_big_files(corpus_file):
    assert not should_stream(lm.files(corpus_file), None)
    assert should_stream(lm.files(corpus_file), True)
    assert not should_stream(["a b c"], None)
