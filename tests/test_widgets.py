"""The panel, the chat, the background-training monitor and their magics, driven without a browser:
set ``.value``, call ``.click()``, read the widgets' state."""

from __future__ import annotations

import re
import sys
import threading

import pytest

pytest.importorskip("ipywidgets")

import lm_magics as lm  # noqa: E402
from lm_magics.errors import ConfigError, LMError, ModelNotFoundError  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import ChatAssistant, CompletionPanel  # noqa: E402
from lm_magics.engine.tokenizer import EOS  # noqa: E402
from lm_magics.widgets._base import iter_words, prob_text, word_text  # noqa: E402
from lm_magics.widgets.chat import HELP, HELP_ROWS  # noqa: E402
from lm_magics.widgets.monitor import start_background_training  # noqa: E402
from lm_magics.widgets.panel import append_word, join_continuation, split_partial  # noqa: E402
from conftest import wait_until

TEXT = "\n".join([
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog are friends .",
    "the bird sang in the tree .",
    "the cat saw the bird in the tree .",
    "a dog ran to the park .",
    "the mat was red and the log was brown .",
    "birds and cats and dogs play in the park .",
] * 4)
TINY = dict(epochs=2, hidden_dim=32, embed_dim=16, seed=0)


@pytest.fixture(scope="module")
def model():
    return lm.train(TEXT, **TINY)


@pytest.fixture(scope="module")
def other():
    return lm.train(TEXT.replace("cat", "fox"), **TINY)


@pytest.fixture
def reg(model, other):
    r = ModelRegistry()
    r.set("other", other)
    r.set("pets", model)          # the default
    return r


def visible(panel):
    return [b.description for b in panel.buttons if b.layout.display != "none"]


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
    assert p.mode == "complete" and p.mode_text == "completing “bi…”"
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
    assert p.value == append_word("the cat zq", word) and p.hint == ""
    p.value = "the cat zq"
    assert p.accept("dog") == "the cat zq dog "      # from code too


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
    # Across seeds, Continue writes exactly `words` words as running text: line ends and spaces before
    # punctuation ("mat . \n , and") would mean it joined tokens differently from generate.
    tok = model.tokenizer
    crossed = 0
    for seed in range(12):
        p = CompletionPanel("pets", registry=reg, debounce=0, seed=seed, n_words=12)
        p.value = "the dog"
        p.continue_button.click()
        new = p.value[len("the dog"):]
        assert "\n" not in p.value and p.value.endswith(" ") and not p.value.endswith("  ")
        assert not re.search(r" [,.!?;:]", p.value), p.value
        assert len(tok.tokenize(new)) == 12
        cfg = lm.GenerateConfig(n_words=12, temperature=0.8, seed=seed)
        crossed += EOS in iter_words(model, "the dog", cfg)
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


# ------------------------------------------------------------------------------------ chat

def test_chat_answers_by_continuing_the_message_streamed(reg, model):
    c = ChatAssistant("pets", registry=reg, seed=1, n_words=8)
    answer = c.send("the <b>cat</b> & the")
    assert [m["role"] for m in c.messages] == ["user", "assistant"]
    user_html = c.history.children[0].value
    assert "&lt;b&gt;cat&lt;/b&gt; &amp; the" in user_html and "<b>cat</b>" not in user_html
    cfg = lm.GenerateConfig(n_words=8, temperature=0.8, seed=1)
    tokens = list(iter_words(model, "the <b>cat</b> & the", cfg))
    assert answer == c.messages[1]["text"] == model.tokenizer.join(tokens)
    assert len(model.tokenizer.tokenize(answer)) == 8          # 8 words, as the status says
    assert c.messages[1]["alternatives"] == model.next_words("the <b>cat</b> & the", 3)
    assert "lm-chat-assistant" in c.history.children[1]._dom_classes

    # streamed: the assistant bubble is rewritten once per token
    bubble_values = []
    c2 = ChatAssistant("pets", registry=reg, seed=1, n_words=8)
    orig = c2._update

    def spy(msg, bubble):
        bubble_values.append(msg["text"])
        orig(msg, bubble)

    c2._update = spy
    c2.send("the <b>cat</b> & the")
    assert len(bubble_values) >= len(tokens) and bubble_values[-1] == answer
    if len(tokens) > 1:
        assert bubble_values[0] != bubble_values[-1]      # it grew word by word


