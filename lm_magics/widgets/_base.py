"""What the panel, the chat and the training monitor share: model lookup by name, registry
subscription, callbacks that report their errors in the widget, and the display protocol."""

from __future__ import annotations

import functools
import html
import traceback
from typing import Any, Callable, Iterator, List, Optional

import ipywidgets as W

from ..api import LanguageModel
from ..config import MAX_SEED, GenerateConfig
from ..engine.tokenizer import EOS
from ..errors import ConfigError, LMError, clip_message
from ..formatting import is_punct, pairs_text, prob_text, token_text, word_text  # noqa: F401 - re-exported
from ..registry import ModelRegistry, get_registry

GIVEN = "(given model)"   # dropdown label of a model passed in directly, not registered under a name


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def default_registry(registry: Optional[ModelRegistry]) -> ModelRegistry:
    """The given registry, else the current IPython shell's, else the process-wide one."""
    return registry if registry is not None else get_registry(_shell())


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def error_text(exc: BaseException) -> str:
    """One line for the user: LMError messages as they are, anything else with its type."""
    if isinstance(exc, LMError):
        return str(exc)
    return clip_message(f"{type(exc).__name__}: {exc}")


class ModelWidget:
    """Base of CompletionPanel and ChatAssistant: holds (name, model), follows the registry.

    Subclasses build ``self.widget`` and implement ``_show_error(text)`` and ``_model_changed()``.
    ``self.log`` (an Output widget) receives the traceback of unexpected errors so none vanishes.
    """

    def __init__(self, model_or_name: Any = None, registry: Optional[ModelRegistry] = None):
        if not (model_or_name is None or isinstance(model_or_name, (LanguageModel, str))):
            raise ConfigError(f"model_or_name must be a LanguageModel or a model name, got "
                              f"{type(model_or_name).__name__}.")
        if registry is not None and not isinstance(registry, ModelRegistry):
            raise ConfigError(f"registry must be a ModelRegistry (or None for the session's), got "
                              f"{type(registry).__name__}.")
        self.registry = default_registry(registry)
        self.name: Optional[str] = None
        self.model: Optional[LanguageModel] = None
        self._given: Optional[LanguageModel] = None
        self.last_error: Optional[str] = None
        self.log = W.Output()
        self.log.add_class("lm-log")
        if isinstance(model_or_name, LanguageModel):
            self._given, self.name, self.model = model_or_name, GIVEN, model_or_name
        elif model_or_name is None and len(self.registry) == 0:
            pass   # an empty session: the widget waits for a model to be registered
        else:
            self.name = self.registry.resolve(model_or_name)    # ModelNotFoundError says what exists
            self.model = self.registry.get(self.name)
        self._unsubscribe: Optional[Callable[[], None]] = self.registry.observe(self._on_registry)

    # ------------------------------------------------------------------ models

    def model_names(self) -> List[str]:
        names = self.registry.names()
        return names + ([GIVEN] if self._given is not None else [])

    def use(self, name: str) -> None:
        """Switch to the model registered as name (ModelNotFoundError if there is none)."""
        if name == GIVEN and self._given is not None:
            model = self._given
        else:
            model = self.registry.get(name)
        self.name, self.model = name, model
        self._model_changed()

    def require_model(self) -> LanguageModel:
        if self.model is None:
            self.registry.get(None)          # raises the "no model yet, train one with ..." error
        return self.model  # type: ignore[return-value]

    def _on_registry(self, name: str, model: Optional[LanguageModel]) -> None:
        try:
            if model is not None and (self.name == name or self.model is None):
                # The model this widget follows was re-registered (e.g. training finished): switch.
                self.name, self.model = name, model
            self._model_changed()
        except Exception as exc:  # noqa: BLE001 - an observer must never break registry.set
            self._report(exc)

    def _model_changed(self) -> None:  # pragma: no cover - overridden
        pass

    # ------------------------------------------------------------------ errors

    def _show_error(self, text: str) -> None:  # pragma: no cover - overridden
        pass

    def _report(self, exc: BaseException) -> None:
        self.last_error = error_text(exc)
        if not isinstance(exc, LMError):
            self.log.append_stderr("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        self._show_error(self.last_error)

    def _safe(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a widget callback: errors are shown in the widget (JupyterLab would hide them)."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                self._report(exc)
                return None
        return wrapper

    # ------------------------------------------------------------------ display

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)      # deterministic, unlike the widget's repr
        return data

    def close(self) -> None:
        """Stop following the registry and close every widget (the views disappear)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        _close_tree(self.widget)
        self.log.close()


def _close_tree(w: W.Widget) -> None:
    for child in getattr(w, "children", ()):
        _close_tree(child)
    w.close()


def iter_words(model: LanguageModel, prefix: str, cfg: GenerateConfig) -> Iterator[str]:
    """Tokens continuing prefix until cfg.n_words words are written, across line ends.

    ``model.iter_generate`` stops at the end of a line; here a line end is yielded as ``EOS`` (not
    counted as a word) and generation goes on with the next line, so "20 words" means 20 words. Each
    line is one engine call, seeded from ``seed`` and the line's number when a seed is given (repeatable;
    seed 1 is not seed 0 shifted by a line). With ``cfg.stop_at_blank_line`` an empty line after a written
    one ends the text (the end of a speech or a paragraph).
    """
    left, context, line, empty, wrote = cfg.n_words, prefix, 0, 0, False
    while left > 0:
        seed = None if cfg.seed is None else (cfg.seed + line * _LINE_SEED_STEP) % (MAX_SEED + 1)
        # Before the first written line the engine skips blank lines; after it, an empty line is the
        # blank line that ends the text, so the engine must let it come.
        line_cfg = cfg.replace(n_words=left, seed=seed, stop_at_blank_line=cfg.stop_at_blank_line and not wrote)
        words = list(model.iter_generate(context, line_cfg))
        if words:
            if wrote:
                yield EOS                   # one line break between lines (an empty line adds none)
            yield from words
            wrote, empty = True, 0
        else:
            if wrote and cfg.stop_at_blank_line:
                return                      # a blank line after a written one: the paragraph ended
            # A model that only ever ends lines would loop forever: give up after 3 empty lines.
            empty += 1
            if empty >= 3:
                return
        left -= len(words)
        context = f"{context} {' '.join(words)}\n"     # spacing does not matter to the tokenizer
        line += 1


# Line i of a seeded generation uses seed + i * this (mod 2**63): an odd constant far from small numbers,
# so the lines of seed s and of seed s + 1 do not coincide.
_LINE_SEED_STEP = 0x9E3779B97F4A7C15


def copy_check(model: LanguageModel, prefix: str, tokens: List[str]) -> Optional[List[dict]]:
    """The runs of a generated continuation (tokens, EOS for a line end) that reproduce a training row
    (``model.copied``): ``[]`` when none does, None when the model cannot tell (it keeps no copy index)."""
    if not any(t != EOS for t in tokens):
        return []
    return model.copied(prefix, model.tokenizer.join(list(tokens)))


def copies_text(copies: Optional[List[dict]], width: int = 60) -> str:
    """One line about copies for a generation's reader: which training rows it reproduces, that the check
    is not available, or "" when it found none."""
    if copies is None:
        return "copy check not available: this model keeps no copy index of its training rows"
    notes = []
    for c in copies:
        text = " ".join(c["text"].split())
        text = text if len(text) <= width else text[: width - 1] + "…"
        notes.append(f"reproduces {c['length']} tokens of training row {c['row']}: “{text}”")
    return "; ".join(notes)


# Public names for the other widgets.
current_shell = _shell
close_tree = _close_tree
