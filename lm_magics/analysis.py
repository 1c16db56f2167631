"""The analysis layer: scoring a column (``score_frame``), explaining a text (``explain``) and comparing
groups of rows (``compare_groups``), over the models of ``api``.

Front-ends (magics, the chat, the CLI, ``dask``) call these; they call ``LanguageModel``'s public methods::

    import lm_magics as lm
    report = lm.score_frame(model, df, "text")          # writes text_ppl, text_bits, ...
    lm.explain(model, "the cat sat on the river")
    lm.compare_groups(df, "text", by="product")
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .api import LanguageModel
from .engine.tokenizer import Tokenizer
from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from .display import Explanation, GroupComparison, ScoreReport

__all__ = ["score_frame", "explain", "compare_groups", "side_parts"]

# ---------------------------------------------------------------------------------------------- scoring a frame

def score_frame(model: LanguageModel, df: Any, column: str, into: Optional[str] = None,
                overwrite: bool = False, top: int = 5, model_name: str = "", *, baseline: bool = False,
                label: Optional[str] = None, positive: Any = None,
                on_chunk: Optional[Callable[[int, int], None]] = None) -> "ScoreReport":
    """Score every row of ``df[column]`` and write the scores back into ``df`` (in place).

    Adds ``into`` (default ``f"{column}_ppl"``: perplexity per row) and ``into`` with ``_ppl`` replaced
    by ``_bits`` (or ``+ "_bits"``: mean surprisal in bits per token). Missing rows get NaN. Existing
    columns are only replaced with ``overwrite=True``. Returns a ScoreReport with the ``top`` most and
    least surprising rows.

    ``baseline=True`` also writes the model's n-gram baseline (``COL_ngram_ppl``) and the LSTM + n-gram
    mixture (``COL_mix_ppl``; for a 'mix' model, the LSTM alone: ``COL_lstm_ppl``): same rows, same
    vocabulary. ``label`` (a boolean column, or any column with ``positive`` naming the positive class;
    rows without a label are left out) adds the ROC AUC of each score for telling the positive rows
    (as the more surprising ones) from the others: ``report.auc``. ``on_chunk(done, total)`` is called
    as the work goes (in rows, all passes counted); an exception it raises stops the run, and nothing has
    been written to ``df`` then.

    >>> report = score_frame(model, df, "text", top=3)     # doctest: +SKIP
    >>> df.sort_values("text_ppl").tail(3)                  # doctest: +SKIP
    """
    from .frames import column_of

    _check_model(model)
    if not hasattr(df, "columns") or not hasattr(df, "index"):
        raise DataError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    series = column_of(df, column)            # missing, duplicated or MultiIndex: a DataError that says so
    column = series.name
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ConfigError(f"top must be a whole number of at least 0, got {top!r}.")
    if into is not None and (not isinstance(into, str) or not into.strip()):
        raise ConfigError(f"into must be a column name (text), got {into!r}.")
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be True or False, got {overwrite!r}.")
    ppl_col = into or f"{column}_ppl"
    stem = ppl_col[:-4] if ppl_col.endswith("_ppl") else ppl_col
    bits_col = stem + "_bits"
    parts = side_parts(model) if baseline else {}
    part_cols = {name: f"{stem}_{name}_ppl" for name in parts}
    y = _binary_labels(df, label, positive) if label is not None else None
    if not overwrite:
        taken = [c for c in (ppl_col, bits_col, *part_cols.values()) if c in df.columns]
        if taken:
            raise ConfigError(f"Column {taken[0]!r} already exists; choose another with --into NAME "
                              f"(into=...) or pass --overwrite (overwrite=True) to replace it.")
    import pandas as pd

    from .display import ScoredRow, ScoreReport

    # Every pass first, then every column: a run stopped from on_chunk (or by Ctrl-C) writes nothing.
    passes = 1 + len(parts)

    def progress_of(k: int) -> Optional[Callable[[int, int], None]]:
        if on_chunk is None:
            return None
        return lambda done, total: on_chunk(k * total + done, passes * total)

    mean = model._row_mean_nll(series, progress=on_chunk is None, on_chunk=progress_of(0))   # chunk by chunk
    part_means = {name: part._row_mean_nll(series, progress=on_chunk is None, on_chunk=progress_of(k + 1))
                  for k, (name, part) in enumerate(parts.items())}
    ppl = pd.Series(np.exp(mean), index=df.index, name=ppl_col)
    bits = pd.Series(mean / math.log(2), index=df.index, name=bits_col)
    df[ppl_col] = ppl.to_numpy()     # by position: an index with duplicate labels must not misalign
    df[bits_col] = bits.to_numpy()
    side = {}
    for name, part_mean in part_means.items():
        side[name] = pd.Series(np.exp(part_mean), index=df.index, name=part_cols[name])
        df[part_cols[name]] = side[name].to_numpy()
    auc: dict = {}
    if y is not None:
        auc[model.kind] = _roc_auc(mean, y)
        auc.update({name: _roc_auc(np.log(s.to_numpy()), y) for name, s in side.items()})
    # Without labels, how far each side score orders the rows as the model does (Spearman; 1 = the same order).
    agreement = {name: _spearman(mean, np.log(s.to_numpy())) for name, s in side.items()}

    def rows(labels_positions: Sequence[int]) -> List[ScoredRow]:
        out = []
        for pos in labels_positions:
            text = str(series.iloc[pos])
            out.append(ScoredRow(df.index[pos], text, float(ppl.iloc[pos]), float(bits.iloc[pos]),
                                 model.surprisal(text), {name: float(s.iloc[pos]) for name, s in side.items()}))
        return out

    valid = np.flatnonzero(np.isfinite(mean))
    order = valid[np.argsort(mean[valid], kind="stable")]   # least surprising first
    n = min(int(top), order.size)
    most = rows(order[::-1][:n]) if n else []
    least = rows(order[:n]) if n else []
    label_text = "" if y is None else (f"{label} == {positive!r}" if positive is not None else str(label))
    return ScoreReport(column, ppl_col, bits_col, ppl, bits, most, least, model_name, model.kind, side, auc,
                       label_text, int(np.count_nonzero(np.isfinite(y))) if y is not None else 0, agreement)


def side_parts(model: LanguageModel) -> dict:
    """The scores that go beside a model's own with baseline=True: its n-gram, and the other LSTM form."""
    if model.kind == "ngram":
        raise ConfigError("This model is an n-gram itself; --baseline (baseline=True) puts an LSTM's n-gram "
                          "beside it: score with an LSTM model.")
    if model.ngram is None:
        raise ConfigError("This model has no n-gram baseline (trained with baseline=False, stripped, or saved by "
                          "an older lm_magics); train it again, or train one with kind='ngram' and score with it.")
    other = "mix" if model.kind == "lstm" else "lstm"
    return {"ngram": model.part("ngram"), other: model.part(other)}


