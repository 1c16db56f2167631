"""Background training: ``lm.train`` in a thread, watched by a live widget with a Stop button.

A widget callback cannot run while a cell is busy, so a Stop button only works if training runs
outside the cell: here, in a thread. The thread's callbacks record progress and update the widget at
most ``max_updates_per_s`` times a second; Stop sets an event that makes the next step raise
``StopTraining`` (the engine then keeps the best model so far). The finished model is registered
under its name, so panels and chats that follow the name switch to it. A stopped run follows the rule
for interrupted ones: if the name holds a model, that one keeps it (and its panels and chats), and the
stopped model is registered as ``NAME_interrupted``.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from typing import Any, List, Optional

import ipywidgets as W

from ..api import LanguageModel, train
from ..config import TrainConfig
from ..display import interrupted_text, sparkline_svg
from ..engine.training import EpochInfo, StepInfo, StopTraining
from ..errors import ConfigError, LMError
from ..registry import ModelRegistry, Placement, get_registry, register_run
from ._base import _close_tree, _shell, error_text, esc

__all__ = ["TrainingMonitor", "start_background_training"]

_CURVE_POINTS = 200    # the loss curve keeps at most this many (averaged) points


class TrainingMonitor:
    """A training run in a background thread and the widget that shows it.

    ``.widget`` (progress, epoch, loss, perplexity, tokens/s, loss curve, Stop); ``.stop()``;
    ``.join(timeout)``; ``.done``; ``.model`` (None until finished); ``.registered_as`` (the name it got:
    ``name``, or ``name_interrupted`` for a stopped run whose name held a model); ``.error`` (text, if it
    failed).
    """

    def __init__(self, name: str, data: Any, *, registry: ModelRegistry, options: Optional[dict] = None,
                 continue_from: Optional[LanguageModel] = None, max_updates_per_s: float = 5.0):
        self.name, self.registry = name, registry
        self.data, self.options, self.continue_from = data, dict(options or {}), continue_from
        self.min_interval = 1.0 / max_updates_per_s if max_updates_per_s > 0 else 0.0
        self.model: Optional[LanguageModel] = None
        self.registered_as: Optional[str] = None
        self.placement: Optional[Placement] = None     # where register_run put it, and its note
        self._before_first_step = False
        self.error: Optional[str] = None
        self.step: Optional[StepInfo] = None
        self.epochs: List[EpochInfo] = []
        self.losses: List[float] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._last_draw = 0.0
        self._thread: Optional[threading.Thread] = None

        self.title = W.HTML(f"<b>Training '{esc(name)}'</b> in the background")
        self.title.add_class("lm-monitor-title")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="260px"))
        self.progress.add_class("lm-monitor-progress")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    tooltip="Stop after the current step and keep the best model")
        self.stop_button.add_class("lm-monitor-stop")
        self.stats = W.HTML("starting…")
        self.stats.add_class("lm-monitor-stats")
        self.curve = W.HTML(layout=W.Layout(overflow="hidden"))   # a redrawn curve never covers Stop
        self.curve.add_class("lm-monitor-curve")
        self.status = W.HTML("<span class='lm-status'>running</span>")
        self.status.add_class("lm-monitor-status")
        self.log = W.Output()
        self.log.add_class("lm-log")
        top = W.HBox([self.progress, self.stop_button])
        self.widget = W.VBox([self.title, top, self.stats, self.curve, self.status, self.log])
        self.widget.add_class("lm-monitor")
        self.stop_button.on_click(lambda _b: self.stop())

    # ------------------------------------------------------------------ control

    def start(self) -> "TrainingMonitor":
        self._thread = threading.Thread(target=self._run, name=f"lm-train-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask training to stop at the next step; the best model so far is kept and registered (as
        name_interrupted if name holds a model: a stopped run never replaces one)."""
        if not self._done.is_set():
            self._stop.set()
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping…"
            self.status.value = "<span class='lm-status'>stopping after this step…</span>"

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the run to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._done.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    @property
    def interrupted(self) -> bool:
        return bool(self.model is not None and self.model.interrupted)

    def close(self) -> None:
        """Stop training (if running) and close the widget."""
        self.stop()
        _close_tree(self.widget)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            if self._stop.is_set():
                raise StopTraining("stopped before the run began")
            model = train(self.data, init=self.continue_from, on_step=self._on_step, on_epoch=self._on_epoch,
                          **self.options)
            if self._before_first_step:      # Stop came before the first step: nothing changes
                raise StopTraining("stopped before the first step")
            # The rule for runs (registry.register_run): observers (panels, chats) of the name switch to a
            # finished model; a stopped one never replaces the model that has the name, and one stopped
            # before its first validation is kept aside, not made the default.
            self.placement = register_run(self.registry, self.name, model)
            self.registered_as = self.placement.name
            self.model = model
        except StopTraining:
            self.error = "stopped before the first step: nothing was registered and nothing changed"
            self.stats.value = ""            # no "starting…" above "stopped"
        except Exception as exc:  # noqa: BLE001 - shown in the widget; the session keeps going
            self.error = error_text(exc)
            if not isinstance(exc, LMError):     # a bug: keep the whole traceback visible
                self.log.append_stderr("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        finally:
            self._done.set()
            try:
                self._draw(final=True)
            except Exception as exc:  # noqa: BLE001
                self.log.append_stderr(f"monitor: {exc}\n")

    def _on_step(self, info: StepInfo) -> None:
        if self._stop.is_set():
            self._before_first_step = self.step is None    # pressed before any step had been shown
            raise StopTraining("stopped from the monitor")
        self.step = info
        self.losses.append(info.loss)
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval:
            self._last_draw = now
            self._draw()

    def _on_epoch(self, info: EpochInfo) -> None:
        self.epochs.append(info)
        self._last_draw = time.monotonic()
        self._draw()

    # ------------------------------------------------------------------ the widget

    def _draw(self, final: bool = False) -> None:
        s = self.step
        if s is not None:
            # The bar is always the "step x/y" of the text: an early stop leaves it short (and green).
            self.progress.value = min(1.0, s.step / max(1, s.total_steps))
            parts = [f"epoch {s.epoch}", f"step {s.step:,}/{s.total_steps:,}", f"loss {s.loss:.3f}"]
            if self.epochs:
                last = self.epochs[-1]
                parts.append(f"last val perplexity {_ppl(last.val_ppl)} (epoch {last.epoch})")
            parts.append(f"{s.tokens_per_s:,.0f} tokens/s")
            self.stats.value = "<span style='font-family:monospace'>" + " · ".join(parts) + "</span>"
            self.curve.value = sparkline_svg(_thin(self.losses), label="training loss")
        if not final:
            return
        if s is None:
            self.stats.value = ""                 # never "starting…" above how the run ended
        self.stop_button.disabled = True
        self.stop_button.description = "Stop"
        self.stop_button.button_style = ""        # a finished run's disabled Stop is grey, not red
        m = self.model
        if m is not None:
            if not m.interrupted:
                self.progress.bar_style = "success"
            how = "stopped" if m.interrupted else _how_it_ended(m)
            note = self.placement.note if self.placement is not None else ""
            kept = f"; {esc(note)}" if note else ""
            self.status.value = (f"<span class='lm-status lm-done'>{esc(how)}: best model registered as "
                                 f"<b>{esc(self.registered_as)}</b> ({esc(_best_text(m))}){kept}</span>")
            if m.report is not None:
                self.curve.value = sparkline_svg(_thin(m.report.losses), label="training loss")
        elif self._stop.is_set() and self.error and self.error.startswith("stopped"):
            self.status.value = f"<span class='lm-status lm-done'>{esc(self.error)}</span>"
        else:
            self.status.value = f"<span class='lm-error' style='color:#c00'>Error: {esc(self.error)}</span>"

    def summary(self) -> str:
        if not self.done:
            s = self.step
            return f"training '{self.name}': " + (f"epoch {s.epoch}, step {s.step}/{s.total_steps}" if s
                                                   else "starting")
        if self.model is None:
            return f"training '{self.name}' failed: {self.error}"
        if self.registered_as != self.name:     # stopped, and the earlier model kept the name
            earlier = self.registry.get(self.name).meta.get("val_ppl") if self.name in self.registry else None
            return interrupted_text("stopped", self.model.report.steps, f"'{self.registered_as}'",
                                    self.model.meta.get("val_ppl"), f"'{self.name}'", earlier)
        note = self.placement.note if self.placement is not None else ""
        return (f"training '{self.name}' {'stopped' if self.model.interrupted else _how_it_ended(self.model)}"
                + (f"; {note}" if note else ""))

    def __repr__(self) -> str:
        return f"TrainingMonitor({self.summary()})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = f"Training '{self.name}' in the background (monitor widget; .stop() to stop)"
        return data


def _ppl(v: Optional[float]) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:,.1f}"


