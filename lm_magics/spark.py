"""Text columns that live in Spark: score, compare and train without collecting the rows.

    from lm_magics.spark import score_spark

    sdf = spark.read.parquet("messages/")
    scored = score_spark(sdf, "text", model)          # lazy: + text_ppl, text_bits (doubles)
    scored.write.parquet("scored/")

Install the extra with ``pip install 'lm-magics[spark]'`` (pyspark and pyarrow); the executors need
lm_magics, torch and pyarrow too. Scoring runs on the executors with ``mapInPandas``: Arrow batches of
rows go to each Python worker, which scores them with ``lm_magics.api.score_batch`` (the function behind
``%lm_score`` on pandas and the Dask path, so the columns and numbers are the same). The model travels
once, as its file's bytes in a broadcast variable; each Python worker loads it once and keeps it, keyed
by a hash of those bytes, and scores with one torch thread per task (Spark runs a task per core).

The magics use the rest of this module: ``%lm_score --df sdf`` (:func:`score_report`: the scored frame
and a report that collects only the rows it shows), ``%lm_compare --df sdf --by g``
(:func:`compare_groups_spark`: aggregated on the executors, only the table is collected) and
``%%lm_train --df sdf`` (:func:`spark_rows`: the rows streamed to the driver with ``toLocalIterator``).
Every failure of a Spark job comes back as one line (:func:`spark_errors`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from .errors import ConfigError, DataError, ExecutorError, LMError, ModelFileError
from .frames import is_spark_dataframe
from .rules import MAX_ROWS

if TYPE_CHECKING:
    from .api import LanguageModel
    from .display import GroupComparison, ScoreReport
    from .engine.streaming import RowSource

__all__ = ["score_spark", "score_report", "compare_groups_spark", "spark_rows", "spark_errors", "model_bytes",
           "is_spark_dataframe"]

_SMOOTH = 0.5          # the add-1/2 smoothing of compare_groups' word counts, the same here
_ROW_ID = "__lm_row__"

# One model per Python worker process: hash of the file's bytes -> LanguageModel.
_WORKER_MODELS: Dict[str, Any] = {}
_WORKER_LOCK = threading.Lock()


def _pyspark() -> Any:
    try:
        import pyspark.sql  # noqa: F401  (lazy: pyspark is an optional extra)
        from pyspark.sql import functions as F
    except ImportError:
        raise ConfigError("Spark DataFrames need pyspark: pip install 'lm-magics[spark]'.") from None
    return F


def _require_arrow() -> None:
    """mapInPandas moves rows as Arrow batches: pyarrow (and pandas) must be importable here."""
    try:
        from pyspark.sql.pandas.utils import require_minimum_pandas_version, require_minimum_pyarrow_version

        with _quiet_pandas_warning():
            require_minimum_pandas_version()
            require_minimum_pyarrow_version()
    except Exception as exc:      # ImportError, or pyspark's own PySparkImportError
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"Scoring a Spark DataFrame needs pyspark's Arrow support, which is missing here "
                          f"({why}); pip install 'lm-magics[spark]' on the driver and the executors.") from None


@contextlib.contextmanager
def _quiet_pandas_warning() -> Iterator[None]:
    """pyspark warns on every Arrow call that it does not yet support the newest pandas; the scores here
    are checked against the pandas path instead (tests/test_spark.py), so that warning is left out."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield


