"""Time to an answer (issue 21): how long a user waits for ``lm.train`` with the defaults, on a quiet machine
and beside busy processes, and what the wait buys.

For each column: the whole ``lm.train(rows, seed=0)`` call (tokenizing, n-gram baseline, copy index and
mixture weight included) with today's defaults (a time budget) and with the old behaviour
(``budget=None``: the epochs to convergence), quiet and beside one and two busy processes (``while True:
pass`` subprocesses started before the call). Printed per run: seconds of the call, seconds until
``on_baseline`` fired (the n-gram is usable), the plan, the thread choice, the best validation
perplexity, and the ratio of the busy runs to the quiet one. Then the chat's ``/unusual`` on the
15,000-row column through ``lm.ChatAssistant(...).send(...)``: time to its first message and to the answer
(whatever the chat does today).

Stand-ins for the issue's columns, from WikiText-2's training text (sentences split at " . "):

- short: 3,600 rows of short messages, about 60k tokens: sentences of 6-24 words;
- tweets: 15,000 rows of tweet-length text, about 300k tokens: sentences of 10-30 words.

Targets (issue 21): short <= 20 s, tweets <= 60 s; beside one busy process <= 1.6x quiet, beside two
<= 3x; validation perplexity within 10% of budget=None's; the n-gram within 3 s; /unusual on 15,000 rows:
a message within 0.5 s, the answer within 15 s.

    python -m benchmarks.time_to_answer [--columns short tweets] [--busy 0 1 2] [--no-old] [--no-unusual]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from typing import List, Optional

import lm_magics as lm
from benchmarks.common import machine_line, need_wikitext

COLUMNS = {"short": (3_600, 6, 24), "tweets": (15_000, 10, 30)}    # rows, fewest and most words per row
TARGET_S = {"short": 20.0, "tweets": 60.0}
BUSY_RATIO = {1: 1.6, 2: 3.0}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_line() -> str:
    try:
        a, b, c = os.getloadavg()
        return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"
    except (AttributeError, OSError):
        return "load average unknown"


def column(name: str) -> List[str]:
    """The rows standing in for a column (see the module docstring)."""
    n_rows, lo, hi = COLUMNS[name]
    rows = []
    with open(need_wikitext() / "train.txt", encoding="utf-8") as f:
        for para in f:
            para = para.strip()
            if not para or para.startswith("="):
                continue
            for s in re.split(r"(?<= \.) ", para):
                if lo <= len(s.split()) <= hi:
                    rows.append(s)
                    if len(rows) == n_rows:
                        return rows
    return rows


class Busy:
    """n processes spinning ``while True: pass`` for the duration of a with-block."""

    def __init__(self, n: int):
        self.n = n
        self.procs: List[subprocess.Popen] = []

    def __enter__(self) -> "Busy":
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.5 if self.n else 0)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def one_run(rows: List[str], **options) -> dict:
    """The whole lm.train call, timed, with when the n-gram and the plan arrived."""
    seen: dict = {}
    t0 = time.perf_counter()
    model = lm.train(rows, seed=0, on_baseline=lambda b: seen.setdefault("baseline", time.perf_counter() - t0),
                     on_plan=lambda p: seen.setdefault("plan", (time.perf_counter() - t0, p.describe())), **options)
    total = time.perf_counter() - t0
    r = model.report
    return {"total": total, "baseline": seen.get("baseline"), "plan": seen.get("plan"), "val_ppl": r.best_val_ppl,
            "epochs": len(r.history), "steps": r.steps, "tokens": model.meta["tokens"], "threads": r.threads,
            "stop": r.stop_reason, "train": r.elapsed, "notes": [n for n in r.notes if n.startswith(("budget", "threads",
                                                                                                    "another", "the valid"))],
            "model": model}


def show(label: str, res: dict, quiet: Optional[dict]) -> None:
    ratio = f", {res['total'] / quiet['total']:.2f}x quiet" if quiet else ""
    base = f"{res['baseline']:.1f} s" if res["baseline"] is not None else "n/a"
    plan = f"plan at {res['plan'][0]:.1f} s: {res['plan'][1]}" if res["plan"] else "no plan"
    print(f"  {label:<28} {res['total']:6.1f} s{ratio}; n-gram at {base}; {plan}; {res['epochs']} epochs "
          f"({res['stop']}), {res['steps']:,} steps, {res['threads']} thread(s); val ppl {res['val_ppl']:,.1f}",
          flush=True)
    for n in res["notes"]:
        print(f"      {n}")


def unusual(rows: List[str], model) -> None:
    """The chat's /unusual on the column: time to its first message and to the answer."""
    import pandas as pd

    df = pd.DataFrame({"text": rows})
    chat = lm.ChatAssistant(model, user_ns={"df": df}, seed=0)
    times: list = []
    t0 = time.perf_counter()
    add = chat._add

    def timed_add(role, text, **kw):
        if role != "user":
            times.append((time.perf_counter() - t0, text[:70].replace("\n", " ")))
        return add(role, text, **kw)

    chat._add = timed_add
    chat.send("/unusual df.text top 3")
    while chat.jobs:                               # a background run (big frames): wait for its answer
        time.sleep(0.05)
    answer = time.perf_counter() - t0
    first = times[0][0] if times else answer
    print(f"  /unusual on {len(rows):,} rows: first message after {first:.2f} s (target 0.5), answer after "
          f"{answer:.1f} s (target 15): {times[-1][1] if times else ''!r}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=list(COLUMNS))
    ap.add_argument("--busy", nargs="+", type=int, default=[0, 1, 2], help="busy processes beside the run")
    ap.add_argument("--no-old", action="store_true", help="skip budget=None (the old behaviour: long)")
    ap.add_argument("--no-unusual", action="store_true", help="skip the chat's /unusual")
    args = ap.parse_args(argv)
    print(machine_line())
    print(f"CPU: {cpu_model()}; {load_line()} (other work on the machine counts: see the load)")
    for name in args.columns:
        rows = column(name)
        words = sum(len(r.split()) for r in rows)
        print(f"\n{name}: {len(rows):,} rows of WikiText-2 sentences ({COLUMNS[name][1]}-{COLUMNS[name][2]} words), "
              f"{words:,} words; target {TARGET_S[name]:.0f} s for the whole call")
        quiet = None
        kept = None
        for busy in args.busy:
            with Busy(busy):
                print(f"  [{load_line()} at the start, {busy} busy process(es) beside]")
                res = one_run(rows)
            show(f"defaults, {busy} busy", res, quiet if busy else None)
            if busy == 0:
                quiet = res
                kept = res["model"]
            elif quiet is not None:
                print(f"      target beside {busy}: <= {BUSY_RATIO.get(busy, 3.0)}x quiet")
            if not args.no_old and busy == 0:
                with Busy(busy):
                    old = one_run(rows, budget=None)
                show(f"budget=None (old), {busy} busy", old, None)
                print(f"      val ppl budgeted / old: {res['val_ppl'] / old['val_ppl']:.3f} (target <= 1.10); "
                      f"time {res['total'] / old['total']:.2f}x")
        if name == "tweets" and not args.no_unusual:
            unusual(rows, kept or one_run(rows)["model"])
    print(f"\n{load_line()} at the end")


if __name__ == "__main__":
    main()