def test_chat_answers_have_the_promised_length_across_line_ends(reg, model):
    c = ChatAssistant("pets", registry=reg, seed=0, n_words=20)
    assert "20 words" in c.status.value
    answers = [c.send(text) for text in ("the dog", "a cat", "the bird sang")]
    tok = model.tokenizer
    assert [len(tok.tokenize(a)) for a in answers] == [20, 20, 20]    # lines end, the answer goes on
    assert any("\n" in a for a in answers)                           # (a line end is a line break)
    assert not any(a.startswith("\n") or "\n\n" in a for a in answers)
    c.send("/len 5")
    assert c.messages[-1]["text"] == "answers of 5 words" and "5 words" in c.status.value
    assert len(tok.tokenize(c.send("the dog"))) == 5


def test_iter_words_gives_up_on_a_model_that_only_ends_lines(model, monkeypatch):
    monkeypatch.setattr(model, "iter_generate", lambda *a, **kw: iter(()))
    assert list(iter_words(model, "the", lm.GenerateConfig(n_words=5))) == []


def test_chat_keeps_the_newest_message_in_view(reg):
    c = ChatAssistant("pets", registry=reg, seed=0, n_words=3)
    # The scroll box lays out bottom-up: the browser keeps it scrolled to the end as bubbles arrive.
    lay = c.scroller.layout
    assert (lay.display, lay.flex_flow, lay.overflow, lay.max_height) == ("flex", "column-reverse", "auto", "420px")
    assert c.scroller.children == (c.history,) and c.history.layout.flex == "0 0 auto"
    assert c.widget.children[0] is c.scroller and "lm-chat-scroll" in c.scroller._dom_classes
    for i in range(6):
        c.send(f"the cat {i}")
    assert c.history.children == tuple(c._bubbles) and len(c.history.children) == 12   # reading order
    assert "the cat 5" in c.history.children[-2].value


def test_chat_bubbles_keep_their_side_offsets(reg):
    c = ChatAssistant("pets", registry=reg, seed=0, n_words=3)
    c.send("the cat")
    c.send("/bogus")
    c.send("/models")
    margins = {}
    for bubble in c.history.children:
        style = re.search(r"class='lm-bubble lm-bubble-(\w+)' style='([^']*)'", bubble.value)
        decls = [d.split(":", 1) for d in style.group(2).split(";") if d.strip()]
        found = [v for k, v in decls if k.strip().startswith("margin")]
        assert len(found) == 1, style.group(2)        # nothing later resets the side margins
        margins[style.group(1)] = found[0]
    assert margins == {"user": "3px 0 3px 20%", "assistant": "3px 20% 3px 0", "error": "3px 0",
                       "system": "3px 0"}


def test_chat_help_is_a_table(reg):
    c = ChatAssistant("pets", registry=reg, seed=0)
    c.send("/help")
    assert c.messages[-1] == {"role": "system", "text": HELP}
    lines = HELP.splitlines()
    assert lines[0].startswith("/help ") and lines[0].endswith("this list (e.g. /help)")
    # the text keeps its columns, and every command has an example
    assert len({line.index(what) for line, (_, what, _) in zip(lines, HELP_ROWS)}) == 1
    assert all(f"(e.g. {example})" in line and example.split()[0] == command.split()[0]
               for line, (command, _, example) in zip(lines, HELP_ROWS))
    html = c.history.children[-1].value
    assert html.count("<tr>") == len(HELP_ROWS) and "<table class='lm-chat-help'" in html
    assert "<td style='padding:0 1.5em 0 0;white-space:nowrap'><code>/export VAR</code></td>" in html
    for command in ("/data", "/unusual", "/explain", "/compare", "/learn", "/stop", "/next", "/score"):
        assert any(row[0].startswith(command) for row in HELP_ROWS), command


