"""Cell-sized text: which optimizer and network the smallest tier's defaults should use.

Each candidate is one ``lm.train(rows, val_data=val, seed=s, **options)`` per text and seed (seeds 0 and
1); the figure is the mean of the best validation perplexities, beside the mean seconds of the whole
call. The texts are notebook-cell sized (463 to 7,206 training tokens), two kinds of prose:

- shake100 / shake400 / shake1500: the first 100 / 400 / 1,500 lines of tinyshakespeare, validated on
  the lines after them (50 / 100 / 300);
- docs300: 300 paragraphs of the docstrings of 20 stdlib modules (shuffled, seed 0), validated on 200
  others. These ship with Python.

The candidates: the defaults (whatever ``auto_config`` picks today), the defaults before the cell tier
took SGD (64/128, dropout 0.3, AdamW lr 0.03), that network under SGD, the defaults' network under AdamW,
and the textbook's network and recipe (200/200x2, dropout 0.2, batch 20, SGD lr 20, clip 0.25). The
validation texts are small, so single figures move by tens between seeds: compare the columns, not the
digits.

    python -m benchmarks.cell_defaults [--threads 2] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import sys
import time

import torch

import lm_magics as lm
from benchmarks.common import SHARED, machine_line

SGD = dict(optimizer="sgd", grad_clip=0.25, lr=20.0)
CANDIDATES = {
    "defaults": {},
    "before: 64/128 d0.3, AdamW lr 0.03": dict(embed_dim=64, hidden_dim=128, dropout=0.3, optimizer="adamw", lr=0.03),
    "64/128 d0.3, SGD": dict(embed_dim=64, hidden_dim=128, dropout=0.3, **SGD),
    "the defaults' network, AdamW lr 0.01": dict(optimizer="adamw", lr=0.01),
    "the defaults' network, AdamW lr 0.03": dict(optimizer="adamw", lr=0.03),
    "textbook: 200/200x2 d0.2 batch 20, SGD": dict(embed_dim=200, hidden_dim=200, num_layers=2, dropout=0.2,
                                                   batch_size=20, **SGD),
}
DOC_MODULES = ["json", "os", "re", "collections", "functools", "itertools", "pathlib", "string", "textwrap",
               "typing", "statistics", "random", "datetime", "argparse", "logging", "csv", "shutil",
               "subprocess", "threading", "heapq"]


def docstring_paragraphs() -> list:
    paragraphs = []
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if inspect.isfunction(obj) or inspect.isclass(obj) else None
            if doc:
                paragraphs += [p.replace("\n", " ") for p in doc.split("\n\n") if len(p.split()) > 3]
    random.Random(0).shuffle(paragraphs)
    return paragraphs


def texts() -> dict:
    path = SHARED / "tinyshakespeare" / "input.txt"
    if not path.exists():
        sys.exit(f"tinyshakespeare not found at {path}; set LM_MAGICS_SHARED to the folder holding data/.")
    shake = path.read_text(encoding="utf-8").splitlines()
    docs = docstring_paragraphs()
    return {"shake100": (shake[:100], shake[100:150]), "shake400": (shake[:400], shake[400:500]),
            "shake1500": (shake[:1500], shake[1500:1800]), "docs300": (docs[:300], docs[900:1100])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="candidate names (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line())
    sets = texts()
    for name, (rows, val) in sets.items():
        print(f"{name}: {sum(len(r.split()) for r in rows):,} training words, {len(val)} validation rows")
    lm.train(rows[:40], epochs=1, baseline=False, copy_window=0)     # imports and thread pools, untimed
    print(f"\n{'candidate':42s} " + " ".join(f"{k:>17s}" for k in sets) + "   (mean best val ppl, mean s)")
    for cand, options in CANDIDATES.items():
        if args.only and cand not in args.only:
            continue
        cells = []
        for rows, val in sets.values():
            ppl, secs = [], []
            for seed in (0, 1):
                t0 = time.perf_counter()
                model = lm.train(rows, val_data=val, seed=seed, baseline=False, copy_window=0, **options)
                secs.append(time.perf_counter() - t0)
                ppl.append(model.report.best_val_ppl)
            cells.append(f"{sum(ppl) / 2:9.1f} {sum(secs) / 2:5.1f} s")
        print(f"{cand:42s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)
        if cand == "defaults":
            c = model.report.config
            chosen = (f"  (the defaults on docs300: {c.embed_dim}/{c.hidden_dim}x{c.num_layers}, dropout {c.dropout}, "
                      f"{c.optimizer} lr {c.lr:g} clip {c.grad_clip:g}, batch {c.batch_size})")
            print(chosen)


if __name__ == "__main__":
    main()
