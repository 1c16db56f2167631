"""How long: time texts, the training bar's elapsed / time left, the one-line result, the CLI's progress
lines, and the bar that long %lm_score / %lm_compare runs show at once (issue 21, "always show how long",
"long commands never block silently"). No wall time is asserted: clocks and StepInfo sequences are fakes."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pandas as pd
import pytest

from lm_magics import magics as magics_module
from lm_magics import progress as P
from lm_magics.cli import main
from lm_magics.engine.training import EpochInfo, StepInfo
from lm_magics.registry import get_registry

from conftest import TINY_OPTIONS, registered


def step(n: int, total: int = 100, elapsed: float = 10.0, epoch: int = 1, **extra) -> StepInfo:
    info = StepInfo(n, total, epoch, 4.0, 0.1, n * 100, n * 100 / max(elapsed, 1e-9), elapsed)
    for k, v in extra.items():             # eta / budget: the engine's newer fields, where it has them
        setattr(info, k, v)
    return info


# ------------------------------------------------------------------------------------------ time texts

def test_clock_and_duration_texts():
    assert [P.clock(s) for s in (0, 40.4, 72, 3723)] == ["0:00", "0:40", "1:12", "1:02:03"]
    assert [P.duration(s) for s in (3.21, 48.2, 125, 3600, 3720)] == ["3.2 s", "48 s", "2 min 5 s", "1 h",
                                                                     "1 h 2 min"]


def test_time_left_from_the_steps_the_engine_or_the_budget():
    assert P.time_left(step(1)) is None                                # the first step carries the warm-up
    assert P.time_left(step(20, total=100, elapsed=10.0)) == pytest.approx(40.0)   # 80 steps x 0.5 s
    assert P.time_left(step(20, elapsed=10.0, eta=7.0)) == 7.0        # the engine's estimate wins
    assert P.time_left(step(20, elapsed=10.0, budget=30.0)) == pytest.approx(20.0)   # never past the budget
    text = P.time_text(step(20, elapsed=72.0, budget=120.0))
    assert text == "1:12 elapsed, about 0:48 left (budget 2:00)"
    assert P.time_text(step(1, elapsed=0.3)) == "0:00 elapsed, estimating the time left…"
    assert P.time_text(step(20, elapsed=10.0), elapsed=15.0).startswith("0:15 elapsed, about 0:40 left")


def test_plan_text_reads_any_plan_object():
    assert P.plan_text(SimpleNamespace(seconds=50.0, epochs=8, steps=1240, budget=60.0)) == \
        "about 50 s, 8 epochs, 1,240 steps, budget 1:00"
    assert P.plan_text({"epochs": 1}) == "1 epoch" and P.plan_text(object()) == ""


def _fake_model(interrupted=False, stop_reason="finished", epochs=8, steps=1240, best_epoch=7, val_ppl=152.04):
    history = [SimpleNamespace(epoch=e) for e in range(1, epochs + 1)]
    report = SimpleNamespace(interrupted=interrupted, stop_reason=stop_reason, history=history, steps=steps,
                             best_epoch=best_epoch, elapsed=40.0, config=SimpleNamespace(epochs=20))
    return SimpleNamespace(report=report, meta={"val_ppl": val_ppl, "elapsed": 48.2})


def test_run_line_says_what_a_run_did_in_one_line():
    assert P.run_line(_fake_model()) == \
        "Done in 48 s: 8 epochs, 1,240 steps, best validation perplexity 152.0 (epoch 7)"
    assert P.run_line(_fake_model(stop_reason="early stop"), elapsed=30.0).startswith(
        "Done in 30 s (early stop after epoch 8 of 20): 8 epochs")
    assert "(time limit reached in epoch 8 of 20)" in P.run_line(_fake_model(stop_reason="max_time"))
    stopped = P.run_line(_fake_model(interrupted=True, epochs=2, steps=130, best_epoch=2), elapsed=12.0,
                         last_epoch=3)
    assert stopped == "Stopped after 12 s in epoch 3: 2 full epochs, 130 steps, best validation perplexity " \
                      "152.0 (epoch 2)"
    first = P.run_line(_fake_model(interrupted=True, epochs=0, steps=9, best_epoch=None, val_ppl=400.0),
                       elapsed=2.0, last_epoch=1)
    assert first == "Stopped after 2.0 s in epoch 1: 9 steps, validation perplexity 400.0 (part of epoch 1)"
    assert "\n" not in P.run_line(_fake_model())


# ------------------------------------------------------------------------------------------ the tqdm bar

def test_training_bar_shows_elapsed_and_time_left():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = P.TrainProgress(desc="training 'x'", file=out, epoch_lines=True)
    for n in range(1, 21):
        bar.on_step(step(n, total=100, elapsed=n * 0.5))
    assert bar.postfix(step(20, total=100, elapsed=10.0)).startswith("0:10 elapsed, about 0:40 left, epoch=1, ")
    assert "0:10 elapsed, about 0:40 left" in bar._bar.postfix
    bar.on_epoch(EpochInfo(1, 4.0, 150.0, 0.1, 2000, 200.0, 10.0, True))
    bar.on_plan({"seconds": 50.0, "epochs": 5})
    bar.close("finished")
    text = out.getvalue()
    assert "training 'x': epoch 1, validation perplexity 150.0 (best so far), 0:10 elapsed, about 0:40 left" in text
    assert "0:10 in all, epoch=1, loss=4.000, ppl=54.6, val_ppl=150.0, tok/s=" in text and "(finished)" in text


# ------------------------------------------------------------------------------------------ the CLI

def test_cli_train_shows_times_on_stderr(tmp_path, tiny_text, capsys):
    (tmp_path / "t.txt").write_text(tiny_text)
    opts = {k: str(v) for k, v in TINY_OPTIONS.items()}
    args = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]
    assert main(["train", str(tmp_path / "t.txt"), "-o", str(tmp_path / "m.lm"), *args]) == 0
    err = capsys.readouterr().err
    assert " elapsed, about " in err and " left" in err                 # on the bar, from the first steps
    assert "training: epoch 1, validation perplexity " in err            # a lasting line per epoch
    assert " in all, epoch=3, " in err


# ------------------------------------------------------------------------------------------ long commands

def test_measure_scoring_uses_the_rows_their_length_and_the_model_speed(tiny_model, monkeypatch):
    monkeypatch.setattr(P, "_rates", type(P._rates)())    # a speed measured by an earlier test is not this one's
    ticks = iter([0.0, 0.5])
    texts = ["the cat sat on the mat ."] * 1000          # 7 tokens + the end of the row
    secs = P.measure_scoring(tiny_model, texts, clock_fn=lambda: next(ticks))
    rate = 64 * 8 / 0.5                                   # the sample: 64 rows of 8 tokens in 0.5 s
    assert secs == pytest.approx(1000 * 8 / rate)
    assert P.measure_scoring(tiny_model, texts, passes=2) == pytest.approx(2 * secs)   # the speed is kept
    assert P.scoring_seconds(0, 5, 100) == 0.0 and P.measure_scoring(tiny_model, [None, " "]) == 0.0


def test_work_progress_moves_with_the_work_and_the_clock():
    pytest.importorskip("tqdm")
    from conftest import wait_until

    bar = P.WorkProgress(1000, 40.0, desc="scoring 'text':", file=io.StringIO(), tick_s=0)
    assert bar.label == "scoring 'text': 1,000 rows, about 40 s"
    bar.on_chunk(250, 500)                   # two passes of 250 rows: half done
    assert bar._bar.n == 500
    bar.close()
    ticking = P.WorkProgress(1000, 0.001, file=io.StringIO(), tick_s=0.01)
    assert wait_until(lambda: ticking._bar.n >= 900, timeout=10)
    assert ticking._bar.n <= 950             # the clock alone never says it is done
    ticking.close()


class Recorder:
    """Stands in for WorkProgress: records what a magic showed and when."""
    made: list = []

    def __init__(self, total, estimate_s, desc="scoring", **kw):
        self.total, self.estimate_s, self.desc, self.chunks, self.closed = total, estimate_s, desc, [], None
        Recorder.made.append(self)

    def on_chunk(self, done, total):
        self.chunks.append((done, total))

    def close(self, discard=False):
        self.closed = "discarded" if discard else "closed"


@pytest.fixture
def long_frame(shell, tiny_model, monkeypatch):
    Recorder.made = []
    monkeypatch.setattr(magics_module, "WorkProgress", Recorder)
    monkeypatch.setattr(magics_module, "_ESTIMATE_FROM_ROWS", 1)
    shell.user_ns["big"] = pd.DataFrame({"text": ["The cat sat on the mat.", "The dog ran to the door."] * 20,
                                         "kind": ["a", "b"] * 20})
    with registered(shell, "timed", tiny_model):
        yield shell
    shell.user_ns.pop("big", None)


def test_a_long_score_shows_a_bar_at_once(long_frame, monkeypatch):
    shell = long_frame
    seen = []
    monkeypatch.setattr(magics_module, "estimate_seconds", lambda m, texts, passes=1: seen.append(passes) or 40.0)
    shell.run_line_magic("lm_score", "--name timed --df big --column text --baseline")
    assert seen == [1] and len(Recorder.made) == 1       # one pass: the n-gram and mixture columns come from it
    bar = Recorder.made[0]
    assert bar.total == 40 and bar.estimate_s == 40.0 and bar.desc == "scoring 'text':"
    assert bar.chunks and bar.chunks[-1][0] == bar.chunks[-1][1] and bar.closed == "closed"
    # a failure takes its bar away (the error says what happened)
    with pytest.raises(Exception, match="already exists"):
        shell.run_line_magic("lm_score", "--name timed --df big --column text")
    assert Recorder.made[-1].closed == "discarded"


def test_a_short_score_shows_nothing_extra(long_frame, monkeypatch):
    monkeypatch.setattr(magics_module, "estimate_seconds", lambda m, texts, passes=1: 0.5)
    long_frame.run_line_magic("lm_score", "--name timed --df big --column text --into quick_ppl")
    assert Recorder.made == []


def test_a_long_compare_shows_a_bar_and_word_counts_never_do(long_frame, monkeypatch):
    shell = long_frame
    monkeypatch.setattr(magics_module, "estimate_seconds", lambda m, texts, passes=1: 12.0)
    shell.run_line_magic("lm_compare", "--df big --column text --by kind")        # word counts: quick
    assert Recorder.made == []
    shell.run_line_magic("lm_compare", "--name timed --df big --column text --by kind")
    assert len(Recorder.made) == 1 and Recorder.made[0].chunks and Recorder.made[0].closed == "closed"
    assert get_registry(shell).get("timed") is not None


# ------------------------------------------------------------------------------------------ Stop and the curve

def test_a_stop_inside_the_first_epoch_validates_a_bounded_slice(tiny_text, monkeypatch):
    import lm_magics as lm
    from lm_magics.engine import training
    from lm_magics.engine.training import StopTraining

    def stop_at_once(info):
        raise StopTraining("stop")

    monkeypatch.setattr(training, "STOPPED_VAL_TOKENS", 20)
    model = lm.train(tiny_text, on_step=stop_at_once, **TINY_OPTIONS)
    assert model.interrupted and model.report.steps == 1 and model.meta["val_ppl"] is not None
    assert any("measured on the first 20 of" in n for n in model.report.notes)


def test_sparkline_labels_sit_left_of_the_curve():
    import re

    from lm_magics.display import sparkline_svg

    svg = sparkline_svg([7.25, 5.0, 4.0, 3.5])
    xs = [float(p.split(",")[0]) for p in re.search(r'points="([^"]+)"', svg).group(1).split()]
    label_x = [float(x) for x in re.findall(r'<text x="([\d.]+)"', svg)]
    assert len(label_x) == 2 and "7.25" in svg and "3.50" in svg and 'text-anchor="end"' in svg
    assert max(label_x) < min(xs)           # right-aligned labels end before the curve starts


def test_plan_text_uses_the_plans_own_words():
    class Plan:
        def describe(self):
            return "about 50 s, 8 epochs (1,360 steps) in a 60 s budget"
    assert P.plan_text(Plan()) == "about 50 s, 8 epochs (1,360 steps) in a 60 s budget"
    assert P.plan_text({"estimate_s": 50.0, "total_steps": 10, "budget_s": 60}) == "about 50 s, 10 steps, budget 1:00"
