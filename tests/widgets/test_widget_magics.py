"""%lm_panel, %lm_chat and %%lm_train --background through a real InteractiveShell."""

from __future__ import annotations


import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import ChatAssistant, CompletionPanel  # noqa: E402
from conftest import registered  # noqa: E402
from conftest import wait_until
from widget_fixtures import TEXT  # noqa: E402

pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


# ------------------------------------------------------------------------------------ magics

@pytest.fixture
def shell(shell, model):
    """The session's shell (tests/conftest.py) with this module's model registered as 'widget_magics_pets'."""
    with registered(shell, "widget_magics_pets", model):
        yield shell


def test_lm_panel_and_lm_chat_magics(shell, model):
    from IPython.core.error import UsageError

    p = shell.run_line_magic("lm_panel", "--name widget_magics_pets -k 3")
    assert isinstance(p, CompletionPanel) and p.model is model and p.k == 3
    c = shell.run_line_magic("lm_chat", "--name widget_magics_pets")
    assert isinstance(c, ChatAssistant) and c.model is model
    c.send("the cat")
    c.send("/export widget_convo")
    assert len(shell.user_ns.pop("widget_convo")) == 2
    with pytest.raises(UsageError, match="No model named 'nope'"):
        shell.run_line_magic("lm_panel", "--name nope")
    with pytest.raises(UsageError, match="No model named 'nope'"):
        shell.run_line_magic("lm_chat", "--name nope")
    with pytest.raises(UsageError, match="unrecognized arguments: -n"):   # -n is a word count elsewhere
        shell.run_line_magic("lm_chat", "-n widget_magics_pets")
    with pytest.raises(UsageError):
        shell.run_line_magic("lm_panel", "-k many")
    with pytest.raises(UsageError, match="k must be"):
        shell.run_line_magic("lm_panel", "-k 0")
    p.close(), c.close()


def test_lazy_exports():
    assert lm.CompletionPanel is CompletionPanel and lm.ChatAssistant is ChatAssistant
    assert "CompletionPanel" in lm.__all__ and "ChatAssistant" in lm.__all__
    with pytest.raises(AttributeError):
        lm.NoSuchThing


def test_lm_train_background_magic_returns_a_stoppable_monitor(shell):
    from lm_magics.registry import get_registry
    from lm_magics.widgets.monitor import TrainingMonitor

    shell.run_line_magic("load_ext", "lm_magics")
    result = shell.run_cell("%%lm_train --name widget_bg --background --epochs 400 --patience 1000 "
                            "--hidden-dim 16 --embed-dim 8\n" + TEXT)
    mon = result.result
    assert result.error_in_exec is None and isinstance(mon, TrainingMonitor)
    try:
        assert wait_until(lambda: mon.step is not None)
    finally:
        mon.stop()
        assert mon.join(30)
    reg = get_registry(shell)
    # A run stopped before its first validation is kept aside (registry.register_run), after it by its name.
    got = "widget_bg" if mon.model.report.history else "widget_bg_interrupted"
    assert mon.registered_as == got and reg.get(got) is mon.model and mon.model.interrupted
    reg.drop(got)


def test_panel_and_chat_work_with_an_ngram_model(tiny_text):
    reg = ModelRegistry()
    reg.set("ng", lm.train(tiny_text, kind="ngram"))
    panel = CompletionPanel("ng", registry=reg, k=3)
    panel.value = "The cat"
    assert panel.words and panel.continue_text(4)
    chat = ChatAssistant("ng", registry=reg)
    chat.send("The dog")
    assert chat.messages[-1]
    panel.close(), chat.close()