def _binary_labels(df: Any, label: str, positive: Any) -> np.ndarray:
    """1.0 for the positive class, 0.0 for the other, NaN where the label is missing."""
    if label not in df.columns:
        near = ", ".join(repr(c) for c in list(df.columns)[:10])
        raise DataError(f"No label column {label!r} in the DataFrame (columns: {near}).")
    col = df[label]
    present = ~col.isna().to_numpy()
    classes = list(dict.fromkeys(col[present].tolist()))
    if len(classes) > 2:
        shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise DataError(f"Label column {label!r} has {len(classes)} classes ({shown}); ROC AUC compares two: "
                        f"make a two-class column first, e.g. df['is_x'] = df[{label!r}] == {classes[0]!r}.")
    if positive is None:
        if not all(isinstance(c, (bool, np.bool_)) for c in classes):
            raise ConfigError(f"Label column {label!r} is not boolean; name its positive class: --label {label} "
                              f"--positive VALUE (positive=...).")
        match = True
    else:
        hits = [c for c in classes if c == positive or str(c) == str(positive)]
        if not hits:
            raise DataError(f"No row has {label} == {positive!r} (its values: "
                            f"{', '.join(repr(c) for c in classes)}); pick one of them with --positive.")
        match = hits[0]
    y = np.full(len(col), np.nan)
    vals = col.to_numpy()
    y[present] = [1.0 if v == match else 0.0 for v in vals[present]]
    if np.nansum(y) == 0 or np.nansum(y) == np.count_nonzero(present):
        raise DataError(f"Label column {label!r} has rows of one class only; ROC AUC needs both.")
    return y


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv = np.unique(x, return_inverse=True)
    return (np.bincount(inv, weights=ranks) / np.bincount(inv))[inv]


