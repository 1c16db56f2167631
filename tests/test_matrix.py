"""The sturdiness matrix: every entry point crossed with every kind of hostile input, for every kind of model.

Entry points and input kinds are listed ONCE each, as data, and the tests cross them: a new magic, chat
command, CLI subcommand, API function or model kind is covered the day it is added to a list below. Each
cell of the matrix checks one rule (lm_magics/rules.py, registry.register_run, engine/outcome.py,
engine/memory.py, engine/schema.py): a one-line LMError (UsageError in a magic, an error message in the
chat, exit 1 in the CLI), and nothing lost (the registry and the files as they were).
"""

from __future__ import annotations

import os
import shlex

import pytest
import torch
from hypothesis import given, settings, strategies as st
from IPython.core.error import UsageError

import lm_magics as lm
from lm_magics import api
from lm_magics.cli import main
from lm_magics.engine import memory, training
from lm_magics.errors import ConfigError, LMError, ModelFileError
from lm_magics.registry import ModelRegistry, get_registry, register_run
from lm_magics.rules import check_name

# ---------------------------------------------------------------------------------------------- the lists

KINDS = ("lstm", "ngram", "mix")
FAST = dict(hidden_dim=16, embed_dim=8, epochs=2, seed=0, lr=0.03, threads=1)

# Names a user might give that no entry point may accept (kind -> value).
BAD_NAMES = {"empty": "", "spaces": "   ", "keyword": "class", "soft keyword": "match", "history": "In",
             "extension hook": "get_ipython", "exit": "exit", "dunder": "__doc__", "line break": "a\nb"}
# ... and where the name becomes a variable, these too.
BAD_VARIABLES = {**BAD_NAMES, "not an identifier": "2x", "builtin": "print", "dotted": "a.b"}


def q(text: str) -> str:
    return shlex.quote(text)


# Entry points that take a model name: name -> run(env, value). Each must refuse every BAD_NAMES value.
NAME_TAKERS = {
    "%%lm_train --name": lambda env, v: env.cell("lm_train", f"--name {q(v)} --kind ngram --quiet", env.text),
    "%lm_load --name": lambda env, v: env.line("lm_load", f"{env.files['ngram']} --name {q(v)}"),
    "chat /learn as NAME": lambda env, v: env.chat(f"/learn {env.textfile} as {v}"),
    "api registry.set": lambda env, v: env.reg.set(v, env.models["ngram"]),
    "api register_run": lambda env, v: register_run(env.reg, v, env.models["ngram"]),
}
# Entry points that store a result in a variable: name -> run(env, value).
VARIABLE_TAKERS = {
    "%%lm_train -o": lambda env, v: env.cell("lm_train", f"--name m_ngram --kind ngram --quiet -o {q(v)}", env.text),
    "%lm_complete -o": lambda env, v: env.line("lm_complete", f"--name m_lstm -o {q(v)} the"),
    "%lm_generate -o": lambda env, v: env.line("lm_generate", f"--name m_lstm -n 2 -o {q(v)} the"),
    "%lm_explain -o": lambda env, v: env.line("lm_explain", f"--name m_lstm -o {q(v)} the cat sat"),
    "chat /export VAR": lambda env, v: env.chat(f"/export {v}"),
}
# Entry points that echo a name the user typed back in their message: run(env, value).
ECHOERS = {
    "%lm_complete --name": lambda env, v: env.line("lm_complete", f"--name {q(v)} the"),
    "%lm_use": lambda env, v: env.line("lm_use", q(v)),
    "chat /use": lambda env, v: env.chat(f"/use {v}"),
    "api registry.get": lambda env, v: env.reg.get(v),
}
# Entry points that generate with a beam: kind -> run(env, kind, beam).
BEAM_TAKERS = {
    "api generate": lambda env, k, b: env.models[k].generate("the", n_words=4, beam=b),
    "%lm_generate --beam": lambda env, k, b: env.line("lm_generate", f"--name m_{k} -n 4 --beam {b} the"),
    "cli generate --beam": lambda env, k, b: env.cli("generate", env.files[k], "the", "-n", "4", "--beam", str(b)),
}
# Entry points that continue a model: run(env, kind).
CONTINUE_TAKERS = {
    "api train(init=)": lambda env, k: lm.train(env.text, init=env.models[k], epochs=1),
    "%%lm_train --continue": lambda env, k: env.cell("lm_train", f"--name m_{k} --continue --epochs 1 --quiet",
                                                     env.text),
    "cli train --init": lambda env, k: env.cli("train", env.textfile, "-o", env.out, "--init", env.files[k],
                                               "--epochs", "1", "--quiet"),
}
# Entry points that train a run that diverges: run(env) with the name/file 'good' existing.
TRAINERS = {
    "api train": lambda env: lm.train(env.text, **FAST),
    "%%lm_train": lambda env: env.cell("lm_train", "--name m_lstm --quiet --hidden-dim 16 --embed-dim 8 "
                                                   "--epochs 2 --seed 0", env.text),
    "cli train": lambda env: env.cli("train", env.textfile, "-o", env.files["lstm"], "--hidden-dim", "16",
                                     "--embed-dim", "8", "--epochs", "2", "--quiet"),
}
# Phases after the last step, where a Ctrl-C must keep the trained run: phase -> (owner, attribute).
PHASES = {
    "restoring the best weights": (training.BestWeights, "restore"),
    "the mixture weight": (api, "_mix_weight"),     # the n-gram and the copy index come before the first step
}
# Damaged fields of a model file, for every kind: field -> change(ckpt) (the file stays a valid zip).
def _nan_weight(c):
    if "state_dict" in c:
        next(iter(c["state_dict"].values())).view(-1)[0] = float("nan")
    else:
        c["ngram"]["discounts"].view(-1)[0] = float("nan")


