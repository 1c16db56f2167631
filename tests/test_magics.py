"""The magics, driven through a real IPython InteractiveShell (run_cell_magic / run_line_magic)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch
from IPython.core.error import UsageError

import lm_magics as lm
from lm_magics import api
from lm_magics.display import Completions, Generation, TrainSummary
from lm_magics.engine.training import StepInfo
from lm_magics.magics import LMMagics, ModelTable, _split_options
from lm_magics.registry import get_registry

# Small and seeded; --quiet keeps the progress bar out of the test log.
TINY = "--hidden-dim 32 --embed-dim 16 --epochs 3 --lr 0.03 --seed 0 --quiet"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models on a shared 2-core machine: one torch thread avoids oversubscription stalls.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(shell, tiny_text):
    """A model called 'tiny' trained once through %%lm_train for this module; treat as read-only."""
    summary = shell.run_cell_magic("lm_train", f"--name tiny {TINY}", tiny_text)
    return summary


@pytest.fixture
def ns(shell):
    """Variables a test puts in the user namespace are removed afterwards."""
    added: list = []

    class NS:
        def __setitem__(self, key, value):
            added.append(key)
            shell.user_ns[key] = value

        def __getitem__(self, key):
            return shell.user_ns[key]

    yield NS()
    for key in added:
        shell.user_ns.pop(key, None)


def _usage(shell, kind, line, cell=None) -> str:
    with pytest.raises(UsageError) as info:
        if kind == "cell" and cell:
            shell.run_cell_magic("lm_train", line, cell)
        elif kind == "cell":   # IPython refuses an empty cell body itself; the line form is what to use
            shell.run_line_magic("lm_train", line)
        else:
            shell.run_line_magic(kind, line)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- loading

def test_magics_registered_only_by_load_ext(shell):
    shell.run_line_magic("unload_ext", "lm_magics")
    try:
        assert "lm_train" not in shell.magics_manager.magics["cell"]
        assert "lm_complete" not in shell.magics_manager.magics["line"]
    finally:
        shell.run_line_magic("load_ext", "lm_magics")
    assert "lm_train" in shell.magics_manager.magics["cell"]
    assert {"lm_complete", "lm_generate", "lm_models", "lm_info", "lm_use", "lm_save", "lm_load",
            "lm_drop", "lm_train"} <= set(shell.magics_manager.magics["line"])


def test_every_magic_is_registered_and_unloaded_in_one_place(shell):
    line = set(shell.magics_manager.magics["line"])
    assert {"lm_score", "lm_panel", "lm_chat"} <= line
    shell.run_line_magic("unload_ext", "lm_magics")
    try:
        left = {n for kind in ("line", "cell") for n in shell.magics_manager.magics[kind] if n.startswith("lm_")}
        assert not left, left
    finally:
        shell.run_line_magic("load_ext", "lm_magics")


def test_a_missing_optional_dependency_names_the_extra(shell, monkeypatch):
    import builtins

    from IPython.core.error import UsageError

    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kw):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ModuleNotFoundError("No module named 'ipywidgets'", name="ipywidgets")
        return real_import(name, *args, **kw)

    for mod in [m for m in sys.modules if m.startswith("lm_magics.widgets")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    with pytest.raises(UsageError, match=r"pip install 'lm-magics\[widgets\]'"):
        shell.run_line_magic("lm_panel", "")


def test_every_magic_splits_quotes_the_same_way_and_honours_short_errors(shell, tiny_model):
    import pandas as pd
    from IPython.core.error import UsageError

    from lm_magics.registry import get_registry

    get_registry(shell).set("quoted", tiny_model)
    shell.user_ns["qdf"] = pd.DataFrame({"review text": ["the cat sat .", "the dog sat ."]})
    report = shell.run_line_magic("lm_score", '--name quoted --df qdf --column "review text" --top 1')
    assert "review text_ppl" in shell.user_ns["qdf"] and len(report.top) == 1
    panel = shell.run_line_magic("lm_panel", "--name 'quoted' -k 2")
    assert panel.model is tiny_model
    magics = shell.magics_manager.registry["LMMagics"]
    magics.short_errors = False
    try:
        for line in ("lm_panel --name nope", "lm_chat --name nope", "lm_score --name nope --df qdf --column x"):
            name, _, rest = line.partition(" ")
            with pytest.raises(lm.ModelNotFoundError):
                shell.run_line_magic(name, rest)
    finally:
        magics.short_errors = True
        get_registry(shell).drop("quoted")
    with pytest.raises(UsageError, match="No model named 'nope'"):
        shell.run_line_magic("lm_chat", "--name nope")


def test_help_shows_every_training_option_with_default(shell):
    doc = shell.magics_manager.magics["cell"]["lm_train"].__doc__
    for flag in ("--hidden-dim", "--epochs", "--seed", "--lr", "--val-fraction", "--df", "--column", "--where",
                 "--continue", "--quiet", "--background"):
        assert flag in doc
    assert "[default: from data]" in doc           # lr
    assert "[default: from data]" in doc       # hidden_dim
    gen = shell.magics_manager.magics["line"]["lm_generate"].__doc__
    assert "--temperature" in gen and "--top-p" in gen and "-n INT" in gen


def test_pinfo_prints_help(shell, capsys):
    shell.run_line_magic("pinfo", "%%lm_train")
    out = capsys.readouterr().out
    assert "--hidden-dim" in out and "--continue" in out


# ---------------------------------------------------------------------------------------------- training

def test_train_on_cell(trained, shell):
    assert isinstance(trained, TrainSummary)
    assert trained.name == "tiny"
    model = get_registry(shell).get("tiny")
    assert trained.model is model
    assert model.info["hidden_dim"] == 32
    assert "Trained 'tiny'" in repr(trained) and "<svg" in trained._repr_html_()
    assert trained.samples and all(len(pairs) == 3 for _, pairs in trained.samples)


def test_train_output_variable_and_default_name(shell, tiny_text, ns):
    reg = get_registry(shell)
    before = reg.default
    try:
        shell.run_cell_magic("lm_train", f"{TINY} --epochs 1 -o res", tiny_text)
        assert isinstance(ns["res"], TrainSummary) and ns["res"].name == "model"
        assert reg.default == "model"
    finally:
        reg.drop("model")
        if before:
            reg.use(before)


def test_train_on_dataframe_column_with_where(shell, tiny_text, ns):
    lines = tiny_text.splitlines()
    df = pd.DataFrame({"text": lines, "label": ["cat" if "cat" in s else "other" for s in lines],
                       "n": range(len(lines))})
    ns["df_rows"] = df
    s = shell.run_cell_magic("lm_train", f"--name frame --df df_rows --column text {TINY}", "# comments are fine\n")
    assert s.model.meta["rows"] == len(lines)
    s = shell.run_line_magic("lm_train", f"--name frame_cats --df df_rows --column text --where \"label == 'cat'\" {TINY}")
    assert s.model.meta["rows"] == (df.label == "cat").sum()
    ns["mask"] = df["label"] != "cat"
    s = shell.run_line_magic("lm_train", f"--name frame_mask --df df_rows --column text --where mask {TINY}")
    assert s.model.meta["rows"] == (df.label != "cat").sum()
    ns["as_list"] = lines[:20]
    s = shell.run_line_magic("lm_train", f"--name frame_list --df as_list {TINY}")
    assert s.model.meta["rows"] == 20
    ns["as_series"] = df["text"]
    s = shell.run_line_magic("lm_train", f"--name frame_series --df as_series {TINY}")
    assert s.model.meta["rows"] == len(lines)
    for name in ("frame", "frame_cats", "frame_mask", "frame_list", "frame_series"):
        get_registry(shell).drop(name)


def test_train_on_files(shell, tiny_text, tmp_path):
    lines = tiny_text.splitlines()
    (tmp_path / "a.txt").write_text("\n".join(lines[:25]) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(lines[25:]) + "\n")
    s = shell.run_line_magic("lm_train", f"--name files --file {tmp_path}/*.txt {TINY}")
    assert s.model.meta["rows"] == len(lines)
    get_registry(shell).drop("files")


def test_variable_expansion(shell, trained, ns):
    ns["who"] = "the cat"
    ns["k"] = 2
    x = shell.run_line_magic("lm_complete", "--name tiny -k {k} {who}")
    assert x.prefix == "the cat" and len(x) == 2
    y = shell.run_line_magic("lm_complete", "--name tiny -k $k $who")
    assert y.pairs == x.pairs


def test_continue_keeps_vocabulary_and_replaces_model(shell, trained, tiny_text):
    reg = get_registry(shell)
    shell.run_cell_magic("lm_train", f"--name more {TINY}", tiny_text)
    first = reg.get("more")
    s = shell.run_cell_magic("lm_train", "--name more --continue --epochs 1 --quiet", "The cat sat on the zebra.\n" * 5)
    assert reg.get("more") is s.model and s.model is not first
    assert s.model.vocab == first.vocab                      # 'zebra' became <unk>
    assert s.model.meta["runs"] == 2
    reg.drop("more")


def test_continue_unknown_model_lists_models(shell, trained):
    msg = _usage(shell, "cell", "--name nosuch --continue --quiet", "some text here")
    assert "nosuch" in msg and "'tiny'" in msg


# ---------------------------------------------------------------------------------------------- using

def test_complete_returns_object_and_stores(shell, trained, ns):
    x = shell.run_line_magic("lm_complete", "--name tiny -k 3 -o kept The cat")
    assert isinstance(x, Completions) and len(x.words) == 3 and x.probs == sorted(x.probs, reverse=True)
    assert ns["kept"] is x
    assert x.pairs == get_registry(shell).get("tiny").next_words("The cat", k=3)
    assert "<table" in x._repr_html_()


def test_complete_keeps_free_text_verbatim(shell, trained):
    x = shell.run_line_magic("lm_complete", "--name tiny the cat's  bowl")
    assert x.prefix == "the cat's  bowl"
    x = shell.run_line_magic("lm_complete", "--name tiny -- -k is text")
    assert x.prefix == "-k is text"
    assert _split_options(shell.magics_manager.magics["line"]["lm_complete"].parser,
                          '-k 2 "the dog"') == ("-k 2 ", "the dog")


def test_generate_is_seeded(shell, trained):
    a = shell.run_line_magic("lm_generate", "--name tiny -n 6 --seed 3 --temperature 0.8 The dog")
    b = shell.run_line_magic("lm_generate", "--name tiny -n 6 --seed 3 --temperature 0.8 The dog")
    assert isinstance(a, Generation) and a.text == b.text and a.prefix == "The dog"
    assert a.text == get_registry(shell).get("tiny").generate("The dog", n_words=6, temperature=0.8, seed=3)
    beam = shell.run_line_magic("lm_generate", "--name tiny -n 4 --beam 3 The")
    assert beam.text


def test_models_info_use_drop(shell, trained, tiny_text, capsys):
    reg = get_registry(shell)
    shell.run_cell_magic("lm_train", f"--name second {TINY} --epochs 1", tiny_text)
    table = shell.run_line_magic("lm_models", "")
    assert isinstance(table, ModelTable) and {"tiny", "second"} <= set(table.names)
    assert "* " in repr(table) and "val ppl" in repr(table) and "<table" in table._repr_html_()
    shell.run_line_magic("lm_use", "tiny")
    assert reg.default == "tiny"
    assert shell.run_line_magic("lm_info", "") is reg.get("tiny")
    assert shell.run_line_magic("lm_info", "second") is reg.get("second")
    shell.run_line_magic("lm_drop", "second")
    assert "second" not in reg and "Dropped 'second'" in capsys.readouterr().out
    assert reg.default == "tiny"


def test_save_and_load_round_trip(shell, trained, tmp_path):
    path = tmp_path / "tiny copy.lm"
    shell.run_line_magic("lm_save", f"--name tiny '{path}'")
    loaded = shell.run_line_magic("lm_load", f"'{path}' --name reloaded")
    reg = get_registry(shell)
    assert reg.get("reloaded") is loaded
    a, b = loaded.next_words("the dog", k=4), reg.get("tiny").next_words("the dog", k=4)
    assert [w for w, _ in a] == [w for w, _ in b]
    assert [p for _, p in a] == pytest.approx([p for _, p in b], rel=1e-5)
    shell.run_line_magic("lm_load", f"'{path}'")                    # name from the file name
    assert "tiny copy" in reg
    reg.drop("reloaded"), reg.drop("tiny copy")
    reg.use("tiny")


def test_config_settings(shell, trained):
    shell.run_line_magic("config", "LMMagics.short_errors = False")
    try:
        with pytest.raises(lm.ModelNotFoundError):
            shell.run_line_magic("lm_complete", "--name missing the")
    finally:
        shell.run_line_magic("config", "LMMagics.short_errors = True")
    shell.run_line_magic("config", "LMMagics.default_model = 'tiny'")
    try:
        assert shell.run_line_magic("lm_complete", "the").model_name == "tiny"
    finally:
        shell.run_line_magic("config", "LMMagics.default_model = ''")


def test_reload_ext_keeps_models_and_settings(shell, trained):
    reg = get_registry(shell)
    before = reg.get("tiny").next_words("the", k=3)
    shell.run_line_magic("config", "LMMagics.sample_words = 2")
    shell.run_line_magic("reload_ext", "lm_magics")
    assert get_registry(shell) is reg
    assert shell.run_line_magic("lm_complete", "--name tiny -k 3 the").pairs == before
    mine = [c for c in shell.configurables if isinstance(c, LMMagics)]
    assert len(mine) == 1 and mine[0].sample_words == 2
    shell.run_line_magic("config", "LMMagics.sample_words = 3")


# ---------------------------------------------------------------------------------------------- interrupts

def _interrupt_at(monkeypatch, at_step: int):
    real = api.train

    def train(*args, on_step=None, **kw):
        def hook(info: StepInfo):
            if info.step >= at_step:
                raise KeyboardInterrupt
        return real(*args, on_step=hook, **kw)
    monkeypatch.setattr(api, "train", train)


def test_interrupt_keeps_best_model_and_says_so(shell, trained, tiny_text, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 8)          # in the second epoch: the run has been validated
    s = shell.run_cell_magic("lm_train", f"--name cut {TINY}", tiny_text)
    assert s.model.report.history, "the step is meant to come after the first validation"
    assert s.interrupted and get_registry(shell).get("cut") is s.model
    assert "interrupted" in repr(s)
    assert "kept the best model so far as 'cut'" in capsys.readouterr().err
    get_registry(shell).drop("cut")
    get_registry(shell).use("tiny")


def test_interrupt_before_first_step_leaves_old_model(shell, trained, tiny_text, monkeypatch, capsys):
    reg = get_registry(shell)
    old = reg.get("tiny")
    before = old.next_words("the cat", k=5)

    def no_step(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "train", no_step)
    with pytest.raises(KeyboardInterrupt, match="before the first step; 'tiny' is unchanged"):
        shell.run_cell_magic("lm_train", f"--name tiny {TINY}", tiny_text)
    assert reg.get("tiny") is old and old.next_words("the cat", k=5) == before


# ---------------------------------------------------------------------------------------------- bad input

def _bad_inputs(tiny_text):
    num = pd.DataFrame({"n": [1, 2, 3], "text": ["a b", "c d", "e f"]})
    empty = pd.DataFrame({"text": [None, float("nan")], "other": ["x", "y"]})
    return {"num_df": num, "empty_df": empty, "a_dict": {"text": "x"}, "a_str": "some text"}, [
        ("cell", f"--name tiny {TINY}", "   \n\n", "The cell is empty"),
        ("cell", f"--name tiny --df nosuchvar --column text {TINY}", "", "No variable named 'nosuchvar'"),
        ("cell", f"--name tiny --df a_dict --column text {TINY}", "", "not a DataFrame"),
        ("cell", f"--name tiny --df a_str {TINY}", "", "not a DataFrame"),
        ("cell", f"--name tiny --df num_df --column txt {TINY}", "", "Columns: 'n', 'text'"),
        ("cell", f"--name tiny --df num_df {TINY}", "", "--column"),
        ("cell", f"--name tiny --df num_df --column n {TINY}", "", "not text"),
        ("cell", f"--name tiny --df empty_df --column text {TINY}", "", "all 2 values are missing"),
        ("cell", f"--name tiny --df num_df --column text --where 'n > 100' {TINY}", "", "keeps no rows"),
        ("cell", f"--name tiny --df num_df --column text --where 'nosuch == 1' {TINY}", "", "Cannot filter"),
        ("cell", f"--name tiny --df num_df --column text {TINY}", "real text here", "use one"),
        ("cell", f"--name tiny --file /nonexistent/*.txt {TINY}", "", "No file matches"),
        ("cell", f"--name tiny --epochs -3 {TINY.replace('--epochs 3', '')}", tiny_text, "epochs must be above 0"),
        ("cell", f"--name tiny {TINY} --epochs many", tiny_text, "expected a whole number"),
        ("cell", f"--name tiny {TINY} --dropout 2", tiny_text, "dropout must be at most"),
        ("cell", f"--name tiny {TINY} --softmax fancy", tiny_text, "invalid choice"),
        ("cell", f"--name tiny {TINY} --bogus 1", tiny_text, "unrecognized arguments"),
        ("cell", f"--name tiny {TINY} -o 'not a name'", tiny_text, "(-o VAR) must be a Python variable name"),
        ("lm_complete", "--name nosuch the cat", None, "No model named 'nosuch'"),
        ("lm_complete", "--name tiny -k 0 the", None, "-k must be at least 1"),
        ("lm_complete", "--name tiny -k x the", None, "invalid int value"),
        ("lm_generate", "--name tiny --top-p 1.5 the", None, "top_p must be at most"),
        ("lm_generate", "--name tiny --temperature -1 the", None, "temperature must be at least"),
        ("lm_info", "nosuch", None, "No model named 'nosuch'"),
        ("lm_use", "nosuch", None, "No model named"),
        ("lm_drop", "nosuch", None, "No model named"),
        ("lm_load", "/nonexistent/model.lm", None, "not found"),
        ("lm_models", "extra", None, "takes no arguments"),
    ]


def test_bad_inputs_are_one_line_usage_errors_and_lose_nothing(shell, trained, tiny_text, ns, tmp_path):
    reg = get_registry(shell)
    old = reg.get("tiny")
    before = old.next_words("the cat", k=5)
    names = reg.names()
    variables, cases = _bad_inputs(tiny_text)
    for key, value in variables.items():
        ns[key] = value
    for kind, line, cell, expected in cases:
        msg = _usage(shell, kind, line, cell)
        assert expected in msg, (line, msg)
    # %lm_save into a missing folder
    msg = _usage(shell, "lm_save", f"--name tiny {tmp_path}/no/such/dir/m.lm")
    assert reg.get("tiny") is old and reg.names() == names
    assert old.next_words("the cat", k=5) == before


def test_cell_magic_without_cell_text(shell, trained):
    msg = _usage(shell, "lm_train", f"--name tiny {TINY}")
    assert "%%lm_train with text in the cell" in msg


def test_background_without_widgets_module(shell, trained, tiny_text, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lm_magics.widgets.monitor", None)   # import fails
    msg = _usage(shell, "cell", f"--name bg --background {TINY}", tiny_text)
    assert "ipywidgets" in msg and "bg" not in get_registry(shell)


def test_background_calls_monitor(shell, trained, tiny_text, monkeypatch):
    import sys
    import types

    calls = {}
    fake = types.ModuleType("lm_magics.widgets.monitor")

    def start_background_training(**kw):
        calls.update(kw)
        return "monitor"
    fake.start_background_training = start_background_training
    monkeypatch.setitem(sys.modules, "lm_magics.widgets.monitor", fake)
    out = shell.run_cell_magic("lm_train", "--name tiny --continue --background --epochs 2 -o mon", tiny_text)
    assert out == "monitor" and shell.user_ns.pop("mon") == "monitor"
    assert calls["name"] == "tiny" and calls["continue_from"] is get_registry(shell).get("tiny")
    assert calls["options"] == {"epochs": 2} and calls["data"] == tiny_text
    assert calls["registry"] is get_registry(shell) and calls["shell"] is shell


# ---------------------------------------------------------------------------------------------- progress

def test_progress_bar_shows_epoch_loss_ppl_speed(shell, trained, tiny_text, capsys):
    shell.run_cell_magic("lm_train", f"--name shown {TINY.replace('--quiet', '')}", tiny_text)
    err = capsys.readouterr().err
    assert "training 'shown' (finished)" in err
    for field in ("epoch=3", "loss=", "ppl=", "val_ppl=", "tok/s="):
        assert field in err
    get_registry(shell).drop("shown")
    get_registry(shell).use("tiny")


def test_progress_with_explicit_stream():
    import io

    from lm_magics.progress import TrainProgress

    buf = io.StringIO()
    p = TrainProgress(desc="t", file=buf)
    p.on_step(StepInfo(step=1, total_steps=4, epoch=1, loss=2.0, lr=0.1, tokens=10, tokens_per_s=100.0, elapsed=0.1))
    p.on_step(StepInfo(step=2, total_steps=4, epoch=1, loss=1.0, lr=0.1, tokens=20, tokens_per_s=100.0, elapsed=0.2))
    p.close("early stop")
    p.close()                      # a second close is harmless
    last = buf.getvalue().split("\r")[-1]
    assert "t (early stop after epoch 1)" in last and "2/4" in last and "ppl=2.7" in last


def test_progress_shows_an_early_stop_as_a_short_success():
    """tqdm's notebook bar turns red when it closes short; an early stop is not an error: green, short."""
    from tqdm.notebook import tqdm as notebook_tqdm

    from lm_magics.progress import TrainProgress

    styles = []

    class NotebookProgress(TrainProgress):
        def _make_bar(self, total):
            bar = notebook_tqdm(total=total, desc=self.desc, leave=True, display=False)
            bar.container.children[1].observe(lambda ch: styles.append(ch["new"]), names="bar_style")
            return bar

    for status, label, style in [("early stop", "t (early stop after epoch 2)", "success"),
                                 ("max_time", "t (time limit, epoch 2)", "success"),
                                 ("finished", "t (finished)", "success"),
                                 ("interrupted", "t (interrupted)", "danger")]:
        styles.clear()
        p = NotebookProgress(desc="t")
        p.on_step(StepInfo(step=2, total_steps=10, epoch=2, loss=1.0, lr=0.1, tokens=20, tokens_per_s=100.0,
                           elapsed=0.2))
        if status == "finished":
            p.on_step(StepInfo(step=10, total_steps=10, epoch=2, loss=1.0, lr=0.1, tokens=20,
                               tokens_per_s=100.0, elapsed=0.2))
        bar = p._bar
        p.close(status)
        label_html, pbar, _ = bar.container.children
        assert styles == [style], status            # never red first, for an early stop
        assert label in label_html.value.replace("\u2007", " "), label_html.value    # tqdm pads with U+2007
        assert pbar.value == (10 if status == "finished" else 2) and pbar.max == 10   # short stays short


