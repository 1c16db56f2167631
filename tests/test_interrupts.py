"""Interrupts and stops: one rule for lm.train, %%lm_train and `lm-magics train`.

Ctrl-C is injected at every stage of the whole call (reading, tokenizing, building the network, the
first step, a later step, validation, restoring the best weights, registering, saving). Each stage has
one of two outcomes, and the message says which:

- "nothing": no step was trained (or the result never reached the session/the disk): nothing changed;
- "rule": the run is an interrupted run; it never replaces a model or file that has its name: the
  earlier one keeps it, the interrupted model gets ``good_interrupted`` / ``good.interrupted.lm``.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch

import lm_magics as lm
from lm_magics import api
from lm_magics.cli import main
from lm_magics.engine import data, persistence, training
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.registry import ModelRegistry, get_registry

OPTIONS = dict(hidden_dim=32, embed_dim=16, epochs=3, lr=0.03, seed=0, threads=1)   # small and seeded
TINY = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in OPTIONS.items()) + " --quiet"

# stage: (where Ctrl-C is raised, on which call, the outcome)
STAGES = {
    "reading": (data, "rows_of", 1, "nothing"),
    "tokenizing": (Tokenizer, "encode_line", 3, "nothing"),
    "building": (api, "build_network", 1, "nothing"),
    "first step": (training, "train_step", 1, "nothing"),
    "step 3": (training, "train_step", 3, "rule"),
    "first validation": (training, "evaluate", 1, "rule"),
    "second validation": (training, "evaluate", 2, "rule"),
    "restoring": (training.BestWeights, "restore", 1, "rule"),
}


def no_interrupt(fn, *args, **kw):
    """fn(...), failing the test (instead of stopping pytest) if a KeyboardInterrupt escapes it."""
    try:
        return fn(*args, **kw)
    except KeyboardInterrupt as exc:
        pytest.fail(f"KeyboardInterrupt escaped: {exc!r}")


def kept_line(steps, new, new_ppl, earlier, earlier_ppl=None, how="interrupted"):
    was = "" if earlier_ppl is None else f" (val ppl {earlier_ppl:,.1f})"
    return (f"Training {how} after {steps} steps: kept the earlier {earlier}{was}; the {how} model is {new} "
            f"(val ppl {new_ppl:,.1f}).")


def same_weights(a, b) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def finished(tiny_text):
    """The uninterrupted run of the settings every test here uses."""
    return lm.train(tiny_text, **OPTIONS)


# ---------------------------------------------------------------------------------------------- lm.train

@pytest.mark.parametrize("stage", list(STAGES))
def test_python_api_at_every_stage(stage, tiny_text, finished, interrupt_at):
    owner, attr, when, outcome = STAGES[stage]
    interrupt_at(owner, attr, when)
    if outcome == "nothing":
        with pytest.raises(KeyboardInterrupt):
            lm.train(tiny_text, **OPTIONS)
        return
    m = no_interrupt(lm.train, tiny_text, **OPTIONS)
    assert m.interrupted and m.meta["interrupted"] and m.report.stop_reason == "interrupted"
    assert len(m.next_words("the", k=3)) == 3
    if stage == "restoring":   # the run had ended: the best weights are handed back whole
        assert same_weights(m, finished) and m.report.best_epoch == finished.report.best_epoch
        assert any("as the run ended" in n for n in m.report.notes)


def test_real_sigint_while_restoring_after_early_stop(tiny_text, finished, monkeypatch):
    """The reported case: SIGINT just after the loop lost the finished run and printed a traceback."""
    real = training.BestWeights.restore

    def restore_with_ctrl_c(self, model):
        os.kill(os.getpid(), signal.SIGINT)     # delivered to this (main) thread at once
        time.sleep(0.01)
        return real(self, model)

    monkeypatch.setattr(training.BestWeights, "restore", restore_with_ctrl_c)
    m = no_interrupt(lm.train, tiny_text, **OPTIONS)
    assert m.interrupted and same_weights(m, finished)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handler is back


def test_max_time_is_a_planned_end(tiny_text):
    m = lm.train(tiny_text, hidden_dim=32, embed_dim=16, epochs=50, seed=0, max_time=1e-9)
    assert m.report.stop_reason == "max_time" and not m.interrupted


# ---------------------------------------------------------------------------------------------- %%lm_train

@pytest.fixture
def reg(shell, tiny_model):
    """The shell's registry with 'good' (tiny_model) as the default; models added by a test are dropped."""
    r = get_registry(shell)
    before, default = set(r.names()), r.default
    r.set("good", tiny_model)
    yield r
    for name in set(r.names()) - before:
        r.drop(name)
    if default is not None:
        r.use(default)


