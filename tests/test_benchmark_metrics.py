"""The measuring instrument of benchmarks/anomaly.py: its AUROC/AUPRC on fixed inputs, and the model's own
signals and their combinations as it reads them."""

import numpy as np
import pytest

from benchmarks.anomaly import SIGNALS, auprc, auroc, knn_distance, project_signals


def test_auroc_and_auprc_by_hand():
    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(s, y) == pytest.approx(0.75)          # 3 of the 4 (anomaly, normal) pairs ordered right
    assert auprc(s, y) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert auroc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.75)   # a tie counts half
    assert auprc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.5)    # tied scores are one threshold
    assert auroc([3, 2, 1], [1, 1, 0]) == 1.0 and auroc([1, 2, 3], [1, 1, 0]) == 0.0
    assert auroc([np.nan, 5.0], [1, 0]) == 0.0          # a row that could not be scored is not flagged
    assert np.isnan(auroc([1, 2], [0, 0]))


def test_metrics_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = [0, 1]
        s = np.round(rng.normal(size=60) + y, 1)       # rounded: many ties
        assert auroc(s, y) == pytest.approx(metrics.roc_auc_score(y, s))
        assert auprc(s, y) == pytest.approx(metrics.average_precision_score(y, s))


def test_the_signals_alone_are_the_models_own(tiny_model):
    texts = ["the cat sat on the mat", "zebra quantum 0x7f3a", "the dog ran"]
    got = project_signals(tiny_model, texts)
    sig = tiny_model.signals(texts, progress=False)
    for name in SIGNALS:
        if name in sig:
            np.testing.assert_array_equal(got[name], sig[name])
    for combo in ("cal_mean6", "cal_max"):
        assert got[combo].shape == (3,) and np.all((got[combo] >= 0) & (got[combo] <= 1 + 1e-6))
    assert np.all(got["cal_fisher"] > 0)


def test_knn_distance_is_zero_for_a_training_row_and_one_for_an_orthogonal_row():
    train = np.eye(3)
    d = knn_distance(train, np.array([[1.0, 0, 0], [0, 0, 0]]), k=1)
    assert d.tolist() == [0.0, 1.0]
