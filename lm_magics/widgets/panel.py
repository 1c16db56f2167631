"""CompletionPanel: type text, see the model's next words as buttons, click one to accept it.

Each update asks ``model.next_words``; the engine keeps the LSTM state of recent prefixes, so a
keystroke after the first costs only the newly typed words (about a millisecond). The panel updates on
every keystroke: ipywidgets sends at most one change at a time and merges the keystrokes typed
meanwhile, so a fast typist is never queued behind stale updates.

Two modes, shown left of the buttons: text ending inside a word ("to be") *completes* that word
("be…" -> "belly"); text ending in a space or punctuation gets the *next word*. While completing, a button
shows the word's share among the words that start with what was typed (the model's probability of the
next word, which a typed stem has already narrowed, is in its tooltip). The label also says when the last
word typed is not one the model knows.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from typing import Any, List, Optional, Tuple

import ipywidgets as W

from ..analysis import training_note
from ..config import GenerateConfig
from ..engine.tokenizer import EOS
from ..errors import ConfigError, DataError
from ..registry import ModelRegistry
from ..formatting import is_punct, pairs_text, prob_text, token_text
from ._base import ModelWidget, copy_check, copies_text, esc, iter_words

__all__ = ["CompletionPanel", "split_partial"]

_WORD_TAIL = re.compile(r"\w+\Z")          # \Z: "$" would also match before a final line end
_ATTACH = re.compile(r"^(?:[.,;:!?%)\]}]+|'\w*|n't)$")   # tokens written without a space before them


def _text_value(text: Any) -> str:
    """What panel.value may be set to: text, or None for an empty panel."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise DataError(f"The panel's value must be text (str), got {type(text).__name__}.")
    return text


def split_partial(text: str) -> Tuple[str, str]:
    """Split text into (context, half-typed last word). ``"the ca" -> ("the ", "ca")``;
    text ending in whitespace or punctuation has no half-typed word."""
    m = _WORD_TAIL.search(text)
    if not m:
        return text, ""
    return text[: m.start()], m.group(0)


def append_word(text: str, word: str) -> str:
    """text + word, spaced as written text (no space before closing punctuation), plus a space."""
    if _ATTACH.match(word):
        base = text.rstrip(" ")
    else:
        base = text if not text or text[-1].isspace() else text + " "
    return base + word + " "


def join_continuation(tokenizer: Any, text: str, tokens: List[str]) -> str:
    """text + generated tokens, spaced the way the tokenizer joins tokens (``generate`` does the same):
    "the dog" + [",", "and"] -> "the dog, and ". The user's text is kept as typed; line ends in the
    generated tokens become spaces (the panel writes running text)."""
    tokens = [t for t in tokens if t != EOS]
    if not tokens:
        return text
    if tokenizer.level == "char":
        return text + tokenizer.join(tokens)
    cont = tokenizer.join(tokens)
    last = tokenizer.tokenize(text)[-1:]
    if last and tokenizer.join(last + tokens[:1]) == last[0] + tokens[0]:
        base = text.rstrip(" \t")          # the first token attaches: "dog" + "," -> "dog,"
    else:
        base = text if not text or text[-1].isspace() else text + " "
    return base + cont + " "


def _tail(text: str, words: int = 4) -> str:
    """The end of text, for a label: "…or not to be"."""
    parts = text.split()
    return ("…" if len(parts) > words else "") + " ".join(parts[-words:])


