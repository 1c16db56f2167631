"""The command line, through main([...]) and one real `python -m lm_magics --help`."""

from __future__ import annotations

import math
import subprocess
import sys

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


@pytest.mark.parametrize("argv, code, expected", [
    (["frob"], 2, "invalid choice"),
    (["train", "x.txt"], 2, "-o/--output"),
    (["train", "x.txt", "-o", "m.lm", "--epochs", "many"], 2, "expected a whole number"),
    (["complete", "MODEL", "the", "-k", "0"], 2, "-k must be at least 1"),
    (["train", "/nonexistent/*.txt", "-o", "m.lm"], 1, "No file matches"),
    (["complete", "/nonexistent/m.lm", "the"], 1, "not found"),
    (["score", "MODEL", "/nonexistent/t.txt"], 1, "Cannot read"),
])
def test_errors_are_one_line(argv, code, expected, model_file, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [str(model_file) if a == "MODEL" else a for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


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
