"""The plan of a run (engine/planning.py): pure and deterministic given a step time, the budget's
resolution and parsing, a budget that ends a run with its best weights, the callbacks, the outlook."""

from __future__ import annotations

import math
import time as real_time
from types import SimpleNamespace

import pytest
import torch

import lm_magics as lm
from lm_magics.config import parse_budget
from lm_magics.engine import planning
from lm_magics.engine.planning import default_budget, plan, resolve_budget
from lm_magics.engine.training import auto_config

COLUMN = dict(n_tokens=60_000, vocab_size=7_000)


def _plan(budget, step_s=0.03, **kw):
    cfg = lm.TrainConfig(budget=budget)
    return plan(cfg, COLUMN["n_tokens"], COLUMN["vocab_size"], step_s=step_s, spent_s=2.0, after_s=1.0,
                val_tokens=6_000, **kw)


def test_the_plan_is_deterministic_given_a_step_time():
    assert _plan(20) == _plan(20)
    assert _plan(20, step_s=0.06) != _plan(20)          # and it does depend on the step time


def test_a_bigger_budget_never_plans_fewer_steps():
    steps = [_plan(b).total_steps for b in (3, 5, 10, 20, 40, 80, 160, 600, 3600)]
    assert steps == sorted(steps)
    assert steps[0] < steps[-1]
    big = _plan(3600)
    assert big.limited_by == "epochs" and big.total_steps == big.windows * big.max_epochs
    small = _plan(20)
    assert small.limited_by == "budget" and small.total_steps < big.total_steps
    assert small.epochs == math.ceil(small.total_steps / small.windows) and small.config.epochs == small.epochs


def test_the_plan_says_why():
    p = _plan(20)
    assert any(r.startswith("sized for 60,000 training tokens") for r in p.reasons)
    assert any("fit the 20 s budget" in r for r in p.reasons)
    assert p.estimate_s is not None and p.step_s == 0.03
    assert "in a 20 s budget" in p.describe()


def test_without_a_step_time_the_plan_trains_to_convergence():
    p = plan(lm.TrainConfig(), 500, 100)
    assert (p.epochs, p.limited_by, p.estimate_s) == (30, "epochs", None)
    assert p.budget_s == default_budget(500)             # the budget is known; the steps wait for a timing
    assert (p.network["hidden_dim"], p.config.optimizer) == (200, "sgd")


def test_the_sizes_are_auto_configs():
    for tokens in (500, 60_000, 1_000_000, 5_000_000):
        sized, why = auto_config(lm.TrainConfig(), tokens)
        p = plan(lm.TrainConfig(budget=None), tokens, 5_000)
        for k in ("embed_dim", "hidden_dim", "num_layers", "dropout", "lr", "optimizer", "epochs"):
            assert getattr(p.config, k) == getattr(sized, k)
        assert why[0] in p.reasons


def test_a_spent_budget_still_trains_a_few_steps():
    p = _plan(1)                                          # 2 s already spent of a 1 s budget
    assert p.total_steps == 20 and p.limited_by == "budget"
    assert any("budget was spent before training" in r for r in p.reasons)
    later = plan(lm.TrainConfig(budget=1), 60_000, 7_000, step_s=0.03, spent_s=5.0, done_steps=25)
    assert later.total_steps == 25                        # once the fewest are taken, the budget ends it


def test_a_budget_that_buys_few_epochs_trains_adamw_with_light_dropout():
    few = _plan(8)                                        # about one epoch of 0.03 s steps
    assert few.limited_by == "budget" and few.total_steps < planning.FEW_EPOCHS * few.windows
    assert (few.config.optimizer, few.config.dropout, few.config.lr) == ("adamw", 0.1, planning.adamw_lr_for(60_000))
    assert few.network["dropout"] == 0.1 and any(r.startswith("the budget buys") for r in few.reasons)
    many = _plan(60)                                      # several epochs: the recipe for convergence
    assert many.total_steps >= planning.FEW_EPOCHS * many.windows
    assert (many.config.optimizer, many.config.dropout, many.config.lr) == ("sgd", 0.6, 20.0)
    given = plan(lm.TrainConfig(budget=8, optimizer="sgd", dropout=0.4), 60_000, 7_000, step_s=0.03, spent_s=2.0,
                 after_s=1.0, val_tokens=6_000)
    assert (given.config.optimizer, given.config.dropout) == ("sgd", 0.4)      # what the user gave is kept
    assert plan(lm.TrainConfig(budget=8), 60_000, 7_000).config.optimizer == "sgd"   # untimed: as before


