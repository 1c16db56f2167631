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
    "api start_background_training": lambda env, v: __import__(
        "lm_magics.widgets.monitor", fromlist=["x"]).start_background_training(registry=env.reg, name=v,
                                                                               data=env.text, options={}),
    "%%lm_train --background --name": lambda env, v: env.cell("lm_train", f"--name {q(v)} --kind ngram "
                                                                          f"--background", env.text),
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


# ---------------------------------------------------------------------------------------------- output size
# What an entry point echoes or renders is bounded whatever the input: a table shows at most MAX_ROWS rows
# and says how many more there are; a message quotes at most a short piece of what was typed.

from lm_magics.rules import MAX_ROWS  # noqa: E402


def _frame(n: int):
    import pandas as pd

    words = ["the cat sat", "the dog ran", "a bird sat on the mat", "my friend walked past the door"]
    return pd.DataFrame({"text": [words[i % 4] + f" w{i}" for i in range(n)], "g": [f"g{i}" for i in range(n)]})


def _rendered(result) -> str:
    return repr(result) + (getattr(result, "_repr_html_", lambda: "")() or "")


# Entry points whose output follows the size of their input: name -> run(env, n) with n the input's size.
SIZE_TAKERS = {
    "%lm_score --top": lambda env, n: (env.shell.user_ns.__setitem__("matrix_df", _frame(n)),
                                       env.line("lm_score", f"--name m_ngram --df matrix_df --column text "
                                                            f"--top {10**9}"))[1],
    "%lm_compare (groups)": lambda env, n: (env.shell.user_ns.__setitem__("matrix_df", _frame(n)),
                                            env.line("lm_compare", "--df matrix_df --column text --by g "
                                                                   "--min-rows 1 --top-words 1000000"))[1],
    "api compare_groups (groups)": lambda env, n: lm.compare_groups(_frame(n), "text", by="g", min_rows=1),
    "%lm_complete -k": lambda env, n: env.line("lm_complete", f"--name {_big_vocab(env)} -k {n} w1"),
    "api next_words (Completions)": lambda env, n: __import__("lm_magics.display", fromlist=["x"]).Completions(
        "w1", env.reg.get(_big_vocab(env)).next_words("w1", k=n)),
    "%lm_explain --top -k": lambda env, n: env.line("lm_explain", f"--name {_big_vocab(env)} --top {n} -k {n} "
                                                                  + " ".join(f"w{i}" for i in range(0, n, 2))),
    "api explain (words)": lambda env, n: lm.explain(env.models["ngram"], "the cat sat " * (4 * n), top=n, k=n),
    "%lm_models (models)": lambda env, n: _with_models(env, n, lambda: env.line("lm_models", "")),
    "chat /models (models)": lambda env, n: _with_models(env, n, lambda: env.chat_answer("/models")),
    "chat /data (columns)": lambda env, n: (env.shell.user_ns.__setitem__(
        "matrix_wide", __import__("pandas").DataFrame({f"c{i}": ["the cat sat"] * 3 for i in range(n)})),
        env.chat_answer("/data"))[1],
    "chat /unusual top": lambda env, n: (env.shell.user_ns.__setitem__("matrix_df", _frame(n)),
                                         env.chat_answer(f"/unusual matrix_df.text with m_ngram top {10**9}"))[1],
    "chat message echo": lambda env, n: env.chat_answer("the cat " * (n * 100), role="user"),
    "model trained on files (summary)": lambda env, n: _trained_on_files(env, n),
}


def _trained_on_files(env, n):
    folder = os.path.join(os.path.dirname(env.textfile), f"files_{n}")
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        with open(os.path.join(folder, f"f{i}.txt"), "w") as fh:
            fh.write(f"the cat sat on the mat {i}\n")
    model = lm.train(lm.files(os.path.join(folder, "*.txt")), kind="ngram")
    return __import__("lm_magics.display", fromlist=["x"]).TrainSummary("files", model)


def _big_vocab(env) -> str:
    """A model with more words than a table shows (an n-gram: trained in a moment)."""
    if "m_bigvocab" not in env.reg:
        words = [f"w{i}" for i in range(10 * MAX_ROWS)]
        env.reg.set("m_bigvocab", lm.train("\n".join(" ".join(words[i:i + 7]) for i in range(len(words))),
                                           kind="ngram"), make_default=False)
    return "m_bigvocab"


def _with_models(env, n, run):
    names = [f"many_{i}" for i in range(n)]
    for name in names:
        env.reg.set(name, env.models["ngram"], make_default=False)
    try:
        return run()
    finally:
        for name in names:
            env.reg.drop(name)


def _chat_answer(self, text, role="system"):
    n = len(self.chat_widget.messages)
    self.chat_widget.send(text)
    out = [m["text"] for m in self.chat_widget.messages[n:] if m["role"] in (role, "error")]
    assert out, self.chat_widget.messages[n:]
    return "\n".join(out)


