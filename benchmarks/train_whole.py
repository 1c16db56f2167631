"""The whole ``lm.train`` call beside the textbook loop, on a column-sized text at the textbook's dims.

Text: the first 2,000 lines of WikiText-2 train, blank lines dropped (about 117k tokens with their
end-of-line tokens, a 10.8k-word vocabulary: lm_magics' adaptive softmax is on, but at 10k words it saves
far less than at 33k, so the recurrence and the rest of the step decide). Validation: the first 300
lines of WikiText-2 valid, for both sides.

Both sides: embed 200, hidden 200, 2 layers, dropout 0.2, bptt 35, batch 20, one epoch, the same threads.
- lm_magics: one public call, ``lm.train(rows, val_data=..., <those dims>, epochs=1)``; everything else
  at its defaults (AdamW, precision "auto", the n-gram baseline and copy index it builds for every
  model). The time is the whole call: vocabulary, tokenizing, training, validation, the baseline.
- reference: ``benchmarks/reference.py`` (the textbook model: full softmax, SGD lr 20, clip 0.25) on
  the same token ids (lm_magics' tokenizer, fitted and applied inside the timed part), one epoch,
  then its validation perplexity.

Each side runs once untimed first (imports, thread pools, allocator), then rounds alternate the two;
figures are medians. The first call in a fresh process is printed too: it pays one-off imports.

    python -m benchmarks.train_whole [--rounds 3] [--lines 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import lm_magics as lm
from benchmarks.common import machine_line, median, need_wikitext
from benchmarks.reference import evaluate_reference, train_reference
from lm_magics.engine.tokenizer import Tokenizer

DIMS = dict(embed_dim=200, hidden_dim=200, num_layers=2, dropout=0.2, seq_len=35, batch_size=20)


def rows_of(path, n: int):
    with open(path, encoding="utf-8") as f:
        lines = [next(f, "") for _ in range(n)]
    return [s.rstrip("\n") for s in lines if s.strip()]


def ours(rows, val, seed: int = 0):
    t0 = time.perf_counter()
    model = lm.train(rows, val_data=val, epochs=1, seed=seed, **DIMS)
    dt = time.perf_counter() - t0
    r = model.report
    return dt, r.tokens_seen, r.best_val_ppl, model


def reference(rows, val, seed: int = 0):
    t0 = time.perf_counter()
    tok = Tokenizer().fit(rows)
    ids = torch.from_numpy(np.concatenate(list(tok.encode_lines(rows))).astype(np.int64))
    val_ids = torch.from_numpy(np.concatenate(list(tok.encode_lines(val))).astype(np.int64))
    out = train_reference(ids, len(tok), epochs=1, seed=seed, warmup_batches=0)
    ppl = evaluate_reference(out["model"], val_ids)
    return time.perf_counter() - t0, out["tokens_seen"], ppl, len(tok)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lines", type=int, default=2000, help="lines of WikiText-2 train (blank ones dropped)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = need_wikitext()
    print(machine_line())
    rows, val = rows_of(d / "train.txt", args.lines), rows_of(d / "valid.txt", 300)

    t_cold, n_tok, _, model = ours(rows, val)
    print(f"text: {len(rows):,} rows, {n_tok:,} training tokens, {len(model.tokenizer):,} words "
          f"({model.report.precision}, {'adaptive' if model.net.adaptive else 'full'} softmax); "
          f"first lm.train call in this process (one-off imports included): {t_cold:.2f} s")
    reference(rows[:200], val[:20])            # the reference's warm-up (its loop is the same code)

    runs = {"reference": [], "lm_magics": []}
    ppl = {}
    for r in range(args.rounds):
        t_ref, ref_tok, ppl["reference"], _ = reference(rows, val)
        t_ours, our_tok, ppl["lm_magics"], _ = ours(rows, val)
        runs["reference"].append(ref_tok / t_ref)
        runs["lm_magics"].append(our_tok / t_ours)
        print(f"round {r + 1}: reference {t_ref:.2f} s ({ref_tok / t_ref:,.0f} tokens/s, val ppl "
              f"{ppl['reference']:.1f}) | lm_magics {t_ours:.2f} s ({our_tok / t_ours:,.0f} tokens/s, val ppl "
              f"{ppl['lm_magics']:.1f})   {t_ref / t_ours * our_tok / ref_tok:.2f}x")
    ref = median(runs["reference"])
    print("\nWhole call, one epoch (training tokens per second of the whole call; medians):")
    for name, xs in runs.items():
        print(f"  {name:<10} {median(xs):9,.0f} tokens/s  {median(xs) / ref:5.2f}x   val ppl after one epoch "
              f"{ppl[name]:.1f}")


if __name__ == "__main__":
    main()