@pytest.mark.parametrize("given, expected", [
    ({}, "default"), ({"epochs": 3}, None), ({"max_steps": 10}, None), ({"budget": None}, None),
    ({"budget": "2m"}, 120.0), ({"epochs": 3, "budget": 30}, 30.0),
])
def test_when_a_run_has_a_budget(given, expected):
    budget, _ = resolve_budget(lm.TrainConfig(**given), 60_000)
    assert budget == (default_budget(60_000) if expected == "default" else expected)
    assert resolve_budget(lm.TrainConfig(), 60_000, distributed=True)[0] is None


def test_the_default_budget_grows_with_the_data_within_the_targets():
    # issue 21: 60k tokens in 20 s, 300k in 60 s for the whole call
    assert default_budget(60_000) <= 20 and default_budget(300_000) <= 60
    sizes = [1_000, 10_000, 60_000, 300_000, 1_000_000, 10**8]
    budgets = [default_budget(n) for n in sizes]
    assert budgets == sorted(budgets) and budgets[-1] == 600


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("2 min", 120.0), ("1.5h", 5400.0), ("none", None), ("off", None), (None, None), ("auto", "auto"),
])
def test_budget_reads_seconds_and_times(text, seconds):
    assert parse_budget(text) == seconds
    assert lm.TrainConfig(budget=text).budget == seconds


@pytest.mark.parametrize("bad", ["abc", "10x", "10m5", "m", "", -5, 0, True, [60], float("nan"), "9999h"])
def test_a_bad_budget_is_a_one_line_config_error(bad):
    with pytest.raises(lm.ConfigError) as err:
        lm.TrainConfig(budget=bad)
    assert "budget" in str(err.value) and "\n" not in str(err.value)


def test_budget_is_a_flag_of_the_cli_and_the_magic():
    from lm_magics.cli import _train_options, build_parser

    args = build_parser().parse_args(["train", "x.txt", "-o", "m.lm", "--budget", "10m"])
    assert _train_options(args)["budget"] == "10m" and lm.TrainConfig(**_train_options(args)).budget == 600.0
    # The CLI has no default budget: a shell run trains as long as its options say.
    args = build_parser().parse_args(["train", "x.txt", "-o", "m.lm"])
    assert _train_options(args)["budget"] is None


# ------------------------------------------------------------------------------------------ the outlook

def _history(ppls, tokens_each=10_000):
    return [SimpleNamespace(epoch=i + 1, tokens=(i + 1) * tokens_each, val_ppl=p, elapsed=float(i + 1))
            for i, p in enumerate(ppls)]


def test_the_outlook_reads_the_validation_curve():
    budgeted = _plan(20)
    falling = planning.outlook(_history([400, 300, 250, 220]), 4.0, budgeted)
    assert falling.startswith("another minute would likely lower validation perplexity by ~")
    flat = planning.outlook(_history([400, 300, 300, 300]), 4.0, budgeted)
    assert "flattened" in flat
    rose = planning.outlook(_history([400, 300, 310]), 3.0, budgeted)
    assert "rose after epoch 2" in rose
    assert planning.outlook(_history([400, 300]), 2.0, _plan(3600)) == ""     # no binding budget: nothing to say
    lines = planning.summary_lines(budgeted, 500, 175_000, 3, "budget", falling)
    assert lines[0].startswith("budget 20 s: bought 3 epochs, 500 steps, 175,000 tokens") and lines[1] == falling


# ------------------------------------------------------------------------------------------ whole runs

class _SlowClock:
    """time.perf_counter that also advances by `step` seconds per training step (a slow machine, no
    waiting): the budget's arithmetic sees slow steps, the test takes no longer."""

    def __init__(self, step: float):
        self.step, self.offset = step, 0.0

    def perf_counter(self) -> float:
        return real_time.perf_counter() + self.offset

    def __getattr__(self, name):
        return getattr(real_time, name)


@pytest.fixture
def slow_steps(monkeypatch):
    from lm_magics import api
    from lm_magics.engine import training

    clock = _SlowClock(0.25)
    real_step = training.train_step

    def slow_step(*a, **kw):
        clock.offset += clock.step
        return real_step(*a, **kw)

    monkeypatch.setattr(training, "time", clock)
    monkeypatch.setattr(api, "time", clock)
    monkeypatch.setattr(training, "train_step", slow_step)
    return clock