Env.chat_answer = _chat_answer


@pytest.mark.parametrize("taker", list(SIZE_TAKERS))
def test_what_is_rendered_stays_bounded_whatever_the_input(env, taker):
    small = _rendered(SIZE_TAKERS[taker](env, 2 * MAX_ROWS))
    large = _rendered(SIZE_TAKERS[taker](env, 8 * MAX_ROWS))
    assert "not shown" in large, large[-500:]
    # Four times the input, not four times the output (the counts in the text grow by a digit or so).
    assert len(large) < 1.3 * len(small) + 500, (len(small), len(large))


# Entry points that quote a value the user typed in their one-line refusal: run(env, value).
QUOTERS = {
    **ECHOERS,
    "%lm_score --column": lambda env, v: (env.shell.user_ns.__setitem__("matrix_df", _frame(10)),
                                          env.line("lm_score", f"--name m_ngram --df matrix_df --column {q(v)}"))[1],
    "%lm_score --df": lambda env, v: env.line("lm_score", f"--name m_ngram --column text --df {q(v)}"),
    "%lm_compare --by": lambda env, v: (env.shell.user_ns.__setitem__("matrix_df", _frame(10)),
                                        env.line("lm_compare", f"--df matrix_df --column text --by {q(v)}"))[1],
    "%lm_compare unknown option": lambda env, v: env.line("lm_compare", f"--df matrix_df --column text --by g "
                                                                        f"--where {q(v)}"),
    "%%lm_train --where": lambda env, v: (env.shell.user_ns.__setitem__("matrix_df", _frame(10)),
                                          env.line("lm_train", f"--name m_q --kind ngram --df matrix_df "
                                                               f"--column text --where {q(v + ' > 1')}"))[1],
    "%%lm_train --device": lambda env, v: env.cell("lm_train", f"--name m_q --device {q(v)}", env.text),
    "chat /unusual COLUMN": lambda env, v: env.chat(f"/unusual matrix_df.{v}"),
    "api compare_groups by": lambda env, v: lm.compare_groups(_frame(10), "text", by=v),
    "api load": lambda env, v: lm.load(v + ".lm"),
    "cli info": lambda env, v: env.cli("info", v + ".lm"),
}


@pytest.mark.parametrize("taker", list(QUOTERS))
def test_a_refusal_quotes_a_huge_value_in_a_short_line(env, taker, capsys):
    n = 3_000 if taker.startswith("%") else 100_000      # a magic's line: see the test of ECHOERS above
    msg = one_line_refusal(lambda: QUOTERS[taker](env, "x" * n), capsys=capsys)
    assert len(msg) < 1_200, len(msg)


@pytest.mark.parametrize("argv", [["info", "m.lm", "--" + "x" * 100_000], ["x" * 100_000],
                                  ["generate", "m.lm", "--temperature", "x" * 100_000]])
def test_a_cli_usage_mistake_quotes_a_huge_value_in_a_short_line(argv, capsys):
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and len(err) < 1_200, len(err)


# ---------------------------------------------------------------------------------------------- degenerate values
# Empty where something is needed, a target that is also the input: one line, nothing changed.