def _how_it_ended(model: LanguageModel) -> str:
    """ "finished", or "finished early (...)" for an early stop or a time limit: a success, said so."""
    r = model.report
    if r is None or r.stop_reason not in ("early stop", "max_time"):
        return "finished"
    last = r.history[-1].epoch if r.history else 0
    if r.stop_reason == "early stop":
        return (f"finished early (early stop after epoch {last} of {r.config.epochs}: no better validation "
                f"perplexity for {r.config.patience} epochs)")
    return f"finished early (time limit reached in epoch {last} of {r.config.epochs})"


def _best_text(model: LanguageModel) -> str:
    """Which validation perplexity the registered model has: the best epoch's, not the last one's."""
    r = model.report
    text = f"best validation perplexity {_ppl(model.meta.get('val_ppl'))}"
    return text + (f", epoch {r.best_epoch}" if r is not None and r.best_epoch else "")


def _thin(values: List[float]) -> List[float]:
    """At most _CURVE_POINTS points: means of equal chunks (a long run stays a cheap SVG)."""
    n = len(values)
    if n <= _CURVE_POINTS:
        return list(values)
    size = n / _CURVE_POINTS
    return [sum(values[int(i * size):int((i + 1) * size)]) / max(1, int((i + 1) * size) - int(i * size))
            for i in range(_CURVE_POINTS)]


def start_background_training(*, shell: Any = None, registry: Optional[ModelRegistry] = None, name: str,
                              data: Any, options: Optional[dict] = None,
                              continue_from: Optional[LanguageModel] = None) -> TrainingMonitor:
    """Start ``lm.train(data, init=continue_from, **options)`` in a thread; return its monitor.

    The options are checked here (a bad one raises ConfigError at once); data errors appear in the
    monitor. When training ends (or is stopped) the model is registered under ``name``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"The model needs a name, got {name!r}.")
    TrainConfig().replace(**(options or {}))     # ConfigError now, not later in the thread
    reg = registry if registry is not None else get_registry(shell if shell is not None else _shell())
    return TrainingMonitor(name, data, registry=reg, options=options, continue_from=continue_from).start()