# ------------------------------------------------------------------------------------ issue 11

@pytest.mark.parametrize("kind", ["chardev", "fifo"])
def test_lm_save_never_replaces_a_device_or_pipe(shell, trained, tmp_path, kind):
    import os
    import stat

    from conftest import make_special

    node = make_special(kind, tmp_path / "NODE")                     # chardev: `mknod NODE c 1 3`, a /dev/null
    msg = _usage(shell, "lm_save", f"--name tiny {node}")
    assert ("character device" if kind == "chardev" else "named pipe") in msg and "Saved" not in msg
    mode = os.lstat(node).st_mode
    assert stat.S_ISCHR(mode) if kind == "chardev" else stat.S_ISFIFO(mode)


def test_continue_refuses_settings_it_cannot_apply(shell, trained, tiny_text):
    reg = get_registry(shell)
    old = reg.get("tiny")
    msg = _usage(shell, "cell", "--name tiny --continue --level char --hidden-dim 999 --lowercase true --quiet",
                 tiny_text)
    assert "level='char'" in msg and "hidden_dim=999" in msg and "lowercase=True" in msg
    assert reg.get("tiny") is old


def test_continue_in_the_background_is_refused_before_it_starts(shell, trained, tiny_text, monkeypatch):
    from lm_magics.widgets import monitor          # ipywidgets: in the test extra

    monkeypatch.setattr(monitor, "start_background_training", lambda **k: pytest.fail("training started"))
    msg = _usage(shell, "cell", "--name tiny --continue --background --num-layers 3", tiny_text)
    assert "num_layers=3 (the model has 1)" in msg


