"""Shared helpers for the side-by-side benchmarks: where the data is, the machine line, timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LM_MAGICS_SHARED", REPO.parent / "shared")) / "data"
WIKITEXT = SHARED / "wikitext-2"


def need_wikitext() -> Path:
    if not (WIKITEXT / "train.txt").exists():
        sys.exit(f"WikiText-2 not found at {WIKITEXT}; set LM_MAGICS_SHARED to the folder holding data/.")
    return WIKITEXT


def machine_line() -> str:
    return (f"{time.strftime('%Y-%m-%d')} | {platform.processor() or platform.machine()} | "
            f"{os.cpu_count()} cores | torch {torch.__version__} | {torch.get_num_threads()} threads | "
            f"python {platform.python_version()}")


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def time_calls(fn: Callable[[], object], n: int, warmup: int = 3) -> List[float]:
    """Wall seconds of n calls of fn (after warm-up calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out
