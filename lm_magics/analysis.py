"""The analysis layer: scoring a column (``score_frame``), explaining a text (``explain``) and comparing
groups of rows (``compare_groups``), over the models of ``api``.

Front-ends (magics, the chat, the CLI, ``dask``, ``spark``) call these; they call ``LanguageModel``'s public
methods. ``score_batch`` is the one per-row scoring function: a pandas frame, a Dask partition and a Spark
Arrow batch all get their new columns from it::

    import lm_magics as lm
    report = lm.score_frame(model, df, "text")          # writes text_ppl, text_bits, ...
    lm.explain(model, "the cat sat on the river")
    lm.compare_groups(df, "text", by="product")
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .api import check_model, check_text, LanguageModel
from .engine.novelty import TOP_K_TOKENS
from .engine.tokenizer import Tokenizer
from .errors import ConfigError, DataError
from .rules import MAX_ROWS, clip_text

if TYPE_CHECKING:
    from .display import Explanation, GroupComparison, ScoreReport

__all__ = ["score_frame", "explain", "compare_groups", "side_parts", "available_signals", "combined", "training_note",
           "score_notes", "copied_rows", "fighting_words", "row_scores", "SIGNAL_CHOICES", "SIGNAL_NAMES",
           "ROW_SCORES", "score_batch", "score_columns"]

# ---------------------------------------------------------------------------------------------- scoring a frame

def score_columns(column: Any, into: Optional[str] = None) -> Tuple[str, str, str]:
    """The names of the columns scoring ``column`` writes: (perplexity, bits per token, unusualness), by
    default ``COL_ppl``, ``COL_bits`` and ``COL_unusual``; ``into`` names the first, and the others are
    ``into`` with ``_ppl`` replaced by ``_bits`` and ``_unusual`` (or with those appended)."""
    if into is not None and (not isinstance(into, str) or not into.strip()):
        raise ConfigError(f"into must be a column name (text), got {into!r}.")
    ppl_col = into or f"{column}_ppl"
    stem = ppl_col[:-4] if ppl_col.endswith("_ppl") else ppl_col
    return ppl_col, stem + "_bits", stem + "_unusual"


def score_batch(model: LanguageModel, texts: Any, column: Any = "text", into: Optional[str] = None, *,
                progress: bool = False, on_chunk: Optional[Callable[[int, int], None]] = None) -> Any:
    """The new columns that scoring writes for one batch of rows, as a pandas DataFrame (one row per
    text, the input's index for a Series): perplexity, bits per token and the unusualness score, named by
    :func:`score_columns` (``COL_ppl``, ``COL_bits``, ``COL_unusual``); NaN for a missing row.

    The one per-row scoring function of every path: ``score_frame`` (pandas), the Dask partitions of
    ``lm_magics.dask`` and the Arrow batches of ``lm_magics.spark`` all call it, so they write the same
    columns with the same numbers.

    >>> score_batch(model, pd.Series(["the cat sat", None]), "text")       # doctest: +SKIP
       text_ppl  text_bits
    0     12.3       3.62
    1      NaN        NaN
    """
    import pandas as pd

    _check_model(model)
    ppl_col, bits_col, unusual_col = score_columns(column, into)
    sig = model.signals(texts, progress=progress, on_chunk=on_chunk)    # chunk by chunk
    unusual, _ = combined(model, sig)
    index = texts.index if type(texts).__module__.startswith("pandas") and hasattr(texts, "index") else None
    bits = np.asarray(sig["bits"], dtype=np.float64)
    return pd.DataFrame({ppl_col: np.exp2(bits), bits_col: bits, unusual_col: np.asarray(unusual, np.float64)},
                        index=index)


SIGNAL_CHOICES = ("unusual", "ppl", "max", "topk", "unseen", "ngram", "knn", "all")
# What each signal is, for notes and help texts.
SIGNAL_NAMES = {"ppl": "mean surprisal", "max": "most surprising word", "topk": f"top-{TOP_K_TOKENS} words",
                "unseen": "unseen words", "ngram": "n-gram baseline", "knn": "distance to the nearest usual rows"}
SIGNAL_UNITS = {"ppl": "bits per token", "max": "bits", "topk": "bits", "unseen": "bits per token",
                "ngram": "bits per token", "knn": "cosine distance"}
COPIED_SHARE = 0.8       # a row whose token runs are at least this much training text counts as a copy
NEAR_COPY_DISTANCE = 0.05   # ... and so does one this close (cosine distance) to an indexed training row
# Best validation perplexity at least this share of the unigram's: learned little (a trained LSTM is usually at
# 0.3-0.6 of it; one stopped early at 0.85-1, where every position expects the same few frequent words).
LEARNED_LITTLE = 0.8


def score_frame(model: LanguageModel, df: Any, column: str, into: Optional[str] = None,
                overwrite: bool = False, top: int = 5, model_name: str = "", *, baseline: bool = False,
                label: Optional[str] = None, positive: Any = None, signal: str = "unusual",
                on_chunk: Optional[Callable[[int, int], None]] = None) -> "ScoreReport":
    """Score every row of ``df[column]`` and write the scores back into ``df`` (in place).

    Adds ``into`` (default ``f"{column}_ppl"``: perplexity per row), ``into`` with ``_ppl`` replaced by
    ``_bits`` (or ``+ "_bits"``: mean surprisal in bits per token) and by ``_unusual``: the **unusualness**,
    one number per row, higher = more unusual. It combines signals that each catch what the others miss:

    * ``ppl`` the mean surprisal per token, ``max`` that of the most surprising word, ``topk`` the mean of
      the 3 most surprising (a row normal but for one odd word stands out in ``max``);
    * ``unseen``: words the model never saw count as new words (``-log2 p_new`` plus the bits of their
      spelling under a character model of the vocabulary), not as the ``<unk>`` learned from rare words;
    * ``ngram``: the model's n-gram baseline (interpolated Kneser-Ney over the same rows), its own bits per
      token (an unseen word is the ``unseen`` signal's, not counted twice);
    * ``knn``: the mean cosine distance to the 5 nearest training rows (TF-IDF of hashed character
      3-5-grams over at most 2,000 rows kept in the model file: catches rows made of odd characters,
      numbers and formats that a word model reads as ``<unk>``).

    Each signal is turned into its percentile among the validation rows (quantiles stored in the model
    file), so no scale dominates; the default rule (``model.unusualness.calibration.rule``) pools them as
    their weighted mean, one vote per family of signals (``ppl`` and ``max`` share the LSTM's). A model file without some of them (older, or stripped of the neighbour
    index) combines the ones it has, and the report says which were left out.

    ``signal`` ranks the report's rows by one signal instead and writes its column ``STEM_<signal>``
    (``"all"``: every signal's column; ``"ppl"``: the perplexity column itself). Missing rows get NaN.
    Existing columns are only replaced with ``overwrite=True``. Returns a ScoreReport with the ``top``
    most and least unusual rows, each with the signal that made it stand out.

    ``baseline=True`` also writes the model's n-gram baseline (``COL_ngram_ppl``) and the LSTM + n-gram
    mixture (``COL_mix_ppl``; for a 'mix' model, the LSTM alone: ``COL_lstm_ppl``): same rows, same
    vocabulary. ``label`` (a boolean column, or any column with ``positive`` naming the positive class;
    rows without a label are left out) adds the ROC AUC of each score for telling the positive rows
    (as the more unusual ones) from the others: ``report.auc``. ``on_chunk(done, total)`` is called
    as the work goes (in rows, all passes counted); an exception it raises stops the run, and nothing has
    been written to ``df`` then.

    Cost: one pass of the model (as for perplexity alone), a vectorised n-gram pass, and a chunked exact
    nearest-neighbour search against the (at most 2,000) indexed rows: about as long again as perplexity.
    ``baseline=True`` on an LSTM model adds nothing but arithmetic (the n-gram and mixture columns come
    from the same per-token values); on a 'mix' model, another pass for the LSTM alone.

    >>> report = score_frame(model, df, "text", top=3)     # doctest: +SKIP
    >>> df.sort_values("text_unusual").tail(3)              # doctest: +SKIP
    """
    from .frames import column_of

    _check_model(model)
    if not hasattr(df, "columns") or not hasattr(df, "index"):
        if type(df).__module__.split(".")[0] == "polars":
            raise DataError("score_frame writes columns into a pandas DataFrame, and this is a polars DataFrame; "
                            "pass df.to_pandas() (and keep the result), or score a column with model.score(...).")
        raise DataError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    series = column_of(df, column)            # missing, duplicated or MultiIndex: a DataError that says so
    column = series.name
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ConfigError(f"top must be a whole number of at least 0, got {top!r}.")
    ppl_col, bits_col, unusual_col = score_columns(column, into)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be True or False, got {overwrite!r}.")
    if signal not in SIGNAL_CHOICES:
        raise ConfigError(f"signal must be one of {', '.join(SIGNAL_CHOICES)}; got {signal!r}.")
    stem = ppl_col[:-4] if ppl_col.endswith("_ppl") else ppl_col
    parts = side_parts(model) if baseline else {}
    part_cols = {name: f"{stem}_{name}_ppl" for name in parts}
    available = available_signals(model)
    if signal not in ("unusual", "all", "ppl") and signal not in available:
        raise ConfigError(f"This model has no {signal!r} signal ({why_missing(model, signal)}); its signals: "
                          f"{', '.join(available)}.")
    shown = [s for s in available if s != "ppl"] if signal == "all" else (
        [] if signal in ("unusual", "ppl") else [signal])
    signal_cols = {name: f"{stem}_{name}" for name in shown}
    written = (ppl_col, bits_col, unusual_col, *part_cols.values(), *signal_cols.values())
    clash = [c for c in written if c and c in (column, label)]
    if clash:   # a target that is also an input: --overwrite would replace the text (or the labels) itself
        raise ConfigError(f"The score column {clash[0]!r} is also the {'text' if clash[0] == column else 'label'} "
                          f"column; give another with --into NAME (into=...).")
    y = _binary_labels(df, label, positive) if label is not None else None
    if not overwrite:
        taken = [c for c in (ppl_col, bits_col, unusual_col, *part_cols.values(), *signal_cols.values())
                 if c in df.columns]
        if taken:
            raise ConfigError(f"Column {taken[0]!r} already exists; choose another with --into NAME "
                              f"(into=...) or pass --overwrite (overwrite=True) to replace it.")
    import pandas as pd

    from .display import ScoreReport

    # Every pass first, then every column: a run stopped from on_chunk (or by Ctrl-C) writes nothing. An
    # LSTM model's n-gram and mixture columns come from its own pass (the same per-token values).
    from_pass = bool(parts) and model.kind == "lstm"
    passes = 1 + (0 if from_pass else len(parts))

    def progress_of(k: int) -> Optional[Callable[[int, int], None]]:
        if on_chunk is None:
            return None
        return lambda done, total: on_chunk(k * total + done, passes * total)

    sig = model.signals(series, progress=on_chunk is None, on_chunk=progress_of(0), sides=from_pass)
    part_means = {name: sig[f"{name}_nats"] for name in parts} if from_pass else \
        {name: part.row_mean_nll(series, progress=on_chunk is None, on_chunk=progress_of(k + 1))
         for k, (name, part) in enumerate(parts.items())}
    mean_bits = sig["bits"]
    unusual, used = combined(model, sig)
    ppl = pd.Series(np.exp2(mean_bits), index=df.index, name=ppl_col)
    bits = pd.Series(mean_bits, index=df.index, name=bits_col)
    unusual_s = pd.Series(unusual, index=df.index, name=unusual_col)
    df[ppl_col] = ppl.to_numpy()     # by position: an index with duplicate labels must not misalign
    df[bits_col] = bits.to_numpy()
    df[unusual_col] = unusual_s.to_numpy()
    signal_series = {}
    for name, col in signal_cols.items():
        signal_series[name] = pd.Series(sig[name], index=df.index, name=col)
        df[col] = signal_series[name].to_numpy()
    side = {}
    for name, part_mean in part_means.items():
        side[name] = pd.Series(np.exp(part_mean), index=df.index, name=part_cols[name])
        df[part_cols[name]] = side[name].to_numpy()
    auc: dict = {}
    if y is not None:
        auc["unusual"] = _roc_auc(unusual, y)
        auc[model.kind] = _roc_auc(mean_bits, y)
        auc.update({name: _roc_auc(np.log(s.to_numpy()), y) for name, s in side.items()})
        auc.update({f"signal:{name}": _roc_auc(sig[name], y) for name in shown})
    # Without labels, how far each side score orders the rows as the model does (Spearman; 1 = the same order).
    agreement = {name: _spearman(mean_bits, np.log(s.to_numpy())) for name, s in side.items()}

    rank_by = {"unusual": unusual, "all": unusual, "ppl": mean_bits}.get(signal, sig.get(signal))
    valid = np.flatnonzero(np.isfinite(rank_by))
    order = valid[np.argsort(rank_by[valid], kind="stable")]   # least unusual first
    # The report holds (and shows) at most MAX_ROWS rows each way, whatever top asks: every row's score
    # is in the frame's columns.
    n = min(int(top), order.size, MAX_ROWS)
    notes = [f"top={int(top):,}: the report holds the {MAX_ROWS} most and least unusual rows "
             f"({min(int(top), order.size) - n:,} more each way not shown); every row's score is in "
             f"'{unusual_col or ppl_col}'"] if n < min(int(top), order.size) else []
    texts = series.to_numpy()
    most = scored_rows(model, sig, order[::-1][:n], df.index, texts, side) if n else []
    least = scored_rows(model, sig, order[:n], df.index, texts, side) if n else []
    label_text = "" if y is None else (f"{label} == {positive!r}" if positive is not None else str(label))
    return ScoreReport(column, ppl_col, bits_col, ppl, bits, most, least, model_name, model.kind, side, auc,
                       label_text, int(np.count_nonzero(np.isfinite(y))) if y is not None else 0, agreement,
                       unusual=unusual_s, unusual_column=unusual_col, signal=signal, signals=signal_series,
                       used=used, notes=notes + score_notes(model, sig, used))


# What row_scores (and the Dask path) can compute per row.
ROW_SCORES = ("perplexity", "bits", "unusual", "max", "topk", "unseen", "ngram", "knn")


def row_scores(model: LanguageModel, texts: Any, what: str = "unusual") -> np.ndarray:
    """One number per row (NaN for a missing one): ``"perplexity"``, ``"bits"``, ``"unusual"`` (as
    ``COL_unusual`` of score_frame) or one signal's value. What ``lm_magics.dask`` runs on each partition."""
    _check_model(model)
    if what not in ROW_SCORES:
        raise ConfigError(f"what must be one of {', '.join(ROW_SCORES)}; got {what!r}.")
    if what in ("perplexity", "bits"):
        mean = model.row_mean_nll(texts, progress=False)
        return np.exp(mean) if what == "perplexity" else mean / math.log(2)
    if what not in ("unusual",) and what not in available_signals(model):
        raise ConfigError(f"This model has no {what!r} signal ({why_missing(model, what)}).")
    sig = model.signals(texts, progress=False)
    return combined(model, sig)[0] if what == "unusual" else sig[what]


# ---------------------------------------------------------------------------------------------- signals and notes

def available_signals(model: LanguageModel) -> List[str]:
    """The signals this model can compute (SIGNALS order): every one but the n-gram's for a model without
    a baseline or one that is an n-gram, and the distance without a neighbour index."""
    out = ["ppl", "max", "topk", "unseen"]
    if model.kind != "ngram" and model.ngram is not None:
        out.append("ngram")
    if model.neighbours is not None:
        out.append("knn")
    return out


def why_missing(model: LanguageModel, name: str) -> str:
    """Why a signal is not there, in a few words."""
    if name == "ngram":
        return ("an n-gram model is its own baseline: its 'ppl' is the n-gram" if model.kind == "ngram" else
                "it has no n-gram baseline (trained with baseline=False, or stripped with baseline=True)")
    if name == "knn":
        return ("its nearest-usual-row index was dropped by strip(), or it was saved by an older lm_magics"
                if model.unusualness is not None else "it was saved by an older lm_magics")
    return "unknown signal"


def combined(model: LanguageModel, sig: dict) -> Tuple[np.ndarray, List[str]]:
    """The unusual score from a model's row signals, and the signals it combined. A model without a
    calibration (a file saved by an older lm_magics) gives its mean bits per token."""
    cal = model.unusualness.calibration if model.unusualness is not None else None
    if cal is None:
        return sig["bits"], []
    present = {k: sig[k] for k in cal.signals if k in sig}
    score, used = cal.combine(present)
    return (score, used) if used else (sig["bits"], [])


def training_note(model: LanguageModel) -> str:
    """A note when the model has learned little beyond word frequencies: its best validation perplexity is
    at least LEARNED_LITTLE of the unigram's (training stopped early). "" otherwise, and when unknown.
    The one helper behind the note in /explain, /unusual, %lm_score and the panel."""
    if not isinstance(model, LanguageModel) or model.kind == "ngram":
        return ""
    u = model.unusualness
    val, uni = model.meta.get("val_ppl"), (u.unigram_val_ppl if u is not None else None)
    if not isinstance(val, (int, float)) or not uni or not math.isfinite(val) or val < LEARNED_LITTLE * uni:
        return ""
    return (f"this model has learned little beyond word frequencies (validation perplexity {val:,.1f}, word "
            f"frequencies alone {uni:,.1f}): its word-by-word surprisal and expected words say little more than "
            f"how common each word is; train it longer (more epochs or a larger max_time) or on more text")


def copied_rows(sig: dict) -> np.ndarray:
    """Rows that are (near) copies of training rows: most of their token runs are training text, or they
    are within NEAR_COPY_DISTANCE of an indexed training row."""
    n = len(sig["bits"])
    out = np.zeros(n, bool)
    if "copied" in sig:
        out |= np.nan_to_num(sig["copied"], nan=0.0) >= COPIED_SHARE
    if "nearest_dist" in sig:
        out |= np.nan_to_num(sig["nearest_dist"], nan=1.0) <= NEAR_COPY_DISTANCE
    return out


def score_notes(model: LanguageModel, sig: dict, used: List[str]) -> List[str]:
    """The honest notes beside a column's scores: rows that were training text, a model that learned
    little, signals left out of the unusual score."""
    notes = []
    copies = int(copied_rows(sig).sum())
    if copies:
        notes.append(f"{copies:,} of these rows were in the training text (or nearly): their scores are lower "
                     f"than new rows would get; score rows held out from training to find the unusual ones")
    note = training_note(model)
    if note:
        notes.append(note)
    cal = model.unusualness.calibration if model.unusualness is not None else None
    if cal is None:
        notes.append("this model file has no calibration (saved by an older lm_magics): the unusual score is its "
                     "mean surprisal in bits per token; train it again for the combined score")
    else:
        left = [s for s in cal.combine_signals if s not in used]
        if left:
            notes.append("left out of the unusual score: " + "; ".join(f"{s} ({why_missing(model, s)})"
                                                                      for s in left))
    return notes


def _reason(model: LanguageModel, sig: dict, pos: int, text: str) -> Tuple[str, dict]:
    """(why the row stands out, {signal: percentile among the validation rows}) for row ``pos``."""
    cal = model.unusualness.calibration if model.unusualness is not None else None
    pct = {}
    if cal is not None:
        pct = {s: float(cal.percentile(s, np.array([sig[s][pos]]))[0]) for s in cal.signals if s in sig}
    if bool(copied_rows({k: v[pos:pos + 1] for k, v in sig.items()})[0]):
        return "a (near) copy of a training row", pct
    if not pct:
        return "", pct
    combined_names = [s for s in cal.combine_signals if s in pct and math.isfinite(pct[s])]
    if not combined_names:
        return "", pct
    top = max(combined_names, key=lambda s: pct[s])
    # Several signals past the 99th percentile: name them all (which of them is "the" one is noise).
    strong = [s for s in combined_names if pct[s] >= 0.99]
    if len(strong) >= 2:
        names = "every signal" if len(strong) == len(combined_names) else ", ".join(SIGNAL_NAMES[s] for s in strong)
        what = f"{names} (each above 99% of validation rows)"
    elif pct[top] < 0.9:
        return (f"nothing stands out: its highest signal is the {SIGNAL_NAMES[top]} (above "
                f"{math.floor(100 * pct[top])}% of validation rows)"), pct
    else:
        what = f"{SIGNAL_NAMES[top]} (above {math.floor(100 * pct[top])}% of validation rows)"
    details = []
    if top in ("max", "topk", "ppl") or len(strong) >= 2:
        words = sorted(model.surprisal(text), key=lambda wb: -wb[1])[:2]
        if words:
            details.append("most surprising: " + ", ".join(f"{w!r} {b:.1f} bits" for w, b in words))
    if "unseen" in ([top] + strong) and sig["unseen_words"][pos] > 0:
        details.append(f"{int(sig['unseen_words'][pos])} unseen word(s)")
    if "knn" in ([top] + strong) and "knn" in sig and math.isfinite(sig["knn"][pos]):
        details.append(f"distance {sig['knn'][pos]:.2f} to the nearest usual rows")
    return what + (f": {'; '.join(details)}" if details else ""), pct


def scored_rows(model: LanguageModel, sig: dict, positions: Sequence[int], index: Any, texts: Any,
                side: dict) -> List[Any]:
    """The report's rows: scores, per-word surprisal and why each stands out."""
    from .display import ScoredRow

    out = []
    for pos in positions:
        text = str(texts[pos])
        why, pct = _reason(model, sig, int(pos), text)
        nearest = ""
        if model.neighbours is not None and sig.get("nearest") is not None and sig["nearest"][pos] >= 0:
            nearest = model.neighbours.texts[int(sig["nearest"][pos])]
        bits = float(sig["bits"][pos])
        out.append(ScoredRow(index[pos], text, float(2 ** bits), bits, model.surprisal(text),
                             {name: float(s.iloc[pos]) for name, s in side.items()},
                             unusual=float(combined(model, {k: v[pos:pos + 1] for k, v in sig.items()})[0][0]),
                             why=why, percentiles=pct, nearest=nearest,
                             nearest_dist=float(sig["nearest_dist"][pos]) if "nearest_dist" in sig else float("nan")))
    return out


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
    from .frames import check_hashable

    col = df[label]
    present = ~col.isna().to_numpy()
    check_hashable(col[present].tolist(), f"Label column {label!r}")
    classes = list(dict.fromkeys(col[present].tolist()))
    if len(classes) > 2:
        shown = ", ".join(clip_text(c, 30) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        make = (f"df = df.with_columns((pl.col({label!r}) == {clip_text(classes[0], 30)}).alias('is_x'))"
                if type(df).__module__.startswith("polars") else
                f"df['is_x'] = df[{label!r}] == {clip_text(classes[0], 30)}")
        raise DataError(f"Label column {label!r} has {len(classes):,} classes ({shown}); ROC AUC compares two: "
                        f"make a two-class column first, e.g. {make}.")
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
    """Why a text is unusual: per-word surprisal and what the model expected at its ``top`` most surprising
    words (the ``k`` likeliest words there, with probabilities); its unseen words (with their novelty
    bits); its nearest usual row with the distance; its unusualness with each signal's percentile among
    the validation rows, and the one that stands out most. A text that is (nearly) a training row says so.

    >>> lm.explain(model, "the cat sat on the river")      # doctest: +SKIP
    6 words: 3.10 bits per word (perplexity 8.6); unusual 1.52, most of all: most surprising word ...
      word 6 'river' (7.9 bits); expected: mat 41%, log 12%, door 9%
    """
    from .display import Explanation

    _check_model(model)
    _check_text(text, "text")
    for v, what in ((top, "top"), (k, "k")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{what} must be a whole number of at least 1, got {v!r}.")
    if not text.strip():
        raise DataError("Give a text to explain, e.g. lm.explain(model, 'the cat sat on the mat') "
                        "(%lm_explain the cat sat on the mat; /explain the cat sat on the mat in the chat).")
    asked = int(top)
    top, k = min(int(top), MAX_ROWS), min(int(k), MAX_ROWS)     # what an explanation shows is bounded
    words = model.surprisal(text)
    cut = min(asked, len(words)) - top
    # The most surprising positions, each with the words the model expected after everything before it.
    order = sorted(range(len(words)), key=lambda i: -words[i][1])[: int(top)]
    shown = [w for w, _ in words]
    # include_special: where the model expected the line to end, the end of line is what it expected.
    alternatives = [(i, words[i][0], words[i][1],
                     model.next_words(model.tokenizer.join(shown[:i]), int(k), include_special=True))
                    for i in order]
    sig = model.signals([text], progress=False)
    why, pct = _reason(model, sig, 0, text)
    line = " ".join(text.splitlines())
    ids = model.tokenizer.encode_line(line, eos=False)
    toks = model.tokenizer.tokenize(line)
    new = [toks[i] for i, t in enumerate(ids) if t == model.tokenizer.unk_id] if len(toks) == len(ids) else []
    spelling = model.unusualness.spelling if model.unusualness is not None else None
    unseen = list(zip(new, spelling.novelty_bits(new).tolist())) if new and spelling is not None else \
        [(w, float("nan")) for w in new]
    nearest, dist = "", float("nan")
    if model.neighbours is not None and sig.get("nearest") is not None and sig["nearest"][0] >= 0:
        nearest, dist = model.neighbours.texts[int(sig["nearest"][0])], float(sig["nearest_dist"][0])
    notes = [n for n in [training_note(model)] if n]
    if cut > 0:
        notes.append(f"alternatives at the {top} most surprising words ({cut:,} more not shown)")
    copied = bool(copied_rows(sig)[0])
    unusual = float(combined(model, sig)[0][0]) if model.unusualness is not None else float("nan")
    return Explanation(text, words, alternatives, model_name, unusual=unusual, why=why, percentiles=pct,
                       unseen=unseen, nearest=nearest, nearest_dist=dist, copied=copied, notes=notes)


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
    characteristic words (``words``, with their z-scores in ``word_z``) are ranked by the log-odds ratio of
    the group against the rest with an informative Dirichlet prior, divided by its standard deviation
    (Monroe, Colaresi & Quinn 2008, "Fightin' Words"; the prior is the whole column's word counts), so a
    frequent word used far more in the group beats a word seen twice in it. Words are lowercased
    whether or not a model scores the rows. Groups with fewer than ``min_rows`` rows are listed in
    ``.too_small`` instead. Works on pandas and polars frames.

    >>> result = lm.compare_groups(reviews, "text", by="product")      # doctest: +SKIP
    >>> result.table.head(3)                                            # doctest: +SKIP
    """
    from collections import Counter

    from .display import GroupComparison
    from .frames import check_text_values as check_column, column_of
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

    from .engine.data import is_missing as _is_missing

    texts, groups = text_col.to_list(), group_col.to_list()
    from .frames import check_hashable

    check_hashable([g for g in groups if not _is_missing(g)], f"Group column {by!r}")
    keep = [i for i, (t, g) in enumerate(zip(texts, groups)) if isinstance(t, str) and t.strip()
            and not _is_missing(g)]
    texts, groups = [texts[i] for i in keep], [groups[i] for i in keep]
    skipped = len(text_col) - len(keep)

    # Words for counting, the same with or without a model: word level, lowercased.
    tokens = [Tokenizer("word", lowercase=True).tokenize(t) for t in texts]
    counts = Counter(w for row in tokens for w in row)
    total, vocab = sum(counts.values()), len(counts) + 1          # + 1: room for a word never seen
    passes = 1 + int(model is not None and model.kind != "ngram" and model.ngram is not None)

    def row_bits(m: LanguageModel, k: int) -> np.ndarray:
        # Packed passes chunk by chunk (flat memory); on_chunk hears (rows done, rows in all passes).
        report = None if on_chunk is None else (lambda done, n: on_chunk(k * n + done, passes * n))
        return m.row_mean_nll(texts, progress=on_chunk is None, on_chunk=report) / math.log(2)

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
        ranked = fighting_words(own, counts, total)
        # Only words used more here than in the rest characterise the group.
        top_z = [(w, z) for w, z in ranked if z > 0 and any(ch.isalnum() for ch in w)][: int(top_words)]
        base = [] if base_bits is None else [float(np.subtract(*excess(base_bits, ix)))]
        rows.append((g, len(ix), mean, rest, mean - rest, [w for w, _ in top_z], [round(z, 2) for _, z in top_z],
                     *base))
    rows.sort(key=lambda r: (-r[4] if math.isfinite(r[4]) else math.inf, str(r[0])))
    columns = ["rows", "bits", "rest_bits", "excess_bits", "words", "word_z"] + ([] if base_bits is None else
                                                                                 ["ngram_excess_bits"])
    table = pd.DataFrame([r[1:] for r in rows], columns=columns, index=pd.Index([r[0] for r in rows], name=by))
    agreement = (None if base_bits is None else
                 _spearman(table["excess_bits"].to_numpy(float), table["ngram_excess_bits"].to_numpy(float)))
    return GroupComparison(column, by, table, too_small, int(min_rows), used, skipped, agreement)


def fighting_words(group: dict, column: dict, total: int) -> List[Tuple[str, float]]:
    """The words of a group ranked by their z-scored log-odds against the rest of the column, with the
    column's counts as an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, eq. 16-22)::

        d_w = log((y_w + a_w) / (n + a0 - y_w - a_w)) - log((r_w + a_w) / (m + a0 - r_w - a_w))
        z_w = d_w / sqrt(1 / (y_w + a_w) + 1 / (r_w + a_w))          a_w = column count of w, a0 = their sum

    y: the group's counts (n in all), r: the rest's (m). Returns [(word, z)], highest z first (ties by word).
    """
    words = list(group)
    if not words:
        return []
    y = np.array([group[w] for w in words], dtype=np.float64)
    a = np.array([column[w] for w in words], dtype=np.float64)
    r = a - y
    n = float(y.sum())
    m = float(total) - n
    a0 = float(total)
    d = np.log((y + a) / (n + a0 - y - a)) - np.log((r + a) / (m + a0 - r - a))
    z = d / np.sqrt(1.0 / (y + a) + 1.0 / (r + a))
    order = sorted(range(len(words)), key=lambda i: (-z[i], words[i]))
    return [(words[i], float(z[i])) for i in order]


# ---------------------------------------------------------------------------------------------- checks

_check_text, _check_model = check_text, check_model     # the API's own checks, one message each
