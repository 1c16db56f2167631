"""How long: a training progress bar for the magics and the CLI (elapsed, time left, budget, epoch, loss,
perplexity, tokens/s), the time texts the background monitor shares with it, the one line that says
what a finished run did, and a bar for long scoring runs.

``tqdm.auto`` picks a widget bar in JupyterLab, Notebook 7 and VS Code, and a text bar in a terminal.
Without tqdm the callbacks do nothing (training still works).

    with TrainProgress() as p:
        model = lm.train(text, on_step=p.on_step, on_epoch=p.on_epoch)
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import Any, Callable, Optional, Sequence

from .engine.training import EpochInfo, StepInfo

__all__ = ["INTERIM", "TrainProgress", "WorkProgress", "accepts", "clock", "duration", "time_left", "time_text", "run_line",
           "plan_text", "measure_scoring", "scoring_seconds"]

# Runs that end before the planned last step and are still a success: the bar stays short but is not
# an error (tqdm's notebook bar turns red when closed short).
_ENDED_EARLY = {"early stop": "early stop after epoch {epoch}", "max_time": "time limit, epoch {epoch}",
                "budget": "time budget, epoch {epoch}"}
_FIRST_ESTIMATE_STEP = 2    # our own estimate starts here: the first step carries the warm-up
INTERIM = "interim"         # meta key of an n-gram that answers under a name while its LSTM trains


# ------------------------------------------------------------------------------------------ time texts

def clock(seconds: float) -> str:
    """A duration as a clock reads: ``0:40``, ``1:12``, ``1:02:03``."""
    s = max(0, int(round(seconds))) if math.isfinite(seconds) else 0
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def duration(seconds: float) -> str:
    """A duration in words: ``3.2 s``, ``48 s``, ``2 min 5 s``, ``1 h 2 min``."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, sec = divmod(s, 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def time_left(info: StepInfo) -> Optional[float]:
    """Seconds left in the run: the engine's estimate (``info.eta``) when it gives one, else the steps
    left at the mean step time so far, never past the time budget (``info.budget``); None at first."""
    eta = getattr(info, "eta", None)
    if eta is not None and math.isfinite(eta):
        return max(0.0, float(eta))
    if info.step < _FIRST_ESTIMATE_STEP or info.elapsed <= 0 or info.total_steps <= 0:
        return None
    left = max(0, info.total_steps - info.step) * info.elapsed / info.step
    budget = getattr(info, "budget", None)
    if budget:
        left = min(left, max(0.0, budget - info.elapsed))
    return left


def time_text(info: StepInfo, elapsed: Optional[float] = None) -> str:
    """``1:12 elapsed, about 0:40 left`` (``budget 2:00`` added when the run has one). ``elapsed``: the
    wall time to show, when the caller counts from an earlier start than the training loop's."""
    left = time_left(info)
    text = f"{clock(info.elapsed if elapsed is None else elapsed)} elapsed, " + (
        "estimating the time left…" if left is None else f"about {clock(left)} left")
    budget = getattr(info, "budget", None)
    return text + (f" (budget {clock(budget)})" if budget else "")


def _ppl(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:,.1f}"


