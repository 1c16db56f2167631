"""Training throughput and quality, side by side with the textbook LSTM (benchmarks/reference.py).

Same data (WikiText-2, whitespace tokens + <eos> per line), same embedding/hidden/layers (200/200/2),
same bptt (35) and batch (20), same thread count. The reference runs full softmax + SGD; lm_magics runs
its own engine (adaptive softmax, sparse-aware fused AdamW, bf16 autocast where the CPU has it).
Rounds alternate reference and lm_magics so machine noise hits both alike; figures are medians.

    python -m benchmarks.train_speed [--batches 40] [--rounds 2] [--quality-batches 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import machine_line, median, need_wikitext
from benchmarks.reference import evaluate_reference, load_wikitext, train_reference
from lm_magics.config import TrainConfig
from lm_magics.engine.data import Corpus, files, prepare
from lm_magics.engine.model import LSTMLanguageModel
from lm_magics.engine.tokenizer import Tokenizer
from lm_magics.engine.training import fit

SAME = dict(embed_dim=200, hidden_dim=200, num_layers=2, dropout=0.2, seq_len=35, batch_size=20)


def lm_corpus(data_dir) -> Corpus:
    tok = Tokenizer(level="whitespace", max_vocab=10**6)
    return prepare(files(data_dir / "train.txt"), tok, val_source=files(data_dir / "valid.txt"))


# lm_magics' optimizers: its default (AdamW at the lr auto_config picks for 2M tokens) and the textbook
# recipe (SGD lr 20, clip 0.25) run through lm_magics' engine.
OPTIMIZERS = {"adamw": dict(optimizer="adamw", lr=3e-3, grad_clip=1.0), "sgd": dict(optimizer="sgd", lr=20.0, grad_clip=0.25)}


def run_ours(corpus: Corpus, steps: int, precision: str, full_val: bool, seed: int = 0, optimizer: str = "adamw"):
    """Train a fresh lm_magics network for `steps` steps; return (median ms/step, val ppl or None)."""
    cfg = TrainConfig(level="whitespace", tie_weights=False, softmax="adaptive", precision=precision,
                      max_steps=steps, epochs=1, seed=seed, **SAME, **OPTIMIZERS[optimizer])
    torch.manual_seed(seed)
    net = LSTMLanguageModel(len(corpus.tokenizer), cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout,
                            tie_weights=False, adaptive=True, head_bias=True)
    stamps = []
    small = Corpus(corpus.train, corpus.val if full_val else corpus.val[:2000], corpus.tokenizer, corpus.stats)
    report = fit(net, small, cfg, on_step=lambda s: stamps.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(stamps[2:], stamps[3:])]   # first steps: allocator/thread warm-up
    return 1000 * median(gaps), (report.best_val_ppl if full_val else None)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40, help="timed batches per round and side")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quality-batches", type=int, default=300,
                    help="batches for the equal-tokens quality check (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = need_wikitext()
    print(machine_line())

    vocab, tr, va, _ = load_wikitext(str(data_dir))
    corpus = lm_corpus(data_dir)
    assert corpus.train.size == tr.numel() and corpus.val.size == va.numel(), "token streams differ"
    print(f"WikiText-2: {tr.numel():,} training tokens, vocabulary {len(vocab):,} (both sides identical)")

    tok_per_batch = SAME["batch_size"] * SAME["seq_len"]
    runs = {"reference (full softmax, SGD)": [], "lm_magics AdamW fp32": [], "lm_magics AdamW default precision": [],
            "lm_magics SGD default precision": []}
    for r in range(args.rounds):
        ref = train_reference(tr, len(vocab), max_batches=args.batches + 2, warmup_batches=2)
        ms = [ref["ms_per_batch_median"],
              run_ours(corpus, args.batches + 3, "fp32", False)[0],
              run_ours(corpus, args.batches + 3, "auto", False)[0],
              run_ours(corpus, args.batches + 3, "auto", False, optimizer="sgd")[0]]
        for name, m in zip(runs, ms):
            runs[name].append(m)
        print(f"round {r + 1}: " + " | ".join(f"{n} {m:.1f} ms" for n, m in zip(runs, ms)))
    R = median(runs["reference (full softmax, SGD)"])
    print("\nThroughput (batch 20 x bptt 35, emb 200, hid 200, 2 layers; medians):")
    for name, xs in runs.items():
        ms = median(xs)
        print(f"  {name:<36} {ms:8.1f} ms/batch  {tok_per_batch / ms * 1000:9,.0f} tokens/s  {R / ms:5.2f}x")

    if args.quality_batches:
        n = args.quality_batches
        t0 = time.perf_counter()
        ref = train_reference(tr, len(vocab), max_batches=n)
        ref_ppl = evaluate_reference(ref["model"], va)
        t_ref = time.perf_counter() - t0
        print(f"\nQuality after the same {n * tok_per_batch:,} training tokens ({n} batches), WikiText-2 valid:")
        print(f"  reference            val ppl {ref_ppl:8.1f}   ({t_ref:.0f} s incl. eval)")
        for opt in ("sgd", "adamw"):
            t0 = time.perf_counter()
            _, ours_ppl = run_ours(corpus, n, "auto", True, optimizer=opt)
            t_ours = time.perf_counter() - t0
            print(f"  lm_magics {opt:<10} val ppl {ours_ppl:8.1f}   ({t_ours:.0f} s incl. eval)   "
                  f"{'no worse' if ours_ppl <= ref_ppl else 'worse'} than the reference")


if __name__ == "__main__":
    main()
