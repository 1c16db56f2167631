"""torchrun --nproc_per_node=2 (gloo, CPU): different shards per rank, loss falls, rank 0 saves a model that
loads and predicts, same seed -> same model; the one training loop's stops (max_time, no validation text,
Ctrl-C) behave under two ranks as in one process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lm_magics as lm
from lm_magics.cli import torchrun_args, torchrun_command
from lm_magics.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_text, start_until_a_step  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--epochs", "3", "--hidden-dim", "32", "--embed-dim", "16", "--batch-size", "4", "--seq-len", "10",
         "--seed", "0", "--threads", "1", "--quiet"]


ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def _torchrun(corpus: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = torchrun_command(2, ["train", str(corpus), "-o", str(out), *(flags or FLAGS)])
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module", autouse=True)
def _own_token_cache(tmp_path_factory):
    """File sources stream under torchrun: keep their token cache out of the home folder."""
    ENV["LM_MAGICS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    corpus = tmp / "corpus.txt"
    corpus.write_text(make_text(300, seed=2) + "\n")
    a = _torchrun(corpus, tmp / "a.lm")
    b = _torchrun(corpus, tmp / "b.lm")
    return tmp, a, b


def test_ranks_train_on_different_shards(runs):
    tmp, proc, _ = runs
    model = lm.load(tmp / "a.lm")
    ddp = model.meta["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    s0, s1 = sorted(ddp["shards"], key=lambda s: s["rank"])
    assert s0["stop"] == s1["start"] and s0["start"] == 0          # contiguous, no overlap
    assert s0["fingerprint"] != s1["fingerprint"]
    assert "[rank 0/2]" in proc.stderr and "[rank 1/2]" in proc.stderr


def test_loss_fell_and_model_loads_and_predicts(runs):
    tmp, proc, _ = runs
    model = lm.load(tmp / "a.lm")
    hist = model.meta["history"]
    assert hist[-1][1] < hist[0][1]                                  # mean training loss per epoch fell
    for s in model.meta["ddp"]["shards"]:
        assert s["last_loss"] < s["first_loss"]
    assert len(model.next_words("the cat", k=3)) == 3
    assert "saved" in proc.stdout
    assert not list(tmp.glob(".a.lm.*"))                             # no temp file left by the atomic save


def test_same_seed_same_model(runs):
    tmp, _, _ = runs
    a, b = lm.load(tmp / "a.lm").net.state_dict(), lm.load(tmp / "b.lm").net.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_rebuilds_arguments_without_nproc():
    from lm_magics.cli import build_parser

    args = build_parser().parse_args(["train", "x.txt", "-o", "m.lm", "--nproc", "2", "--epochs", "3", "--quiet"])
    assert torchrun_args(args) == ["train", "x.txt", "-o", "m.lm", "--quiet", "--epochs", "3"]
    cmd = torchrun_command(2, ["train"])
    assert cmd[1] == "-c" and "torchrun_quietly" in cmd[2] and cmd[3] == "--standalone"
    assert "--nproc_per_node=2" in cmd and cmd[-3:] == ["-m", "lm_magics", "train"]
    with pytest.raises(ConfigError, match="nproc"):
        torchrun_command(0, [])


def test_without_validation_text_every_epoch_runs(runs):
    tmp = runs[0]
    flags = [f for f in FLAGS if f != "3"]
    flags[flags.index("--epochs") + 1:flags.index("--epochs") + 1] = ["4"]
    _torchrun(tmp / "corpus.txt", tmp / "noval.lm", *flags, "--val-fraction", "0")
    meta = lm.load(tmp / "noval.lm").meta
    assert meta["epochs_trained"] == 4 and meta["val_ppl"] is None


def test_max_time_ends_every_rank(runs):
    tmp = runs[0]
    flags = [f if f != "3" else "100000" for f in FLAGS]
    started = time.monotonic()
    _torchrun(tmp / "corpus.txt", tmp / "timed.lm", *flags, "--max-time", "2")
    assert time.monotonic() - started < 120          # not 100,000 epochs
    model = lm.load(tmp / "timed.lm")
    assert not model.meta["interrupted"] and model.meta["epochs_trained"] < 100000


def test_ctrl_c_ends_every_rank_after_the_same_step(runs):
    tmp = runs[0]
    flags = [f if f not in ("3", "--quiet") else "100000" for f in FLAGS if f != "--quiet"]
    flags += ["--patience", "100000"]                  # no early stop before the Ctrl-C comes
    out = tmp / "stopped.lm"
    log = tmp / "stopped.err"
    cmd = torchrun_command(2, ["train", str(tmp / "corpus.txt"), "-o", str(out), *flags])
    proc = start_until_a_step(cmd, log, ENV, REPO)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)                # Ctrl-C in a terminal reaches the whole group
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the ranks hung after Ctrl-C")
    assert proc.returncode == 130                     # as in one process; torchrun's traceback is not shown
    err = log.read_text()
    assert "Traceback" not in err and "SignalException" not in err, err[-3000:]
    model = lm.load(out)
    assert model.meta["interrupted"] is True
    shards = model.meta["ddp"]["shards"]
    assert len(shards) == 2                           # both ranks reached the end together


def test_every_rank_refuses_a_size_that_cannot_fit(tmp_path):
    # Issue 11: each rank estimates its memory before building the network; all stop together, none hangs.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(100, seed=2) + "\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    env.pop("LM_MAGICS_MEMORY_LIMIT", None)
    cmd = torchrun_command(2, ["train", str(corpus), "-o", str(tmp_path / "m.lm"), "--hidden-dim", "100000000",
                               "--quiet"])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("lm-magics: error:")]
    # Every rank refuses; once one has exited torchrun may end the others before they print, so at least
    # one line, and every line that made it out is the refusal.
    assert refusals and all("needs about" in ln and "smaller hidden_dim" in ln for ln in refusals), \
        proc.stderr[-3000:]
    assert not (tmp_path / "m.lm").exists()


def test_a_failed_rank_ends_nproc_with_one_line_errors_only(tmp_path):
    """`train --nproc 2` on text too short for two shards: ONE line, the ranks' own error and what became of
    the file, and nothing of torchrun's (no banner, traceback, failure table, error log lines, or a false
    'killed by SIGTERM' for the rank torchrun stopped)."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("hi\n")
    env = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}       # torchrun's banner would name it
    proc = subprocess.run([sys.executable, "-m", "lm_magics", "train", str(corpus), "-o", str(tmp_path / "m.lm"),
                           "--nproc", "2", "--quiet"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lm-magics: error: "), proc.stderr[-3000:]
    assert "Too little text for 2 processes" in lines[0] and "drop --nproc" in lines[0]
    assert "no model was written" in lines[0] and "SIGTERM" not in lines[0]
    assert not (tmp_path / "m.lm").exists()


def test_a_rank_killed_by_a_signal_is_named(monkeypatch, capsys):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    import torch.distributed.run as torchrun
    from lm_magics.cli import torchrun_quietly

    def main(argv):
        raise ChildFailedError("lm_magics", {1: ProcessFailure(local_rank=1, pid=1, exitcode=-signal.SIGKILL,
                                                               error_file="<N/A>")})

    monkeypatch.setattr(torchrun, "main", main)
    monkeypatch.delenv("LOGLEVEL", raising=False)
    assert torchrun_quietly(["--standalone"]) == 1
    assert capsys.readouterr().err == ("lm-magics: error: training process 1 was killed by SIGKILL "
                                       "(out of memory?)\n")
    assert "LOGLEVEL" not in os.environ                  # the ranks see the user's logging setting


def test_the_launcher_says_one_true_line_whatever_the_ranks_left(tmp_path, monkeypatch, capsys):
    """The cause of a failed `--nproc` run: a rank's own error before a killed rank, a killed rank before
    the SIGTERM torchrun sends the survivors, and a rank that only lost another last."""
    from lm_magics import cli

    cases = [
        ({"error.1": "epochs must be above 0.", "signal.0": "training process 0 was killed by SIGTERM"},
         "epochs must be above 0"),
        ({"signal.0": "training process 0 was killed by SIGTERM",
          "signal.1": "training process 1 was killed by SIGKILL (out of memory?)",
          "lost.0": "training process 0 lost another training process (x); nothing was saved"},
         "training process 1 was killed by SIGKILL"),
        ({"lost.0": "training process 0 lost another training process (x); nothing was saved"}, "lost another"),
        ({"launcher.0": "torchrun could not start the training processes (address in use)"}, "address in use"),
        ({}, "torchrun exit code 1"),
    ]
    (tmp_path / "t.txt").write_text("the cat sat\n" * 50)
    for files, expected in cases:
        def launch(nproc, args, report=None, files=files):
            for name, text in files.items():
                (Path(report) / name).write_text(text)
            return 1

        monkeypatch.setattr(cli, "launch", launch)
        assert cli.main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--nproc", "2"]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and expected in err and "no model was written" in err, err
    monkeypatch.setattr(cli, "launch", lambda *a, **k: pytest.fail("launched with a bad option"))
    assert cli.main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--nproc", "2",
                     "--epochs", "0"]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_launcher_failure_is_one_line(monkeypatch, capsys):
    import torch.distributed.run as torchrun
    from lm_magics.cli import torchrun_quietly

    def main(argv):
        raise RuntimeError("The server socket has failed to listen on any local network address.\nmore")

    monkeypatch.setattr(torchrun, "main", main)
    assert torchrun_quietly(["--standalone"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not start the training processes" in err
