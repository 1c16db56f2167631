"""Count-based language models over token ids: interpolated modified Kneser-Ney, and a copy index.

``NGramModel`` is the classic smoothed n-gram (Chen & Goodman's interpolated modified Kneser-Ney,
orders 2-5) over the same token ids as the LSTM: the baseline an LSTM must beat, a model kind of its own,
and one half of the LSTM + n-gram mixture. ``CopyIndex`` finds runs of a text that repeat a training row.

Row boundaries. Token streams are rows that each end in ``<eos>``; a context never reaches back past the
last ``<eos>``, which therefore doubles as the start-of-row marker (the LSTM is fed ``<eos>`` first, so
both models condition on the same "start of text"). A stream is scored with one ``<eos>`` in front.

Tables. The k-grams of order k are kept as one sorted int64 array of keys::

    key(w1..wk) = id(w1..w(k-1)) * V + wk        id(...) = position of that (k-1)-gram in table k-1

so a k-gram's context is its key // V, all the k-grams sharing a context are one contiguous slice, and the
keys stay far below 2**63 (ids < tokens, V < vocabulary). Unigrams are dense: id(w) = w. Counting is
``np.unique`` per order: a million tokens at order 5 take about a second.

Smoothing (per order k, n = the highest order)::

    p_k(w | c) = max(a(c w) - D_k(a), 0) / T(c)  +  gamma(c) * p_(k-1)(w | c minus its first word)
    gamma(c)   = (D_k1 N1(c) + D_k2 N2(c) + D_k3 N3+(c)) / T(c),     T(c) = sum_w a(c w)
    p_0(w)     = 1 / V                                              (every word, <unk> included, has mass)

where a() is the raw count at order n and for k-grams that start with ``<eos>`` (they cannot be extended
to the left), and the continuation count (number of distinct words seen before it) otherwise. Contexts
never seen at order k leave p_(k-1) unchanged. D_k1..3 come from the count-of-counts of a at order k.
Since D(a) <= a, each level's discounted mass is exactly what gamma hands down: p sums to 1.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import GenerateConfig
from .inference import Vocabulary
from .tokenizer import Tokenizer

__all__ = ["NGramModel", "CopyIndex", "TablePredictor", "NGramPredictor", "MixPredictor", "default_order",
           "fit_mix_weight", "stream_rows", "copy_report", "MIN_ORDER", "MAX_ORDER", "COPY_BUDGET_WINDOWS"]

MIN_ORDER, MAX_ORDER = 2, 5
# Fallback discounts when a tiny corpus has no count-of-counts to estimate them from.
_DEFAULT_D = (0.5, 1.0, 1.5)


def default_order(train_tokens: int) -> int:
    """Order from the data size: longer contexts only pay once their counts stop being mostly ones
    (Chen & Goodman: trigrams win below about 10^5 tokens, 4- and 5-grams from millions on)."""
    if train_tokens < 100_000:
        return 3
    if train_tokens < 5_000_000:
        return 4
    return 5


def _with_start(ids: np.ndarray, eos: int) -> np.ndarray:
    """The stream as int64 with one <eos> in front (the start-of-row context of the first row)."""
    out = np.empty(len(ids) + 1, dtype=np.int64)
    out[0] = eos
    out[1:] = ids
    return out


def _history(s: np.ndarray, eos: int) -> np.ndarray:
    """h[i]: how many tokens before position i its context may use (back to and including the last <eos>)."""
    pos = np.arange(len(s), dtype=np.int64)
    last = np.maximum.accumulate(np.where(s == eos, pos, 0))      # last <eos> at or before i
    h = np.zeros(len(s), dtype=np.int64)
    h[1:] = pos[1:] - last[:-1]
    return h


def _discounts(a: np.ndarray) -> np.ndarray:
    """Modified-KN discounts (D1, D2, D3+) from the count-of-counts of adjusted counts a."""
    n = [int(np.count_nonzero(a == j)) for j in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] > 0 else 0.5
    d = []
    for j in (1, 2, 3):
        est = j - (j + 1) * y * n[j] / n[j - 1] if n[j - 1] > 0 and n[j] > 0 else _DEFAULT_D[j - 1]
        # Keep 0 < D_j <= j: some mass always goes to the lower order, and no count goes negative.
        d.append(min(max(est, 0.05), float(j)))
    return np.array(d, dtype=np.float64)


class NGramModel:
    """Interpolated modified Kneser-Ney over token ids 0..V-1. Build with :meth:`fit`.

    >>> ng = NGramModel.fit(np.array([2, 3, 1, 2, 3, 1]), vocab_size=4, eos_id=1, order=2)
    >>> float(np.exp(ng.log_probs_after([1])).sum())       # doctest: +ELLIPSIS
    1.0...
    """

    def __init__(self, order: int, vocab_size: int, eos_id: int, keys: List[np.ndarray],
                 counts: List[np.ndarray], discounts: np.ndarray):
        self.order, self.vocab_size, self.eos_id = int(order), int(vocab_size), int(eos_id)
        self.keys = [np.asarray(k, dtype=np.int64) for k in keys]         # per order 1..n, sorted
        self.counts = [np.asarray(c, dtype=np.int64) for c in counts]     # adjusted counts a, per order
        self.discounts = np.asarray(discounts, dtype=np.float64).reshape(self.order, 3)
        self._check()
        self._prepare()

    # ------------------------------------------------------------------------------ training

    @classmethod
    def fit(cls, ids: np.ndarray, vocab_size: int, eos_id: int, order: int) -> "NGramModel":
        """Count every k-gram (k <= order) of a token stream of rows ending in <eos>."""
        V, n = int(vocab_size), int(order)
        s = _with_start(np.asarray(ids), eos_id)
        h = _history(s, eos_id)
        keys: List[np.ndarray] = [np.arange(V, dtype=np.int64)]
        raw: List[np.ndarray] = [np.bincount(s[1:], minlength=V).astype(np.int64)]
        suffix: List[np.ndarray] = [np.zeros(0, np.int64)]      # k-gram -> its (k-1)-gram without w1
        starts_eos: List[np.ndarray] = [np.zeros(V, bool)]
        gid = s.copy()                                           # id of the k-gram ending at each position
        for k in range(2, n + 1):
            prev = gid
            pos = np.flatnonzero((h >= k - 1) & (np.r_[-1, prev[:-1]] >= 0))
            key = prev[pos - 1] * V + s[pos]
            uniq, inv = np.unique(key, return_inverse=True)
            gid = np.full(len(s), -1, dtype=np.int64)
            gid[pos] = inv
            keys.append(uniq)
            raw.append(np.bincount(inv, minlength=len(uniq)).astype(np.int64))
            suf = np.empty(len(uniq), np.int64)
            suf[inv] = prev[pos]                                 # the same for every occurrence of a gram
            suffix.append(suf)
            first = np.zeros(len(uniq), bool)
            first[inv] = h[pos] == k - 1                         # w1 is the row's opening <eos>
            starts_eos.append(first)
        counts = []
        for k in range(1, n + 1):
            if k == n:
                a = raw[k - 1]
            else:   # continuation counts: distinct (k+1)-grams that end in this k-gram
                a = np.bincount(suffix[k], minlength=len(keys[k - 1])).astype(np.int64)
                a = np.where(starts_eos[k - 1], raw[k - 1], a)
            counts.append(a)
        discounts = np.stack([_discounts(a) for a in counts])
        return cls(n, V, eos_id, keys, counts, discounts)

    def _check(self) -> None:
        """Shapes and ranges that must hold (a damaged file fails here, not in a lookup)."""
        V, n = self.vocab_size, self.order
        if not MIN_ORDER <= n <= MAX_ORDER or V < 2 or not 0 <= self.eos_id < V:
            raise ValueError(f"n-gram order {n} / vocabulary {V} out of range")
        if len(self.keys) != n or len(self.counts) != n:
            raise ValueError("n-gram tables do not match the order")
        if len(self.keys[0]) != V:
            raise ValueError("unigram table does not match the vocabulary")
        for k, (key, a) in enumerate(zip(self.keys, self.counts), start=1):
            if key.ndim != 1 or a.shape != key.shape:
                raise ValueError(f"order-{k} counts do not match their keys")
            if len(key) and (key[0] < 0 or (k > 1 and key[-1] >= len(self.keys[k - 2]) * V)):
                raise ValueError(f"order-{k} keys out of range")
            if len(key) > 1 and not bool(np.all(key[1:] > key[:-1])):
                raise ValueError(f"order-{k} keys are not sorted")
            if len(a) and a.min() < 0:
                raise ValueError(f"order-{k} counts are negative")
        if not np.all(np.isfinite(self.discounts)) or np.any(self.discounts < 0):
            raise ValueError("n-gram discounts are not valid")

    def _prepare(self) -> None:
        """Per order: alpha (discounted share of each k-gram) and, per context, gamma and T."""
        V = self.vocab_size
        self._alpha, self._gamma, self._total = [], [], []
        for k in range(1, self.order + 1):
            key, a, (d1, d2, d3) = self.keys[k - 1], self.counts[k - 1], self.discounts[k - 1]
            ctx = key // V if k > 1 else np.zeros(len(key), np.int64)
            n_ctx = len(self.keys[k - 2]) if k > 1 else 1
            total = np.bincount(ctx, weights=a, minlength=n_ctx)
            d = np.select([a == 0, a == 1, a == 2], [0.0, d1, d2], d3)
            held = np.bincount(ctx, weights=d, minlength=n_ctx)           # discounted mass per context
            with np.errstate(divide="ignore", invalid="ignore"):
                alpha = np.where(total[ctx] > 0, np.maximum(a - d, 0.0) / total[ctx], 0.0)
                gamma = np.where(total > 0, held / total, 1.0)
            self._alpha.append(alpha)
            self._gamma.append(gamma)
            self._total.append(total)

    # ------------------------------------------------------------------------------ lookups

    def count(self, gram: Sequence[int]) -> int:
        """The adjusted count a() of a k-gram of ids (raw at the top order or after <eos>, else the
        continuation count); 0 when it was never seen."""
        j = self._gram_id(list(gram))
        return int(self.counts[len(gram) - 1][j]) if j is not None else 0

    def _gram_id(self, gram: List[int]) -> Optional[int]:
        """Position of a k-gram in table k (chained through its prefixes), or None."""
        if not gram or len(gram) > self.order:
            return None
        gid = int(gram[0])
        if not 0 <= gid < self.vocab_size:
            return None
        for k, w in enumerate(gram[1:], start=2):
            key = gid * self.vocab_size + int(w)
            table = self.keys[k - 1]
            j = int(np.searchsorted(table, key))
            if j >= len(table) or table[j] != key:
                return None
            gid = j
        return gid

    def _usable_context(self, ids: Sequence[int]) -> List[int]:
        """The last order-1 ids of a context, cut back to its last <eos> (the start of the row)."""
        ids = list(ids)
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] == self.eos_id:
                ids = ids[i:]
                break
        return ids[-(self.order - 1):] if self.order > 1 else []

    def log_probs_after(self, ids: Sequence[int]) -> np.ndarray:
        """Natural-log probabilities (V,) of the next token after context ids (sums to 1 in p)."""
        V = self.vocab_size
        ctx = self._usable_context(ids)
        p = self._alpha[0] + self._gamma[0][0] / V                          # (V,)
        for k in range(2, self.order + 1):
            if len(ctx) < k - 1:
                break
            c = self._gram_id(ctx[len(ctx) - (k - 1):])
            if c is None:
                break                   # a longer context than an unseen one is unseen too
            if self._total[k - 1][c] <= 0:
                continue
            table = self.keys[k - 1]
            lo, hi = np.searchsorted(table, [c * V, (c + 1) * V])
            p = p * self._gamma[k - 1][c]
            np.add.at(p, table[lo:hi] - c * V, self._alpha[k - 1][lo:hi])
        with np.errstate(divide="ignore"):
            return np.log(p)

    def stream_nll(self, ids: np.ndarray) -> np.ndarray:
        """Per-token NLL (nats, float64) of a stream of rows ending in <eos>, each row from its start."""
        V = self.vocab_size
        s = _with_start(np.asarray(ids), self.eos_id)
        h = _history(s, self.eos_id)
        w = s[1:]
        p = self._alpha[0][w] + self._gamma[0][0] / V                       # (N,)
        gid = s                                                             # unigram ids are word ids
        for k in range(2, self.order + 1):
            ctx = gid[:-1]                                                  # the (k-1)-gram before each token
            ok = (h[1:] >= k - 1) & (ctx >= 0)
            cc = np.where(ok, ctx, 0)
            ok &= self._total[k - 1][cc] > 0
            table = self.keys[k - 1]
            key = cc * V + w
            j = np.minimum(np.searchsorted(table, key), max(len(table) - 1, 0))
            found = ok & (table[j] == key) if len(table) else np.zeros(len(w), bool)
            p = np.where(ok, self._gamma[k - 1][cc] * p + np.where(found, self._alpha[k - 1][j], 0.0), p)
            gid = np.full(len(s), -1, dtype=np.int64)
            gid[1:] = np.where(found, j, -1)
        return -np.log(p)

    def rows_nll(self, encoded: Sequence[Sequence[int]]) -> List[np.ndarray]:
        """Per-token NLL for rows of ids (each ending in <eos>), all rows in one vectorized pass."""
        if not encoded:
            return []
        lengths = np.array([len(e) for e in encoded])
        flat = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lengths.sum()))
        return np.split(self.stream_nll(flat), np.cumsum(lengths)[:-1])

    # ------------------------------------------------------------------------------ info & files

    @property
    def num_ngrams(self) -> int:
        return int(sum(np.count_nonzero(a) for a in self.counts))

    @property
    def nbytes(self) -> int:
        return int(sum(k.nbytes + a.nbytes for k, a in zip(self.keys, self.counts)))

    def to_dict(self) -> dict:
        """Plain data (tensors and ints) for a model file; counts are stored as int32 where they fit."""
        def small(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.astype(np.int32) if a.size == 0 or a.max() < 2**31 else a)
        return {"order": self.order, "vocab_size": self.vocab_size, "eos_id": self.eos_id,
                "keys": [torch.from_numpy(k) for k in self.keys[1:]],   # unigrams are dense: not stored
                "counts": [small(a) for a in self.counts],
                "discounts": torch.from_numpy(self.discounts.copy())}

    @classmethod
    def from_dict(cls, d: dict) -> "NGramModel":
        V = d["vocab_size"]
        if isinstance(V, bool) or not isinstance(V, int) or V < 2:
            raise ValueError(f"its n-gram declares vocab_size={V!r}")
        # The unigram table and the per-order tables are V-sized: a file's claim is checked before they
        # are allocated (a 1 MB file must not make this take gigabytes); 8 arrays of 8 bytes a word.
        from . import memory

        memory.check_count(V, 64, f"An n-gram vocabulary of {V:,} words")
        keys = [np.arange(V, dtype=np.int64)] + [_array(k) for k in d["keys"]]
        return cls(int(d["order"]), V, int(d["eos_id"]), keys, [_array(a) for a in d["counts"]],
                   _array(d["discounts"]))


def _array(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise ValueError(f"expected an array, got {type(x).__name__}")


def stream_rows(ids: np.ndarray, eos: int) -> List[np.ndarray]:
    """Split a token stream into its rows (each keeping its closing <eos>)."""
    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == eos) + 1
    parts = np.split(ids, ends)
    return [p for p in parts if len(p)]


def fit_mix_weight(nll_a: np.ndarray, nll_b: np.ndarray, steps: int = 100) -> float:
    """Weight lam of model a in p = lam * p_a + (1 - lam) * p_b that maximises the likelihood of the
    tokens (EM; each step never lowers it). The pure models (lam 0 and 1) are candidates too, so the
    result is never worse than the better part on these tokens."""
    la, lb = -np.asarray(nll_a, np.float64), -np.asarray(nll_b, np.float64)
    if la.size == 0:
        return 0.5

    def mixed_nll(lam: float) -> float:
        with np.errstate(divide="ignore"):
            return float(-np.logaddexp(np.log(lam) + la, np.log1p(-lam) + lb).mean())

    lam = 0.5
    for _ in range(steps):
        with np.errstate(divide="ignore"):
            ra = np.log(lam) + la
            post = np.exp(ra - np.logaddexp(ra, np.log1p(-lam) + lb))    # responsibility of model a
        new = float(post.mean())
        if abs(new - lam) < 1e-6:
            lam = new
            break
        lam = new
    return min((lam, 1.0, 0.0), key=mixed_nll)


# ---------------------------------------------------------------------------------------------- copies

# At most this many windows are kept: 12 bytes each (hash + row), so a copy index stays under 24 MB.
# Beyond it, windows are kept by hash (one in m): a copy of L tokens has L - N + 1 windows, so long
# copies are still found; runs just over N tokens may be missed, and info says how much is covered.
COPY_BUDGET_WINDOWS = 2_000_000
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def _window_hashes(s: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every n consecutive ids of s (len(s) - n + 1 values)."""
    s = np.asarray(s, dtype=np.uint64)
    m = len(s) - n + 1
    h = np.zeros(max(m, 0), dtype=np.uint64)
    if m <= 0:
        return h
    with np.errstate(over="ignore"):
        for j in range(n):
            h = (h ^ (s[j: j + m] + np.uint64(j + 1))) * _HASH_MUL   # order-sensitive mixing
            h ^= h >> np.uint64(29)
    return h