DEGENERATE = {
    "empty --column (%lm_score)": lambda env: env.line("lm_score", "--name m_ngram --df matrix_df --column ''"),
    "empty --column (%lm_compare)": lambda env: env.line("lm_compare", "--df matrix_df --column '' --by g"),
    "empty --by (%lm_compare)": lambda env: env.line("lm_compare", "--df matrix_df --column text --by ''"),
    "empty --column (%lm_train)": lambda env: env.line("lm_train", "--name m_q --kind ngram --df matrix_df "
                                                                   "--column ''"),
    "empty --into": lambda env: env.line("lm_score", "--name m_ngram --df matrix_df --column text --into ''"),
    "--into is the text column": lambda env: env.line("lm_score", "--name m_ngram --df matrix_df --column text "
                                                                  "--into text"),
    "--by is the text column": lambda env: env.line("lm_compare", "--df matrix_df --column text --by text"),
    "a score column is the label column": lambda env: env.line("lm_score", "--name m_ngram --df matrix_df "
                                                                           "--column text --label g --into g "
                                                                           "--overwrite"),

    "empty --where": lambda env: env.line("lm_train", "--name m_q --kind ngram --df matrix_df --column text "
                                                      "--where ''"),
    "empty text to explain": lambda env: env.line("lm_explain", "--name m_ngram"),
    "empty text to explain (api)": lambda env: lm.explain(env.models["ngram"], "   "),
    "empty text to explain (chat)": lambda env: env.chat("/explain"),
    "empty column (api compare_groups)": lambda env: lm.compare_groups(_frame(10), "", by="g"),
    "empty group (api compare_groups)": lambda env: lm.compare_groups(_frame(10), "text", by=""),
    "empty file name (cli train)": lambda env: env.cli("train", "", "-o", env.out, "--quiet"),
    "empty file name (cli score)": lambda env: env.cli("score", env.files["ngram"], ""),
    "empty file name (api files)": lambda env: lm.files(""),
    "empty file name (%%lm_train --file)": lambda env: env.line("lm_train", "--name m_q --kind ngram --file ''"),
    "empty file name (chat /learn)": lambda env: env.chat("/learn ''"),
    "cli train -o is the input": lambda env: env.cli("train", env.textfile, "-o", env.textfile, "--kind", "ngram",
                                                     "--quiet"),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_a_degenerate_option_value_is_one_line(env, case, capsys):
    env.shell.user_ns["matrix_df"] = _frame(10)
    before = env.state()
    text = open(env.textfile).read()
    one_line_refusal(lambda: DEGENERATE[case](env), capsys=capsys)
    assert env.state()[:3] == before[:3] and open(env.textfile).read() == text
    assert list(env.shell.user_ns["matrix_df"].columns) == ["text", "g"]


def test_into_frame_follows_the_rule_for_names(env):
    env.shell.user_ns["matrix_df"] = _frame(10)
    for value in BAD_VARIABLES.values():
        one_line_refusal(lambda: env.line("lm_score", f"--name m_ngram --df matrix_df --column text "
                                                      f"--into-frame {q(value)}"))


def test_a_where_condition_cannot_reach_python_internals():
    import pandas as pd

    from lm_magics.frames import select_rows

    df = pd.DataFrame({"text": ["a b", "c d"], "n": [1, 2]})
    for where in ("text.__class__.__name__ == 'str'", "n.__len__() > 0"):
        with pytest.raises(LMError, match="Python internals"):
            select_rows(df, where, {}, "df")


def test_a_polars_where_is_told_in_polars_terms():
    pl = pytest.importorskip("polars")
    from lm_magics.frames import select_rows

    df = pl.DataFrame({"text": ["a b", "c d"], "n": [1, 2]})
    assert len(select_rows(df, "n > 1", {}, "df")) == 1
    with pytest.raises(LMError, match="SQL condition") as exc:
        select_rows(df, "text.str.len() > 3", {}, "df")
    assert "pandas" not in str(exc.value)


def test_score_frame_on_polars_says_so(env):
    pl = pytest.importorskip("polars")
    with pytest.raises(LMError, match="polars DataFrame") as exc:
        lm.score_frame(env.models["ngram"], pl.DataFrame({"text": ["a b"]}), "text")
    assert "to_pandas" in str(exc.value)


def test_learn_without_a_name_never_replaces_the_model_of_the_derived_name(env):
    derived = os.path.splitext(os.path.basename(env.textfile))[0]
    env.reg.set(derived, env.models["ngram"], make_default=False)
    try:
        env.chat_widget.send(f"/learn {env.textfile}")
        mon = env.chat_widget.trainings[-1]
        assert mon.name != derived and mon.name.startswith(derived)
        mon.stop()
        mon.join(60)
        assert env.reg.get(derived) is env.models["ngram"]
    finally:
        for n in list(env.reg.names()):
            if n.startswith(derived):
                env.reg.drop(n)


@pytest.mark.parametrize("command", ["/k 1000000000", "/k 0"])
def test_the_chat_refuses_a_count_it_could_not_show(env, command):
    k = env.chat_widget.k
    one_line_refusal(lambda: env.chat(command))
    assert env.chat_widget.k == k


def test_a_summary_shows_a_bounded_number_of_samples(env):
    magics = next(c for c in env.shell.configurables if type(c).__name__ == "LMMagics")
    old = magics.sample_words
    magics.sample_words = 10**9
    try:
        assert len(magics._samples(env.reg.get(_big_vocab(env)))) <= MAX_ROWS
    finally:
        magics.sample_words = old


@pytest.mark.parametrize("line", ["--column text --label g_unusual --into g --overwrite",
                                  "--column text_max --into text --signal max --overwrite",
                                  "--column text --label g_unusual --into g --signal all --overwrite"])
def test_no_column_a_score_writes_is_an_input(env, line):
    import pandas as pd

    df = pd.DataFrame({"text": ["the cat sat", "the dog ran"] * 5, "text_max": ["the cat sat", "a bird"] * 5,
                       "g_unusual": [True, False] * 5})
    before = df.copy()
    env.shell.user_ns["matrix_inputs"] = df
    msg = one_line_refusal(lambda: env.line("lm_score", f"--name m_ngram --df matrix_inputs {line}"))
    assert "is also the" in msg
    pd.testing.assert_frame_equal(df, before)
