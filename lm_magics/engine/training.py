"""The training loop: SGD or AdamW (sparse-aware), warm-up + cosine schedule, truncated BPTT with carried
state, validation perplexity every epoch, early stopping, best weights kept, interrupt-safe.

The options a run trains with (network, optimizer, batch, epochs and steps) are planned by
``planning.plan`` from the data, the options, the time budget and the measured step time; ``fit`` takes a
resolved config, and a ``replan`` callback that fixes the steps once the first ones are timed. The
thread count is decided by ``threads.ThreadProbe`` from the first steps (see engine/threads.py).
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..config import PRECISION_ENV, TrainConfig, check_device, precision_override
from ..errors import ConfigError, TrainingDiverged
from .data import Corpus, batchify, windows
from .distributed import DIVERGED, GO, INTERRUPTED, MAX_TIME, PLANNED, Ranks, deferred_signals
from .model import LSTMLanguageModel, State
from .planning import SGD_BELOW, Plan, fit_to_data, size_config  # noqa: F401  (SGD_BELOW, fit_to_data: the old names, kept)
from .precision import native_bf16
from .threads import ThreadProbe, available_threads, others_load

__all__ = ["auto_config", "resolve_device", "StepInfo", "EpochInfo", "TrainReport", "fit", "evaluate",
           "StopTraining", "BestWeights", "train_step"]


class StopTraining(Exception):
    """Raised by a callback (or a Stop button) to end training early, keeping the best model."""


# ------------------------------------------------------------------------------------------ choices

def auto_config(cfg: TrainConfig, n_tokens: int) -> Tuple[TrainConfig, List[str]]:
    """Fill the options left at None (and optimizer='auto') from the number of training tokens; return
    (config, reasons). The sizing part of ``planning.plan`` (kept for callers and benchmarks)."""
    cfg, _, reasons = size_config(cfg, n_tokens)
    return cfg, reasons


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; anything else must be one lm_magics runs on, and available."""
    if isinstance(name, torch.device):
        name = str(name)
    check_device(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"Unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but no CUDA GPU is available; use device='auto' or 'cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); pick one of those or 'auto'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device={name!r} but MPS is not available; use device='auto' or 'cpu'.")
    return dev


_bf16_ok = native_bf16   # the old name, kept for callers and monkeypatching tests


