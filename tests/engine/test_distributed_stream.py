"""Streamed corpora under torchrun (2 ranks, gloo, CPU): each rank reads its shard of the memory-mapped
token cache, peak memory per rank does not grow with the corpus, and a rank that dies ends the run with a
one-line error while an earlier model file stays as it was."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import lm_magics as lm
from lm_magics.cli import build_parser, torchrun_args
from lm_magics.engine.streaming import prepare_stream
from lm_magics.engine.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_text, start_until_a_step  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--hidden-dim", "32", "--embed-dim", "16", "--batch-size", "4", "--seq-len", "10", "--seed", "0",
         "--threads", "1", "--quiet"]
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
# Fixed sizes: auto_config would pick a bigger network for the bigger corpus and blur the comparison.
SIZES = ["--num-layers", "1", "--dropout", "0.1", "--lr", "0.01", "--epochs", "1"]


def _train(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lm_magics", "train", *args, "--nproc", "2"]
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_stream_flags_reach_the_ranks():
    args = build_parser().parse_args(["train", "x.txt", "-o", "m.lm", "--nproc", "2", "--stream",
                                      "--cache-dir", "/c", "--cache-check", "hash"])
    assert torchrun_args(args) == ["train", "x.txt", "-o", "m.lm", "--stream", "--cache-dir", "/c",
                                   "--cache-check", "hash"]


def test_peak_memory_per_rank_stays_flat_as_the_corpus_grows(tmp_path):
    """1 MB and 8 MB of text, caches built beforehand: the training ranks' peak RSS must not follow the
    corpus. (In memory, the same runs grow by ~13 MB per rank: the ids, their int64 batch copy.)"""
    text = make_text(220000, seed=5) + "\n"
    cache = tmp_path / "cache"
    peaks = {}
    for name, part in (("small", text[:len(text) // 8]), ("big", text)):
        corpus = tmp_path / f"{name}.txt"
        corpus.write_text(part)
        prepare_stream(lm.files(corpus), Tokenizer(), seed=0, val_fraction=0.1, cache_dir=cache)
        out = tmp_path / f"{name}.lm"
        proc = _train(str(corpus), "-o", str(out), "--cache-dir", str(cache), "--max-steps", "5", *SIZES, *FLAGS)
        assert proc.returncode == 0, proc.stderr[-3000:]
        shards = lm.load(out).meta["ddp"]["shards"]
        assert all(s["streamed"] for s in shards) and len(shards) == 2
        peaks[name] = (max(s["peak_rss_mb"] for s in shards), corpus.stat().st_size / 2**20)
    (small, small_mb), (big, big_mb) = peaks["small"], peaks["big"]
    # 7 MB more text: in memory a rank grows by ~13 MB (twice the text); streamed it must stay well under the
    # text's own growth (peak RSS varies by a few MB from run to run, so no tighter bound than that).
    assert big - small < 0.75 * (big_mb - small_mb), peaks


def _rank_pid(marker: str, rank: str) -> int:
    """The pid of the torchrun worker with RANK=rank whose command line mentions marker (our own children)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker not in (d / "cmdline").read_bytes().decode(errors="replace"):
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"LOCAL_RANK=" + rank.encode() in env:
            return int(d.name)
    return 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the rank")
def test_a_rank_that_dies_ends_the_run_and_keeps_the_old_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000, seed=2) + "\n")
    out = tmp_path / "model.lm"
    old = _train(str(corpus), "-o", str(out), "--cache-dir", str(tmp_path / "cache"), "--max-steps", "3", *FLAGS)
    assert old.returncode == 0, old.stderr[-3000:]
    before = out.read_bytes()
    cmd = [sys.executable, "-m", "lm_magics", "train", str(corpus), "-o", str(out), "--nproc", "2",
           "--cache-dir", str(tmp_path / "cache"), "--epochs", "100000", *FLAGS[:-1]]
    log = tmp_path / "err.txt"
    proc = start_until_a_step(cmd, log, ENV, REPO)
    pid = _rank_pid(str(out), "1")
    assert pid, log.read_text()[-2000:]
    os.kill(pid, signal.SIGKILL)                      # rank 1 dies mid-run
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the other rank hung after rank 1 died")
    stderr = log.read_text()
    assert proc.returncode == 1
    errors = [ln for ln in stderr.strip().splitlines() if ln.startswith("lm-magics: error:")]
    assert len(errors) == 1 and "training process 1 was killed by SIGKILL" in errors[0], stderr[-3000:]
    assert "was left as it was" in errors[0] and "SIGTERM" not in stderr
    assert out.read_bytes() == before                 # the earlier model, whole
    assert not list(tmp_path.glob(".model.lm.*"))
