"""How soon the chat says something about a long command, and how good its estimate is.

    python -m benchmarks.chat_background [--rows 15000] [--rounds 2]

A column of about 15,000 short rows (AG News's 7,600 titles and 7,600 descriptions, as separate rows: 10-40
words, close to tweets; ``../shared/data/anomaly/ag_news/test.csv``) and a model with the default network for
that much text (trained for a few steps: the weights' quality does not change the speed). ``/unusual`` is
sent to a ChatAssistant (no browser) in rounds; for each it prints

* the time ``send`` took to return, i.e. until the message "Scoring N rows ..., about T" and its Stop were
  posted (the estimate's measurement included; the first round measures the model's speed, later rounds
  reuse it);
* the estimate T, the real time until the answer was posted, and their ratio;
* whether it ran in the background (it does from ``ChatAssistant.background_seconds`` on).

Figures, not a test: the machine's load changes them (``uptime`` is printed).
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch

import lm_magics as lm
from lm_magics.registry import ModelRegistry

from .common import SHARED, machine_line


def rows(n: int) -> list:
    path = SHARED / "anomaly" / "ag_news" / "test.csv"
    if not path.exists():
        raise SystemExit(f"AG News not found at {path}; set LM_MAGICS_SHARED to the folder holding data/.")
    df = pd.read_csv(path)
    out = [t for pair in zip(df["title"], df["description"]) for t in pair if isinstance(t, str)]
    return (out * (n // max(1, len(out)) + 1))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=15_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lm_magics.widgets import ChatAssistant

    texts = rows(args.rows)
    print(machine_line(), "| load", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    t0 = time.perf_counter()
    model = lm.train(texts, max_steps=20, seed=0)
    info = model.info
    print(f"model: {info.get('kind')} hidden {model.config.hidden_dim}, embed {model.config.embed_dim}, "
          f"vocabulary {info['vocab_size']:,} (trained {time.perf_counter() - t0:.0f} s for 20 steps)")
    reg = ModelRegistry()
    reg.set("news", model)
    ns = {"news": pd.DataFrame({"text": texts})}
    chat = ChatAssistant("news", registry=reg, user_ns=ns, seed=0)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"/unusual news.text: {len(texts):,} rows, {words:.1f} words per row, baseline beside the model")
    print("round | message after | estimate | answer after | estimate / real | background")
    for r in range(args.rounds):
        n = len(chat.messages)
        t0 = time.perf_counter()
        chat.send("/unusual news.text top 3")
        said = time.perf_counter() - t0
        first = chat.messages[n + 1]["text"]          # yours, then the message (or the answer)
        background = bool(chat.jobs)
        estimate = None
        if "about " in first:
            estimate = first.split("about ", 1)[1].split("…", 1)[0]
        while chat.jobs:
            time.sleep(0.05)
        done = time.perf_counter() - t0
        real = done if background else said
        est_s = _seconds(estimate) if estimate else float("nan")
        print(f"{r + 1:>5} | {said:11.2f} s | {estimate or '-':>8} | {real:10.1f} s | {est_s / real:15.2f} | "
              f"{'yes' if background else 'no'}")
    chat.close()


def _seconds(text: str) -> float:
    total = 0.0
    for value, unit in zip(text.split()[::2], text.split()[1::2]):
        total += float(value) * {"s": 1, "min": 60, "h": 3600}[unit]
    return total


if __name__ == "__main__":
    main()
