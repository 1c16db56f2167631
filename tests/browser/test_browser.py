"""The panel, the chat and background training in a real JupyterLab, driven by Chromium.

The notebook trains a tiny model, shows a panel and a chat, starts a background training, runs two
trainings that stop early (one with its progress bar, one in the background), and makes a small DataFrame
that the chat explores (/data, /unusual, /explain, /compare, /learn). The tests type, click
and read the DOM as a user would, and save screenshots of panel, chat and assistant to $LM_SCREENSHOT_DIR
(default: tests/_artifacts/screenshots, ignored by git). Refresh the README's images with

    LM_SCREENSHOT_DIR=docs python -m pytest tests/browser
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from lm_magics.widgets.chat import HELP_ROWS

from .conftest import REPO, UI_TIMEOUT_MS, write_notebook

pytestmark = pytest.mark.browser

ROUNDTRIP_MS = 20_000        # browser -> kernel -> browser
SHOTS = Path(os.environ.get("LM_SCREENSHOT_DIR", REPO / "tests" / "_artifacts" / "screenshots"))

TEXT = "\n".join([
    "the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog are friends .",
    "the bird sang in the tree .", "the cat saw the bird in the tree .", "a dog ran to the park .",
    "the black cat slept on the bed .", "the brown dog barked at the bird .",
] * 3)

CELLS = [
    "%load_ext lm_magics\nimport lm_magics as lm",
    "%%lm_train --name pets --epochs 20 --patience 20 --hidden-dim 32 --embed-dim 16 --lr 0.03 --seed 0 --quiet\n"
    + TEXT,
    'panel = lm.CompletionPanel("pets", k=4, seed=0)\npanel',
    'chat = lm.ChatAssistant("pets", seed=0, n_words=12)\nchat',
    # long enough that it is still running when the test presses Stop
    "%%lm_train --name pets_bg --background --epochs 5000 --patience 100000 --hidden-dim 16 --embed-dim 8 "
    "--threads 1\n" + TEXT,
    # both stop early (near epoch 10 of 30): no better validation perplexity for 1 epoch
    "%%lm_train --name early --epochs 30 --patience 1 --hidden-dim 32 --embed-dim 8 --lr 0.1 --seed 0 "
    "--threads 1\n" + TEXT,
    "%%lm_train --name early_bg --background --epochs 30 --patience 1 --hidden-dim 32 --embed-dim 8 --lr 0.1 "
    "--seed 0 --threads 1\n" + TEXT,
    # the column the chat explores (/data, /unusual, /compare, /learn)
    "import pandas as pd\nreviews = pd.DataFrame({'text': %r})\n"
    "reviews['kind'] = ['cats' if 'cat' in t else 'dogs' if 'dog' in t else 'birds' for t in reviews.text]"
    % TEXT.splitlines(),
]
EARLY_CELL = 5


@pytest.fixture(scope="module")
def notebook(jupyter_server, browser_page):
    """Open the notebook, run all cells, wait until every widget is on the page."""
    from playwright.sync_api import expect

    srv, pg = jupyter_server, browser_page
    write_notebook(srv.root / "widgets.ipynb", CELLS)
    pg.goto(f"{srv.url}/lab/tree/widgets.ipynb?token={srv.token}")
    pg.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for()
    # "<kernel name> | Idle" in the status bar once the kernel is connected
    expect(pg.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')).to_have_text(
        re.compile(r"\| Idle$"), timeout=UI_TIMEOUT_MS)
    pg.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    pg.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells$")).click()
    for sel in (".lm-panel", ".lm-chat", ".lm-monitor >> nth=1"):
        expect(pg.locator(f".jp-OutputArea-output {sel}")).to_be_visible(timeout=UI_TIMEOUT_MS)
    return pg


def monitor(pg, name):
    return pg.locator(".jp-OutputArea-output .lm-monitor").filter(
        has=pg.locator(".lm-monitor-title", has_text=f"'{name}'"))     # running: "Training 'x'", then "'x' · Done in"


def test_panel_suggestions_follow_typing_and_clicks(page, notebook):
    from playwright.sync_api import expect

    panel = notebook.locator(".jp-OutputArea-output .lm-panel")
    box = panel.locator(".lm-panel-input textarea")
    buttons = panel.locator(".lm-panel-suggestion:visible")
    expect(buttons).to_have_count(4, timeout=ROUNDTRIP_MS)          # suggestions for an empty text
    expect(panel.locator(".lm-panel-status")).to_contain_text("model pets")

    mode = panel.locator(".lm-panel-mode")
    expect(mode).to_have_text("first word:")
    box.click()
    box.press_sequentially("the b", delay=30)                       # a half-typed word: completions
    # the panel says so, and that a button shows its share among the words starting with "b"
    expect(mode).to_have_text("completing “b…” (share among words starting with “b”):", timeout=ROUNDTRIP_MS)
    expect(buttons.first).to_have_text(re.compile(r"^b\w* (\d+|<1|>99)%$"), timeout=ROUNDTRIP_MS)
    # every button is its own widget model: wait for all of them, not only the first
    expect(buttons).to_have_text([re.compile(r"^b\w* (\d+|<1|>99)%$")] * buttons.count(), timeout=ROUNDTRIP_MS)
    word = buttons.first.inner_text().split()[0]

    buttons.first.click()                                           # completes the word
    expect(box).to_have_value(f"the {word} ", timeout=ROUNDTRIP_MS)
    expect(mode).to_have_text(f"next word after “the {word}”:", timeout=ROUNDTRIP_MS)
    expect(buttons.first).not_to_have_text(re.compile(r"^b"), timeout=ROUNDTRIP_MS)  # next-word suggestions
    second = re.sub(r"^“(.+)”$", r"\1", buttons.nth(1).inner_text().rsplit(" ", 1)[0])   # “.” is "."
    buttons.nth(1).click()                                          # and the text grows
    expect(box).to_have_value(re.compile(rf"^the {re.escape(word)} ?{re.escape(second)} $"), timeout=ROUNDTRIP_MS)

    panel.locator(".lm-panel-continue").click()                     # Continue: several more words
    expect(box).to_have_value(re.compile(rf"^the {re.escape(word)} ?{re.escape(second)} \S+.*\S.* $"),
                              timeout=ROUNDTRIP_MS)
    text = box.input_value()
    assert "\n" not in text and not re.search(r" [,.]", text), text   # running text, joined like generate
    expect(panel.locator(".lm-panel-status")).to_contain_text(re.compile(r"last update [\d.]+ ms"))
    expect(mode).to_have_text(re.compile(r"^next word after “.*”:$"), timeout=ROUNDTRIP_MS)

    box.press_sequentially("zq", delay=30)                          # nothing starts with "zq": say why
    hint = panel.locator(".lm-panel-hint")
    expect(hint).to_have_text("“zq” is not in the vocabulary;", timeout=ROUNDTRIP_MS)
    expect(mode).to_contain_text(re.compile(r"next word after “.*zq”:$"))
    expect(buttons).to_have_count(4)                                # still words to click
    for _ in range(3):
        box.press("Backspace")
    expect(hint).to_have_count(0, timeout=ROUNDTRIP_MS)
    box.press("Space")
    expect(mode).to_have_text(re.compile(r"^next word after “.*”:$"), timeout=ROUNDTRIP_MS)
    # punctuation (when the model suggests any here) reads as a quoted, monospace label; no button says "0%"
    expect(buttons).to_have_count(4, timeout=ROUNDTRIP_MS)
    punct = panel.locator(".lm-panel-punct:visible")
    if punct.count():
        expect(punct.first).to_have_text(re.compile(r"^“\W+” (\d+|<1|>99)%$"))
        # the style is its own widget model, synced in its own message: wait for it, do not sample it once
        expect(punct.first).to_have_css("font-family", re.compile("monospace"), timeout=ROUNDTRIP_MS)
    assert not any(t.endswith(" 0%") for t in buttons.all_inner_texts())
    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SHOTS / "panel.png"))


def test_chat_streams_a_reply_and_runs_slash_commands(page, notebook):
    from playwright.sync_api import expect

    chat = notebook.locator(".jp-OutputArea-output .lm-chat")
    box = chat.locator(".lm-chat-input input")
    # Count DOM changes inside assistant bubbles: a streamed reply rewrites its bubble word by word.
    notebook.evaluate("""() => {
        window.__lmStream = 0;
        const h = document.querySelector('.jp-OutputArea-output .lm-chat .lm-chat-history');
        new MutationObserver(ms => { for (const m of ms) {
            const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
            if (el && el.closest('.lm-chat-assistant')) window.__lmStream++; } })
          .observe(h, {subtree: true, childList: true, characterData: true});
    }""")
    box.fill("the <b>cat</b> sat")
    box.press("Enter")
    expect(chat.locator(".lm-chat-user")).to_contain_text("the <b>cat</b> sat", timeout=ROUNDTRIP_MS)  # escaped
    assert chat.locator(".lm-chat-user b").count() == 0
    reply = chat.locator(".lm-chat-assistant").last
    expect(reply).to_contain_text("other first words", timeout=ROUNDTRIP_MS)   # shown once the reply is done
    words = reply.locator(".lm-bubble").inner_text().split("\n")[1].split()
    assert words, reply.inner_text()
    assert notebook.evaluate("window.__lmStream") >= min(len(words), 2)
    expect(box).to_have_value("")

    box.fill("/next the cat")
    box.press("Enter")
    expect(chat.locator(".lm-chat-system").last).to_contain_text(re.compile(r"after 'the cat': \S+ \d+%"),
                                                                  timeout=ROUNDTRIP_MS)
    box.fill("/temp hot")
    chat.locator(".lm-chat-send").click()
    expect(chat.locator(".lm-chat-error").last).to_contain_text("/temp T needs a number", timeout=ROUNDTRIP_MS)


def test_chat_scrolls_to_the_newest_message_and_lays_out_bubbles(page, notebook):
    from playwright.sync_api import expect

    chat = notebook.locator(".jp-OutputArea-output .lm-chat")
    box = chat.locator(".lm-chat-input input")
    for text in ["a dog", "the bird", "/help", "a cat and", "the dog sat", "/next the cat", "the black cat"]:
        n = chat.locator(".lm-chat-msg").count()
        box.fill(text)
        box.press("Enter")
        expect(chat.locator(".lm-chat-msg")).to_have_count(n + 2, timeout=ROUNDTRIP_MS)   # yours + the answer
    last = chat.locator(".lm-chat-assistant").last
    expect(last).to_contain_text("other first words", timeout=ROUNDTRIP_MS)     # the reply is done
    # 16 messages overflow the 420px box; the newest one is in view without scrolling by hand
    geo = chat.evaluate("""c => {
        const box = c.querySelector('.lm-chat-scroll').getBoundingClientRect();
        const s = c.querySelector('.lm-chat-scroll');
        const bubbles = [...c.querySelectorAll('.lm-chat-msg')];
        const last = bubbles[bubbles.length - 1].getBoundingClientRect();
        const r = sel => c.querySelector(sel).getBoundingClientRect();
        const hist = c.querySelector('.lm-chat-user .lm-bubble').parentElement.getBoundingClientRect();
        const user = r('.lm-chat-user .lm-bubble'), bot = r('.lm-chat-assistant .lm-bubble');
        return {overflows: s.scrollHeight > s.clientHeight + 50, lastTop: last.top, lastBottom: last.bottom,
                boxTop: box.top, boxBottom: box.bottom, n: bubbles.length, width: hist.width,
                userLeft: user.left - hist.left, userRight: hist.right - user.right,
                botLeft: bot.left - hist.left, botRight: hist.right - bot.right};
    }""")
    assert geo["n"] >= 12 and geo["overflows"], geo
    assert geo["boxTop"] - 1 <= geo["lastTop"] and geo["lastBottom"] <= geo["boxBottom"] + 1, geo
    # your bubbles on the right, the model's on the left: 20% of the width free on the other side
    # (of the width the bubble's HTML widget gives it)
    assert geo["userLeft"] == pytest.approx(0.2 * geo["width"], abs=2) and geo["userRight"] < 2, geo
    assert geo["botRight"] == pytest.approx(0.2 * geo["width"], abs=2) and geo["botLeft"] < 2, geo
    SHOTS.mkdir(parents=True, exist_ok=True)
    chat.screenshot(path=str(SHOTS / "chat.png"))


def test_chat_help_is_read_from_its_top_and_fits_the_width(page, notebook):
    from playwright.sync_api import expect

    chat = notebook.locator(".jp-OutputArea-output .lm-chat")
    box = chat.locator(".lm-chat-input input")
    for text in ["a dog", "the bird", "/help"]:
        n = chat.locator(".lm-chat-msg").count()
        box.fill(text)
        box.press("Enter")
        expect(chat.locator(".lm-chat-msg")).to_have_count(n + 2, timeout=ROUNDTRIP_MS)
    help_msg = chat.locator(".lm-chat-msg").last
    expect(help_msg.locator(".lm-chat-help-row")).to_have_count(len(HELP_ROWS))

    def geometry():
        return chat.evaluate("""c => {
            const s = c.querySelector('.lm-chat-scroll'), box = s.getBoundingClientRect();
            const hist = c.querySelector('.lm-chat-history').getBoundingClientRect();
            const msgs = c.querySelectorAll('.lm-chat-msg'), help = msgs[msgs.length - 1];
            const b = help.querySelector('.lm-bubble').getBoundingClientRect();
            return {boxTop: box.top, boxBottom: box.bottom, top: b.top, bottom: b.bottom, left: b.left,
                    right: b.right, histLeft: hist.left, histRight: hist.right, histWidth: hist.width,
                    width: b.width, height: b.height, scrollWidth: s.scrollWidth, clientWidth: s.clientWidth};
        }""")

    # the anchor scrolls once the bubble is laid out: wait until the top of /help is in view
    page.wait_for_function("""() => {
        const c = document.querySelector('.jp-OutputArea-output .lm-chat');
        const s = c.querySelector('.lm-chat-scroll').getBoundingClientRect();
        const m = c.querySelectorAll('.lm-chat-msg'), b = m[m.length - 1].getBoundingClientRect();
        return b.top >= s.top - 1 && b.top < s.top + 40;
    }""", timeout=ROUNDTRIP_MS)
    geo = geometry()
    assert geo["height"] > geo["boxBottom"] - geo["boxTop"], geo      # taller than the box: only its top shows
    assert geo["boxTop"] - 1 <= geo["top"] <= geo["boxTop"] + 40, geo  # ... and that is what the user sees
    # it fits the width: inside the history, nothing to scroll sideways
    assert geo["width"] <= geo["histWidth"] + 0.5 and geo["left"] >= geo["histLeft"] - 0.5, geo
    assert geo["right"] <= geo["histRight"] + 0.5 and geo["scrollWidth"] <= geo["clientWidth"], geo
    SHOTS.mkdir(parents=True, exist_ok=True)
    chat.screenshot(path=str(SHOTS / "chat-help.png"))
    # the next message of yours brings the end of the conversation back into view
    n = chat.locator(".lm-chat-msg").count()
    box.fill("the cat")
    box.press("Enter")
    expect(chat.locator(".lm-chat-msg")).to_have_count(n + 2, timeout=ROUNDTRIP_MS)
    expect(chat.locator(".lm-chat-assistant").last).to_contain_text("other first words", timeout=ROUNDTRIP_MS)
    page.wait_for_function("""() => {
        const c = document.querySelector('.jp-OutputArea-output .lm-chat');
        const s = c.querySelector('.lm-chat-scroll').getBoundingClientRect();
        const m = c.querySelectorAll('.lm-chat-msg'), b = m[m.length - 1].getBoundingClientRect();
        return b.bottom <= s.bottom + 1 && b.top >= s.top - 1;
    }""", timeout=ROUNDTRIP_MS)


def test_background_training_stops_and_registers(page, notebook):
    from playwright.sync_api import expect

    mon = monitor(notebook, "pets_bg")
    expect(mon.locator(".lm-monitor-stats")).to_contain_text(re.compile(r"epoch \d+ · step [\d,]+/"),
                                                             timeout=UI_TIMEOUT_MS)
    first = mon.locator(".lm-monitor-stats").inner_text()
    expect(mon.locator(".lm-monitor-stats")).not_to_have_text(first, timeout=ROUNDTRIP_MS)   # live
    mon.locator(".lm-monitor-stop").click()
    expect(mon.locator(".lm-monitor-status")).to_contain_text("stopped: best model registered as pets_bg",
                                                              timeout=ROUNDTRIP_MS)
    expect(mon.locator(".lm-monitor-stop")).to_be_disabled()
    expect(mon.locator(".lm-monitor-stop")).not_to_have_class(re.compile(r"mod-danger"))   # grey, not red
    # one line says what the run did; the bar is amber with its text, not the running blue
    expect(mon.locator(".lm-monitor-title")).to_contain_text(re.compile(r"'pets_bg' · Stopped after [\d.]+ (s|min)"),
                                                             timeout=ROUNDTRIP_MS)
    expect(mon.locator(".lm-monitor-title")).not_to_contain_text("in the background")
    expect(mon.locator(".lm-monitor-progress .progress-bar")).to_have_class(re.compile(r"progress-bar-warning"))
    # the curve's value labels sit left of the curve, never over its start
    gap = mon.locator(".lm-monitor-curve svg").evaluate(
        "s => s.querySelector('polyline').getBBox().x - Math.max(...[...s.querySelectorAll('text')].map("
        "t => t.getBBox().x + t.getBBox().width))")
    assert gap > 0, gap
    # the panel heard the registry: the new models are in its dropdown
    options = notebook.locator(".jp-OutputArea-output .lm-panel .lm-panel-model select option")
    expect(options).to_have_count(4, timeout=ROUNDTRIP_MS)
    assert sorted(options.all_inner_texts()) == ["early", "early_bg", "pets", "pets_bg"]
    errors = [e for e in notebook.console_errors if "widget" in e.lower()]
    assert not errors, errors


def _eventually(check, timeout_s: float = ROUNDTRIP_MS / 1000):
    """Run check() until it stops failing: each widget is its own model, synced in its own message, so
    what several widgets show settles at slightly different moments (the timeout only bounds a hang)."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, AttributeError):     # AttributeError: a re.search that finds nothing yet
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def _bar(locator):
    """(fraction filled, classes) of the ipywidgets progress bar inside locator."""
    return locator.locator(".progress-bar").evaluate(
        "b => [b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width, b.className]")


