"""Score a Dask DataFrame column with a saved model: ``map_partitions``, the model loaded once per worker.

    import dask.dataframe as dd
    from lm_magics.dask import score_dask

    ddf = dd.read_parquet("messages/*.parquet")
    ddf["text_ppl"] = score_dask(ddf, "spam.lm", column="text")     # lazy; .compute() or .to_parquet()
    ddf["text_unusual"] = score_dask(ddf, "spam.lm", column="text", what="unusual")

Install the extra with ``pip install lm-magics[dask]``. The model file must be readable from every worker
(a shared filesystem or object store path that ``lm.load`` can open). Each worker process keeps the
loaded model in a small cache keyed by (path, size, mtime), so a partition costs only its own scoring.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["score_dask", "load_cached"]

_MODELS: Dict[Tuple[str, int, int], Any] = {}
_LOCK = threading.Lock()


def load_cached(model_path: str):
    """The model at model_path, loaded once per process (reloaded if the file changes)."""
    from .api import load

    path = os.path.abspath(os.path.expanduser(str(model_path)))
    try:
        st = os.stat(path)
    except OSError:
        raise DataError(f"Model file '{model_path}' not found on this worker; save the model where every "
                        f"worker can read it.") from None
    key = (path, st.st_size, st.st_mtime_ns)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            for old in [k for k in _MODELS if k[0] == path]:
                del _MODELS[old]
            model = _MODELS[key] = load(path)
    return model


def _score_partition(part: Any, model_path: str, what: str) -> Any:
    import pandas as pd

    from .analysis import row_scores

    model = load_cached(model_path)
    if len(part) == 0:
        return pd.Series([], index=part.index, dtype="float64", name=part.name)
    return pd.Series(np.asarray(row_scores(model, part, what), dtype=np.float64), index=part.index, name=part.name)


def score_dask(data: Any, model_path: str, column: Optional[str] = None, *, what: str = "perplexity") -> Any:
    """Per-row perplexity (or ``what="bits"``: bits per token; ``"unusual"``: the unusualness, as
    ``COL_unusual`` of ``score_frame``; or one of its signals: ``"max"``, ``"topk"``, ``"unseen"``, ``"ngram"``,
    ``"knn"``) of a Dask text column, as a lazy Dask Series aligned to the input's index (missing rows: NaN).

    data : dask Series, or dask DataFrame with ``column`` naming the text column
    model_path : a file written by ``model.save`` (read by each worker, once)
    """
    try:
        import dask.dataframe as dd  # lazy: dask is an optional extra
    except ImportError:
        raise ConfigError("score_dask needs dask: pip install 'lm-magics[dask]' (or dask[dataframe]).") from None
    from .analysis import ROW_SCORES

    if what not in ROW_SCORES:
        raise ConfigError(f"what must be one of {', '.join(map(repr, ROW_SCORES))}; got {what!r}.")
    if not os.path.exists(os.path.expanduser(str(model_path))):
        raise DataError(f"Model file '{model_path}' not found; save one with model.save(path) first.")
    if isinstance(data, dd.DataFrame):
        if column is None:
            raise ConfigError("Pass column= to name the text column of the Dask DataFrame.")
        if column not in data.columns:
            raise DataError(f"No column {column!r} in the Dask DataFrame (columns: "
                            f"{', '.join(map(repr, list(data.columns)[:10]))}).")
        series = data[column]
    else:
        series = data
    suffix = {"perplexity": "ppl"}.get(what, what)
    name = f"{series.name}_{suffix}" if series.name is not None else what
    series = series.rename(name)
    return series.map_partitions(_score_partition, os.path.abspath(os.path.expanduser(str(model_path))), what,
                                 meta=(name, "float64"))