def test_the_budget_ends_a_run_with_its_best_weights(tiny_text, slow_steps):

    seen = {}
    m = lm.train(tiny_text * 4, seed=0, budget=6, hidden_dim=32, embed_dim=16, baseline=False, copy_window=0,
                 on_plan=lambda p: seen.setdefault("plans", []).append(p))
    r = m.report
    assert len(seen["plans"]) == 1 and seen["plans"][0].limited_by == "budget"
    assert r.plan.limited_by == "budget" and r.plan.budget_s == 6.0
    assert r.stop_reason in ("budget", "finished") and not m.interrupted
    assert r.steps < r.plan.windows * r.plan.max_epochs          # far fewer than convergence would take
    assert r.best_val_ppl == min(e.val_ppl for e in r.history)   # the best epoch's weights were kept
    assert m.meta["budget_s"] == 6.0 and m.config.epochs == r.plan.epochs
    assert any(n.startswith("budget 6 s: bought") for n in r.notes)
    corpus_val = m.report.history[r.best_epoch - 1].val_ppl
    assert corpus_val == r.best_val_ppl


def test_a_run_switches_to_the_few_epochs_recipe_once_it_is_timed(tiny_text, slow_steps):
    m = lm.train(tiny_text * 40, seed=0, budget=6, hidden_dim=32, embed_dim=16, baseline=False, copy_window=0)
    r = m.report
    assert r.plan.total_steps < planning.FEW_EPOCHS * r.plan.windows       # the slow clock leaves few epochs
    assert (m.config.optimizer, m.config.dropout, r.config.optimizer) == ("adamw", 0.1, "adamw")
    assert m.net.drop.p == 0.1 and any(n.startswith("the budget buys") for n in r.notes + r.plan.reasons)
    kept = lm.train(tiny_text * 40, seed=0, budget=6, hidden_dim=32, embed_dim=16, baseline=False, copy_window=0,
                    optimizer="sgd", dropout=0.3)
    assert (kept.config.optimizer, kept.config.dropout, kept.net.drop.p) == ("sgd", 0.3, 0.3)


def test_a_run_with_epochs_has_no_budget(tiny_text, slow_steps):
    m = lm.train(tiny_text, seed=0, epochs=2, hidden_dim=16, embed_dim=8, baseline=False, copy_window=0)
    assert m.report.plan.budget_s is None and m.meta["budget_s"] is None
    assert len(m.report.history) == 2 and m.report.stop_reason == "finished"
    assert not any(n.startswith("budget") for n in m.report.notes)


def test_callbacks_see_the_plan_the_baseline_first_and_the_time_left(tiny_text):
    order, steps = [], []
    m = lm.train(tiny_text, seed=0, epochs=3, hidden_dim=16, embed_dim=8,
                 on_baseline=lambda b: order.append(("baseline", b.kind, b.next_words("the", 2))),
                 on_plan=lambda p: order.append(("plan", p.epochs)),
                 on_step=lambda s: (steps.append((s.eta, s.budget)), order.append("step") if not steps[1:] else None))
    assert order[0][:2] == ("baseline", "ngram") and len(order[0][2]) == 2     # usable before the first step
    assert order[1] == "step" and ("plan", 3) in order
    assert steps[0] == (None, None)                       # no time left known before the steps are timed
    assert all(eta is None or eta >= 0 for eta, _ in steps) and any(eta is not None for eta, _ in steps[-3:])
    assert m.meta["threads"] >= 1 and m.report.threads == m.meta["threads"]


def test_on_baseline_and_on_plan_must_be_functions(tiny_text):
    with pytest.raises(lm.ConfigError, match="on_plan must be a function"):
        lm.train(tiny_text, on_plan=3)
    with pytest.raises(lm.ConfigError, match="on_baseline must be a function"):
        lm.train(tiny_text, on_baseline="x")


def test_the_thread_count_changes_the_weights_by_rounding_only(tiny_text):
    # Parallel sums add in another order: the weights after an epoch differ in the last bits (1e-8 here),
    # never more. Bit for bit repeatable runs give threads= (and budget=None).
    a = lm.train(tiny_text, seed=0, epochs=1, threads=1, precision="fp32", baseline=False, copy_window=0)
    b = lm.train(tiny_text, seed=0, epochs=1, threads=2, precision="fp32", baseline=False, copy_window=0)
    assert a.meta["threads"] == 1 and b.meta["threads"] == 2
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.allclose(va, vb, rtol=0, atol=1e-5), k
    again = lm.train(tiny_text, seed=0, epochs=1, threads=2, precision="fp32", baseline=False, copy_window=0)
    assert all(torch.equal(x, y) for x, y in zip(b.net.state_dict().values(), again.net.state_dict().values()))