def test_early_stops_look_like_an_early_success(page, notebook):
    from playwright.sync_api import expect

    # %%lm_train's progress bar: green, short, and labelled with the early stop
    cell = notebook.locator(".jp-Notebook .jp-Cell").nth(EARLY_CELL)
    progress = cell.locator(".jp-OutputArea-output .widget-hprogress")
    expect(progress.locator(".progress-bar")).to_have_class(re.compile(r"progress-bar-success"),
                                                            timeout=UI_TIMEOUT_MS)
    def bar_agrees_with_its_label():
        label = cell.locator(".jp-OutputArea-output .widget-hbox").first.inner_text().replace("\u2007", " ")
        epoch = re.search(r"training 'early' \(early stop after epoch (\d+)\)", label)
        assert epoch and f"epoch={epoch.group(1)}," in label and " in all, " in label, label
        step, total = map(int, re.search(r"(\d+)/(\d+), ", label).groups())
        filled, classes = _bar(progress)
        assert "danger" not in classes and step < total and filled == pytest.approx(step / total, abs=0.02), label
    _eventually(bar_agrees_with_its_label)

    # the background monitor: says it stopped early, bar and "step x/y" agree, perplexities named
    mon = monitor(notebook, "early_bg")
    status = mon.locator(".lm-monitor-status")
    expect(status).to_contain_text(re.compile(r"finished early \(early stop after epoch \d+ of 30: no better "
                                              r"validation perplexity for 1 epochs\)"), timeout=UI_TIMEOUT_MS)
    def status_stats_and_bar_agree():
        last = int(re.search(r"after epoch (\d+)", status.inner_text()).group(1))
        best = int(re.search(r"best validation perplexity [\d.]+, epoch (\d+)\)", status.inner_text()).group(1))
        stats = mon.locator(".lm-monitor-stats").inner_text()
        assert best < last and re.search(rf"last val perplexity [\d.]+ \(epoch {last}\)", stats), stats
        step, total = map(int, re.search(r"step (\d+)/(\d+)", stats).groups())
        filled, classes = _bar(mon.locator(".lm-monitor-progress"))
        assert "progress-bar-success" in classes and step < total, (classes, stats)
        assert filled == pytest.approx(step / total, abs=0.02), (filled, stats)
    _eventually(status_stats_and_bar_agree)
    expect(mon.locator(".lm-monitor-stop")).to_be_disabled()
    expect(mon.locator(".lm-monitor-stop")).not_to_have_class(re.compile(r"mod-danger"))


