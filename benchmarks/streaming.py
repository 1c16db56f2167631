"""Streaming training: peak memory and speed as the corpus grows (~100 MB and ~1 GB of text).

    python -m benchmarks.streaming [--sizes 100,1000] [--max-steps 30] [--no-compare]

Corpora are WikiText-2's train.txt repeated to the given size (MB), written under /tmp (not the repo).
Each run is a fresh process (so its peak RSS is its own) training with ``lm.train(lm.files(path),
stream=True)``: pass 1 counts the vocabulary, pass 2 writes the memory-mapped token file (cached under
/tmp/lm_magics_bench_cache, so a second run skips pass 2), then ``max_steps`` training steps read
windows of the memmap. Validation uses the first 300 lines of WikiText-2's valid.txt.
With compare on, the 100 MB corpus is also trained in memory (stream=False) for the memory ratio.

Reported: tokenize seconds and tokens/s (both passes), training tokens/s, peak RSS (ru_maxrss) and the
anonymous part of RSS at the end (RssAnon: the process's own memory, without mapped file pages).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .common import machine_line, need_wikitext

CACHE = Path("/tmp/lm_magics_bench_cache")


def make_corpus(size_mb: int, src: Path) -> Path:
    out = Path(f"/tmp/lm_magics_stream_{size_mb}mb.txt")
    want = size_mb * 2**20
    if out.exists() and out.stat().st_size >= want:
        return out
    data = src.read_bytes()
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as fh:
        written = 0
        while written < want:
            fh.write(data)
            written += len(data)
    os.replace(tmp, out)
    return out


def _rss_anon_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def worker(path: str, stream: bool, max_steps: int, val_path: str) -> None:
    import torch

    import lm_magics as lm

    torch.set_num_threads(2)
    with open(val_path, encoding="utf-8") as fh:
        val = [next(fh) for _ in range(300)]
    t0 = time.perf_counter()
    model = lm.train(lm.files(path), val_data=val, stream=stream, cache_dir=str(CACHE), level="whitespace",
                     max_steps=max_steps, seed=0)
    total = time.perf_counter() - t0
    r = model.report
    print(json.dumps(dict(
        tokens=model.meta["tokens"], total_s=total, train_s=r.elapsed, train_tok_s=r.tokens_per_s,
        prep_s=total - model.meta["train_elapsed"], peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_anon_mb=_rss_anon_kb() / 1024, model=f"{model.info['num_layers']}x{model.info['hidden_dim']}")))


def run(path: Path, stream: bool, max_steps: int, val_path: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.streaming", "--worker", str(path), "--stream", str(int(stream)),
           "--max-steps", str(max_steps), "--val", str(val_path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000", help="corpus sizes in MB, comma-separated")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--no-compare", action="store_true", help="skip the in-memory run on the smallest corpus")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--stream", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--val", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, bool(args.stream), args.max_steps, args.val)
        return
    wt = need_wikitext()
    print(machine_line())
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for i, mb in enumerate(sizes):
        path = make_corpus(mb, wt / "train.txt")
        modes = [True] + ([False] if i == 0 and not args.no_compare else [])
        for stream in modes:
            r = run(path, stream, args.max_steps, wt / "valid.txt")
            rows.append((mb, "stream" if stream else "in memory", r))
            print(f"  done: {mb} MB {'stream' if stream else 'in memory'}: {r}", flush=True)
    print()
    print(f"{'corpus':>8} {'mode':>10} {'tokens':>13} {'model':>6} {'tokenize s':>11} {'tok/s (prep)':>13} "
          f"{'train tok/s':>12} {'peak RSS MB':>12} {'RssAnon MB':>11}")
    for mb, mode, r in rows:
        print(f"{mb:>6}MB {mode:>10} {r['tokens']:>13,} {r['model']:>6} {r['prep_s']:>11.1f} "
              f"{r['tokens'] / r['prep_s']:>13,.0f} {r['train_tok_s']:>12,.0f} {r['peak_rss_mb']:>12,.0f} "
              f"{r['rss_anon_mb']:>11,.0f}")
    streamed = [(mb, r) for mb, mode, r in rows if mode == "stream"]
    if len(streamed) >= 2:
        (m0, r0), (m1, r1) = streamed[0], streamed[-1]
        print(f"\ncorpus x{m1 / m0:.0f} -> peak RSS x{r1['peak_rss_mb'] / r0['peak_rss_mb']:.2f}")
    mem = [r for mb, mode, r in rows if mode == "in memory"]
    if mem:
        print(f"in memory / streamed peak RSS at {sizes[0]} MB: x{mem[0]['peak_rss_mb'] / streamed[0][1]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
