"""Time to quality: how long lm_magics, at its own defaults, takes to reach the validation perplexity the
textbook LSTM (benchmarks/reference.py) reaches after one full epoch of WikiText-2.

The reference's one-epoch figure is expensive (about 20 minutes at 2 threads), so it is measured once with
``--measure-reference`` and recorded below; its epoch wall time at the current thread count is measured
in this script (median ms/batch over a few batches x 2,983 batches per epoch), so machine load hits both
sides alike. lm_magics trains with the options it chooses for this corpus (auto_config), on the same
whitespace tokens; its validation perplexity is measured every --eval-every steps, and evaluation time is
left out of its clock as the reference's epoch time leaves it out.

The two smaller tiers of the README's defaults table (``--tier cell``, ``--tier column``) are cheap enough to
train both sides to their best instead: two curves of validation perplexity against training seconds,
evaluated at every epoch end on the same validation ids.
- cell: the first 400 lines of tinyshakespeare (about 3k tokens), validated on the next 100 lines.
- column: the first 1,000 lines of WikiText-2 train without the blank ones (about 56k tokens), validated on
  the first 300 lines of WikiText-2 valid without the blank ones.
lm_magics is one ``lm.train(rows, val_data=val, seed=0)`` call at its defaults; the reference is the
textbook loop on lm_magics' token ids, one epoch at a time, with the textbook's annealing (lr / 4 when
validation perplexity does not improve). Both clocks count training only: lm_magics' own per-epoch
validation (measured: from the last step of an epoch to the end of the epoch callback) is left out. The
summary also gives each side's time as steps x its median step time, which a shared machine's stalls do
not reach; the curves stop at --max-minutes of training per side.

    python -m benchmarks.time_to_quality [--tier {cell,column,wikitext}] [--threads 2] [--max-minutes M]
                                         [--eval-every 100] [--full]     (the last two: wikitext only)
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from typing import NamedTuple

import numpy as np
import torch

import lm_magics as lm
from benchmarks.common import SHARED, machine_line, need_wikitext
from benchmarks.reference import LR, evaluate_reference, load_wikitext, train_reference
from benchmarks.train_whole import rows_of
from lm_magics.config import TrainConfig
from lm_magics.engine.data import files, prepare
from lm_magics.engine.model import build_network, network_hparams
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.engine.training import StopTraining, auto_config, evaluate, fit

# Measured 2026-11-29 on this kind of machine with --measure-reference (1 thread; the perplexity does not
# depend on the thread count): the textbook model after one epoch of WikiText-2 (2,984 batches).
REFERENCE_EPOCH1_VAL_PPL = 250.27

# The small tiers: each side stops after this many minutes of training, so a tier runs in about 3 minutes,
# and the reference trains at most this many epochs (its annealing has settled well before).
SMALL_MINUTES = 1.25
REFERENCE_EPOCHS = {"cell": 40, "column": 20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", choices=["cell", "column", "wikitext"], default="wikitext",
                    help="data size: a notebook cell (~3k tokens), a DataFrame column (~56k), WikiText-2 (2M)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100, help="steps between validation checks (wikitext)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="training-time budget: wikitext 15 for lm_magics; cell and column "
                         f"{SMALL_MINUTES} for each side")
    ap.add_argument("--full", action="store_true",
                    help="keep training after the target: all the epochs the defaults choose, with tokens/s and "
                         "validation perplexity per epoch (wikitext)")
    ap.add_argument("--measure-reference", action="store_true",
                    help="train the reference for a full epoch first (about 20 minutes; wikitext)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.tier == "wikitext":
        args.max_minutes = 15.0 if args.max_minutes is None else args.max_minutes
        wikitext(args)
    else:
        small_tier(args)


def wikitext(args) -> None:
    """WikiText-2 in full: lm_magics' time to the reference's one-epoch perplexity."""
    d = need_wikitext()
    print(machine_line())

    vocab, tr, va, _ = load_wikitext(str(d))
    target = REFERENCE_EPOCH1_VAL_PPL
    if args.measure_reference:
        ref = train_reference(tr, len(vocab), epochs=1)
        target = evaluate_reference(ref["model"], va)
        ref_epoch_s = ref["seconds"]
        print(f"reference: one epoch {ref_epoch_s:.0f} s, validation perplexity {target:.2f}")
    else:
        ref = train_reference(tr, len(vocab), max_batches=22, warmup_batches=2)
        n_batches = math.ceil((tr.numel() // 20 - 1) / 35)
        ref_epoch_s = ref["ms_per_batch_median"] / 1000 * n_batches
        print(f"reference: {ref['ms_per_batch_median']:.0f} ms/batch x {n_batches:,} batches = "
              f"{ref_epoch_s:.0f} s per epoch; validation perplexity after it: {target:.2f} (recorded)")

    corpus = prepare(files(d / "train.txt"), Tokenizer(level="whitespace", max_vocab=10**6),
                     val_source=files(d / "valid.txt"))
    cfg, why = auto_config(TrainConfig(level="whitespace", seed=0), corpus.stats.train_tokens)
    print("lm_magics defaults:", "; ".join(why))
    torch.manual_seed(cfg.seed)
    V = len(corpus.tokenizer)
    net = build_network(network_hparams(cfg, V)[0])     # the network lm.train would build

    clock = {"start": time.perf_counter(), "eval": 0.0, "hit": None, "last": math.inf}

    def on_step(s) -> None:
        if s.step % args.eval_every:
            return
        t0 = time.perf_counter()
        train_s = t0 - clock["start"] - clock["eval"]      # evaluation time is not training time
        ppl = evaluate(net, corpus.val, cfg.seq_len)
        clock["eval"] += time.perf_counter() - t0
        clock["last"] = ppl
        print(f"  step {s.step:5d}  tokens {s.tokens:>10,}  train time {train_s:7.1f} s  val ppl {ppl:8.2f}",
              flush=True)
        if ppl <= target and clock["hit"] is None:
            clock["hit"] = (train_s, s.tokens)
            if not args.full:
                raise StopTraining
        if train_s > args.max_minutes * 60:
            raise StopTraining

    def on_epoch(e) -> None:
        train_s = time.perf_counter() - clock["start"] - clock["eval"]
        print(f"epoch {e.epoch}: train loss {e.train_loss:.3f}  val ppl {e.val_ppl:.2f}  "
              f"{e.tokens / train_s:,.0f} tokens/s{'  (best)' if e.best else ''}", flush=True)

    fit(net, corpus, cfg, on_step=on_step, on_epoch=on_epoch)
    if clock["hit"]:
        t, tokens = clock["hit"]
        print(f"\nlm_magics reached val ppl <= {target:.2f} after {t:.0f} s of training ({tokens:,} tokens): "
              f"{t / ref_epoch_s:.3f} of the reference's epoch time ({ref_epoch_s / t:.1f}x faster); "
              f"target <= 0.25")
    else:
        print(f"\nlm_magics did not reach {target:.2f} within the budget (last val ppl {clock['last']:.2f})")


# ------------------------------------------------------------------------------------------ small tiers

class Point(NamedTuple):
    """One epoch end of a training curve."""

    epoch: int
    seconds: float       # training seconds so far (no evaluation)
    ppl: float           # validation perplexity
    steps: int           # optimizer steps so far
    step_s: float        # median seconds of this epoch's steps
    lr: float = math.nan


def tier_text(tier: str):
    """(training rows, validation rows) of a small tier; the validation rows follow the training ones.

    The cell keeps its blank lines, as a pasted cell would: both sides read each as a lone <eos>.
    """
    if tier == "cell":
        path = SHARED / "tinyshakespeare" / "input.txt"
        if not path.exists():
            sys.exit(f"tinyshakespeare not found at {path}; set LM_MAGICS_SHARED to the folder holding data/.")
        with open(path, encoding="utf-8") as f:
            lines = [s.rstrip("\n") for s in itertools.islice(f, 500)]
        return lines[:400], lines[400:]
    d = need_wikitext()
    return rows_of(d / "train.txt", 1000), rows_of(d / "valid.txt", 300)


def lm_magics_curve(rows, val, budget_s: float):
    """``lm.train`` at its defaults; returns ([Point], the model, clock).

    EpochInfo.elapsed counts lm_magics' own validation, so the clock here is read from the steps: it
    stops at an epoch's last step and restarts when the epoch callback returns. What lies between
    (validation, keeping the best weights) is summed in clock["left_out"].
    """
    clock = {"t0": None, "mark": 0.0, "left_out": 0.0, "steps": [], "threads": 0, "cut": False}
    curve: list[Point] = []

    def on_step(s) -> None:
        now = time.perf_counter()
        if clock["t0"] is None:
            clock["t0"] = clock["mark"] = now - s.elapsed   # the start of lm_magics' own clock
            clock["threads"] = torch.get_num_threads()      # what its loop chose for this network
        clock["steps"].append(now - clock["mark"])
        clock["mark"] = now

    def on_epoch(e) -> None:
        train_s = clock["mark"] - clock["t0"] - clock["left_out"]
        steps = (curve[-1].steps if curve else 0) + len(clock["steps"])
        curve.append(Point(e.epoch, train_s, e.val_ppl, steps, float(np.median(clock["steps"]))))
        clock["steps"] = []
        if train_s >= budget_s:
            clock["cut"] = True
            raise lm.StopTraining
        now = time.perf_counter()
        clock["left_out"] += now - clock["mark"]
        clock["mark"] = now

    model = lm.train(rows, val_data=val, seed=0, on_step=on_step, on_epoch=on_epoch)
    return curve, model, clock


def reference_curve(ids, val_ids, vocab_size: int, max_epochs: int, budget_s: float) -> list[Point]:
    """The textbook loop one epoch at a time, annealed as the textbook anneals (lr / 4 when validation
    perplexity does not improve, training on from the last weights)."""
    model, lr, best, train_s, steps, curve = None, LR, math.inf, 0.0, 0, []
    for epoch in range(1, max_epochs + 1):
        # seed: the initial weights on the first call, each epoch's dropout masks after it
        out = train_reference(ids, vocab_size, epochs=1, model=model, lr=lr, seed=epoch - 1, warmup_batches=0)
        model, train_s, steps = out["model"], train_s + out["seconds"], steps + out["batches"]
        ppl = evaluate_reference(model, val_ids)
        curve.append(Point(epoch, train_s, ppl, steps, out["ms_per_batch_median"] / 1000, lr))
        if ppl < best:
            best = ppl
        else:
            lr /= 4
        if train_s >= budget_s:
            break
    return curve


def small_tier(args) -> None:
    """Cell or column: both sides trained to their best, curves side by side, then time to the same ppl."""
    print(machine_line())
    budget_s = 60 * (SMALL_MINUTES if args.max_minutes is None else args.max_minutes)
    rows, val = tier_text(args.tier)
    tok = Tokenizer().fit(rows)                          # the tokenizer lm.train builds at its defaults
    ids = torch.from_numpy(np.concatenate(list(tok.encode_lines(rows))).astype(np.int64))
    val_ids = torch.from_numpy(np.concatenate(list(tok.encode_lines(val))).astype(np.int64))
    print(f"{args.tier}: {len(rows):,} rows, {ids.numel():,} training tokens, {len(tok):,} words; validation "
          f"{len(val):,} rows, {val_ids.numel():,} tokens (the same ids on both sides)")

    # Warm-up, untimed: imports, thread pools and the allocator are paid here, not by either first epoch.
    lm.train(rows[:40], val_data=val[:10], seed=0, epochs=1, baseline=False, copy_window=0)
    train_reference(ids[:2000], len(tok), max_batches=3)

    max_epochs = REFERENCE_EPOCHS[args.tier]
    ref = reference_curve(ids, val_ids, len(tok), max_epochs, budget_s)
    ours, model, clock = lm_magics_curve(rows, val, budget_s)
    torch.set_num_threads(args.threads)                  # lm.train restores it; be sure
    cfg = model.report.config

    print(f"lm_magics defaults: embed {cfg.embed_dim}, hidden {cfg.hidden_dim} x{cfg.num_layers}, dropout "
          f"{cfg.dropout}, {cfg.optimizer} lr {cfg.lr:g} clip {cfg.grad_clip:g}, batch {cfg.batch_size}, seq_len {cfg.seq_len}, up to {cfg.epochs} "
          f"epochs (patience {cfg.patience}), {model.report.precision}, {clock['threads']} thread(s); "
          f"ended: {'the budget' if clock['cut'] else model.report.stop_reason} after {len(ours)} epochs")
    print(f"reference: embed 200, hidden 200 x2, dropout 0.2, SGD lr {LR:g} (/4 when val ppl does not improve), "
          f"clip 0.25, bptt 35, batch 20, full softmax, {args.threads} threads, up to {max_epochs} epochs; "
          f"ended: {'the budget' if len(ref) < max_epochs else 'its last epoch'} after {len(ref)}")
    print(f"budget: {budget_s / 60:g} min of training per side\n")

    print("        |       lm_magics        |           reference")
    print("  epoch | train s    val ppl     | train s    val ppl      lr")
    best_ours = best_ref = math.inf
    for i in range(max(len(ours), len(ref))):
        left = right = ""
        if i < len(ours):
            p = ours[i]
            left = f"{p.seconds:7.2f} {p.ppl:10.2f}{'*' if p.ppl < best_ours else ' '}"
            best_ours = min(best_ours, p.ppl)
        if i < len(ref):
            p = ref[i]
            right = f"{p.seconds:7.2f} {p.ppl:10.2f}{'*' if p.ppl < best_ref else ' '} {p.lr:7.3g}"
            best_ref = min(best_ref, p.ppl)
        print(f"  {i + 1:5d} | {left:<22s} | {right}")
    print("  (* a new best; seconds are training only, at each epoch's end)\n")

    # Two clocks for the summary: the measured one, and steps x the side's median step time. The machine
    # may be shared: a stall of seconds (2 threads waiting on a busy core) can land in any epoch, and a
    # cumulative clock keeps it; every step of a side does the same work, so the median is its steady cost.
    ref_step, our_step = _median_step(ref), _median_step(ours)

    def clocks(p: Point, step_s: float) -> str:
        return (f"{p.seconds:.2f} s measured, {p.steps * step_s:.2f} s at its median step "
                f"({p.steps} x {1000 * step_s:.1f} ms)")

    target = min(ref, key=lambda p: p.ppl)
    our_best = min(ours, key=lambda p: p.ppl)
    print(f"reference best: val ppl {target.ppl:.2f} at epoch {target.epoch}: {clocks(target, ref_step)}")
    hit = next((p for p in ours if p.ppl <= target.ppl), None)
    if hit:
        measured = hit.seconds / target.seconds
        steady = (hit.steps * our_step) / (target.steps * ref_step)
        print(f"lm_magics reached val ppl <= {target.ppl:.2f} at epoch {hit.epoch}: {clocks(hit, our_step)}")
        print(f"time ratio lm_magics / reference: {measured:.3f} measured ({_faster(measured)}), "
              f"{steady:.3f} at median steps ({_faster(steady)})")
    else:
        print(f"lm_magics did not reach {target.ppl:.2f}; its best was {our_best.ppl:.2f}, so there is no "
              f"time ratio")
        first = next(p for p in ref if p.ppl <= our_best.ppl)
        print(f"the reference reached lm_magics' best ({our_best.ppl:.2f}) at epoch {first.epoch}: "
              f"{clocks(first, ref_step)}")
    print(f"best val ppl: lm_magics {our_best.ppl:.2f} (epoch {our_best.epoch}, {our_best.seconds:.2f} s), "
          f"reference {target.ppl:.2f} (epoch {target.epoch}, {target.seconds:.2f} s); "
          f"lm_magics / reference = {our_best.ppl / target.ppl:.2f}")
    print(f"clocks: training only, read at epoch ends; lm_magics' own validation and best-weights copy "
          f"({clock['left_out']:.2f} s over {len(ours)} epochs) measured and left out; tokenizing, and the "
          f"n-gram baseline lm.train builds afterwards, not counted")


def _median_step(curve: list[Point]) -> float:
    """A side's steady seconds per step: the median over its epochs of each epoch's median step."""
    return float(np.median([p.step_s for p in curve]))


def _faster(ratio: float) -> str:
    """lm_magics' time / the reference's, in words."""
    return f"{1 / ratio:.1f}x faster" if ratio <= 1 else f"{ratio:.1f}x slower"


if __name__ == "__main__":
    main()
