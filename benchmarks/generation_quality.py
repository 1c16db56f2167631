"""Does generation loop? Repeated lines, lists of speaker names and distinct word pairs, with and without
GenerateConfig's rules against loops (repetition_penalty, no_repeat_ngram, stop_at_blank_line).

    python -m benchmarks.generation_quality [--lstm-seconds 300] [--prompts 6] [--seeds 2] [--n-words 100]
        [--temperatures 0,0.8] [--cache DIR]

Two texts of the tutorials' kind: Shakespeare's plays (tinyshakespeare at $LM_MAGICS_SHARED/data; a
speaker's name on a line of its own, then the speech, then a blank line) and the docstrings of Python's
standard library (``lm_magics.demo``, one docstring a row). For each, an LSTM (``lm.train`` with the
defaults and ``max_time``) and an n-gram (``kind="ngram"``) are trained on the first 90% of the rows, and
each model answers prompts from the other 10% the way the chat does (``iter_words``: words across line
ends, 100 words as after ``/len 100``), greedy (temperature 0, where loops are worst) and at the chat's
temperature 0.8 (once per seed), in each setting:

* ``none``: repetition_penalty=1, no_repeat_ngram=0, stop_at_blank_line=False (the model as it is);
* one rule at a time; ``defaults``: GenerateConfig() as it ships.

Figures per answer, averaged over answers (lower is better for the first four):

* repeated lines: share of an answer's lines that repeat an earlier line of the same answer;
* same line in a row: the longest run of one line repeated back to back (1 = no repeat);
* name lists: share of lines that are a short line (at most 2 words, e.g. "MENENIUS:") right after
  another short line;
* repeated 4-grams: share of word 4-grams that occurred earlier in the answer;
* distinct-2: distinct word pairs / word pairs (higher = more varied);
* words: mean words per answer (stop_at_blank_line ends an answer at the end of its speech or docstring);
* ms/word: generation time per word (rules need the whole next-word distribution at every step).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import lm_magics as lm
from lm_magics.demo import stdlib_docstrings
from lm_magics.engine.tokenizer import EOS
from lm_magics.widgets._base import iter_words

from .common import SHARED, machine_line

SETTINGS: Dict[str, dict] = {
    "none": dict(repetition_penalty=1.0, no_repeat_ngram=0, stop_at_blank_line=False),
    "penalty only": dict(no_repeat_ngram=0, stop_at_blank_line=False),
    "no-repeat only": dict(repetition_penalty=1.0, stop_at_blank_line=False),
    "blank-line stop only": dict(repetition_penalty=1.0, no_repeat_ngram=0),
    "defaults": {},
}


def shakespeare_rows() -> List[str]:
    path = SHARED / "tinyshakespeare" / "input.txt"
    if not path.exists():
        raise SystemExit(f"tinyshakespeare not found at {path}; set LM_MAGICS_SHARED to the folder holding data/.")
    return path.read_text().split("\n")


def prompts_for(rows: Sequence[str], n: int, kind: str) -> List[str]:
    """n prompts from held-out rows: a speaker's name line (plays) or a docstring's first four words."""
    if kind == "plays":
        names = [r for r in rows if r.endswith(":") and len(r.split()) <= 3]
        step = max(1, len(names) // n)
        return names[::step][:n]
    docs = [r for r in rows if len(r.split()) >= 8]
    step = max(1, len(docs) // n)
    return [" ".join(d.split()[:4]) for d in docs[::step][:n]]


def answer_lines(tokens: List[str], model: lm.LanguageModel) -> List[str]:
    text = model.tokenizer.join([t for t in tokens])
    return [line.strip() for line in text.split("\n") if line.strip()]


def figures(lines: List[str], words: List[str]) -> Dict[str, float]:
    repeated = sum(1 for i, ln in enumerate(lines) if ln in lines[:i])
    run = best = 1 if lines else 0
    for a, b in zip(lines, lines[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    short = [len(ln.split()) <= 2 for ln in lines]
    lists = sum(1 for a, b in zip(short, short[1:]) if a and b)
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    seen: set = set()
    rep4 = 0
    for g in grams:
        rep4 += g in seen
        seen.add(g)
    pairs = list(zip(words, words[1:]))
    return {"repeated lines": repeated / max(1, len(lines)), "same line in a row": best,
            "name lists": lists / max(1, len(lines)), "repeated 4-grams": rep4 / max(1, len(grams)),
            "distinct-2": len(set(pairs)) / max(1, len(pairs)), "words": len(words)}


def run(model: lm.LanguageModel, prompts: List[str], seeds: int, n_words: int,
        temperature: float) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for setting, options in SETTINGS.items():
        rows, t0, n = [], time.perf_counter(), 0
        for prompt in prompts:
            for seed in range(seeds if temperature > 0 else 1):      # greedy: every seed is the same
                cfg = lm.GenerateConfig(n_words=n_words, temperature=temperature, seed=seed, **options)
                tokens = list(iter_words(model, prompt, cfg))
                words = [t for t in tokens if t != EOS]
                n += len(words)
                rows.append(figures(answer_lines(tokens, model), words))
        keys = rows[0].keys()
        out[setting] = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
        out[setting]["ms/word"] = 1000 * (time.perf_counter() - t0) / max(1, n)
    return out


def trained(rows: List[str], kind: str, seconds: float, cache: Path, tag: str) -> lm.LanguageModel:
    path = cache / f"{tag}-{kind}.lm"
    if path.exists():
        return lm.load(path)
    options = dict(kind="ngram") if kind == "ngram" else dict(max_time=seconds)
    data = "\n".join(rows) if tag == "plays" else rows     # the play as one text: a line is a row
    model = lm.train(data, seed=0, **options)
    cache.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lstm-seconds", type=float, default=300.0, help="training time of each LSTM")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-words", type=int, default=100)
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument("--texts", default="plays,docstrings", help="which texts: plays, docstrings or both")
    ap.add_argument("--cache", type=Path, default=Path(".benchmark-cache/generation_quality"),
                    help="trained models are kept here and reused (delete it to train again)")
    args = ap.parse_args()
    print(machine_line())
    print(f"defaults: {lm.GenerateConfig()}")
    texts = args.texts.split(",")
    plays = shakespeare_rows() if "plays" in texts else []
    docs = stdlib_docstrings() if "docstrings" in texts else []
    results: List[Tuple[str, str, Dict[str, Dict[str, float]]]] = []
    for tag, kind_of_text, rows in (("plays", "plays", plays), ("docstrings", "docs", docs)):
        if tag not in texts:
            continue
        cut = int(0.9 * len(rows))
        prompts = prompts_for(rows[cut:], args.prompts, kind_of_text)
        for kind in ("lstm", "ngram"):
            t0 = time.perf_counter()
            model = trained(rows[:cut], kind, args.lstm_seconds, args.cache, tag)
            ppl = model.meta.get("val_ppl")
            print(f"\n{tag} / {kind}: validation perplexity {ppl:,.1f} ({time.perf_counter() - t0:.0f} s to train or "
                  f"load); {len(prompts)} prompts, {args.n_words} words, seeds {args.seeds} when sampling")
            for temperature in (float(t) for t in args.temperatures.split(",")):
                res = run(model, prompts, args.seeds, args.n_words, temperature)
                results.append((tag, kind, res))
                keys = list(next(iter(res.values())).keys())
                print(f"\ntemperature {temperature:g}\n")
                print("| setting | " + " | ".join(keys) + " |")
                print("|---|" + "---:|" * len(keys))
                for setting, figs in res.items():
                    print(f"| {setting} | " + " | ".join(f"{figs[k]:.2f}" if k not in ("words", "ms/word")
                                                        else f"{figs[k]:.1f}" for k in keys) + " |", flush=True)


if __name__ == "__main__":
    main()