def test_chat_submit_on_enter_and_send_button(reg):
    c = ChatAssistant("pets", registry=reg, seed=0)
    c.input.value = "the dog"           # what Enter does with continuous_update=False
    assert c.input.value == "" and c.messages[0] == {"role": "user", "text": "the dog"}
    assert c.messages[1]["role"] == "assistant"
    c.send_button.click()               # empty input: nothing happens
    assert len(c.messages) == 2
    c.input.unobserve_all("value")      # a value that reached the kernel without Enter
    c.input.value = "a cat"
    c.send_button.click()
    assert c.messages[2]["text"] == "a cat" and c.input.value == ""


def test_chat_slash_commands(reg, model, other):
    ns = {}
    c = ChatAssistant("pets", registry=reg, user_ns=ns, seed=0)

    def last():
        return c.messages[-1]

    c.send("/help")
    assert last()["role"] == "system" and "/score TEXT" in last()["text"]
    c.send("/models")
    assert last()["text"] == "Models: other, pets (in use)"
    c.send("/use other")
    assert c.model is other and c.name == "other" and "other" in c.status.value
    c.send("/use pets")
    c.send("/temp 0.5")
    assert c.temperature == 0.5 and last()["text"] == "temperature = 0.5"
    c.send("/k 4")
    assert c.k == 4
    c.send("/len 3")
    assert c.settings.n_words == 3
    answer = c.send("the cat")
    assert len(model.tokenizer.tokenize(answer)) <= 3 and len(c.messages[-1]["alternatives"]) == 4
    c.send("/next the cat sat")
    assert last()["text"] == "after 'the cat sat': " + ", ".join(
        f"{word_text(w)} {prob_text(p)}" for w, p in model.next_words("the cat sat", 4))
    c.send("/score the cat sat on the mat .")
    ppl = model.perplexity("the cat sat on the mat .")
    worst = max(model.surprisal("the cat sat on the mat ."), key=lambda wb: wb[1])[0]
    assert last()["text"].startswith(f"perplexity {ppl:,.1f}; most surprising: {worst} (")
    n = len(c.messages)
    c.send("/export convo")
    df = ns["convo"]
    assert len(df) == n and list(df["role"])[:2] == ["user", "system"]
    assert last()["text"] == f"Exported {n} messages to convo."
    c.send("/clear")
    assert [m["text"] for m in c.messages] == ["Conversation cleared."]
    assert len(c.history.children) == 1


def test_chat_export_without_pandas_is_a_list_of_dicts(reg, monkeypatch):
    ns = {}
    c = ChatAssistant("pets", registry=reg, user_ns=ns, seed=0)
    c.send("the cat")
    monkeypatch.setitem(sys.modules, "pandas", None)     # import pandas -> ImportError
    c.send("/export rows")
    assert isinstance(ns["rows"], list) and ns["rows"][0] == {"role": "user", "text": "the cat"}
    assert ns["rows"][1]["role"] == "assistant"


@pytest.mark.parametrize("command, message", [
    ("/bogus", "Unknown command /bogus; type /help"),
    ("/use nope", "No model named 'nope'"),
    ("/use", "Say which model"),
    ("/temp hot", "/temp T needs a number, got 'hot'"),
    ("/temp -1", "temperature must be at least 0.0"),
    ("/temp nan", "needs a finite number"),
    ("/k 0", "k must be a whole number of at least 1"),
    ("/k 2.5", "/k K needs a whole number"),
    ("/len", "/len N needs a whole number"),
    ("/len 0", "n_words must be"),
    ("/score", "Give the text to score"),
    ("/export 2x", "/export needs a variable name"),
])
def test_chat_errors_appear_as_messages(reg, command, message):
    c = ChatAssistant("pets", registry=reg, user_ns={}, seed=0)
    settings = c.settings
    c.send(command)
    assert c.messages[-1]["role"] == "error" and message in c.messages[-1]["text"]
    assert "lm-chat-error" in c.history.children[-1]._dom_classes
    assert c.settings == settings and c.name == "pets"     # nothing changed, nothing lost
    c.send("/help")                                        # and the chat still works
    assert c.messages[-1]["role"] == "system"


