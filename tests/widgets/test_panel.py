"""The completion panel without a browser: set ``.value``, ``.click()`` buttons, read its state."""

from __future__ import annotations

import re
import threading

import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.errors import ConfigError, LMError, ModelNotFoundError  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import CompletionPanel  # noqa: E402
from lm_magics.engine.tokenizer import EOS  # noqa: E402
from lm_magics.widgets._base import iter_words, prob_text, word_text  # noqa: E402
from lm_magics.widgets.panel import append_word, join_continuation, split_partial  # noqa: E402
from conftest import wait_until
from widget_fixtures import visible  # noqa: E402

pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


# ------------------------------------------------------------------------------------ helpers

def test_split_partial_and_append_word():
    assert split_partial("the ca") == ("the ", "ca")
    assert split_partial("the cat ") == ("the cat ", "")
    assert split_partial("the cat.") == ("the cat.", "")
    assert split_partial("") == ("", "")
    assert append_word("the", "cat") == "the cat "
    assert append_word("the cat ", ".") == "the cat. "
    assert append_word("", "the") == "the "


def test_probabilities_and_punctuation_read_clearly():
    assert [prob_text(p) for p in (0.0, 0.003, 0.0049, 0.005, 0.0051, 0.02, 0.5)] == [
        "<1%", "<1%", "<1%", "<1%", "1%", "2%", "50%"]          # never "0%"
    assert [word_text(w) for w in ("cat", ",", ".", "--", "'s", "n't", "3")] == [
        "cat", "“,”", "“.”", "“--”", "'s", "n't", "3"]


def test_join_continuation_spaces_like_generate(model):
    tok = model.tokenizer
    assert join_continuation(tok, "the dog", [",", "and", "the"]) == "the dog, and the "
    assert join_continuation(tok, "the dog ", [",", "and"]) == "the dog, and "      # no " ," left behind
    assert join_continuation(tok, "the dog", [".", EOS, "a", "cat"]) == "the dog. a cat "   # no line break
    assert join_continuation(tok, "the dog", [EOS, ",", "a"]) == "the dog, a "
    assert join_continuation(tok, "", ["the", "cat"]) == "the cat "
    assert join_continuation(tok, "the dog", []) == "the dog"
    assert join_continuation(tok, "Wait!\n", ["the", "cat"]) == "Wait!\nthe cat "      # the user's line break stays

# ------------------------------------------------------------------------------------ panel

def test_panel_suggests_next_words_as_buttons(reg, model):
    p = CompletionPanel("pets", registry=reg, k=4, debounce=0)
    p.value = "the cat sat on the "
    assert p.suggestions == model.next_words("the cat sat on the ", 4)
    assert len(visible(p)) == 4
    word, prob = p.suggestions[0]
    assert p.buttons[0].description == f"{word_text(word)} {prob_text(prob)}"
    assert "pets" in p.status.value and " ms" in p.status.value
    assert p.latency_ms is not None and p.latency_ms >= 0
    before = list(p.suggestions)
    p.value = "a dog ran to the "
    assert p.suggestions != before
    assert "lm-panel" in p.widget._dom_classes and "lm-panel-input" in p.input._dom_classes


