"""The unusual score's row signals, from a model's parts: what ``LanguageModel.signals`` and training call.

    build_unusualness(...)   at the end of training: the spelling model, the neighbour index of training
                             rows, the unigram's validation perplexity, and each signal's calibration on
                             the validation rows
    rows_signals(...)        per-row signals for rows of ids (see SIGNALS in novelty.py), plus the
                             model's own mean bits, the nearest usual row and the copied share

One pass of the model over the rows gives its own perplexity (``bits``: what ``COL_ppl`` has always been)
and the signals (where unseen words count at their novelty bits); the n-gram is a second, vectorised pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ngram import CopyIndex, NGramModel, stream_rows
from .novelty import DEFAULT_RULE, Calibration, NeighbourIndex, SpellingModel, row_signals
from .novelty import checked_number as _number
from .tokenizer import SPECIALS, Tokenizer

__all__ = ["Unusualness", "build_unusualness", "encode_rows", "rows_signals", "CALIBRATION_ROWS", "INDEX_ROWS"]

CALIBRATION_ROWS = 2000      # validation rows that calibrate the signals (evenly spaced when there are more)
INDEX_ROWS = 2000            # training rows kept in the neighbour index (a seeded draw when there are more)
_SAMPLE_TOKENS = 4_000_000   # rows for the index are drawn from this many tokens at most (flat memory)
_LN2 = math.log(2)


@dataclass
class Unusualness:
    """What scores unseen words and calibrates the signals (kept in the model file, checked on load).

    ``unk_val_bits``: the novelty bits an <unk> of the validation rows gets while calibrating (their spelling
    is not kept: the median novelty of the vocabulary's words seen once); ``unigram_val_ppl``: the
    validation perplexity of word frequencies alone (a model that barely beats it has learned little);
    ``ngram_novelty``: whether the ``ngram`` signal counts unseen words at their novelty bits (files from
    before 2026-12-03 calibrated it so; since then it is the n-gram's own perplexity, see rows_signals)."""

    spelling: Optional[SpellingModel]
    calibration: Optional[Calibration]
    unigram_val_ppl: Optional[float] = None
    unk_val_bits: float = 0.0
    ngram_novelty: bool = False

    def to_dict(self) -> dict:
        return {"version": 1, "spelling": None if self.spelling is None else self.spelling.to_dict(),
                "calibration": None if self.calibration is None else self.calibration.to_dict(),
                "unigram_val_ppl": self.unigram_val_ppl, "unk_val_bits": self.unk_val_bits,
                "ngram_novelty": self.ngram_novelty}

    @classmethod
    def from_dict(cls, d: dict) -> "Unusualness":
        """Checked field by field: a bad one raises ValueError naming it."""
        if not isinstance(d, dict) or d.get("version") != 1:
            raise ValueError("its unusualness table is not of version 1")
        ppl = d.get("unigram_val_ppl")
        if ppl is not None:
            ppl = _number(d, "unigram_val_ppl", 1.0, 1e12)
        sp, cal = d.get("spelling"), d.get("calibration")
        novelty = d.get("ngram_novelty", True)          # absent: a file from before the n-gram's own form
        if not isinstance(novelty, bool):
            raise ValueError("its unusualness table's ngram_novelty is not True or False")
        return cls(None if sp is None else SpellingModel.from_dict(sp),
                   None if cal is None else Calibration.from_dict(cal), ppl, _number(d, "unk_val_bits", 0, 1e4),
                   novelty)


def encode_rows(tokenizer: Tokenizer, spelling: Optional[SpellingModel], values: Sequence[Optional[str]],
                fallback_bits: float) -> Tuple[List[Optional[List[int]]], List[str], np.ndarray]:
    """Rows -> (ids ending in <eos> or None, the texts for the neighbour search, the novelty bits of every
    unseen token in row order). An unseen word keeps its spelling here (``fallback_bits`` when it cannot be
    matched to its token). Only rows with an unseen word are split into words a second time."""
    encoded = [None if v is None else tokenizer.encode_line(v) for v in values]
    unk = tokenizer.unk_id
    words: List[str] = []
    texts = ["" if v is None else v for v in values]
    for v, ids in zip(values, encoded):
        if ids is None:
            continue
        if unk in ids:
            toks = tokenizer.tokenize(v)
            if len(toks) == len(ids) - 1:
                words.extend(toks[j] for j, t in enumerate(ids[:-1]) if t == unk)
            else:   # the tokenizer split differently from encode: no spelling to score
                words.extend([""] * ids.count(unk))
    if spelling is None:
        return encoded, texts, np.full(len(words), np.nan)
    bits = spelling.novelty_bits([w or "?" for w in words]) if words else np.zeros(0)
    return encoded, texts, np.where([bool(w) for w in words], bits, fallback_bits) if words else bits


def rows_signals(encoded: Sequence[Optional[List[int]]], novelty: np.ndarray, tokenizer: Tokenizer,
                 nll: Callable[[List[List[int]]], List[np.ndarray]], ngram: Optional[NGramModel] = None,
                 neighbours: Optional[NeighbourIndex] = None, texts: Optional[Sequence[str]] = None,
                 copy_index: Optional[CopyIndex] = None, ngram_novelty: bool = False,
                 mix_weight: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Per-row signals (NaN for a missing row). ``novelty``: bits of each unseen token in row order (NaN:
    keep the model's own bits for it, as a file without a spelling model does).

    Keys: ``bits`` and ``ppl`` (the model's own mean bits per token), ``max``, ``topk``, ``unseen``,
    ``unseen_words`` (novelty.row_signals, unseen words at their novelty bits), ``ngram`` (the n-gram's own
    mean bits per token: its <unk> for an unseen word; with ``ngram_novelty``, unseen words at their novelty
    bits, as files from before 2026-12-03 were calibrated),
    ``knn``, ``nearest``, ``nearest_dist`` (the neighbour search; nearest = -1 without an index) and
    ``copied`` (the share of the row's token runs that repeat a training row; NaN when it cannot tell).
    With ``mix_weight`` (and an n-gram) also ``ngram_nats`` and ``mix_nats``: each row's mean NLL in nats
    under the n-gram and under ``mix_weight * p_model + (1 - mix_weight) * p_ngram``, from the same
    per-token values (what ``--baseline`` shows beside the scores, without another pass of the model)."""
    n = len(encoded)
    keep = [i for i, e in enumerate(encoded) if e is not None]
    rows = [encoded[i] for i in keep]
    out: Dict[str, np.ndarray] = {"bits": np.full(n, np.nan)}
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat_ids = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lens.sum()))
    new = flat_ids == tokenizer.unk_id
    nov = np.full(len(flat_ids), np.nan)
    nov[new] = novelty[: int(new.sum())] if len(novelty) else np.nan

    def corrected(nats: List[np.ndarray]) -> np.ndarray:
        b = np.concatenate(nats) / _LN2 if nats else np.zeros(0)
        return b, np.where(np.isfinite(nov), nov, b)

    own, fixed = corrected(nll(rows) if rows else [])
    row = np.repeat(np.arange(len(rows)), lens)
    mean_own = np.bincount(row, weights=own, minlength=len(rows)) / np.maximum(lens, 1)
    out["bits"][keep] = mean_own
    for k, v in row_signals(fixed, new, lens).items():
        out[k] = np.full(n, np.nan)
        out[k][keep] = v
    # The 'ppl' signal is the model's own mean (COL_bits): on columns full of numbers, ids and codes, normal
    # rows are full of unseen tokens, and their novelty bits would swamp it; 'unseen', 'max' and 'topk'
    # carry them instead.
    out["ppl"] = out["bits"]
    if ngram is not None:
        # The n-gram's own bits: unseen words are the 'unseen' signal's; counted here too they made the
        # n-gram a second unseen-word count (AUROC of the n-gram alone, benchmarks/anomaly.py 2026-12-03:
        # 20 Newsgroups 0.827 vs its own 0.842, AG News 0.882 vs 0.896, BGL 0.969 vs 0.992; SMS 0.973 vs 0.951).
        raw, ng = corrected(ngram.rows_nll(rows) if rows else [])
        ng = ng if ngram_novelty else raw
        out["ngram"] = np.full(n, np.nan)
        out["ngram"][keep] = np.bincount(row, weights=ng, minlength=len(rows)) / np.maximum(lens, 1)
        if mix_weight is not None:
            with np.errstate(divide="ignore"):
                la, lb = math.log(mix_weight) if mix_weight > 0 else -math.inf, math.log1p(-mix_weight) \
                    if mix_weight < 1 else -math.inf
                mix = -np.logaddexp(la - own * _LN2, lb - raw * _LN2)
            for key, nats in (("ngram_nats", raw * _LN2), ("mix_nats", mix)):
                out[key] = np.full(n, np.nan)
                out[key][keep] = np.bincount(row, weights=nats, minlength=len(rows)) / np.maximum(lens, 1)
    if neighbours is not None and texts is not None:
        d, near, near_d = neighbours.search([texts[i] for i in keep])
        for k, v, fill in (("knn", d, np.nan), ("nearest", near, -1), ("nearest_dist", near_d, np.nan)):
            out[k] = np.full(n, fill, dtype=np.float64 if k != "nearest" else np.int64)
            out[k][keep] = v
    if copy_index is not None:
        out["copied"] = np.full(n, np.nan)
        out["copied"][keep] = copy_index.coverage([r[:-1] for r in rows])
    return out


def _sample(rows: List[np.ndarray], k: int) -> np.ndarray:
    """Positions of k rows spread evenly over rows (all of them when there are fewer)."""
    if len(rows) <= k:
        return np.arange(len(rows))
    return np.unique(np.linspace(0, len(rows) - 1, k).round().astype(np.int64))


def build_unusualness(tokenizer: Tokenizer, train: np.ndarray, val: np.ndarray, row_numbers: Optional[np.ndarray],
                      nll: Callable[[List[List[int]]], List[np.ndarray]], ngram: Optional[NGramModel],
                      copy_index: Optional[CopyIndex], seed: int, held_out: bool, rule: str = DEFAULT_RULE,
                      index_rows: int = INDEX_ROWS) -> Tuple[Unusualness, Optional[NeighbourIndex], List[str]]:
    """Everything the unusual score needs beyond the model, from its training and validation ids.

    Returns (the Unusualness, the neighbour index or None, notes). ``held_out``: whether ``val`` is rows the
    model did not train on; when not (or when there are none), the signals are calibrated on training rows
    and a note says so."""
    eos, unk, V = tokenizer.eos_id, tokenizer.unk_id, len(tokenizer)
    notes: List[str] = []
    counts = np.zeros(V, dtype=np.int64)
    for a in range(0, len(train), 1 << 24):            # chunks: a streamed corpus is read once, flat memory
        counts += np.bincount(np.asarray(train[a:a + (1 << 24)], dtype=np.int64), minlength=V)[:V]
    words_total = int(counts.sum() - counts[eos])
    specials = [tokenizer.stoi[s] for s in SPECIALS]
    real = np.ones(V, bool)
    real[specials] = False
    hapax = int(np.count_nonzero(counts[real] == 1))
    p_new = min(0.5, max((hapax + int(counts[unk])) / max(words_total, 1), 1.0 / max(words_total, 1)))
    words = [w for i, w in enumerate(tokenizer.itos) if real[i]]
    spelling = SpellingModel.fit(words, counts[real], -math.log2(p_new))
    once = [w for i, w in enumerate(tokenizer.itos) if real[i] and counts[i] == 1]
    unk_bits = float(np.median(spelling.novelty_bits(once[:5000]))) if once else spelling.new_word_bits + 8.0

    # The unigram's validation perplexity (add-1/2), to tell a model that learned little.
    unigram_ppl = None
    if len(val):
        v = np.asarray(val[:_SAMPLE_TOKENS], dtype=np.int64)
        logp = np.log((counts + 0.5) / (counts.sum() + 0.5 * V))
        unigram_ppl = float(np.exp(-logp[v].mean()))

    # The neighbour index: training rows (drawn from the first tokens of a huge corpus), as text.
    train_rows = [r[:-1] if len(r) and r[-1] == eos else r
                  for r in stream_rows(np.asarray(train[:_SAMPLE_TOKENS]), eos)]
    index = None
    if train_rows:
        pick = np.arange(len(train_rows))
        if len(train_rows) > index_rows:
            pick = np.sort(np.random.default_rng(seed).choice(len(train_rows), index_rows, replace=False))
        numbers = row_numbers[pick] if row_numbers is not None and len(row_numbers) == len(train_rows) else pick
        texts = [tokenizer.decode(train_rows[i].tolist()) for i in pick]
        index = NeighbourIndex.build(texts, numbers, max_rows=index_rows, seed=seed)
        index.rows_seen = max(index.rows_seen, len(train_rows))

    # Calibration: the signals of validation rows (training rows when none were held out).
    source = "validation rows"
    cal_rows = stream_rows(np.asarray(val[:_SAMPLE_TOKENS]), eos) if held_out and len(val) else []
    if not cal_rows:
        source = "training rows"
        cal_rows = [np.append(r, eos) for r in train_rows]
        notes.append("no held-out validation rows: the unusual score is calibrated on training rows")
    cal_rows = [cal_rows[i].tolist() for i in _sample(cal_rows, CALIBRATION_ROWS)]
    cal_texts = [tokenizer.decode(r[:-1]) for r in cal_rows]
    n_unk = sum(r.count(unk) for r in cal_rows)
    sig = rows_signals(cal_rows, np.full(n_unk, unk_bits), tokenizer, nll, ngram, index, cal_texts, None,
                       ngram_novelty=False)
    calibration = Calibration.fit(sig, rule=rule, source=source)
    return Unusualness(spelling, calibration, unigram_ppl, unk_bits, ngram_novelty=False), index, notes