class CopyIndex:
    """Hashes of every run of ``window`` consecutive tokens of the training rows, with the row each
    comes from: enough to tell that a text repeats a training row (and which), not to print the row.
    Rows are numbered in the order they were read (0-based, missing values skipped)."""

    def __init__(self, window: int, hashes: np.ndarray, rows: np.ndarray, every: int = 1):
        self.window, self.every = int(window), int(every)
        self.hashes = np.asarray(hashes, dtype=np.int64)    # sorted (uint64 bits stored as int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.window < 2 or self.every < 1 or self.hashes.shape != self.rows.shape or self.hashes.ndim != 1:
            raise ValueError("copy index tables do not match")

    @classmethod
    def build(cls, rows: Sequence[np.ndarray], row_numbers: Sequence[int], window: int,
              budget: int = COPY_BUDGET_WINDOWS) -> "CopyIndex":
        hs, rs = [], []
        for r, num in zip(rows, row_numbers):
            h = _window_hashes(r, window)
            hs.append(h)
            rs.append(np.full(len(h), num, dtype=np.int64))
        h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
        r = np.concatenate(rs) if rs else np.zeros(0, np.int64)
        every = max(1, math.ceil(len(h) / budget))
        if every > 1:
            keep = h % np.uint64(every) == 0
            h, r = h[keep], r[keep]
        h = h.view(np.int64)
        uniq, first = np.unique(h, return_index=True)           # a run in several rows: the first one
        return cls(window, uniq, r[first], every)

    def find(self, ids: Sequence[int]) -> List[Tuple[int, int, int]]:
        """(start, length, row) for each maximal run of ids that repeats a run of a training row."""
        ids = np.asarray(ids, dtype=np.int64)
        h = _window_hashes(ids, self.window).view(np.int64)
        if h.size == 0 or self.hashes.size == 0:
            return []
        j = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        hit = self.hashes[j] == h
        row = np.where(hit, self.rows[j], -1)
        out: List[Tuple[int, int, int]] = []
        i = 0
        while i < len(h):
            if not hit[i]:
                i += 1
                continue
            start, r = i, int(row[i])
            while i + 1 < len(h) and hit[i + 1] and row[i + 1] == r:
                i += 1
            out.append((start, i - start + self.window, r))
            i += 1
        return out

    def coverage(self, encoded: Sequence[Sequence[int]]) -> np.ndarray:
        """For each row of ids (no <eos>): the share of its runs of ``window`` tokens that repeat a run of a
        training row (1.0: every run was in the training text); NaN for a row shorter than the window (or
        none of whose runs the index samples). All rows in one vectorised pass."""
        n = len(encoded)
        out = np.full(n, np.nan)
        lens = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n)
        if n == 0 or lens.sum() < self.window:
            return out
        flat = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(lens.sum()))
        h = _window_hashes(flat, self.window)
        row = np.repeat(np.arange(n), lens)[: len(h)]
        ends = np.cumsum(lens)
        ok = np.arange(len(h)) + self.window <= ends[row]          # windows inside one row
        if self.every > 1:
            ok &= h % np.uint64(self.every) == 0                     # the index keeps only these
        h, row = h[ok].view(np.int64), row[ok]
        if self.hashes.size:
            j = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
            hit = self.hashes[j] == h
        else:
            hit = np.zeros(len(h), bool)
        total = np.bincount(row, minlength=n)
        found = np.bincount(row, weights=hit.astype(float), minlength=n)
        out[total > 0] = found[total > 0] / total[total > 0]
        return out

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.rows.nbytes)

    def to_dict(self) -> dict:
        rows = self.rows.astype(np.int32) if self.rows.size == 0 or self.rows.max() < 2**31 else self.rows
        return {"window": self.window, "every": self.every, "hashes": torch.from_numpy(self.hashes),
                "rows": torch.from_numpy(rows)}

    @classmethod
    def from_dict(cls, d: dict) -> "CopyIndex":
        return cls(int(d["window"]), _array(d["hashes"]), _array(d["rows"]), int(d.get("every", 1)))