def _check_frame(sdf: Any, column: Any, what: str = "the Spark DataFrame") -> str:
    """The column's name, after checking that it exists and holds strings."""
    if not is_spark_dataframe(sdf):
        raise DataError(f"Expected a Spark DataFrame, got {type(sdf).__name__}.")
    if not isinstance(column, str) or not column:
        raise DataError(f"Name the text column of {what} by its name (str), got {column!r}.")
    fields = {f.name: f for f in sdf.schema.fields}
    if column not in fields:
        import difflib

        near = difflib.get_close_matches(column, list(fields), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        listing = ", ".join(repr(c) for c in list(fields)[:12]) + (", ..." if len(fields) > 12 else "")
        raise DataError(f"{what[0].upper() + what[1:]} has no column '{column}'.{hint} Columns: {listing}.")
    kind = fields[column].dataType
    if type(kind).__name__ not in ("StringType", "VarcharType", "CharType"):
        raise DataError(f"Column '{column}' of {what} holds {kind.simpleString()} values, not text; cast it "
                        f"first: sdf.withColumn('{column}', F.col('{column}').cast('string')).")
    return column


def _check_arrow_schema(sdf: Any) -> None:
    """Every column goes through Arrow (mapInPandas returns whole rows): refuse, in one line, a column
    of a type Arrow cannot carry (CalendarIntervalType, ...), naming it."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    for f in sdf.schema.fields:
        try:
            to_arrow_schema(StructType([f]))
        except Exception:
            raise DataError(f"Column '{f.name}' ({f.dataType.simpleString()}) cannot go through Arrow, which "
                            f"scoring on the executors uses; drop it or cast it first "
                            f"(sdf.drop('{f.name}'), or .cast('string')).") from None


# ---------------------------------------------------------------------------------------------- the model

def model_bytes(model: Any) -> Tuple[bytes, "LanguageModel"]:
    """The bytes of a model's file, and the model (a LanguageModel, or the path of a saved one, loaded
    here first so that a file the executors could not read fails on the driver, in one line)."""
    from . import api

    if isinstance(model, api.LanguageModel):
        with tempfile.TemporaryDirectory(prefix="lm_magics-spark-") as tmp:
            path = os.path.join(tmp, "model.lm")
            model.save(path)
            with open(path, "rb") as fh:
                return fh.read(), model
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a LanguageModel or the path of a saved model, got {type(model).__name__}.")
    loaded = api.load(model)        # missing, unreadable, damaged, foreign: a ModelFileError here
    try:
        with open(os.path.expanduser(os.fspath(model)), "rb") as fh:
            return fh.read(), loaded
    except OSError as exc:
        raise ModelFileError(f"Cannot read the model file '{model}' ({exc.strerror}).") from None


def _fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _worker_model(key: str, shipped: Any) -> Any:
    """The model on a Python worker: loaded from the shipped bytes the first time, then from the cache.

    ``shipped`` is a Broadcast of the bytes (its value is fetched only on a miss) or the bytes themselves.
    """
    with _WORKER_LOCK:
        model = _WORKER_MODELS.get(key)
        if model is not None:
            return model
        from .api import load

        data = shipped.value if hasattr(shipped, "value") else shipped
        if _fingerprint(data) != key:
            raise ModelFileError("The model's bytes arrived damaged on an executor (hash mismatch); run the "
                                 "call again.")
        with tempfile.TemporaryDirectory(prefix="lm_magics-worker-") as tmp:
            path = os.path.join(tmp, "model.lm")
            with open(path, "wb") as fh:
                fh.write(data)
            model = load(path)
        _WORKER_MODELS.clear()          # one model per worker at a time: a new one replaces the old
        _WORKER_MODELS[key] = model
        return model


def _ship(sdf: Any, data: bytes) -> Any:
    """A broadcast of the bytes (sent to each executor once), or the bytes inside the function where the
    session has no SparkContext (Spark Connect)."""
    try:
        return sdf.sparkSession.sparkContext.broadcast(data)
    except Exception:
        return data


def _one_thread() -> None:
    """Spark runs one task per core: each task's torch uses one thread (no oversubscription)."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------- scoring

def _scored_schema(sdf: Any, names: List[str]) -> Any:
    from pyspark.sql.types import DoubleType, StructField, StructType

    return StructType(list(sdf.schema.fields) + [StructField(n, DoubleType(), True) for n in names])


def score_spark(sdf: Any, column: str, model: Any, *, into: Optional[str] = None, overwrite: bool = False) -> Any:
    """The Spark DataFrame with the columns ``%lm_score`` adds (``COL_ppl``: perplexity per row,
    ``COL_bits``: bits per token; NaN where the text is missing), computed lazily on the executors.

    sdf : pyspark.sql.DataFrame (classic or Spark Connect)
    column : the name of a string column
    model : a LanguageModel or the path of a saved model (read on the driver, shipped once as bytes)
    into, overwrite : as in ``score_frame``: the perplexity column's name, and whether existing score
        columns may be replaced (otherwise a ConfigError)

    Nothing runs until an action (``.write``, ``.count()``, ...); a Spark job that fails then raises
    Spark's error: wrap the action in :func:`spark_errors` for one line.

    >>> scored = score_spark(sdf, "text", "spam.lm")                     # doctest: +SKIP
    >>> scored.orderBy("text_bits", ascending=False).show(5)            # doctest: +SKIP
    """
    from .analysis import score_columns

    _pyspark()
    column = _check_frame(sdf, column)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be True or False, got {overwrite!r}.")
    names = list(score_columns(column, into))
    taken = [c for c in names if c in sdf.columns]
    if taken and not overwrite:
        raise ConfigError(f"Column {taken[0]!r} already exists; choose another with --into NAME (into=...) or "
                          f"pass --overwrite (overwrite=True) to replace it.")
    if column in names:
        raise ConfigError(f"The scores cannot replace the text column {column!r} itself; choose another --into.")
    _require_arrow()
    if taken:
        sdf = sdf.drop(*taken)
    _check_arrow_schema(sdf)
    data, _ = model_bytes(model)
    key, shipped = _fingerprint(data), _ship(sdf, data)

    def score_batches(batches: Iterator[Any]) -> Iterator[Any]:
        # On a Python worker: one model per process, one torch thread per task.
        from lm_magics.analysis import score_batch

        _one_thread()
        scorer = _worker_model(key, shipped)
        for pdf in batches:
            new = score_batch(scorer, pdf[column], column, into)
            for name in names:
                pdf[name] = new[name].to_numpy()
            yield pdf

    with _quiet_pandas_warning():
        return sdf.mapInPandas(score_batches, _scored_schema(sdf, names))