def _n(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"


def run_line(model: Any, elapsed: Optional[float] = None, last_epoch: Optional[int] = None) -> str:
    """What a finished run did, in one line:

    ``Done in 48 s: 8 epochs, 1,240 steps, best validation perplexity 152.3 (epoch 7)``, or ``Stopped
    after 12 s in epoch 2: ...``. ``elapsed`` (default: the whole call, ``meta["elapsed"]``) and
    ``last_epoch`` (the epoch of the last step, to tell a stop inside an epoch) are the caller's."""
    r, meta = model.report, model.meta
    el = elapsed if elapsed is not None else (meta.get("elapsed") or (r.elapsed if r is not None else 0.0))
    if r is None:
        return f"Done in {duration(el)}"
    done = len(r.history)
    if r.interrupted:
        inside = last_epoch if last_epoch and last_epoch > done else None
        head = f"Stopped after {duration(el)}" + (f" in epoch {inside}" if inside else "")
    else:
        head = f"Done in {duration(el)}"
        planned = getattr(r.config, "epochs", None)
        if r.stop_reason == "early stop":
            head += f" (early stop after epoch {done}" + (f" of {planned}" if planned else "") + ")"
        elif r.stop_reason in ("max_time", "budget"):
            head += " (time " + ("budget" if r.stop_reason == "budget" else "limit") + f" reached in epoch {done}" \
                    + (f" of {planned}" if planned else "") + ")"
    parts = [] if r.interrupted and not done else [_n(done, "full epoch" if r.interrupted else "epoch")]
    parts.append(_n(r.steps, "step"))
    best = meta.get("val_ppl")
    if r.best_epoch and done:
        parts.append(f"best validation perplexity {_ppl(best)} (epoch {r.best_epoch})")
    elif best is not None:
        parts.append(f"validation perplexity {_ppl(best)} (part of epoch 1)")
    return f"{head}: {', '.join(parts)}"


def plan_text(plan: Any) -> str:
    """A training plan in a few words (``about 50 s, 8 epochs, 1,240 steps``); empty when nothing is known.
    The engine's Plan says it itself (``describe()``); another plan is read by attribute (or key)."""
    describe = getattr(plan, "describe", None)
    if callable(describe):
        return str(describe())

    def get(*names: str) -> Any:
        for n in names:
            v = plan.get(n) if isinstance(plan, dict) else getattr(plan, n, None)
            if v is not None:
                return v
        return None

    parts = []
    secs = get("estimate_s", "seconds")
    if isinstance(secs, (int, float)) and math.isfinite(secs):
        parts.append(f"about {duration(secs)}")
    epochs, steps, budget = get("epochs"), get("total_steps", "steps"), get("budget_s", "budget")
    if isinstance(epochs, int):
        parts.append(_n(epochs, "epoch"))
    if isinstance(steps, int):
        parts.append(_n(steps, "step"))
    if isinstance(budget, (int, float)) and budget:
        parts.append(f"budget {clock(budget)}")
    return ", ".join(parts)


def accepts(fn: Any, keyword: str) -> bool:
    """Whether fn takes keyword as a named parameter (``lm.train``'s ``on_plan``, ``on_baseline``), not
    only through ``**options`` (where an unknown name is a ConfigError)."""
    import inspect

    try:
        return keyword in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ training bar

class TrainProgress:
    """on_step / on_epoch callbacks that drive one tqdm bar; ``close()`` (or ``with``) ends it.

    The bar reads ``42%|####   | 520/1240, 0:31 elapsed, about 0:43 left, epoch=4, loss=4.812, ...``.
    ``epoch_lines=True`` (the CLI) also writes one lasting line per epoch above the bar."""

    def __init__(self, desc: str = "training", file: Any = None, leave: bool = True, epoch_lines: bool = False):
        self.desc, self.file, self.leave, self.epoch_lines = desc, file, leave, epoch_lines
        self._bar: Any = None
        self._val_ppl: Optional[float] = None
        self._epoch = 0
        self._step: Optional[StepInfo] = None

    def _make_bar(self, total: int) -> Any:
        try:
            if self.file is not None:          # an explicit stream (the CLI's stderr): plain text bar
                from tqdm import tqdm
            else:
                from tqdm.auto import tqdm
        except ImportError:
            return None
        # tqdm's own "[elapsed<remaining]" is left out: its remaining time knows nothing of a time budget
        # or of validation; the postfix says both times.
        return tqdm(total=total, desc=self.desc, unit="step", file=self.file, leave=self.leave,
                    dynamic_ncols=True, mininterval=0.2, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}")

    def postfix(self, info: StepInfo, final: bool = False) -> str:
        """The text after the bar: the times first (``final``: what it took), then tqdm-style fields."""
        fields = {"epoch": info.epoch, "loss": f"{info.loss:.3f}", "ppl": f"{math.exp(min(info.loss, 50)):,.1f}"}
        if self._val_ppl is not None:
            fields["val_ppl"] = _ppl(self._val_ppl)
        fields["tok/s"] = f"{info.tokens_per_s:,.0f}"
        times = f"{clock(info.elapsed)} in all" if final else time_text(info)
        return ", ".join([times] + [f"{k}={v}" for k, v in fields.items()])

    def on_step(self, info: StepInfo) -> None:
        if self._bar is None:
            self._bar = self._make_bar(info.total_steps) or False
        self._step = info
        if not self._bar:
            return
        if self._bar.total != info.total_steps:
            self._bar.total = info.total_steps
        self._epoch = info.epoch
        self._bar.set_postfix_str(self.postfix(info), refresh=False)   # tqdm redraws at most every mininterval
        self._bar.update(info.step - self._bar.n)

    def on_plan(self, plan: Any) -> None:
        """The engine's plan (``lm.train(on_plan=...)``): said once, in the bar's label or above it."""
        text = plan_text(plan)
        if not text:
            return
        if self._bar:
            self._bar.set_description_str(f"{self.desc} ({text})", refresh=False)
        else:
            self.desc = f"{self.desc} ({text})"

    def on_epoch(self, info: EpochInfo) -> None:
        self._val_ppl = info.val_ppl
        if self.epoch_lines and self._bar:
            s = self._step
            left = time_left(s) if s is not None else None
            self._bar.write(f"{self.desc}: epoch {info.epoch}, validation perplexity {_ppl(info.val_ppl)}"
                            + (" (best so far)" if info.best else "") + f", {clock(info.elapsed)} elapsed"
                            + ("" if left is None else f", about {clock(left)} left"), file=self.file)

    def close(self, status: str = "") -> None:
        """End the bar; status (the report's stop_reason, e.g. 'early stop') is added to its label, since
        the bar may end short. An early stop or a time limit ends short but green: a success."""
        bar, self._bar = self._bar, None
        if not bar:
            return
        if status:
            label = _ENDED_EARLY.get(status, status).format(epoch=self._epoch)
            bar.set_description_str(f"{self.desc} ({label})", refresh=False)
        if self._step is not None:       # the last word on time: what it took, nothing "left"
            bar.set_postfix_str(self.postfix(self._step, final=True), refresh=False)
        if status in _ENDED_EARLY and hasattr(bar, "container"):
            _close_as_success(bar)
        else:
            bar.close()

    def __enter__(self) -> "TrainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_as_success(bar: Any) -> None:
    """Close a tqdm.notebook bar that ends short without its red "error" style.

    tqdm.notebook's close() marks a bar that ends before its total with bar_style 'danger' (through its
    ``disp``); here that one style is turned into 'success', so the bar never flashes red."""
    disp = bar.disp

    def disp_success(*args: Any, bar_style: Optional[str] = None, **kwargs: Any) -> Any:
        return disp(*args, bar_style="success" if bar_style == "danger" else bar_style, **kwargs)

    bar.disp = disp_success
    try:
        bar.close()
    finally:
        bar.disp = disp


# ------------------------------------------------------------------------------------------ long commands

_SAMPLE_ROWS = 64           # rows scored to measure a model's speed (a fraction of a second)
_rates: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()   # model -> tokens/s


def scoring_seconds(rows: int, mean_tokens: float, tokens_per_s: float, passes: int = 1) -> float:
    """How long scoring takes: rows x mean tokens per row (+1 for the end of a row) / speed, per pass."""
    if rows <= 0 or tokens_per_s <= 0:
        return 0.0
    return passes * rows * (mean_tokens + 1.0) / tokens_per_s


def measure_scoring(model: Any, texts: Sequence[Any], passes: int = 1,
                    clock_fn: Callable[[], float] = time.perf_counter) -> float:
    """Estimated seconds to score texts with model: their mean length from a sample of rows, the model's
    speed measured once on that sample (kept per model for later calls) and ``scoring_seconds``."""
    values = [t for t in texts if isinstance(t, str) and t.strip()]
    if not values:
        return 0.0
    step = max(1, len(values) // _SAMPLE_ROWS)
    sample = values[::step][:_SAMPLE_ROWS]
    mean_tokens = sum(len(model.tokenizer.tokenize(t)) for t in sample) / len(sample)
    rate = _rates.get(model)
    if rate is None:
        t0 = clock_fn()
        model.score(sample)
        spent = clock_fn() - t0
        rate = len(sample) * (mean_tokens + 1.0) / max(spent, 1e-6)
        _rates[model] = rate
    return scoring_seconds(len(values), mean_tokens, rate, passes)


class WorkProgress:
    """A bar for a long command (scoring, comparing), shown at once with its estimate.

    ``on_chunk(done, total)`` (what ``score_frame`` / ``compare_groups`` call) moves it; between two
    reports the clock moves it along the estimate, never past 95% until the work says it is done, so
    a single chunk of many seconds still shows progress. ``close()`` (or ``with``) ends it."""

    def __init__(self, total: int, estimate_s: float, desc: str = "scoring", unit: str = "row",
                 file: Any = None, tick_s: float = 0.5):
        self.total, self.estimate_s, self.desc, self.unit = max(1, int(total)), float(estimate_s), desc, unit
        self.done_units = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._bar = self._make_bar(file)
        self._ticker: Optional[threading.Thread] = None
        if self._bar is not None and tick_s > 0:
            self._ticker = threading.Thread(target=self._tick, args=(tick_s,), daemon=True, name="lm-progress")
            self._ticker.start()

    @property
    def label(self) -> str:
        return f"{self.desc} {self.total:,} {self.unit}s, about {duration(self.estimate_s)}"

    def _make_bar(self, file: Any) -> Any:
        try:
            if file is not None:
                from tqdm import tqdm
            else:
                from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total, desc=self.label, unit=self.unit, file=file, leave=False,
                    mininterval=0.2, dynamic_ncols=True)

    def _move(self, n: int) -> None:
        with self._lock:
            bar = self._bar
            if bar is not None and n > bar.n:
                bar.update(n - bar.n)

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            guess = min(0.95, (time.monotonic() - self._t0) / max(self.estimate_s, 1e-3))
            self._move(max(self.done_units, int(guess * self.total)))

    def on_chunk(self, done: int, total: int) -> None:
        if total > 0:
            self.done_units = int(done * self.total / total)
            self._move(self.done_units)

    def close(self, discard: bool = False) -> None:
        """End the bar; ``discard=True`` (the work failed, and says why itself) takes a notebook bar away
        instead of leaving it red above the error."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2)
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is None:
            return
        if discard and hasattr(bar, "container"):
            bar.disp = lambda *a, **k: None
            bar.container.close()
        bar.close()

    def __enter__(self) -> "WorkProgress":
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(discard=exc_type is not None)