# ---------------------------------------------------------------------------------------------- predictors

class TablePredictor(Vocabulary):
    """next_words / generate / row_nll for any model that gives a full next-token distribution.

    Subclasses provide ``log_probs_after(ids) -> torch.Tensor (V,)`` and ``encoded_nll(encoded)``; the
    methods match :class:`lm_magics.engine.inference.Predictor`, so LanguageModel uses either.
    """

    def log_probs_after(self, ids: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def encoded_nll(self, encoded: Sequence[List[int]]) -> List[np.ndarray]:
        raise NotImplementedError

    def clear_cache(self) -> None:
        pass

    def next_words(self, prefix: str, k: int = 5, include_special: bool = False,
                   startswith: Optional[str] = None) -> List[Tuple[str, float]]:
        return self._top_words(self.log_probs_after(self.context_ids(prefix)), k, include_special, startswith)

    def generate(self, prefix: str, cfg: GenerateConfig, stop_at_eos: bool = False) -> List[int]:
        from .inference import pick_token as _pick   # the LSTM's sampling rule (temperature, top-k, top-p), shared

        ctx = self.context_ids(prefix)
        if cfg.beam > 1:
            return self._beam(ctx, cfg, stop_at_eos)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(cfg.seed if cfg.seed is not None else int(torch.seed() % 2**63))
        rules = self.repeat_rules(cfg)
        out: List[int] = []
        for _ in range(cfg.n_words):
            nxt = _pick(rules.apply(self.log_probs_after(ctx + out).float(), ctx, out), cfg, gen, self.tok.unk_id)
            if rules.ends_text(ctx, out, nxt):
                break
            out.append(nxt)
            if stop_at_eos and nxt == self.tok.eos_id:
                break
        return out

    def _beam_lstm_sizes(self) -> Optional[Tuple[int, int, int]]:
        """(hidden_dim, num_layers, out_dim) of an LSTM part, for the beam's memory estimate (None: none)."""
        return None

    def _beam(self, ctx: List[int], cfg: GenerateConfig, stop_at_eos: bool) -> List[int]:
        """Beam search: the cfg.beam most likely continuations, one (beams, V) block per step."""
        from . import memory

        V = len(self.tok)
        memory.check_beam(cfg.beam, V, cfg.n_words, self._beam_lstm_sizes())   # before any block exists
        beams: List[List[int]] = [[]]
        scores = torch.zeros(1, dtype=torch.float64)
        done: List[Tuple[float, List[int]]] = []
        rules = self.repeat_rules(cfg)
        for _ in range(cfg.n_words):
            lp = torch.stack([rules.apply(self.log_probs_after(ctx + seq).double(), ctx, seq)
                              for seq in beams])                                            # (beams, V)
            lp[:, self.tok.unk_id] = -math.inf
            total = (scores.unsqueeze(1) + lp).view(-1)                                    # (beams * V)
            top_s, top_i = torch.topk(total, min(cfg.beam, total.numel()))
            new_beams, new_scores = [], []
            for s, i in zip(top_s.tolist(), top_i.tolist()):
                if s == -math.inf:
                    break
                b, t = divmod(i, V)
                seq = beams[b] + [t]
                if rules.ends_text(ctx, beams[b], t):                # a blank line: the text ends before it
                    done.append((s / len(seq), beams[b]))
                elif stop_at_eos and t == self.tok.eos_id:
                    done.append((s / len(seq), seq))
                else:
                    new_beams.append(seq)
                    new_scores.append(s)
            if not new_beams:
                break
            beams, scores = new_beams, torch.tensor(new_scores, dtype=torch.float64)
        done += [(s / max(1, len(seq)), seq) for s, seq in zip(scores.tolist(), beams) if seq]
        return max(done, key=lambda c: c[0])[1] if done else []

    def row_nll(self, rows: Sequence[Optional[str]]) -> List[Optional[np.ndarray]]:
        """Per-token NLL (nats; the last entry is the row's <eos>) per row; None stays None."""
        keep = [i for i, r in enumerate(rows) if r is not None]
        nll = self.encoded_nll([self.tok.encode_line(rows[i]) for i in keep])
        out: List[Optional[np.ndarray]] = [None] * len(rows)
        for i, v in zip(keep, nll):
            out[i] = np.asarray(v, dtype=np.float64)
        return out


class NGramPredictor(TablePredictor):
    """The predictor of an n-gram model."""

    def __init__(self, ngram: NGramModel, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.ngram = ngram

    def log_probs_after(self, ids: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(self.ngram.log_probs_after(ids))

    def encoded_nll(self, encoded: Sequence[List[int]]) -> List[np.ndarray]:
        return self.ngram.rows_nll(encoded)


class MixPredictor(TablePredictor):
    """p = weight * p_lstm + (1 - weight) * p_ngram, token by token."""

    def __init__(self, lstm: object, ngram: NGramModel, tokenizer: Tokenizer, weight: float):
        super().__init__(tokenizer)
        self.lstm, self.ngram, self.weight = lstm, ngram, float(weight)
        with np.errstate(divide="ignore"):
            self._la, self._lb = float(np.log(self.weight)), float(np.log1p(-self.weight))

    def clear_cache(self) -> None:
        self.lstm.clear_cache()

    def _beam_lstm_sizes(self) -> Optional[Tuple[int, int, int]]:
        net = getattr(self.lstm, "net", None)
        if net is None:
            return None
        return (net.hidden_dim, net.num_layers, net.embed_dim if net.proj is not None else net.hidden_dim)

    def log_probs_after(self, ids: Sequence[int]) -> torch.Tensor:
        a = self.lstm.log_probs_after(ids).double().cpu()
        b = torch.from_numpy(self.ngram.log_probs_after(ids))
        return torch.logaddexp(a + self._la, b + self._lb)

    def encoded_nll(self, encoded: Sequence[List[int]]) -> List[np.ndarray]:
        a = self.lstm.encoded_nll(encoded)
        b = self.ngram.rows_nll(encoded)
        with np.errstate(divide="ignore"):
            return [-np.logaddexp(self._la - x, self._lb - y) for x, y in zip(a, b)]


def copy_report(index: Optional[CopyIndex], ids: Sequence[int]) -> Optional[List[Dict[str, int]]]:
    """Overlaps of ids with training rows as dicts (start, length, row), or None without an index."""
    if index is None:
        return None
    return [{"start": s, "length": n, "row": r} for s, n, r in index.find(ids)]
