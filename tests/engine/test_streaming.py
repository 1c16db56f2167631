"""Streaming corpora: memory-mapped token files, cached by content, same split and ids as in memory."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lm_magics as lm
from lm_magics.engine.data import batchify, prepare, windows
from lm_magics.engine.streaming import StreamBatches, prepare_stream, should_stream
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.errors import ConfigError

from conftest import make_text

REPO = Path(__file__).resolve().parents[2]
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


def _entries(cache):
    """Cache entries (token folders), not the index/lock folder; no temporary folder may be left."""
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]
    return [p for p in cache.iterdir() if not p.name.startswith(".")]


def test_cache_is_reused_and_keyed_by_content(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    a = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert len(_entries(cache)) == 1
    b = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert a.fingerprint == b.fingerprint and len(_entries(cache)) == 1
    assert b.tokenizer.itos == a.tokenizer.itos             # the vocabulary comes back from the entry
    assert "built" in a.stats.notes[-1] and "sizes and times" in b.stats.notes[-1]
    corpus_file.write_text(corpus_file.read_text() + "a brand new line of text .\n")
    c = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert c.fingerprint != a.fingerprint and len(_entries(cache)) == 2
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
    assert _entries(cache) == []


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


def test_stat_check_reads_nothing_hash_check_rereads(corpus_file, tmp_path):
    cache = tmp_path / "cache"
    a = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    # Same size, same mtime, other words: only a re-read can tell.
    st = corpus_file.stat()
    text = corpus_file.read_text()
    corpus_file.write_text(text.replace("cat", "owl"))
    os.utime(corpus_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    b = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert b.fingerprint == a.fingerprint and "owl" not in b.tokenizer.stoi        # trusted size and time
    c = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache, cache_check="hash")
    assert c.fingerprint != a.fingerprint and "owl" in c.tokenizer.stoi
    # The hash run re-pointed the index: a later stat check sees the new content.
    d = prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache)
    assert d.fingerprint == c.fingerprint
    with pytest.raises(ConfigError, match="cache_check"):
        prepare_stream(lm.files(corpus_file), Tokenizer(), cache_dir=cache, cache_check="mtime")


def test_concurrent_processes_build_once(tmp_path):
    """Ranks of one run stream the same files at once: one builds under the lock, the others wait and hit."""
    corpus = tmp_path / "big.txt"
    corpus.write_text(make_text(20000, seed=4) + "\n")    # long enough that unlocked builds would overlap
    cache = tmp_path / "cache"
    code = ("import sys, lm_magics as lm; from lm_magics.engine.streaming import prepare_stream; "
            "from lm_magics.engine.tokenizer import Tokenizer; print('ready', flush=True); sys.stdin.readline(); "
            "c = prepare_stream(lm.files(sys.argv[1]), Tokenizer(), cache_dir=sys.argv[2]); "
            "print(c.fingerprint, len(c.tokenizer), c.stats.notes[-1].rsplit('; ', 1)[1])")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(corpus), str(cache)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:                      # all imported: start them together
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120)[0].split(" ", 2) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({(o[0], o[1]) for o in outs}) == 1                   # same ids, same vocabulary
    assert [o[2].strip() for o in outs].count("built)") == 1         # one build, two cache hits
    assert len(_entries(cache)) == 1


def test_stream_batches_read_a_shard_of_the_file_like_batchify(tmp_path):
    """Windows are read from the file (not through the mapping); a rank's shard is a view at an offset."""
    ids = np.arange(1000, dtype=np.int32)
    ids.tofile(tmp_path / "t.i32")
    mm = np.memmap(tmp_path / "t.i32", dtype=np.int32, mode="r")
    shard = mm[333:777]
    ref = batchify(np.array(shard), 4)
    sb = StreamBatches(shard, 4)
    assert sb._file is not None and sb._file[1] == 333 * 4
    for (x1, y1), (x2, y2) in zip(windows(ref, 7), windows(sb, 7)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
