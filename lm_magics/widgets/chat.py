"""ChatAssistant: a conversation with a language model, plus slash commands to explore a text column.

The "assistant" answers a message by continuing it with the model, streamed word by word into its
bubble. Commands (``/help``) switch models, change settings, show next words, list the notebook's text
data (``/data``), score a column (``/unusual``), explain a text (``/explain``), compare groups of rows
(``/compare``), train in the background (``/learn``) and export the conversation. Every answer that
computed something shows the magic that computes it again, with a Copy button, so the work can go
into a cell. Columns are named as in Python: ``reviews.text`` or ``reviews["review text"]``.
"""

from __future__ import annotations

import threading
import time
import traceback
import weakref
from collections.abc import MutableMapping
from typing import Any, Callable, Dict, List, Optional, Tuple

import ipywidgets as W

from ..assistant import answers, grammar
from ..assistant.grammar import HELP, HELP_ROWS, PLAIN, number, positive_int
from ..config import GenerateConfig
from ..errors import ConfigError, DataError, LMError
from ..formatting import pairs_text
from ..registry import ModelRegistry, fresh_name
from ..rules import MAX_CHAT_ECHO, MAX_ROWS, check_name, clip_rows, clip_text, more_note


def _echo(text: str, limit: int = MAX_CHAT_ECHO) -> str:
    """A message as the conversation shows it: at most ``limit`` characters (the model reads it all)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} …({len(text) - limit:,} more characters not shown)"
from ._base import GIVEN, ModelWidget, copies_text, copy_check, esc, iter_words
from ._base import current_shell as _shell

__all__ = ["ChatAssistant"]

# Each role's whole margin in one declaration (a later "margin:3px 0" would reset the side offsets):
# your messages sit on the right, the model's on the left, notes across the whole width.
_STYLE = {
    "user": "background:#dbeafe;margin:3px 0 3px 20%;",
    "assistant": "background:#f3f4f6;margin:3px 20% 3px 0;",
    "system": "background:#fefce8;color:#444;font-size:12px;margin:3px 0;",
    "error": "background:#fee2e2;color:#900;font-size:12px;margin:3px 0;",
}

# /help in the bubble: each command with its description, the example under them, all wrapping,
# so it fits any width (a table squeezed the descriptions to a few words per line).
_HELP_HTML = ("<div class='lm-chat-help'>" + "".join(
    f"<div class='lm-chat-help-row' style='margin:0 0 4px 0'><code style='font-weight:600'>{esc(command)}</code>"
    f" <span style='color:#888'>·</span> <span>{esc(what)}</span><div style='margin-left:1.2em;color:#555'>"
    f"e.g. <code>{esc(example)}</code></div></div>"
    for command, what, example in HELP_ROWS) + f"<div style='color:#666'>{esc(PLAIN)}</div></div>")

# Where the history scrolls when a message arrives. A message whose bubble holds an anchor (an invisible
# image whose onload runs once the bubble is on the page) scrolls the history: "end" (your messages: to
# the newest message) or "top" (a long answer: to its first line, so /help is read from the top). Only
# the last anchor of the history acts, whatever order the images load in; messages without one leave
# the reader's place alone (the scroll box's column-reverse keeps the newest in view when it was).
_ANCHOR_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_ANCHOR_JS = (
    "(function(img){var n=0;function go(){var s=img.closest('.lm-chat-scroll');"
    "if(!s){if(n++<40)requestAnimationFrame(go);return;}"
    "var all=s.querySelectorAll('.lm-anchor');if(all[all.length-1]!==img)return;"
    "var box=s.getBoundingClientRect(),b=(img.closest('.lm-chat-msg')||img).getBoundingClientRect(),"
    "h=s.querySelector('.lm-chat-history').getBoundingClientRect();"
    "s.scrollTop+=img.classList.contains('lm-anchor-top')?b.top-box.top:h.bottom-box.bottom;}"
    "requestAnimationFrame(go);})(this)")


def anchor_html(where: str) -> str:
    """The invisible scroll anchor of a message: ``where`` is "end" or "top" (see _ANCHOR_JS)."""
    return (f"<img class='lm-anchor lm-anchor-{where}' alt='' src='{_ANCHOR_GIF}' "
            f"style='display:none' onload=\"{_ANCHOR_JS}\">")


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

    ``/unusual`` and ``/compare ... with MODEL`` estimate their time from the rows and the model's measured
    speed (``assistant.answers.estimate_seconds``); from ``background_seconds`` on (default 3 s), or from
    ``background_rows`` rows on, they run in a thread with a message that says how long, a progress bar,
    the time elapsed and left, and a Stop button; the kernel stays free meanwhile.

    >>> chat = ChatAssistant(model, seed=0)        # doctest: +SKIP
    >>> chat.send("Beautiful is")                   # doctest: +SKIP
    'better than ugly . ...'
    """

    background_seconds = 3.0
    background_rows = 50_000

    def __init__(self, model_or_name: Any = None, registry: Optional[ModelRegistry] = None,
                 user_ns: Optional[dict] = None, max_messages: int = 200, *, n_words: int = 20,
                 temperature: float = 0.8, k: int = 3, seed: Optional[int] = None,
                 show_alternatives: bool = True):
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 2:
            raise ConfigError(f"max_messages must be a whole number of at least 2, got {max_messages!r}.")
        self.settings = GenerateConfig(n_words=n_words, temperature=temperature, seed=seed)
        self.k = positive_int(k, "k", MAX_ROWS)
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
                self._add("user", _echo(text))
                self._command(text)
                return None
            self._add("user", _echo(text))
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
             scroll: Optional[str] = None, **extra: Any) -> int:
        """Append a message and its bubble (body: HTML shown instead of the text; widget: a live widget
        shown below it, e.g. a training monitor); drop the oldest beyond max_messages. Returns its index.
        Your messages scroll the history to the end, answers with a body to their top (``scroll``: "end",
        "top" or "" for neither; by default from the role and body)."""
        if scroll is None:
            scroll = "end" if role == "user" else "top" if body is not None else ""
        with self._lock:
            msg = {"role": role, "text": text, **extra}
            self.messages.append(msg)
            bubble: W.Widget = W.HTML(_bubble_html(msg, body, scroll))
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
        name, arg = grammar.split_command(line)
        self._commands[name](arg)

    def _say(self, text: str, **extra: Any) -> None:
        self._add("system", text, **extra)

    def _computed(self, text: str, body: Optional[str], code: Optional[str], **extra: Any) -> None:
        """An answer that computed something: its text (and HTML body) and the line that computes it again
        in a cell (shown with a Copy button; also at the end of the message's text)."""
        if code is not None and len(code) > MAX_CHAT_ECHO:     # a line quoting a huge text: not echoed
            text += f"\n(the line that computes it again is not shown: it would quote {len(code):,} characters)"
            code = None
        if len(text) > 20 * MAX_CHAT_ECHO:
            text = _echo(text, 20 * MAX_CHAT_ECHO)
        if code is None:
            self._add("system", text, body=body, **extra)
        else:
            self._add("system", f"{text}\n{code}", body=body, code=code, **extra)

    def _show(self, answer: "answers.Answer") -> None:
        """Post an Answer; remember the columns it wrote (running the command again may replace them)."""
        if answer.wrote is not None:
            frame, columns = answer.wrote
            self._written += [(weakref.ref(frame), c) for c in columns]
        self._computed(answer.text, answer.html, answer.code)

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

    def _own_columns(self, frame: Any) -> set:
        """The columns of frame that this chat wrote (its /unusual scores)."""
        return {c for ref, c in self._written if ref() is frame}

    def _cmd_help(self, arg: str) -> None:
        self._add("system", HELP, body=_HELP_HTML)

    def _cmd_models(self, arg: str) -> None:
        names = self.model_names()
        if not names:
            self._say("No models yet: train one with %%lm_train.")
        else:
            shown, more = clip_rows(names)
            self._say("Models: " + ", ".join(f"{clip_text(n, 60)[1:-1]} (in use)" if n == self.name
                                             else clip_text(n, 60)[1:-1] for n in shown)
                      + (f" {more_note(more)}" if more else ""))

    def _cmd_use(self, arg: str) -> None:
        if not arg:
            raise ConfigError("Say which model: /use NAME (see /models).")
        self.use(arg)
        self._say(f"Now answering with '{arg}'.")

    def _cmd_temp(self, arg: str) -> None:
        self.settings = self.settings.replace(temperature=number(arg, "/temp T", float))
        self._say(f"temperature = {self.settings.temperature:g}")

    def _cmd_k(self, arg: str) -> None:
        self.k = positive_int(number(arg, "/k K", int), "k", MAX_ROWS)
        self._say(f"showing {self.k} alternatives")

    def _cmd_len(self, arg: str) -> None:
        self.settings = self.settings.replace(n_words=number(arg, "/len N", int))
        self._say(f"answers of {self.settings.n_words} words")

    def _cmd_next(self, arg: str) -> None:
        name, model = self._model_for(None)
        self._show(answers.next_words(model, name, arg, self.k))

    def _cmd_score(self, arg: str) -> None:
        name, model = self._model_for(None)
        self._show(answers.score_text(model, name, arg, self.k))

    def _cmd_clear(self, arg: str) -> None:
        self.clear()
        self._say("Conversation cleared.")

    def _cmd_export(self, arg: str) -> None:
        var = check_name(arg.strip(), "variable for /export", variable=True, example="/export convo")
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
        self._show(answers.data(self._ns()))

    def _cmd_unusual(self, arg: str) -> None:
        self._do(answers.unusual(self._ns(), arg, self._model_for, self._own_columns))

    def _cmd_explain(self, arg: str) -> None:
        if not arg.strip():
            raise ConfigError("Give the text to explain: /explain the cat sat on the river.")
        name, model = self._model_for(None)
        self._show(answers.explain(model, name, arg, self.k))

    def _cmd_compare(self, arg: str) -> None:
        self._do(answers.compare(self._ns(), arg, self._model_for))

    def _do(self, work: "answers.Work") -> None:
        """Run a long command: in the background when its estimate is background_seconds or more (or it
        has background_rows rows or more), else inline."""
        if work.seconds >= self.background_seconds or (work.rows and work.rows >= self.background_rows):
            self._in_background(work)
        else:
            t0 = time.monotonic()
            answer = work.run(None)
            answers.record_time(work.model, work.seconds, time.monotonic() - t0)
            self._show(answer)

    def _in_background(self, work: "answers.Work") -> None:
        """Run a long command in a thread: a message with its estimate, a progress bar, the time elapsed and
        left, and a Stop button in the conversation, the kernel free meanwhile. ``work.run(on_chunk)``
        reports (done, total); Stop (or /stop) ends it at the next chunk, before anything is written."""
        title = work.title
        stop, finished = threading.Event(), threading.Event()
        bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="200px"))
        bar.add_class("lm-chat-progress")
        count = W.Label(answers.work_line(0.0, work.seconds, None))
        count.add_class("lm-chat-progress-text")
        button = W.Button(description="Stop", icon="stop", button_style="danger",
                          tooltip="Stop at the next chunk; nothing is written")
        button.add_class("lm-chat-stop")
        button.on_click(lambda _b: stop.set())
        about = f", about {answers.duration(work.seconds)}" if work.seconds else ""
        self._add("system", f"{title}{about}… Stop (or /stop) keeps the data as it was.",
                  widget=W.HBox([bar, button, count]))
        job = {"stop": stop, "title": title}
        self.jobs.append(job)
        t0 = time.monotonic()
        done_part: List[Optional[float]] = [None]

        def show() -> None:
            count.value = answers.work_line(time.monotonic() - t0, work.seconds, done_part[0])

        def on_chunk(n: int, total: int) -> None:
            done_part[0] = n / max(total, 1)
            bar.value = done_part[0]
            show()
            if stop.is_set():
                raise _Stopped()

        def tick() -> None:          # the time moves on between chunks (one chunk may take many seconds)
            while not finished.wait(1.0):
                show()

        def run() -> None:
            answer, ended = None, "stopped"
            try:
                answer = work.run(on_chunk)
                ended = "done"
            except _Stopped:
                pass
            except LMError as exc:
                ended = "failed"
                self._add("error", str(exc))
            except Exception:   # a bug: keep its traceback visible in the conversation
                ended = "failed"
                self._add("error", traceback.format_exc())
            finally:
                finished.set()
                real = time.monotonic() - t0
                took = answers.duration(real)
                if ended == "done":
                    answers.record_time(work.model, work.seconds, real)
                count.value = f"{ended} after {took}" if ended != "done" else f"done in {took}"
                button.disabled, button.button_style = True, ""
                self.jobs.remove(job)
            if ended == "stopped":
                self._add("system", f"{title}: stopped after {took}; nothing was written.")
            elif answer is not None:
                self._show(answer)

        threading.Thread(target=tick, daemon=True, name=f"lm-chat-tick-{title[:20]}").start()
        threading.Thread(target=run, daemon=True, name=f"lm-chat-{title[:20]}").start()

    # ------------------------------------------------------------------ training

    def _cmd_learn(self, arg: str) -> None:
        request = grammar.learn_request(self._ns(), arg)
        if not request.name_given:     # a name derived from the column or file never replaces a model
            request.name = fresh_name(self.registry, request.name)
        from .monitor import start_background_training

        name = request.name
        monitor = start_background_training(registry=self.registry, name=name, data=request.data, options={})
        self.trainings.append(monitor)
        code = answers.learn_line(name, request.source)
        what = request.what
        head = (f"Training '{name}' on {what} in the background; Stop (or /stop) keeps the best model so far.",
                f"Training <b>{esc(name)}</b> on {esc(what)} in the background; Stop (or /stop) keeps the best "
                f"model so far.")
        with self._lock:
            self._add("system", f"{head[0]}\n{code}", code=code, widget=monitor.widget, body=head[1])
            msg, bubble = self.messages[-1], self._bubbles[-1].children[0]
        threading.Thread(target=self._watch, args=(monitor, msg, bubble, head), daemon=True,
                         name=f"lm-chat-{name}").start()

    def _watch(self, monitor: Any, msg: Optional[Dict[str, Any]] = None, bubble: Optional[W.HTML] = None,
               head: Tuple[str, str] = ("", "")) -> None:
        """Follow a /learn run: its message says the plan as soon as it is known ("about 50 s, 8 epochs;
        /stop to end early": the engine's plan, else the first steps' pace) and the time elapsed and left;
        when it ends, a message says how."""
        t0 = time.monotonic()
        plan = ""
        while not monitor.join(1.0 if plan else 0.25):
            if msg is None or bubble is None:
                continue
            try:
                if not plan:
                    plan = answers.plan_line(getattr(monitor, "plan", None), monitor.step)
                    if plan:
                        msg["plan"] = plan
                        msg["text"] = f"{head[0]}\nPlan: {plan}; /stop to end early.\n{msg['code']}"
                self._redraw_learn(msg, bubble, head[1], plan, answers.progress_line(time.monotonic() - t0,
                                                                                      monitor.step))
            except Exception as exc:  # noqa: BLE001 - shown in the log, never lost
                self.log.append_stderr(f"/learn progress: {exc}\n")
        try:
            if msg is not None and bubble is not None:
                self._redraw_learn(msg, bubble, head[1], plan,
                                   f"ended after {answers.duration(time.monotonic() - t0)}")
            if monitor.model is None:
                stopped = (monitor.error or "").startswith("stopped")
                self._add("system" if stopped else "error",
                          f"Training '{monitor.name}' {monitor.error if stopped else 'failed: ' + str(monitor.error)}")
                return
            got = getattr(monitor, "registered_as", None) or monitor.name
            ppl = monitor.model.meta.get("val_ppl")
            how = "stopped" if monitor.model.interrupted else "finished"
            placement = getattr(monitor, "placement", None)
            kept = f"; {placement.note}" if placement is not None and placement.note else ""
            use = "" if self.name == got else f" /use {got} to answer with it."
            self._say(f"Training {how}: '{got}' is registered (validation perplexity "
                      f"{'n/a' if ppl is None else f'{ppl:,.1f}'}){kept}.{use}")
        except Exception as exc:  # noqa: BLE001 - a thread's error is shown, never lost
            self._report(exc)
        finally:
            self._set_status()

    @staticmethod
    def _redraw_learn(msg: Dict[str, Any], bubble: W.HTML, body: str, plan: str, times: str) -> None:
        """The /learn message with its plan and times (no scroll anchor: a redraw never moves the view)."""
        extra = (f"<div class='lm-chat-plan'><b>Plan:</b> {esc(plan)}; <code>/stop</code> to end early.</div>"
                 if plan else "")
        bubble.value = _bubble_html(msg, f"{body}{extra}<div class='lm-chat-progress-text' style='color:#555'>"
                                         f"{esc(times)}</div>")

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
        """The command a plain message seems to ask for, or None (see grammar.hint)."""
        try:
            ns = self._ns()
        except ConfigError:
            ns = {}
        return grammar.hint(text, ns)