def run_cell(shell, line, text, capsys):
    """Run %%lm_train as a cell (as a notebook does); returns (result, what it printed)."""
    capsys.readouterr()
    result = shell.run_cell(f"%%lm_train {line}\n{text}")
    out = capsys.readouterr()
    return result, out


@pytest.mark.parametrize("stage", list(STAGES) + ["registering"])
def test_magic_at_every_stage(stage, shell, reg, tiny_model, tiny_text, interrupt_at, capsys):
    # A Ctrl-C while the finished run is registered keeps it as an interrupted run (the rule holds up to
    # the registration, registry.register_run).
    owner, attr, when, outcome = STAGES.get(stage, (ModelRegistry, "set", 1, "rule"))
    interrupt_at(owner, attr, when)
    names_before = reg.names()
    result, out = run_cell(shell, f"--name good {TINY}", tiny_text, capsys)
    printed = (out.out + out.err).strip().splitlines()
    assert "Traceback" not in out.out + out.err
    assert reg.get("good") is tiny_model and reg.default == "good"           # never replaced
    if outcome == "nothing":
        assert isinstance(result.error_in_exec, KeyboardInterrupt)            # the cell stops, as Ctrl-C does
        assert printed == ["KeyboardInterrupt: Training interrupted before the first step; 'good' is unchanged."]
        assert reg.names() == names_before
        return
    assert result.error_in_exec is None
    model = result.result.model
    assert model.interrupted and reg.get("good_interrupted") is model and result.result.name == "good_interrupted"
    assert out.err.strip().splitlines() == [kept_line(model.report.steps, "'good_interrupted'",
                                                      model.meta["val_ppl"], "'good'", tiny_model.meta["val_ppl"])]


def test_magic_sigint_after_early_stop_keeps_the_finished_run(shell, reg, tiny_model, tiny_text, monkeypatch,
                                                              capsys):
    """The reported case: a real SIGINT after early stopping said "before the first step" + a traceback."""
    ppls = iter([30.0, 20.0, 25.0, 26.0] + [27.0] * 50)
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: next(ppls))
    real = training.BestWeights.restore

    def restore_with_ctrl_c(self, model):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        return real(self, model)

    monkeypatch.setattr(training.BestWeights, "restore", restore_with_ctrl_c)
    result, out = run_cell(shell, f"--name good {TINY} --epochs 30 --patience 2", tiny_text, capsys)
    assert result.error_in_exec is None and "Traceback" not in out.out + out.err
    model = result.result.model
    assert reg.get("good") is tiny_model and reg.get("good_interrupted") is model
    assert model.report.best_epoch == 2 and model.report.best_val_ppl == 20.0 and len(model.report.history) == 4
    assert any("as the run ended (early stop)" in n for n in model.report.notes)
    assert out.err.strip().splitlines() == [kept_line(model.report.steps, "'good_interrupted'", 20.0, "'good'",
                                                      tiny_model.meta["val_ppl"])]


def test_magic_numbers_the_derived_name_and_a_new_name_gets_the_result(shell, reg, tiny_model, tiny_text,
                                                                         monkeypatch, interrupt_at, capsys):
    interrupt_at(training, "train_step", 3)
    first = shell.run_cell_magic("lm_train", f"--name good {TINY}", tiny_text)
    monkeypatch.undo()
    interrupt_at(training, "train_step", 3)
    second = shell.run_cell_magic("lm_train", f"--name good {TINY}", tiny_text)
    assert (first.name, second.name) == ("good_interrupted", "good_interrupted2")
    assert reg.get("good") is tiny_model and reg.get("good_interrupted") is first.model
    assert "the interrupted model is 'good_interrupted2'" in capsys.readouterr().err
    monkeypatch.undo()
    interrupt_at(training, "train_step", 3)
    new = shell.run_cell_magic("lm_train", f"--name brand_new {TINY}", tiny_text)
    if new.model.report.history:      # validated before the Ctrl-C: a new name gets the result
        assert reg.get("brand_new") is new.model and new.interrupted and reg.default == "brand_new"
        assert "kept the best model so far as 'brand_new'" in capsys.readouterr().err
    else:                             # stopped before its first validation: kept aside, not the default
        assert reg.get("brand_new_interrupted") is new.model and "brand_new" not in reg
        assert reg.default != "brand_new_interrupted" and "not the default" in new.note