def score_report(sdf: Any, column: str, model: "LanguageModel", *, into: Optional[str] = None,
                 overwrite: bool = False, top: int = 5, model_name: str = "", bound_to: str = "") -> Tuple[Any, "ScoreReport"]:
    """``%lm_score`` on a Spark DataFrame: (the scored frame, cached; its report).

    The scores are computed once, into Spark's cache (memory, then disk): one aggregation gives the row
    count, the missing rows and the median perplexity, and ``top`` rows each way are taken from the
    cached scores; only those rows reach the driver. The caller binds the frame (``bound_to`` names it in
    the report). A failed job unpersists the frame and raises one line; nothing is returned then.
    """
    from .display import ScoredRow, ScoreReport
    from .analysis import score_columns

    F = _pyspark()
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ConfigError(f"top must be a whole number of at least 0, got {top!r}.")
    ppl_col, bits_col, unusual_col = score_columns(column, into)
    scored = score_spark(sdf, column, model, into=into, overwrite=overwrite).persist()
    try:
        with spark_errors("scoring"):
            stats = scored.agg(F.count(F.lit(1)).alias("rows"), F.count(F.col(ppl_col)).alias("ok"),
                               F.sum(F.when(F.isnan(F.col(ppl_col)) | F.col(ppl_col).isNull(), 1).otherwise(0))
                               .alias("missing"),
                               F.percentile_approx(F.when(~F.isnan(F.col(ppl_col)), F.col(ppl_col)), 0.5, 10_000)
                               .alias("median")).collect()[0]
            finite = scored.where(~F.isnan(F.col(bits_col)) & F.col(bits_col).isNotNull())
            # Ranked by the unusualness, as the pandas path ranks by default.
            pick = [F.col(column), F.col(ppl_col), F.col(bits_col), F.col(unusual_col)]
            rank = F.col(unusual_col)
            shown = min(top, MAX_ROWS)        # a report holds what it shows; every score is in the frame
            most = finite.orderBy(rank.desc()).select(*pick).limit(shown).collect() if top else []
            least = finite.orderBy(rank.asc()).select(*pick).limit(shown).collect() if top else []
    except BaseException:
        scored.unpersist()
        raise

    def rows(found: List[Any]) -> List[ScoredRow]:
        return [ScoredRow("", r[0], float(r[1]), float(r[2]), model.surprisal(r[0]), {}, unusual=float(r[3]))
                for r in found]

    median = stats["median"]
    note = (f"'{bound_to}' now holds the scored Spark DataFrame (frames cannot change in place; cached: "
            f"{bound_to}.unpersist() frees it)" if bound_to else "")
    summary = {"rows": int(stats["rows"]), "missing": int(stats["missing"] or 0),
               "median": float(median) if median is not None else None, "note": note}
    report = ScoreReport(column, ppl_col, bits_col, None, None, rows(most), rows(least), model_name,
                         model.kind, summary=summary, unusual_column=unusual_col)
    return scored, report


# ---------------------------------------------------------------------------------------------- errors

_LM_ERROR = re.compile(r"lm_magics\.errors\.(\w+): (.+)")


