"""The models of a session, by name: what magics, panels and chats share.

One registry per IPython shell (kept on the shell object, so it survives ``%reload_ext lm_magics``);
outside IPython, ``get_registry()`` returns a process-wide one. Replacing a model is a single reference
swap under a lock, so a reader sees the old model or the new one, never a half-trained mix; observers
(panels, chats) are told so that they switch to the new model.

An interrupted or stopped run never replaces a model that has its name (``set(..., replace=False)``):
the earlier one keeps its name, and the new one is registered as ``NAME_interrupted`` (then
``NAME_interrupted2``, ...). ``derived_name`` gives the CLI the same rule for files.

``register_run`` is the one function every front-end (``%%lm_train``, the background monitor, the chat's
``/learn``) registers a training run's result with. It applies the rule and says what happened in a
``Placement``, whose ``note`` the summary, the monitor and the chat show:

- a finished run takes the name; if that replaced a model, the note says so ("replaced the earlier
  'shake' (validation perplexity 147.4)");
- an interrupted or stopped run never replaces a model: it goes under ``NAME_interrupted`` when the name
  is taken;
- a run stopped before its first validation is unmeasured: it goes under ``NAME_interrupted`` even when
  the name is free, and never becomes the default model (it stays the default only in a session that
  has no other model).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .api import LanguageModel
from .errors import ModelNotFoundError
from .rules import check_name, clip_text

__all__ = ["ModelRegistry", "Placement", "derived_name", "fresh_name", "get_registry", "register_run",
           "unvalidated"]

Observer = Callable[[str, Optional[LanguageModel]], None]   # (name, model or None when dropped)


class ModelRegistry:
    def __init__(self) -> None:
        self._models: Dict[str, LanguageModel] = {}
        self._lock = threading.RLock()
        self._observers: List[Observer] = []
        self.default: Optional[str] = None

    def names(self) -> List[str]:
        with self._lock:
            return list(self._models)

    def __contains__(self, name: str) -> bool:
        return name in self._models

    def __len__(self) -> int:
        return len(self._models)

    def get(self, name: Optional[str] = None) -> LanguageModel:
        """The model called name (or the default model); ModelNotFoundError says what exists."""
        with self._lock:
            key = name or self.default
            if key is None:
                raise ModelNotFoundError("No model in this session yet. Train one with `%%lm_train` or load "
                                         "one with `%lm_load PATH`.")
            if key not in self._models:
                # What is echoed stays short whatever was typed and however many models there are.
                names = list(self._models)
                have = ", ".join(clip_text(n, 40) for n in names[:10]) or "none"
                have += f", ... ({len(names):,} in all)" if len(names) > 10 else ""
                shown = clip_text(key, 60)
                train = f"`%%lm_train --name {key}`" if len(shown) == len(repr(key)) else "`%%lm_train --name NAME`"
                raise ModelNotFoundError(f"No model named {shown} (models: {have}). Train one with "
                                         f"{train}, or run `%lm_models`.")
            return self._models[key]

    def resolve(self, name: Optional[str] = None) -> str:
        """The name that get(name) would use."""
        self.get(name)
        return name or self.default  # type: ignore[return-value]

    def set(self, name: str, model: LanguageModel, make_default: bool = True, *, replace: bool = True) -> str:
        """Register model as name (and make it the default model); return the name it got.

        ``replace=False`` is for the result of an interrupted or stopped run: if name holds a model, that
        one keeps its name (and stays the default if it was); the new one goes under name_interrupted
        (name_interrupted2, ... if that is taken too) and does not become the default.
        """
        check_name(name)
        with self._lock:
            if not replace and name in self._models:
                name, make_default = derived_name(self._models.__contains__, "{0}_interrupted{n}", name), False
            self._models[name] = model
            if make_default or self.default is None:
                self.default = name
            observers = list(self._observers)
        for cb in observers:
            cb(name, model)
        return name

    def drop(self, name: str) -> LanguageModel:
        with self._lock:
            model = self.get(name)
            del self._models[name]
            if self.default == name:
                self.default = next(iter(self._models), None)
            observers = list(self._observers)
        for cb in observers:
            cb(name, None)
        return model

    def use(self, name: str) -> None:
        with self._lock:
            self.get(name)
            self.default = name

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call callback(name, model) on every change; returns a function that unsubscribes."""
        with self._lock:
            self._observers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._observers:
                    self._observers.remove(callback)
        return unsubscribe


