"""Copy notes where generation reaches users: the panel's Continue and the chat's replies."""

from __future__ import annotations


import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import ChatAssistant, CompletionPanel  # noqa: E402
pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


# ---------------------------------------------------------------------------------------------- copies

PLANTED = [f"row {i} says the weather is fine today ." for i in range(20)] + [
    "patient zeta reported sharp pain in the left knee after the long walk home"]


@pytest.fixture(scope="module")
def planted():
    """An n-gram over rows where one (row 20) is unique: greedy generation from its start recites it."""
    return lm.train(PLANTED, kind="ngram", val_fraction=0.0)


def test_panel_continue_says_which_training_row_it_copies(planted):
    p = CompletionPanel(planted, registry=ModelRegistry(), temperature=0.0, n_words=10,
                        value="patient zeta reported")
    p.continue_button.click()
    assert p.value.startswith("patient zeta reported sharp pain in the left knee")
    assert p.copies and p.copies[0]["row"] == 20 and p.copies[0]["length"] >= 8
    assert "training row 20" in p.copy_note and "training row 20" in p.copy_label.value
    assert "lm-copies" in p.copy_label.value and p.last_error is None
    p.value = "so the"                          # the user edits: the note was about the last Continue
    assert p.copy_label.value == "" and p.copy_note == ""
    p.n_words.value = 2
    p.continue_button.click()                   # "so the weather is": 3 tokens of a row, no copy
    assert p.copies == [] and p.copy_note == "" and p.copy_label.value == ""
    p.close()


def test_panel_without_a_copy_index_says_not_available(planted):
    bare = lm.train(PLANTED, kind="ngram", val_fraction=0.0, copy_window=0)
    p = CompletionPanel(bare, registry=ModelRegistry(), temperature=0.0, n_words=10,
                        value="patient zeta reported")
    p.continue_button.click()
    assert p.copies is None and "not available" in p.copy_note and "not available" in p.copy_label.value
    assert "row 20" not in p.copy_label.value and "lm-copies-unavailable" in p.copy_label.value
    p.close()


def test_chat_reply_says_which_training_row_it_copies(planted):
    c = ChatAssistant(planted, registry=ModelRegistry(), temperature=0.0, n_words=10)
    answer = c.send("patient zeta reported")
    assert answer.startswith("sharp pain in the left knee")
    msg = c.messages[-1]
    assert msg["copies"][0]["row"] == 20 and "training row 20" in msg["copy_note"]
    assert "lm-chat-copies" in c.history.children[-1].value and "training row 20" in c.history.children[-1].value
    assert answer == msg["text"]                # the note is beside the reply, not in it
    c.settings = c.settings.replace(n_words=2)
    c.send("so the")
    assert c.messages[-1]["copies"] == [] and "lm-chat-copies" not in c.history.children[-1].value

    bare = ChatAssistant(lm.train(PLANTED, kind="ngram", val_fraction=0.0, copy_window=0),
                         registry=ModelRegistry(), temperature=0.0, n_words=10)
    bare.send("patient zeta reported")
    msg = bare.messages[-1]
    assert msg["copies"] is None and "not available" in bare.history.children[-1].value
    assert "row 20" not in bare.history.children[-1].value
