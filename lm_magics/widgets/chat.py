"""ChatAssistant: a conversation with a language model, plus slash commands to explore a text column.

The "assistant" answers a message by continuing it with the model, streamed word by word into its
bubble. Commands (``/help``) switch models, change settings, show next words, list the notebook's text
data (``/data``), score a column (``/unusual``), explain a text (``/explain``), compare groups of rows
(``/compare``), train in the background (``/learn``) and export the conversation. Every answer that
computed something shows the magic that computes it again, with a Copy button, so the work can go
into a cell. Columns are named as in Python: ``reviews.text`` or ``reviews["review text"]``.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shlex
import threading
import traceback
import weakref
from collections.abc import MutableMapping
from typing import Any, Callable, Dict, List, Optional, Tuple

import ipywidgets as W

from .. import api
from ..config import GenerateConfig
from ..display import DataOverview
from ..engine.data import files
from ..errors import ConfigError, DataError, LMError
from ..formatting import num_text, pairs_text, token_text
from ..frames import (ColumnRef, is_dataframe, lookup, parse_column_ref, ref_text, resolve_column, select_rows,
                      spaced_column, text_overview)
from ..registry import ModelRegistry
from ._base import GIVEN, ModelWidget, _shell, copies_text, copy_check, esc, iter_words

__all__ = ["ChatAssistant"]

# Each role's whole margin in one declaration (a later "margin:3px 0" would reset the side offsets):
# your messages sit on the right, the model's on the left, notes across the whole width.
_STYLE = {
    "user": "background:#dbeafe;margin:3px 0 3px 20%;",
    "assistant": "background:#f3f4f6;margin:3px 20% 3px 0;",
    "system": "background:#fefce8;color:#444;font-size:12px;margin:3px 0;",
    "error": "background:#fee2e2;color:#900;font-size:12px;margin:3px 0;",
}

# (command, what it does, an example). COLUMN is reviews.text or reviews["review text"].
HELP_ROWS = [
    ("/help", "this list", "/help"),
    ("/data", "the DataFrames, Series and text lists of the notebook: rows, missing, mean words", "/data"),
    ("/unusual COLUMN [with MODEL] [top N]", "score every row (adds COL_ppl, COL_bits) and show the most "
     "and least surprising", "/unusual reviews.text top 3"),
    ("/explain TEXT", "the surprisal of each word and what the model expected instead",
     "/explain the cat sat on the river"),
    ("/compare COLUMN by GROUP [with MODEL] [min N]", "which groups are most unusual, and their words",
     "/compare reviews.text by product"),
    ("/learn COLUMN [where EXPR] [as NAME]", "train a model in the background (Stop in the chat)",
     "/learn reviews.text where stars > 3 as happy"),
    ("/learn FILES... [as NAME]", "train on text files (glob patterns allowed)", "/learn notes/*.txt as notes"),
    ("/stop", "stop the trainings (the best model so far is kept) and long commands started here", "/stop"),
    ("/models", "the models of this session", "/models"),
    ("/use NAME", "answer with another model", "/use happy"),
    ("/next TEXT", "the most likely next words after TEXT", "/next the cat"),
    ("/score TEXT", "perplexity of TEXT and its most surprising words", "/score the cat sat"),
    ("/temp T", "sampling temperature (0 = always the most likely word)", "/temp 0.5"),
    ("/k K", "how many next-word alternatives to show", "/k 5"),
    ("/len N", "words per answer", "/len 30"),
    ("/clear", "forget the conversation", "/clear"),
    ("/export VAR", "the conversation as a DataFrame (or list of dicts) in variable VAR", "/export convo"),
]
_W = max(len(c) for c, _, _ in HELP_ROWS) + 2
HELP = "\n".join(f"{command:<{_W}}{what} (e.g. {example})" for command, what, example in HELP_ROWS) + \
    "\nAny other message: the model continues your text."
# In the bubble the columns are a table: spaces cannot align a proportional font.
_HELP_HTML = ("<table class='lm-chat-help' style='border-collapse:collapse'>" + "".join(
    f"<tr><td style='padding:0 1.5em 0 0;white-space:nowrap'><code>{esc(command)}</code></td>"
    f"<td style='padding:0 1.5em 0 0'>{esc(what)}</td>"
    f"<td style='padding:0;white-space:nowrap;color:#555'><code>{esc(example)}</code></td></tr>"
    for command, what, example in HELP_ROWS) + "</table>"
    "<div style='color:#666'>Any other message: the model continues your text.</div>")

# A plain message that reads like a request for a command gets a one-line hint: (words, command).
_WANTS = [
    (re.compile(r"\b(unusual|surprising|odd|weird|strange|outliers?|anomal\w*|rare)\b"), "unusual"),
    (re.compile(r"\b(compare|comparing|differ\w*|versus|vs)\b"), "compare"),
    (re.compile(r"\b(train|learn|fit)\b"), "learn"),
    (re.compile(r"\b(explain|why)\b"), "explain"),
    (re.compile(r"\b(data\s?frames?|columns?|datasets?|variables|what data)\b"), "data"),
]
# A reference to a notebook variable inside running text: name.column or name["column"].
_REF_IN_TEXT = re.compile(r"""\b([A-Za-z_]\w*)(\[\s*(["']).*?\3\s*\]|\.[^\s,;:!?]*[^\s,;:!?.])""")


class ChatAssistant(ModelWidget):
    """A chat-style front-end to a language model.

    Parameters
    ----------
    model_or_name : LanguageModel or str, optional
        A model or the name of one in the registry (default: the session's default model).
    registry : ModelRegistry, optional
        Where names are looked up (default: the current IPython session's).
    user_ns : dict, optional
        Where ``/export VAR`` puts the conversation (default: the IPython user namespace).
    max_messages : int
        The history keeps at most this many messages (the oldest go first).
    n_words, temperature, k, seed, show_alternatives
        Answer length, sampling temperature, number of alternatives shown, sampling seed.

    ``/unusual`` on a frame of ``background_rows`` rows or more (default 50,000: more than a few seconds of
    scoring) runs in a thread with a progress bar and a Stop button; the kernel stays free meanwhile.

    >>> chat = ChatAssistant(model, seed=0)        # doctest: +SKIP
    >>> chat.send("Beautiful is")                   # doctest: +SKIP
    'better than ugly . ...'
    """

    background_rows = 50_000

    def __init__(self, model_or_name: Any = None, registry: Optional[ModelRegistry] = None,
                 user_ns: Optional[dict] = None, max_messages: int = 200, *, n_words: int = 20,
                 temperature: float = 0.8, k: int = 3, seed: Optional[int] = None,
                 show_alternatives: bool = True):
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 2:
            raise ConfigError(f"max_messages must be a whole number of at least 2, got {max_messages!r}.")
        self.settings = GenerateConfig(n_words=n_words, temperature=temperature, seed=seed)
        self.k = _positive_int(k, "k")
        if user_ns is not None and not isinstance(user_ns, MutableMapping):
            raise ConfigError(f"user_ns must be a dict (a namespace for /export), got {type(user_ns).__name__}.")
        if not isinstance(show_alternatives, bool):
            raise ConfigError(f"show_alternatives must be True or False, got {show_alternatives!r}.")
        super().__init__(model_or_name, registry)
        self.user_ns = user_ns
        self.max_messages = max_messages
        self.show_alternatives = show_alternatives
        self.messages: List[Dict[str, Any]] = []
        self._bubbles: List[W.Widget] = []
        self.trainings: List[Any] = []                  # TrainingMonitors started by /learn
        self.jobs: List[Dict[str, Any]] = []            # long commands running in a thread (/unusual on big data)
        # Score columns /unusual wrote: (a weak reference to the frame, column). Running it again may
        # replace these, never a column the user made.
        self._written: List[Tuple[Any, str]] = []
        self._lock = threading.RLock()                  # /learn's watcher adds messages from its thread

        self.history = W.VBox(layout=W.Layout(width="100%", flex="0 0 auto"))   # never squeezed: the box scrolls
        self.history.add_class("lm-chat-history")
        # The scroll box lays its one child out bottom-up (column-reverse): the browser then keeps it
        # scrolled to the newest message as bubbles are added, and keeps the place of a reader who
        # scrolled back. No script needed, and the bubbles stay in reading order.
        self.scroller = W.Box([self.history], layout=W.Layout(
            display="flex", flex_flow="column-reverse", max_height="420px", overflow="auto", width="100%"))
        self.scroller.add_class("lm-chat-scroll")
        self.input = W.Text(placeholder="Type a message or /help, then Enter", continuous_update=False,
                            layout=W.Layout(flex="1 1 auto"))
        self.input.add_class("lm-chat-input")
        self.send_button = W.Button(description="Send", button_style="primary", icon="paper-plane")
        self.send_button.add_class("lm-chat-send")
        self.status = W.HTML()
        self.status.add_class("lm-chat-status")
        row = W.HBox([self.input, self.send_button], layout=W.Layout(width="100%"))
        row.add_class("lm-chat-row")
        self.widget = W.VBox([self.scroller, row, self.status, self.log],
                             layout=W.Layout(width="100%", max_width="820px"))
        self.widget.add_class("lm-chat")

        # With continuous_update=False the value reaches the kernel on Enter (or when the box loses
        # focus): that is the "submit". Send covers a value set without either.
        self.input.observe(self._safe(self._on_input), names="value")
        self.send_button.on_click(self._safe(lambda _b: self._submit()))
        self._commands: Dict[str, Callable[[str], None]] = {
            "help": self._cmd_help, "models": self._cmd_models, "use": self._cmd_use,
            "temp": self._cmd_temp, "k": self._cmd_k, "len": self._cmd_len, "next": self._cmd_next,
            "score": self._cmd_score, "clear": self._cmd_clear, "export": self._cmd_export,
            "data": self._cmd_data, "unusual": self._cmd_unusual, "explain": self._cmd_explain,
            "compare": self._cmd_compare, "learn": self._cmd_learn, "stop": self._cmd_stop,
        }
        self._set_status()

    # ------------------------------------------------------------------ public

    def send(self, text: str) -> Optional[str]:
        """Handle one message as if typed: a /command, or a message the model answers.
        Returns the answer text (None for commands). Errors become messages in the chat."""
        if not isinstance(text, str):
            raise DataError(f"send() takes a message (str), got {type(text).__name__}.")
        text = text.strip()
        if not text:
            return None
        try:
            if text.startswith("/"):
                self._add("user", text)
                self._command(text)
                return None
            self._add("user", text)
            hint = self._hint(text)
            try:
                return self._answer(text)
            finally:
                if hint:
                    self._say(f"Looks like a request for a command: {hint}  (/help lists them all)")
        except Exception as exc:  # noqa: BLE001 - shown in the chat, never lost
            self._report(exc)
            return None
        finally:
            self._set_status()

    def clear(self) -> None:
        self.messages.clear()
        for b in self._bubbles:
            b.close()
        self._bubbles.clear()
        self.history.children = ()

    def to_records(self) -> List[Dict[str, Any]]:
        """The conversation as a list of dicts (role, text, model, alternatives)."""
        return [dict(m) for m in self.messages]

    def transcript(self) -> str:
        return "\n".join(f"{m['role']}: {m['text']}" for m in self.messages)

    @property
    def temperature(self) -> float:
        return self.settings.temperature

    def __repr__(self) -> str:
        s = self.settings
        return (f"ChatAssistant(model={self.name!r}, messages={len(self.messages)}, "
                f"temperature={s.temperature}, n_words={s.n_words}, k={self.k})")

    # ------------------------------------------------------------------ messages

    def _add(self, role: str, text: str, *, body: Optional[str] = None, widget: Optional[W.Widget] = None,
             **extra: Any) -> int:
        """Append a message and its bubble (body: HTML shown instead of the text; widget: a live widget
        shown below it, e.g. a training monitor); drop the oldest beyond max_messages. Returns its index."""
        with self._lock:
            msg = {"role": role, "text": text, **extra}
            self.messages.append(msg)
            bubble: W.Widget = W.HTML(_bubble_html(msg, body))
            if widget is not None:
                bubble = W.VBox([bubble, widget], layout=W.Layout(width="100%"))
            bubble.add_class("lm-chat-msg")
            bubble.add_class(f"lm-chat-{role}")
            self._bubbles.append(bubble)
            excess = len(self.messages) - self.max_messages
            if excess > 0:
                del self.messages[:excess]
                for b in self._bubbles[:excess]:
                    b.close()
                del self._bubbles[:excess]
            self.history.children = tuple(self._bubbles)
            return len(self.messages) - 1

    def _update(self, msg: Dict[str, Any], bubble: W.HTML) -> None:
        bubble.value = _bubble_html(msg)

    def _answer(self, text: str) -> str:
        """Continue the user's text with the model, streaming each word into a new bubble. The answer
        has n_words words, written across line ends (a line end is shown as a line break)."""
        model = self.require_model()
        alternatives = model.next_words(text, self.k) if self.show_alternatives else []
        self._add("assistant", "", model=self.name, alternatives=alternatives, streaming=True)
        msg, bubble = self.messages[-1], self._bubbles[-1]
        tokens: List[str] = []
        join = getattr(getattr(model, "tokenizer", None), "join", None) or " ".join
        try:
            for tok in iter_words(model, text, self.settings):
                tokens.append(tok)
                msg["text"] = join(tokens)
                self._update(msg, bubble)
            if tokens:
                # Does the reply recite a training row? The runs (or None: the model cannot tell) and a
                # note under the bubble.
                msg["copies"] = copy_check(model, text, tokens)
                msg["copy_note"] = copies_text(msg["copies"])
        finally:
            msg.pop("streaming", None)
            if not tokens:
                msg["text"] = "…"
            self._update(msg, bubble)
        return msg["text"]

    def _show_error(self, text: str) -> None:
        self._add("error", text)

    def _set_status(self) -> None:
        if self.model is None:
            self.status.value = ("<span class='lm-status' style='color:#666'>No model yet: train one with "
                                 "<code>%%lm_train</code>; the chat picks it up.</span>")
            return
        s = self.settings
        self.status.value = (f"<span class='lm-status' style='color:#666'>model <b>{esc(self.name)}</b> · "
                             f"temperature {s.temperature:g} · {s.n_words} words · "
                             f"{len(self.messages)} messages</span>")

    def _model_changed(self) -> None:
        self._set_status()

    def _on_input(self, change: dict) -> None:
        if change["new"].strip():
            self._submit()

    def _submit(self) -> None:
        text = self.input.value
        if text.strip():
            self.input.value = ""       # clear first: the observer sees "" and does nothing
            self.send(text)

    # ------------------------------------------------------------------ commands

    def _command(self, line: str) -> None:
        name, _, arg = line[1:].partition(" ")
        handler = self._commands.get(name.lower())
        if handler is None:
            raise ConfigError(f"Unknown command /{name}; type /help for the list.")
        handler(arg.strip())

    def _say(self, text: str, **extra: Any) -> None:
        self._add("system", text, **extra)

    def _computed(self, text: str, body: str, code: str, **extra: Any) -> None:
        """An answer that computed something: its text (and HTML body) and the line that computes it again
        in a cell (shown with a Copy button; also at the end of the message's text)."""
        self._add("system", f"{text}\n{code}", body=body, code=code, **extra)

    def _ns(self, purpose: str = "read variables from") -> dict:
        """The notebook's namespace: user_ns, else the IPython shell's."""
        ns = self.user_ns
        if ns is None:
            shell = _shell()
            ns = shell.user_ns if shell is not None else None
        if ns is None:
            raise ConfigError(f"No notebook namespace to {purpose}: pass user_ns= to ChatAssistant.")
        return ns

    def _model_for(self, name: Optional[str]) -> Tuple[Optional[str], Any]:
        """(name, model) for ``with NAME``, or the chat's model (name None when it is not registered)."""
        if name:
            return name, self.registry.get(name)
        model = self.require_model()
        return (None if self.name == GIVEN else self.name), model

    def _cmd_help(self, arg: str) -> None:
        self._add("system", HELP, body=_HELP_HTML)

    def _cmd_models(self, arg: str) -> None:
        names = self.model_names()
        if not names:
            self._say("No models yet: train one with %%lm_train.")
        else:
            self._say("Models: " + ", ".join(f"{n} (in use)" if n == self.name else n for n in names))

    def _cmd_use(self, arg: str) -> None:
        if not arg:
            raise ConfigError("Say which model: /use NAME (see /models).")
        self.use(arg)
        self._say(f"Now answering with '{arg}'.")

    def _cmd_temp(self, arg: str) -> None:
        self.settings = self.settings.replace(temperature=_number(arg, "/temp T", float))
        self._say(f"temperature = {self.settings.temperature:g}")

    def _cmd_k(self, arg: str) -> None:
        self.k = _positive_int(_number(arg, "/k K", int), "k")
        self._say(f"showing {self.k} alternatives")

    def _cmd_len(self, arg: str) -> None:
        self.settings = self.settings.replace(n_words=_number(arg, "/len N", int))
        self._say(f"answers of {self.settings.n_words} words")

    def _cmd_next(self, arg: str) -> None:
        model = self.require_model()
        pairs = model.next_words(arg, self.k, include_special=True)    # the end of a line shows as ⏎
        self._say(f"after {arg!r}: {pairs_text(pairs)}")

    def _cmd_score(self, arg: str) -> None:
        if not arg:
            raise ConfigError("Give the text to score: /score TEXT.")
        model = self.require_model()
        ppl = model.perplexity(arg)
        worst = sorted(model.surprisal(arg), key=lambda wb: -wb[1])[: self.k]
        self._say(f"perplexity {ppl:,.1f}; most surprising: "
                  + (", ".join(f"{token_text(w)} ({num_text(b)} bits)" for w, b in worst) or "(none)"))

    def _cmd_clear(self, arg: str) -> None:
        self.clear()
        self._say("Conversation cleared.")

    def _cmd_export(self, arg: str) -> None:
        var = arg.strip()
        if not var.isidentifier():
            raise ConfigError(f"/export needs a variable name, e.g. /export convo (got {var!r}).")
        ns = self._ns("export into")
        records = self.to_records()[:-1]          # not the /export command itself
        try:
            import pandas as pd
            value: Any = pd.DataFrame(records, columns=["role", "text", "model", "alternatives"])
        except ImportError:
            value = records
        ns[var] = value
        self._say(f"Exported {len(records)} messages to {var}.")


    # ------------------------------------------------------------------ exploring data

    def _cmd_data(self, arg: str) -> None:
        overview = DataOverview(text_overview(self._ns()))
        self._add("system", repr(overview), body=overview._repr_html_())

    def _cmd_unusual(self, arg: str) -> None:
        usage = "/unusual COLUMN [with MODEL] [top N], e.g. /unusual reviews.text top 3"
        ref, opts = self._column_and_options(arg, usage, {"with": str, "top": int})
        frame = ref.frame
        if ref.column is None or not is_dataframe(frame):
            raise DataError(f"'{ref.var}' is a {type(frame).__name__}; /unusual writes its scores as columns, so "
                            f"name a DataFrame column (e.g. {ref.var}_df = {ref.var}.to_frame() in a cell).")
        if type(frame).__module__.startswith("polars"):
            raise DataError(f"'{ref.var}' is a polars DataFrame, which cannot take new columns in place; run "
                            f"`{ref.var}_pd = {ref.var}.to_pandas()` in a cell and /unusual {ref.var}_pd.…")
        top = opts.get("top", 5)
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}.")
        name, model = self._model_for(opts.get("with"))
        # The model's n-gram baseline goes beside its scores when it has one: a column per row and a line
        # saying how far the two rankings agree.
        baseline = model.kind != "ngram" and model.ngram is not None
        parts = ("ngram", "mix" if model.kind == "lstm" else "lstm") if baseline else ()
        into, replace = self._score_columns(frame, ref.column, parts)

        def score(on_chunk: Optional[Callable[[int, int], None]] = None) -> Any:
            return api.score_frame(model, frame, ref.column, into=None if into == f"{ref.column}_ppl" else into,
                                   overwrite=replace, top=top, model_name=name or "", baseline=baseline,
                                   on_chunk=on_chunk)

        def done(report: Any) -> None:
            self._report_unusual(report, frame, ref, name, into, replace, top, baseline)

        if len(frame) >= self.background_rows:
            self._in_background(f"Scoring {len(frame):,} rows of {ref_text(ref.var, ref.column)}", score, done)
        else:
            done(score())

    def _report_unusual(self, report: Any, frame: Any, ref: Any, name: Optional[str], into: str, replace: bool,
                        top: int, baseline: bool) -> None:
        self._written += [(weakref.ref(frame), c) for c in (report.ppl_column, report.bits_column,
                                                              *(s.name for s in report.side.values()))]
        code = " ".join(["%lm_score", "--df", ref.var, "--column", _quote(ref.column)]
                        + (["--name", _quote(name)] if name else [])
                        + (["--into", _quote(into)] if into != f"{ref.column}_ppl" else [])
                        + (["--overwrite"] if replace else []) + ["--top", str(top)]
                        + (["--baseline"] if baseline else []))
        if name is None:
            code = (f"lm.score_frame(model, {ref.var}, {ref.column!r}, top={top}, overwrite={replace}"
                    f"{', baseline=True' if baseline else ''})")
        note = ""
        if into != f"{ref.column}_ppl":
            note = f" ('{ref.column}_ppl' is your column, so the scores went to '{into}')"
        self._computed(repr(report) + note, (f"<div>{esc(note.strip(' ()'))}</div>" if note else "")
                       + report._repr_html_(), code)

    def _in_background(self, title: str, work: Callable[..., Any], done: Callable[[Any], None]) -> None:
        """Run a long command in a thread: a progress bar and a Stop button in the conversation, the kernel
        free meanwhile. ``work(on_chunk)`` reports (done, total); Stop (or /stop) ends it at the next chunk,
        before anything is written; ``done(result)`` posts the answer."""
        stop = threading.Event()
        bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="200px"))
        count = W.Label("starting…")
        button = W.Button(description="Stop", icon="stop", button_style="danger",
                          tooltip="Stop at the next chunk; nothing is written")
        button.add_class("lm-chat-stop")
        button.on_click(lambda _b: stop.set())
        self._add("system", f"{title}… (Stop keeps the data as it was)",
                  widget=W.HBox([bar, button, count]))
        job = {"stop": stop, "title": title}
        self.jobs.append(job)

        def on_chunk(n: int, total: int) -> None:
            bar.value = n / max(total, 1)
            count.value = f"{n:,} / {total:,}"
            if stop.is_set():
                raise _Stopped()

        def run() -> None:
            try:
                result = work(on_chunk)
            except _Stopped:
                self._add("system", f"{title}: stopped; nothing was written.")
            except LMError as exc:
                self._add("error", str(exc))
            except Exception:   # a bug: keep its traceback visible in the conversation
                self._add("error", traceback.format_exc())
            else:
                done(result)
            finally:
                button.disabled, button.button_style = True, ""
                self.jobs.remove(job)

        threading.Thread(target=run, daemon=True, name=f"lm-chat-{title[:20]}").start()

    def _score_columns(self, frame: Any, column: str, parts: Tuple[str, ...] = ()) -> Tuple[str, bool]:
        """The perplexity column for /unusual: COL_ppl, unless the user has a column of that name (or of
        its _bits partner, or of the parts' COL_ngram_ppl ...), then COL_2_ppl, COL_3_ppl, ... Columns this
        chat wrote may be replaced: returns (column, whether it replaces ones it wrote)."""
        own = {c for ref, c in self._written if ref() is frame}
        n = 1
        while True:
            into = f"{column}_ppl" if n == 1 else f"{column}_{n}_ppl"
            pair = (into, into[:-4] + "_bits", *(f"{into[:-4]}_{p}_ppl" for p in parts))
            if not any(c in frame.columns and c not in own for c in pair):
                return into, any(c in frame.columns for c in pair)
            n += 1

    def _cmd_explain(self, arg: str) -> None:
        text = arg.strip()
        if not text:
            raise ConfigError("Give the text to explain: /explain the cat sat on the river.")
        name, model = self._model_for(None)
        result = api.explain(model, text, top=3, k=self.k, model_name=name or "")
        flags = (["--name", _quote(name)] if name else []) + ["-k", str(self.k)]
        code = (f"%lm_explain {' '.join(flags)} {text}" if name else f"lm.explain(model, {text!r}, k={self.k})")
        self._computed(repr(result), result._repr_html_(), code)

    def _cmd_compare(self, arg: str) -> None:
        usage = ("/compare COLUMN by GROUP [with MODEL] [min N], e.g. /compare reviews.text by product "
                 "(a group name with spaces in quotes: by \"product line\")")
        ref, opts = self._column_and_options(arg, usage, {"by": str, "with": str, "min": int})
        if "by" not in opts:
            raise ConfigError(f"Say which column holds the groups: {usage}.")
        if ref.column is None or not is_dataframe(ref.frame):
            raise DataError(f"'{ref.var}' is a {type(ref.frame).__name__}; /compare needs a DataFrame with a text "
                            f"column and a group column.")
        resolve_column(self._ns(), ref_text(ref.var, opts["by"]), need_text=False)   # names close matches
        name = opts.get("with")
        model = self.registry.get(name) if name else None
        code = " ".join(["%lm_compare", "--df", ref.var, "--column", _quote(ref.column), "--by",
                         _quote(opts["by"])] + (["--name", _quote(name)] if name else [])
                        + (["--min-rows", str(opts["min"])] if "min" in opts else []))

        def compare(on_chunk: Optional[Callable[[int, int], None]] = None) -> Any:
            return api.compare_groups(ref.frame, ref.column, opts["by"], model, min_rows=opts.get("min", 5),
                                      model_name=name or "", on_chunk=on_chunk)

        def done(result: Any) -> None:
            self._computed(repr(result), result._repr_html_(), code)

        if model is not None and len(ref.frame) >= self.background_rows:   # word counts are quick anyway
            self._in_background(f"Comparing groups of {ref_text(ref.var, ref.column)}", compare, done)
        else:
            done(compare())

    def _column_and_options(self, arg: str, usage: str, kinds: Dict[str, type]) -> Tuple[ColumnRef, dict]:
        """Parse ``COLUMN [key value]...`` (keys from kinds: ``with pets``, ``top 3``, ``by product``)."""
        if not arg.strip():
            raise ConfigError(f"Name a column: {usage}.")
        ns = self._ns()
        var, column, rest = parse_column_ref(arg)
        try:
            words = shlex.split(rest)
        except ValueError:
            raise ConfigError(f"Unbalanced quotes in {rest!r}; {usage}.") from None
        opts: dict = {}
        i = 0
        while i < len(words):
            key = words[i].lower()
            if key not in kinds or i + 1 >= len(words):
                meant = spaced_column(ns, var, column, rest)
                if meant:
                    raise DataError(f"A column name with spaces needs brackets: {meant}.")
                lookup(ns, var)       # an unknown variable is the clearer message
                raise ConfigError(f"Did not understand {' '.join(words[i:])!r}; {usage}.")
            value = words[i + 1]
            if kinds[key] is int:
                value = _number(value, f"{key} N", int)
            opts[key] = value
            i += 2
        return resolve_column(ns, ref_text(var, column)), opts

    # ------------------------------------------------------------------ training

    def _cmd_learn(self, arg: str) -> None:
        usage = "/learn COLUMN [where EXPR] [as NAME] or /learn FILES... [as NAME]"
        if not arg.strip():
            raise ConfigError(f"Say what to learn from: {usage}, e.g. /learn reviews.text as reviews.")
        m = re.search(r"\s+as\s+(\S+)\s*$", arg)
        name = m.group(1) if m else None
        body = arg[:m.start()] if m else arg
        ns = self._ns()
        var, column, rest = parse_column_ref(body) if re.match(r"\s*[A-Za-z_]", body) else ("", None, body)
        if var and var in ns:
            where = None
            if rest:
                w = re.match(r"where\s+(.+)$", rest, re.S)
                if not w:
                    meant = spaced_column(ns, var, column, rest)
                    raise DataError(f"A column name with spaces needs brackets: {meant}." if meant else
                                    f"Did not understand {rest!r}; {usage}.")
                where = w.group(1).strip()
            ref = resolve_column(ns, ref_text(var, column))
            data = ref.values
            if where:
                frame = select_rows(ref.frame, where, ns, f"'{var}'")
                data = frame[column] if column is not None else frame
            name = name or re.sub(r"\W+", "_", f"{var}_{column}" if column else var)
            src = ["--df", var] + (["--column", _quote(column)] if column else []) \
                + (["--where", _quote(where)] if where else [])
            what = f"{ref} ({len(data):,} rows{', where ' + where if where else ''})"
        else:
            try:
                patterns = shlex.split(body)
            except ValueError:
                raise ConfigError(f"Unbalanced quotes in {body!r}; {usage}.") from None
            looks_like_ref = len(patterns) == 1 and re.fullmatch(r"[A-Za-z_]\w*(\.[^/\\*?]+|\[.*\])?", patterns[0])
            if var and looks_like_ref and not glob.glob(os.path.expanduser(patterns[0])):
                # Neither a variable nor a file: name the variables it may have meant.
                try:
                    lookup(ns, var)
                except DataError as exc:
                    raise DataError(f"{exc} (No file {patterns[0]!r} either.)") from None
            data = files(*patterns)
            paths = data.paths()                    # a DataError now for a pattern that matches nothing
            name = name or re.sub(r"\W+", "_", os.path.splitext(paths[0].name)[0]) or "model"
            src = ["--file"] + [_quote(p) for p in patterns]
            what = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        from .monitor import start_background_training

        monitor = start_background_training(registry=self.registry, name=name, data=data, options={})
        self.trainings.append(monitor)
        code = " ".join(["%lm_train", "--name", _quote(name)] + src + ["--background"])
        self._add("system", f"Training '{name}' on {what} in the background; Stop (or /stop) keeps the best "
                            f"model so far.\n{code}", code=code, widget=monitor.widget,
                  body=f"Training <b>{esc(name)}</b> on {esc(what)} in the background; Stop (or /stop) keeps "
                       f"the best model so far.")
        threading.Thread(target=self._watch, args=(monitor,), daemon=True, name=f"lm-chat-{name}").start()

    def _watch(self, monitor: Any) -> None:
        """Wait for a /learn run and say in the conversation how it ended."""
        monitor.join()
        try:
            if monitor.model is None:
                self._add("error", f"Training '{monitor.name}' failed: {monitor.error}")
                return
            got = getattr(monitor, "registered_as", None) or monitor.name
            ppl = monitor.model.meta.get("val_ppl")
            how = "stopped" if monitor.model.interrupted else "finished"
            kept = f"; the earlier '{monitor.name}' is kept" if got != monitor.name else ""
            use = "" if self.name == got else f" /use {got} to answer with it."
            self._say(f"Training {how}: '{got}' is registered (validation perplexity "
                      f"{'n/a' if ppl is None else f'{ppl:,.1f}'}){kept}.{use}")
        except Exception as exc:  # noqa: BLE001 - a thread's error is shown, never lost
            self._report(exc)
        finally:
            self._set_status()

    def _cmd_stop(self, arg: str) -> None:
        running = [m for m in self.trainings if m.running]
        for job in list(self.jobs):
            job["stop"].set()
            self._say(f"Stopping: {job['title']}; nothing is written.")
        if not running:
            if not self.jobs:
                self._say("Nothing started here is running.")
            return
        for m in running:
            m.stop()
        self._say(f"Stopping {', '.join(repr(m.name) for m in running)} after the current step; the best "
                  f"model so far is kept.")

    # ------------------------------------------------------------------ hints

    def _hint(self, text: str) -> Optional[str]:
        """The command a plain message seems to ask for ("unusual rows in reviews.text" -> /unusual
        reviews.text), or None."""
        low = text.lower()
        try:
            ns = self._ns()
        except ConfigError:
            ns = {}
        ref = None
        for m in _REF_IN_TEXT.finditer(text):
            if m.group(1) in ns:
                ref = m.group(0)
                break
        for pattern, command in _WANTS:
            if not pattern.search(low):
                continue
            if command in ("unusual", "learn") and ref:
                return f"/{command} {ref}"
            if command == "compare" and ref:
                by = re.search(r"\bby\s+([\w\"'][^\s,;:!?]*)", text)
                return f"/compare {ref} by {by.group(1) if by else 'GROUP'}"
            if command == "explain":
                after = re.split(r"\b(?:explain|why)\b", text, maxsplit=1, flags=re.I)[-1].strip(" :?\"'")
                return f"/explain {after or 'TEXT'}"
            if command == "data":
                return "/data"
        return None