class CompletionPanel(ModelWidget):
    """A text area with live next-word suggestions from a language model.

    Parameters
    ----------
    model_or_name : LanguageModel or str, optional
        A model, or the name of one in the session's registry (default: the session's default model).
        The panel follows that name: when it is re-registered (training finished), the panel switches.
    registry : ModelRegistry, optional
        Where names are looked up (default: the current IPython session's).
    k : int
        How many suggestions to show.
    debounce : float
        Seconds to wait after a keystroke before updating (default 0: at once; the browser already
        merges keystrokes typed while an update is on its way).
    n_words, temperature, seed
        Settings of the "Continue" button.

    >>> panel = CompletionPanel(model, k=3)          # doctest: +SKIP
    >>> panel.value = "Beautiful is"; panel.refresh(); panel.words   # doctest: +SKIP
    ['better', ...]
    >>> panel.value = "Beautiful is be"; panel.refresh(); panel.mode_text   # doctest: +SKIP
    'completing “be…” (share among words starting with “be”)'
    >>> panel.shares                                   # doctest: +SKIP
    [0.93, ...]
    """

    max_k = 20

    def __init__(self, model_or_name: Any = None, registry: Optional[ModelRegistry] = None, k: int = 5, *,
                 debounce: float = 0.0, n_words: int = 10, temperature: float = 0.8,
                 seed: Optional[int] = None, value: str = ""):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise ConfigError(f"k must be a whole number from 1 to {self.max_k}, got {k!r}.")
        GenerateConfig(n_words=n_words, temperature=temperature, seed=seed)   # the Continue settings
        if isinstance(debounce, bool) or not isinstance(debounce, (int, float)) or not 0 <= debounce < math.inf:
            raise ConfigError(f"debounce must be a number of seconds (0 or more), got {debounce!r}.")
        value = _text_value(value)
        super().__init__(model_or_name, registry)
        self.debounce = float(debounce)
        self.seed = seed
        self.suggestions: List[Tuple[str, float]] = []   # (word, probability as the next word)
        # While completing: each suggestion's share among the words that start with the typed stem
        # (its probability renormalised over them); [] in the other modes.
        self.shares: List[float] = []
        self._only_match = False      # the stem has a single match: its share is exactly 100%
        self.latency_ms: Optional[float] = None
        # What the last Continue copied from training rows: a list of runs ([]: none), or None when the
        # model cannot tell (no copy index) or nothing was generated since the text last changed.
        self.copies: Optional[List[dict]] = None
        self._copy_note = ""
        self.mode = "first"           # "first" (empty text), "next" (next word) or "complete" (a half-typed word)
        self.hint = ""                # why the suggestions are not what the mode suggests ("" when they are)
        self._seq = 0                 # bumped on every text change: a result for an older text is dropped
        self._suppress = False        # True while the panel itself sets the text
        self._syncing = False         # True while the dropdown is being refilled
        self._pending: Any = None     # the scheduled debounced update (TimerHandle or Timer)
        self._lock = threading.RLock()

        self.input = W.Textarea(value=value, placeholder="Start typing…", continuous_update=True,
                                layout=W.Layout(width="100%", height="5em"))
        self.input.add_class("lm-panel-input")
        self.buttons: List[W.Button] = []
        self.mode_label = W.HTML()
        self.mode_label.add_class("lm-panel-mode")
        self.suggestion_box = W.HBox(layout=W.Layout(flex_flow="row wrap", flex="1 1 auto"))
        self.suggestion_box.add_class("lm-panel-suggestions")
        self.k_slider = W.IntSlider(value=k, min=1, max=self.max_k, description="k",
                                    style={"description_width": "initial"}, layout=W.Layout(width="180px"))
        self.k_slider.add_class("lm-panel-k")
        self.temperature = W.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                         description="temperature", style={"description_width": "initial"},
                                         layout=W.Layout(width="280px"))
        self.temperature.add_class("lm-panel-temperature")
        self.n_words = W.BoundedIntText(value=n_words, min=1, max=500, description="words",
                                        style={"description_width": "initial"}, layout=W.Layout(width="130px"))
        self.n_words.add_class("lm-panel-n")
        self.continue_button = W.Button(description="Continue", icon="forward",
                                        tooltip="Generate the next words")
        self.continue_button.add_class("lm-panel-continue")
        self.model_select = W.Dropdown(description="model", style={"description_width": "initial"},
                                       layout=W.Layout(width="200px"))
        self.model_select.add_class("lm-panel-model")
        self.status = W.HTML()
        self.status.add_class("lm-panel-status")
        self.copy_label = W.HTML()
        self.copy_label.add_class("lm-panel-copies")
        controls = W.HBox([self.model_select, self.k_slider, self.temperature, self.n_words,
                           self.continue_button], layout=W.Layout(flex_flow="row wrap"))
        controls.add_class("lm-panel-controls")
        suggestion_row = W.HBox([self.mode_label, self.suggestion_box], layout=W.Layout(align_items="center"))
        suggestion_row.add_class("lm-panel-suggestion-row")
        self.widget = W.VBox([self.input, suggestion_row, controls, self.copy_label, self.status, self.log])
        self._shown_text = value      # the text the suggestions and the mode label are for
        self.widget.add_class("lm-panel")

        self._make_buttons(k)
        self._sync_dropdown()
        self.input.observe(self._safe(self._on_text), names="value")
        self.k_slider.observe(self._safe(self._on_k), names="value")
        self.model_select.observe(self._safe(self._on_select), names="value")
        self.continue_button.on_click(self._safe(lambda _b: self.continue_text()))
        self._safe(self.refresh)()

    # ------------------------------------------------------------------ public

    @property
    def value(self) -> str:
        """The text in the panel; setting it updates the suggestions (at once, or after ``debounce`` s)."""
        return self.input.value

    @value.setter
    def value(self, text: str) -> None:
        self.input.value = _text_value(text)

    @property
    def k(self) -> int:
        return self.k_slider.value

    @property
    def words(self) -> List[str]:
        return [w for w, _ in self.suggestions]

    @property
    def mode_text(self) -> str:
        """What the label left of the buttons says, as plain text ("completing “be…”")."""
        return _mode_text(self.mode, self._shown_text, self.hint)

    def refresh(self) -> List[Tuple[str, float]]:
        """Recompute the suggestions for the current text now; returns them as (word, probability).

        If the text changes while this runs (another thread), the result is dropped: the update for
        the newer text shows its own, so a stale result never overwrites a newer one."""
        self._cancel_pending()
        with self._lock:
            seq = self._seq                # before reading the text: a newer text has a newer number
        if self.model is None:
            self.suggestions = []
            self._show_buttons()
            self.require_model()           # raises: "No model in this session yet. Train one ..."
        model = self.model
        t0 = time.perf_counter()
        text = self.value
        mode, pairs, hint, shares = self._suggest_shares(model, text)
        latency = (time.perf_counter() - t0) * 1000
        with self._lock:
            if seq != self._seq:
                return pairs
            self.latency_ms, self.suggestions, self.mode, self.hint = latency, pairs, mode, hint
            self.shares, self._only_match = shares

            self._shown_text = text
            self.last_error = None
            self._show_buttons()
            self._set_status()
            self._show_mode()              # last: once it shows this text, the buttons do too
        return pairs

    def accept(self, word: str) -> str:
        """Put word in the text, refresh, and return the new text. In "complete" mode the word
        replaces the half-typed one ("the ca" + "cat" -> "the cat "), else it is added after it."""
        if not isinstance(word, str):
            raise DataError(f"accept() takes a word (str), got {type(word).__name__}.")
        text = self.value
        context, _ = split_partial(text)
        mode = self.mode if text == self._shown_text else self._suggest(self.require_model(), text, 1)[0]
        self._set_text(append_word(context if mode == "complete" else text, word))
        self.refresh()
        return self.value

    def continue_text(self, n_words: Optional[int] = None) -> str:
        """Append n_words generated words (the "Continue" button); returns the new text. The words
        are joined as ``generate`` joins them, as running text: no line breaks.

        When the words reproduce a run of a training row (``model.copied``), a note below the controls
        says which row (``panel.copy_note``; ``panel.copies`` holds the runs)."""
        model = self.require_model()
        n = self.n_words.value if n_words is None else n_words
        text = self.value
        cfg = GenerateConfig(n_words=n, temperature=self.temperature.value, seed=self.seed)
        tokens = list(iter_words(model, text, cfg))
        self._show_copies(copy_check(model, text, tokens), checked=True)
        self._set_text(join_continuation(model.tokenizer, text, tokens))
        self.refresh()
        return self.value

    @property
    def copy_note(self) -> str:
        """The note about the last Continue's copies as plain text ("" when there is none to show)."""
        return self._copy_note

    def __repr__(self) -> str:
        return (f"CompletionPanel(model={self.name!r}, k={self.k}, text={self.value!r}, "
                f"suggestions=[{pairs_text(self.suggestions)}])")

    # ------------------------------------------------------------------ widgets

    def _make_buttons(self, k: int) -> None:
        while len(self.buttons) < k:
            b = W.Button(layout=W.Layout(width="auto"))
            b.add_class("lm-panel-suggestion")
            i = len(self.buttons)
            b.on_click(self._safe(lambda _b, i=i: self._on_button(i)))
            self.buttons.append(b)
        self.suggestion_box.children = tuple(self.buttons[:k])

    def _suggest(self, model: Any, text: str,
                 k: Optional[int] = None) -> Tuple[str, List[Tuple[str, float]], str]:
        """(mode, suggestions, hint) for text: completions of a half-typed word, else next words."""
        return self._suggest_shares(model, text, k)[:3]

    def _suggest_shares(self, model: Any, text: str, k: Optional[int] = None
                        ) -> Tuple[str, List[Tuple[str, float]], str, Tuple[List[float], bool]]:
        """``_suggest`` and, while completing, (each suggestion's share among the words starting with the
        stem, whether the stem has a single match)."""
        k = self.k if k is None else k
        if model.tokenizer.level == "char":
            return ("next" if text.strip() else "first"), model.next_words(text, k), "", ([], False)
        context, partial = split_partial(text)
        unknown = _unknown_hint(model.tokenizer, context)
        if partial:
            # Every word that starts with the stem (most likely first), for the mass they share.
            matching = model.next_words(context, len(model.tokenizer), startswith=partial)
            if matching:
                total = sum(p for _, p in matching)
                pairs = matching[:k]
                shares = [p / total if total > 0 else 0.0 for _, p in pairs]
                return "complete", pairs, unknown, (shares, len(matching) == 1)
            # Nothing to complete: offer the next words instead (the model reads the word as unknown)
            # and say why, rather than showing an empty row.
            return "next", model.next_words(text, k), f"“{partial}” is not in the vocabulary", ([], False)
        return ("next" if text.strip() else "first"), model.next_words(text, k), unknown, ([], False)

    def _show_buttons(self) -> None:
        for i, b in enumerate(self.buttons):
            with b.hold_sync():            # one message per button, not one per trait
                if i < len(self.suggestions):
                    w, p = self.suggestions[i]
                    if self.mode == "complete" and i < len(self.shares):
                        share = prob_text(self.shares[i], exact=self._only_match)
                        stem = split_partial(self._shown_text)[1]
                        b.description = f"{token_text(w)} {share}"
                        b.tooltip = (f"complete to {w!r} ({share} of the words starting with {stem!r}; "
                                     f"{prob_text(p)} as the next word, probability {p:.4f})")
                    else:
                        b.description = f"{token_text(w)} {prob_text(p)}"
                        b.tooltip = f"add {w!r} (probability {p:.4f})"
                    _set_punct_style(b, is_punct(w))
                    b.layout.display = None
                else:
                    b.description, b.tooltip = "", ""
                    b.layout.display = "none"

    def _show_mode(self) -> None:
        self.mode_label.value = _mode_html(self.mode, self._shown_text, self.hint)

    def _set_status(self) -> None:
        if self.model is None:
            self.status.value = ("<span class='lm-status'>No model yet: train one with "
                                 "<code>%%lm_train</code>; the panel picks it up.</span>")
            return
        ms = f"{self.latency_ms:.1f} ms" if self.latency_ms is not None else "–"
        note = training_note(self.model)      # a model that learned little says so under its suggestions
        self.status.value = (f"<span class='lm-status' style='color:#666'>model <b>{esc(self.name)}</b> · "
                             f"{len(self.suggestions)} suggestions · last update {ms}</span>"
                             + (f"<div class='lm-training-note' style='color:#a15c00'>note: {esc(note)}</div>"
                                if note else ""))

    def _show_error(self, text: str) -> None:
        self.status.value = f"<span class='lm-error' style='color:#c00'>Error: {esc(text)}</span>"

    def _show_copies(self, copies: Optional[List[dict]], checked: bool) -> None:
        """The note under the controls: a warning for copies, a grey line when the model cannot tell,
        nothing when the continuation copies no training row (or nothing was generated yet)."""
        self.copies = copies
        self._copy_note = copies_text(copies) if checked else ""
        if not self._copy_note:
            self.copy_label.value = ""
        elif copies:
            self.copy_label.value = (f"<span class='lm-copies' style='color:#c60;font-size:12px'>⚠ "
                                     f"{esc(self._copy_note)}</span>")
        else:
            self.copy_label.value = (f"<span class='lm-copies-unavailable' style='color:#888;font-size:12px'>"
                                     f"{esc(self._copy_note)}</span>")

    def _sync_dropdown(self) -> None:
        self._syncing = True
        try:
            names = self.model_names()
            self.model_select.options = names
            self.model_select.value = self.name if self.name in names else None
        finally:
            self._syncing = False

    def _model_changed(self) -> None:
        self._sync_dropdown()
        if self.model is not None:
            self.refresh()
        else:
            self._set_status()

    def _set_text(self, text: str) -> None:
        self._suppress = True
        try:
            self.input.value = text
        finally:
            self._suppress = False

    # ------------------------------------------------------------------ callbacks

    def _on_text(self, _change: dict) -> None:
        with self._lock:
            self._seq += 1
        if self._suppress:
            return
        if self._copy_note:
            self._show_copies(None, checked=False)   # the note was about the last Continue's words
        if self.debounce <= 0:
            self.refresh()
        else:
            self._schedule()

    def _on_k(self, change: dict) -> None:
        self._make_buttons(change["new"])
        self.refresh()

    def _on_select(self, change: dict) -> None:
        if self._syncing or change["new"] is None or change["new"] == self.name:
            return
        self.use(change["new"])

    def _on_button(self, i: int) -> None:
        if i < len(self.suggestions):
            self.accept(self.suggestions[i][0])

    # ------------------------------------------------------------------ debounce

    def _schedule(self) -> None:
        """Run refresh once typing pauses for ``debounce`` seconds. In a kernel this uses its event
        loop (the update runs on the main thread between messages); elsewhere a timer thread."""
        run = self._safe(self.refresh)
        with self._lock:
            self._cancel_pending_locked()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._pending = loop.call_later(self.debounce, run)
            else:
                t = threading.Timer(self.debounce, run)
                t.daemon = True
                self._pending = t
                t.start()

    def _cancel_pending(self) -> None:
        with self._lock:
            self._cancel_pending_locked()

    def _cancel_pending_locked(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def close(self) -> None:
        self._cancel_pending()
        super().close()


_PUNCT_STYLE = {"font_family": "monospace", "font_weight": "bold", "button_color": "#fef3c7"}


def _set_punct_style(b: W.Button, punct: bool) -> None:
    """Punctuation suggestions look different (monospace, bold, amber), so "," is not lost."""
    if punct == ("lm-panel-punct" in b._dom_classes):
        return
    for name, value in _PUNCT_STYLE.items():      # the look first, the class (what tests and CSS see) last
        setattr(b.style, name, value if punct else None)
    (b.add_class if punct else b.remove_class)("lm-panel-punct")


def _unknown_hint(tokenizer: Any, context: str) -> str:
    """A note when the last complete word of context is not in the model's vocabulary ("" otherwise):
    the model reads it as <unk>, which the user cannot see."""
    words = [t for t in tokenizer.tokenize(context) if any(c.isalnum() for c in t)]
    if not words or tokenizer.unk_id not in tokenizer.encode_line(words[-1], eos=False):
        return ""
    return f"“{words[-1]}” is not a word the model knows; suggestions treat it as unknown"


def _mode_text(mode: str, text: str, hint: str) -> str:
    if mode == "complete":
        stem = split_partial(text)[1]
        said = f"completing “{stem}…” (share among words starting with “{stem}”)"
    elif mode == "first":
        said = "first word"
    else:
        said = f"next word after “{_tail(text)}”"
    return f"{hint}; {said}" if hint else said


def _mode_html(mode: str, text: str, hint: str) -> str:
    label = esc(_mode_text(mode, text, "")) + ":"
    if hint:
        label = f"<span class='lm-panel-hint' style='color:#92400e'>{esc(hint)};</span> " + label
    return (f"<span class='lm-panel-mode-{mode}' style='color:#555;font-size:12px;margin-right:6px'>"
            f"{label}</span>")
