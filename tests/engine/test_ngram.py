"""The n-gram engine: Kneser-Ney counts by hand, normalisation, scoring = distribution, files, copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lm_magics.engine.ngram import CopyIndex, NGramModel, default_order, fit_mix_weight, stream_rows

# ids: <unk> 0, <eos> 1, a 2, b 3, c 4. Rows "a b", "a b", "c b".
ROWS = np.array([2, 3, 1, 2, 3, 1, 4, 3, 1])


def test_kneser_ney_counts_by_hand():
    ng = NGramModel.fit(ROWS, vocab_size=5, eos_id=1, order=2)
    # Unigrams: continuation counts, the number of distinct words seen before each:
    # a after <eos>; b after a and c; <eos> after b; c after <eos>; <unk> never.
    assert [ng.count([w]) for w in range(5)] == [0, 1, 1, 2, 1]
    # Top order: raw counts.
    assert ng.count([1, 2]) == 2 and ng.count([2, 3]) == 2 and ng.count([3, 1]) == 3
    assert ng.count([1, 4]) == 1 and ng.count([4, 3]) == 1
    assert ng.count([3, 2]) == 0          # "b a" spans a row boundary: never counted
    # Order 3: the bigram "<eos> a" starts a row, so it keeps its raw count; "a b" gets a continuation count.
    ng3 = NGramModel.fit(ROWS, vocab_size=5, eos_id=1, order=3)
    assert ng3.count([1, 2]) == 2 and ng3.count([2, 3]) == 1 and ng3.count([4, 3]) == 1
    assert ng3.count([1, 2, 3]) == 2


@pytest.mark.parametrize("order", [2, 3, 5])
def test_probabilities_sum_to_one_and_match_scoring(order):
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, 3000)
    ids[rng.random(3000) < 0.1] = 1
    ng = NGramModel.fit(ids, vocab_size=40, eos_id=1, order=order)
    for ctx in ([1], [1, 5, 7], [9, 9, 9, 9], [1, 39]):     # 39 never occurs: unseen words have mass
        p = np.exp(ng.log_probs_after(ctx))
        assert abs(p.sum() - 1) < 1e-9 and (p > 0).all()
    # The vectorized scorer gives each token the probability of the full distribution.
    s = np.r_[1, ids[:300]]
    ref = np.array([-ng.log_probs_after(s[: i + 1])[s[i + 1]] for i in range(300)])
    assert np.allclose(ng.stream_nll(ids[:300]), ref)


def test_more_context_helps_on_repeated_text():
    ids = np.tile([2, 3, 4, 5, 6, 1], 50)
    low = NGramModel.fit(ids, 8, 1, 2).stream_nll(ids).mean()
    high = NGramModel.fit(ids, 8, 1, 4).stream_nll(ids).mean()
    assert high <= low


def test_round_trip_plain_data(tmp_path):
    ng = NGramModel.fit(ROWS, 5, 1, 3)
    path = tmp_path / "ng.pt"
    torch.save(ng.to_dict(), path)
    back = NGramModel.from_dict(torch.load(path, weights_only=True))
    assert np.array_equal(back.log_probs_after([1, 2]), ng.log_probs_after([1, 2]))


def test_damaged_tables_refused():
    d = NGramModel.fit(ROWS, 5, 1, 3).to_dict()
    d["keys"][0] = d["keys"][0].flip(0)
    with pytest.raises(ValueError):
        NGramModel.from_dict(d)
    with pytest.raises(ValueError):
        NGramModel.from_dict({**NGramModel.fit(ROWS, 5, 1, 3).to_dict(), "order": 7})


def test_default_order_grows_with_data():
    assert default_order(1_000) == 3 < default_order(1_000_000) < default_order(10_000_000) == 5


def test_mix_weight_never_worse_than_either_part():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.exponential(2, 500), rng.exponential(2, 500)
        lam = fit_mix_weight(a, b)
        with np.errstate(divide="ignore"):
            mixed = -np.logaddexp(np.log(lam) - a, np.log1p(-lam) - b).mean()
        assert mixed <= min(a.mean(), b.mean()) + 1e-12


def test_copy_index_finds_runs_and_rows():
    rows = [np.arange(10, 30), np.arange(40, 50)]
    idx = CopyIndex.build(rows, [7, 9], window=8)
    assert idx.find(list(range(100, 105)) + list(range(12, 24)) + [99]) == [(5, 12, 7)]
    assert idx.find(list(range(12, 19)) + [99]) == []                # 7 tokens: below the window
    assert idx.find(list(range(40, 50))) == [(0, 10, 9)]


def test_stream_rows_keeps_eos():
    assert [r.tolist() for r in stream_rows(ROWS, 1)] == [[2, 3, 1], [2, 3, 1], [4, 3, 1]]