def _quote(value: str) -> str:
    """A magic's argument as a person writes it: as is, or in double quotes ("label == 'ham'") when it has
    spaces or quotes; shlex's '"'"' dance only for a value that has both kinds of quote."""
    if re.fullmatch(r"[\w@%+=:,./*?-]+", value):
        return value
    if '"' not in value and not re.search(r"[$`\\!]", value):
        return f'"{value}"'
    return shlex.quote(value)


def _number(arg: str, usage: str, typ: type) -> Any:
    try:
        parts = shlex.split(arg)
        if len(parts) != 1:
            raise ValueError
        v = typ(parts[0])
    except ValueError:
        kind = "a whole number" if typ is int else "a number"
        raise ConfigError(f"{usage} needs {kind}, got {arg!r}.") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{usage} needs a finite number, got {arg!r}.")
    return v


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {v!r}.")
    return v


_COPY_JS = ("navigator.clipboard.writeText(this.parentElement.querySelector('code').textContent)"
            ".then(() => { this.textContent = 'Copied'; })")


def code_html(code: str) -> str:
    """The line that computes an answer again, with a Copy button (the browser's clipboard API)."""
    return (f"<div class='lm-chat-code' style='margin-top:4px;display:flex;gap:6px;align-items:center;"
            f"white-space:normal'><code style='background:#fff;border:1px solid #ddd;border-radius:3px;"
            f"padding:1px 5px;white-space:pre-wrap'>{esc(code)}</code><button class='lm-copy' type='button' "
            f"title='Copy to the clipboard, then paste it into a cell' style='font-size:11px;cursor:pointer' "
            f"onclick=\"{_COPY_JS}\">Copy</button></div>")


