"""What makes a row unusual, beyond its mean surprisal: the pieces of the ``unusual`` score.

Four parts, each plain numpy, each a plain dict in the model file (``to_dict`` / ``from_dict``, which
checks types, finiteness and sizes and raises ValueError naming the first bad field):

``SpellingModel``
    A character trigram model of the vocabulary's words (interpolated Witten-Bell, words weighted by
    ``log2(1 + count)``, so a word's spelling counts more than its frequency). A word the tokenizer does not
    know is scored as *new*, not as the ``<unk>`` the network learned from rare words::

        bits(unseen word) = -log2 p_new + spelling bits(word)         p_new = (hapax + <unk> tokens) / tokens

    (Good-Turing: the chance that the next token is a word never seen before.) A long, oddly spelled new
    word costs more than a short, ordinary one.
``NeighbourIndex``
    Hashed character 3-5-grams (2**18 features, sublinear tf x idf, L2-normalised) of at most ``max_rows``
    training rows (a seeded draw: memory and file size are flat in the number of rows), each row's
    ``max_features`` heaviest features kept as float16. ``search`` is an exact top-k cosine search in
    chunks (an inverted index joined with numpy, no per-row loop); the signal is the mean cosine distance
    to the ``k`` nearest usual rows (TF-IDF char-gram kNN, a strong classic detector).
``Calibration``
    Each signal's 101 quantiles over the validation rows. ``percentile`` maps a value to its share of
    validation rows below it (ties counting half), in [0, 1] and monotone, with thin exponential tails
    beyond the extremes so that rows past every validation row still keep their order. ``combine`` turns
    the percentiles into one score by the stored rule (see ``RULES``).
``row_signals``
    Per-row signals from per-token surprisal: mean, maximum, top-k mean, and the unseen words' bits.

Nothing here knows a model or a tokenizer: ``api.LanguageModel.signals`` feeds it.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["SpellingModel", "NeighbourIndex", "Calibration", "row_signals", "SIGNALS", "RULES", "DEFAULT_RULE",
           "DEFAULT_SIGNALS", "TOP_K_TOKENS", "FAMILIES", "family_weights"]

# Every signal, in display order: mean surprisal (the 'ppl' signal), max, top-k mean, unseen words,
# the n-gram baseline's mean surprisal, and the distance to the nearest usual rows.
SIGNALS = ("ppl", "max", "topk", "unseen", "ngram", "knn")
# Which of them the default score combines (topk mostly repeats max and ppl; it is there to look at).
DEFAULT_SIGNALS = ("ppl", "max", "unseen", "ngram", "knn")
TOP_K_TOKENS = 3            # the top-k mean: the 3 most surprising tokens of a row
QUANTILES = 101             # calibration points per signal (every percentile)
# How calibrated percentiles p_s (one per signal) make one score, higher = more unusual:
#   "mean":      the weighted mean of p_s (in [0, 1]);
#   "max":       the largest p_s (in [0, 1]);
#   "mean_tail": the weighted mean of -log2(1 - p_s), Fisher's way of pooling p-values: a row far past
#                every validation row on one signal stands out even when the others find it ordinary
#                (1.44 for a typical row; 6.6 for one at the 99th percentile of one signal).
RULES = ("mean", "max", "mean_tail")
DEFAULT_RULE = "mean"
# Each signal's family: the weights give every family one vote, shared among its members (ppl and max
# are two readings of the same LSTM pass: two votes would let it outvote the n-gram, the unseen words and
# the neighbours). benchmarks/anomaly.py, 2026-12-03, mean AUROC over 5 sets: one vote per family 0.905,
# one per signal 0.903; worst shortfall against the best single signal of a set 0.008 vs 0.009.
FAMILIES = {"ppl": "lstm", "max": "lstm", "topk": "lstm", "unseen": "unseen", "ngram": "ngram", "knn": "knn"}


def family_weights(signals: Sequence[str], combine: Sequence[str]) -> List[float]:
    """One weight per signal: 1 / (members of its family among ``combine``), 0 for one left out."""
    members: Dict[str, int] = {}
    for name in combine:
        members[FAMILIES.get(name, name)] = members.get(FAMILIES.get(name, name), 0) + 1
    return [1.0 / members[FAMILIES.get(n, n)] if n in combine else 0.0 for n in signals]

_MUL = np.uint64(0x9E3779B97F4A7C15)
_PUNCT = re.compile(r"([^\w\s])")
_DIMS_BITS = 18
_START, _END = 2, 3         # the spelling model's padding characters (control codes, never in words)


def _window_hash(codes: np.ndarray, n: int, seed: int) -> np.ndarray:
    """uint64 hash of every n consecutive codes (len(codes) - n + 1 values), order-sensitive."""
    m = len(codes) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(m, np.uint64(seed) * _MUL, dtype=np.uint64)
        for j in range(n):
            h = (h ^ (codes[j: j + m] + np.uint64(j + 1))) * _MUL
            h ^= h >> np.uint64(29)
    return h


def _codes(text: str) -> np.ndarray:
    """Unicode code points of text as uint64 (one per character)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _array(x: object, dtype: type, what: str, ndim: int = 1) -> np.ndarray:
    """A stored array as numpy, with its type and shape checked (ValueError names the field)."""
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    if not isinstance(x, np.ndarray) or x.ndim != ndim:
        raise ValueError(f"its unusualness field {what} is not a {ndim}-d array")
    if np.issubdtype(dtype, np.floating):
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError(f"its unusualness field {what} holds non-finite or non-float values")
    elif not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"its unusualness field {what} is not integer")
    return x.astype(dtype, copy=False)


