"""The plan of a training run: network, optimizer, batch, epochs and steps, from the data, the options, the
time budget and the measured step time. One pure function, ``plan``; ``api.train`` calls it twice: before
the first step (sizes, and epochs to convergence) and once the first steps are timed (epochs and steps
that fit the budget). The training summary shows its reasons.

Sizes left at None (and optimizer='auto') are chosen from the number of training tokens N:

    ===========  =====  ======  ======  =======  =====  =====================  ==========================
    N tokens     embed  hidden  layers  dropout  batch  optimizer (lr, clip)   epochs (to convergence)
    ===========  =====  ======  ======  =======  =====  =====================  ==========================
    < 50k        200    200     1       0.6      1-16   SGD (20, 0.25)         30 (a cell: many tiny passes)
    < 300k       200    200     1       0.6      8-32   SGD (20, 0.25)         clamp(6M / N, 3, 20)
    < 3M         256    256     1       0.2      64     AdamW (0.003, 1.0)     clamp(6M / N, 1, 20)
    >= 3M        256    512     2       0.2      64     AdamW (0.003, 1.0)     1
    ===========  =====  ======  ======  =======  =====  =====================  ==========================

(batch for tiny inputs: as many streams as leave each at least 4 windows of seq_len tokens; below 300k
tokens: one stream per 6k tokens, 8 to 32.)

The time budget (``budget``) covers the whole ``lm.train`` call: tokenizing, the n-gram baseline and the
copy index before training, the mixture weight after it. ``budget="auto"`` (the default) is

    ===============  ======================================================  ========================
    N tokens         default budget                                          e.g.
    ===============  ======================================================  ========================
    <= 300k          6 s + N / 5,000 s, at most 57 s                          18 s at 60k, 57 s at 300k
    > 300k           57 s x sqrt(N / 300k), at most 10 minutes                180 s at 3M
    ===============  ======================================================  ========================

and no budget when ``epochs`` or ``max_steps`` is given, in a distributed run, or with ``budget=None``
(the CLI passes None unless ``--budget`` is given): those train the epochs above, to convergence. With a
budget, the epochs above are the most the run trains; the steps that fit are

    steps = (budget - seconds spent so far - seconds after training - validations) / step time

(at least ``_MIN_STEPS``), the learning-rate schedule is laid over those steps (its cosine ends when the
budget does), and the loop ends at the budget's deadline with its best weights, validating the partial
epoch, like ``max_time``. Why budget by time and not by tokens: the cost of a run is what a user waits
for, and the step time differs 10x between a quiet and a busy machine (issue 21).

Optimizer ('auto'): below 300k tokens the textbook's SGD with lr 20 and the gradient norm clipped at 0.25,
which on a cell's text reached a validation perplexity 35-65% below AdamW's at any lr tried, and on
columns of docstrings and Shakespeare 20-40% below; above, AdamW, which gets there in fewer steps on more
text. A learning rate that is given picks the optimizer it was written for: below 1 AdamW, 1 and more SGD
(their scales are a thousand times apart). AdamW chosen below 300k tokens (optimizer='adamw', or a given
lr below 1) trains the network it was tuned with: 200/200 below 50k tokens, 128/256 with dropout 0.5 from
there. AdamW's learning rate is 0.03 below 50k tokens (few epochs of a cell learn fastest with it), 0.01
below 300k and 0.003 above (big data wants a gentler step).

Why 1x256 up to 3M tokens: on WikiText-2 (2.1M tokens) it reaches the textbook model's one-epoch
validation perplexity in 80 s of training where 1x512 needs 132 s (benchmarks/time_to_quality.py; 45 s
since the AdamW betas of training.ADAM_BETAS), and its keystroke update takes under 1 ms instead of 2+ ms
(benchmarks/latency.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..config import TrainConfig
from .model import network_hparams

__all__ = ["Plan", "plan", "size_config", "fit_to_data", "few_epochs_recipe", "adamw_lr_for", "FEW_EPOCHS", "default_budget", "resolve_budget", "val_seconds",
           "outlook", "summary_lines", "SGD_BELOW", "EVAL_COST"]

# Below this many training tokens optimizer='auto' is SGD (on a tied 200/200 network); from it on, AdamW.
SGD_BELOW = 300_000
# SGD's network: the textbook's optimizer wants a tied output layer as wide as the LSTM, and heavy dropout.
_SGD_NET = dict(embed_dim=200, hidden_dim=200, num_layers=1, dropout=0.6)
# The default budget of a column of 300k training tokens (about a minute on 2 cores, issue 21).
_COLUMN_BUDGET_S = 57.0
# The fewest steps a budgeted run plans, even when the budget is spent before training starts: a model
# that trained 20 steps predicts something; one that trained none does not exist.
_MIN_STEPS = 20
# A budget that buys fewer epochs than this trains with few_epochs_recipe's optimizer and dropout.
FEW_EPOCHS = 3
_FEW_EPOCHS_DROPOUT = 0.1
# A validation token costs about this share of a training token (forward only, no dropout, no backward,
# batches of 10 streams): what the planner assumes until the first validation has been timed.
EVAL_COST = 0.5


@dataclass(frozen=True)
class Plan:
    """What a training run will do, and why; ``model.report.plan`` after ``lm.train``.

    ``estimate_s`` is the whole call's expected seconds and ``step_s`` the measured step time (both None
    before the first steps are timed); ``budget_s`` None means no budget (train to convergence)."""

    config: TrainConfig              # resolved: every size, the optimizer, lr, batch and epochs
    epochs: int                      # passes planned (the last one may be partial: total_steps decides)
    total_steps: int                 # optimizer steps planned: the learning-rate schedule's length
    batch_size: int
    network: dict                    # the network's hyper-parameters (embed, hidden, layers, dropout, softmax)
    budget_s: Optional[float]
    estimate_s: Optional[float] = None
    step_s: Optional[float] = None
    windows: int = 0                 # optimizer steps in one epoch
    tier: str = ""
    limited_by: str = "epochs"       # "epochs" (to convergence), "budget" or "max_steps"
    max_epochs: int = 0              # the epochs to convergence (what the run trains without a budget)
    reasons: List[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Training tokens the planned steps read (all ranks' in a distributed run count once each)."""
        return self.total_steps * self.batch_size * self.config.seq_len

    def describe(self) -> str:
        """One line a front-end can show: 'about 50 s, 8 epochs (1,360 steps) in a 60 s budget'."""
        when = f"about {_secs(self.estimate_s)}, " if self.estimate_s is not None else ""
        budget = f" in a {_secs(self.budget_s)} budget" if self.budget_s is not None else ""
        return f"{when}{self.epochs} epoch{'s' if self.epochs != 1 else ''} ({self.total_steps:,} steps){budget}"


