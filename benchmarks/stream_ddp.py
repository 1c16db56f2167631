"""Streamed corpora under torchrun: per-rank peak memory at ~100 MB and ~1 GB of text (2 ranks), then 1 vs 2
processes on the 1 GB streamed corpus (tokens/s and scaling efficiency).

    python -m benchmarks.stream_ddp [--sizes 100,1000] [--max-steps 20] [--keep]

Corpora: WikiText-2 train.txt, its lines shuffled afresh (seeded) for every copy, repeated to the size
under /tmp; they and their token cache are deleted at the end unless --keep. Every run is
``lm-magics train FILE --stream --cache-dir /tmp/... [--nproc N]`` with a fixed 1x128 LSTM, batch 32 per
process, ``--max-steps`` steps, 0.1% of the lines held out. The first 2-rank run on a corpus builds the
cache (one rank builds, the other waits on the lock); the 1-process run after it hits the cache.
Per-rank peak RSS (ru_maxrss) comes from the model file's ``meta["ddp"]["shards"]``.
Scaling efficiency = tokens/s with N processes / (N x tokens/s with 1 process, one thread each).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lm_magics as lm

from .common import machine_line, need_wikitext

REPO = Path(__file__).resolve().parents[1]
TMP = Path("/tmp/lm_magics_stream_ddp")
FLAGS = ["--level", "whitespace", "--hidden-dim", "128", "--embed-dim", "64", "--num-layers", "1",
         "--dropout", "0.1", "--batch-size", "32", "--epochs", "1", "--lr", "0.003", "--seed", "0",
         "--val-fraction", "0.001", "--precision", "fp32", "--threads", "1", "--quiet"]


def make_corpus(size_mb: int, src: Path) -> Path:
    out = TMP / f"corpus_{size_mb}mb.txt"
    if out.exists():
        return out
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(size_mb)
    want, written = size_mb * 2**20, 0
    with open(out, "w", encoding="utf-8") as fh:
        while written < want:
            rng.shuffle(lines)           # a perturbed copy: same words, another order
            block = "".join(lines)
            fh.write(block)
            written += len(block.encode("utf-8"))
    return out


def train(corpus: Path, nproc: int, max_steps: int) -> dict:
    out = TMP / f"model_{nproc}.lm"
    cmd = [sys.executable, "-m", "lm_magics", "train", str(corpus), "-o", str(out), "--stream",
           "--cache-dir", str(TMP / "cache"), "--max-steps", str(max_steps), *FLAGS]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    wall = time.perf_counter() - t0
    meta = lm.load(out).meta
    shards = meta.get("ddp", {}).get("shards", [])
    return dict(tokens=meta["tokens"], seen=meta["tokens_seen"], train_s=meta["train_elapsed"],
                tok_s=meta["tokens_seen"] / meta["train_elapsed"], wall=wall, prep_s=meta["elapsed"] - meta["train_elapsed"],
                rss=[s["peak_rss_mb"] for s in sorted(shards, key=lambda s: s["rank"])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="corpus sizes in MB, comma-separated")
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the corpora and the token cache under /tmp")
    args = ap.parse_args()
    wt = need_wikitext()
    print(machine_line())
    TMP.mkdir(parents=True, exist_ok=True)
    try:
        rows = []
        for mb in (int(s) for s in args.sizes.split(",")):
            corpus = make_corpus(mb, wt / "train.txt")
            r = train(corpus, 2, args.max_steps)
            rows.append((mb, r))
            print(f"  {mb} MB, 2 ranks: {r}", flush=True)
        print(f"\n{'corpus':>8} {'tokens':>13} {'prepare s':>10} {'peak RSS MB per rank':>22}")
        for mb, r in rows:
            print(f"{mb:>6}MB {r['tokens']:>13,} {r['prep_s']:>10.1f} {' / '.join(f'{x:.0f}' for x in r['rss']):>22}")
        (m0, r0), (m1, r1) = rows[0], rows[-1]
        print(f"corpus x{m1 / m0:.0f} -> peak RSS per rank x{max(r1['rss']) / max(r0['rss']):.2f}")
        one = train(make_corpus(m1, wt / "train.txt"), 1, args.max_steps)
        two = r1
        print(f"\n{m1} MB streamed, {args.max_steps} steps, batch 32 per process, 1 thread each")
        print(f"{'processes':>10} {'tokens':>8} {'train s':>8} {'tokens/s':>9} {'efficiency':>11}")
        for n, r in ((1, one), (2, two)):
            print(f"{n:>10} {r['seen']:>8,} {r['train_s']:>8.1f} {r['tok_s']:>9,.0f} "
                  f"{r['tok_s'] / (n * one['tok_s']):>10.0%}")
    finally:
        if not args.keep:
            shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
