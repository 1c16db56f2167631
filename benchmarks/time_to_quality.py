"""Time to quality: how long lm_magics, at its own defaults, takes to reach the validation perplexity the
textbook LSTM (benchmarks/reference.py) reaches after one full epoch of WikiText-2.

The reference's one-epoch figure is expensive (about 20 minutes at 2 threads), so it is measured once with
``--measure-reference`` and recorded below; its epoch wall time at the current thread count is measured
in this script (median ms/batch over a few batches x 2,983 batches per epoch), so machine load hits both
sides alike. lm_magics trains with the options it chooses for this corpus (auto_config), on the same
whitespace tokens; its validation perplexity is measured every --eval-every steps, and evaluation time is
left out of its clock as the reference's epoch time leaves it out.

    python -m benchmarks.time_to_quality [--threads 2] [--eval-every 100] [--full]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from benchmarks.common import machine_line, need_wikitext
from benchmarks.reference import evaluate_reference, load_wikitext, train_reference
from lm_magics.config import TrainConfig
from lm_magics.engine.data import files, prepare
from lm_magics.engine.model import build_network, network_hparams
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.engine.training import StopTraining, auto_config, evaluate, fit

# Measured 2026-11-29 on this kind of machine with --measure-reference (1 thread; the perplexity does not
# depend on the thread count): the textbook model after one epoch of WikiText-2 (2,984 batches).
REFERENCE_EPOCH1_VAL_PPL = 250.27


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100, help="steps between validation checks")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--full", action="store_true",
                    help="keep training after the target: all the epochs the defaults choose, with tokens/s and "
                         "validation perplexity per epoch")
    ap.add_argument("--measure-reference", action="store_true",
                    help="train the reference for a full epoch first (about 20 minutes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