def _secs(s: Optional[float]) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# ------------------------------------------------------------------------------------------ the budget

def default_budget(n_tokens: int) -> float:
    """Seconds of the whole call for an interactive run on n_tokens training tokens (see the table above)."""
    # Just under the targets (20 s at 60k tokens, 60 s at 300k, the whole call): the plan aims at
    # the budget, and a run ends within a step and a validation of it.
    if n_tokens <= SGD_BELOW:
        return float(min(_COLUMN_BUDGET_S, 6.0 + n_tokens / 5_000))
    return float(min(600.0, _COLUMN_BUDGET_S * math.sqrt(n_tokens / SGD_BELOW)))


def resolve_budget(cfg: TrainConfig, n_tokens: int, distributed: bool = False) -> Tuple[Optional[float], List[str]]:
    """The budget in seconds (None: none) that cfg.budget asks for, and why."""
    if cfg.budget is None:
        return None, []
    if cfg.budget != "auto":
        return float(cfg.budget), [f"budget {_secs(cfg.budget)} given"]
    if cfg.epochs is not None or cfg.max_steps is not None or distributed:
        return None, []        # a run that says how long it trains, or a distributed one: as asked
    b = default_budget(n_tokens)
    return b, [f"a default budget of {_secs(b)} for {n_tokens:,} training tokens (budget=None trains to "
               f"convergence; budget='10m' gives more time)"]


