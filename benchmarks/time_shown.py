"""How right are the times the user is shown? (issue 21: "always show how long", "long commands never block
silently"). Not a timed test: it prints figures and ratios.

1. Scoring estimate: ``progress.measure_scoring`` (64 sampled rows, the model's measured speed) against the
   real ``score_frame`` time on WikiText-2 rows, for a few frame sizes.
2. Stop inside the first epoch: the time from Stop to the returned model, validating at most
   ``STOPPED_VAL_TOKENS`` validation tokens against the whole validation set (as before).

    LM_MAGICS_SHARED=/work/shared python -m benchmarks.time_shown [--rows 6000]
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

import lm_magics as lm
from lm_magics.engine import training
from lm_magics.engine.training import StopTraining
from lm_magics.progress import measure_scoring

from .common import machine_line, need_wikitext


def rows_of(path, n):
    out = [ln.strip() for ln in open(path, encoding="utf-8") if ln.strip() and not ln.strip().startswith("=")]
    return out[:n]


def stop_latency(rows, bound) -> float:
    """Seconds from Stop (raised at step 3) to the returned model."""
    training.STOPPED_VAL_TOKENS = bound
    stopped_at = []

    def on_step(info):
        if info.step == 3:
            stopped_at.append(time.perf_counter())
            raise StopTraining("stop")

    # Half the rows held out: a big validation set, as a big run has (the case Stop used to wait on).
    model = lm.train(rows, on_step=on_step, epochs=1, hidden_dim=128, embed_dim=64, baseline=False, copy_window=0,
                     val_fraction=0.5, seed=0)
    assert model.interrupted
    return time.perf_counter() - stopped_at[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=6_000, help="rows of WikiText-2 (paragraphs, ~100 tokens each) for "
                                                            "the stop test; the model trains on a sixth of them")
    args = ap.parse_args()
    wt = need_wikitext()
    print(machine_line(), "| load", os.getloadavg())
    train_rows = rows_of(wt / "train.txt", args.rows)
    model = lm.train(train_rows[:args.rows // 6], epochs=1, hidden_dim=128, embed_dim=64, seed=0, baseline=False,
                     copy_window=0)
    print(f"model: hidden {model.info['hidden_dim']}, vocab {model.info['vocab_size']:,}")
    print("rows | estimated s | actual s | actual / estimated")
    for n in (500, 2_000, 6_000):
        df = pd.DataFrame({"text": (train_rows * 3)[:n]})
        est = measure_scoring(model, df["text"].to_list())
        t0 = time.perf_counter()
        lm.score_frame(model, df, "text", on_chunk=lambda d, t: None)
        real = time.perf_counter() - t0
        print(f"{n:,} | {est:.2f} | {real:.2f} | {real / est:.2f}")
    default = training.STOPPED_VAL_TOKENS
    whole = stop_latency(train_rows, 10**12)
    bounded = stop_latency(train_rows, default)
    print(f"Stop in the first epoch ({args.rows:,} rows): whole validation set {whole:.2f} s, at most "
          f"{default:,} tokens {bounded:.2f} s, ratio {whole / bounded:.1f}x")


if __name__ == "__main__":
    main()
