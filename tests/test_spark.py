"""Spark DataFrames: score_spark equals the pandas path, the magics' Spark branches, and one-line errors.

One local SparkSession for the whole run (2 cores, each task retried once: ``local[2,2]``, as a cluster's
spark.task.maxFailures would), small frames. Without pyspark or Java the tests are skipped with the reason;
with SPARK_TESTS_REQUIRED=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

import lm_magics as lm
from lm_magics.analysis import compare_groups, score_batch
from lm_magics.errors import ConfigError, DataError, ExecutorError, ModelFileError

from conftest import registered

REQUIRED = os.environ.get("SPARK_TESTS_REQUIRED") == "1"
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


def _missing() -> "str | None":
    try:
        import pyspark  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed: pip install 'lm-magics[spark]'"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime (java not on PATH, JAVA_HOME unset): apt-get install openjdk-17-jre-headless"
    return None


@pytest.fixture(scope="session")
def spark():
    why = _missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"SPARK_TESTS_REQUIRED=1 but {why}", pytrace=False)
        pytest.skip(why)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2,2]").appName("lm_magics-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
               .config("spark.driver.memory", "512m").config("spark.pyspark.python", sys.executable)
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def frame(tiny_text):
    rows = tiny_text.splitlines()[:30] + [None, "zebra quantum flux", ""]
    return pd.DataFrame({"text": rows, "n": range(len(rows)), "g": [f"g{i % 3}" for i in range(len(rows))]})


def test_score_spark_equals_the_pandas_path(spark, tiny_model, saved_model, frame):
    from lm_magics.spark import score_spark

    sdf = spark.createDataFrame(frame, "text string, n long, g string").repartition(2)
    scored = score_spark(sdf, "text", str(saved_model))
    # The schema is declared up front: the input's columns, then the score columns %lm_score writes.
    assert [(f.name, f.dataType.simpleString()) for f in scored.schema.fields] == [
        ("text", "string"), ("n", "bigint"), ("g", "string"), ("text_ppl", "double"), ("text_bits", "double"),
        ("text_unusual", "double")]
    got = scored.toPandas().sort_values("n").reset_index(drop=True)
    want = score_batch(tiny_model, frame["text"], "text")
    assert list(got["text"].fillna("<none>")) == list(frame["text"].fillna("<none>"))
    np.testing.assert_allclose(got["text_ppl"], want["text_ppl"], rtol=1e-5)
    np.testing.assert_allclose(got["text_bits"], want["text_bits"], rtol=1e-5)
    np.testing.assert_allclose(got["text_unusual"], want["text_unusual"], rtol=1e-5, atol=1e-9)
    assert got["text_ppl"].isna().tolist() == want["text_ppl"].isna().tolist() and got["text_ppl"].isna().any()


def test_score_spark_refuses_in_one_line(spark, tiny_model, saved_model, tmp_path, monkeypatch):
    from lm_magics import spark as lms

    sdf = spark.createDataFrame([("a b", 1)], "text string, n int")
    with pytest.raises(DataError, match=r"holds int values, not text; cast it"):
        lms.score_spark(sdf, "n", tiny_model)
    with pytest.raises(DataError, match=r"no column 'txt'. Did you mean 'text'"):
        lms.score_spark(sdf, "txt", tiny_model)
    with pytest.raises(ConfigError, match=r"'text_ppl' already exists"):
        lms.score_spark(sdf.withColumn("text_ppl", sdf.n * 1.0), "text", tiny_model)
    with pytest.raises(DataError, match=r"Column 'iv' \(interval\) cannot go through Arrow"):
        lms.score_spark(spark.sql("select 'a b' as text, make_interval(1, 2, 0, 0, 0, 0, 0) as iv"), "text",
                        tiny_model)
    bad = tmp_path / "bad.lm"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a model file"):
        lms.score_spark(sdf, "text", str(bad))
    with pytest.raises(ModelFileError, match="not found"):
        lms.score_spark(sdf, "text", str(tmp_path / "absent.lm"))
    with pytest.raises(DataError, match="Expected a Spark DataFrame"):
        lms.score_spark(pd.DataFrame({"text": ["a"]}), "text", tiny_model)

    import pyspark.sql.pandas.utils as arrow_utils

    def no_arrow():
        raise ImportError("PyArrow >= 11.0.0 must be installed; however, it was not found.")

    monkeypatch.setattr(arrow_utils, "require_minimum_pyarrow_version", no_arrow)
    with pytest.raises(ConfigError, match=r"needs pyspark's Arrow support.*PyArrow >= 11.0.0 must be installed"):
        lms.score_spark(sdf, "text", tiny_model)


def test_executors_die_the_task_retries_or_fails_in_one_line(spark, tiny_model, frame, tmp_path):
    """A Python worker killed once: the task is retried and the scores are complete. Killed every time:
    one ExecutorError line, and %lm_score binds nothing."""
    from lm_magics.spark import score_spark, spark_errors

    marker = tmp_path / "died-once"

    def dies(batches, always=False, marker=str(marker)):
        for pdf in batches:
            if (pdf["n"] == 5).any() and (always or not os.path.exists(marker)):
                open(marker, "w").close()
                os._exit(1)           # the worker process dies, as an out-of-memory kill would
            yield pdf

    schema = "text string, n long, g string"
    sdf = spark.createDataFrame(frame, schema).repartition(2)
    once = sdf.mapInPandas(dies, schema)
    with spark_errors("scoring"):
        got = score_spark(once, "text", tiny_model).toPandas()
    assert marker.exists() and len(got) == len(frame) and got["text_ppl"].notna().sum() == frame["text"].notna().sum()

    always = sdf.mapInPandas(lambda it: dies(it, always=True), schema)
    with pytest.raises(ExecutorError, match=r"^Scoring failed on the executors after 2 attempt\(s\) of a task: "
                                            r"Python worker exited unexpectedly") as err:
        with spark_errors("scoring"):
            score_spark(always, "text", tiny_model).count()
    assert "\n" not in str(err.value)


def test_lm_score_magic_binds_the_scored_frame(spark, shell, tiny_model, frame):
    sdf = spark.createDataFrame(frame, "text string, n long, g string")
    with registered(shell, "tiny", tiny_model):
        shell.user_ns["sdf"] = sdf
        report = shell.run_line_magic("lm_score", "--name tiny --df sdf --column text --top 2 --into-frame scored")
        assert shell.user_ns["sdf"] is sdf                  # --into-frame: the input stays as it was
        scored = shell.user_ns["scored"]
        assert scored.columns == ["text", "n", "g", "text_ppl", "text_bits", "text_unusual"]
        assert len(report.top) == len(report.bottom) == 2
        assert report.top[0].bits >= report.top[1].bits >= report.bottom[1].bits >= report.bottom[0].bits
        assert "lm-score-report" in report._repr_html_()
        text = repr(report)
        assert text.startswith(f"Scored {len(frame)} rows of 'text' with 'tiny'") and "1 missing" in text
        assert "'scored' now holds the scored Spark DataFrame" in text
        scored.unpersist()
        from IPython.core.error import UsageError

        with pytest.raises(UsageError, match="--baseline, --label and --positive are for pandas"):
            shell.run_line_magic("lm_score", "--name tiny --df sdf --column text --baseline")
        with pytest.raises(UsageError, match="holds bigint values, not text"):
            shell.run_line_magic("lm_score", "--name tiny --df sdf --column n")
        assert shell.user_ns["sdf"] is sdf


def test_lm_compare_on_spark_equals_the_pandas_table(spark, shell, tiny_model, frame):
    sdf = spark.createDataFrame(frame, "text string, n long, g string")
    shell.user_ns["sdf"] = sdf
    for name, model in ((None, None), ("tiny", tiny_model)):
        want = compare_groups(frame, "text", "g", model, min_rows=5, top_words=3)
        with registered(shell, "tiny", tiny_model):
            got = shell.run_line_magic("lm_compare", "--df sdf --column text --by g --min-rows 5 --top-words 3"
                                                     + (f" --name {name}" if name else ""))
        assert list(got.table.index) == list(want.table.index)
        assert got.table["rows"].tolist() == want.table["rows"].tolist()
        assert got.table["words"].tolist() == want.table["words"].tolist()
        for col in ("bits", "rest_bits", "excess_bits"):
            np.testing.assert_allclose(got.table[col], want.table[col], rtol=1e-5, atol=1e-9)
        assert (got.skipped, got.too_small) == (want.skipped, want.too_small) and got.skipped == 2


def test_lm_train_streams_a_spark_frame(spark, shell, frame, tmp_path, monkeypatch):
    """Rows reach the driver through toLocalIterator only (collect is never called); a second run of the
    same query and sample reads nothing (the token cache is keyed by the plan); --where is Spark SQL."""
    from pyspark.sql import DataFrame as SparkFrame
    from IPython.core.error import UsageError

    monkeypatch.setenv("LM_MAGICS_CACHE", str(tmp_path / "cache"))
    sdf = spark.createDataFrame(frame, "text string, n long, g string")
    shell.user_ns["sdf"] = sdf
    calls = {"iter": 0}
    real_iter = type(sdf).toLocalIterator

    def counted(self, *a, **k):
        calls["iter"] += 1
        return real_iter(self, *a, **k)

    def refused(self, *a, **k):
        raise AssertionError("collect() called")

    monkeypatch.setattr(type(sdf), "toLocalIterator", counted)
    for cls in {type(sdf), SparkFrame}:
        monkeypatch.setattr(cls, "collect", refused)
        monkeypatch.setattr(cls, "toPandas", refused)
    line = "--name sp --df sdf --column text --where \"n >= 2 AND g != 'g2'\" --sample 0.9 --epochs 1 --quiet"
    first = shell.run_line_magic("lm_train", line)
    assert calls["iter"] == 1
    notes = " ".join(first.model.report.notes)
    assert "streamed" in notes and "built" in notes
    prov = first.model.meta["provenance"]
    assert prov["dataframe"] == "sdf" and prov["sample"] == 0.9 and prov["where"].startswith("n >= 2")
    again = shell.run_line_magic("lm_train", line)
    assert calls["iter"] == 1                             # the same plan and sample: read from the cache
    assert "cache hit (same Spark query plan and sample)" in " ".join(again.model.report.notes)
    with pytest.raises(UsageError, match=r"^Cannot filter 'sdf' with the Spark SQL condition --where 'nn > 2'"):
        shell.run_line_magic("lm_train", "--df sdf --column text --where 'nn > 2'")
    with pytest.raises(UsageError, match=r"--sample is the fraction of rows to keep"):
        shell.run_line_magic("lm_train", "--df sdf --column text --sample 2")


# ---------------------------------------------------------------------------------------------- without Spark

def test_a_spark_frame_is_recognised_by_its_class_alone():
    from lm_magics.frames import is_spark_dataframe

    fake = type("DataFrame", (), {"__module__": "pyspark.sql.connect.dataframe"})()
    assert is_spark_dataframe(fake)
    assert not is_spark_dataframe(pd.DataFrame({"text": ["a"]}))
    assert not is_spark_dataframe(type("DataFrame", (), {"__module__": "polars.dataframe.frame"})())


def test_a_row_source_is_read_once_and_found_again_by_its_key(tmp_path, tiny_text):
    """The streaming path reads a RowSource once per cache build (spooled for its two passes), and a
    second source with the same key is served from the cache without reading a row."""
    from lm_magics.engine.streaming import RowSource, prepare_stream, should_stream
    from lm_magics.engine.tokenizer import Tokenizer

    reads = []

    def read():
        reads.append(1)
        yield from tiny_text.splitlines() + [None]

    src = RowSource(read, "plan-1", "test query")
    assert should_stream(src, None) and not should_stream(src, False)
    first = prepare_stream(src, Tokenizer("word", True), cache_dir=tmp_path)
    assert len(reads) == 1 and first.stats.missing == 1 and first.stats.train_tokens > 100
    again = prepare_stream(RowSource(read, "plan-1", "test query"), Tokenizer("word", True), cache_dir=tmp_path)
    assert len(reads) == 1 and "cache hit (same test query)" in again.stats.notes[-1]
    assert np.array_equal(np.asarray(again.train), np.asarray(first.train))
    prepare_stream(RowSource(read, "plan-2", "test query"), Tokenizer("word", True), cache_dir=tmp_path)
    assert len(reads) == 2                                  # another key: read again
    for n_reads in (3, 3):      # lm.train streams it (its own tokenizer settings: one build, then the cache)
        model = lm.train(RowSource(read, "plan-1", "test query"), cache_dir=str(tmp_path), epochs=1, hidden_dim=16,
                         embed_dim=8, seed=0)
        assert len(reads) == n_reads and "streamed" in " ".join(model.report.notes)