def derived_name(taken: Callable[[str], bool], template: str, *parts: str) -> str:
    """The first of template.format(*parts, n=""), then n=2, 3, ... that is not taken:
    ``derived_name(names.__contains__, "{0}_interrupted{n}", "good")`` -> "good_interrupted"."""
    n = 1
    while True:
        candidate = template.format(*parts, n=n if n > 1 else "")
        if not taken(candidate):
            return candidate
        n += 1


def fresh_name(registry: "ModelRegistry", base: str) -> str:
    """A model name derived from ``base`` (a column or file name) that holds no model yet: ``base``, else
    ``base2``, ``base3``, ... A name the user did not give never replaces a model silently (``/learn
    reviews.text`` twice keeps both runs)."""
    base = re.sub(r"\W+", "_", base).strip("_") or "model"
    if base[0].isdigit():
        base = "m_" + base
    try:
        check_name(base)
    except Exception:   # a keyword or reserved word as a column name ("class", "In")
        base = base + "_model"
    return derived_name(registry.__contains__, "{0}{n}", base)


def unvalidated(model: LanguageModel) -> bool:
    """True for an interrupted or stopped run that ended before its first validation (its quality is not
    known): such a run is kept aside, never made the default, never given a free name outright."""
    report = model.report
    return bool(model.interrupted and report is not None and not report.history and model.kind != "ngram")


@dataclass
class Placement:
    """Where ``register_run`` put a model, and what the user should be told about it."""

    name: str                          # the name the model got
    requested: str                     # the name it was trained for
    replaced: bool = False             # it replaced the model that had the name
    kept_earlier: bool = False         # the earlier model of that name kept it
    earlier_ppl: Optional[float] = None
    default: bool = True               # it became the default model

    @property
    def note(self) -> str:
        """One phrase for summaries, monitors and chats ("" when there is nothing to say)."""
        was = "" if self.earlier_ppl is None else f" (validation perplexity {self.earlier_ppl:,.1f})"
        if self.replaced:
            return f"replaced the earlier '{self.requested}'{was}"
        if self.kept_earlier:
            return f"kept the earlier '{self.requested}'{was}; this run is '{self.name}'"
        if self.name != self.requested:
            return (f"stopped before its first validation: kept as '{self.name}' (not the default model); "
                    f"'{self.requested}' was not made")
        return ""


def register_run(registry: "ModelRegistry", name: str, model: LanguageModel) -> Placement:
    """Register the result of a training run under the rule for runs (see the module docstring) and
    return where it went. Every front-end that trains calls this, and only this."""
    check_name(name)
    with registry._lock:         # a snapshot of the name's model; observers are called outside the lock
        earlier = registry._models.get(name)
        placed = derived_name(registry.__contains__, "{0}_interrupted{n}", name) if unvalidated(model) else None
    earlier_ppl = earlier.meta.get("val_ppl") if earlier is not None else None
    earlier_ppl = float(earlier_ppl) if isinstance(earlier_ppl, (int, float)) else None
    if placed is not None:
        placed = registry.set(placed, model, make_default=False, replace=False)
        return Placement(placed, name, kept_earlier=earlier is not None, earlier_ppl=earlier_ppl,
                         default=registry.default == placed)
    placed = registry.set(name, model, replace=not model.interrupted)
    return Placement(placed, name, replaced=earlier is not None and placed == name,
                     kept_earlier=earlier is not None and placed != name, earlier_ppl=earlier_ppl,
                     default=registry.default == placed)


_process_registry = ModelRegistry()


def get_registry(shell: object = None) -> ModelRegistry:
    """The registry of an IPython shell (created on first use), or the process-wide one."""
    if shell is None:
        return _process_registry
    reg = getattr(shell, "_lm_magics_registry", None)
    if reg is None:
        reg = ModelRegistry()
        setattr(shell, "_lm_magics_registry", reg)
    return reg