def test_chat_explores_a_column_with_copyable_lines(page, notebook, jupyter_server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError, expect

    notebook.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=jupyter_server.url)
    chat = notebook.locator(".jp-OutputArea-output .lm-chat")
    box = chat.locator(".lm-chat-input input")

    def ask(text):
        n = chat.locator(".lm-chat-msg").count()
        box.fill(text)
        box.press("Enter")
        answer = chat.locator(".lm-chat-msg").nth(n + 1)       # yours, then the answer
        expect(answer).to_be_attached(timeout=ROUNDTRIP_MS)
        return answer

    expect(ask("/data")).to_contain_text("reviews.text")
    answer = ask("/unusual reviews.text top 2")
    expect(answer.locator(".lm-score-report span[title$='bits']").first).to_be_visible()   # shaded words
    code = answer.locator(".lm-chat-code code")
    expect(code).to_have_text("%lm_score --df reviews --column text --name pets --overwrite --top 2 --baseline")
    answer.locator(".lm-copy").click()
    expect(answer.locator(".lm-copy")).to_have_text("Copied", timeout=ROUNDTRIP_MS)
    assert notebook.evaluate("navigator.clipboard.readText()") == code.inner_text()
    expect(answer.locator(".lm-copy")).to_have_text("Copy", timeout=5_000)     # ready to be pressed again
    expect(ask("/unusual reviews.txt")).to_contain_text("Did you mean reviews.text")
    expect(ask("/explain the cat sat on the tree").locator(".lm-explain li")).to_have_count(3)
    answer = ask("/compare reviews.text by kind")
    expect(answer.locator("svg.lm-bars rect")).to_have_count(2)            # cats, dogs
    expect(answer).to_contain_text("too small to compare (under 5 rows): birds (3)")
    expect(answer.locator(".lm-chat-code code")).to_have_text("%lm_compare --df reviews --column text --by kind")
    SHOTS.mkdir(parents=True, exist_ok=True)
    chat.screenshot(path=str(SHOTS / "assistant.png"))

    # /learn: the monitor and its Stop live in the conversation; the run ends stopped or finished
    learn = ask("/learn reviews.text as learned")
    expect(learn.locator(".lm-monitor")).to_be_visible()
    stop = learn.locator(".lm-monitor-stop")
    try:   # a tiny column can finish training before the click lands: both ends are checked below
        stop.click(timeout=5_000, trial=not stop.is_enabled())
    except PlaywrightTimeoutError:
        assert not stop.is_enabled()
    expect(chat.locator(".lm-chat-system").last).to_contain_text(
        re.compile(r"Training (stopped|finished): 'learned' is registered"), timeout=ROUNDTRIP_MS)
