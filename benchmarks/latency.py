"""Keystroke latency, generation speed and tokenization speed, side by side with the textbook LSTM.

* Keystroke: a model at lm_magics' defaults for WikiText-2 (architecture chosen by auto_config from the
  corpus size), trained for a minute (latency depends on the architecture, and a little on how peaked
  its predictions are: see --train-seconds). Sentences from valid.txt are "typed" word by word; each update is one public
  ``next_words(prefix, k=10)`` call (tokenizing, cache lookup, LSTM step, top-k, decoding). Reference:
  one step of the textbook model (batch 1, state carried, full softmax + top-5).
* Cold prefix: the cache cleared, a 30-word prefix.
* Generation: words/s sampling at temperature 1 vs the reference model sampling step by step.
* Tokenization: encoding WikiText-2 train (10.8 MB) with a fitted vocabulary vs the textbook recipe
  (split + dict lookup per word).

    python -m benchmarks.latency [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

import lm_magics as lm
from benchmarks.common import machine_line, median, need_wikitext, percentile
from benchmarks.reference import RefLSTM, reference_step_latency
from lm_magics.engine.tokenizer import Tokenizer


def sentences(path, n: int, min_words: int = 12):
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            words = line.split()
            if len(words) >= min_words:
                out.append(words[:40])
            if len(out) >= n:
                break
    return out


@torch.no_grad()
def ref_generate_wps(model: RefLSTM, n: int = 300) -> float:
    model.eval()
    state = model.init_state(1)
    x = torch.zeros(1, 1, dtype=torch.long)
    t0 = time.perf_counter()
    for _ in range(n):
        logp, state = model(x, state)
        x = torch.multinomial(logp.exp(), 1).view(1, 1)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sentences", type=int, default=60)
    ap.add_argument("--train-seconds", type=float, default=60.0, help="training time of the model measured")
    args = ap.parse_args(argv)
    d = need_wikitext()
    torch.set_num_threads(args.threads)
    print(machine_line())

    # ---- tokenization (one core): fitted vocabulary, then encode the whole file
    text = (d / "train.txt").read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    lines = text.splitlines()
    tok = Tokenizer().fit(lines)
    t0 = time.perf_counter()
    n_ours = sum(len(tok.encode_line(line)) for line in lines)
    t_ours = time.perf_counter() - t0
    vocab = {}
    for line in lines:
        for w in line.split():
            vocab.setdefault(w, len(vocab))
    vocab.setdefault("<eos>", len(vocab))
    t0 = time.perf_counter()
    ids = []
    for line in lines:          # the textbook recipe: split, look up, append <eos>
        for w in line.split() + ["<eos>"]:
            ids.append(vocab[w])
    ref_ids = torch.tensor(ids, dtype=torch.long)
    t_ref = time.perf_counter() - t0
    print(f"\nTokenization of train.txt ({mb:.1f} MB): lm_magics word tokenizer {t_ours:.2f} s = {mb / t_ours:.1f} MB/s "
          f"({n_ours:,} tokens) | textbook split+lookup {t_ref:.2f} s = {mb / t_ref:.1f} MB/s ({ref_ids.numel():,} tokens) "
          f"| ratio {t_ref / t_ours:.2f}x")

    # ---- a model at the defaults for this corpus (architecture from auto_config)
    # Trained for --train-seconds: a nearly untrained model has flat distributions, which make the
    # adaptive top-k visit every tail cluster (slower than a real model); a minute gets close to real.
    model = lm.train(lm.files(d / "train.txt"), val_data=lm.files(d / "valid.txt"), max_time=args.train_seconds,
                     seed=0, threads=2)
    torch.set_num_threads(args.threads)
    i = model.info
    print(f"\nModel at defaults: vocab {i['vocab_size']:,}, embed {i['embed_dim']}, hidden {i['hidden_dim']}, "
          f"layers {i['num_layers']}, {i['softmax']} softmax, {i['parameters']:,} parameters")
    ref = RefLSTM(33278)
    ref_ms = reference_step_latency(ref, n=200)

    sents = sentences(d / "valid.txt", args.sentences)
    warm = []
    for words in sents:
        model.next_words(" ".join(words[:3]), k=10)           # the first keystrokes of a sentence
        for j in range(4, len(words) + 1):
            prefix = " ".join(words[:j])
            t0 = time.perf_counter()
            model.next_words(prefix, k=10)
            warm.append(time.perf_counter() - t0)
    cold = []
    for words in sents:
        if len(words) < 30:
            continue
        model._predictor.clear_cache()
        prefix = " ".join(words[:30])
        t0 = time.perf_counter()
        model.next_words(prefix, k=10)
        cold.append(time.perf_counter() - t0)
    p50, p99 = 1000 * median(warm), 1000 * percentile(warm, 99)
    print(f"\nKeystroke (warm cache, next_words k=10, {len(warm)} updates): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"| reference step p50 {ref_ms:.2f} ms | ratio {ref_ms / p50:.1f}x")
    if cold:
        print(f"Cold 30-word prefix ({len(cold)} prefixes): p50 {1000 * median(cold):.2f} ms")

    # ---- generation
    n = 400
    # The model's own distribution, as the reference samples it (the rules against loops, on by default,
    # need the whole distribution at every step and may end the text at a blank line): then the defaults.
    raw = dict(repetition_penalty=1.0, no_repeat_ngram=0, stop_at_blank_line=False)
    model.generate("The", n_words=20, seed=0, **raw)
    t0 = time.perf_counter()
    model.generate("The", n_words=n, temperature=1.0, seed=1, **raw)
    wps = n / (time.perf_counter() - t0)
    rwps = ref_generate_wps(ref)
    print(f"\nGeneration (temperature 1, {n} words): lm_magics {wps:,.0f} words/s | reference {rwps:,.0f} words/s "
          f"| ratio {wps / rwps:.1f}x")
    t0 = time.perf_counter()
    model.generate("The", n_words=n, temperature=1.0, seed=1, stop_at_blank_line=False)   # n tokens exactly
    print(f"With the default repetition_penalty and no_repeat_ngram: {n / (time.perf_counter() - t0):,.0f} words/s")


if __name__ == "__main__":
    main()