def _number(d: dict, key: str, low: float, high: float = math.inf, integer: bool = False) -> float:
    v = d.get(key)
    ok = isinstance(v, int) and not isinstance(v, bool) if integer else (
        isinstance(v, (int, float)) and not isinstance(v, bool))
    if not ok or not math.isfinite(v) or not low <= v <= high:
        raise ValueError(f"its unusualness field {key}={v!r} is out of range")
    return v


# ---------------------------------------------------------------------------------------------- spelling

class SpellingModel:
    """Character trigrams of the vocabulary's words, for scoring words the model has never seen.

    Tables per order n = 1..3: the sorted hashes of (n-1 characters of context, character) with their
    weighted counts, and per context its total and number of distinct next characters (Witten-Bell)::

        p_n(c | ctx) = (C(ctx c) + T(ctx) p_(n-1)(c | shorter ctx)) / (C(ctx) + T(ctx))     p_0 = 1 / A

    A = distinct characters + 1 (room for one never seen). Words are padded ``^^word$``: the end counts.
    """

    ORDER = 3

    def __init__(self, grams: List[np.ndarray], counts: List[np.ndarray], contexts: List[np.ndarray],
                 totals: List[np.ndarray], types: List[np.ndarray], alphabet: int, new_word_bits: float):
        self.grams, self.counts = grams, counts
        self.contexts, self.totals, self.types = contexts, totals, types
        self.alphabet, self.new_word_bits = int(alphabet), float(new_word_bits)
        self._check()

    def _check(self) -> None:
        tables = (self.grams, self.counts, self.contexts, self.totals, self.types)
        if any(len(t) != self.ORDER for t in tables):
            raise ValueError(f"its spelling model has not {self.ORDER} orders")
        for n in range(self.ORDER):
            if self.grams[n].shape != self.counts[n].shape or self.contexts[n].shape != self.totals[n].shape \
                    or self.contexts[n].shape != self.types[n].shape:
                raise ValueError(f"its spelling model's order-{n + 1} tables do not match")
            if np.any(np.diff(self.grams[n]) <= 0) or np.any(np.diff(self.contexts[n]) <= 0):
                raise ValueError(f"its spelling model's order-{n + 1} keys are not sorted")
            if (self.counts[n] < 0).any() or (self.totals[n] < 0).any() or (self.types[n] < 0).any():
                raise ValueError(f"its spelling model's order-{n + 1} counts are negative")
        if self.alphabet < 1 or not (math.isfinite(self.new_word_bits) and self.new_word_bits >= 0):
            raise ValueError("its spelling model's alphabet or new-word bits are out of range")

    # ------------------------------------------------------------------------------ windows

    @classmethod
    def _windows(cls, words: Sequence[str]) -> Tuple[np.ndarray, List[np.ndarray], List[np.ndarray]]:
        """For every character of every padded word (and its end mark): the word's number, and per order
        n the hash of (context, character) and of the context alone."""
        pad = cls.ORDER - 1
        text = "".join(chr(_START) * pad + w + chr(_END) for w in words)
        codes = _codes(text)
        lens = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=len(words))   # chars + end
        seg = lens + pad
        starts = np.cumsum(seg) - seg
        word_of = np.repeat(np.arange(len(words)), lens)
        # Position of each scored character in codes: after the word's padding.
        pos = np.repeat(starts + pad, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
        grams, contexts = [], []
        for n in range(1, cls.ORDER + 1):
            full = _window_hash(codes, n, seed=n)                       # window ending at p starts at p-n+1
            grams.append(full[pos - n + 1].view(np.int64))
            if n == 1:
                contexts.append(np.zeros(len(pos), np.int64))
            else:
                ctx = _window_hash(codes, n - 1, seed=100 + n)
                contexts.append(ctx[pos - n + 1].view(np.int64))
        return word_of, grams, contexts

    @classmethod
    def fit(cls, words: Sequence[str], counts: Sequence[float], new_word_bits: float) -> "SpellingModel":
        """Fit on words with their corpus counts (each word weighs log2(1 + count))."""
        words = [w for w in words if w]
        weight = np.log2(1.0 + np.maximum(np.asarray(counts, dtype=np.float64)[:len(words)], 0.0))
        if not words:
            empty = [np.zeros(0, np.int64)] * cls.ORDER
            zero = [np.zeros(0, np.float64)] * cls.ORDER
            return cls(empty, zero, empty, zero, zero, 1, new_word_bits)
        word_of, grams, contexts = cls._windows(words)
        w = weight[word_of]
        g_keys, g_counts, c_keys, c_totals, c_types = [], [], [], [], []
        for n in range(cls.ORDER):
            keys, inv = np.unique(grams[n], return_inverse=True)
            g_keys.append(keys)
            g_counts.append(np.bincount(inv, weights=w, minlength=len(keys)))
            # The context of each distinct gram (every occurrence of a gram has the same context).
            first = np.zeros(len(keys), np.int64)
            first[inv[::-1]] = np.arange(len(inv))[::-1]
            gram_ctx = contexts[n][first]
            ck, cinv = np.unique(gram_ctx, return_inverse=True)
            c_keys.append(ck)
            c_totals.append(np.bincount(cinv, weights=g_counts[-1], minlength=len(ck)))
            c_types.append(np.bincount(cinv, minlength=len(ck)).astype(np.float64))
        alphabet = len(set("".join(words))) + 2          # + the end mark + one never seen
        return cls(g_keys, g_counts, c_keys, c_totals, c_types, alphabet, new_word_bits)

    def bits(self, words: Sequence[str]) -> np.ndarray:
        """Spelling bits of each word (-log2 of its letters' probability, end mark included)."""
        if not len(words):
            return np.zeros(0)
        word_of, grams, contexts = self._windows(list(words))
        p = np.full(len(word_of), 1.0 / self.alphabet)
        for n in range(self.ORDER):
            c = self._lookup(self.grams[n], self.counts[n], grams[n])
            total = self._lookup(self.contexts[n], self.totals[n], contexts[n])
            types = self._lookup(self.contexts[n], self.types[n], contexts[n])
            seen = total > 0
            p = np.where(seen, (c + types * p) / np.where(seen, total + types, 1.0), p)
        return np.bincount(word_of, weights=-np.log2(p), minlength=len(words))

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.zeros(len(query))
        j = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[j] == query, values[j], 0.0)

    def novelty_bits(self, words: Sequence[str]) -> np.ndarray:
        """Bits of each word as a word never seen: -log2 p_new plus its spelling."""
        return self.new_word_bits + self.bits(words)

    # ------------------------------------------------------------------------------ files

    def to_dict(self) -> dict:
        t = torch.from_numpy
        return {"alphabet": self.alphabet, "new_word_bits": self.new_word_bits,
                "grams": [t(a) for a in self.grams], "counts": [t(a.astype(np.float32)) for a in self.counts],
                "contexts": [t(a) for a in self.contexts],
                "totals": [t(a.astype(np.float32)) for a in self.totals],
                "types": [t(a.astype(np.float32)) for a in self.types]}

    @classmethod
    def from_dict(cls, d: dict) -> "SpellingModel":
        if not isinstance(d, dict):
            raise ValueError("its spelling model is not a table")

        def arrays(key: str, dtype: type) -> List[np.ndarray]:
            v = d.get(key)
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"its spelling model's {key} is not a list")
            return [_array(a, dtype, f"spelling.{key}") for a in v]

        return cls(arrays("grams", np.int64), arrays("counts", np.float64), arrays("contexts", np.int64),
                   arrays("totals", np.float64), arrays("types", np.float64),
                   int(_number(d, "alphabet", 1, 2**31, integer=True)), _number(d, "new_word_bits", 0, 1e4))