# ------------------------------------------------------------------------------------------ sizes

def size_config(cfg: TrainConfig, n_tokens: int) -> Tuple[TrainConfig, str, List[str]]:
    """Fill the options left at None (and optimizer='auto') from the number of training tokens; return
    (config, tier, reasons). The epochs filled in are the run's epochs to convergence."""
    optimizer = cfg.optimizer
    if optimizer == "auto":
        # A given learning rate tells which optimizer it was written for: AdamW's are 0.0003-0.1, SGD's
        # 1-40 (every lr in the tutorials, and in notebooks from before SGD was a default, is AdamW's).
        if cfg.lr is not None:
            optimizer = "sgd" if cfg.lr >= 1 else "adamw"
        else:
            optimizer = "sgd" if n_tokens < SGD_BELOW else "adamw"
    adamw_lr = adamw_lr_for(n_tokens)
    if n_tokens < 50_000:
        # A cell or a short column: the textbook's optimizer (SGD lr 20, clip 0.25) on a tied 200-unit
        # network with heavy dropout. Mean validation perplexity of seeds 0-1 on 463-7,206 tokens
        # (Shakespeare, stdlib docstrings; benchmarks/RESULTS.md): AdamW at the old 64/128 defaults 142-411,
        # this 51-172, the textbook's 200x2 network with its own recipe 64-245. From 20k to 46k tokens
        # (Shakespeare, docstrings, WikiText-2) it matched or beat the AdamW column defaults, in time too.
        size, tier = dict(_SGD_NET), "< 50k tokens"
        batch = int(np.clip(n_tokens // (cfg.seq_len * 4), 1, 16))
        epochs = 30
    else:
        batch = 64
        epochs = int(np.clip(round(6e6 / n_tokens), 1, 20))
        if n_tokens < SGD_BELOW:
            # A column: more (smaller) steps the less text there is. Under SGD the cell's network: on
            # 51k-228k tokens of docstrings and Shakespeare 20-40% lower validation perplexity than AdamW,
            # sooner too; on WikiText-2 a tie at the end (benchmarks/RESULTS.md). AdamW's own: a column
            # of tens of thousands of words overfits a 256-unit LSTM within a few passes, so more dropout
            # (time_to_quality --tier column: val ppl 220 -> 156 on 56k tokens; 231 -> 201 in 60 s on 205k).
            size = dict(_SGD_NET) if optimizer == "sgd" else dict(embed_dim=128, hidden_dim=256, num_layers=1,
                                                                   dropout=0.5)
            tier = "< 300k tokens"
            batch = int(np.clip(n_tokens // 6_000, 8, 32))
            epochs = max(epochs, 3)
        elif n_tokens < 3_000_000:
            size, tier = dict(embed_dim=256, hidden_dim=256, num_layers=1, dropout=0.2), "< 3M tokens"
        else:
            size, tier = dict(embed_dim=256, hidden_dim=512, num_layers=2, dropout=0.2), ">= 3M tokens"
    sgd = optimizer == "sgd"
    chosen = dict(size, batch_size=batch, epochs=epochs, lr=20.0 if sgd else adamw_lr,
                  grad_clip=0.25 if sgd else 1.0)
    fill = {k: v for k, v in chosen.items() if getattr(cfg, k) is None}
    if cfg.optimizer == "auto":
        fill = {"optimizer": optimizer, **fill}
    reasons = []
    if fill:
        reasons.append(f"sized for {n_tokens:,} training tokens ({tier}): "
                       + ", ".join(f"{k}={v}" for k, v in fill.items()))
    return cfg.replace(**fill), tier, reasons


def adamw_lr_for(n_tokens: int) -> float:
    """AdamW's learning rate for n_tokens training tokens: 0.03 below 50k, 0.01 below 300k, 0.003 above."""
    return 0.03 if n_tokens < 50_000 else 0.01 if n_tokens < SGD_BELOW else 0.003


def few_epochs_recipe(asked: TrainConfig, sized: TrainConfig, epochs_that_fit: float,
                      n_tokens: int) -> Tuple[TrainConfig, List[str]]:
    """The optimizer and dropout for a run whose budget buys fewer than FEW_EPOCHS passes, and why.

    The defaults above are recipes for training to convergence: SGD at lr 20 with dropout 0.6 wins over
    many passes and loses over a few, where heavy dropout only slows learning (there is no time to
    overfit). When the budget buys few passes, the options the user left to the data become AdamW at the
    tier's learning rate and dropout 0.1. Measured (seed 0, 1 thread, the whole call's budget;
    benchmarks/RESULTS.md): WikiText-2 sentences, 298k tokens in 57 s (1 epoch), validation perplexity 421
    (SGD, dropout 0.6) -> 263 (AdamW, 0.1); 58k tokens in 18 s (2 epochs), 222 -> 204; but in 45 s (4
    epochs) SGD's 176 beat AdamW's 183: the line is at 3 epochs. Options given are kept."""
    if epochs_that_fit >= FEW_EPOCHS:
        return sized, []
    change: dict = {}
    if asked.optimizer == "auto" and asked.lr is None and sized.optimizer != "adamw":
        change.update(optimizer="adamw", lr=adamw_lr_for(n_tokens), grad_clip=1.0 if asked.grad_clip is None
                      else asked.grad_clip)
    if asked.dropout is None and (sized.dropout or 0.0) > _FEW_EPOCHS_DROPOUT:
        change["dropout"] = _FEW_EPOCHS_DROPOUT
    if not change:
        return sized, []
    shown = ", ".join(f"{k}={v}" for k, v in change.items())
    return sized.replace(**change), [f"the budget buys {epochs_that_fit:.1f} epochs: {shown} (in few passes "
                                     f"they learn faster than the recipe for training to convergence)"]


def fit_to_data(cfg: TrainConfig, n_tokens: int) -> Tuple[TrainConfig, List[str]]:
    """Shrink batch_size and seq_len that the training tokens (one rank's shard) cannot fill, and say so."""
    notes: List[str] = []
    rows_per_stream = n_tokens // cfg.batch_size
    if rows_per_stream < 2:
        cfg = cfg.replace(batch_size=max(1, n_tokens // 2))
        rows_per_stream = n_tokens // cfg.batch_size
        notes.append(f"batch_size lowered to {cfg.batch_size} to fit {n_tokens} training tokens")
    if cfg.seq_len > rows_per_stream - 1:
        new_len = max(1, rows_per_stream - 1)
        notes.append(f"seq_len {cfg.seq_len} is longer than the data allows; using {new_len}")
        cfg = cfg.replace(seq_len=new_len)
    return cfg, notes


# ------------------------------------------------------------------------------------------ the plan

def plan(cfg: TrainConfig, n_tokens: int, vocab_size: int, *, shard_tokens: Optional[int] = None,
         distributed: bool = False, budget_s: Optional[float] = None, step_s: Optional[float] = None,
         spent_s: float = 0.0, after_s: float = 0.0, val_s: Optional[float] = None, done_steps: int = 0,
         val_tokens: int = 0) -> Plan:
    """The plan for training on n_tokens training tokens over a vocabulary of vocab_size words.

    Pure and deterministic: the same arguments give the same plan. cfg may leave sizes to the data (the
    table above); ``cfg.budget`` is resolved here unless ``budget_s`` is given (the caller resolved it
    once, so that a re-plan keeps it). ``shard_tokens``: one rank's share of the training tokens (default
    all). With the measured ``step_s`` (seconds per optimizer step) and a budget, the steps follow from
    what is left of it: ``budget_s - spent_s`` (seconds since the call started) ``- after_s`` (expected
    after training) ``-`` the validations (``val_s`` each, measured, or estimated from ``val_tokens``),
    counting ``done_steps`` already taken. Without a step time, or without a budget, the plan trains
    the epochs to convergence (or max_steps).

    >>> p = plan(TrainConfig(), 60_000, 7_000, step_s=0.03, spent_s=2.0, after_s=1.0)   # doctest: +SKIP
    >>> p.epochs, p.total_steps, p.limited_by                                          # doctest: +SKIP
    (3, 361, 'budget')
    """
    sized, tier, reasons = size_config(cfg, n_tokens)
    hparams, why_net = network_hparams(sized, vocab_size)
    sized, fitted = fit_to_data(sized, shard_tokens if shard_tokens is not None else n_tokens)
    reasons = reasons + why_net + fitted
    if budget_s is None and cfg.budget is not None:
        budget_s, why_budget = resolve_budget(cfg, n_tokens, distributed)
        reasons += why_budget
    shard = shard_tokens if shard_tokens is not None else n_tokens
    windows = max(1, math.ceil((shard // sized.batch_size - 1) / sized.seq_len))
    max_epochs = int(sized.epochs)
    total = windows * max_epochs
    limited_by = "epochs"
    if sized.max_steps and sized.max_steps < total:
        total, limited_by = int(sized.max_steps), "max_steps"
    estimate = None
    if step_s is not None and step_s > 0:
        val_each = val_s if val_s is not None else val_seconds(val_tokens, sized, step_s)
        if budget_s is not None:
            left = budget_s - spent_s - after_s
            fits = _steps_that_fit(left, step_s, val_each, windows, done_steps)
            if fits < total:
                # The fewest steps a run takes, even past its budget; once taken, the budget ends it.
                floor = min(total, max(_MIN_STEPS, done_steps))
                total, limited_by = max(fits, floor), "budget"
                if total > max(windows, floor, done_steps) and total % windows < windows // 4:
                    # A sliver of an epoch buys little and costs a validation: end at the whole epoch.
                    total = max(total - total % windows, floor, done_steps)
                if fits < floor and done_steps < _MIN_STEPS:
                    reasons.append(f"the budget was spent before training ({spent_s:.1f} s of {budget_s:.0f} s); "
                                   f"{total} steps only")
        epochs_left = math.ceil(total / windows) - done_steps // windows
        estimate = spent_s + (total - done_steps) * step_s + max(1, epochs_left) * val_each + after_s
    epochs = max(1, math.ceil(total / windows))
    if limited_by == "budget" and step_s:
        sized, why = few_epochs_recipe(cfg, sized, total / windows, n_tokens)
        hparams = dict(hparams, dropout=sized.dropout)
        reasons += why
    if limited_by == "budget":
        reasons.append(f"{epochs} epoch{'s' if epochs != 1 else ''} ({total:,} steps of {_ms(step_s)}) fit the "
                       f"{_secs(budget_s)} budget (convergence would take {max_epochs})")
    resolved = sized.replace(epochs=epochs)
    network = {k: hparams[k] for k in ("embed_dim", "hidden_dim", "num_layers", "dropout", "tie_weights",
                                       "adaptive")}
    return Plan(resolved, epochs, int(total), int(sized.batch_size), network, budget_s, estimate, step_s,
                windows, tier, limited_by, max_epochs, reasons)


def val_seconds(val_tokens: int, cfg: TrainConfig, step_s: float) -> float:
    """Seconds of an LSTM pass over val_tokens tokens, priced from the training step time (what the planner
    assumes until a validation has been timed)."""
    return val_tokens / (cfg.batch_size * cfg.seq_len) * step_s * EVAL_COST


def _steps_that_fit(left_s: float, step_s: float, val_s: float, windows: int, done_steps: int) -> int:
    """The total steps (done ones included) whose remaining steps and epoch-end validations fit left_s."""
    # Each epoch (windows steps) ends with a validation: per step, step_s + val_s / windows; the partial
    # last epoch validates too (one more val_s).
    per_step = step_s + val_s / windows
    more = int((left_s - val_s) / per_step) if left_s > val_s else 0
    return done_steps + max(0, more)


def _ms(s: Optional[float]) -> str:
    return "?" if s is None else (f"{s * 1e3:.0f} ms" if s >= 0.01 else f"{s * 1e3:.1f} ms")


# ------------------------------------------------------------------------------------------ the outlook

# Below this fall in validation perplexity per doubling of the tokens trained, the curve counts as flat.
_FLAT_PER_DOUBLING = 0.01


def outlook(history: Sequence[Any], train_s: float, the_plan: Optional[Plan], more_s: float = 60.0) -> str:
    """What ``more_s`` more seconds of training would likely give a budgeted run, from the slope of its
    validation curve; "" for a run without a budget (it trained to convergence, or as long as asked).

    The curve is taken as a power law in the tokens trained, ppl ~ tokens^-a, fitted on the last three
    epochs' validation perplexities (log-log least squares): more time buys tokens at the run's rate.
    A cosine schedule anneals at the end, so the slope is a likely upper bound: "would likely".
    ``history``: EpochInfo-like objects (tokens, val_ppl, elapsed)."""
    if the_plan is None or the_plan.budget_s is None or the_plan.limited_by != "budget":
        return ""
    points = [(float(e.tokens), float(e.val_ppl)) for e in history
              if e.tokens > 0 and e.val_ppl == e.val_ppl and math.isfinite(e.val_ppl)]
    if not points:
        return ""
    best_i = min(range(len(points)), key=lambda i: points[i][1])
    if points[-1][1] > points[best_i][1]:
        return (f"validation perplexity rose after epoch {best_i + 1}: more time would likely not help "
                f"(more text would)")
    if len(points) < 2:
        return "one validation so far: too early to tell what more time would give"
    tail = points[-3:]
    xs = [math.log(t) for t, _ in tail]
    ys = [math.log(p) for _, p in tail]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    a = -sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
    if a * math.log(2) < _FLAT_PER_DOUBLING:
        return "the validation curve has flattened: more time would likely change little"
    tokens_now, best = points[-1]
    rate = tokens_now / train_s if train_s > 0 else 0.0
    if rate <= 0:
        return ""
    ratio = ((tokens_now + rate * more_s) / tokens_now) ** (-a)
    gain = 1.0 - ratio
    what = "another minute" if more_s == 60 else f"another {_secs(more_s)}"
    return (f"{what} would likely lower validation perplexity by ~{gain:.0%} (to about {best * ratio:,.0f}; "
            f"budget='{_budget_text(train_s + more_s)}' or more)")


def _budget_text(seconds: float) -> str:
    return f"{math.ceil(seconds / 60)}m" if seconds >= 60 else f"{math.ceil(seconds)}s"


def summary_lines(the_plan: Optional[Plan], steps: int, tokens: int, epochs_run: int, stop_reason: str,
                  the_outlook: str) -> List[str]:
    """The lines a training summary adds about the budget: what it was, what it bought, what more time
    would likely give. None for a run without a budget."""
    if the_plan is None or the_plan.budget_s is None:
        return []
    ended = {"budget": "ended at the budget", "early stop": "stopped early",
             "finished": "the planned steps" if the_plan.limited_by == "budget" else "trained to convergence"}
    line = (f"budget {_secs(the_plan.budget_s)}: bought {epochs_run} epoch{'s' if epochs_run != 1 else ''}, "
            f"{steps:,} steps, {tokens:,} tokens ({ended.get(stop_reason, stop_reason)})")
    if the_plan.limited_by == "budget" and the_plan.step_s is not None:
        line += (f"; the full {_max_epochs(the_plan)} epochs would have needed "
                 f"about {_secs(the_plan.windows * _max_epochs(the_plan) * the_plan.step_s)} of training")
    return [line] + ([the_outlook] if the_outlook else [])


def _max_epochs(the_plan: Plan) -> int:
    """The epochs to convergence that the plan's reasons name (its config holds the budget's)."""
    return int(the_plan.max_epochs) if the_plan.max_epochs else the_plan.epochs
