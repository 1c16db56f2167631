"""DistributedDataParallel on CPU (gloo): training tokens/s with 1 vs 2 processes on the same corpus.

    python -m benchmarks.ddp [--lines 3000] [--max-steps 20] [--runs 1x2,1x1,2x1]

Runs are PROCESSESxTHREADS: 1x2 (one process, two torch threads), 1x1 and 2x1 (two processes, one
thread each). The corpus is the first ``--lines`` lines of WikiText-2 train.txt (written under /tmp). Each run is
``torchrun --standalone --nproc_per_node=N -m lm_magics train ... --max-steps S``; every rank streams
``batch_size`` columns of its own shard, so one step of N processes trains on N times the tokens of one.
tokens/s = tokens trained by all ranks / training seconds (read from the saved model's meta).

On a machine with 2 cores, 2 processes get one core each instead of 2 threads for one process: expect
little or no gain there; the same command scales across GPUs or machines (see engine/distributed.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import lm_magics as lm

from .common import machine_line, need_wikitext

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=3000)
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--runs", default="1x2,1x1,2x1",
                    help="PROCESSESxTHREADS each, comma-separated [default: 1x2,1x1,2x1]")
    ap.add_argument("--hidden-dim", type=int, default=256)
    args = ap.parse_args()
    wt = need_wikitext()
    print(machine_line())
    corpus = Path(f"/tmp/lm_magics_ddp_{args.lines}.txt")
    with open(wt / "train.txt", encoding="utf-8") as fh:
        corpus.write_text("".join(next(fh) for _ in range(args.lines)))
    results = []
    for spec in args.runs.split(","):
        n, threads = (int(v) for v in spec.lower().split("x"))
        out = Path(f"/tmp/lm_magics_ddp_{n}.lm")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
               "lm_magics", "train", str(corpus), "-o", str(out), "--level", "whitespace", "--quiet",
               "--max-steps", str(args.max_steps), "--epochs", "1", "--hidden-dim", str(args.hidden_dim),
               "--embed-dim", str(args.hidden_dim // 2), "--batch-size", "32", "--seed", "0",
               "--precision", "fp32", "--threads", str(threads)]
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        meta = lm.load(out).meta
        tok_s = meta["tokens_seen"] / meta["train_elapsed"]
        results.append((f"{n} x {threads} thr", meta["tokens_seen"], meta["train_elapsed"], tok_s, wall))
    print(f"\n{'processes':>11} {'tokens':>9} {'train s':>8} {'tokens/s':>9} {'wall s':>7} {'vs 1':>6}")
    base = results[0][3]
    for n, tokens, secs, tok_s, wall in results:
        print(f"{n:>11} {tokens:>9,} {secs:>8.1f} {tok_s:>9,.0f} {wall:>7.1f} {tok_s / base:>5.2f}x")


if __name__ == "__main__":
    main()