def test_panel_completes_a_half_typed_word(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the b"
    assert p.words and all(w.startswith("b") for w in p.words)
    assert p.suggestions == model.next_words("the ", 5, startswith="b")
    word = p.words[0]
    p.buttons[0].click()
    assert p.value == f"the {word} "


def test_panel_shows_its_mode_next_to_the_buttons(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    assert p.mode == "first" and p.mode_text == "first word"
    p.value = "the bi"                                 # no trailing space: the click completes "bi"
    assert p.mode == "complete" and p.mode_text == "completing “bi…” (share among words starting with “bi”)"
    assert "completing “bi…”" in p.mode_label.value and "lm-panel-mode-complete" in p.mode_label.value
    assert p.words and all(w.startswith("bi") for w in p.words)
    assert p.buttons[0].tooltip.startswith(f"complete to '{p.words[0]}'")
    p.value = "the cat sat on the "
    assert p.mode == "next" and p.mode_text == "next word after “…cat sat on the”"
    assert "next word after" in p.mode_label.value and p.hint == ""
    assert p.buttons[0].tooltip.startswith(f"add '{p.words[0]}'")
    p.value = "the cat sat"
    assert p.mode == "complete"
    p.buttons[0].click()                               # completes: the label switches to next words
    assert p.value == f"the cat {p.value.split()[2]} " and p.mode == "next"
    assert p.mode_label.value.count("next word after") == 1


def test_panel_says_why_when_no_word_matches(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the cat zq"                             # nothing in the vocabulary starts with "zq"
    assert model.next_words("the cat ", 5, startswith="zq") == []
    assert p.mode == "next" and p.suggestions == model.next_words("the cat zq", 5) and len(visible(p)) == 5
    assert p.hint == "“zq” is not in the vocabulary"
    assert p.mode_text == "“zq” is not in the vocabulary; next word after “the cat zq”"
    assert "lm-panel-hint" in p.mode_label.value and "not in the vocabulary" in p.mode_label.value
    word = p.words[0]
    p.buttons[0].click()                               # what the label says: the word comes after "zq"
    assert p.value == append_word("the cat zq", word)
    assert p.hint == ("" if word[0].isalnum() else
                      "“zq” is not a word the model knows; suggestions treat it as unknown")
    p.value = "the cat zq"
    assert p.accept("dog") == "the cat zq dog "      # from code too


def test_panel_says_when_the_last_word_is_unknown(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    hint = "“floob” is not a word the model knows; suggestions treat it as unknown"
    for text in ("the floob ", "the floob, ", "the floob\n"):            # after a space, punctuation, a line end
        p.value = text
        assert p.mode == "next" and p.hint == hint and p.mode_text.startswith(hint + "; next word after")
        assert "lm-panel-hint" in p.mode_label.value and "floob" in p.mode_label.value
        assert p.suggestions == model.next_words(text, 5)           # the model reads it as <unk>
    p.value = "the floob b"                                          # completing after the unknown word
    assert p.mode == "complete" and p.hint == hint and p.mode_text.startswith(hint + "; completing “b…”")
    for text in ("the cat ", "the cat sat", "", "floob cat "):       # the last complete word is known
        p.value = text
        assert p.hint == "", text


def test_panel_completions_show_their_share_among_the_matching_words(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0, k=20)
    p.value = "the b"
    matching = model.next_words("the ", len(model.tokenizer), startswith="b")
    total = sum(q for _, q in matching)
    assert p.mode == "complete" and len(p.shares) == len(p.suggestions) == min(20, len(matching))
    assert p.shares == pytest.approx([q / total for _, q in p.suggestions])
    if len(matching) <= 20:
        assert sum(p.shares) == pytest.approx(1.0)
    for b, (w, q), share in zip(p.buttons, p.suggestions, p.shares):
        assert b.description == f"{word_text(w)} {prob_text(share)}"    # the share, not P(word | text)
        assert share >= q and f"as the next word, probability {q:.4f}" in b.tooltip
    assert "share among words starting with “b”" in p.mode_label.value
    p.value = "the "                                                 # next words: no shares
    assert p.shares == [] and p.buttons[0].description == f"{word_text(p.words[0])} {prob_text(p.suggestions[0][1])}"


def test_a_single_matching_word_has_all_of_the_share(reg, model, monkeypatch):
    monkeypatch.setattr(model, "next_words", lambda *a, **kw: [("belly", 0.003)])
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the bel"
    assert p.mode == "complete" and visible(p) == ["belly 100%"] and p.shares == [1.0]
    monkeypatch.setattr(model, "next_words", lambda *a, **kw: [("belly", 0.003), ("bells", 0.000001)])
    p.value = "the be"
    assert visible(p) == ["belly >99%", "bells <1%"]                 # not exact: never 100% or 0%


def test_panel_buttons_show_small_probabilities_and_punctuation(reg, model, monkeypatch):
    monkeypatch.setattr(model, "next_words", lambda *a, **kw: [("cat", 0.5), (",", 0.02), ("dog", 0.003)])
    p = CompletionPanel("pets", registry=reg, k=4, debounce=0)
    p.value = "the "
    assert visible(p) == ["cat 50%", "“,” 2%", "dog <1%"]
    assert ["lm-panel-punct" in b._dom_classes for b in p.buttons[:3]] == [False, True, False]
    assert p.buttons[1].style.font_family == "monospace" and p.buttons[0].style.font_family is None
    assert "suggestions=[cat 50%, “,” 2%, dog <1%]" in repr(p)
    monkeypatch.setattr(model, "next_words", lambda *a, **kw: [(".", 0.4), ("cat", 0.3)])
    p.value = "the cat "
    assert ["lm-panel-punct" in b._dom_classes for b in p.buttons[:2]] == [True, False]
    assert p.buttons[1].style.font_family is None                  # the style goes with the class
    p.buttons[0].click()
    assert p.value == "the cat. "


def test_panel_click_appends_and_refreshes(reg):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the cat "
    i = next(i for i, w in enumerate(p.words) if w.isalpha())   # punctuation would glue to "cat"
    word = p.words[i]
    p.buttons[i].click()
    assert p.value == f"the cat {word} "
    assert p.suggestions and p.suggestions == reg.get("pets").next_words(p.value, 5)
    n = len(p.value)
    p.buttons[0].click()
    assert len(p.value) > n


def test_panel_continue_generates_n_words(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0, seed=3, n_words=6)
    p.value = "the dog "
    p.continue_button.click()
    cfg = lm.GenerateConfig(n_words=6, temperature=p.temperature.value, seed=3)
    tokens = list(iter_words(model, "the dog ", cfg))
    assert p.value == join_continuation(model.tokenizer, "the dog ", tokens)
    tok = model.tokenizer
    assert tok.tokenize(p.value)[2:] == [t for t in tokens if t != EOS] and len(tok.tokenize(p.value)) == 8
    p.n_words.value = 2
    before = p.value
    p.continue_text()
    assert p.value.startswith(before.rstrip())


def test_panel_continue_writes_running_text(reg, model):
    # Across seeds, Continue writes the words iter_words generates (`words` of them, fewer when the text
    # reaches a blank line) as running text: line ends and spaces before punctuation ("mat . \n , and")
    # would mean it joined tokens differently from generate.
    tok = model.tokenizer
    crossed = 0
    for seed in range(12):
        p = CompletionPanel("pets", registry=reg, debounce=0, seed=seed, n_words=12)
        p.value = "the dog"
        p.continue_button.click()
        new = p.value[len("the dog"):]
        assert "\n" not in p.value and p.value.endswith(" ") and not p.value.endswith("  ")
        assert not re.search(r" [,.!?;:]", p.value), p.value
        cfg = lm.GenerateConfig(n_words=12, temperature=0.8, seed=seed)
        tokens = list(iter_words(model, "the dog", cfg))
        assert 1 <= len(tok.tokenize(new)) == len([t for t in tokens if t != EOS]) <= 12
        crossed += EOS in tokens
    assert crossed        # some of them did run past the end of a line


def test_panel_k_slider_changes_button_count(reg):
    p = CompletionPanel("pets", registry=reg, k=3, debounce=0)
    p.value = "the "
    assert len(visible(p)) == 3
    p.k_slider.value = 7
    assert len(p.suggestions) == 7 and len(visible(p)) == 7
    p.k_slider.value = 2
    assert len(p.suggestions) == 2 and len(p.suggestion_box.children) == 2


def test_panel_model_dropdown_switches_model(reg, model, other):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    assert set(p.model_select.options) == {"pets", "other"} and p.model_select.value == "pets"
    p.value = "the "
    p.model_select.value = "other"
    assert p.model is other and p.name == "other"
    assert p.suggestions == other.next_words("the ", 5)
    assert "other" in p.status.value


def test_panel_follows_a_re_registered_name_and_new_names(reg, model, other):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the "
    reg.set("pets", other)                         # e.g. training of 'pets' finished
    assert p.model is other and p.suggestions == other.next_words("the ", 5)
    reg.set("third", model, make_default=False)
    assert "third" in p.model_select.options and p.name == "pets"
    reg.drop("pets")                               # nothing lost: the panel keeps its model
    assert p.model is other and "pets" not in p.model_select.options
    p.value = "a "
    assert p.suggestions == other.next_words("a ", 5)


def test_panel_with_a_model_object_and_an_empty_registry(model):
    empty = ModelRegistry()
    p = CompletionPanel(model, registry=empty, debounce=0)
    assert p.name == "(given model)" and p.model_select.value == "(given model)"
    p.value = "the "
    assert p.suggestions == model.next_words("the ", 5)
    waiting = CompletionPanel(registry=ModelRegistry(), debounce=0)
    assert waiting.model is None and "No model" in waiting.status.value
    waiting.value = "the "            # no model: the error is shown, not raised
    assert "Error" in waiting.status.value and "%%lm_train" in waiting.last_error
    waiting.registry.set("late", model)
    assert waiting.name == "late" and waiting.suggestions == model.next_words("the ", 5)


def test_panel_errors_show_in_the_status_area(reg, model, monkeypatch):
    p = CompletionPanel("pets", registry=reg, debounce=0)

    def broken(*a, **kw):
        raise LMError("the model is unhappy; try again")

    monkeypatch.setattr(model, "next_words", broken)
    p.value = "the "
    assert "Error: the model is unhappy; try again" in p.status.value
    assert p.last_error == "the model is unhappy; try again"

    def bug(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "next_words", bug)
    p.value = "the cat "
    assert "RuntimeError: boom" in p.status.value
    assert any("Traceback" in o.get("text", "") for o in p.log.outputs)   # the traceback is kept
    monkeypatch.undo()
    p.value = "the dog "
    assert "Error" not in p.status.value and p.suggestions


def test_panel_debounce_updates_once_typing_pauses(reg, model):
    p = CompletionPanel("pets", registry=reg, debounce=0.05)
    calls = []
    orig = p.refresh

    def counting():
        calls.append(p.value)
        return orig()

    p.refresh = counting
    for text in ["t", "th", "the", "the ", "the c"]:
        p.value = text
    assert wait_until(lambda: calls)
    assert wait_until(lambda: p.suggestions == model.next_words("the ", 5, startswith="c"))
    assert calls[-1] == "the c"
    p.close()


def test_panel_updates_at_once_by_default(reg, model):
    p = CompletionPanel("pets", registry=reg)
    assert p.debounce == 0
    p.value = "the c"                                  # no timer: the suggestions are there already
    assert p.suggestions == model.next_words("the ", 5, startswith="c") and p.mode == "complete"


def test_panel_stale_result_never_overwrites_a_newer_one(reg, model, monkeypatch):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    real = model.next_words
    started, release = threading.Event(), threading.Event()

    def slow_for_old_text(prefix, k=5, **kw):
        if prefix.startswith("the old"):
            started.set()
            release.wait(10)                            # the old update is slow...
        return real(prefix, k, **kw)

    monkeypatch.setattr(model, "next_words", slow_for_old_text)
    p._set_text("the old dog ")                         # text set without an update, as a keystroke is
    old = threading.Thread(target=p.refresh)
    old.start()
    assert started.wait(10)
    p.value = "the new cat "                            # ...a newer text is shown meanwhile
    newer = list(p.suggestions)
    assert newer == real("the new cat ", 5) and p.mode_text == "next word after “the new cat”"
    release.set()
    old.join(10)
    assert p.suggestions == newer and p.mode_text == "next word after “the new cat”"
    assert visible(p) == [f"{word_text(w)} {prob_text(pr)}" for w, pr in newer]


def test_panel_bad_arguments(reg):
    with pytest.raises(ConfigError, match="k must be"):
        CompletionPanel("pets", registry=reg, k=0)
    with pytest.raises(ModelNotFoundError, match="No model named 'nope'"):
        CompletionPanel("nope", registry=reg)


def test_panel_display_and_close(reg):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    bundle = p._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("CompletionPanel(model='pets'")
    p.close()
    assert p.widget.comm is None
    reg.set("pets", reg.get("other"))       # a closed panel no longer follows the registry
    assert p.name == "pets" and p.model is not reg.get("pets")