def test_continue_applies_what_it_can(shell, trained, tiny_text):
    reg = get_registry(shell)
    old = reg.get("tiny")
    try:
        shell.run_cell_magic("lm_train", "--name tiny --continue --epochs 1 --lr 0.001 --dropout 0.2 --quiet "
                                         "--hidden-dim 32 --level word", tiny_text)
        new = reg.get("tiny")
        assert new is not old and (new.config.lr, new.config.dropout, new.config.epochs) == (0.001, 0.2, 1)
        assert (new.config.hidden_dim, new.config.level) == (32, "word")
    finally:
        reg.set("tiny", old)


# ---------------------------------------------------------------------------------------------- n-gram kind

def test_train_ngram_kind_and_score_beside_a_baseline(shell, ns, tiny_text, tiny_model):
    summary = shell.run_cell_magic("lm_train", "--name ng --kind ngram --order 2 --quiet", tiny_text)
    assert summary.model.kind == "ngram" and summary.model.info["order"] == 2
    assert "2-gram" in repr(shell.run_line_magic("lm_info", "ng"))
    assert "a notebook cell" in repr(shell.run_line_magic("lm_info", "ng"))
    assert "kind='ngram' has no hidden_dim" in _usage(shell, "cell", "--kind ngram --hidden-dim 8", "a b c")
    get_registry(shell).set("withbase", tiny_model)
    ns["frame"] = pd.DataFrame({"text": ["The cat sat on the mat.", "import os, sys"] * 3,
                                "code": [False, True] * 3})
    report = shell.run_line_magic("lm_score", "--name withbase --df frame --column text --baseline --label code")
    assert set(report.auc) == {"unusual", "lstm", "ngram", "mix"} and "text_ngram_ppl" in ns["frame"].columns
    assert "is an n-gram itself" in _usage(shell, "lm_score", "--name ng --df frame --column text --baseline "
                                           "--overwrite")
    assert "--positive needs --label" in _usage(shell, "lm_score", "--name withbase --df frame --column text "
                                                "--overwrite --positive x")
    gen = shell.run_line_magic("lm_generate", "--name ng -n 5 --seed 0 The cat")
    assert gen.copies is not None          # the model keeps a copy index: a list, maybe empty
    get_registry(shell).drop("ng"), get_registry(shell).drop("withbase")
