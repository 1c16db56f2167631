"""The panel, the chat and background training in a real JupyterLab, driven by Chromium.

The notebook trains a tiny model, shows a panel and a chat, and starts a background training. The
tests type, click and read the DOM as a user would, and save screenshots of panel and chat (to docs/,
or to $LM_SCREENSHOT_DIR).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import REPO, UI_TIMEOUT_MS, write_notebook

pytestmark = pytest.mark.browser

ROUNDTRIP_MS = 20_000        # browser -> kernel -> browser
SHOTS = Path(os.environ.get("LM_SCREENSHOT_DIR", REPO / "docs"))

TEXT = "\n".join([
    "the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog are friends .",
    "the bird sang in the tree .", "the cat saw the bird in the tree .", "a dog ran to the park .",
    "the black cat slept on the bed .", "the brown dog barked at the bird .",
] * 3)

CELLS = [
    "%load_ext lm_magics\nimport lm_magics as lm",
    "%%lm_train --name pets --epochs 4 --hidden-dim 32 --embed-dim 16 --lr 0.03 --seed 0 --quiet\n" + TEXT,
    'panel = lm.CompletionPanel("pets", k=4, seed=0)\npanel',
    'chat = lm.ChatAssistant("pets", seed=0, n_words=12)\nchat',
    # long enough that it is still running when the test presses Stop
    "%%lm_train --name pets_bg --background --epochs 5000 --patience 100000 --hidden-dim 16 --embed-dim 8 "
    "--threads 1\n" + TEXT,
]


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
    for sel in (".lm-panel", ".lm-chat", ".lm-monitor"):
        expect(pg.locator(f".jp-OutputArea-output {sel}")).to_be_visible(timeout=UI_TIMEOUT_MS)
    return pg


def test_panel_suggestions_follow_typing_and_clicks(page, notebook):
    from playwright.sync_api import expect

    panel = notebook.locator(".jp-OutputArea-output .lm-panel")
    box = panel.locator(".lm-panel-input textarea")
    buttons = panel.locator(".lm-panel-suggestion:visible")
    expect(buttons).to_have_count(4, timeout=ROUNDTRIP_MS)          # suggestions for an empty text
    expect(panel.locator(".lm-panel-status")).to_contain_text("model pets")

    box.click()
    box.press_sequentially("the b", delay=30)                       # a half-typed word: completions
    expect(buttons.first).to_have_text(re.compile(r"^b\w* \d+%$"), timeout=ROUNDTRIP_MS)
    for text in buttons.all_inner_texts():
        assert re.match(r"^b\w* \d+%$", text), text
    word = buttons.first.inner_text().split()[0]

    buttons.first.click()                                           # completes the word
    expect(box).to_have_value(f"the {word} ", timeout=ROUNDTRIP_MS)
    expect(buttons.first).not_to_have_text(re.compile(r"^b"), timeout=ROUNDTRIP_MS)  # next-word suggestions
    second = buttons.nth(1).inner_text().split()[0]
    buttons.nth(1).click()                                          # and the text grows
    expect(box).to_have_value(re.compile(rf"^the {re.escape(word)} ?{re.escape(second)} $"), timeout=ROUNDTRIP_MS)

    panel.locator(".lm-panel-continue").click()                     # Continue: several more words
    expect(box).to_have_value(re.compile(rf"^the {re.escape(word)} ?{re.escape(second)} \S+.*\S.* $"),
                              timeout=ROUNDTRIP_MS)
    expect(panel.locator(".lm-panel-status")).to_contain_text(re.compile(r"last update [\d.]+ ms"))
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
    SHOTS.mkdir(parents=True, exist_ok=True)
    chat.screenshot(path=str(SHOTS / "chat.png"))


def test_background_training_stops_and_registers(page, notebook):
    from playwright.sync_api import expect

    mon = notebook.locator(".jp-OutputArea-output .lm-monitor")
    expect(mon.locator(".lm-monitor-stats")).to_contain_text(re.compile(r"epoch \d+ · step [\d,]+/"),
                                                             timeout=UI_TIMEOUT_MS)
    first = mon.locator(".lm-monitor-stats").inner_text()
    expect(mon.locator(".lm-monitor-stats")).not_to_have_text(first, timeout=ROUNDTRIP_MS)   # live
    mon.locator(".lm-monitor-stop").click()
    expect(mon.locator(".lm-monitor-status")).to_contain_text("stopped: best model registered as pets_bg",
                                                              timeout=ROUNDTRIP_MS)
    expect(mon.locator(".lm-monitor-stop")).to_be_disabled()
    # the panel heard the registry: the new model is in its dropdown
    options = notebook.locator(".jp-OutputArea-output .lm-panel .lm-panel-model select option")
    expect(options).to_have_text(["pets", "pets_bg"], timeout=ROUNDTRIP_MS)
    errors = [e for e in notebook.console_errors if "widget" in e.lower()]
    assert not errors, errors