def test_chat_unexpected_error_keeps_traceback(reg, model, monkeypatch):
    c = ChatAssistant("pets", registry=reg, seed=0)

    def bug(*a, **kw):
        raise RuntimeError("kaput")

    monkeypatch.setattr(model, "iter_generate", bug)
    c.send("the cat")
    assert c.messages[-1] == {"role": "error", "text": "RuntimeError: kaput"}
    assert any("kaput" in o.get("text", "") for o in c.log.outputs)


def test_chat_history_is_bounded(reg):
    c = ChatAssistant("pets", registry=reg, max_messages=5, seed=0, n_words=2)
    for i in range(4):
        c.send(f"the cat {i}")
    assert len(c.messages) == 5 and len(c.history.children) == 5
    assert c.messages[-2]["text"] == "the cat 3" and c.messages[0]["role"] == "assistant"
    with pytest.raises(ConfigError):
        ChatAssistant("pets", registry=reg, max_messages=0)


def test_chat_without_model_and_switching(model, other):
    r = ModelRegistry()
    c = ChatAssistant(registry=r, seed=0)
    c.send("hello")
    assert c.messages[-1]["role"] == "error" and "No model in this session yet" in c.messages[-1]["text"]
    r.set("pets", model)
    assert c.name == "pets"
    r.set("pets", other)
    assert c.model is other and "pets" in c.status.value
    assert c._repr_mimebundle_()["text/plain"].startswith("ChatAssistant(model='pets'")
    c.close()


# ------------------------------------------------------------------------------------ background training

LONG = dict(epochs=400, hidden_dim=16, embed_dim=8, patience=1000, seed=0)


@pytest.fixture
def monitors():
    started = []
    yield started
    for m in started:          # never leave a training thread behind
        m.stop()
        m.join(30)


def test_background_training_stop_registers_best_model(reg, monitors):
    follower = CompletionPanel("bg", registry=reg, debounce=0) if "bg" in reg else None
    assert follower is None
    chat = ChatAssistant("pets", registry=reg, seed=0)
    mon = start_background_training(registry=reg, name="bg", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None and mon.step.step >= 2)
    assert not mon.done and mon.running and "bg" not in reg
    mon.stop_button.click()
    assert mon.join(30) and mon.done
    assert mon.model is not None and mon.interrupted and mon.model.report.stop_reason == "interrupted"
    assert reg.get("bg") is mon.model and reg.default == "bg"
    assert mon.model.next_words("the cat", 3)
    assert "stopped: best model registered as <b>bg</b>" in mon.status.value
    assert mon.stop_button.disabled and "epoch" in mon.stats.value
    assert mon.stop_button.button_style == ""          # disabled and grey, no longer a red Stop
    assert chat.name == "pets"                        # followers of other names stay put
    chat.send("/use bg")
    assert chat.model is mon.model
    assert "application/vnd.jupyter.widget-view+json" in mon._repr_mimebundle_()


def test_stopping_a_run_whose_name_exists_keeps_the_earlier_model(reg, model, monitors):
    """Stop follows the rule of Ctrl-C: the earlier 'pets' keeps its name, its panels and chats."""
    panel = CompletionPanel("pets", registry=reg, debounce=0)
    chat = ChatAssistant("pets", registry=reg, seed=0)
    mon = start_background_training(registry=reg, name="pets", data=TEXT, continue_from=model,
                                    options=dict(epochs=400, patience=1000, seed=0))   # the network is model's
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None and mon.step.step >= 2)
    mon.stop_button.click()
    assert mon.join(30) and mon.interrupted and mon.error is None
    assert reg.get("pets") is model and reg.default == "pets"
    assert mon.registered_as == "pets_interrupted" and reg.get("pets_interrupted") is mon.model
    assert panel.model is model and chat.model is model
    steps = mon.model.report.steps
    assert mon.summary() == (f"Training stopped after {steps:,} steps: kept the earlier 'pets' (val ppl "
                             f"{model.meta['val_ppl']:,.1f}); the stopped model is 'pets_interrupted' (val ppl "
                             f"{mon.model.meta['val_ppl']:,.1f}).")
    assert "registered as <b>pets_interrupted</b>" in mon.status.value
    assert "the earlier <b>pets</b> is kept" in mon.status.value
    panel.close(), chat.close()


