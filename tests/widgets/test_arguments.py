"""Wrong arguments to the widgets get the project's one-line errors (issue 11)."""

from __future__ import annotations


import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.errors import ConfigError  # noqa: E402
from lm_magics.widgets import ChatAssistant, CompletionPanel  # noqa: E402
pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


# ------------------------------------------------------------------------------------ issue 11: bad arguments

@pytest.mark.parametrize("make, error, message", [
    (lambda reg: ChatAssistant(123, registry=reg), ConfigError, "model_or_name must be a LanguageModel or a model name"),
    (lambda reg: CompletionPanel(123, registry=reg), ConfigError, "model_or_name must be a LanguageModel"),
    (lambda reg: CompletionPanel(["pets"], registry=reg), ConfigError, "got list"),
    (lambda reg: ChatAssistant("pets", registry="reg"), ConfigError, "registry must be a ModelRegistry"),
    (lambda reg: ChatAssistant("pets", registry=reg, user_ns=5), ConfigError, "user_ns must be a dict"),
    (lambda reg: ChatAssistant("pets", registry=reg, show_alternatives="yes"), ConfigError, "show_alternatives"),
    (lambda reg: ChatAssistant("pets", registry=reg, temperature=1e308), ConfigError, "temperature must be at most"),
    (lambda reg: ChatAssistant("pets", registry=reg, seed=2**64), ConfigError, "seed must be at most"),
    (lambda reg: CompletionPanel("pets", registry=reg, temperature=float("nan")), ConfigError, "finite number"),
    (lambda reg: CompletionPanel("pets", registry=reg, seed=-1), ConfigError, "seed must be at least 0"),
    (lambda reg: CompletionPanel("pets", registry=reg, n_words="5"), ConfigError, "n_words must be a number"),
    (lambda reg: CompletionPanel("pets", registry=reg, debounce="fast"), ConfigError, "debounce must be"),
    (lambda reg: CompletionPanel("pets", registry=reg, debounce=float("inf")), ConfigError, "debounce must be"),
    (lambda reg: CompletionPanel("pets", registry=reg, value=5), lm.DataError, "value must be text"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_widgets_refuse_wrong_arguments_with_the_projects_errors(reg, make, error, message):
    with pytest.raises(error, match=message) as e:
        make(reg)
    assert type(e.value) is error and "\n" not in str(e.value)


def test_panel_value_none_clears_and_other_types_are_refused(reg, model):
    p = CompletionPanel("pets", registry=reg, k=3, debounce=0, value="the cat ")
    p.value = None                       # as good as "": an empty panel suggests the first words of a text
    assert p.value == "" and p.input.value == ""
    assert p.suggestions == model.next_words("", 3)
    for bad in (5, b"the", ["the"]):
        with pytest.raises(lm.DataError, match="value must be text"):
            p.value = bad
    assert p.value == ""
    with pytest.raises(lm.DataError, match=r"accept\(\) takes a word"):
        p.accept(None)
    c = ChatAssistant("pets", registry=reg, user_ns={}, seed=0)
    with pytest.raises(lm.DataError, match=r"send\(\) takes a message"):
        c.send(None)
    assert c.messages == []


@pytest.mark.parametrize("command, message", [
    ("/temp 1e308", "temperature must be at most 100"),
    ("/temp 100.5", "temperature must be at most 100"),
    ("/temp 1e999", "needs a finite number"),
    ("/temp inf", "needs a finite number"),
    ("/len 10000000000", "n_words must be at most"),
])
def test_chat_refuses_extreme_settings_and_keeps_answering(reg, command, message):
    # `/temp 1e308` was accepted, and every later reply failed with "probability tensor contains inf, nan".
    c = ChatAssistant("pets", registry=reg, user_ns={}, seed=0)
    c.send(command)
    assert c.messages[-1]["role"] == "error" and message in c.messages[-1]["text"]
    assert c.send("the cat") and c.messages[-1]["role"] == "assistant"
    for ok in ("/temp 100", "/temp 1e-300", "/temp 0.000001"):   # every allowed value answers
        c.send(ok)
        assert c.messages[-1]["role"] == "system", c.messages[-1]
        assert c.send("the dog") and c.messages[-1]["role"] == "assistant"