# precision="auto" on a CPU with native bf16: bf16 autocast only for networks big enough to gain from it
# clearly. Measured on AMD EPYC (Zen 4), one training step, fp32 vs bf16 (benchmarks/precision.py,
# benchmarks/RESULTS.md, 2026-11-30): hidden 32 was 9-34% slower in bf16 at every batch; between 512 and
# 1,024 units x streams (64/128 at batch 4, 32/64 at batch 8, 200/200 at batch 4) the two were within
# -16%..+2% of each other; from 1,024 on (48/96 at batch 16, every tier of the data-sized defaults above
# the tiniest cells) bf16 was 24-54% faster. The line sits at 1,024, with that margin, because the other
# CPU kind (Intel with AMX) has not been measured: where the gain is small on one CPU it may be a loss on
# another. A fixed rule, not a timing probe, so that the same seed, data and machine always give the
# same model.
_BF16_MIN_HIDDEN = 64
_BF16_MIN_WORK = 1024         # hidden_dim x batch_size


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Train under bf16 autocast? ``$LM_MAGICS_PRECISION`` wins over ``cfg.precision``; "auto" means
    bf16 where the hardware has it natively and the network is big enough to gain from it."""
    precision = precision_override() or cfg.precision
    if precision == "bf16":
        return True
    if precision != "auto" or not _bf16_ok(device):
        return False
    if device.type != "cpu":
        return True
    hidden = cfg.hidden_dim or 0
    return hidden >= _BF16_MIN_HIDDEN and hidden * (cfg.batch_size or 1) >= _BF16_MIN_WORK


# ------------------------------------------------------------------------------------------ reports

@dataclass
class StepInfo:
    step: int                # optimizer steps so far (this run)
    total_steps: int         # planned steps (max_steps or epochs x windows)
    epoch: int               # 1-based
    loss: float              # training loss of this window (nats per token)
    lr: float
    tokens: int              # training tokens processed so far
    tokens_per_s: float
    elapsed: float
    eta: Optional[float] = None      # estimated seconds of training left (None until the first steps are timed)
    budget: Optional[float] = None   # the run's time budget in seconds (the whole call's; None: no budget)


@dataclass
class EpochInfo:
    epoch: int
    train_loss: float        # mean over the epoch's windows
    val_ppl: float
    lr: float
    tokens: int
    tokens_per_s: float
    elapsed: float
    best: bool               # the best validation perplexity so far


@dataclass
class TrainReport:
    """What happened in one training run; ``model.report`` after lm.train()."""

    config: TrainConfig
    history: List[EpochInfo] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    elapsed: float = 0.0
    best_epoch: Optional[int] = None
    best_val_ppl: Optional[float] = None
    interrupted: bool = False            # KeyboardInterrupt or Stop after the first step: the best model so
                                         # far was kept (front-ends never let it replace an existing one)
    stop_reason: str = ""                # "finished", "early stop", "max_steps", "max_time", "budget", "interrupted"
    notes: List[str] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)   # per-step training loss, for the curve
    precision: str = "fp32"
    device: str = "cpu"
    threads: Optional[int] = None        # torch threads the steps ran on (the last choice; see engine/threads.py)
    plan: Optional[Plan] = None          # the plan the run followed (api.train sets it; see engine/planning.py)
    outlook: str = ""                    # what more time would likely give, from the validation curve

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.elapsed if self.elapsed > 0 else 0.0


# ------------------------------------------------------------------------------------------ helpers

def _detach(state: Optional[State]) -> Optional[State]:
    """Cut the graph between BPTT windows: the state's values carry over, its history does not (else
    backward would run through every window since the start of the epoch)."""
    return None if state is None else (state[0].detach(), state[1].detach())


ADAM_BETAS = (0.7, 0.95)


def _make_optimizers(model: LSTMLanguageModel, cfg: TrainConfig, device: torch.device) -> List[Any]:
    if cfg.optimizer == "sgd":
        return [PlainSGD(list(model.parameters()), lr=cfg.lr)]
    # A sparse embedding gradient touches only the rows of the words in the batch: RowAdam updates
    # those rows instead of the whole V x E table (a third of a dense AdamW step at 33k words).
    sparse = model.embed.sparse
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if sparse and name == "embed.weight":
            continue
        (decay if p.dim() >= 2 and not name.startswith("embed") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Momentum 0.7 and a 0.95 second-moment average, not the usual (0.9, 0.999): the runs here are short
    # (hundreds to a few thousand steps), and a shorter memory learns faster in them at every tier
    # (seed 0, validation perplexity, benchmarks/RESULTS.md): a 3k-token cell 427 -> 283, a 60k-token
    # column 257 -> 212, 500 steps of WikiText-2 302 -> 291, one epoch of 117k tokens at 200x2 537 -> 331.
    kw: dict = {"betas": ADAM_BETAS}
    if device.type in ("cpu", "cuda"):
        kw["fused"] = True   # one kernel over all tensors instead of a Python loop of small ops
    try:
        opts: List[Any] = [torch.optim.AdamW(groups, lr=cfg.lr, **kw)]
    except (RuntimeError, TypeError):          # a torch or device without the fused kernel
        kw.pop("fused", None)
        opts = [torch.optim.AdamW(groups, lr=cfg.lr, **kw)]
    if sparse:
        opts.append(RowAdam(model.embed.weight, lr=cfg.lr, betas=ADAM_BETAS))
    return opts


class PlainSGD:
    """SGD without momentum or weight decay (p -= lr * grad), the same update as ``torch.optim.SGD`` at
    its defaults. Not torch.optim's: its first step in a process imports torch's compiler stack (about
    1 s, more than a whole cell-sized training run takes), and a cell trains with SGD by default.
    Offers what the training loop uses of an optimizer: ``param_groups`` (for the lr), ``zero_grad`` and
    ``step``."""

    def __init__(self, params: List[torch.Tensor], lr: float):
        self.param_groups = [{"params": params, "lr": lr}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)


class RowAdam:
    """Adam for a sparse embedding gradient: only the rows of the words in the batch are read and written
    (lazy Adam, the same update as ``torch.optim.SparseAdam``), in a few row-indexed tensor ops instead of
    SparseAdam's sparse-tensor bookkeeping: 0.75 -> 0.2 ms a step at 11k words and 200 dimensions.
    Offers what the training loop uses of an optimizer: ``param_groups`` (for the lr), ``zero_grad`` and
    ``step``."""

    def __init__(self, weight: torch.Tensor, lr: float, betas: Tuple[float, float] = ADAM_BETAS,
                 eps: float = 1e-8):
        self.weight, self.betas, self.eps = weight, betas, eps
        self.param_groups = [{"params": [weight], "lr": lr}]
        self.exp_avg = torch.zeros_like(weight, memory_format=torch.contiguous_format)
        self.exp_avg_sq = torch.zeros_like(weight, memory_format=torch.contiguous_format)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.weight.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grad = self.weight.grad
        if grad is None:
            return
        if not grad.is_sparse:
            raise ConfigError("RowAdam needs a sparse gradient (an embedding with sparse=True)")
        grad = grad.coalesce()
        rows, g = grad._indices()[0], grad._values()
        self.steps += 1
        b1, b2 = self.betas
        m = self.exp_avg.index_select(0, rows).lerp_(g, 1 - b1)               # b1 m + (1 - b1) g
        v = self.exp_avg_sq.index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
        self.exp_avg.index_copy_(0, rows, m)
        self.exp_avg_sq.index_copy_(0, rows, v)
        lr = self.param_groups[0]["lr"]
        step_size = lr * math.sqrt(1 - b2 ** self.steps) / (1 - b1 ** self.steps)
        self.weight.index_add_(0, rows, m.div_(v.sqrt_().add_(self.eps)), alpha=-step_size)


def _clip(model: nn.Module, max_norm: float) -> None:
    """Clip the global gradient norm, sparse embedding gradient included. A sparse gradient is coalesced
    here once (its norm needs it, and RowAdam then finds it done); the dense norms and the scaling run
    as one foreach call each where torch has them."""
    dense, sparse = [], []
    for p in model.parameters():
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sparse.append(p.grad)
        else:
            dense.append(p.grad)
    foreach = hasattr(torch, "_foreach_norm") and all(g.device == dense[0].device for g in dense)
    norms = (torch._foreach_norm(dense) if foreach else [torch.linalg.vector_norm(g) for g in dense]) if dense else []
    sq = torch.stack(norms).square().sum() if norms else torch.zeros(())
    for g in sparse:
        sq = sq + g._values().square().sum()
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    if dense and foreach:
        torch._foreach_mul_(dense, scale)
    else:
        for g in dense:
            g.mul_(scale)
    for g in sparse:
        g.mul_(scale)


# What a re-plan may change in a running fit (planning.few_epochs_recipe).
_RECIPE = ("optimizer", "lr", "grad_clip", "dropout")


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up over the first 2% of steps (at most 200), then cosine down to 10% or constant."""
    warm = min(200, max(1, total // 50))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant" or total <= warm:
        return cfg.lr
    t = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


class BestWeights:
    """The weights of the best validation perplexity so far, and how many epochs have not beaten it."""

    def __init__(self, patience: int):
        self.patience = patience
        self.ppl = math.inf
        self.state: Optional[dict] = None
        self.epoch: Optional[int] = None
        self.bad = 0

    def update(self, model: nn.Module, epoch: int, val_ppl: float) -> bool:
        """Record an epoch's validation perplexity; snapshot the weights when it is the best."""
        if val_ppl < self.ppl:
            # Copy first, then record: a Ctrl-C during the copy leaves the previous best whole.
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.state, self.ppl, self.epoch, self.bad = state, val_ppl, epoch, 0
            return True
        self.bad += 1
        return False

    @property
    def patience_spent(self) -> bool:
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)

    @property
    def best_ppl(self) -> Optional[float]:
        return self.ppl if math.isfinite(self.ppl) else None


def train_step(forward: nn.Module, model: LSTMLanguageModel, opts: List[Any],
               x: torch.Tensor, y: torch.Tensor, state: Optional[State], lr: float, cfg: TrainConfig,
               bf16: bool = False) -> Tuple[torch.Tensor, State]:
    """One optimizer step on window (x, y): returns (loss, state). ``forward`` is the model or its
    DistributedDataParallel wrapper; ``model`` is the network whose gradients are clipped."""
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = lr
    state = _detach(state)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, state = forward(x, state, targets=y)
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()            # under DDP, gradients are averaged over the ranks here
    if cfg.grad_clip > 0:
        _clip(model, cfg.grad_clip)
    for opt in opts:
        opt.step()
    return loss, state


@torch.no_grad()
def nll_totals(model: LSTMLanguageModel, ids: np.ndarray, seq_len: int = 35, batch_size: int = 10,
               device: Optional[torch.device] = None) -> Tuple[float, int]:
    """(summed negative log-likelihood in nats, number of predicted tokens) over a token stream, state
    carried across windows as in training. Sums, not a mean, so that ranks can add theirs up."""
    device = device or next(model.parameters()).device
    if ids.size < 2:
        return 0.0, 0
    batch_size = max(1, min(batch_size, ids.size // 2))
    data = batchify(ids, batch_size).to(device)
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for x, y in windows(data, seq_len):
            feats, state = model.features(x, state)
            total += model.nll(feats, y).sum().item()
            count += y.numel()
    finally:
        model.train(was_training)
    return total, count


def _ppl(total: float, count: float) -> float:
    return math.exp(min(total / count, 50.0)) if count > 0 else float("inf")


def evaluate(model: LSTMLanguageModel, ids: np.ndarray, seq_len: int = 35, batch_size: int = 10,
             device: Optional[torch.device] = None) -> float:
    """Perplexity over a token stream (inf for too little text)."""
    return _ppl(*nll_totals(model, ids, seq_len, batch_size, device))


# ------------------------------------------------------------------------------------------ the loop

def one_thread_is_enough(hidden_dim: int, batch_size: int, vocab_size: int) -> bool:
    """The old fixed rule (tiny networks over small vocabularies on one thread), kept for the benchmarks
    that pin a thread count; training now times its first steps instead (engine/threads.py). The output
    layer counts: 200 units x 9 streams over 7,203 words (a 56k-token column) trained 1.5x faster on 2
    threads than on 1 on a quiet machine (2026-11-30, AMD EPYC, benchmarks/RESULTS.md)."""
    return hidden_dim * batch_size <= 128 * 16 and vocab_size <= 2_000


# replan(step_s, val_s, done_steps) -> (total_steps, deadline) or None: called once the first steps are
# timed, and at each epoch's end when the run has a deadline; deadline is a time.perf_counter() value by
# which training must have ended (None: none).
Replan = Callable[[float, Optional[float], int], Optional[Tuple[int, Optional[float], Optional[TrainConfig]]]]


def fit(model: LSTMLanguageModel, corpus: Corpus, cfg: TrainConfig, *,
        on_step: Optional[Callable[[StepInfo], None]] = None,
        on_epoch: Optional[Callable[[EpochInfo], None]] = None,
        report: Optional[TrainReport] = None, ranks: Optional[Ranks] = None,
        device: Optional[torch.device] = None, replan: Optional[Replan] = None,
        budget: Optional[float] = None) -> TrainReport:
    """Train ``model`` in place on ``corpus`` with a fully resolved ``cfg``; return the report.

    One loop for one process and many: with ``ranks`` from ``distributed.process_group`` each rank
    trains on its shard inside DistributedDataParallel, and every decision (stop, early stop, best
    weights) is taken by all ranks together. Callbacks run on every rank.

    The thread count is timed on the first steps (``threads.ThreadProbe``; ``cfg.threads`` wins; ranks
    on one machine share its cores). ``replan`` (see ``Replan``) hears the measured step time and may
    shorten or lengthen the run (the learning-rate schedule follows) and set a deadline: reaching it is a
    planned end (``stop_reason`` "budget"): the partial epoch is validated and the best weights kept.
    ``budget`` is only shown (``StepInfo.budget``).

    On KeyboardInterrupt or StopTraining (raised from a callback) the best weights so far are restored
    and the report says ``interrupted``; so does a Ctrl-C while they are restored after the loop. A
    KeyboardInterrupt before the first optimizer step propagates (nothing was trained).
    """
    unresolved = [k for k in ("embed_dim", "hidden_dim", "num_layers", "dropout", "batch_size", "epochs", "lr",
                              "grad_clip") if getattr(cfg, k) is None]
    unresolved += ["optimizer"] if cfg.optimizer == "auto" else []
    if unresolved:
        raise ValueError(f"fit needs a resolved config ({', '.join(unresolved)} left to the data): pass it "
                         f"through planning.plan (or auto_config) first")
    ranks = ranks or Ranks()
    cpus = available_threads()
    if ranks.distributed:
        # Ranks on one machine share its cores: each takes its share, untimed (the ranks must agree).
        probe = ThreadProbe(cpus, given=cfg.threads or max(1, (os.cpu_count() or 1) // ranks.local_world))
    else:
        probe = ThreadProbe(cpus, given=cfg.threads, others=None if cfg.threads else others_load(window_s=0.2))
    prev_threads = torch.get_num_threads()
    try:
        with deferred_signals(ranks.distributed) as signals:
            return _fit(model, corpus, cfg, on_step, on_epoch, report, ranks, device, signals, probe, replan,
                        budget)
    finally:
        torch.set_num_threads(prev_threads)


_REASONS = {PLANNED: "finished", MAX_TIME: "max_time", INTERRUPTED: "interrupted"}
STOPPED_VAL_TOKENS = 50_000   # a run stopped inside its first epoch is validated on this many tokens at most


def _fit(model, corpus, cfg, on_step, on_epoch, report, ranks: Ranks, device, signals, probe: ThreadProbe,
         replan: Optional[Replan], budget: Optional[float]) -> TrainReport:
    device = device or resolve_device(cfg.device)
    report = report or TrainReport(config=cfg)
    report.device = str(device)
    # Without validation text (val_fraction=0) there is nothing to select on: keep the last weights.
    has_val = corpus.val.size >= 2
    torch.manual_seed(cfg.seed)
    bf16 = use_bf16(cfg, device)
    report.precision = "bf16 autocast" if bf16 else "fp32"
    forced = precision_override()
    if forced and forced != cfg.precision:
        report.notes.append(f"precision {forced!r} from {PRECISION_ENV} (instead of {cfg.precision!r})")

    model.to(device)
    # A sparse embedding gradient would need a sparse all-reduce: dense under DDP.
    model.embed.sparse = (cfg.optimizer == "adamw" and not model.tied and device.type != "mps"
                          and not ranks.distributed)
    train_data = batchify(ranks.shard(corpus.train), cfg.batch_size).to(device)      # (rows, B)
    val_ids = ranks.val_shard(corpus.val)
    n_windows = math.ceil((train_data.size(0) - 1) / cfg.seq_len)
    total_steps = min(cfg.max_steps or 10**12, n_windows * cfg.epochs)
    forward: nn.Module = model
    if ranks.distributed:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.adaptive)   # tail clusters of the adaptive softmax may get no target
    opts = _make_optimizers(model, cfg, device)
    if ranks.distributed:
        torch.manual_seed(cfg.seed + ranks.rank)   # dropout masks differ per rank, repeatably
    # Threads matter on the CPU only; elsewhere the probe still times the steps (for the plan).
    timed_threads = device.type == "cpu"

    def validate(limit: Optional[int] = None) -> float:
        ids = val_ids if limit is None else val_ids[:limit]
        if not ranks.distributed:
            return evaluate(model, ids, cfg.seq_len, device=device)
        total, count = ranks.sum(list(nll_totals(model, ids, cfg.seq_len, device=device)), device)
        return _ppl(total, count)

    best = BestWeights(cfg.patience)
    t0 = time.perf_counter()
    step = tokens = 0
    deadline: Optional[float] = None
    budget_hit = planned = False
    step_ema: Optional[float] = None             # recent seconds per step (for the time left)
    val_s: Optional[float] = None                # seconds of the last validation
    threads_now = torch.get_num_threads()
    report.stop_reason = "finished"

    switched = False

    def apply_plan(new: Optional[Tuple[int, Optional[float], Optional[TrainConfig]]]) -> None:
        nonlocal total_steps, deadline, cfg, opts, switched
        if new is None:
            return
        planned, deadline, recipe = new
        # Never fewer than the steps taken (as many ends the run now); never more than the loop's epochs.
        total_steps = int(min(max(planned, step), n_windows * cfg.epochs, cfg.max_steps or 10**12))
        changes = {k: getattr(recipe, k) for k in _RECIPE if getattr(recipe, k) != getattr(cfg, k)} \
            if recipe is not None and not switched else {}
        if changes:
            # The budget buys few epochs (planning.few_epochs_recipe): another optimizer and dropout from
            # here on, once (every rank decides it at the same step, from the same step time).
            switched = True
            cfg = cfg.replace(**changes)
            report.config = cfg
            opts = _make_optimizers(model, cfg, device)
            model.drop.p = cfg.dropout
            if model.num_layers > 1:
                model.lstm.dropout = cfg.dropout

    def eta() -> Optional[float]:
        if step_ema is None:
            return None
        epochs_left = math.ceil(total_steps / n_windows) - (step // n_windows)
        left = (total_steps - step) * step_ema + max(0, epochs_left) * (val_s or 0.0)
        return max(0.0, min(left, deadline - time.perf_counter()) if deadline is not None else left)

    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            state: Optional[State] = None
            epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
            epoch_windows = 0
            stop = GO
            for x, y in windows(train_data, cfg.seq_len):
                t_step = time.perf_counter()
                if timed_threads and probe.threads() != threads_now:
                    threads_now = probe.threads()
                    torch.set_num_threads(threads_now)
                lr = _lr_at(step, total_steps, cfg)
                loss, state = train_step(forward, model, opts, x, y, state, lr, cfg, bf16)
                step += 1
                tokens += y.numel() * ranks.world
                epoch_loss += loss.detach().double()
                epoch_windows += 1
                lv = loss.item()   # a sync per step: negligible next to an LSTM window on CPU
                report.losses.append(lv)
                stop = GO
                if on_step is not None:
                    el = time.perf_counter() - t0
                    stop = _call(on_step, StepInfo(step, total_steps, epoch, lv, lr, tokens, tokens / el, el,
                                                   eta(), budget), ranks)
                dt = time.perf_counter() - t_step          # the step as the budget sees it, callback included
                if probe.decided:
                    step_ema = 0.9 * (step_ema or dt) + 0.1 * dt
                if probe.record(dt):
                    step_ema = probe.step_s
                    report.threads = probe.choice
                    # Under DDP only the first decision re-plans: it comes at the same step on every rank
                    # (the thread count is given there), a later one would not.
                    if replan is not None and not (ranks.distributed and planned):
                        planned = True
                        # Every rank plans from rank 0's step time, so that all take the same steps.
                        step_s = ranks.sum([probe.step_s if ranks.rank == 0 else 0.0], device)[0] \
                            if ranks.distributed else probe.step_s
                        apply_plan(replan(step_s, val_s, step))
                if step >= total_steps:
                    stop = max(stop, PLANNED)
                if cfg.max_time and time.perf_counter() - t0 >= cfg.max_time:
                    stop = max(stop, MAX_TIME)
                if deadline is not None and stop < MAX_TIME and time.perf_counter() >= deadline:
                    stop, budget_hit = MAX_TIME, True      # a planned end, like max_time
                if signals.caught is not None:
                    stop = INTERRUPTED
                if not math.isfinite(lv):
                    stop = DIVERGED
                stop = ranks.agree_stop(stop, device)
                if stop == DIVERGED:
                    raise TrainingDiverged(f"training diverged at step {step} (loss {lv}); try a smaller lr "
                                           f"than {cfg.lr}" + (" (AdamW's are 0.0003-0.1; lr 1 and more are "
                                           "SGD's: optimizer='sgd')" if cfg.optimizer == "adamw" and cfg.lr >= 1
                                           else ""))
                if stop:
                    break
            if stop == INTERRUPTED:
                raise StopTraining("stopped")
            if stop:
                report.stop_reason = ("max_steps" if cfg.max_steps and step >= total_steps
                                      else "budget" if stop == MAX_TIME and budget_hit else _REASONS[stop])
            # ---- end of epoch: validate, keep the best weights (the same decision on every rank)
            t_val = time.perf_counter()
            val_ppl = validate() if has_val else math.nan
            val_s = time.perf_counter() - t_val
            el = time.perf_counter() - t0
            loss_sum, n_win = ranks.sum([float(epoch_loss), float(epoch_windows)], device)
            better = has_val and best.update(model, epoch, val_ppl)
            if not has_val:
                report.best_epoch = epoch
            info = EpochInfo(epoch, loss_sum / max(n_win, 1.0), val_ppl, lr, tokens, tokens / el, el, better)
            report.history.append(info)
            # Every rank takes part in the agreement, whether or not it has a callback (rank 0's progress bar).
            stop = _call(on_epoch, info, ranks) if on_epoch is not None else GO
            if signals.caught is not None:
                stop = INTERRUPTED
            if ranks.agree_stop(stop, device) == INTERRUPTED:
                raise StopTraining("stopped")
            if report.stop_reason != "finished":
                break
            if has_val and best.patience_spent:
                report.stop_reason = "early stop"
                report.notes.append(f"stopped early: no better validation perplexity for {cfg.patience} epochs")
                break
            if replan is not None and deadline is not None and probe.decided:
                # The validation is timed now, and the step time may have moved: fit the rest again.
                step_s = ranks.sum([step_ema if ranks.rank == 0 else 0.0], device)[0] \
                    if ranks.distributed else step_ema
                val_all = ranks.sum([val_s if ranks.rank == 0 else 0.0], device)[0] if ranks.distributed else val_s
                apply_plan(replan(step_s, val_all, step))
            if step >= total_steps:
                break            # a re-plan ended the run at this epoch's end
    except (KeyboardInterrupt, StopTraining) as exc:
        if step == 0 and isinstance(exc, KeyboardInterrupt):
            raise            # nothing trained yet: nothing to keep, and nothing of the caller's has changed
        report.interrupted, report.stop_reason = True, "interrupted"
        if best.state is None and has_val:
            # Interrupted inside the first epoch: measure what we have so the report is honest, on at most
            # STOPPED_VAL_TOKENS validation tokens (a stop must answer in a second, not after a whole
            # validation pass). A second Ctrl-C skips the measuring; the perplexity is then unknown (None).
            try:
                best.ppl = validate(STOPPED_VAL_TOKENS)
                if val_ids.size > STOPPED_VAL_TOKENS:
                    report.notes.append(f"stopped inside the first epoch: validation perplexity measured on the "
                                        f"first {STOPPED_VAL_TOKENS:,} of {val_ids.size:,} validation tokens")
            except KeyboardInterrupt:
                pass
    # The run is over: hand back the best weights whole. Ctrl-C is held while they are copied back (half
    # a restore would mix two epochs), and one that comes now, even after a planned end, makes this an
    # interrupted run like one during a step: the caller must not let it replace an earlier model.
    with deferred_signals(True) as held:
        try:
            best.restore(model)
        except KeyboardInterrupt:          # raised by the copy itself, before it finished: copy again
            held.caught = signal.SIGINT
            best.restore(model)
    if held.caught is not None and not report.interrupted:
        report.notes.append(f"Ctrl-C came as the run ended ({report.stop_reason}); it counts as interrupted")
        report.interrupted, report.stop_reason = True, "interrupted"
    if has_val:
        report.best_epoch = best.epoch
    if report.interrupted:
        report.notes.append("interrupted: kept the best model so far"
                            + (f" (epoch {best.epoch})" if best.epoch else f" (after {step} steps)"))
    model.eval()
    model.embed.sparse = False
    report.steps, report.tokens_seen = step, tokens
    report.elapsed = time.perf_counter() - t0
    report.best_val_ppl = best.best_ppl
    if report.threads is None:
        report.threads = probe.choice or threads_now
    if probe.reasons and timed_threads:
        report.notes.append("threads: " + "; ".join(probe.reasons))
    return report


def _call(callback: Callable[[Any], None], info: Any, ranks: Ranks) -> int:
    """Run a progress callback; a StopTraining it raises becomes a stop reason that all ranks agree on
    (for one process that ends the run after this step, as raising it always has)."""
    try:
        callback(info)
    except StopTraining:
        return INTERRUPTED
    return GO


def clone_model(model: LSTMLanguageModel) -> LSTMLanguageModel:
    """A deep copy to train on, so the original stays usable whatever happens to the run."""
    return copy.deepcopy(model)
