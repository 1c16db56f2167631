"""Sizes are checked before anything big is allocated (issue 11, "Sizes and settings").

The estimates are arithmetic on the settings; the limit is the machine's available memory, a
container's cgroup limit, or LM_MAGICS_MEMORY_LIMIT. Tests set the variable so that they do not depend
on the machine they run on, and never allocate what they refuse.
"""

from __future__ import annotations

import re
import time

import pytest
import torch

import lm_magics as lm
from lm_magics.engine import memory
from lm_magics.engine.model import LSTMLanguageModel


def _one_line(exc: BaseException, *patterns: str) -> str:
    msg = str(exc)
    assert isinstance(exc, lm.LMError) and "\n" not in msg and len(msg) < 500, msg
    for pattern in patterns:
        assert re.search(pattern, msg, re.I), msg
    return msg


@pytest.mark.parametrize("text, expected", [
    ("24GB", 24 * 10**9), ("24G", 24 * 10**9), ("512MiB", 512 * 2**20), ("2e10", 2 * 10**10),
    ("1.5 gb", 15 * 10**8), ("123456", 123456), ("off", None), ("0", None), ("unlimited", None),
])
def test_parse_size(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-5GB", "12 parsecs", ""])
def test_bad_limit_names_the_variable(text, monkeypatch):
    monkeypatch.setenv(memory.ENV, text or "?")
    with pytest.raises(lm.ConfigError) as exc:
        memory.limit()
    _one_line(exc.value, memory.ENV, r"e\.g\.")


@pytest.mark.parametrize("V, E, H, L, tie, adaptive", [
    (747, 64, 128, 1, True, False), (747, 64, 64, 2, True, False), (747, 64, 128, 3, False, False),
    (30_000, 128, 256, 2, True, True), (12_000, 256, 512, 1, False, True), (5, 4, 8, 1, True, True),
])
def test_parameter_count_is_exact(V, E, H, L, tie, adaptive):
    with torch.device("meta"):                       # shapes without storage
        net = LSTMLanguageModel(V, E, H, L, 0.1, tie, adaptive)
    assert sum(memory.lstm_parameters(V, E, H, L, tie, adaptive).values()) == net.num_parameters()


def test_the_limit_comes_from_meminfo_and_the_cgroup(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    files = {"/proc/meminfo": "MemTotal: 32000000 kB\nMemAvailable:   20000000 kB\n",
             "/proc/self/cgroup": "0::/job\n",
             "/sys/fs/cgroup/job/memory.max": "4000000000\n",
             "/sys/fs/cgroup/job/memory.current": "1500000000\n",
             "/sys/fs/cgroup/job/memory.stat": "anon 1000000000\ninactive_file 500000000\n"}
    monkeypatch.setattr(memory, "_read", files.get)
    have, source = memory.limit()
    assert have == 3_000_000_000 and "container" in source          # 4 GB - (1.5 GB - 0.5 GB of cache)
    files["/sys/fs/cgroup/job/memory.max"] = "max\n"                   # no container limit: the machine's
    assert memory.limit() == (20_000_000 * 1024, "available")
    monkeypatch.setenv(memory.ENV, "64GB")                             # the user knows better
    assert memory.limit() == (64 * 10**9, f"{memory.ENV}=64GB")
    monkeypatch.setenv(memory.ENV, "off")
    assert memory.limit()[0] is None


def test_cgroup_v1_limit(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    files = {"/proc/meminfo": "MemAvailable:   20000000 kB\n",
             "/sys/fs/cgroup/memory/memory.limit_in_bytes": "2000000000\n",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes": "500000000\n"}
    monkeypatch.setattr(memory, "_read", files.get)
    assert memory.limit()[0] == 1_500_000_000
    files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "9223372036854771712\n"   # v1's "no limit"
    assert memory.limit()[0] == 20_000_000 * 1024


# --------------------------------------------------------------------------------- training sizes

@pytest.mark.parametrize("hidden", [100_000_000, 30_000])
def test_huge_hidden_dim_is_refused_before_allocating(tiny_text, hidden, monkeypatch):
    monkeypatch.setenv(memory.ENV, "8GB")
    t0 = time.perf_counter()
    with pytest.raises(lm.ConfigError) as exc:
        lm.train(tiny_text, hidden_dim=hidden, epochs=1)
    msg = _one_line(exc.value, r"Training this model \(.*parameters", r"needs about [\d,.]+ [KMGT]B of memory",
                    r"smaller hidden_dim", memory.ENV)
    assert time.perf_counter() - t0 < 5                                # nothing was allocated
    if hidden == 30_000:
        # The figure was 14.4 GB (4 x 30,000 x (4 x 30,000 + ...) LSTM weights dominate; the
        # embedding counted at its smallest default adds a little).
        assert re.search(r"weights 14\.[4-6] GB", msg), msg


def test_given_sizes_are_refused_before_the_data_is_read(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)

    def rows():
        raise AssertionError("the data was read before the sizes were checked")
        yield "never"

    with pytest.raises(lm.ConfigError, match=r"smaller hidden_dim"):
        lm.train(rows(), hidden_dim=100_000_000)


def test_the_machines_memory_is_the_default_limit(tiny_text, monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    with pytest.raises(lm.ConfigError) as exc:
        lm.train(tiny_text, hidden_dim=100_000_000, epochs=1)
    _one_line(exc.value, r"available|container", memory.ENV)


def test_raising_the_limit_lets_training_run(tiny_text, tiny_options, monkeypatch):
    monkeypatch.setenv(memory.ENV, "20kB")
    with pytest.raises(lm.ConfigError) as exc:
        lm.train(tiny_text, **tiny_options)
    _one_line(exc.value, r"more than the 20\.0 kB LM_MAGICS_MEMORY_LIMIT=20kB")
    monkeypatch.setenv(memory.ENV, "off")
    assert lm.train(tiny_text, **{**tiny_options, "epochs": 1}).info["hidden_dim"] == 32


def test_the_fix_names_what_to_shrink():
    big_vocab = memory.training_estimate(50_000, 4096, 64, 1, False, False, 16, 35)
    big_batch = memory.training_estimate(1_000, 64, 128, 1, True, False, 100_000, 35)
    deep = memory.training_estimate(1_000, 64, 8192, 4, True, False, 16, 35)
    assert big_vocab.culprit == "embed_dim or max_vocab"
    assert big_batch.culprit == "batch_size or seq_len"
    assert deep.culprit == "hidden_dim or num_layers"


def test_continuing_counts_the_original_model():
    fresh = memory.training_estimate(1000, 64, 512, 1, True, False, 16, 35)
    cont = memory.training_estimate(1000, 64, 512, 1, True, False, 16, 35, keep_original=True)
    assert cont.total - fresh.total == fresh.parts["weights"]


# --------------------------------------------------------------------------------- beam search

@pytest.fixture(scope="module")
def words747():
    """A small model over about 750 words, the size of the issue's beam-search case."""
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(745)]
    text = "\n".join(" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(400))
    return lm.train(text, hidden_dim=32, embed_dim=16, max_steps=2, epochs=1, seed=0)

def test_absurd_beam_is_refused(words747, monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(lm.ConfigError) as exc:
        words747.generate("w1 w2", n_words=3, beam=1_000_000_000)
    _one_line(exc.value, r"Beam search with beam=1,000,000,000", r"smaller beam", memory.ENV)
    assert time.perf_counter() - t0 < 5


def test_wide_beam_is_checked_against_the_limit(words747, monkeypatch):
    # beam 100,000 over a few dozen words: the issue measured 2.1 GB on a 747-word model.
    need = memory.beam_bytes(100_000, 747, 3, 128, 1, 128)
    assert 1.5e9 < need < 3e9
    monkeypatch.setenv(memory.ENV, "500MB")
    with pytest.raises(lm.ConfigError) as exc:
        words747.generate("w1 w2", n_words=3, beam=100_000)
    _one_line(exc.value, r"beam=100,000 over 7\d\d words", r"500\.0 MB")
    assert words747.generate("w1 w2", n_words=3, beam=4)             # a usual beam is fine


def test_effective_beams_are_bounded_by_the_continuations():
    assert memory.effective_beams(100_000, 747, 1) == 747
    assert memory.effective_beams(100_000, 747, 3) == 100_000
    assert memory.effective_beams(10**9, 50, 2) == 2_500


def test_on_a_gpu_the_devices_free_memory_is_the_limit(monkeypatch):
    # No GPU is needed: torch.cuda.mem_get_info is what the check asks, so it is faked here.
    monkeypatch.delenv(memory.ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5 * 10**9, 80 * 10**9))
    cuda = torch.device("cuda:0")
    assert memory.limit(cuda) == (5 * 10**9, "free on cuda:0")
    est = memory.training_estimate(747, 64, 30_000, 1, True, False, 16, 35)     # ~80 GB in all, 14.4 GB weights
    with pytest.raises(lm.ConfigError) as exc:
        memory.check_training(est, cuda)
    _one_line(exc.value, r"more than the 5\.0 GB free on cuda:0", r"smaller hidden_dim")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (140 * 10**9, 141 * 10**9))
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 10 * 10**9)    # the host builds the weights first
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    with pytest.raises(lm.ConfigError) as exc:
        memory.check_training(est, cuda)
    _one_line(exc.value, r"its weights, built on the host first", r"10\.0 GB available")
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 100 * 10**9)
    memory.check_training(est, cuda)                                             # fits on an H200-sized GPU
