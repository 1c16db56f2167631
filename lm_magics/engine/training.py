"""The training loop: SGD or AdamW (sparse-aware), warm-up + cosine schedule, truncated BPTT with carried
state, validation perplexity every epoch, early stopping, best weights kept, interrupt-safe.

Defaults that fit the data (``auto_config``): options left at ``None`` are chosen from the number of
training tokens N, so that a notebook cell of a few hundred words trains in seconds and a corpus of
millions of words gets a larger model and fewer passes:

    ===========  =====  ======  ======  =======  =====  =====================  ==========================
    N tokens     embed  hidden  layers  dropout  batch  optimizer (lr, clip)   epochs
    ===========  =====  ======  ======  =======  =====  =====================  ==========================
    < 50k        200    200     1       0.6      1-16   SGD (20, 0.25)         30 (a cell: many tiny passes)
    < 300k       200    200     1       0.6      8-32   SGD (20, 0.25)         clamp(6M / N, 3, 20)
    < 3M         256    256     1       0.2      64     AdamW (0.003, 1.0)     clamp(6M / N, 1, 20)
    >= 3M        256    512     2       0.2      64     AdamW (0.003, 1.0)     1
    ===========  =====  ======  ======  =======  =====  =====================  ==========================

(batch for tiny inputs: as many streams as leave each at least 4 windows of seq_len tokens; below 300k
tokens: one stream per 6k tokens, 8 to 32.)
Optimizer ('auto'): below 300k tokens the textbook's SGD with lr 20 and the gradient norm clipped at 0.25,
which on a cell's text reached a validation perplexity 35-65% below AdamW's at any lr tried, and on
columns of docstrings and Shakespeare 20-40% below; above, AdamW, which gets there in fewer steps on more
text. A learning rate that is given picks the optimizer it was written for: below 1 AdamW, 1 and more SGD
(their scales are a thousand times apart). AdamW chosen below 300k tokens (optimizer='adamw', or a given
lr below 1) trains the network it was tuned with: 200/200 below 50k tokens, 128/256 with dropout 0.5 from
there. AdamW runs with betas (0.7, 0.95), a shorter memory than the usual (0.9, 0.999) that reached a
lower validation perplexity at every tier in the same steps (see ADAM_BETAS); its learning rate is 0.03
below 50k tokens (few epochs of a cell learn fastest with it), 0.01 below 300k and 0.003 above (big data
wants a gentler step).

Why 1x256 up to 3M tokens: on WikiText-2 (2.1M tokens) it reaches the textbook model's one-epoch
validation perplexity in 80 s of training where 1x512 needs 132 s (benchmarks/time_to_quality.py; 45 s
since the betas above), and its keystroke update takes under 1 ms instead of 2+ ms (benchmarks/latency.py).
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
from .precision import native_bf16

__all__ = ["auto_config", "resolve_device", "StepInfo", "EpochInfo", "TrainReport", "fit", "evaluate",
           "StopTraining", "BestWeights", "train_step"]


class StopTraining(Exception):
    """Raised by a callback (or a Stop button) to end training early, keeping the best model."""


# ------------------------------------------------------------------------------------------ choices

# Below this many training tokens optimizer='auto' is SGD (on a tied 200/200 network); from it on, AdamW.
SGD_BELOW = 300_000
# SGD's network: the textbook's optimizer wants a tied output layer as wide as the LSTM, and heavy dropout.
_SGD_NET = dict(embed_dim=200, hidden_dim=200, num_layers=1, dropout=0.6)


def auto_config(cfg: TrainConfig, n_tokens: int) -> Tuple[TrainConfig, List[str]]:
    """Fill the options left at None (and optimizer='auto') from the number of training tokens; return
    (config, reasons)."""
    optimizer = cfg.optimizer
    if optimizer == "auto":
        # A given learning rate tells which optimizer it was written for: AdamW's are 0.0003-0.1, SGD's
        # 1-40 (every lr in the tutorials, and in notebooks from before SGD was a default, is AdamW's).
        if cfg.lr is not None:
            optimizer = "sgd" if cfg.lr >= 1 else "adamw"
        else:
            optimizer = "sgd" if n_tokens < SGD_BELOW else "adamw"
    if n_tokens < 50_000:
        # A cell or a short column: the textbook's optimizer (SGD lr 20, clip 0.25) on a tied 200-unit
        # network with heavy dropout. Mean validation perplexity of seeds 0-1 on 463-7,206 tokens
        # (Shakespeare, stdlib docstrings; benchmarks/RESULTS.md): AdamW at the old 64/128 defaults 142-411,
        # this 51-172, the textbook's 200x2 network with its own recipe 64-245. From 20k to 46k tokens
        # (Shakespeare, docstrings, WikiText-2) it matched or beat the AdamW column defaults, in time too.
        size, tier = dict(_SGD_NET), "< 50k tokens"
        batch = int(np.clip(n_tokens // (cfg.seq_len * 4), 1, 16))
        epochs, adamw_lr = 30, 0.03
    else:
        batch = 64
        epochs = int(np.clip(round(6e6 / n_tokens), 1, 20))
        adamw_lr = 0.01 if n_tokens < 300_000 else 0.003
        if n_tokens < 300_000:
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
    return cfg.replace(**fill), reasons


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
    stop_reason: str = ""                # "finished", "early stop", "max_steps", "max_time", "interrupted"
    notes: List[str] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)   # per-step training loss, for the curve
    precision: str = "fp32"
    device: str = "cpu"

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
    """Train on one thread when none are given? Yes for tiny networks over small vocabularies. The output
    layer counts: 200 units x 9 streams over 7,203 words (a 56k-token column) trained 1.5x faster on 2
    threads than on 1 (2026-11-30, AMD EPYC, benchmarks/RESULTS.md)."""
    return hidden_dim * batch_size <= 128 * 16 and vocab_size <= 2_000


def fit(model: LSTMLanguageModel, corpus: Corpus, cfg: TrainConfig, *,
        on_step: Optional[Callable[[StepInfo], None]] = None,
        on_epoch: Optional[Callable[[EpochInfo], None]] = None,
        report: Optional[TrainReport] = None, ranks: Optional[Ranks] = None,
        device: Optional[torch.device] = None) -> TrainReport:
    """Train ``model`` in place on ``corpus`` with a fully resolved ``cfg``; return the report.

    One loop for one process and many: with ``ranks`` from ``distributed.process_group`` each rank
    trains on its shard inside DistributedDataParallel, and every decision (stop, early stop, best
    weights) is taken by all ranks together. Callbacks run on every rank.

    On KeyboardInterrupt or StopTraining (raised from a callback) the best weights so far are restored
    and the report says ``interrupted``; so does a Ctrl-C while they are restored after the loop. A
    KeyboardInterrupt before the first optimizer step propagates (nothing was trained).
    """
    unresolved = [k for k in ("embed_dim", "hidden_dim", "num_layers", "dropout", "batch_size", "epochs", "lr",
                              "grad_clip") if getattr(cfg, k) is None]
    unresolved += ["optimizer"] if cfg.optimizer == "auto" else []
    if unresolved:
        raise ValueError(f"fit needs a resolved config ({', '.join(unresolved)} left to the data): pass it "
                         f"through auto_config first")
    ranks = ranks or Ranks()
    # Tiny networks lose more to thread hand-offs than they gain from a second core (and suffer most
    # when the machine is busy): they train on one thread unless told otherwise. Ranks on one machine
    # share its cores. Restored afterwards.
    threads = cfg.threads or (1 if one_thread_is_enough(model.hidden_dim, cfg.batch_size or 1, model.vocab_size)
                              else None)
    if ranks.distributed and not cfg.threads:
        threads = max(1, (os.cpu_count() or 1) // ranks.local_world)
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with deferred_signals(ranks.distributed) as signals:
            return _fit(model, corpus, cfg, on_step, on_epoch, report, ranks, device, signals)
    finally:
        torch.set_num_threads(prev_threads)


_REASONS = {PLANNED: "finished", MAX_TIME: "max_time", INTERRUPTED: "interrupted"}
STOPPED_VAL_TOKENS = 50_000   # a run stopped inside its first epoch is validated on this many tokens at most


def _fit(model, corpus, cfg, on_step, on_epoch, report, ranks: Ranks, device, signals) -> TrainReport:
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

    def validate(limit: Optional[int] = None) -> float:
        ids = val_ids if limit is None else val_ids[:limit]
        if not ranks.distributed:
            return evaluate(model, ids, cfg.seq_len, device=device)
        total, count = ranks.sum(list(nll_totals(model, ids, cfg.seq_len, device=device)), device)
        return _ppl(total, count)

    best = BestWeights(cfg.patience)
    t0 = time.perf_counter()
    step = tokens = 0
    report.stop_reason = "finished"
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            state: Optional[State] = None
            epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
            epoch_windows = 0
            stop = GO
            for x, y in windows(train_data, cfg.seq_len):
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
                    stop = _call(on_step, StepInfo(step, total_steps, epoch, lv, lr, tokens, tokens / el, el),
                                 ranks)
                if step >= total_steps:
                    stop = max(stop, PLANNED)
                if cfg.max_time and time.perf_counter() - t0 >= cfg.max_time:
                    stop = max(stop, MAX_TIME)
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
                                      else _REASONS[stop])
            # ---- end of epoch: validate, keep the best weights (the same decision on every rank)
            val_ppl = validate() if has_val else math.nan
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