@contextlib.contextmanager
def spark_errors(doing: str = "the Spark job") -> Iterator[None]:
    """Turn the failure of a Spark action into one line: an LMError raised on an executor comes back as
    itself (its message); a dead executor or exhausted retries as an ExecutorError; a bad query (an
    unknown column in an expression) as a DataError. A KeyboardInterrupt passes (Spark cancels the jobs)."""
    try:
        yield
    except (LMError, KeyboardInterrupt):
        raise
    except Exception as exc:
        mod = type(exc).__module__ or ""
        if not (mod.startswith("pyspark") or mod.startswith("py4j")):
            raise
        raise _one_line(exc, doing) from None


def _one_line(exc: BaseException, doing: str) -> LMError:
    from . import errors

    text = str(exc)
    found = _LM_ERROR.findall(text)
    if found:           # our own error, raised on a worker: the same class and message
        name, msg = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, LMError):
            return cls(msg.strip())
    cls_name = type(exc).__name__
    if cls_name in ("AnalysisException", "ParseException", "IllegalArgumentException"):
        first = text.strip().splitlines()[0] if text.strip() else cls_name
        return DataError(f"Spark cannot run {doing}: {first[:300]}")
    failed = re.search(r"Task \S+ in stage \S+ failed (\d+) times?", text)
    crashed = re.search(r"(Python worker exited unexpectedly[^\n.]*|ExecutorLostFailure[^\n]*|"
                        r"OutOfMemoryError[^\n]*|Container killed[^\n]*)", text)
    if crashed or failed:
        why = crashed.group(1).strip() if crashed else _last_error_line(text)
        tries = f" after {failed.group(1)} attempt(s) of a task" if failed else ""
        return ExecutorError(f"{doing[0].upper() + doing[1:]} failed on the executors{tries}: {why[:200]}. "
                             f"Nothing has changed; run it again, or give the executors more memory "
                             f"(spark.executor.memory) or retries (spark.task.maxFailures).")
    return ExecutorError(f"{doing[0].upper() + doing[1:]} failed in Spark: {_last_error_line(text)[:300]}. "
                         f"Nothing has changed.")


def _last_error_line(text: str) -> str:
    """The most telling line of a Spark error: the last 'SomethingError: ...' of a worker's traceback,
    else the first line."""
    hits = re.findall(r"^\s*([\w.]*(?:Error|Exception): .+)$", text, flags=re.M)
    return (hits[-1] if hits else text.strip().splitlines()[0] if text.strip() else "unknown error").strip()


# ---------------------------------------------------------------------------------------------- comparing groups