DAMAGES = {
    "NaN weight": _nan_weight,
    "text for a number": lambda c: c["meta"].update(val_ppl="about twelve"),
    "negative count": lambda c: c["meta"].update(rows=-5),
    "NaN perplexity": lambda c: c["meta"].update(val_ppl=float("nan")),
    "bad history": lambda c: c["meta"].update(history=[["one", "x", None]]),
    "mix weight out of range": lambda c: c["meta"].update(mix_weight=7.0),
    "repeated word": lambda c: c["tokenizer"]["itos"].append(c["tokenizer"]["itos"][-1]),
    "text for a flag": lambda c: c["tokenizer"].update(lowercase="yes"),
    "huge n-gram vocabulary claim": lambda c: c.get("ngram", {}).update(vocab_size=200_000_000),
}


# ---------------------------------------------------------------------------------------------- the session

class Env:
    """One small model of each kind, saved once; the shell, a chat and helpers that run each front-end."""

    def __init__(self, shell, text, folder):
        self.shell, self.text = shell, text
        self.reg = get_registry(shell)
        self.textfile = str(folder / "matrix_text.txt")
        with open(self.textfile, "w") as fh:
            fh.write(text)
        self.out = str(folder / "out.lm")
        self.models, self.files = {}, {}
        for kind in KINDS:
            m = lm.train(text, kind=kind, **({} if kind == "ngram" else FAST))
            self.models[kind] = m
            self.files[kind] = str(folder / f"m_{kind}.lm")
            m.save(self.files[kind])
            self.reg.set(f"m_{kind}", m, make_default=False)
        from lm_magics.widgets.chat import ChatAssistant

        self.chat_widget = ChatAssistant("m_lstm", registry=self.reg, user_ns=shell.user_ns, seed=0)

    def cell(self, magic, line, text):
        return self.shell.run_cell_magic(magic, line, text)

    def line(self, magic, line):
        return self.shell.run_line_magic(magic, line)

    def chat(self, text):
        n = len(self.chat_widget.messages)
        self.chat_widget.send(text)
        errors = [m["text"] for m in self.chat_widget.messages[n:] if m["role"] == "error"]
        if errors:
            raise ChatError(errors[0])

    def cli(self, *argv):
        code = main(list(argv))
        if code:
            raise CliExit(code)

    def state(self):
        """What must not change: the registry (names -> models, default) and the saved files."""
        return ({n: id(self.reg.get(n)) for n in self.reg.names()}, self.reg.default,
                {p: os.stat(p).st_mtime_ns for p in self.files.values() if os.path.exists(p)},
                os.path.exists(self.out))


class ChatError(Exception):
    pass


class CliExit(Exception):
    pass


@pytest.fixture(scope="module")
def env(shell, tiny_text, tmp_path_factory):
    e = Env(shell, tiny_text, tmp_path_factory.mktemp("matrix"))
    yield e
    for n in list(e.reg.names()):
        if n.startswith("m_"):
            e.reg.drop(n)


def one_line_refusal(run, *, capsys=None) -> str:
    """Run an entry point that must refuse: its one-line message (UsageError, LMError, chat error, CLI)."""
    try:
        run()
    except (UsageError, LMError, ChatError) as exc:
        msg = str(exc)
    except CliExit as exc:
        assert exc.args[0] == 1, f"exit code {exc.args[0]}"
        msg = capsys.readouterr().err.strip() if capsys is not None else "exit 1"
    else:
        pytest.fail("accepted")
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("taker", list(NAME_TAKERS))
@pytest.mark.parametrize("kind", list(BAD_NAMES))
def test_every_name_taker_refuses_every_bad_name(env, taker, kind):
    value = BAD_NAMES[kind]
    if taker.startswith("chat") and (not value.strip() or any(c.isspace() for c in value)):
        pytest.skip("the chat's grammar cannot express a name with spaces")
    before = env.state()
    one_line_refusal(lambda: NAME_TAKERS[taker](env, value))
    assert env.state() == before


