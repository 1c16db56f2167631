"""ChatAssistant: a conversation with a language model, plus slash commands to inspect it.

The "assistant" answers a message by continuing it with the model, streamed word by word into its
bubble. Commands (``/help``) switch models, change settings, show next words, score text and export
the conversation.
"""

from __future__ import annotations

import math
import shlex
from typing import Any, Callable, Dict, List, Optional

import ipywidgets as W

from ..config import GenerateConfig
from ..errors import ConfigError
from ..registry import ModelRegistry
from ._base import ModelWidget, _shell, esc, iter_words, pairs_text

__all__ = ["ChatAssistant"]

# Each role's whole margin in one declaration (a later "margin:3px 0" would reset the side offsets):
# your messages sit on the right, the model's on the left, notes across the whole width.
_STYLE = {
    "user": "background:#dbeafe;margin:3px 0 3px 20%;",
    "assistant": "background:#f3f4f6;margin:3px 20% 3px 0;",
    "system": "background:#fefce8;color:#444;font-size:12px;margin:3px 0;",
    "error": "background:#fee2e2;color:#900;font-size:12px;margin:3px 0;",
}

HELP_ROWS = [
    ("/help", "this list"),
    ("/models", "the models of this session"),
    ("/use NAME", "answer with another model"),
    ("/temp T", "sampling temperature (0 = always the most likely word)"),
    ("/k K", "how many next-word alternatives to show"),
    ("/len N", "words per answer"),
    ("/next TEXT", "the most likely next words after TEXT"),
    ("/score TEXT", "perplexity of TEXT and its most surprising words"),
    ("/clear", "forget the conversation"),
    ("/export VAR", "the conversation as a DataFrame (or list of dicts) in variable VAR"),
]
HELP = "\n".join(f"{command:<19}{what}" for command, what in HELP_ROWS)
# In the bubble the columns are a table: spaces cannot align a proportional font.
_HELP_HTML = ("<table class='lm-chat-help' style='border-collapse:collapse'>" + "".join(
    f"<tr><td style='padding:0 1.5em 0 0;white-space:nowrap'><code>{esc(command)}</code></td>"
    f"<td style='padding:0'>{esc(what)}</td></tr>" for command, what in HELP_ROWS) + "</table>")


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

    >>> chat = ChatAssistant(model, seed=0)        # doctest: +SKIP
    >>> chat.send("Beautiful is")                   # doctest: +SKIP
    'better than ugly . ...'
    """

    def __init__(self, model_or_name: Any = None, registry: Optional[ModelRegistry] = None,
                 user_ns: Optional[dict] = None, max_messages: int = 200, *, n_words: int = 20,
                 temperature: float = 0.8, k: int = 3, seed: Optional[int] = None,
                 show_alternatives: bool = True):
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 2:
            raise ConfigError(f"max_messages must be a whole number of at least 2, got {max_messages!r}.")
        self.settings = GenerateConfig(n_words=n_words, temperature=temperature, seed=seed)
        self.k = _positive_int(k, "k")
        super().__init__(model_or_name, registry)
        self.user_ns = user_ns
        self.max_messages = max_messages
        self.show_alternatives = show_alternatives
        self.messages: List[Dict[str, Any]] = []
        self._bubbles: List[W.HTML] = []

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
        }
        self._set_status()

    # ------------------------------------------------------------------ public

    def send(self, text: str) -> Optional[str]:
        """Handle one message as if typed: a /command, or a message the model answers.
        Returns the answer text (None for commands). Errors become messages in the chat."""
        text = text.strip()
        if not text:
            return None
        try:
            if text.startswith("/"):
                self._add("user", text)
                self._command(text)
                return None
            self._add("user", text)
            return self._answer(text)
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

    def _add(self, role: str, text: str, *, body: Optional[str] = None, **extra: Any) -> int:
        """Append a message and its bubble (body: HTML shown instead of the text); drop the oldest
        beyond max_messages. Returns its index."""
        msg = {"role": role, "text": text, **extra}
        self.messages.append(msg)
        bubble = W.HTML(_bubble_html(msg, body))
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

    def _say(self, text: str) -> None:
        self._add("system", text)

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
        pairs = model.next_words(arg, self.k)
        self._say(f"after {arg!r}: {pairs_text(pairs)}")

    def _cmd_score(self, arg: str) -> None:
        if not arg:
            raise ConfigError("Give the text to score: /score TEXT.")
        model = self.require_model()
        ppl = model.perplexity(arg)
        worst = sorted(model.surprisal(arg), key=lambda wb: -wb[1])[: self.k]
        self._say(f"perplexity {ppl:,.1f}; most surprising: "
                  + (", ".join(f"{w} ({b:.1f} bits)" for w, b in worst) or "(none)"))

    def _cmd_clear(self, arg: str) -> None:
        self.clear()
        self._say("Conversation cleared.")

    def _cmd_export(self, arg: str) -> None:
        var = arg.strip()
        if not var.isidentifier():
            raise ConfigError(f"/export needs a variable name, e.g. /export convo (got {var!r}).")
        ns = self.user_ns
        if ns is None:
            shell = _shell()
            ns = shell.user_ns if shell is not None else None
        if ns is None:
            raise ConfigError("No namespace to export into: pass user_ns= to ChatAssistant.")
        records = self.to_records()[:-1]          # not the /export command itself
        try:
            import pandas as pd
            value: Any = pd.DataFrame(records, columns=["role", "text", "model", "alternatives"])
        except ImportError:
            value = records
        ns[var] = value
        self._say(f"Exported {len(records)} messages to {var}.")


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


def _bubble_html(msg: Dict[str, Any], body: Optional[str] = None) -> str:
    role = msg["role"]
    text = body if body is not None else esc(msg["text"])
    text += "<span class='lm-cursor'>▍</span>" if msg.get("streaming") else ""
    alts = msg.get("alternatives")
    extra = ""
    if alts and not msg.get("streaming"):
        extra = (f"<div class='lm-chat-alternatives' style='color:#777;font-size:11px;margin-top:3px'>"
                 f"other first words: {esc(pairs_text(alts))}</div>")
    who = {"user": "you", "assistant": esc(msg.get("model") or "model"), "system": "lm", "error": "error"}[role]
    return (f"<div class='lm-bubble lm-bubble-{role}' style='{_STYLE[role]}border-radius:8px;padding:4px 10px;"
            f"white-space:pre-wrap;line-height:1.35'><span style='color:#888;font-size:10px'>{who}"
            f"</span><br>{text}{extra}</div>")