# ---------------------------------------------------------------------------------------------- neighbours

def _scipy_sparse():
    """scipy.sparse when installed (it comes with scikit-learn): the neighbour search's product in
    compiled code. Without it the same exact search runs in numpy, a few times slower. LM_MAGICS_NO_SCIPY=1
    forces numpy (tests compare the two)."""
    import os

    if os.environ.get("LM_MAGICS_NO_SCIPY"):
        return None
    try:
        import scipy.sparse as sparse
    except ImportError:
        return None
    return sparse


def char_grams(texts: Sequence[str], sizes: Tuple[int, ...] = (3, 4, 5),
               bits: int = _DIMS_BITS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashed character n-grams of each text, normalised (lowercased, a space each side of every punctuation
    mark, runs of whitespace as one space: "f(x)" and the tokenizer's "f (x)" read the same) and padded with
    a space each side: (row, feature, count) triples sorted by (row, feature). All texts in one pass."""
    if not len(texts):
        z = np.zeros(0, np.int64)
        return z, z, z
    # NUL separates the rows (a NUL inside a text becomes a space).
    joined = "\x00".join(" " + " ".join(_PUNCT.sub(r" \1 ", t.replace("\x00", " ")).lower().split()) + " "
                         for t in texts)
    codes = _codes(joined)
    sep = codes == 0
    csep = np.concatenate([[0], np.cumsum(sep)])
    row_at = csep[1:] - sep                         # the row each position belongs to
    keys = []
    for n in sizes:
        h = _window_hash(codes, n, seed=n)
        m = len(h)
        ok = csep[n:n + m] - csep[:m] == 0          # windows that do not cross a row boundary
        feat = (h[ok] >> np.uint64(64 - bits)).astype(np.int64)
        keys.append(row_at[:m][ok] * (1 << bits) + feat)
    keys = np.concatenate(keys)
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq >> bits, uniq & ((1 << bits) - 1), counts


class NeighbourIndex:
    """The nearest usual rows: hashed char 3-5-gram TF-IDF vectors of a bounded sample of training rows.

    ``indptr``/``features``/``values``: the rows as a sparse matrix (CSR, values float16, each row unit
    length over its kept features); ``df_features``/``df_counts``: document frequencies of the features,
    for the idf of a query; ``row_numbers``: each kept row's training row number; ``texts``: its text
    (cut to 200 characters), to show as the nearest usual row. Holds training text: ``strip()`` drops it.
    """

    def __init__(self, indptr: np.ndarray, features: np.ndarray, values: np.ndarray, df_features: np.ndarray,
                 df_counts: np.ndarray, row_numbers: np.ndarray, texts: List[str], rows_seen: int, k: int = 5):
        self.indptr, self.features, self.values = indptr, features, values
        self.df_features, self.df_counts = df_features, df_counts
        self.row_numbers, self.texts = row_numbers, list(texts)
        self.rows_seen, self.k = int(rows_seen), int(k)
        self._postings: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._transposed = None      # the index as a scipy matrix, transposed (built on first search)
        self._check()

    def _check(self) -> None:
        n = len(self.row_numbers)
        if self.indptr.shape != (n + 1,) or (n and (self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0))):
            raise ValueError("its neighbour index's row pointers do not match its rows")
        if self.indptr[-1] != len(self.features) or self.features.shape != self.values.shape:
            raise ValueError("its neighbour index's features and values do not match")
        if len(self.features) and (self.features.min() < 0 or self.features.max() >= 1 << _DIMS_BITS):
            raise ValueError("its neighbour index's features are out of range")
        if self.df_features.shape != self.df_counts.shape or np.any(np.diff(self.df_features) <= 0):
            raise ValueError("its neighbour index's document frequencies do not match")
        if len(self.texts) != n or not all(isinstance(t, str) for t in self.texts):
            raise ValueError("its neighbour index's texts do not match its rows")
        if self.k < 1 or self.rows_seen < n:
            raise ValueError("its neighbour index's k or row count is out of range")

    @property
    def size(self) -> int:
        return len(self.row_numbers)

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.features.nbytes + self.values.nbytes + self.df_features.nbytes
                   + self.df_counts.nbytes + self.row_numbers.nbytes + sum(len(t) for t in self.texts))

    @classmethod
    def build(cls, texts: Sequence[str], row_numbers: Sequence[int], max_rows: int = 2000, max_features: int = 256,
              seed: int = 0, k: int = 5) -> "NeighbourIndex":
        """Index at most max_rows of texts (a seeded draw when there are more), each row's max_features
        heaviest features kept."""
        n_all = len(texts)
        pick = np.arange(n_all)
        if n_all > max_rows:
            pick = np.sort(np.random.default_rng(seed).choice(n_all, max_rows, replace=False))
        kept = [texts[i] for i in pick]
        rows, feats, tf = char_grams(kept)
        df_f, df_c = np.unique(feats, return_counts=True)
        idf = np.log((1 + len(kept)) / (1 + df_c)) + 1.0
        w = (1.0 + np.log(tf)) * idf[np.searchsorted(df_f, feats)]
        # Each row's heaviest features: sort by (row, -weight), keep the first max_features of each row.
        order = np.lexsort((-w, rows))
        rows, feats, w = rows[order], feats[order], w[order]
        counts = np.bincount(rows, minlength=len(kept))
        first = np.cumsum(counts) - counts
        rank = np.arange(len(rows)) - first[rows]
        keep = rank < max_features
        rows, feats, w = rows[keep], feats[keep], w[keep]
        norm = np.sqrt(np.bincount(rows, weights=w * w, minlength=len(kept)))
        w = w / np.where(norm > 0, norm, 1.0)[rows]
        order = np.lexsort((feats, rows))
        counts = np.bincount(rows, minlength=len(kept))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        numbers = np.asarray(row_numbers, dtype=np.int64)[pick] if len(row_numbers) == n_all else pick
        return cls(indptr, feats[order].astype(np.int32), w[order].astype(np.float16), df_f.astype(np.int32),
                   df_c.astype(np.int32), numbers.astype(np.int64), [t[:200] for t in kept], n_all, k)

    def _inverted(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pointers by feature, row of each posting, value of each posting): built once, on first search."""
        if self._postings is None:
            row_of = np.repeat(np.arange(self.size), np.diff(self.indptr))
            order = np.argsort(self.features, kind="stable")
            f = self.features[order]
            ptr = np.searchsorted(f, np.arange((1 << _DIMS_BITS) + 1)).astype(np.int64)
            self._postings = (ptr, row_of[order], self.values[order].astype(np.float32))
        return self._postings

    def _query_vectors(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, feats, tf = char_grams(texts)
        n_index = self.size
        j = np.minimum(np.searchsorted(self.df_features, feats), max(len(self.df_features) - 1, 0))
        df = np.where(len(self.df_features) and self.df_features[j] == feats, self.df_counts[j], 0) \
            if len(self.df_features) else np.zeros(len(feats))
        w = (1.0 + np.log(tf)) * (np.log((1 + n_index) / (1 + df)) + 1.0)
        norm = np.sqrt(np.bincount(rows, weights=w * w, minlength=len(texts)))
        return rows, feats, w / np.where(norm > 0, norm, 1.0)[rows]

    def search(self, texts: Sequence[str], k: Optional[int] = None,
               budget: int = 8_000_000) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each text: the mean cosine distance to its k nearest index rows, the nearest row (position
        in the index) and its distance. Exact; queries go in chunks so no block exceeds ``budget`` cells."""
        k = min(int(k or self.k), max(self.size, 1))
        n = len(texts)
        mean_d, near, near_d = np.ones(n), np.full(n, -1, np.int64), np.ones(n)
        if n == 0 or self.size == 0:
            return mean_d, near, near_d
        rows, feats, w = self._query_vectors(texts)
        sparse = _scipy_sparse()
        if sparse is not None:
            # The same product in compiled code: queries (C x 2^18, CSR) @ index^T (2^18 x N, CSR).
            if self._transposed is None:
                self._transposed = sparse.csr_matrix(
                    (self.values.astype(np.float32), self.features, self.indptr),
                    shape=(self.size, 1 << _DIMS_BITS)).T.tocsr()
            q = sparse.csr_matrix((w, (rows, feats)), shape=(n, 1 << _DIMS_BITS))
            step = max(1, budget // self.size)
            for a in range(0, n, step):
                b = min(n, a + step)
                self._nearest((q[a:b] @ self._transposed).toarray(), k, a, b, mean_d, near, near_d)
            return mean_d, near, near_d
        ptr, post_row, post_val = self._inverted()
        hits = ptr[feats + 1] - ptr[feats]                          # postings per query feature
        per_row = np.bincount(rows, weights=hits, minlength=n)
        # Chunks of rows: at most budget // index-size rows, and about budget postings, per block.
        max_rows = max(1, budget // self.size)
        bounds, start, cum = [0], 0, np.cumsum(per_row)
        while start < n:
            base = cum[start - 1] if start else 0.0
            end = max(start + 1, int(np.searchsorted(cum, base + budget, side="right")))
            end = min(end, start + max_rows, n)
            bounds.append(end)
            start = end
        entry_start = np.searchsorted(rows, np.asarray(bounds))
        for a, b, ea, eb in zip(bounds[:-1], bounds[1:], entry_start[:-1], entry_start[1:]):
            r, f, v, c = rows[ea:eb] - a, feats[ea:eb], w[ea:eb], hits[ea:eb]
            total = int(c.sum())
            rep = np.repeat(np.arange(len(f)), c)
            p = ptr[f][rep] + (np.arange(total) - np.repeat(np.cumsum(c) - c, c))
            sim = np.bincount(r[rep] * self.size + post_row[p], weights=v[rep] * post_val[p],
                              minlength=(b - a) * self.size).reshape(b - a, self.size)
            self._nearest(sim, k, a, b, mean_d, near, near_d)
        return mean_d, near, near_d

    @staticmethod
    def _nearest(sim: np.ndarray, k: int, a: int, b: int, mean_d: np.ndarray, near: np.ndarray,
                 near_d: np.ndarray) -> None:
        """Fill rows a..b of the results from their (rows x index) cosine similarities."""
        dist = np.clip(1.0 - sim, 0.0, 1.0)
        near[a:b] = dist.argmin(axis=1)
        near_d[a:b] = dist[np.arange(b - a), near[a:b]]
        mean_d[a:b] = np.partition(dist, k - 1, axis=1)[:, :k].mean(axis=1)

    # ------------------------------------------------------------------------------ files

    def to_dict(self) -> dict:
        t = torch.from_numpy
        return {"k": self.k, "rows_seen": self.rows_seen, "indptr": t(self.indptr), "features": t(self.features),
                "values": t(self.values), "df_features": t(self.df_features), "df_counts": t(self.df_counts),
                "row_numbers": t(self.row_numbers), "texts": list(self.texts)}

    @classmethod
    def from_dict(cls, d: dict) -> "NeighbourIndex":
        if not isinstance(d, dict):
            raise ValueError("its neighbour index is not a table")
        values = d.get("values")
        if not isinstance(values, torch.Tensor) or values.dtype not in (torch.float16, torch.float32):
            raise ValueError("its neighbour index's values are not float16")
        vals = values.float().numpy()
        if vals.ndim != 1 or not np.isfinite(vals).all():
            raise ValueError("its neighbour index's values are not finite")
        texts = d.get("texts")
        if not isinstance(texts, list):
            raise ValueError("its neighbour index's texts are not a list")
        return cls(_array(d.get("indptr"), np.int64, "neighbours.indptr"),
                   _array(d.get("features"), np.int64, "neighbours.features"), vals.astype(np.float16),
                   _array(d.get("df_features"), np.int64, "neighbours.df_features"),
                   _array(d.get("df_counts"), np.int64, "neighbours.df_counts"),
                   _array(d.get("row_numbers"), np.int64, "neighbours.row_numbers"), texts,
                   int(_number(d, "rows_seen", 0, 2**62, integer=True)), int(_number(d, "k", 1, 1000, integer=True)))


# ---------------------------------------------------------------------------------------------- signals

def row_signals(bits: np.ndarray, unseen: np.ndarray, lens: np.ndarray,
                top_k: int = TOP_K_TOKENS) -> Dict[str, np.ndarray]:
    """Per-row signals from per-token surprisal, all rows at once (no loop over rows or tokens).

    bits: the rows' surprisal per token in bits, concatenated (each row: its words, then its <eos>), unseen
    words already at their novelty bits; unseen: a boolean mask of the unseen tokens; lens: tokens per row.
    Returns float arrays over rows: ``ppl`` (mean bits per token, <eos> included, as perplexity counts
    it), ``max`` and ``topk`` (the largest and the mean of the ``top_k`` largest over its words; the <eos>
    alone for a row without words), ``unseen`` (the unseen words' bits per token) and ``unseen_words``
    (how many there are). A row of length 0 gets NaN.
    """
    lens = np.asarray(lens, dtype=np.int64)
    n = len(lens)
    out = {k: np.full(n, np.nan) for k in ("ppl", "max", "topk", "unseen", "unseen_words")}
    if n == 0 or lens.sum() == 0:
        return out
    flat, new = np.asarray(bits, dtype=np.float64), np.asarray(unseen, dtype=bool)
    ok = lens > 0
    row = np.repeat(np.arange(n), lens)
    per = np.maximum(lens, 1)
    out["ppl"][ok] = (np.bincount(row, weights=flat, minlength=n) / per)[ok]
    out["unseen"][ok] = (np.bincount(row, weights=np.where(new, flat, 0.0), minlength=n) / per)[ok]
    out["unseen_words"][ok] = np.bincount(row, weights=new.astype(float), minlength=n)[ok]
    # Words only for max and top-k: the last token of each row is its <eos> (unless the row is only that).
    last = np.cumsum(lens) - 1
    word = np.ones(len(flat), bool)
    word[last[ok & (lens > 1)]] = False
    r, v = row[word], flat[word]
    order = np.lexsort((-v, r))                                    # by row, most surprising first
    r, v = r[order], v[order]
    counts = np.bincount(r, minlength=n)
    rank = np.arange(len(r)) - (np.cumsum(counts) - counts)[r]
    firsts = rank == 0
    out["max"][r[firsts]] = v[firsts]
    top = rank < top_k
    mean_top = np.bincount(r[top], weights=v[top], minlength=n) / np.maximum(np.minimum(counts, top_k), 1)
    out["topk"][ok] = mean_top[ok]
    return out


# ---------------------------------------------------------------------------------------------- calibration

def _tail_scale(q: np.ndarray, upper: bool) -> float:
    """How fast the percentile approaches 0 or 1 beyond the calibration's extremes: the spread of its outer
    tenth, but at least a tenth of its whole range (and a thousandth of its size), so a tight cluster of
    validation values does not make every value past it look infinitely unusual."""
    outer = q[-1] - q[-11] if upper else q[10] - q[0]
    return float(max(outer, (q[-1] - q[0]) / 10, 1e-3 * max(abs(q[-1] if upper else q[0]), 1.0)))


class Calibration:
    """Each signal's quantiles over the validation rows, and the rule that combines their percentiles.

    ``signals``: names (from SIGNALS); ``quantiles``: (signals, 101) sorted values; ``weights``: one per
    signal (the rule's); ``rule``: one of RULES; ``rows``: how many rows calibrated it; ``source``: what they
    were ("validation rows", or "training text" when none were held out).
    """

    def __init__(self, signals: Sequence[str], quantiles: np.ndarray, weights: Sequence[float], rule: str,
                 rows: int, source: str = "validation rows", combine: Sequence[str] = DEFAULT_SIGNALS):
        self.signals = list(signals)
        self.quantiles = np.asarray(quantiles, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.rule, self.rows, self.source = rule, int(rows), str(source)
        self.combine_signals = [s for s in combine if s in self.signals]
        self._check()

    def _check(self) -> None:
        S = len(self.signals)
        if len(set(self.signals)) != S or not set(self.signals) <= set(SIGNALS):
            raise ValueError(f"its calibration names unknown signals {self.signals!r}")
        if self.quantiles.shape != (S, QUANTILES) or not np.isfinite(self.quantiles).all() \
                or np.any(np.diff(self.quantiles, axis=1) < 0):
            raise ValueError("its calibration quantiles are not sorted finite rows, one per signal")
        if self.weights.shape != (S,) or not np.isfinite(self.weights).all() or (self.weights < 0).any():
            raise ValueError("its calibration weights are not one non-negative number per signal")
        if self.rule not in RULES or self.rows < 0:
            raise ValueError(f"its calibration rule {self.rule!r} is unknown")

    @classmethod
    def fit(cls, values: Dict[str, np.ndarray], rule: str = DEFAULT_RULE, source: str = "validation rows",
            combine: Sequence[str] = DEFAULT_SIGNALS) -> "Calibration":
        """Quantiles of each signal's finite values (a signal without any is left out)."""
        names, qs, n = [], [], 0
        for name in SIGNALS:
            v = np.asarray(values.get(name, []), dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                names.append(name)
                qs.append(np.quantile(v, np.linspace(0, 1, QUANTILES)))
                n = max(n, int(v.size))
        return cls(names, np.array(qs).reshape(len(names), QUANTILES), family_weights(names, combine), rule, n,
                   source, combine)

    def percentile(self, name: str, x: np.ndarray) -> np.ndarray:
        """The share of calibration rows below each value (ties count half), in [0, 1], monotone in x.

        Between the extremes: linear between the quantile points, mapped to [0.5/101, 100.5/101]; beyond
        them, an exponential tail towards 0 or 1 whose scale is the spread of the outer tenth, so values
        past every calibration row stay ordered. NaN stays NaN."""
        q = self.quantiles[self.signals.index(name)]
        x = np.asarray(x, dtype=np.float64)
        m = len(q)
        grid = (np.arange(m) + 0.5) / m
        lo = np.searchsorted(q, x, side="left")
        hi = np.searchsorted(q, x, side="right")
        out = np.full(x.shape, np.nan)
        inside = np.isfinite(x) & (x >= q[0]) & (x <= q[-1])
        tie = inside & (hi > lo)
        out[tie] = (grid[np.clip(lo[tie], 0, m - 1)] + grid[np.clip(hi[tie] - 1, 0, m - 1)]) / 2
        between = inside & ~tie
        j = np.clip(lo[between], 1, m - 1)
        span = q[j] - q[j - 1]
        frac = np.where(span > 0, (x[between] - q[j - 1]) / np.where(span > 0, span, 1.0), 0.5)
        out[between] = grid[j - 1] + frac * (grid[j] - grid[j - 1])
        scale_hi, scale_lo = _tail_scale(q, upper=True), _tail_scale(q, upper=False)
        above = np.isfinite(x) & (x > q[-1])
        below = np.isfinite(x) & (x < q[0])
        out[above] = 1.0 - grid[0] * np.exp(-(x[above] - q[-1]) / scale_hi)
        out[below] = grid[0] * np.exp((x[below] - q[0]) / scale_lo)
        return out

    def tail_bits(self, name: str, x: np.ndarray) -> np.ndarray:
        """-log2(1 - percentile): 1 bit at the median, ~6.7 past the 99th; linear in x beyond the largest
        calibration value (computed there without rounding 1 - p to 0)."""
        q = self.quantiles[self.signals.index(name)]
        x = np.asarray(x, dtype=np.float64)
        p = self.percentile(name, x)
        out = -np.log2(np.clip(1.0 - p, 1e-300, None))
        above = np.isfinite(x) & (x > q[-1])
        scale = _tail_scale(q, upper=True)
        out[above] = -math.log2(0.5 / len(q)) + (x[above] - q[-1]) / scale / math.log(2)
        return out

    def combine(self, values: Dict[str, np.ndarray]) -> Tuple[np.ndarray, List[str]]:
        """One score per row from the signals present in values (others are left out), and their names.
        A row missing a signal (NaN) is combined from the ones it has."""
        used = [s for s in self.combine_signals if s in values]
        if not used:
            n = len(next(iter(values.values()))) if values else 0
            return np.full(n, np.nan), []
        w = np.array([self.weights[self.signals.index(s)] for s in used])
        if self.rule == "mean_tail":
            parts = np.stack([self.tail_bits(s, values[s]) for s in used])
        else:
            parts = np.stack([self.percentile(s, values[s]) for s in used])
        have = np.isfinite(parts)
        if self.rule == "max":
            score = np.where(have, parts, -np.inf).max(axis=0)
            score[~have.any(axis=0)] = np.nan
            return score, used
        ww = np.where(have, w[:, None], 0.0)
        total = ww.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (np.where(have, parts, 0.0) * ww).sum(axis=0) / total
        score[total == 0] = np.nan
        return score, used

    def to_dict(self) -> dict:
        return {"signals": list(self.signals), "quantiles": torch.from_numpy(self.quantiles.astype(np.float64)),
                "weights": [float(w) for w in self.weights], "rule": self.rule, "rows": self.rows,
                "source": self.source, "combine": list(self.combine_signals)}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if not isinstance(d, dict):
            raise ValueError("its calibration is not a table")
        sig, w, comb = d.get("signals"), d.get("weights"), d.get("combine", list(DEFAULT_SIGNALS))
        if not isinstance(sig, list) or not all(isinstance(s, str) for s in sig):
            raise ValueError("its calibration signals are not a list of names")
        if not isinstance(w, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in w):
            raise ValueError("its calibration weights are not a list of numbers")
        if not isinstance(comb, list) or not all(isinstance(s, str) for s in comb):
            raise ValueError("its calibration's combined signals are not a list of names")
        if not isinstance(d.get("rule"), str) or not isinstance(d.get("source", ""), str):
            raise ValueError("its calibration rule is not a name")
        return cls(sig, _array(d.get("quantiles"), np.float64, "calibration.quantiles", ndim=2), w, d["rule"],
                   int(_number(d, "rows", 0, 2**62, integer=True)), d.get("source", "validation rows"), comb)


checked_number = _number    # the public name, for engine.unusual
