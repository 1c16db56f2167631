"""Background training and its monitor: Stop, the stopped-run rule, panels that follow a name."""

from __future__ import annotations


import pytest

pytest.importorskip("ipywidgets", reason="the widgets need the widgets extra: pip install 'lm-magics[widgets]' (the test extra has it)")

from lm_magics.errors import ConfigError  # noqa: E402
from lm_magics.widgets import ChatAssistant, CompletionPanel  # noqa: E402
from lm_magics.widgets.monitor import start_background_training  # noqa: E402
from conftest import wait_until
from widget_fixtures import TEXT  # noqa: E402

pytest_plugins = ["widget_fixtures"]   # the shared fixtures: model, other, reg


# ------------------------------------------------------------------------------------ background training

LONG = dict(epochs=400, hidden_dim=16, embed_dim=8, patience=1000, seed=0)


@pytest.fixture
def monitors():
    started = []
    yield started
    for m in started:          # never leave a training thread behind
        m.stop()
        m.join(30)


def test_background_training_stop_registers_best_model(reg, monitors):
    follower = CompletionPanel("bg", registry=reg, debounce=0) if "bg" in reg else None
    assert follower is None
    chat = ChatAssistant("pets", registry=reg, seed=0)
    mon = start_background_training(registry=reg, name="bg", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None and mon.step.step >= 2)
    # nothing under the name yet but, where the engine hands it over, the n-gram answering for it
    assert not mon.done and mon.running and ("bg" not in reg or reg.get("bg") is mon.interim)
    mon.stop_button.click()
    assert mon.join(30) and mon.done
    assert mon.model is not None and mon.interrupted and mon.model.report.stop_reason == "interrupted"
    if mon.model.report.history:       # validated before Stop: the new name gets it
        assert reg.get("bg") is mon.model and reg.default == "bg"
        bg = "bg"
    else:                              # stopped before its first validation: kept aside, not the default
        assert reg.get("bg_interrupted") is mon.model and reg.default != "bg_interrupted" and "bg" not in reg
        bg = "bg_interrupted"
    assert mon.model.next_words("the cat", 3)
    assert f"stopped: best model registered as <b>{bg}</b>" in mon.status.value
    assert mon.stop_button.disabled and "epoch" in mon.stats.value
    assert mon.stop_button.button_style == ""          # disabled and grey, no longer a red Stop
    assert chat.name == "pets"                        # followers of other names stay put
    chat.send(f"/use {bg}")
    assert chat.model is mon.model
    assert "application/vnd.jupyter.widget-view+json" in mon._repr_mimebundle_()


def test_stopping_a_run_whose_name_exists_keeps_the_earlier_model(reg, model, monitors):
    """Stop follows the rule of Ctrl-C: the earlier 'pets' keeps its name, its panels and chats."""
    panel = CompletionPanel("pets", registry=reg, debounce=0)
    chat = ChatAssistant("pets", registry=reg, seed=0)
    mon = start_background_training(registry=reg, name="pets", data=TEXT, continue_from=model,
                                    options=dict(epochs=400, patience=1000, seed=0))   # the network is model's
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None and mon.step.step >= 2)
    mon.stop_button.click()
    assert mon.join(30) and mon.interrupted and mon.error is None
    assert reg.get("pets") is model and reg.default == "pets"
    assert mon.registered_as == "pets_interrupted" and reg.get("pets_interrupted") is mon.model
    assert panel.model is model and chat.model is model
    steps = mon.model.report.steps
    assert mon.summary() == (f"Training stopped after {steps:,} steps: kept the earlier 'pets' (val ppl "
                             f"{model.meta['val_ppl']:,.1f}); the stopped model is 'pets_interrupted' (val ppl "
                             f"{mon.model.meta['val_ppl']:,.1f}).")
    assert "registered as <b>pets_interrupted</b>" in mon.status.value
    assert "kept the earlier &#x27;pets&#x27;" in mon.status.value
    panel.close(), chat.close()


