"""The n-gram model: counting and scoring speed, and whether the LSTM beats it at finding unusual rows.

    python -m benchmarks.ngram [--orders 3,5] [--skip-speed] [--skip-auc] [--epochs N] [--threads 2]

Speed (needs WikiText-2 train at $LM_MAGICS_SHARED/data/wikitext-2; skipped with a message when absent):
the train file's lines are encoded once with the vocabulary ``lm.train`` would build, then for each order
the interpolated modified Kneser-Ney counts are fitted on the token stream (``NGramModel.fit``: tokens/s)
and the validation file is scored (``stream_nll``: tokens/s), best of 2 runs each. One end-to-end
``lm.train(train.txt, kind="ngram")`` (reading, tokenizing, counting, the copy index) is timed too.

ROC AUC (no data needed: text that ships with Python): each docstring paragraph (5+ words) of a few stdlib
packages is a row, labelled by its package. An LSTM (with its n-gram baseline and the mixture, as
``lm.train`` builds them) is trained on 70% of the paragraphs of every package but ``email``; the other
30% and all of ``email``'s are scored with ``lm.score_frame(..., baseline=True, label="is_email")``.
The AUC says how well each score tells ``email``'s paragraphs (as the more surprising) from the others.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

import lm_magics as lm
from lm_magics.engine.ngram import NGramModel
from lm_magics.engine.tokenizer import Tokenizer

from .common import WIKITEXT, machine_line

TARGET = "email"
OTHERS = ["asyncio", "logging", "unittest", "http", "urllib", "xml", "json", "importlib", "concurrent"]


def cpu_model() -> str:
    """lscpu's Model name (the CPU, which decides the speed), or the platform's word for it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import platform
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------- speed

def best_of(fn, n: int = 2) -> Tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def speed(orders: List[int]) -> None:
    train_path, valid_path = WIKITEXT / "train.txt", WIKITEXT / "valid.txt"
    if not train_path.exists():
        print(f"speed: skipped, WikiText-2 not found at {WIKITEXT} (set LM_MAGICS_SHARED to the folder "
              f"holding data/wikitext-2).")
        return
    train_lines = train_path.read_text(encoding="utf-8").splitlines()
    valid_lines = valid_path.read_text(encoding="utf-8").splitlines()
    train_lines = [s for s in train_lines if s.strip()]      # blank lines are no rows, as in lm.train
    valid_lines = [s for s in valid_lines if s.strip()]
    tok = Tokenizer("word").fit(train_lines)
    t0 = time.perf_counter()
    train_ids = np.concatenate([r for r in tok.encode_lines(train_lines) if r.size])
    t_encode = time.perf_counter() - t0
    valid_ids = np.concatenate([r for r in tok.encode_lines(valid_lines) if r.size])
    V = len(tok)
    print(f"WikiText-2: {train_ids.size:,} training tokens (encoded in {t_encode:.1f} s), "
          f"{valid_ids.size:,} validation tokens, vocabulary {V:,}")
    print("| order | n-grams | fit s | fit tokens/s | score s | score tokens/s | valid ppl |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for order in orders:
        t_fit, ng = best_of(lambda: NGramModel.fit(train_ids, V, tok.eos_id, order))
        t_score, nll = best_of(lambda: ng.stream_nll(valid_ids))
        print(f"| {order} | {ng.num_ngrams:,} | {t_fit:.2f} | {train_ids.size / t_fit:,.0f} | {t_score:.2f} | "
              f"{valid_ids.size / t_score:,.0f} | {float(np.exp(np.mean(nll))):.1f} |")
        ng = nll = None                       # free the counts before the next order
    t0 = time.perf_counter()
    model = lm.train(Path(train_path), kind="ngram", order=orders[0], seed=0, val_fraction=0.0)
    t_all = time.perf_counter() - t0
    index = f" of {model.copy_index.nbytes / 1e6:.1f} MB" if model.copy_index is not None else ""
    print(f"end to end: lm.train(train.txt, kind='ngram', order={orders[0]}) {t_all:.1f} s "
          f"({model.meta['tokens'] / t_all:,.0f} tokens/s incl. reading, vocabulary, encoding, counting, "
          f"copy index{index})")


# ---------------------------------------------------------------------------------------------- AUC

def paragraphs(package: str) -> List[str]:
    """Docstring paragraphs (5+ words, whitespace collapsed) of every module of a stdlib package, read with
    ast (nothing is imported), files in sorted order."""
    root = Path(sysconfig.get_paths()["stdlib"]) / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]
    out = []
    for f in files:
        if "test" in f.relative_to(root.parent).parts[1:-1]:
            continue                                  # package test suites are not the package's prose
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for para in re.split(r"\n\s*\n", doc or ""):
                    para = " ".join(para.split())
                    if len(para.split()) >= 5:
                        out.append(para)
    return out


def in_train(text: str) -> bool:
    """A fixed 70% of the rows, by a hash of the text (the same split on every run and machine)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 10 < 7


def auc(epochs: Optional[int], threads: int) -> None:
    import pandas as pd

    rows = [(pkg, p) for pkg in [TARGET] + OTHERS for p in paragraphs(pkg)]
    df = pd.DataFrame(rows, columns=["package", "text"]).drop_duplicates("text", ignore_index=True)
    df["is_email"] = df["package"] == TARGET
    train_mask = ~df["is_email"] & df["text"].map(in_train)
    train, test = df[train_mask], df[~train_mask].copy()
    print(f"docstring paragraphs (Python {sys.version.split()[0]}): {len(df):,} rows; training on {len(train):,} "
          f"of {', '.join(OTHERS)}; scoring {len(test):,} ({int(test['is_email'].sum()):,} from {TARGET})")
    t0 = time.perf_counter()
    options = {"epochs": epochs} if epochs else {}
    model = lm.train(train["text"], seed=0, threads=threads, **options)
    t_train = time.perf_counter() - t0
    ng = model.ngram
    print(f"trained in {t_train:.1f} s: LSTM {model.config.num_layers}x{model.config.hidden_dim}, "
          f"{model.meta.get('epochs_trained')} epochs, "
          f"{model.meta['tokens']:,} tokens, val ppl {model.meta['val_ppl']:.1f}; {ng.order}-gram baseline "
          f"val ppl {model.meta['baseline_val_ppl']:.1f}; mixture weight {model.meta['mix_weight']:.2f} "
          f"({model.meta['mix_note']})")
    report = lm.score_frame(model, test, "text", baseline=True, label="is_email")
    names = {"lstm": "LSTM", "ngram": "n-gram baseline", "mix": "mixture"}
    print("| score | ROC AUC (email vs other packages) | median ppl, email | median ppl, others |")
    print("|---|---:|---:|---:|")
    cols = {"lstm": "text_ppl", "ngram": "text_ngram_ppl", "mix": "text_mix_ppl"}
    for k, v in report.auc.items():
        med = test.groupby("is_email")[cols[k]].median()
        print(f"| {names[k]} | {v:.3f} | {med[True]:.1f} | {med[False]:.1f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", default="3,5", help="n-gram orders to time (default 3,5)")
    p.add_argument("--epochs", type=int, default=None,
                   help="LSTM epochs for the AUC comparison (default: lm.train's own choice)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-auc", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()} | {machine_line()}")
    if not args.skip_speed:
        speed([int(o) for o in args.orders.split(",")])
    if not args.skip_auc:
        auc(args.epochs, args.threads)


if __name__ == "__main__":
    main()