@pytest.mark.parametrize("taker", list(VARIABLE_TAKERS))
@pytest.mark.parametrize("kind", list(BAD_VARIABLES))
def test_every_variable_taker_refuses_every_bad_variable(env, taker, kind):
    value = BAD_VARIABLES[kind]
    if taker.startswith("chat") and (not value.strip() or any(c.isspace() for c in value)):
        pytest.skip("the chat's grammar cannot express a name with spaces")
    ns_before = {k: id(v) for k, v in env.shell.user_ns.items()}
    before = env.state()
    one_line_refusal(lambda: VARIABLE_TAKERS[taker](env, value))
    assert env.state()[:2] == before[:2]
    assert {k: id(v) for k, v in env.shell.user_ns.items() if k in ns_before} == ns_before


@pytest.mark.parametrize("taker", list(ECHOERS))
def test_what_is_echoed_stays_short_whatever_was_typed(env, taker):
    # IPython expands $var/{expr} in a magic's line before the magic sees it, in time quadratic in the
    # line's length (IPython/utils/text.py): a magic's line is kept to 3,000 characters here.
    n = 3_000 if taker.startswith("%") else 100_000
    msg = one_line_refusal(lambda: ECHOERS[taker](env, "x" * n))
    assert len(msg) < 600, len(msg)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=30))
def test_a_name_is_accepted_or_refused_in_one_line(text):
    for variable in (False, True):
        try:
            assert check_name(text, variable=variable) == text
        except ConfigError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 400
            continue
        assert text.strip() == text and text
        if variable:
            assert text.isidentifier()


# ---------------------------------------------------------------------------------------------- resources