# ------------------------------------------------------------------------------------ issue 11: low ones

def test_special_files_in_file_and_load_are_refused_without_hanging(shell, trained, special_files):
    from conftest import no_hang

    fifo = special_files["named pipe"]
    for kind, path in special_files.items():
        msg = no_hang(lambda: _usage(shell, "cell", f"--name tiny --file {path} {TINY}"), unblock=fifo)
        assert f"is a {kind}" in msg and "not a regular file" in msg, msg
        msg = no_hang(lambda: _usage(shell, "lm_load", f"{path} --name special"), unblock=fifo)
        assert f"is a {kind}" in msg and "not a model file" in msg, msg
    assert "special" not in get_registry(shell)


def test_train_file_encoding_option(shell, trained, tmp_path):
    reg = get_registry(shell)
    old = reg.get("tiny")
    p = tmp_path / "latin1.txt"
    p.write_bytes("Le café est près de la forêt.\nLa forêt est près du café.\n".encode("latin-1") * 20)
    msg = _usage(shell, "cell", f"--name tiny --file {p} {TINY}")
    assert "is not UTF-8 text (it looks like Latin-1 text" in msg and "--encoding latin-1" in msg
    assert "Unknown text encoding 'nope'" in _usage(shell, "cell", f"--name tiny --file {p} --encoding nope {TINY}")
    assert "--encoding is the encoding of --file" in _usage(shell, "cell", f"--name tiny --encoding latin-1 {TINY}",
                                                            "some text here")
    assert reg.get("tiny") is old
    shell.run_line_magic("lm_train", f"--name latin --file {p} --encoding latin-1 {TINY}")
    assert {"café", "près", "forêt"} <= set(reg.get("latin").vocab)
    reg.drop("latin")
    assert "--encoding ENC" in LMMagics.lm_train.parser.format_help()     # %lm_train? shows it


