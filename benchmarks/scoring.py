"""Per-row scoring speed: packed batches (``model.score(series)``) vs one row at a time.

    python -m benchmarks.scoring [--rows 10000] [--naive-rows 200] [--hidden 128,256] [--threads 2]

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

import numpy as np
import pandas as pd
import torch

import lm_magics as lm

from .common import machine_line, need_wikitext


def short_rows(path, n: int) -> list:
    """Sentences of 3-40 tokens cut from WikiText lines, the first n of them."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("="):
                continue
            for sent in re.split(r"(?<= \.) ", line):
                if 3 <= len(sent.split()) <= 40:
                    rows.append(sent)
                    if len(rows) == n:
                        return rows
    while len(rows) < n:   # a small corpus: repeat
        rows.extend(rows[: n - len(rows)])
    return rows


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wt = need_wikitext()

    print(machine_line())
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
