"""Background training: ``lm.train`` in a thread, watched by a live widget with a Stop button.

A widget callback cannot run while a cell is busy, so a Stop button only works if training runs
outside the cell: here, in a thread. The thread's callbacks record progress and update the widget at
most ``max_updates_per_s`` times a second; Stop sets an event that makes the next step raise
``StopTraining`` (the engine then keeps the best model so far). The finished model is registered
under its name, so panels and chats that follow the name switch to it. A stopped run follows the rule
for interrupted ones: if the name holds a model, that one keeps it (and its panels and chats), and the
stopped model is registered as ``NAME_interrupted``.

Answers from the first second: when ``lm.train`` hands over the n-gram baseline (``on_baseline``, counted
in seconds, before the LSTM's first step) and the name is new, the n-gram is registered under the name at
once, marked ``meta["interim"]``, so the panel, the chat, ``%lm_complete`` and ``%lm_score`` can use the
name while the LSTM trains. The LSTM replaces it when the run ends. It never takes a name that holds a
model (the earlier one answers until the run ends), and a run that ends without registering its model
under the name (failed, stopped before the first step) takes the interim n-gram away again.
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
from ..progress import INTERIM, accepts, clock, duration, plan_text, run_line, time_text
from ..registry import ModelRegistry, Placement, get_registry, register_run
from ..rules import check_name
from ._base import error_text, esc
from ._base import close_tree as _close_tree, current_shell as _shell

__all__ = ["TrainingMonitor", "start_background_training"]

_CURVE_POINTS = 200    # the loss curve keeps at most this many (averaged) points
_STOPPED_COLOR = "#b45309"   # amber: a stopped run (its bar is bar_style "warning"), not an error's red


class TrainingMonitor:
    """A training run in a background thread and the widget that shows it.

    ``.widget`` (progress, epoch, loss, perplexity, tokens/s, time elapsed and left, loss curve, Stop);
    ``.stop()``; ``.join(timeout)``; ``.done``; ``.model`` (None until finished); ``.registered_as`` (the
    name it got: ``name``, or ``name_interrupted`` for a stopped run whose name held a model); ``.error``
    (text, if it failed); ``.interim`` (the n-gram that answered under the name while the LSTM trained,
    or None); ``.headline`` (one line: what the run did, once it ended).
    """

    def __init__(self, name: str, data: Any, *, registry: ModelRegistry, options: Optional[dict] = None,
                 continue_from: Optional[LanguageModel] = None, max_updates_per_s: float = 5.0):
        check_name(name)        # refused before any training, not when the finished run is registered
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
        self.plan: Any = None
        self.interim: Optional[LanguageModel] = None     # the n-gram answering under name, while it does
        self.interim_from: Optional[float] = None         # seconds after the start it began to answer
        self.interim_skipped = False                      # the name held a model: no interim n-gram
        self.lstm_from: Optional[float] = None            # seconds after the start the LSTM took the name
        self.elapsed: Optional[float] = None              # the whole run, once it ended
        self._prev_default: Optional[str] = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._last_draw = 0.0
        self._t0 = time.monotonic()
        self._stop_at: Optional[float] = None
        self._stopped_empty = False                       # Stop ended the run before it had a model
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.RLock()                    # one _draw at a time (the thread and Stop's ticker)

        self.title = W.HTML(f"<b>Training '{esc(name)}'</b> in the background")
        self.title.add_class("lm-monitor-title")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="260px"))
        self.progress.add_class("lm-monitor-progress")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    tooltip="Stop after the current step and keep the best model")
        self.stop_button.add_class("lm-monitor-stop")
        self.stats = W.HTML("starting…")
        self.stats.add_class("lm-monitor-stats")
        self.clock = W.HTML("")
        self.clock.add_class("lm-monitor-time")
        self.curve = W.HTML(layout=W.Layout(overflow="hidden"))   # a redrawn curve never covers Stop
        self.curve.add_class("lm-monitor-curve")
        self.status = W.HTML("<span class='lm-status'>reading the data…</span>")
        self.status.add_class("lm-monitor-status")
        self.log = W.Output()
        self.log.add_class("lm-log")
        top = W.HBox([self.progress, self.stop_button])
        self.widget = W.VBox([self.title, top, self.stats, self.clock, self.curve, self.status, self.log])
        self.widget.add_class("lm-monitor")
        self.stop_button.on_click(lambda _b: self.stop())

    # ------------------------------------------------------------------ control

    def start(self) -> "TrainingMonitor":
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"lm-train-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask training to stop at the next step; the best model so far is kept and registered (as
        name_interrupted if name holds a model: a stopped run never replaces one). The button and the
        status say at once what the stop is waiting for."""
        if self._done.is_set() or self._stop.is_set():
            return
        self._stop.set()
        self._stop_at = time.monotonic()
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping…"
        self._draw_stopping()
        if self._thread is not None:
            threading.Thread(target=self._stopping_ticker, daemon=True, name=f"lm-stop-{self.name}").start()

    def _stopping_ticker(self) -> None:
        """Count the seconds of a stop that takes a while (validating a partial epoch), until it is over."""
        while not self._done.wait(0.5):
            self._draw_stopping()

    def _draw_stopping(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            waited = time.monotonic() - (self._stop_at or time.monotonic())
            if self.step is None:
                what = "Stopping… before the first step"
            elif not self.epochs:
                what = "Stopping… validating the partial epoch"
            else:
                what = "Stopping… restoring the best epoch's weights"
            self.status.value = (f"<span class='lm-status lm-stopping' style='color:{_STOPPED_COLOR}'>{what}"
                                 + (f" ({waited:.0f} s)" if waited >= 1 else "") + "</span>")

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
            callbacks = {k: fn for k, fn in (("on_plan", self._on_plan), ("on_baseline", self._on_baseline))
                         if accepts(train, k)}   # the engine's plan and baseline, where it offers them
            model = train(self.data, init=self.continue_from, on_step=self._on_step, on_epoch=self._on_epoch,
                          **callbacks, **self.options)
            if self._before_first_step:      # Stop came before the first step: nothing changes
                raise StopTraining("stopped before the first step")
            # The rule for runs (registry.register_run): observers (panels, chats) of the name switch to a
            # finished model; a stopped one never replaces the model that has the name, and one stopped
            # before its first validation is kept aside, not made the default. The interim n-gram is no
            # model of the name's: it goes first, so the rule sees the name as the run found it.
            had_interim = self._interim_registered()
            self._withdraw_interim()
            self.placement = register_run(self.registry, self.name, model)
            self.registered_as = self.placement.name
            if had_interim and self.registered_as == self.name:
                self.lstm_from = time.monotonic() - self._t0
            self.model = model
        except StopTraining:
            self._stopped_empty = True
            self.error = "stopped before the first step: nothing was registered and nothing changed"
            self.stats.value = ""            # no "starting…" above "stopped"
        except Exception as exc:  # noqa: BLE001 - shown in the widget; the session keeps going
            self.error = error_text(exc)
            if not isinstance(exc, LMError):     # a bug: keep the whole traceback visible
                self.log.append_stderr("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        finally:
            self.elapsed = time.monotonic() - self._t0
            try:
                self._withdraw_interim()         # still there: the run's model did not take the name
            except Exception as exc:  # noqa: BLE001
                self.log.append_stderr(f"monitor: {exc}\n")
            self._done.set()
            try:
                self._draw(final=True)
            except Exception as exc:  # noqa: BLE001
                self.log.append_stderr(f"monitor: {exc}\n")

    def _on_plan(self, plan: Any) -> None:
        self.plan = plan
        self._draw()

    def _on_baseline(self, ngram: LanguageModel) -> None:
        """The n-gram baseline is counted: let it answer under the name until the LSTM is done, if the
        name is free (an existing model keeps answering instead)."""
        if self._stop.is_set() or self.interim is not None:
            return
        if self.name in self.registry:
            self.interim_skipped = True
        else:
            ngram.meta[INTERIM] = True
            self._prev_default = self.registry.default
            self.registry.set(self.name, ngram)
            self.interim, self.interim_from = ngram, time.monotonic() - self._t0
        self._draw()

    def _interim_registered(self) -> bool:
        if self.interim is None:
            return False
        try:
            return self.registry.get(self.name) is self.interim
        except LMError:
            return False

    def _withdraw_interim(self) -> None:
        """Take the interim n-gram away if it still has the name (the run's model did not replace it):
        the session is as before the run, and the earlier default model is the default again."""
        if not self._interim_registered():
            return
        self.registry.drop(self.name)
        if self._prev_default is not None and self._prev_default in self.registry:
            self.registry.use(self._prev_default)
        self.lstm_from = None

    def _on_step(self, info: StepInfo) -> None:
        self.step = info                  # the step is done, stopped or not: the text counts it
        if self._stop.is_set():
            self._before_first_step = self.step is None    # pressed before any step had been shown
            raise StopTraining("stopped from the monitor")
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

    def _answering(self) -> str:
        """Which model answers under the name while the run goes on."""
        if self.interim is not None and self._interim_registered():
            ng = self.interim.meta.get("val_ppl")
            return (f"<b>{esc(self.name)}</b> answers with its n-gram baseline"
                    + (f" (validation perplexity {_ppl(ng)})" if ng is not None else "")
                    + " until the LSTM is done")
        if self.interim_skipped:
            return f"the earlier <b>{esc(self.name)}</b> answers until the LSTM is done"
        return ""

    def _draw(self, final: bool = False) -> None:
        with self._lock:
            self._draw_locked(final)

    def _draw_locked(self, final: bool) -> None:
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
                self.clock.value = f"<span class='lm-time'>{esc(time_text(s, time.monotonic() - self._t0))}</span>"
        if not final:
            if self._stop.is_set():
                return                                     # the stop's own status stays
            plan = plan_text(self.plan) if self.plan is not None else ""
            bits = [f"plan: {esc(plan)}; Stop ends it early" if plan else "",
                    self._answering(), "running" if s is not None else ""]
            text = "; ".join(b for b in bits if b) or "reading the data…"
            self.status.value = f"<span class='lm-status'>{text}</span>"
            return
        if s is None:
            self.stats.value = ""                 # never "starting…" above how the run ended
        self.stop_button.disabled = True
        self.stop_button.description = "Stop"
        self.stop_button.button_style = ""        # a finished run's disabled Stop is grey, not red
        m = self.model
        self.title.value = f"<b>'{esc(self.name)}'</b> · {esc(self.headline)}"   # no longer "Training ..."
        self.clock.value = ""
        if m is not None:
            if m.interrupted:
                self.progress.bar_style = "warning"      # stopped: amber with its text, not the running blue
            else:
                self.progress.bar_style = "success"
            how = "stopped" if m.interrupted else _how_it_ended(m)
            note = self.placement.note if self.placement is not None else ""
            kept = f"; {esc(note)}" if note else ""
            color = f" style='color:{_STOPPED_COLOR}'" if m.interrupted else ""
            self.status.value = (f"<span class='lm-status lm-done'{color}>{esc(how)}: best model registered as "
                                 f"<b>{esc(self.registered_as)}</b> ({esc(_best_text(m))}){kept}"
                                 f"{esc(self._who_answered())}</span>")
            if m.report is not None:
                self.curve.value = sparkline_svg(_thin(m.report.losses), label="training loss")
        elif self._stop.is_set() and self.error and self.error.startswith("stopped"):
            self.progress.bar_style = "warning"            # stopped: amber, not the running blue
            self.status.value = (f"<span class='lm-status lm-done' style='color:{_STOPPED_COLOR}'>"
                                 f"{esc(self.error)}</span>")
        else:
            stopped = self._stopped_empty
            self.progress.bar_style = "warning" if stopped else "danger"
            self.status.value = (f"<span class='lm-error' style='color:{_STOPPED_COLOR if stopped else '#c00'}'>"
                                 f"{'Stopped' if stopped else 'Error'}: {esc(self.error)}</span>")

    @property
    def headline(self) -> str:
        """One line: what the run is doing, or what it did (``Done in 48 s: 8 epochs, ...``)."""
        if not self.done:
            return f"training '{self.name}' in the background"
        if self.model is None:
            if self._stopped_empty:
                return f"Stopped after {_secs(self.elapsed)} before the first step: nothing was registered"
            return f"Training failed after {_secs(self.elapsed)}"
        last = self.step.epoch if self.step is not None else None
        return run_line(self.model, elapsed=self.elapsed, last_epoch=last)

    def _who_answered(self) -> str:
        """Which model answered under the name, and when: said once the run ended."""
        if self.interim is None or self.interim_from is None:
            return ""
        start = clock(self.interim_from)
        if self.lstm_from is not None:
            return f"; the n-gram answered as '{self.name}' from {start} until {clock(self.lstm_from)}, then the LSTM"
        return f"; the n-gram answered as '{self.name}' from {start} until the run ended, and was taken away"

    def summary(self) -> str:
        if not self.done:
            s = self.step
            return f"training '{self.name}': " + (f"epoch {s.epoch}, step {s.step}/{s.total_steps}, "
                                                   f"{time_text(s, time.monotonic() - self._t0)}" if s
                                                   else "starting")
        if self.model is None:
            return f"training '{self.name}' failed: {self.error}"
        if self.registered_as != self.name:     # stopped: kept aside, beside the earlier model or before validating
            p = self.placement
            if p is not None and p.kept_earlier:
                return interrupted_text("stopped", self.model.report.steps, f"'{self.registered_as}'",
                                        self.model.meta.get("val_ppl"), f"'{self.name}'", p.earlier_ppl)
            if p is not None and p.note:
                steps = self.model.report.steps
                return f"Training stopped after {steps:,} step{'' if steps == 1 else 's'}: {p.note}."
            return interrupted_text("stopped", self.model.report.steps, f"'{self.registered_as}'",
                                    self.model.meta.get("val_ppl"))
        note = self.placement.note if self.placement is not None else ""
        return (f"training '{self.name}' {'stopped' if self.model.interrupted else _how_it_ended(self.model)}"
                + (f"; {note}" if note else ""))

    def __repr__(self) -> str:
        return f"TrainingMonitor({self.summary()})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = (f"'{self.name}': {self.headline}" if self.done else
                              f"Training '{self.name}' in the background (monitor widget; .stop() to stop)")
        return data


def _secs(v: Optional[float]) -> str:
    return duration(v or 0.0)


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