def compare_groups_spark(sdf: Any, column: str, by: str, model: Optional["LanguageModel"] = None, *,
                         min_rows: int = 5, top_words: int = 5, model_name: str = "") -> "GroupComparison":
    """``compare_groups`` on a Spark DataFrame, aggregated on the executors: only one row per group (its
    counts, bit sums and characteristic words) reaches the driver. The same table as the pandas path:
    rows are scored with ``model`` (and its n-gram baseline when it has one), or without one with the
    column's word counts (unigram, add-1/2 smoothed); words are ranked by the same z-scored log-odds
    (``analysis.fighting_words``), computed per group on the executors.

    >>> compare_groups_spark(sdf, "text", "product").table             # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType
    from pyspark.sql.window import Window

    from .api import LanguageModel
    from .display import GroupComparison

    F = _pyspark()
    if model is not None and not isinstance(model, LanguageModel):
        raise ConfigError(f"model must be a LanguageModel or None, got {type(model).__name__}.")
    for v, what, low in ((min_rows, "min_rows", 1), (top_words, "top_words", 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{what} must be a whole number of at least {low}, got {v!r}.")
    column = _check_frame(sdf, column)
    if by not in sdf.columns:
        raise DataError(f"The Spark DataFrame has no column '{by}' to group by. Columns: "
                        f"{', '.join(repr(c) for c in sdf.columns[:12])}.")
    if by == column:
        raise DataError(f"Group by another column than the text itself ('{column}').")
    _require_arrow()

    with_model = model is not None
    with_base = with_model and model.kind != "ngram" and model.ngram is not None
    key = shipped = None
    if with_model:
        data, _ = model_bytes(model)
        key, shipped = _fingerprint(data), _ship(sdf, data)
    base = sdf.select(F.col(column).alias("t"), F.col(by).alias("g"))
    kept = base.where(F.col("t").isNotNull() & (F.trim(F.col("t")) != "") & F.col("g").isNotNull())
    g_type = sdf.schema[by].dataType
    fields = [StructField("g", g_type, True), StructField("toks", ArrayType(StringType()), True),
              StructField("bits", DoubleType(), True), StructField("base", DoubleType(), True)]

    def tokens_and_bits(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from lm_magics.analysis import score_batch
        from lm_magics.engine.tokenizer import Tokenizer

        _one_thread()
        m = _worker_model(key, shipped) if with_model else None
        tok = Tokenizer("word", lowercase=True)     # group words as compare_groups counts them, model or not
        for pdf in batches:
            out = pd.DataFrame({"g": pdf["g"], "toks": [tok.tokenize(t) for t in pdf["t"]]})
            nan = np.full(len(pdf), np.nan)
            out["bits"] = score_batch(m, pdf["t"]).iloc[:, 1].to_numpy() if m is not None else nan
            out["base"] = score_batch(m.baseline, pdf["t"]).iloc[:, 1].to_numpy() if with_base else nan
            yield out

    F_ok = lambda c: F.when(~F.isnan(F.col(c)), F.col(c))     # noqa: E731  NaN -> null (left out of sums)
    with spark_errors("comparing groups"):
        total_rows = base.count()
        with _quiet_pandas_warning():
            rows = kept.mapInPandas(tokens_and_bits, StructType(fields)).persist()
        try:
            words = rows.select("g", F.explode("toks").alias("w")).groupBy("g", "w").count().persist()
            try:
                per_word = words.groupBy("w").agg(F.sum("count").alias("C"))
                totals = per_word.agg(F.sum("C").alias("N"), F.count(F.lit(1)).alias("V")).collect()[0]
                N, V = int(totals["N"] or 0), int(totals["V"] or 0) + 1       # + 1: room for a word never seen
                if with_model:
                    scored = rows.select("g", F_ok("bits").alias("bits"), F_ok("base").alias("base"))
                else:
                    # Unigram bits of each row: its tokens' smoothed log2 probabilities, averaged.
                    logp = per_word.select("w", F.log2((F.col("C") + _SMOOTH) / F.lit(N + _SMOOTH * V)).alias("lp"))
                    exploded = rows.withColumn(_ROW_ID, F.monotonically_increasing_id()) \
                        .select(_ROW_ID, "g", F.explode_outer("toks").alias("w"))
                    scored = exploded.join(logp, "w", "left").groupBy(_ROW_ID, "g") \
                        .agg((-F.avg("lp")).alias("bits")).select("g", "bits", F.lit(None).cast("double").alias("base"))
                groups = scored.groupBy("g").agg(F.count(F.lit(1)).alias("rows"), F.sum("bits").alias("bsum"),
                                                 F.count("bits").alias("bn"), F.sum("base").alias("zsum"),
                                                 F.count("base").alias("zn")).collect()
                sizes = {r["g"]: int(r["rows"]) for r in groups}
                compared = [r["g"] for r in groups if r["rows"] >= min_rows]
                top = {}
                if top_words and len(compared) >= 2:
                    # The z-scored log-odds with the column's counts as prior (analysis.fighting_words), per
                    # group on the executors: y the group's count of a word, a its column count, n the group's
                    # words, N the column's.
                    n_g = words.groupBy("g").agg(F.sum("count").alias("ng"))
                    y, a, n, a0 = F.col("count"), F.col("C"), F.col("ng"), F.lit(float(N))
                    r_, m = a - y, a0 - n
                    d = F.log((y + a) / (n + a0 - y - a)) - F.log((r_ + a) / (m + a0 - r_ - a))
                    z = d / F.sqrt(1.0 / (y + a) + 1.0 / (r_ + a))
                    ranked = words.where(F.col("w").rlike(r"[\p{L}\p{N}]")) \
                        .join(per_word, "w").join(n_g, "g").withColumn("z", z).where(F.col("z") > 0) \
                        .withColumn("k", F.row_number().over(Window.partitionBy("g").orderBy(F.col("z").desc(),
                                                                                             F.col("w").asc()))) \
                        .where(F.col("k") <= top_words).select("g", "w", "k", "z")
                    for r in ranked.collect():
                        top.setdefault(r["g"], []).append((r["k"], r["w"], round(float(r["z"]), 2)))
            finally:
                words.unpersist()
        finally:
            rows.unpersist()

    too_small = {g: n for g, n in sorted(sizes.items(), key=lambda kv: str(kv[0])) if n < min_rows}
    if len(compared) < 2:
        raise DataError(f"Only {len(compared)} group(s) of '{by}' have at least {min_rows} rows of text "
                        f"({len(sizes)} groups in all); pass a smaller min_rows (--min-rows) or group by "
                        f"another column.")
    all_b = sum(float(r["bsum"] or 0.0) for r in groups)
    all_n = sum(int(r["bn"]) for r in groups)
    all_z = sum(float(r["zsum"] or 0.0) for r in groups)
    all_zn = sum(int(r["zn"]) for r in groups)

    def excess(s: Optional[float], n: int, total: float, count: int) -> Tuple[float, float]:
        mean = float(s) / n if n else float("nan")
        rest = (total - float(s or 0.0)) / (count - n) if count - n else float("nan")
        return mean, rest

    table_rows = []
    for r in groups:
        if r["g"] not in compared:
            continue
        mean, rest = excess(r["bsum"], int(r["bn"]), all_b, all_n)
        ranked_g = sorted(top.get(r["g"], []))
        extra = [float(np.subtract(*excess(r["zsum"], int(r["zn"]), all_z, all_zn)))] if with_base else []
        table_rows.append((r["g"], int(r["rows"]), mean, rest, mean - rest, [w for _, w, _ in ranked_g],
                           [z for _, _, z in ranked_g], *extra))
    table_rows.sort(key=lambda t: (-t[4] if math.isfinite(t[4]) else math.inf, str(t[0])))
    columns = ["rows", "bits", "rest_bits", "excess_bits", "words", "word_z"] + (["ngram_excess_bits"] if with_base else [])
    table = pd.DataFrame([t[1:] for t in table_rows], columns=columns,
                         index=pd.Index([t[0] for t in table_rows], name=by))
    agreement = None
    if with_base and len(table) >= 3:      # rank agreement of the two excesses (Spearman), as compare_groups
        rho = table["excess_bits"].corr(table["ngram_excess_bits"], method="spearman", min_periods=3)
        agreement = float(rho) if math.isfinite(rho) else None
    used = (f"'{model_name}'" if model_name else "the LSTM model") if with_model else \
        "word counts of the column (unigram, add-1/2)"
    skipped = total_rows - sum(sizes.values())
    return GroupComparison(column, by, table, too_small, int(min_rows), used, int(skipped), agreement)


# ---------------------------------------------------------------------------------------------- training

def spark_rows(sdf: Any, column: str, where: Optional[str] = None, sample: Optional[float] = None,
               seed: int = 0, name: str = "the Spark DataFrame") -> "RowSource":
    """The rows of a Spark DataFrame's text column for training, as a RowSource: streamed to the driver
    with ``toLocalIterator`` (one partition at a time, never ``collect()``), and named for the token
    cache by the query plan's semantic hash, the input files (with sizes and times where the driver can
    see them), ``where`` and ``sample``: training on the same query again reads nothing.

    where : a Spark SQL condition (``"lang = 'en' AND length(text) > 20"``)
    sample : the fraction of rows to keep (``sdf.sample(fraction, seed)``), 0 < sample <= 1
    """
    import json

    from .engine.streaming import RowSource

    F = _pyspark()
    column = _check_frame(sdf, column, name)
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 1:
            raise ConfigError(f"--sample is the fraction of rows to keep, above 0 and at most 1, got {sample!r}.")
    if where is not None:
        if not where.strip():
            raise DataError("--where is empty; give a Spark SQL condition such as \"label = 'ham'\".")
        try:
            sdf = sdf.where(where)
        except Exception as exc:       # AnalysisException / ParseException: an unknown column, bad syntax
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"Cannot filter {name} with the Spark SQL condition --where {where!r}: {first[:240]}. "
                            f"Columns: {', '.join(repr(c) for c in sdf.columns[:12])}.") from None
    if sample is not None and sample < 1:
        sdf = sdf.sample(fraction=float(sample), seed=int(seed))
    query = sdf.select(F.col(column))
    with spark_errors("reading the rows"):
        plan = query.semanticHash()
        try:
            inputs = sorted(query.inputFiles())
        except Exception:
            inputs = []
    files = []
    for f in inputs[:10_000]:
        local = f[len("file:"):] if f.startswith("file:") else f
        try:
            st = os.stat(local)
            files.append([f, st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([f])
    key = hashlib.blake2b(json.dumps([plan, column, where, sample, seed, files]).encode(),
                          digest_size=16).hexdigest()

    def read() -> Iterator[Any]:
        with spark_errors("reading the rows"):
            for row in query.toLocalIterator(prefetchPartitions=False):
                yield row[0]

    return RowSource(read, key, "Spark query plan and sample")
