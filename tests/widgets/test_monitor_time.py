"""The monitor's times, its one-line result, Stop's feedback and the interim n-gram that answers under the
run's name from the first second (issues 21 and 24). Runs are tiny; lm.train is replaced where the test
needs to hold a run at a given point (a gate), never timed."""

from __future__ import annotations

import html
import re
import threading

import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

import lm_magics as lm  # noqa: E402
from lm_magics.engine.training import StepInfo  # noqa: E402
from lm_magics.errors import DataError  # noqa: E402
from lm_magics.magics import ModelTable  # noqa: E402
from lm_magics.widgets import CompletionPanel  # noqa: E402
from lm_magics.widgets import monitor as M  # noqa: E402
from lm_magics.widgets.monitor import start_background_training  # noqa: E402
from conftest import wait_until  # noqa: E402
from widget_fixtures import TEXT  # noqa: E402

pytest_plugins = ["widget_fixtures"]

SMALL = dict(epochs=2, hidden_dim=16, embed_dim=8, seed=0)
LONG = dict(epochs=400, hidden_dim=16, embed_dim=8, patience=1000, seed=0)


def text(widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


@pytest.fixture
def monitors():
    started = []
    yield started
    for m in started:
        m.stop()
        m.join(30)


def gated(gate: threading.Event, after: str = "train", steps_first: int = 0):
    """A stand-in for lm.train with the engine's on_plan / on_baseline: it hands over the plan and the
    n-gram at once, waits for gate, then does `after`: 'train' (the real LSTM run), 'fail' or 'stop'."""
    def fake(data, *, init=None, on_step=None, on_epoch=None, on_plan=None, on_baseline=None, **options):
        on_plan({"seconds": 30.0, "epochs": options.get("epochs")})
        on_baseline(lm.train(data, kind="ngram"))
        for n in range(1, steps_first + 1):
            on_step(StepInfo(n, 100, 1, 3.0, 0.1, 100 * n, 1000.0, 0.1 * n))
        assert gate.wait(30)
        if after == "fail":
            raise DataError("the data went away")
        if after == "stop":
            on_step(StepInfo(steps_first + 1, 100, 1, 3.0, 0.1, 100, 1000.0, 0.2))   # raises: Stop was pressed
        return lm.train(data, init=init, on_step=on_step, on_epoch=on_epoch, **options)
    return fake


# ------------------------------------------------------------------------------------------ times and result

def test_monitor_shows_elapsed_and_time_left_and_ends_in_one_line(reg, monitors):
    mon = start_background_training(registry=reg, name="timed", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: "about" in mon.clock.value)
    assert re.search(r"\d+:\d\d elapsed, about \d+:\d\d left", text(mon.clock)), mon.clock.value
    mon.stop()
    # Stop answers at once, before the run has ended
    assert mon.stop_button.description == "Stopping…" and "Stopping…" in text(mon.status)
    assert mon.join(30)
    title = text(mon.title)
    assert "in the background" not in title and title.startswith("'timed' · Stopped after ")
    steps = mon.model.report.steps
    assert re.search(rf"{steps:,} steps, (best )?validation perplexity [\d,.]+ \((epoch|part of epoch) \d+\)$",
                     title) and "\n" not in title, title
    assert mon.progress.bar_style == "warning"                  # stopped: not the running blue, not red
    assert "#b45309" in mon.status.value and "stopped: best model registered as timed" in text(mon.status)
    assert mon.clock.value == ""                                # nothing "left" after the run
    assert f"step {steps:,}/" in text(mon.stats)                 # the text counts the last step too


def test_a_finished_run_says_done_in_one_line(reg, monitors):
    mon = start_background_training(registry=reg, name="small", data=TEXT, options=SMALL)
    monitors.append(mon)
    assert mon.join(60) and mon.error is None
    r = mon.model.report
    assert text(mon.title) == (f"'small' · Done in {lm.progress.duration(mon.elapsed)}: 2 epochs, {r.steps:,} steps, "
                               f"best validation perplexity {mon.model.meta['val_ppl']:,.1f} (epoch {r.best_epoch})")
    assert mon._repr_mimebundle_()["text/plain"].startswith("'small': Done in ")
    assert mon.progress.bar_style == "success"


def test_stop_inside_the_first_epoch_says_it_validates_the_partial_epoch(reg, monitors, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(M, "train", gated(gate, steps_first=2))
    mon = start_background_training(registry=reg, name="partial", data=TEXT, options=SMALL)
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None and mon.step.step == 2)
    mon.stop()
    assert text(mon.status).startswith("Stopping… validating the partial epoch")
    gate.set()
    assert mon.join(60) and mon.interrupted


# ------------------------------------------------------------------------------------------ the interim n-gram

def test_the_ngram_answers_under_a_new_name_until_the_lstm_takes_over(reg, monitors, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(M, "train", gated(gate))
    mon = start_background_training(registry=reg, name="fresh", data=TEXT, options=SMALL)
    monitors.append(mon)
    assert wait_until(lambda: "fresh" in reg)
    ngram = reg.get("fresh")
    assert ngram.kind == "ngram" and ngram.meta[M.INTERIM] is True and mon.interim is ngram
    assert reg.default == "fresh" and not mon.done
    assert wait_until(lambda: "answers with its n-gram baseline" in text(mon.status))
    assert "plan: about 30 s, 2 epochs; Stop ends it early" in text(mon.status)
    panel = CompletionPanel("fresh", registry=reg, debounce=0)
    panel.value = "the "
    assert panel.suggestions == ngram.next_words("the ", 5)
    assert "'fresh' is its n-gram baseline until its LSTM is done" in repr(ModelTable(reg))   # %lm_models
    gate.set()
    assert mon.join(60) and mon.error is None
    assert "n-gram baseline" not in repr(ModelTable(reg))
    assert reg.get("fresh") is mon.model and mon.model.kind == "lstm" and panel.model is mon.model
    assert re.search(r"the n-gram answered as 'fresh' from 0:\d\d until \d+:\d\d, then the LSTM", text(mon.status))
    panel.close()


def test_the_interim_ngram_never_takes_a_name_that_holds_a_model(reg, model, monitors, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(M, "train", gated(gate))
    mon = start_background_training(registry=reg, name="pets", data=TEXT, options=SMALL)
    monitors.append(mon)
    assert wait_until(lambda: mon.interim_skipped)
    assert reg.get("pets") is model and mon.interim is None
    assert "the earlier pets answers until the LSTM is done" in text(mon.status)
    gate.set()
    assert mon.join(60) and reg.get("pets") is mon.model          # a finished run replaces, as before


@pytest.mark.parametrize("after", ["fail", "stop"])
def test_a_run_that_keeps_nothing_takes_the_interim_ngram_away(reg, monitors, monkeypatch, after):
    gate = threading.Event()
    monkeypatch.setattr(M, "train", gated(gate, after=after))
    mon = start_background_training(registry=reg, name="fresh", data=TEXT, options=SMALL)
    monitors.append(mon)
    assert wait_until(lambda: "fresh" in reg) and reg.default == "fresh"
    if after == "stop":
        mon.stop()
    gate.set()
    assert mon.join(60) and mon.model is None
    assert "fresh" not in reg and reg.default == "pets"          # as before the run
    assert mon.progress.bar_style == ("danger" if after == "fail" else "warning")
    assert text(mon.title).startswith("'fresh' · " + ("Training failed" if after == "fail" else "Stopped after"))


def test_a_stopped_run_takes_the_name_its_interim_ngram_held(reg, monitors, monkeypatch):
    """The name was free when the run began: the stopped (validated) LSTM gets it, not fresh_interrupted.
    (A run stopped before its first validation is kept aside under the rule for runs, registry.register_run.)"""
    gate = threading.Event()
    monkeypatch.setattr(M, "train", gated(gate))
    mon = start_background_training(registry=reg, name="fresh", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: "fresh" in reg)
    gate.set()
    assert wait_until(lambda: len(mon.epochs) >= 1)
    mon.stop()
    assert mon.join(60) and mon.interrupted
    assert mon.registered_as == "fresh" and reg.get("fresh") is mon.model and "fresh_interrupted" not in reg