def test_panel_switches_when_background_training_finishes(reg, model, monitors):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the "
    mon = start_background_training(registry=reg, name="pets", data=TEXT,
                                    options=dict(epochs=1, seed=1), continue_from=model)
    monitors.append(mon)
    assert mon.join(60)
    assert mon.error is None and not mon.interrupted
    assert p.model is mon.model is reg.get("pets") and p.model is not model
    assert p.suggestions == mon.model.next_words("the ", 5)
    assert "finished" in mon.status.value and mon.progress.value == 1.0
    assert mon.progress.bar_style == "success" and mon.stop_button.button_style == ""
    assert "finished early" not in mon.status.value and mon.summary() == "training 'pets' finished"


def test_monitor_shows_an_early_stop_as_an_early_success(reg, monitors):
    mon = start_background_training(registry=reg, name="early", data=TEXT, options=dict(
        epochs=30, patience=1, hidden_dim=16, embed_dim=8, lr=0.1, seed=0))
    monitors.append(mon)
    assert mon.join(60) and mon.error is None
    r = mon.model.report
    assert r.stop_reason == "early stop" and not mon.interrupted
    last, best = r.history[-1], r.history[r.best_epoch - 1]
    assert last.epoch < 30 and best.epoch < last.epoch and best.val_ppl != last.val_ppl
    # the bar and the "step x/y" text agree: it ended short, in green
    s = mon.step
    assert s.step == r.steps < s.total_steps
    assert mon.progress.value == pytest.approx(s.step / s.total_steps) and mon.progress.bar_style == "success"
    assert f"step {s.step:,}/{s.total_steps:,}" in mon.stats.value
    # the early stop is said, and each perplexity says which it is
    assert (f"finished early (early stop after epoch {last.epoch} of 30: no better validation perplexity "
            f"for 1 epochs): best model registered as <b>early</b>") in mon.status.value
    assert f"last val perplexity {last.val_ppl:,.1f} (epoch {last.epoch})" in mon.stats.value
    assert f"(best validation perplexity {best.val_ppl:,.1f}, epoch {best.epoch})" in mon.status.value
    assert mon.summary().startswith("training 'early' finished early (early stop after epoch")
    assert mon.stop_button.disabled and mon.stop_button.button_style == ""


def test_panel_and_chat_work_while_training_runs(reg, other, monitors):
    mon = start_background_training(registry=reg, name="bg2", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None)
    p = CompletionPanel("other", registry=reg, debounce=0)
    c = ChatAssistant("other", registry=reg, seed=0, n_words=3)
    for text in ["the ", "the fox ", "a dog ", "the bird sang "]:
        p.value = text
        assert p.suggestions == other.next_words(text, 5)
        c.send(text)
    assert c.messages[-1]["role"] == "assistant"
    assert not mon.done               # training really was running alongside
    mon.stop()
    assert mon.join(30) and reg.get("bg2").interrupted


def test_background_training_errors(reg, monitors):
    with pytest.raises(ConfigError, match="hidden_dim"):
        start_background_training(registry=reg, name="bad", data=TEXT, options={"hidden_dim": -1})
    with pytest.raises(ConfigError, match="Unknown option"):
        start_background_training(registry=reg, name="bad", data=TEXT, options={"hiden_dim": 3})
    mon = start_background_training(registry=reg, name="bad", data="", options={})
    monitors.append(mon)
    assert mon.join(30)
    assert mon.model is None and "bad" not in reg and mon.error
    assert "Error:" in mon.status.value and "training 'bad' failed" in repr(mon)


# ------------------------------------------------------------------------------------ magics

@pytest.fixture
def shell(model):
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.magics import LMMagics
    from lm_magics.registry import get_registry

    sh = InteractiveShell.instance()
    sh.register_magics(LMMagics)
    get_registry(sh).set("widget_magics_pets", model)
    yield sh
    get_registry(sh).drop("widget_magics_pets")


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
    assert reg.get("widget_bg") is mon.model and mon.model.interrupted
    reg.drop("widget_bg")


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