def _bubble_html(msg: Dict[str, Any], body: Optional[str] = None) -> str:
    role = msg["role"]
    text = body if body is not None else esc(msg["text"])
    if msg.get("code"):
        text = (text if body is not None else esc(msg["text"].rsplit("\n", 1)[0])) + code_html(msg["code"])
    text += "<span class='lm-cursor'>▍</span>" if msg.get("streaming") else ""
    alts = msg.get("alternatives")
    extra = ""
    if alts and not msg.get("streaming"):
        extra = (f"<div class='lm-chat-alternatives' style='color:#777;font-size:11px;margin-top:3px'>"
                 f"other first words: {esc(pairs_text(alts))}</div>")
    note = msg.get("copy_note")
    if note and not msg.get("streaming"):
        style = "color:#c60" if msg.get("copies") else "color:#888"
        extra += (f"<div class='lm-chat-copies' style='{style};font-size:11px;margin-top:3px'>"
                  f"{'⚠ ' if msg.get('copies') else ''}{esc(note)}</div>")
    who = {"user": "you", "assistant": esc(msg.get("model") or "model") + " · continuing your text",
           "system": "lm", "error": "error"}[role]
    return (f"<div class='lm-bubble lm-bubble-{role}' style='{_STYLE[role]}border-radius:8px;padding:4px 10px;"
            f"white-space:pre-wrap;line-height:1.35'><span style='color:#888;font-size:10px'>{who}"
            f"</span><br>{text}{extra}</div>")


class _Stopped(Exception):
    """Raised inside a background command's progress callback when the user pressed Stop."""