@pytest.mark.parametrize("taker", list(BEAM_TAKERS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_beam_is_checked_before_it_is_allocated_for_every_kind(env, taker, kind, monkeypatch, capsys):
    monkeypatch.setenv(memory.ENV, "20MB")
    before = env.state()
    msg = one_line_refusal(lambda: BEAM_TAKERS[taker](env, kind, 10**9), capsys=capsys)
    assert "beam" in msg and "smaller beam" in msg
    monkeypatch.delenv(memory.ENV)
    BEAM_TAKERS[taker](env, kind, 3)             # a usual beam works for every kind, everywhere
    assert env.state()[:2] == before[:2]


def test_a_files_vocabulary_claim_is_checked_before_it_is_allocated(env, tmp_path):
    ckpt = torch.load(env.files["ngram"], weights_only=True)
    ckpt["ngram"]["vocab_size"] = 200_000_000
    ckpt["tokenizer"]["itos"] = ckpt["tokenizer"]["itos"]       # the tokenizer still lists its few words
    path = tmp_path / "claims.lm"
    torch.save(ckpt, path)
    with pytest.raises(ModelFileError, match="200.0 million"):
        lm.load(path)


# ---------------------------------------------------------------------------------------------- continue

@pytest.mark.parametrize("taker", list(CONTINUE_TAKERS))
def test_every_front_end_refuses_to_continue_an_ngram_like_the_api(env, taker, capsys):
    before = env.state()
    msg = one_line_refusal(lambda: CONTINUE_TAKERS[taker](env, "ngram"), capsys=capsys)
    assert "n-gram model cannot be continued" in msg
    assert env.state() == before


# ---------------------------------------------------------------------------------------------- divergence

@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_a_diverged_run_replaces_nothing_and_is_never_trained(env, trainer, monkeypatch, capsys):
    """Every trainer meets a run the divergence rule refuses (the rule itself is tested on real lr=1e30
    runs in tests/engine/test_training.py; here it is forced, so the cell does not depend on the CPU)."""
    monkeypatch.setattr(api, "divergence", lambda report, net, V: "its weights became NaN or infinite")
    before = env.state()
    msg = one_line_refusal(lambda: TRAINERS[trainer](env), capsys=capsys)
    assert "diverged" in msg and "lower lr" in msg and "Trained" not in msg
    assert env.state() == before
    if trainer == "%%lm_train":
        assert "'m_lstm' is unchanged" in msg


# ---------------------------------------------------------------------------------------------- interrupts

@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("front", ["api", "%%lm_train", "cli"])
def test_ctrl_c_after_the_last_step_keeps_the_run_in_every_phase(env, phase, front, interrupt_at, capsys):
    owner, attr = PHASES[phase]
    interrupt_at(owner, attr, 1)
    before = env.state()
    if front == "api":
        m = lm.train(env.text, kind="mix", **FAST)
        assert m.interrupted and m.next_words("the", k=2)
    elif front == "%%lm_train":
        s = env.cell("lm_train", "--name m_mix --kind mix --quiet --hidden-dim 16 --embed-dim 8 --epochs 2 "
                                 "--seed 0 --lr 0.03", env.text)
        assert s.interrupted and s.name == "m_mix_interrupted"
        assert env.reg.get("m_mix") is env.models["mix"]            # the earlier one keeps its name
        assert "before the first step" not in capsys.readouterr().err
        env.reg.drop(s.name)
    else:
        code = main(["train", env.textfile, "-o", env.files["mix"], "--kind", "mix", "--hidden-dim", "16",
                     "--embed-dim", "8", "--epochs", "2", "--quiet"])
        err = capsys.readouterr().err
        assert code == 130 and "nothing was written" not in err
        derived = env.files["mix"].replace(".lm", ".interrupted.lm")
        assert os.path.exists(derived)
        os.remove(derived)
    assert env.state() == before


@pytest.mark.parametrize("front", ["%%lm_train", "monitor"])
def test_a_run_stopped_before_its_first_validation_is_never_the_default(env, front, interrupt_at):
    env.reg.use("m_lstm")
    if front == "%%lm_train":
        interrupt_at(training, "train_step", 2)
        s = env.cell("lm_train", "--name m_fresh --quiet --hidden-dim 16 --embed-dim 8 --epochs 2", env.text)
        name = s.name
        assert "before its first validation" in repr(s)
    else:
        from lm_magics.widgets.monitor import TrainingMonitor

        mon = TrainingMonitor("m_fresh", env.text, registry=env.reg, options=dict(FAST, epochs=50))
        mon._stop.set()                                  # Stop before the first step: nothing changes
        mon._run()
        assert mon.model is None and "nothing changed" in mon.error and "starting" not in mon.stats.value
        assert "m_fresh" not in env.reg and "m_fresh_interrupted" not in env.reg
        return
    assert name == "m_fresh_interrupted" and "m_fresh" not in env.reg and env.reg.default == "m_lstm"
    env.reg.drop(name)


def test_a_replacement_is_said_where_the_run_is_shown(env):
    reg = ModelRegistry()
    first = register_run(reg, "shake", env.models["lstm"])
    assert first.note == "" and reg.default == "shake"
    second = register_run(reg, "shake", env.models["mix"])
    ppl = env.models["lstm"].meta["val_ppl"]
    assert second.replaced and second.note == f"replaced the earlier 'shake' (validation perplexity {ppl:,.1f})"


# ---------------------------------------------------------------------------------------------- model files

@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_damaged_field_is_refused_at_load_for_every_kind(env, kind, damage, tmp_path):
    ckpt = torch.load(env.files[kind], weights_only=True)
    DAMAGES[damage](ckpt)
    path = tmp_path / "damaged.lm"
    torch.save(ckpt, path)
    try:
        model = lm.load(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc) and "damaged" in str(exc)
        return
    # Not a field this kind has (an LSTM has no n-gram vocabulary to claim): it must then work throughout.
    assert damage == "huge n-gram vocabulary claim" and kind == "lstm"
    repr(model), model.generate("the", n_words=2, seed=0), model.info


# ---------------------------------------------------------------------------------------------- frames

@pytest.mark.parametrize("where", ["@len(text) > 0", "__import__('os').getcwd() != ''", "@helper(text)"])
def test_a_where_condition_sees_columns_and_plain_values_only(shell, where):
    import pandas as pd

    from lm_magics.frames import select_rows

    df = pd.DataFrame({"text": ["a b", "c d"], "n": [1, 2]})
    ns = {"helper": lambda t: True, "limit": 1, "len": len}
    assert len(select_rows(df, "n > @limit", ns, "df")) == 1
    with pytest.raises(LMError):
        select_rows(df, where, ns, "df")


@pytest.mark.parametrize("values", [[["a"], ["b"], ["a"]], [{"x": 1}, {"y": 2}, {"x": 1}]])
def test_unhashable_label_and_group_values_are_one_line(tiny_model, values):
    import pandas as pd

    df = pd.DataFrame({"text": ["the cat sat", "the dog ran", "a bird sat"], "g": values})
    with pytest.raises(LMError) as exc:
        lm.compare_groups(df, "text", by="g", min_rows=1)
    assert "\n" not in str(exc.value) and "cannot be a label or group" in str(exc.value)


def test_a_file_named_like_a_pattern_is_read(tmp_path):
    p = tmp_path / "a[1].txt"
    p.write_text("the cat sat\nthe dog ran\n")
    assert lm.files(str(p)).paths() == [p]
