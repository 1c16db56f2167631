"""score_dask on a LocalCluster (2 worker processes) equals pandas scoring, row for row."""

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe", reason="dask is not installed (pip install 'lm-magics[dask]')")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

from lm_magics.dask import score_dask  # noqa: E402
from lm_magics.errors import ConfigError, DataError  # noqa: E402


@pytest.fixture(scope="module")
def cluster_client():
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                       worker_dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_scores_match_pandas(cluster_client, tiny_model, saved_model, tiny_text):
    rows = tiny_text.splitlines()[:40] + [None, "zebra quantum", ""]
    pdf = pd.DataFrame({"text": rows, "n": range(len(rows))}, index=np.arange(len(rows)) * 3)
    ddf = dd.from_pandas(pdf, npartitions=4)
    got = score_dask(ddf, str(saved_model), column="text").compute()
    want = tiny_model.score(pdf["text"])
    assert got.name == "text_ppl"
    assert list(got.index) == list(pdf.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-5)
    assert np.isnan(got.loc[40 * 3])
    # Both workers did some of the work, each with the model loaded once.
    assert len(cluster_client.scheduler_info()["workers"]) == 2
    bits = score_dask(ddf["text"], str(saved_model), what="bits").compute()
    np.testing.assert_allclose(bits.to_numpy(), np.log2(want.to_numpy()), rtol=1e-5)


def test_dask_errors_are_one_line(saved_model):
    ddf = dd.from_pandas(pd.DataFrame({"text": ["a b"]}), npartitions=1)
    with pytest.raises(ConfigError, match="column="):
        score_dask(ddf, str(saved_model))
    with pytest.raises(DataError, match="No column 'txt'"):
        score_dask(ddf, str(saved_model), column="txt")
    with pytest.raises(DataError, match="not found"):
        score_dask(ddf, "/nonexistent/model.lm", column="text")


def test_dask_writes_the_unusual_column(cluster_client, tiny_model, saved_model, tiny_text):
    rows = tiny_text.splitlines()[:20] + [None, "zebra quantum"]
    pdf = pd.DataFrame({"text": rows})
    ddf = dd.from_pandas(pdf, npartitions=3)
    got = score_dask(ddf, str(saved_model), column="text", what="unusual").compute()
    assert got.name == "text_unusual"
    np.testing.assert_allclose(got.to_numpy(), tiny_model.unusual(pdf["text"]).to_numpy(), rtol=1e-5)
    assert np.isnan(got.iloc[20]) and got.iloc[21] > np.nanmedian(got.to_numpy())
    knn = score_dask(ddf, str(saved_model), column="text", what="knn").compute()
    assert knn.name == "text_knn" and knn.iloc[21] > knn.iloc[0]
    with pytest.raises(ConfigError, match="what must be one of"):
        score_dask(ddf, str(saved_model), column="text", what="loudness")
