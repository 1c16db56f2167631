"""The chat without a browser: ``send`` messages and slash commands, read the messages and widgets."""

from __future__ import annotations

import re
import sys

import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.errors import ConfigError  # noqa: E402
from lm_magics.registry import ModelRegistry  # noqa: E402
from lm_magics.widgets import ChatAssistant  # noqa: E402
from lm_magics.widgets._base import iter_words, prob_text, word_text  # noqa: E402
from lm_magics.widgets._base import esc  # noqa: E402
from lm_magics.widgets.chat import COPY_RESET_MS, HELP, HELP_ROWS, code_html  # noqa: E402


pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


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
    alts, expected = c.messages[1]["alternatives"], model.next_words("the <b>cat</b> & the", 3)
    # the same words; probabilities to float noise (a cached state and a fresh one differ in the last digits)
    assert [w for w, _ in alts] == [w for w, _ in expected]
    assert [p for _, p in alts] == pytest.approx([p for _, p in expected], abs=1e-4)
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


def test_chat_help_lists_each_command_with_its_example_under_it(reg):
    c = ChatAssistant("pets", registry=reg, seed=0)
    c.send("/help")
    assert c.messages[-1] == {"role": "system", "text": HELP}
    lines = HELP.splitlines()
    assert lines[0].startswith("/help ") and lines[0].endswith("this list (e.g. /help)")
    # the text keeps its columns, and every command has an example
    assert len({line.index(what) for line, (_, what, _) in zip(lines, HELP_ROWS)}) == 1
    assert all(f"(e.g. {example})" in line and example.split()[0] == command.split()[0]
               for line, (command, _, example) in zip(lines, HELP_ROWS))
    # in the bubble: no table and nothing that cannot wrap, so it fits any width; the description and the
    # example under each command
    html = c.history.children[-1].value
    assert "<table" not in html and "nowrap" not in html and "overflow-wrap:anywhere" in html
    assert html.count("class='lm-chat-help-row'") == len(HELP_ROWS)
    for command, what, example in HELP_ROWS:
        row = html.split(f"<code style='font-weight:600'>{esc(command)}</code>", 1)[1].split("lm-chat-help-row")[0]
        assert esc(what) in row and f"e.g. <code>{esc(example)}</code>" in row, command
    for command in ("/data", "/unusual", "/explain", "/compare", "/learn", "/stop", "/next", "/score"):
        assert any(row[0].startswith(command) for row in HELP_ROWS), command


def test_chat_scrolls_to_your_message_and_to_the_top_of_a_long_answer(reg):
    # An invisible image's onload scrolls the history (ipywidgets' HTML runs no <script>): your message
    # to the end, an answer with a body to its top; a streamed reply and short notes leave it alone.
    c = ChatAssistant("pets", registry=reg, seed=0, n_words=3, user_ns={})
    c.send("the cat")
    c.send("/help")
    c.send("/temp 0.5")
    c.send("/data")
    anchors = [re.findall(r"class='lm-anchor lm-anchor-(\w+)'", b.value) for b in c.history.children]
    roles = [m["role"] for m in c.messages]
    assert list(zip(roles, anchors)) == [("user", ["end"]), ("assistant", []), ("user", ["end"]),
                                         ("system", ["top"]), ("user", ["end"]), ("system", []),
                                         ("user", ["end"]), ("system", ["top"])]
    js = c.history.children[3].value
    assert "onload=" in js and "all[all.length-1]!==img" in js      # only the newest anchor acts
    assert "<script" not in js


def test_copy_buttons_say_copied_then_copy_again():
    html = code_html("%lm_complete the cat")
    assert "class='lm-copy'" in html and ">Copy</button>" in html
    onclick = re.search(r'onclick="([^"]*)"', html).group(1)
    assert "this.textContent = 'Copied'" in onclick
    assert f"setTimeout(() => {{ this.textContent = 'Copy'; }}, {COPY_RESET_MS})" in onclick
    assert 500 <= COPY_RESET_MS <= 3000


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
        f"{word_text(w)} {prob_text(p)}" for w, p in model.next_words("the cat sat", 4)) + "\n" + last()["code"]
    assert last()["code"] == "%lm_complete --name pets -k 4 the cat sat"
    c.send("/score the cat sat on the mat .")
    explained = lm.explain(model, "the cat sat on the mat .", top=4, k=4)    # what the offered line shows
    worst = max(model.surprisal("the cat sat on the mat ."), key=lambda wb: wb[1])[0]
    assert last()["text"].startswith(f"perplexity {2 ** explained.bits:,.1f}; most surprising: {worst} (")
    assert last()["code"] == "%lm_explain --name pets --top 4 -k 4 the cat sat on the mat ."
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
    ("/export 2x", "for /export must be a Python variable name"),
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