COPY_RESET_MS = 1500     # a Copy button reads "Copied" this long, then "Copy" again (it can be pressed again)
_COPY_JS = ("navigator.clipboard.writeText(this.parentElement.querySelector('code').textContent)"
            ".then(() => { this.textContent = 'Copied'; }, () => { this.textContent = 'Copy failed'; })"
            f".finally(() => {{ setTimeout(() => {{ this.textContent = 'Copy'; }}, {COPY_RESET_MS}); }})")


def code_html(code: str) -> str:
    """The line that computes an answer again, with a Copy button (the browser's clipboard API)."""
    return (f"<div class='lm-chat-code' style='margin-top:4px;display:flex;gap:6px;align-items:center;"
            f"white-space:normal'><code style='background:#fff;border:1px solid #ddd;border-radius:3px;"
            f"padding:1px 5px;white-space:pre-wrap'>{esc(code)}</code><button class='lm-copy' type='button' "
            f"title='Copy to the clipboard, then paste it into a cell' style='font-size:11px;cursor:pointer' "
            f"onclick=\"{_COPY_JS}\">Copy</button></div>")


def _bubble_html(msg: Dict[str, Any], body: Optional[str] = None, scroll: Optional[str] = None) -> str:
    """A message's bubble; ``scroll`` ("end" or "top") adds the anchor that scrolls the history to it."""
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
    anchor = anchor_html(scroll) if scroll else ""
    return (f"<div class='lm-bubble lm-bubble-{role}' style='{_STYLE[role]}border-radius:8px;padding:4px 10px;"
            f"white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.35'><span style='color:#888;"
            f"font-size:10px'>{who}</span>{anchor}<br>{text}{extra}</div>")


class _Stopped(Exception):
    """Raised inside a background command's progress callback when the user pressed Stop."""