def test_panel_switches_when_background_training_finishes(reg, model, monitors):
    p = CompletionPanel("pets", registry=reg, debounce=0)
    p.value = "the "
    mon = start_background_training(registry=reg, name="pets", data=TEXT,
                                    options=dict(epochs=1, seed=1), continue_from=model)
    monitors.append(mon)
    assert mon.join(60)
    assert mon.error is None and not mon.interrupted
    assert p.model is mon.model is reg.get("pets") and p.model is not model
    assert p.suggestions == mon.model.next_words("the ", 5)
    assert "finished" in mon.status.value and mon.progress.value == 1.0
    assert mon.progress.bar_style == "success" and mon.stop_button.button_style == ""
    assert "finished early" not in mon.status.value and mon.summary().startswith(
        "training 'pets' finished; replaced the earlier 'pets' (validation perplexity ")
    assert "replaced the earlier &#x27;pets&#x27;" in mon.status.value


def test_monitor_shows_an_early_stop_as_an_early_success(reg, monitors):
    mon = start_background_training(registry=reg, name="early", data=TEXT, options=dict(
        epochs=30, patience=1, hidden_dim=16, embed_dim=8, lr=0.1, seed=0))
    monitors.append(mon)
    assert mon.join(60) and mon.error is None
    r = mon.model.report
    assert r.stop_reason == "early stop" and not mon.interrupted
    last, best = r.history[-1], r.history[r.best_epoch - 1]
    assert last.epoch < 30 and best.epoch < last.epoch and best.val_ppl != last.val_ppl
    # the bar and the "step x/y" text agree: it ended short, in green
    s = mon.step
    assert s.step == r.steps < s.total_steps
    assert mon.progress.value == pytest.approx(s.step / s.total_steps) and mon.progress.bar_style == "success"
    assert f"step {s.step:,}/{s.total_steps:,}" in mon.stats.value
    # the early stop is said, and each perplexity says which it is
    assert (f"finished early (early stop after epoch {last.epoch} of 30: no better validation perplexity "
            f"for 1 epochs): best model registered as <b>early</b>") in mon.status.value
    assert f"last val perplexity {last.val_ppl:,.1f} (epoch {last.epoch})" in mon.stats.value
    assert f"(best validation perplexity {best.val_ppl:,.1f}, epoch {best.epoch})" in mon.status.value
    assert mon.summary().startswith("training 'early' finished early (early stop after epoch")
    assert mon.stop_button.disabled and mon.stop_button.button_style == ""


def test_panel_and_chat_work_while_training_runs(reg, other, monitors):
    mon = start_background_training(registry=reg, name="bg2", data=TEXT, options=LONG)
    monitors.append(mon)
    assert wait_until(lambda: mon.step is not None)
    p = CompletionPanel("other", registry=reg, debounce=0)
    c = ChatAssistant("other", registry=reg, seed=0, n_words=3)
    for text in ["the ", "the fox ", "a dog ", "the bird sang "]:
        p.value = text
        assert p.suggestions == other.next_words(text, 5)
        c.send(text)
    assert c.messages[-1]["role"] == "assistant"
    assert not mon.done               # training really was running alongside
    mon.stop()
    assert mon.join(30) and reg.get(mon.registered_as).interrupted   # bg2, or bg2_interrupted before a validation


def test_background_training_errors(reg, monitors):
    with pytest.raises(ConfigError, match="hidden_dim"):
        start_background_training(registry=reg, name="bad", data=TEXT, options={"hidden_dim": -1})
    with pytest.raises(ConfigError, match="Unknown option"):
        start_background_training(registry=reg, name="bad", data=TEXT, options={"hiden_dim": 3})
    mon = start_background_training(registry=reg, name="bad", data="", options={})
    monitors.append(mon)
    assert mon.join(30)
    assert mon.model is None and "bad" not in reg and mon.error
    assert "Error:" in mon.status.value and "training 'bad' failed" in repr(mon)
