"""Spark beside pandas: scoring a million rows, and training from a Spark-readable text source.

    nice -n 5 python -m benchmarks.spark [--rows 1000000] [--pandas-rows 200000] [--train-mb 1000]
    python -m benchmarks.spark --quick            # a smoke run: 20k rows, 5 MB

Part 1 (scoring). The issue's column model (``benchmarks.scoring --column``: WikiText-2 sentences, ~7k
words, the auto-sized network, a few training steps: speed does not depend on the weights) scores rows of
about 21 tokens (WikiText-2 valid sentences of 15-27 words, repeated), written once to a Parquet file:

- the pandas path, ``score_frame`` on ``--pandas-rows`` rows in a child process (torch's 2 threads, the
  whole batch per thread, as in a notebook): rows/s;
- ``score_spark`` in ``local[2]`` (two Python workers, one torch thread each), after a warm-up job that
  starts the workers, on 10% of ``--rows`` and then all of them, read from the Parquet file and written back as (id, ppl, bits) Parquet: rows/s, and the peak
  memory of the driver (this Python process: RSS, its anonymous part and its growth during the job; the
  model and the rows are written by a child process, so the driver holds what a notebook would: torch,
  pyspark and the model; the JVM, which in local mode is the driver and the executors at once,
  separately), sampled every 0.2 s;
- the scores of the rows both scored, compared: the largest relative difference of the perplexities.

Part 2 (training). A text file of ``--train-mb`` MB (WikiText-2 train lines, repeated) is trained on for
``--train-steps`` steps, each run with a fresh token cache: once as files (``lm.files(path)``, streamed),
once as ``spark.read.text(path)`` through the Spark path of ``%%lm_train --df`` (``spark_rows``: rows to
the driver by ``toLocalIterator``, spooled, tokenized into the cache). Prints the wall time of each, the
corpus tokens per second of the whole run and the driver's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .common import REPO, machine_line, need_wikitext


def sentences(path: Path, n: int, lo: int = 15, hi: int = 27) -> list:
    """The first n sentences of lo-hi words of a WikiText file (repeated when there are fewer)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("="):
                continue
            for sent in re.split(r"(?<= \.) ", line):
                if lo <= len(sent.split()) <= hi:
                    rows.append(sent)
    out = rows * (n // len(rows) + 1)
    return out[:n]


class Peak:
    """The peak memory of this process (VmRSS and RssAnon) and of its child processes, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.rss = self.anon = self.children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _anon(self) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss = max(self.rss, self.proc.memory_info().rss)
                self.anon = max(self.anon, self._anon())
                self.children = max(self.children, sum(c.memory_info().rss for c in self.proc.children(recursive=True)
                                                       if "java" in c.name()))
            except Exception:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "Peak":
        self.start = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        mb = 2 ** 20
        return (f"driver RSS peak {self.rss / mb:,.0f} MB (anonymous {self.anon / mb:,.0f} MB; "
                f"{(self.rss - self.start) / mb:+,.0f} MB during the job), JVM RSS peak {self.children / mb:,.0f} MB")


def make_model(path: Path, steps: int) -> None:
    import lm_magics as lm

    wt = need_wikitext()
    msgs = sentences(wt / "train.txt", 3_600, 3, 30)
    model = lm.train(msgs, level="whitespace", max_steps=steps, seed=0, val_fraction=0.05, baseline=False,
                     max_vocab=7_000)
    model.save(path)


def make_rows(path: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sentences(need_wikitext() / "valid.txt", n)
    pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64), "text": rows}), path, row_group_size=50_000)


def pandas_part(model_path: str, rows_path: str, n: int, out: str) -> None:
    """In a child process: score_frame on the first n rows; prints JSON, saves the perplexities."""
    import pyarrow.parquet as pq

    import lm_magics as lm

    model = lm.load(model_path)
    df = pq.read_table(rows_path).slice(0, n).to_pandas()
    t0 = time.perf_counter()
    lm.score_frame(model, df, "text", top=0)
    wall = time.perf_counter() - t0
    np.save(out, df["text_ppl"].to_numpy())
    tokens = sum(len(t.split()) + 1 for t in df["text"])
    print(json.dumps({"rows": n, "wall": wall, "tokens": tokens}))


def session(cores: int = 2):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{cores}]").appName("lm_magics-bench")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "2g")
             .config("spark.pyspark.python", sys.executable).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def scoring(args, work: Path, spark) -> None:
    import pyarrow.parquet as pq

    from lm_magics.spark import score_spark, spark_errors

    model_path, rows_path = work / "model.lm", work / "rows.parquet"
    t0 = time.perf_counter()
    # In a child process: the driver holds only what a notebook scoring a Spark frame holds.
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    made = subprocess.run([sys.executable, "-m", "benchmarks.spark", "--make-data", str(model_path), str(rows_path),
                           str(args.train_steps), str(args.rows)], cwd=REPO, env=env, capture_output=True, text=True)
    if made.returncode:
        sys.exit(made.stderr[-3000:])
    print(f"model and {args.rows:,} rows written in {time.perf_counter() - t0:.0f} s")
    import lm_magics as lm

    info = lm.load(model_path).info
    print(f"model: {info['vocab_size']:,} words, {info['softmax']} softmax, {info['num_layers']}x{info['hidden_dim']}, "
          f"embed {info['embed_dim']}")

    n_pd = min(args.pandas_rows, args.rows)
    child = subprocess.run([sys.executable, "-m", "benchmarks.spark", "--pandas-part", str(model_path),
                            str(rows_path), str(n_pd), str(work / "pandas.npy")], cwd=REPO, env=env,
                           capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr[-3000:])
    pd_res = json.loads(child.stdout.strip().splitlines()[-1])
    pd_rate = pd_res["rows"] / pd_res["wall"]
    print(f"pandas path (score_frame, 2 torch threads): {n_pd:,} rows in {pd_res['wall']:.1f} s = "
          f"{pd_rate:,.0f} rows/s ({pd_res['tokens'] / pd_res['rows']:.1f} tokens per row)")

    sdf = spark.read.parquet(str(rows_path))
    # Warm-up: the Python workers start, import torch and load the model once (reused by later jobs).
    t0 = time.perf_counter()
    with spark_errors("scoring"):
        score_spark(sdf.where("id < 400").repartition(2), "text", str(model_path)).agg({"text_ppl": "sum"}).collect()
    print(f"warm-up (2 Python workers start, import torch, load the model): {time.perf_counter() - t0:.1f} s")
    for n in sorted({max(1, args.rows // 10), args.rows}):
        part = sdf.where(f"id < {n}")
        out = work / f"scored-{n}"
        with Peak() as peak, spark_errors("scoring"):
            t0 = time.perf_counter()
            score_spark(part, "text", str(model_path)).select("id", "text_ppl", "text_bits") \
                .write.mode("overwrite").parquet(str(out))
            wall = time.perf_counter() - t0
        print(f"score_spark local[2]: {n:,} rows in {wall:.1f} s = {n / wall:,.0f} rows/s "
              f"({n / wall / pd_rate:.2f}x the pandas path); {peak.line()}")
    got = pq.read_table(str(work / f"scored-{args.rows}")).to_pandas().sort_values("id")
    got = got[got["id"] < n_pd]["text_ppl"].to_numpy()
    want = np.load(work / "pandas.npy")
    dev = np.max(np.abs(got / want - 1))
    print(f"the same {n_pd:,} rows scored both ways: largest |ppl ratio - 1| = {dev:.2e} "
          f"(NaN rows alike: {bool(np.array_equal(np.isnan(got), np.isnan(want)))})")


def training(args, work: Path, spark) -> None:
    import lm_magics as lm
    from lm_magics.spark import spark_rows

    text = work / "corpus.txt"
    lines = [ln for ln in open(need_wikitext() / "train.txt", encoding="utf-8") if ln.strip()]
    target = int(args.train_mb * 2 ** 20)
    with open(text, "w", encoding="utf-8") as fh:
        written = 0
        while written < target:
            for ln in lines:
                fh.write(ln)
                written += len(ln.encode("utf-8"))
                if written >= target:
                    break
    print(f"\ntraining text: {text.stat().st_size / 2 ** 20:,.0f} MB, {args.train_steps} steps per run")
    sources = [("files (lm.files)", lambda: lm.files(str(text))),
               ("Spark (spark.read.text, the --df path)", lambda: spark_rows(spark.read.text(str(text)), "value"))]
    rates = []
    for name, make in sources:
        cache = work / f"cache-{len(rates)}"
        with Peak() as peak:
            t0 = time.perf_counter()
            model = lm.train(make(), stream=True, cache_dir=str(cache), max_steps=args.train_steps, seed=0,
                             hidden_dim=128, embed_dim=64, max_vocab=20_000)
            wall = time.perf_counter() - t0
        tokens = model.meta.get("tokens") or 0
        rates.append(tokens / wall)
        print(f"{name}: {wall:.1f} s for {tokens:,} corpus tokens = {tokens / wall:,.0f} tokens/s; {peak.line()}")
        shutil.rmtree(cache, ignore_errors=True)
    print(f"Spark / files: {rates[1] / rates[0]:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--pandas-rows", type=int, default=200_000)
    p.add_argument("--train-mb", type=float, default=1000)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--skip-scoring", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--quick", action="store_true", help="20k rows, 5 MB: a smoke run")
    p.add_argument("--pandas-part", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--make-data", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make_data:
        make_model(Path(args.make_data[0]), int(args.make_data[2]))
        make_rows(Path(args.make_data[1]), int(args.make_data[3]))
        return
    if args.pandas_part:
        pandas_part(args.pandas_part[0], args.pandas_part[1], int(args.pandas_part[2]), args.pandas_part[3])
        return
    if args.quick:
        args.rows, args.pandas_rows, args.train_mb, args.train_steps = 20_000, 20_000, 5, 10
    print(machine_line())
    with open("/proc/loadavg") as fh:
        print("load average:", " ".join(fh.read().split()[:3]))
    work = Path(tempfile.mkdtemp(prefix="lm_magics-spark-bench-"))
    spark = session()
    try:
        if not args.skip_scoring:
            scoring(args, work, spark)
        if not args.skip_training:
            training(args, work, spark)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open("/proc/loadavg") as fh:
        print("load average:", " ".join(fh.read().split()[:3]))


if __name__ == "__main__":
    main()
