"""Keystroke to rendered suggestions in a real browser: the completion panel in JupyterLab, driven by
Chromium through Playwright, side by side with the same panel behind the old fixed 150 ms debounce.

    python -m benchmarks.panel_latency [--keys 60] [--pause 0.2]

A notebook trains a tiny model and shows two panels: the default one (updates on every keystroke) and
one with ``debounce=0.15`` (the default before). Into each, text is typed as real key events:

* one key at a time (``--keys`` keys, ``--pause`` s after each key's suggestions are on screen): from the
  key's ``keydown`` in the page to the first animation frame after the panel's mode label (updated last,
  after the buttons) shows the new text;
* word by word at 80 ms a key (a quick typist): from the word's last ``keydown`` to the frame showing
  "completing “word…”", the suggestions for the whole word.

Prints p50 / p90 / max of each. Needs what the browser tests need (Debian's chromium, playwright,
jupyterlab); it is a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_line, median, percentile

TEXT = "\n".join([
    "the cat sat on the mat .", "the dog sat on the log .", "a cat and a dog are friends .",
    "the bird sang in the tree .", "the cat saw the bird in the tree .", "a dog ran to the park .",
    "the black cat slept on the bed .", "the brown dog barked at the bird .",
] * 3)
TYPED = "the cat sat on the mat . a dog ran to the park . the bird sang in the tree . "   # no double spaces
PANELS = {"fast": "lm.CompletionPanel('pets', k=5)",
          "debounced": "lm.CompletionPanel('pets', k=5, debounce=0.15)"}
LABELS = {"fast": "updates at once (default)", "debounced": "fixed 150 ms debounce (before)"}

# Per panel: keydown times of its text box, and (time, text) of the first frame after each change of
# its mode label.
INSTRUMENT = """sel => {
    const root = document.querySelector(sel);
    const box = root.querySelector('.lm-panel-input textarea');
    const mode = root.querySelector('.lm-panel-mode');
    const st = {keys: [], renders: []};
    box.addEventListener('keydown', () => st.keys.push(performance.now()), true);
    new MutationObserver(() => {
        const text = mode.textContent;
        requestAnimationFrame(() => st.renders.push([performance.now(), text]));
    }).observe(mode, {subtree: true, childList: true, characterData: true});
    (window.__bench = window.__bench || {})[sel] = st;
}"""


def stats(ms: list) -> str:
    return (f"p50 {median(ms):6.1f} ms | p90 {percentile(ms, 90):6.1f} ms | max {max(ms):6.1f} ms "
            f"| n={len(ms)}")


def one_key_at_a_time(page, sel: str, chars: str, pause: float) -> list:
    out = []
    for prev, ch in zip(" " + chars, chars):
        if ch == " " and not prev.isalnum():
            page.keyboard.type(ch)       # "mat ." + " ": the same next words, nothing to redraw
            time.sleep(pause)
            continue
        n = page.evaluate("sel => window.__bench[sel].renders.length", sel)
        page.keyboard.type(ch)
        page.wait_for_function("([sel, n]) => window.__bench[sel].renders.length > n", arg=[sel, n])
        key, render = page.evaluate("sel => { const s = window.__bench[sel]; "
                                    "return [s.keys[s.keys.length - 1], s.renders[s.renders.length - 1][0]]; }", sel)
        out.append(render - key)
        time.sleep(pause)
    return out


def word_by_word(page, sel: str, words: list, key_gap: float) -> list:
    out = []
    page.keyboard.type(" ")              # the text may end inside a word
    time.sleep(0.3)
    for word in words:
        for ch in word:
            page.keyboard.type(ch)
            time.sleep(key_gap)
        want = f"completing “{word}…”:"
        page.wait_for_function("([sel, want]) => window.__bench[sel].renders.some(r => r[1] === want)",
                               arg=[sel, want])
        key, render = page.evaluate("""([sel, want]) => { const s = window.__bench[sel];
            return [s.keys[s.keys.length - 1], s.renders.find(r => r[1] === want)[0]]; }""", [sel, want])
        out.append(render - key)
        page.keyboard.type(" ")
        time.sleep(0.3)
        page.evaluate("sel => { window.__bench[sel].renders = []; }", sel)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=60, help="keys typed one at a time, per panel")
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between those keys")
    args = ap.parse_args(argv)

    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, JupyterServer, _missing, write_notebook

    why = _missing()
    if why is not None:
        raise SystemExit(f"cannot run: {why}")
    print(machine_line())
    cells = ["%load_ext lm_magics\nimport lm_magics as lm",
             "%%lm_train --name pets --epochs 20 --patience 20 --hidden-dim 32 --embed-dim 16 --lr 0.03 --seed 0 "
             "--threads 1 --quiet\n" + TEXT]
    for name, make in PANELS.items():
        cells.append(f"{name} = {make}\n{name}.widget.add_class('bench-{name}')\n{name}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        srv = JupyterServer(Path(tmp))
        srv.start()
        try:
            write_notebook(srv.root / "bench.ipynb", cells)
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.route(re.compile(r"^(?!(http|ws)://127\.0\.0\.1[:/]|data:|blob:|about:)"), lambda r: r.abort())
            page.goto(f"{srv.url}/lab/tree/bench.ipynb?token={srv.token}")
            expect(page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')).to_have_text(
                re.compile(r"\| Idle$"), timeout=60_000)
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells$")).click()
            for name in PANELS:
                expect(page.locator(f".bench-{name} .lm-panel-mode")).to_have_text("first word:", timeout=60_000)
            print("Keystroke -> suggestions on screen, JupyterLab + headless Chromium, tiny model "
                  "(k=5; the model itself takes about a millisecond):")
            for name in PANELS:
                sel = f".bench-{name}"
                page.evaluate(INSTRUMENT, sel)
                page.locator(f"{sel} .lm-panel-input textarea").click()
                chars = TYPED * (args.keys // len(TYPED) + 2)
                one_key_at_a_time(page, sel, chars[:4], args.pause)            # warm-up: "the "
                single = one_key_at_a_time(page, sel, chars[4:4 + args.keys], args.pause)
                words = word_by_word(page, sel, ["the", "cat", "slept", "on", "the", "bed", "a", "bird",
                                                 "sang", "to", "the", "black", "dog"], 0.08)
                print(f"  {LABELS[name]:<32} one key at a time:    {stats(single)}")
                print(f"  {'':<32} word at 80 ms/key:    {stats(words)}")
            browser.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