def _spearman(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Spearman rank correlation of a and b over the rows where both are finite (None under 3 rows or
    when one of them is constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    ra, rb = _ranks(np.asarray(a)[ok]), _ranks(np.asarray(b)[ok])
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _roc_auc(scores: np.ndarray, y: np.ndarray) -> Optional[float]:
    """ROC AUC of scores for telling y == 1 (higher score) from y == 0; rows with a NaN left out.
    The Mann-Whitney form: the share of (positive, negative) pairs ranked right, ties counting half."""
    ok = np.isfinite(scores) & np.isfinite(y)
    s, t = np.asarray(scores)[ok], y[ok] == 1
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(s)                                        # tied scores share their mean rank
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------------- explaining a text

def explain(model: LanguageModel, text: str, top: int = 3, k: int = 3, model_name: str = "") -> "Explanation":
    """Per-word surprisal of one text, and what the model expected at its ``top`` most surprising words
    (the ``k`` likeliest words there, with probabilities).

    >>> lm.explain(model, "the cat sat on the river")      # doctest: +SKIP
    6 words: 3.10 bits per word (perplexity 8.6)
      word 6 'river' (7.9 bits); expected: mat 41%, log 12%, door 9%
    """
    from .display import Explanation

    _check_model(model)
    _check_text(text, "text")
    for v, what in ((top, "top"), (k, "k")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{what} must be a whole number of at least 1, got {v!r}.")
    if not text.strip():
        raise DataError("Give a text to explain, e.g. /explain the cat sat on the mat.")
    words = model.surprisal(text)
    # The most surprising positions, each with the words the model expected after everything before it.
    order = sorted(range(len(words)), key=lambda i: -words[i][1])[: int(top)]
    shown = [w for w, _ in words]
    # include_special: where the model expected the line to end, the end of line is what it expected.
    alternatives = [(i, words[i][0], words[i][1],
                     model.next_words(model.tokenizer.join(shown[:i]), int(k), include_special=True))
                    for i in order]
    return Explanation(text, words, alternatives, model_name)


# ---------------------------------------------------------------------------------------------- comparing groups

_SMOOTH = 0.5    # add-1/2 smoothing of word counts: an unseen word gets half a count, never probability 0


def compare_groups(df: Any, column: str, by: str, model: Optional[LanguageModel] = None, *, min_rows: int = 5,
                   top_words: int = 5, model_name: str = "",
                   on_chunk: Optional[Callable[[int, int], None]] = None) -> "GroupComparison":
    """Which groups of rows (``df[by]``) have the most unusual text (``df[column]``), and the words that
    characterise each group.

    Every row is scored once: with ``model`` (mean bits per word under the LSTM), or without one with the
    word counts of the whole column (a unigram model, add-1/2 smoothed: quick for any number of groups).
    A group's ``excess_bits`` is its rows' mean bits per word minus that of all other rows; when the model
    has an n-gram baseline, ``ngram_excess_bits`` is the same under it (so you see whether the two agree). Its
    characteristic words are those most frequent in the group relative to the rest (smoothed log2 ratio
    of the two frequencies; words seen at least twice in the group). Groups with fewer than ``min_rows``
    rows are listed in ``.too_small`` instead. Works on pandas and polars frames.

    >>> result = lm.compare_groups(reviews, "text", by="product")      # doctest: +SKIP
    >>> result.table.head(3)                                            # doctest: +SKIP
    """
    from collections import Counter

    from .display import GroupComparison
    from .frames import _check_text as check_column, column_of
    import pandas as pd

    if not hasattr(df, "columns"):
        raise DataError(f"Expected a DataFrame, got {type(df).__name__}.")
    if model is not None and not isinstance(model, LanguageModel):
        raise ConfigError(f"model must be a LanguageModel or None, got {type(model).__name__}.")
    for v, what, low in ((min_rows, "min_rows", 1), (top_words, "top_words", 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{what} must be a whole number of at least {low}, got {v!r}.")
    text_col = column_of(df, column)
    check_column(text_col, f"Column '{column}'", df)
    group_col = column_of(df, by)
    if by == column:
        raise DataError(f"Group by another column than the text itself ('{column}').")

    from .engine.data import _is_missing

    texts, groups = text_col.to_list(), group_col.to_list()
    keep = [i for i, (t, g) in enumerate(zip(texts, groups)) if isinstance(t, str) and t.strip()
            and not _is_missing(g)]
    texts, groups = [texts[i] for i in keep], [groups[i] for i in keep]
    skipped = len(text_col) - len(keep)

    tok = model.tokenizer if model is not None else Tokenizer("word", lowercase=True)
    tokens = [tok.tokenize(t) for t in texts]
    counts = Counter(w for row in tokens for w in row)
    total, vocab = sum(counts.values()), len(counts) + 1          # + 1: room for a word never seen
    passes = 1 + int(model is not None and model.kind != "ngram" and model.ngram is not None)

    def row_bits(m: LanguageModel, k: int) -> np.ndarray:
        # Packed passes chunk by chunk (flat memory); on_chunk hears (rows done, rows in all passes).
        report = None if on_chunk is None else (lambda done, n: on_chunk(k * n + done, passes * n))
        return m._row_mean_nll(texts, progress=on_chunk is None, on_chunk=report) / math.log(2)

    base_bits = None
    if model is not None:
        bits = row_bits(model, 0)
        used = model_name or "the LSTM model"
        used = f"'{used}'" if model_name else used
        if passes == 2:
            base_bits = row_bits(model.baseline, 1)               # the n-gram beside it: which to trust
    else:
        logp = {w: math.log2((c + _SMOOTH) / (total + _SMOOTH * vocab)) for w, c in counts.items()}
        bits = np.array([-np.mean([logp[w] for w in row]) if row else np.nan for row in tokens])
        used = "word counts of the column (unigram, add-1/2)"

    by_group: dict = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    too_small = {g: len(ix) for g, ix in sorted(by_group.items(), key=lambda kv: str(kv[0])) if len(ix) < min_rows}
    compared = {g: ix for g, ix in by_group.items() if len(ix) >= min_rows}
    if len(compared) < 2:
        raise DataError(f"Only {len(compared)} group(s) of '{by}' have at least {min_rows} rows of text "
                        f"({len(by_group)} groups in all); pass a smaller min_rows (--min-rows) or group by "
                        f"another column.")
    def excess(values: np.ndarray, ix: List[int]) -> Tuple[float, float]:
        """Mean of values over the group's rows, and that over all other rows."""
        finite = np.isfinite(values)
        b = values[ix]
        b = b[np.isfinite(b)]
        rest_n = int(finite.sum()) - b.size
        mean = float(b.mean()) if b.size else float("nan")
        return mean, (float(values[finite].sum()) - float(b.sum())) / rest_n if rest_n else float("nan")

    rows = []
    for g, ix in compared.items():
        mean, rest = excess(bits, ix)
        own = Counter(w for i in ix for w in tokens[i])
        n_g = sum(own.values())
        n_r = total - n_g
        ratio = {w: math.log2((c + _SMOOTH) / (n_g + _SMOOTH * vocab))
                 - math.log2((counts[w] - c + _SMOOTH) / (n_r + _SMOOTH * vocab))
                 for w, c in own.items() if c >= 2 and any(ch.isalnum() for ch in w)}
        # Only words more frequent here than in the rest characterise the group.
        words = [w for w, r in sorted(ratio.items(), key=lambda kv: (-kv[1], kv[0])) if r > 0][: int(top_words)]
        base = [] if base_bits is None else [float(np.subtract(*excess(base_bits, ix)))]
        rows.append((g, len(ix), mean, rest, mean - rest, words, *base))
    rows.sort(key=lambda r: (-r[4] if math.isfinite(r[4]) else math.inf, str(r[0])))
    columns = ["rows", "bits", "rest_bits", "excess_bits", "words"] + ([] if base_bits is None else
                                                                       ["ngram_excess_bits"])
    table = pd.DataFrame([r[1:] for r in rows], columns=columns, index=pd.Index([r[0] for r in rows], name=by))
    agreement = (None if base_bits is None else
                 _spearman(table["excess_bits"].to_numpy(float), table["ngram_excess_bits"].to_numpy(float)))
    return GroupComparison(column, by, table, too_small, int(min_rows), used, skipped, agreement)


# ---------------------------------------------------------------------------------------------- checks

def _check_text(s: Any, what: str) -> None:
    if not isinstance(s, str):
        raise DataError(f"{what} must be text (str), got {type(s).__name__}.")


def _check_model(model: Any) -> None:
    if not isinstance(model, LanguageModel):
        raise ConfigError(f"model must be a LanguageModel (from lm.train or lm.load), got {type(model).__name__}.")