def test_option_values_are_checked_in_every_magic(shell, trained, tiny_text):
    reg = get_registry(shell)
    old = reg.get("tiny")
    cases = [
        ("cell", f"--name tiny {TINY} --device meta", tiny_text, "Unknown device 'meta'"),
        ("cell", f"--name tiny {TINY} --device cuda:x", tiny_text, "Unknown device 'cuda:x'"),
        ("cell", f"--name tiny {TINY} --seed 18446744073709551616", tiny_text, "seed must be at most"),
        ("cell", f"--name tiny {TINY} --lowercase maybe", tiny_text, "--lowercase: expected true or false"),
        ("lm_generate", "--name tiny --temperature 1e308 the", None, "temperature must be at most 100"),
        ("lm_generate", "--name tiny --temperature inf the", None, "temperature must be a finite number"),
        ("lm_generate", "--name tiny --top-p nan the", None, "top_p must be a finite number"),
        ("lm_generate", "--name tiny --seed 99999999999999999999 the", None, "seed must be at most"),
        ("lm_generate", "--name tiny -n many the", None, "--n-words: expected a whole number"),
    ]
    for kind, line, cell, expected in cases:
        assert expected in _usage(shell, kind, line, cell), line
    assert reg.get("tiny") is old
    magics = next(c for c in shell.configurables if type(c).__name__ == "LMMagics")
    magics.device = "meta"
    try:
        assert "Unknown device 'meta'" in _usage(shell, "cell", f"--name tiny {TINY}", tiny_text)
    finally:
        magics.device = ""
    gen = shell.run_line_magic("lm_generate", "--name tiny -n 5 --temperature 100 --top-p 1e-300 --seed 1 the")
    assert len(gen.text.split()) >= 1


