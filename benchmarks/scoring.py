"""Per-row scoring speed: the fast path vs the old packed path, and packed batches vs one row at a time.

    python -m benchmarks.scoring [--rows 10000] [--naive-rows 200] [--hidden 128,256] [--threads 2]
    python -m benchmarks.scoring --column [--rounds 3]     # only the first part

Part 1 (``--column``, always run first): the default model of a 60k-token column (3,600 short messages
-> LSTM 1x256, embed 128, tied full softmax over ~7k words) scores 11,000 short rows three ways, in
alternating rounds: the old packed path (a copy of ``Predictor.encoded_nll`` before issue 16: batches of
16,384 padded tokens, ``F.cross_entropy`` over the whole (tokens, V) logits, pads included), today's
``model.score`` in fp32 and at its default precision (bf16 output-layer matmuls where the CPU has native
bf16). Prints tokens/s (tokenizing included), the ratios and the largest differences in scores.

Part 2:

Models of two sizes (LSTM 1x128 and 1x256, the auto sizes for columns under 20k and 300k tokens) are
trained for a few steps on the first 3,000 lines of WikiText-2 (a 13.7k-word adaptive softmax; the
weights' quality does not change the speed), plus a 1x128 model with a 5,000-word vocabulary (full
softmax: the output layer costs most of the time with a big vocabulary), then 10,000 short rows (sentences of WikiText's validation set, 3-40 words) are scored
(a) in one call, rows sorted by length and packed into similar-length batches, and (b) by a naive loop
that scores one row per call. The naive loop runs on the first ``--naive-rows`` rows only and its
rows/s is measured there. Prints rows/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import re
import time

import os
import statistics

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import lm_magics as lm

from .common import machine_line, need_wikitext


def short_rows(path, n: int, max_words: int = 40) -> list:
    """Sentences of 3-max_words tokens cut from WikiText lines, the first n of them."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("="):
                continue
            for sent in re.split(r"(?<= \.) ", line):
                if 3 <= len(sent.split()) <= max_words:
                    rows.append(sent)
                    if len(rows) == n:
                        return rows
    while len(rows) < n:   # a small corpus: repeat
        rows.extend(rows[: n - len(rows)])
    return rows


