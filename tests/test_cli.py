"""The command line, through main([...]) and one real `python -m lm_magics --help`."""

from __future__ import annotations

import gzip
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lm_magics as lm
from lm_magics.cli import build_parser, main
from lm_magics.config import TrainConfig, option_specs

from conftest import make_special

TINY = ["--hidden-dim", "32", "--embed-dim", "16", "--epochs", "3", "--lr", "0.03", "--seed", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_text):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "text.txt").write_text(tiny_text)
    path = folder / "m.lm"
    assert main(["train", str(folder / "text.txt"), "-o", str(path), "--quiet", *TINY]) == 0
    return path


def test_train_writes_a_loadable_model(model_file, tiny_text, capsys):
    model = lm.load(model_file)
    assert model.info["hidden_dim"] == 32 and model.meta["rows"] == len(tiny_text.splitlines())


def test_train_output_and_continue(model_file, tmp_path, capsys):
    (tmp_path / "more.txt").write_text("The cat sat on the mat.\n" * 10)
    out = tmp_path / "more.lm"
    assert main(["train", str(tmp_path / "*.txt"), "-o", str(out), "--init", str(model_file), "--quiet",
                 "--epochs", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "Trained" in text and f"saved {out}" in text
    assert lm.load(out).vocab == lm.load(model_file).vocab and lm.load(out).meta["runs"] == 2


def test_train_and_score_read_stdin(model_file, tmp_path, tiny_text, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(tiny_text))
    out = tmp_path / "stdin.lm"
    assert main(["train", "-", "-o", str(out), "--quiet", *TINY, "--epochs", "1"]) == 0
    assert lm.load(out).meta["rows"] == len(tiny_text.splitlines())
    monkeypatch.setattr(sys, "stdin", io.StringIO("The cat sat.\nThe dog ran.\n"))
    capsys.readouterr()
    assert main(["score", str(model_file), "-"]) == 0
    assert [r.split("\t")[1] for r in capsys.readouterr().out.splitlines()] == ["The cat sat.", "The dog ran."]


def test_complete(model_file, capsys):
    assert main(["complete", str(model_file), "the", "cat", "-k", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = lm.load(model_file).next_words("the cat", k=3)
    assert [r[0] for r in rows] == [w for w, _ in expected]
    assert [float(r[1]) for r in rows] == pytest.approx([p for _, p in expected], abs=1e-4)


def test_generate_is_seeded(model_file, capsys):
    assert main(["generate", str(model_file), "The", "dog", "-n", "5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(model_file), "The", "dog", "--n-words", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("The dog")
    expected = lm.load(model_file).generate("The dog", n_words=5, seed=1, include_prefix=True)
    assert first == expected.rstrip("\n") + "\n"


def test_score_per_line(model_file, tmp_path, capsys):
    f = tmp_path / "score.txt"
    f.write_text("The cat sat on the mat.\n\nThe dog ran to the river.\n")
    assert main(["score", str(model_file), str(f)]) == 0
    rows = [line.split("\t", 1) for line in capsys.readouterr().out.splitlines()]
    assert [r[1] for r in rows] == ["The cat sat on the mat.", "", "The dog ran to the river."]
    assert math.isnan(float(rows[1][0]))
    expected = lm.load(model_file).score(["The cat sat on the mat."])[0]
    assert float(rows[0][0]) == pytest.approx(expected, rel=1e-3)


def test_score_with_the_baseline_beside(model_file, tmp_path, capsys):
    f = tmp_path / "score.txt"
    f.write_text("The cat sat on the mat.\n\nThe dog ran to the river.\n")
    assert main(["score", str(model_file), str(f), "--baseline"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [len(r) for r in rows] == [3, 3, 3] and rows[2][2] == "The dog ran to the river."
    assert math.isnan(float(rows[1][0])) and math.isnan(float(rows[1][1]))
    model = lm.load(model_file)
    assert float(rows[0][0]) == pytest.approx(model.score(["The cat sat on the mat."])[0], rel=1e-3)
    assert float(rows[0][1]) == pytest.approx(model.baseline.score(["The cat sat on the mat."])[0], rel=1e-3)
    assert main(["score", "--help"]) == 0 and "--baseline" in capsys.readouterr().out

    ngram = tmp_path / "ng.lm"
    model.baseline.save(ngram)
    assert main(["score", str(ngram), str(f), "--baseline"]) == 1
    assert "n-gram itself" in capsys.readouterr().err
    model.strip(baseline=True).save(tmp_path / "bare.lm")
    assert main(["score", str(tmp_path / "bare.lm"), str(f), "--baseline"]) == 1
    assert "no n-gram baseline" in capsys.readouterr().err


def test_score_prints_the_unusualness(model_file, tmp_path, capsys):
    f = tmp_path / "score.txt"
    f.write_text("The cat sat on the mat.\n\nzebra quantum 0x7f3a 0x7f3a\n")
    assert main(["score", str(model_file), str(f), "--unusual", "--baseline"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [len(r) for r in rows] == [4, 4, 4] and rows[2][3] == "zebra quantum 0x7f3a 0x7f3a"
    model = lm.load(model_file)
    texts = ["The cat sat on the mat.", "zebra quantum 0x7f3a 0x7f3a"]
    want = model.unusual(texts)
    assert [float(rows[0][2]), float(rows[2][2])] == pytest.approx(list(want), rel=1e-3)
    assert float(rows[0][0]) == pytest.approx(model.score(texts[:1])[0], rel=1e-3)
    assert math.isnan(float(rows[1][2]))
    assert main(["score", "--help"]) == 0 and "--unusual" in capsys.readouterr().out


def test_score_streams_the_file_in_chunks(model_file, tmp_path, capsys, monkeypatch):
    import lm_magics.cli as cli

    lines = ["The cat sat.", "", "The dog ran to the river.", "A bird.", "The cat ran.", ""]
    f = tmp_path / "many.txt"
    f.write_text("\n".join(lines) + "\n")
    assert main(["score", str(model_file), str(f)]) == 0
    whole = capsys.readouterr().out
    monkeypatch.setattr(cli, "_SCORE_LINES", 2)          # three chunks read, scored and written in turn
    assert main(["score", str(model_file), str(f)]) == 0
    assert capsys.readouterr().out == whole
    assert [r.split("\t", 1)[1] for r in whole.splitlines()] == lines


def test_info(model_file, capsys):
    assert main(["info", str(model_file)]) == 0
    info = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert info["hidden_dim"] == "32" and info["vocab_size"] == str(len(lm.load(model_file).vocab))


def test_help_is_generated_from_the_config(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for spec in option_specs(TrainConfig):
        assert spec.flag in out
    assert "[default: from data]" in out


def _readme_exit_codes() -> dict:
    """The exit codes the README promises, by kind of mistake (the test below holds the CLI to them)."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    m = re.search(r"the exit code is (\d) for a usage mistake \(a command line that cannot be parsed: .*?\) "
                  r"and (\d) for a problem with the data, an option value \(of the wrong kind or out of range: "
                  r".*?\) or a model file", readme)
    assert m, "README.md no longer states the CLI's exit-code rule in the words this test checks"
    return {"usage": int(m.group(1)), "value": int(m.group(2)), "data": int(m.group(2)), "model": int(m.group(2))}


# Every way the CLI can fail, by the README's kinds: usage (the command line cannot be parsed), value (an
# option value of the wrong kind or out of range), data, model (the model file).
# MODEL: a good model file; TEXT: a text file; FIFO, SOCK, DEV: special files; LATIN1, GZIP: not UTF-8.
CLI_ERRORS = [
    ("usage", [], "the following arguments are required"),
    ("usage", ["frob"], "invalid choice"),
    ("usage", ["train", "TEXT"], "-o/--output"),
    ("usage", ["train", "-o", "m.lm"], "the following arguments are required: FILE"),
    ("usage", ["train", "TEXT", "-o", "m.lm", "--bogus"], "unrecognized arguments"),
    ("usage", ["train", "TEXT", "-o", "m.lm", "--epochs"], "expected one argument"),
    ("usage", ["train", "-", "TEXT", "-o", "m.lm"], "'-' (stdin) cannot be combined with files"),
    ("usage", ["train", "-", "-o", "m.lm", "--nproc", "2"], "--nproc works with files"),
    ("usage", ["train", "TEXT", "-o", "m.lm", "--nproc", "2", "--init", "MODEL"], "--nproc works with files"),
    ("usage", ["complete"], "required: MODEL"),
    ("usage", ["complete", "MODEL", "-k"], "expected one argument"),
    ("usage", ["generate", "MODEL", "--top-k"], "expected one argument"),
    ("usage", ["score", "MODEL"], "required: FILE"),
    ("usage", ["score", "MODEL", "TEXT", "extra"], "unrecognized arguments"),
    ("usage", ["info"], "required: MODEL"),
    ("usage", ["info", "MODEL", "--verbose"], "unrecognized arguments"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--epochs", "many"], "--epochs: expected a whole number"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--epochs", "-2"], "epochs must be above 0"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--lr", "nan"], "lr must be a finite number"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--dropout", "x"], "--dropout: expected a number"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--level", "bpe"], "--level: invalid choice 'bpe'"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--lowercase", "maybe"], "--lowercase: expected true or false"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--device", "meta"], "Unknown device 'meta'"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--device", "cuda:x"], "Unknown device 'cuda:x'"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--seed", str(2**64)], "seed must be at most"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--seed", "-1"], "seed must be at least 0"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--encoding", "nope"], "Unknown text encoding 'nope'"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--nproc", "x"], "--nproc: expected a whole number"),
    ("value", ["train", "TEXT", "-o", "m.lm", "--nproc", "0"], "--nproc must be a whole number of at least 1"),
    ("value", ["complete", "MODEL", "the", "-k", "0"], "-k must be at least 1"),
    ("value", ["complete", "MODEL", "the", "-k", "-3"], "-k must be at least 1"),
    ("value", ["complete", "MODEL", "the", "-k", "many"], "-k: expected a whole number"),
    ("value", ["generate", "MODEL", "the", "--temperature", "1e308"], "temperature must be at most 100"),
    ("value", ["generate", "MODEL", "the", "--temperature", "inf"], "temperature must be a finite number"),
    ("value", ["generate", "MODEL", "the", "--top-p", "nan"], "top_p must be a finite number"),
    ("value", ["generate", "MODEL", "the", "--top-p", "0"], "top_p must be above 0"),
    ("value", ["generate", "MODEL", "the", "--seed", str(2**64)], "seed must be at most"),
    ("value", ["generate", "MODEL", "the", "-n", "0"], "n_words must be above 0"),
    ("value", ["generate", "MODEL", "the", "--beam", "wide"], "--beam: expected a whole number"),
    ("value", ["score", "MODEL", "TEXT", "--encoding", "rot13"], "Unknown text encoding 'rot13'"),
    ("data", ["train", "/nonexistent/*.txt", "-o", "m.lm"], "No file matches"),
    ("data", ["train", "/nonexistent/t.txt", "-o", "m.lm"], "File not found"),
    ("data", ["train", "FIFO", "-o", "m.lm"], "is a named pipe (FIFO), not a regular file"),
    ("data", ["train", "SOCK", "-o", "m.lm"], "is a socket, not a regular file"),
    ("data", ["train", "DEV", "-o", "m.lm"], "is a character device, not a regular file"),
    ("data", ["train", "LATIN1", "-o", "m.lm"], "is not UTF-8 text (it looks like Latin-1 text"),
    ("data", ["train", "GZIP", "-o", "m.lm"], "is not UTF-8 text (it looks like gzip-compressed data"),
    ("data", ["train", "EMPTY", "-o", "m.lm"], "No text to train on"),
    ("data", ["score", "MODEL", "/nonexistent/t.txt"], "Cannot read"),
    ("data", ["score", "MODEL", "FIFO"], "is a named pipe (FIFO), not a regular file"),
    ("data", ["score", "MODEL", "DEV"], "is a character device"),
    ("data", ["score", "MODEL", "LATIN1"], "--encoding latin-1"),
    ("data", ["score", "MODEL", "UTF16"], "is not UTF-8 text (it looks like UTF-16 text with a byte-order mark"),
    ("model", ["complete", "/nonexistent/m.lm", "the"], "not found"),
    ("model", ["complete", "FIFO", "the"], "is a named pipe (FIFO), not a model file"),
    ("model", ["info", "SOCK"], "is a socket, not a model file"),
    ("model", ["info", "DEV"], "is a character device, not a model file"),
    ("model", ["generate", "TEXT", "the"], "is not a model file"),
    ("model", ["score", "FIFO", "TEXT"], "not a model file"),
    ("model", ["train", "TEXT", "-o", "m.lm", "--init", "FIFO"], "is a named pipe (FIFO), not a model file"),
]


@pytest.mark.parametrize("kind, argv, expected", CLI_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_error_exits_with_the_readme_code(kind, argv, expected, model_file, capsys, tmp_path, monkeypatch,
                                               special_files):
    from conftest import no_hang

    (tmp_path / "t.txt").write_text("The cat sat on the mat.\n" * 20)
    (tmp_path / "latin1.txt").write_bytes("Le café est près de la forêt.\n".encode("latin-1") * 20)
    (tmp_path / "utf16.txt").write_text("The cat sat on the mat.\n" * 20, encoding="utf-16")
    (tmp_path / "g.txt.gz").write_bytes(gzip.compress(b"The cat sat on the mat.\n" * 20))
    (tmp_path / "empty.txt").write_text("")
    names = {"MODEL": model_file, "TEXT": tmp_path / "t.txt", "LATIN1": tmp_path / "latin1.txt",
             "UTF16": tmp_path / "utf16.txt", "GZIP": tmp_path / "g.txt.gz", "EMPTY": tmp_path / "empty.txt",
             "FIFO": special_files["named pipe"], "SOCK": special_files["socket"],
             "DEV": special_files["character device"]}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = [str(names.get(a, a)) for a in argv]
    code = no_hang(lambda: main(argv), unblock=special_files["named pipe"])
    err = capsys.readouterr().err.strip()
    assert code == _readme_exit_codes()[kind], (kind, err)
    assert expected in err and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "m.lm").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _closed() -> io.StringIO:
    s = io.StringIO("never read")
    s.close()
    return s


@pytest.mark.parametrize("stdin, expected", [
    (None, "stdin is closed"),                        # Python started with descriptor 0 closed
    (_closed(), "stdin is closed"),
    (_Terminal("never read"), "stdin is a terminal, not a pipe or file"),
], ids=["none", "closed", "terminal"])
@pytest.mark.parametrize("command", ["train", "score"])
def test_dash_without_a_pipe_is_a_data_error(command, stdin, expected, model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", stdin)
    argv = ["train", "-", "-o", str(tmp_path / "m.lm")] if command == "train" else ["score", str(model_file), "-"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and "pipe text in" in err and "\n" not in err
    assert not (tmp_path / "m.lm").exists()


def _stdin_bytes(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)), encoding="utf-8")


def test_stdin_is_checked_and_decoded_like_files(model_file, tmp_path, capsys, monkeypatch):
    latin = "Le café est près de la forêt.\n".encode("latin-1") * 20
    monkeypatch.setattr(sys, "stdin", _stdin_bytes(latin))
    assert main(["score", str(model_file), "-"]) == 1
    assert "'<stdin>' is not UTF-8 text (it looks like Latin-1 text" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _stdin_bytes(latin))
    assert main(["score", str(model_file), "-", "--encoding", "latin-1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("\tLe café est près de la forêt.")
    monkeypatch.setattr(sys, "stdin", _stdin_bytes(latin))
    out = tmp_path / "latin.lm"
    assert main(["train", "-", "-o", str(out), "--encoding", "latin-1", "--quiet", *TINY, "--epochs", "1"]) == 0
    assert {"café", "forêt"} <= set(lm.load(out).vocab)
    monkeypatch.setattr(sys, "stdin", _stdin_bytes(b""))         # </dev/null: nothing to score, nothing said
    capsys.readouterr()
    assert main(["score", str(model_file), "-"]) == 0 and capsys.readouterr().out == ""


def test_train_and_score_files_in_another_encoding(model_file, tmp_path, capsys):
    p = tmp_path / "u16.txt"
    p.write_text("The cat sat on the mat.\nLe café est près de la forêt.\n" * 10, encoding="utf-16")
    out = tmp_path / "u16.lm"
    assert main(["train", str(p), "-o", str(out), "--encoding", "utf-16", "--quiet", *TINY, "--epochs", "1"]) == 0
    assert {"café", "forêt", "cat"} <= set(lm.load(out).vocab)
    capsys.readouterr()
    assert main(["score", str(model_file), str(p), "--encoding", "utf-16"]) == 0
    assert [r.split("\t")[1] for r in capsys.readouterr().out.splitlines()[:2]] == [
        "The cat sat on the mat.", "Le café est près de la forêt."]


@pytest.mark.parametrize("redirect", ["<&-", "</dev/null"])
def test_a_real_process_with_stdin_closed_or_empty(model_file, tmp_path, redirect):
    import os
    import shlex

    if not os.path.exists("/bin/sh"):
        pytest.skip("needs a POSIX shell to start a process with stdin closed")
    cmd = (f"{shlex.quote(sys.executable)} -m lm_magics train - -o {shlex.quote(str(tmp_path / 'm.lm'))} "
           f"--quiet {redirect}")
    done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(lm.__file__).resolve().parents[1])})
    assert done.returncode == 1, done.stderr
    assert ("stdin is closed" if redirect == "<&-" else "No text to train on") in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_option_value_is_an_lm_error(tmp_path, tiny_text, capsys):
    (tmp_path / "t.txt").write_text(tiny_text)
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--epochs", "-2"]) == 1
    assert "epochs must be above 0" in capsys.readouterr().err
    assert not (tmp_path / "m.lm").exists()


def test_train_hook_for_other_front_ends():
    # `train --nproc N` (torchrun) plugs in here: the train sub-command dispatches to cli._run_train.
    from lm_magics import cli

    args = build_parser().parse_args(["train", "a.txt", "-o", "m.lm"])
    assert args.run is cli._run_train


def test_python_dash_m_help():
    done = subprocess.run([sys.executable, "-m", "lm_magics", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for command in ("train", "complete", "generate", "score", "info"):
        assert command in done.stdout


# ------------------------------------------------------------------- the output, checked before training
# Issue 11: `train -o` that cannot be written is refused in one line before any training starts.

def _no_training(monkeypatch):
    from lm_magics import api, cli

    def trained(*a, **k):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(api, "train", trained)
    monkeypatch.setattr(cli, "launch", trained)


@pytest.mark.parametrize("kind, expected", [
    ("directory", "is a directory"), ("fifo", "named pipe"), ("chardev", "character device"),
    ("missing-folder", "does not exist"), ("file-parent", "is a file, not a folder"),
])
@pytest.mark.parametrize("nproc", [None, "2"])
def test_train_refuses_a_bad_output_before_training(tmp_path, tiny_text, capsys, monkeypatch, kind, expected,
                                                    nproc):
    (tmp_path / "t.txt").write_text(tiny_text)
    if kind == "missing-folder":
        out = tmp_path / "no" / "m.lm"
    elif kind == "file-parent":
        out = make_special("file", tmp_path / "NODE") / "m.lm"
    else:
        out = make_special(kind, tmp_path / "NODE")
    _no_training(monkeypatch)
    argv = ["train", str(tmp_path / "t.txt"), "-o", str(out), "--quiet"] + (["--nproc", nproc] if nproc else [])
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err, err


def test_train_refuses_a_read_only_or_full_output_before_training(tmp_path, tiny_text, capsys, monkeypatch):
    import errno
    import os
    import tempfile

    (tmp_path / "t.txt").write_text(tiny_text)
    _no_training(monkeypatch)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as mp:
        mp.setattr(tempfile, "mkstemp", read_only)
        assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--quiet"]) == 1
    assert "read-only" in capsys.readouterr().err
    with monkeypatch.context() as mp:
        mp.setattr(os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 10, 10, 0, 255)))
        assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--quiet"]) == 1
    assert "disk is full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_train_refuses_to_write_over_its_own_input(tmp_path, tiny_text, capsys, monkeypatch):
    (tmp_path / "t.txt").write_text(tiny_text)
    _no_training(monkeypatch)
    assert main(["train", str(tmp_path / "*.txt"), "-o", str(tmp_path / "t.txt"), "--quiet"]) == 1
    assert "also an input file" in capsys.readouterr().err
    assert (tmp_path / "t.txt").read_text() == tiny_text


def test_demo_checks_its_output_first(tmp_path, capsys, monkeypatch):
    from lm_magics import demo

    monkeypatch.setattr(demo, "stdlib_docstrings", lambda: pytest.fail("the demo started before checking -o"))
    assert main(["demo", "-o", str(tmp_path), "--quiet"]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_ddp_rank_0_checks_the_output_before_training(tmp_path, tiny_text, capsys, monkeypatch):
    # Under torchrun (`torchrun -m lm_magics train ...` without the --nproc launcher) rank 0 checks.
    from lm_magics import cli

    (tmp_path / "t.txt").write_text(tiny_text)
    for k, v in dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(cli, "_train_as_rank", lambda *a, **k: pytest.fail("training started"))
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path), "--quiet"]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_continue_refuses_settings_it_cannot_apply(model_file, tmp_path, tiny_text, capsys):
    (tmp_path / "t.txt").write_text(tiny_text)
    out = tmp_path / "k2.lm"
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(out), "--init", str(model_file), "--quiet",
                 "--level", "char", "--hidden-dim", "999", "--lowercase", "true"]) == 1
    err = capsys.readouterr().err.strip()
    assert "level='char'" in err and "hidden_dim=999" in err and "lowercase=True" in err and "\n" not in err
    assert not out.exists()


def test_huge_sizes_are_one_line(tmp_path, tiny_text, capsys):
    (tmp_path / "t.txt").write_text(tiny_text)
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), "--hidden-dim", "100000000",
                 "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "needs about" in err and "LM_MAGICS_MEMORY_LIMIT" in err and "\n" not in err
    assert not (tmp_path / "m.lm").exists()


def test_train_ngram_kind(tmp_path, tiny_text, capsys):
    (tmp_path / "t.txt").write_text(tiny_text)
    out = tmp_path / "ng.lm"
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(out), "--kind", "ngram", "--quiet"]) == 0
    assert lm.load(out).kind == "ngram"
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(out), "--kind", "ngram", "--epochs", "2"]) == 1
    assert "kind='ngram' has no epochs" in capsys.readouterr().err
@pytest.mark.parametrize("redirect, code, expected", [
    (">&-", 1, "stdout is closed"),
    ("> /dev/full", 1, "cannot write the output: No space left on device"),
    ("| head -n 1", 0, ""),
], ids=["closed", "full", "pipe-closed-early"])
def test_a_real_process_with_stdout_closed_full_or_cut(model_file, tmp_path, redirect, code, expected):
    import os
    import shlex

    if not os.path.exists("/bin/sh") or ("full" in redirect and not os.path.exists("/dev/full")):
        pytest.skip("needs a POSIX shell (and /dev/full)")
    (tmp_path / "t.txt").write_text("The cat sat on the mat.\n" * 3000)   # more than a pipe holds (64 KB)
    cmd = (f"{shlex.quote(sys.executable)} -m lm_magics score {shlex.quote(str(model_file))} "
           f"{shlex.quote(str(tmp_path / 't.txt'))} 2>{shlex.quote(str(tmp_path / 'err'))} {redirect}; "
           f"echo $? > {shlex.quote(str(tmp_path / 'rc'))}")
    subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(Path(lm.__file__).resolve().parents[1])})
    err = (tmp_path / "err").read_text().strip()
    rc = int((tmp_path / "rc").read_text()) if "|" not in redirect else code   # a pipe reports head's code
    assert rc == code, err
    assert expected in err and "Traceback" not in err and "Exception ignored" not in err, err
