"""Reference word-level LSTM language model for side-by-side benchmarks.

This is an independent re-implementation of the textbook PyTorch recipe
(the ``word_language_model`` example run with ``--model LSTM``):

    Embedding(V, 200) -> dropout -> LSTM(200, 200, 2 layers, dropout 0.2)
    -> dropout -> Linear(200, V) -> log_softmax -> NLL

trained with plain SGD (lr 20), gradient-norm clipping at 0.25, truncated
BPTT over 35-step windows, batch 20 (eval batch 10), and the hidden state
carried across windows but detached from the previous graph.

It exists so that lm_magics can be timed and scored against a known
baseline on identical data (WikiText-2) and identical thread counts.

Usage::

    python -m benchmarks.reference --batches 50 [--threads 2] [--eval]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA_DIR = "/work/shared/data/wikitext-2"
EOS = "<eos>"

# Hyper-parameters of the textbook recipe.
EMB_DIM = 200
HID_DIM = 200
N_LAYERS = 2
DROPOUT = 0.2
LR = 20.0
CLIP = 0.25
BPTT = 35
BATCH_SIZE = 20
EVAL_BATCH_SIZE = 10
SEED = 1111

State = Tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, B, H)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def _read_tokens(path: str) -> List[str]:
    """Whitespace tokens of a pre-tokenized file, with <eos> after every line."""
    tokens: List[str] = []
    with open(path, "r", encoding="utf8") as f:
        for line in f:
            tokens.extend(line.split())
            tokens.append(EOS)  # empty lines still contribute an <eos>
    return tokens


def load_wikitext(
    path_dir: str = DEFAULT_DATA_DIR,
) -> Tuple[Dict[str, int], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load WikiText-2 as id sequences.

    Returns ``(vocab, train_ids, valid_ids, test_ids)``: ``vocab`` maps word
    -> id, ids assigned in order of first appearance in ``train.txt``; each
    id tensor is a 1-D ``torch.long`` tensor of shape (N,).

    WikiText-2 is closed-vocabulary (unknowns are already ``<unk>``), so a
    valid/test word missing from train is a data error, not something to map.
    """
    train_tok = _read_tokens(os.path.join(path_dir, "train.txt"))
    vocab: Dict[str, int] = {}
    for w in train_tok:
        if w not in vocab:
            vocab[w] = len(vocab)

    def encode(tokens: List[str], name: str) -> torch.Tensor:
        try:
            return torch.tensor([vocab[w] for w in tokens], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"{name}: word {e.args[0]!r} not in train vocabulary") from None

    valid_tok = _read_tokens(os.path.join(path_dir, "valid.txt"))
    test_tok = _read_tokens(os.path.join(path_dir, "test.txt"))
    return (vocab, encode(train_tok, "train"), encode(valid_tok, "valid"),
            encode(test_tok, "test"))


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id stream into ``batch_size`` parallel streams, one per column.

    The stream is split into ``batch_size`` contiguous chunks (the tail that
    does not divide evenly is dropped) and the chunks become columns, so
    row t holds time step t of every stream.  E.g. ids a..x, batch_size 4:

        a b c d e f | g h i j k l | m n o p q r | s t u v w x
                                |
                                v            shape (N // B, B)
                          col0 col1 col2 col3
                    t=0 [  a    g    m    s  ]
                    t=1 [  b    h    n    t  ]
                    t=2 [  c    i    o    u  ]
                    t=3 [  d    j    p    v  ]
                    t=4 [  e    k    q    w  ]
                    t=5 [  f    l    r    x  ]

    Columns are independent streams: the model never sees f -> g, which is
    the price of batching a single long text.
    """
    steps = ids.size(0) // batch_size
    ids = ids[: steps * batch_size]
    return ids.view(batch_size, steps).t().contiguous()  # (steps, B)


def _window(source: torch.Tensor, start: int, bptt: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inputs rows [start, start+L) and next-token targets rows shifted by one.

    Returns (inputs (L, B), targets (L*B,)); L < bptt only for the last window.
    """
    length = min(bptt, source.size(0) - 1 - start)
    inputs = source[start:start + length]                     # (L, B)
    targets = source[start + 1:start + 1 + length].reshape(-1)  # (L*B,)
    return inputs, targets


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

class RefLSTM(nn.Module):
    """Embedding -> LSTM -> Linear over the full vocabulary, untied weights."""

    def __init__(self, vocab_size: int, emb_dim: int = EMB_DIM, hid_dim: int = HID_DIM,
                 n_layers: int = N_LAYERS, dropout: float = DROPOUT):
        super().__init__()
        self.vocab_size = vocab_size
        self.hid_dim = hid_dim
        self.n_layers = n_layers
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Embedding(vocab_size, emb_dim)
        # nn.LSTM applies `dropout` between stacked layers only (not after the
        # last), which is why the output gets its own self.drop below.
        self.lstm = nn.LSTM(emb_dim, hid_dim, n_layers, dropout=dropout)
        self.out = nn.Linear(hid_dim, vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # Small uniform init on the big matrices; the LSTM keeps PyTorch's own.
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.out.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)

    def init_state(self, batch_size: int) -> State:
        w = self.out.weight
        shape = (self.n_layers, batch_size, self.hid_dim)
        return w.new_zeros(shape), w.new_zeros(shape)

    def forward(self, inputs: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        """inputs (T, B) long -> log-probs (T*B, V) and the new state."""
        x = self.drop(self.embed(inputs))      # (T, B, E)
        h, state = self.lstm(x, state)         # (T, B, H)
        logits = self.out(self.drop(h))        # (T, B, V)
        return F.log_softmax(logits.view(-1, self.vocab_size), dim=-1), state


# --------------------------------------------------------------------------
# Training / evaluation
# --------------------------------------------------------------------------

def train_reference(
    train_ids: torch.Tensor,
    vocab_size: int,
    *,
    max_batches: Optional[int] = None,
    max_seconds: Optional[float] = None,
    epochs: int = 1,
    batch_size: int = BATCH_SIZE,
    bptt: int = BPTT,
    lr: float = LR,
    clip: float = CLIP,
    warmup_batches: int = 2,
    seed: int = SEED,
    model: Optional[RefLSTM] = None,
    log_interval: int = 0,
) -> dict:
    """Train the reference model with the textbook recipe.

    Stops at whichever comes first: ``epochs`` full passes, ``max_batches``
    optimizer steps, or ``max_seconds`` of training wall time.  The first
    ``warmup_batches`` steps are trained but excluded from the timing
    figures (allocator / thread-pool warm-up).

    Returns a dict with keys ``ms_per_batch`` (mean), ``ms_per_batch_median``,
    ``tokens_per_s``, ``tokens_seen`` (training target tokens consumed,
    warm-up included), ``batches``, ``timed_batches``, ``seconds`` (total
    training wall time), ``last_loss`` (mean loss of the last <=50 batches)
    and ``model``.
    """
    torch.manual_seed(seed)
    if model is None:
        model = RefLSTM(vocab_size)
    data = batchify(train_ids, batch_size)  # (steps, B)
    model.train()

    times: List[float] = []     # seconds per timed batch
    timed_tokens = 0
    tokens_seen = 0
    batches = 0
    recent_losses: List[float] = []
    t_start = time.perf_counter()
    done = False

    for _ in range(epochs):
        state = model.init_state(batch_size)
        for start in range(0, data.size(0) - 1, bptt):
            t0 = time.perf_counter()
            inputs, targets = _window(data, start, bptt)
            # Keep the state's values but cut the graph, so backprop stops at
            # the window boundary (truncated BPTT).
            state = tuple(s.detach() for s in state)
            model.zero_grad()
            log_probs, state = model(inputs, state)
            loss = F.nll_loss(log_probs, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            loss_value = loss.item()  # also forces the step to complete
            dt = time.perf_counter() - t0

            batches += 1
            tokens_seen += targets.numel()
            recent_losses.append(loss_value)
            del recent_losses[:-50]
            if batches > warmup_batches:
                times.append(dt)
                timed_tokens += targets.numel()
            if log_interval and batches % log_interval == 0:
                window = times[-log_interval:] or [dt]
                print(f"| batch {batches:5d} | ms/batch {1000 * statistics.fmean(window):7.1f}"
                      f" | loss {loss_value:5.2f}", flush=True)

            if max_batches is not None and batches >= max_batches:
                done = True
            elif max_seconds is not None and time.perf_counter() - t_start >= max_seconds:
                done = True
            if done:
                break
        if done:
            break

    total = sum(times)
    return {
        "ms_per_batch": 1000 * total / len(times) if times else float("nan"),
        "ms_per_batch_median": 1000 * statistics.median(times) if times else float("nan"),
        "tokens_per_s": timed_tokens / total if total > 0 else float("nan"),
        "tokens_seen": tokens_seen,
        "batches": batches,
        "timed_batches": len(times),
        "seconds": time.perf_counter() - t_start,
        "last_loss": statistics.fmean(recent_losses) if recent_losses else float("nan"),
        "model": model,
    }


@torch.no_grad()
def evaluate_reference(model: RefLSTM, valid_ids: torch.Tensor,
                       eval_batch_size: int = EVAL_BATCH_SIZE, bptt: int = BPTT) -> float:
    """Perplexity of ``model`` on ``valid_ids`` (dropout off, state carried)."""
    was_training = model.training
    model.eval()
    data = batchify(valid_ids, eval_batch_size)  # (steps, B)
    state = model.init_state(eval_batch_size)
    total_nll = 0.0
    n_targets = 0
    for start in range(0, data.size(0) - 1, bptt):
        inputs, targets = _window(data, start, bptt)
        log_probs, state = model(inputs, state)
        total_nll += F.nll_loss(log_probs, targets, reduction="sum").item()
        n_targets += targets.numel()
    model.train(was_training)
    return math.exp(total_nll / n_targets)


@torch.no_grad()
def reference_step_latency(model: RefLSTM, n: int = 200, warmup: int = 10,
                           start_token: int = 0) -> float:
    """Median milliseconds for one next-word step at batch 1.

    Each step feeds one token with the carried state, computes the full
    softmax over the vocabulary and takes the top 5; the top-1 word is fed
    back, as an autocomplete/generation loop would.
    """
    was_training = model.training
    model.eval()
    state = model.init_state(1)
    token = torch.tensor([[start_token]], dtype=torch.long)  # (1, 1)
    times: List[float] = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        log_probs, state = model(token, state)        # (1, V)
        top_lp, top_ids = log_probs[0].topk(5)        # (5,), (5,)
        next_id = int(top_ids[0])                     # sync point: value needed on host
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        token = torch.tensor([[next_id]], dtype=torch.long)
    model.train(was_training)
    return 1000 * statistics.median(times)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA_DIR)
    ap.add_argument("--batches", type=int, default=50, help="training batches to time")
    ap.add_argument("--seconds", type=float, default=None, help="wall-time cap for training")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--log-interval", type=int, default=0)
    ap.add_argument("--eval", action="store_true", help="also report validation perplexity")
    ap.add_argument("--latency", action="store_true", help="also time next-word steps")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vocab, train_ids, valid_ids, _ = load_wikitext(args.data)
    print(f"loaded vocab {len(vocab)}, train {train_ids.numel()} tokens "
          f"in {time.perf_counter() - t0:.1f}s; threads {torch.get_num_threads()}")

    res = train_reference(train_ids, len(vocab), max_batches=args.batches,
                          max_seconds=args.seconds, log_interval=args.log_interval)
    print(f"reference: {res['batches']} batches ({res['timed_batches']} timed), "
          f"ms/batch {res['ms_per_batch']:.1f} (median {res['ms_per_batch_median']:.1f}), "
          f"tokens/s {res['tokens_per_s']:.0f}, tokens seen {res['tokens_seen']}, "
          f"loss {res['last_loss']:.2f}")
    if args.latency:
        print(f"step latency (batch 1, top-5): {reference_step_latency(res['model']):.2f} ms")
    if args.eval:
        print(f"valid ppl: {evaluate_reference(res['model'], valid_ids):.2f}")


if __name__ == "__main__":
    main()