def old_encoded_nll(net, tok, encoded, budget: int = 16_384):
    """The scoring path before issue 16 (the reference): rows sorted by length, packed into batches of at
    most ``budget`` padded tokens, the full (tokens, V) output layer over every position, pads included."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [None] * len(encoded)
    eos = tok.eos_id
    with torch.inference_mode():
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(encoded[order[end]]) <= budget:
                end += 1
            batch = order[start:end]
            longest = len(encoded[batch[-1]])
            tgt = torch.full((longest, len(batch)), eos, dtype=torch.long)
            inp = torch.full((longest, len(batch)), eos, dtype=torch.long)
            for j, i in enumerate(batch):
                e = torch.tensor(encoded[i], dtype=torch.long)
                tgt[: len(e), j] = e
                inp[1: len(e), j] = e[:-1]
            feats, _ = net.features(inp)
            flat = feats.reshape(-1, feats.size(-1))
            if net.adaptive:
                nll = -net.head(flat, tgt.reshape(-1)).output.float()
            else:
                nll = F.cross_entropy(net.decoder(flat).float(), tgt.reshape(-1), reduction="none")
            nll = nll.view(longest, len(batch)).double()
            for j, i in enumerate(batch):
                out[i] = nll[: len(encoded[i]), j].numpy()
            start = end
    return out


def column_benchmark(args) -> None:
    """Part 1: the default model of a 60k-token column; old path vs today's, tokens/s and ratios."""
    wt = need_wikitext()
    msgs = short_rows(wt / "train.txt", 3_600, max_words=30)
    model = lm.train(msgs, level="whitespace", max_steps=args.train_steps, seed=0, threads=args.threads,
                     val_fraction=0.05, baseline=False, max_vocab=7_000)   # the column: ~7k words
    info = model.info
    rows = pd.Series(short_rows(wt / "valid.txt", args.column_rows, max_words=30))
    n_tok = sum(len(model.tokenizer.encode_line(r)) for r in rows)
    print(f"model: {info['vocab_size']:,} words, {info['softmax']} softmax, "
          f"{model.net.num_layers}x{model.net.hidden_dim}, embed {model.net.embed_dim}, trained on "
          f"{sum(len(m.split()) + 1 for m in msgs):,} tokens ({args.train_steps} steps: speed does not "
          f"depend on quality)")
    print(f"scored: {len(rows):,} rows, {n_tok:,} tokens ({n_tok / len(rows):.1f} per row)")

    def old():
        enc = [model.tokenizer.encode_line(r) for r in rows]
        nll = old_encoded_nll(model.net, model.tokenizer, enc)
        return np.array([np.exp(v.mean()) for v in nll])

    def new(precision):
        def run():
            if precision:
                os.environ["LM_MAGICS_PRECISION"] = precision
            try:
                return model.score(rows).to_numpy()
            finally:
                os.environ.pop("LM_MAGICS_PRECISION", None)
        return run

    methods = [("old packed path (reference)", old), ("model.score, fp32", new("fp32")),
               ("model.score, default precision", new(None))]
    results = {name: fn() for name, fn in methods}       # warm-up, and the numbers to compare
    times = {name: [] for name, _ in methods}
    for _ in range(args.rounds):                         # alternate, so a busy moment hits every method
        for name, fn in methods:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ref_t = statistics.median(times[methods[0][0]])
    print(f"\n{'method':<34} {'median s':>9} {'tokens/s':>10} {'rows/s':>8} {'vs old':>7}  max |ppl ratio - 1|")
    for name, _ in methods:
        t = statistics.median(times[name])
        dev = np.max(np.abs(results[name] / results[methods[0][0]] - 1))
        print(f"{name:<34} {t:>9.2f} {n_tok / t:>10,.0f} {len(rows) / t:>8,.0f} {ref_t / t:>6.2f}x  {dev:.2e}")
    print(f"(medians of {args.rounds} rounds; a million rows of {n_tok / len(rows):.0f} tokens at the default: "
          f"{1e6 * statistics.median(times[methods[-1][0]]) / len(rows) / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--naive-rows", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", default="128,256", help="LSTM sizes to try (128: auto size for a column "
                    "under 20k tokens; 256: under 300k)")
    ap.add_argument("--small-vocab", type=int, default=5_000,
                    help="also try a 1x128 model with this many words (full softmax, below adaptive_threshold)")
    ap.add_argument("--train-lines", type=int, default=3_000,
                    help="WikiText-2 lines to train on (3,000 lines: ~200k tokens, the size of a big column)")
    ap.add_argument("--column", action="store_true", help="only part 1 (the 60k-token column's model)")
    ap.add_argument("--column-rows", type=int, default=11_000, help="rows scored in part 1")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per method in part 1 (medians)")
    ap.add_argument("--train-steps", type=int, default=30, help="training steps of part 1's model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wt = need_wikitext()

    print(machine_line())
    column_benchmark(args)
    if args.column:
        return
    with open(wt / "train.txt", encoding="utf-8") as fh:
        train_lines = [next(fh) for _ in range(args.train_lines)]
    rows = pd.Series(short_rows(wt / "valid.txt", args.rows))
    lens = rows.str.split().str.len()
    print(f"rows: {len(rows):,}, words per row: mean {lens.mean():.1f}, min {lens.min()}, max {lens.max()}")
    print(f"\n{'model':<36} {'method':<32} {'rows':>7} {'seconds':>8} {'rows/s':>8} {'speed-up':>9}")
    configs = [(int(h), 50_000) for h in args.hidden.split(",")] + [(128, args.small_vocab)]
    for hidden, max_vocab in configs:
        model = lm.train(train_lines, level="whitespace", max_steps=5, epochs=1, seed=0, threads=args.threads,
                         hidden_dim=hidden, embed_dim=hidden // 2, val_fraction=0.01, max_vocab=max_vocab)
        info = model.info
        name = f"LSTM 1x{hidden}, {info['vocab_size']:,} words {info['softmax'][:4]}"
        model.score(rows.iloc[:200])   # warm-up (allocator, thread pool)
        t0 = time.perf_counter()
        packed = model.score(rows)
        t_packed = time.perf_counter() - t0
        n = min(args.naive_rows, len(rows))
        t0 = time.perf_counter()
        naive = np.array([model.score([r])[0] for r in rows.iloc[:n]])
        t_naive = time.perf_counter() - t0
        np.testing.assert_allclose(packed.to_numpy()[:n], naive, rtol=1e-4)   # same numbers, faster
        packed_rate, naive_rate = len(rows) / t_packed, n / t_naive
        print(f"{name:<36} {'packed batches (model.score)':<32} {len(rows):>7,} {t_packed:>8.2f} "
              f"{packed_rate:>8,.0f} {packed_rate / naive_rate:>8.1f}x")
        print(f"{'':<36} {'one row per call (naive loop)':<32} {n:>7,} {t_naive:>8.2f} {naive_rate:>8,.0f} "
              f"{'1.0x':>9}")

if __name__ == "__main__":
    main()