def test_dataframe_labels_and_where_masks_through_the_magic(shell, trained, ns):
    reg = get_registry(shell)
    ns["dup_df"] = pd.DataFrame([["the cat sat", "x"]] * 5, columns=["text", "text"])
    ns["int_df"] = pd.DataFrame({0: ["the cat sat on the mat"] * 5, 1: list(range(5))})
    ns["lab_df"] = pd.DataFrame({"n": [1, 2, 3], "text": ["the cat", "a dog", "the mat"]})
    assert "has 2 columns labelled 'text'" in _usage(shell, "cell", f"--name tiny --df dup_df --column text {TINY}")
    assert "'int_df' has no column '7'" in _usage(shell, "cell", f"--name tiny --df int_df --column 7 {TINY}")
    msg = _usage(shell, "cell", f"--name tiny --df lab_df --column text --where 'n + 1' {TINY}")
    assert "gives int64 values, not True/False for each row" in msg
    shell.run_line_magic("lm_train", f"--name ints --df int_df --column 0 {TINY}")
    assert "mat" in reg.get("ints").vocab
    reg.drop("ints")


def test_lm_train_takes_a_budget_and_says_what_it_bought(shell, tiny_text):
    summary = shell.run_cell_magic("lm_train", "--name budgeted --hidden-dim 16 --embed-dim 8 --seed 0 --quiet "
                                   "--budget 2m", tiny_text)
    model = summary.model
    assert model.meta["budget_s"] == 120.0 and model.report.plan.budget_s == 120.0
    assert any(n.startswith("budget 2.0 min: bought") for n in model.report.notes)   # shown by the summary
    assert "budget 2.0 min: bought" in repr(summary) and "thread" in repr(summary)
    with pytest.raises(UsageError, match="budget 'soon' is not a time"):
        shell.run_cell_magic("lm_train", "--name bad --budget soon --quiet", tiny_text)