def test_magic_interrupted_before_the_first_validation_is_kept_aside(shell, reg, tiny_text, interrupt_at, capsys):
    interrupt_at(training, "train_step", 2)
    s = shell.run_cell_magic("lm_train", f"--name fresh_one {TINY}", tiny_text)
    assert not s.model.report.history and s.name == "fresh_one_interrupted"
    assert "fresh_one" not in reg and reg.default == "good"
    assert "before its first validation" in repr(s)


def test_magic_continue_interrupted_keeps_the_old_model(shell, reg, tiny_model, tiny_text, interrupt_at, capsys):
    interrupt_at(training, "train_step", 3)
    s = shell.run_cell_magic("lm_train", "--name good --continue --epochs 2 --quiet", tiny_text)
    assert reg.get("good") is tiny_model and reg.get("good_interrupted") is s.model
    assert s.model.interrupted and s.model.meta["runs"] == 2 and s.model.vocab == tiny_model.vocab
    assert "kept the earlier 'good'" in capsys.readouterr().err


def test_magic_max_time_replaces_as_a_finished_run(shell, reg, tiny_model, tiny_text):
    s = shell.run_cell_magic("lm_train", f"--name good {TINY} --epochs 50 --max-time 1e-9", tiny_text)
    assert not s.interrupted and s.report.stop_reason == "max_time" and reg.get("good") is s.model
    assert "good_interrupted" not in reg


def test_magic_interrupt_while_showing_samples_keeps_the_registered_model(shell, reg, tiny_text, interrupt_at,
                                                                          capsys):
    from lm_magics.magics import LMMagics

    interrupt_at(LMMagics, "_samples", 1)
    result, out = run_cell(shell, f"--name good {TINY}", tiny_text, capsys)
    assert result.error_in_exec is None and reg.get("good") is result.result.model   # a finished run
    assert result.result.samples == [] and "Traceback" not in out.out + out.err


def test_magic_interrupt_while_reading_a_dataframe_changes_nothing(shell, reg, tiny_model, interrupt_at, capsys):
    from lm_magics import magics

    interrupt_at(magics, "text_rows", 1)        # --df --where on a big frame takes a while
    shell.user_ns["stops_rows"] = ["the cat sat on the mat ."] * 30
    try:
        capsys.readouterr()
        result = shell.run_cell(f"%lm_train --name good --df stops_rows {TINY}")
        out = capsys.readouterr()
    finally:
        del shell.user_ns["stops_rows"]
    assert isinstance(result.error_in_exec, KeyboardInterrupt) and reg.get("good") is tiny_model
    assert (out.out + out.err).strip().splitlines() == [
        "KeyboardInterrupt: Training interrupted while reading the data; nothing has changed."]


# ---------------------------------------------------------------------------------------------- lm-magics train

@pytest.fixture
def existing(tmp_path, saved_model):
    """A model file at tmp_path/existing.lm; returns (its path, its bytes)."""
    path = tmp_path / "existing.lm"
    path.write_bytes(saved_model.read_bytes())
    return path, path.read_bytes()


def run_cli(tmp_path, tiny_text, output, capsys, *extra):
    text = tmp_path / "text.txt"
    text.write_text(tiny_text)
    capsys.readouterr()
    rc = main(["train", str(text), "-o", str(output), *TINY.split(), *extra])
    return rc, capsys.readouterr()


def hidden_files(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("stage", list(STAGES) + ["saving"])
def test_cli_at_every_stage(stage, tmp_path, tiny_text, existing, monkeypatch, interrupt_at, capsys):
    path, old_bytes = existing
    owner, attr, when, outcome = STAGES.get(stage, (persistence.torch, "save", 1, "nothing"))
    interrupt_at(owner, attr, when)
    rc, out = run_cli(tmp_path, tiny_text, path, capsys)
    monkeypatch.undo()
    assert rc == 130 and "Traceback" not in out.err
    assert path.read_bytes() == old_bytes and hidden_files(tmp_path) == []     # never replaced, no temp file
    derived = tmp_path / "existing.interrupted.lm"
    if outcome == "nothing":
        what = (f"Interrupted while saving {path}" if stage == "saving"
                else "Training interrupted before the first step")
        assert out.err.strip().splitlines() == [f"lm-magics: {what}: nothing was written; {path} is unchanged"]
        assert not derived.exists()
        return
    model = lm.load(derived)
    assert model.meta["interrupted"] is True and f"saved {derived}" in out.out
    steps = re.fullmatch(r"lm-magics: Training interrupted after (\d+) steps: .*", out.err.strip()).group(1)
    assert out.err.strip().splitlines() == [
        "lm-magics: " + kept_line(steps, str(derived), model.meta["val_ppl"], str(path))]


def test_cli_interrupt_while_saving_an_interrupted_run(tmp_path, tiny_text, existing, interrupt_at, capsys):
    path, old_bytes = existing
    interrupt_at(training, "train_step", 3)
    interrupt_at(persistence.torch, "save", 1)
    rc, out = run_cli(tmp_path, tiny_text, path, capsys)
    derived = tmp_path / "existing.interrupted.lm"
    assert rc == 130 and out.err.strip().splitlines() == [
        f"lm-magics: Interrupted while saving {derived}: nothing was written; {path} is unchanged"]
    assert path.read_bytes() == old_bytes and not derived.exists() and hidden_files(tmp_path) == []


def test_cli_numbers_the_derived_file_and_a_new_file_gets_the_result(tmp_path, tiny_text, existing, monkeypatch,
                                                                      interrupt_at, capsys):
    path, old_bytes = existing
    (tmp_path / "existing.interrupted.lm").write_bytes(b"someone else's")
    interrupt_at(training, "train_step", 3)
    rc, _ = run_cli(tmp_path, tiny_text, path, capsys)
    assert rc == 130 and lm.load(tmp_path / "existing.interrupted2.lm").meta["interrupted"]
    assert (tmp_path / "existing.interrupted.lm").read_bytes() == b"someone else's"
    assert path.read_bytes() == old_bytes
    monkeypatch.undo()
    interrupt_at(training, "train_step", 3)
    rc, out = run_cli(tmp_path, tiny_text, tmp_path / "new.lm", capsys)
    assert rc == 130 and lm.load(tmp_path / "new.lm").meta["interrupted"]
    assert out.err.strip().splitlines()[-1].startswith("lm-magics: Training interrupted after 2 steps: kept the "
                                                       f"best model so far as {tmp_path / 'new.lm'}")


def test_cli_continue_from_the_same_file_keeps_it(tmp_path, tiny_text, existing, interrupt_at, capsys):
    path, old_bytes = existing
    interrupt_at(training, "train_step", 3)
    rc, _ = run_cli(tmp_path, tiny_text, path, capsys, "--init", str(path))
    assert rc == 130 and path.read_bytes() == old_bytes
    assert lm.load(tmp_path / "existing.interrupted.lm").meta["runs"] == 2


def test_cli_max_time_is_a_planned_end(tmp_path, tiny_text, existing, capsys):
    path, old_bytes = existing
    rc, _ = run_cli(tmp_path, tiny_text, path, capsys, "--epochs", "50", "--max-time", "1e-9")
    assert rc == 0 and path.read_bytes() != old_bytes and not lm.load(path).meta["interrupted"]
    assert not (tmp_path / "existing.interrupted.lm").exists()


# ------------------------------------------------------------------- a Ctrl-C while the command starts

def test_cli_ctrl_c_while_setting_up_the_options_is_one_line(monkeypatch, capsys):
    from lm_magics import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["info", "x.lm"]) == 130
    err = capsys.readouterr().err
    assert err == "lm-magics: interrupted while starting; nothing was done\n"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports happen")
@pytest.mark.parametrize("module", ["libtorch", "lm_magics"])
def test_cli_real_ctrl_c_while_importing_is_one_line(module, tmp_path):
    """A real SIGINT once the command's own imports run (torch's libraries mapped, or later): exit 130 and
    one line, never a traceback. (Before that, Python itself is starting: no code of the package runs.)"""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(lm.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "lm_magics", "info", str(tmp_path / "none.lm")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 60
    maps = Path(f"/proc/{proc.pid}/maps")
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:
            break
        time.sleep(0.005)
    if module == "lm_magics":
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert proc.returncode in (130, 1), (proc.returncode, err)     # 1: it had finished ("not found")
