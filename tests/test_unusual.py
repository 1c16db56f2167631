"""The unusualness score: each signal, the calibration, the unseen-word rule, the nearest usual row, the notes,
``--signal``, the model file's new fields, and the z-scored group words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import lm_magics as lm
from lm_magics import analysis
from lm_magics.engine.novelty import (DEFAULT_SIGNALS, Calibration, NeighbourIndex, SpellingModel, char_grams,
                                      row_signals)
from lm_magics.errors import ConfigError, ModelFileError

from conftest import registered


# ---------------------------------------------------------------------------------------------- engine pieces

def test_the_spelling_model_finds_odd_spellings_costlier():
    words = ["the", "then", "there", "this", "that", "cat", "hat", "mat", "sat", "rat"]
    sp = SpellingModel.fit(words, [50, 5, 5, 20, 20, 3, 2, 2, 2, 1], new_word_bits=4.0)
    ordinary, odd = sp.bits(["thet", "xqzjv"])
    assert ordinary < odd
    # Longer words of the same letters cost more (every letter and the end mark are predicted).
    short, long_ = sp.bits(["cat", "catcatcat"])
    assert short < long_
    assert np.all(sp.novelty_bits(["cat"]) > sp.bits(["cat"]))       # the new-word event on top
    again = SpellingModel.from_dict(sp.to_dict())
    np.testing.assert_allclose(again.bits(["thet", "xqzjv"]), sp.bits(["thet", "xqzjv"]), rtol=1e-5)  # float32


def test_row_signals_mean_max_topk_and_unseen():
    # Row 0: words of 1, 2, 9 and 4 bits (the 9 unseen) then its <eos> of 0.5; row 1: only an <eos>.
    bits = np.array([1.0, 2.0, 9.0, 4.0, 0.5, 3.0])
    unseen = np.array([0, 0, 1, 0, 0, 0], bool)
    out = row_signals(bits, unseen, np.array([5, 1, 0]), top_k=2)
    assert out["ppl"][0] == pytest.approx(16.5 / 5)
    assert out["max"][0] == 9.0                       # the <eos> is not a word
    assert out["topk"][0] == pytest.approx(6.5)       # 9 and 4
    assert out["unseen"][0] == pytest.approx(9 / 5) and out["unseen_words"][0] == 1
    assert out["max"][1] == 3.0 and out["unseen_words"][1] == 0
    assert all(np.isnan(out[k][2]) for k in out)      # an empty row has no signals


def test_calibration_percentiles_are_in_0_1_and_monotone():
    rng = np.random.default_rng(0)
    cal = Calibration.fit({"ppl": rng.normal(5, 1, 400), "unseen": np.r_[np.zeros(300), rng.random(100)]})
    x = np.sort(np.r_[rng.normal(5, 3, 500), -100.0, 100.0, 1e6])
    for name in ("ppl", "unseen"):
        p = cal.percentile(name, x)
        assert np.all((p >= 0) & (p <= 1))
        assert np.all(np.diff(p) >= 0)
    # Past every calibration value the order is kept (no tie at 1), and NaN stays NaN.
    far = cal.percentile("ppl", np.array([20.0, 30.0, np.nan]))
    assert far[0] < far[1] < 1 and np.isnan(far[2])
    # Ties count half: 3/4 of the rows are 0, so 0 sits near the 37th percentile, not at 0 or 75.
    assert 0.3 < cal.percentile("unseen", np.array([0.0]))[0] < 0.45
    median = cal.percentile("ppl", np.array([np.median(cal.quantiles[0])]))[0]
    assert 0.45 < median < 0.55
    again = Calibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.percentile("ppl", x), cal.percentile("ppl", x))


def test_the_combination_leaves_out_what_a_model_lacks():
    rng = np.random.default_rng(1)
    cal = Calibration.fit({s: rng.random(200) for s in DEFAULT_SIGNALS})
    values = {s: np.array([0.5, 0.99]) for s in DEFAULT_SIGNALS}
    score, used = cal.combine(values)
    assert used == list(DEFAULT_SIGNALS) and score[1] > score[0]
    values.pop("knn")
    score2, used2 = cal.combine(values)
    assert "knn" not in used2 and score2[1] > score2[0]
    for rule in ("max", "mean_tail"):
        cal.rule = rule
        assert cal.combine(values)[0][1] > cal.combine(values)[0][0]


def test_char_grams_are_hashed_per_row():
    rows, feats, counts = char_grams(["abc", "abc", "xyz!"])
    assert set(rows.tolist()) == {0, 1, 2}
    assert sorted(feats[rows == 0].tolist()) == sorted(feats[rows == 1].tolist())
    assert feats.max() < 1 << 18 and counts.min() >= 1


def test_the_neighbour_index_is_bounded_and_finds_near_copies(monkeypatch):
    rows = [f"order {i} shipped to customer {i * 7 % 31} on time" for i in range(300)]
    index = NeighbourIndex.build(rows, np.arange(300) + 1000, max_rows=50, seed=0)
    assert index.size == 50 and index.rows_seen == 300
    kept = index.texts[3]
    mean_d, near, near_d = index.search([kept, "Traceback (most recent call last): KeyError 0x7f3a"])
    assert near_d[0] < 0.01 and index.texts[near[0]] == kept          # a copy: distance ~0
    assert mean_d[1] > 0.8 and mean_d[1] > mean_d[0]
    # The numpy path (no scipy) finds the same neighbours and distances.
    monkeypatch.setenv("LM_MAGICS_NO_SCIPY", "1")
    plain = NeighbourIndex.from_dict(index.to_dict()).search([kept, "Traceback (most recent call last)"])
    monkeypatch.delenv("LM_MAGICS_NO_SCIPY")
    fast = index.search([kept, "Traceback (most recent call last)"])
    np.testing.assert_allclose(plain[0], fast[0], atol=1e-5)
    assert plain[1].tolist() == fast[1].tolist()


def test_bad_fields_are_value_errors_naming_them():
    cal = Calibration.fit({"ppl": np.arange(10.0)}).to_dict()
    cal["quantiles"] = torch.tensor([[float("nan")] * 101], dtype=torch.float64)
    with pytest.raises(ValueError, match="quantiles"):
        Calibration.from_dict(cal)
    index = NeighbourIndex.build(["a b c", "d e f"], [0, 1]).to_dict()
    index["indptr"] = torch.tensor([0, 1], dtype=torch.int64)
    with pytest.raises(ValueError, match="row pointers"):
        NeighbourIndex.from_dict(index)


# ---------------------------------------------------------------------------------------------- a model

@pytest.fixture(scope="module")
def usual():
    """Rows of usual text (orders) and a small model trained on them, with held-out validation rows."""
    rng = np.random.default_rng(0)
    items = ["shoes", "a lamp", "two books", "a chair", "the tickets", "a bicycle", "some paint", "a kettle"]
    rows = [f"order {int(rng.integers(100, 130))} for {items[i % 8]} shipped to {['Ann', 'Bo', 'Cy'][i % 3]} "
            f"on {['monday', 'tuesday', 'friday'][i % 3]}" for i in range(400)]
    rows += ["order 512 for a xylograph shipped to Ann on monday"]       # 'xylograph': seen once
    model = lm.train(rows, hidden_dim=32, embed_dim=16, epochs=30, seed=0, optimizer="adamw", lr=0.01, dropout=0.1,
                     val_fraction=0.2)
    return rows, model


def test_training_builds_the_calibration_and_the_index(usual):
    _, model = usual
    u = model.unusualness
    assert u is not None and u.calibration is not None and u.spelling is not None
    assert set(DEFAULT_SIGNALS) <= set(u.calibration.signals)
    assert u.calibration.source == "validation rows" and u.calibration.rows > 10
    assert model.neighbours is not None and 0 < model.neighbours.size <= 2000
    assert u.unigram_val_ppl is not None and u.unigram_val_ppl > model.meta["val_ppl"]


def test_an_unseen_word_scores_higher_than_a_seen_rare_word(usual):
    _, model = usual
    rare = "order 512 for a xylograph shipped to Bo on friday"            # seen once in training
    new = "order 512 for a xylophone shipped to Bo on friday"             # never seen
    sig = model.signals([rare, new], progress=False)
    assert sig["unseen_words"].tolist() == [0, 1]
    assert sig["max"][1] > sig["max"][0]
    assert sig["unseen"][1] > sig["unseen"][0]
    scores = model.unusual([rare, new])
    assert scores[1] > scores[0]


def test_the_ngram_signal_is_the_ngrams_own_and_older_files_keep_theirs(usual, tmp_path):
    # Unseen words are the 'unseen' signal's; the n-gram signal is the n-gram's own bits per token (its
    # <unk>), so a new word is not counted twice. A file calibrated before keeps its form (ngram_novelty).
    _, model = usual
    new = "order 512 for a xylophone shipped to Bo on friday"             # 'xylophone' never seen
    ids = model.tokenizer.encode_line(new)
    own = float(np.mean(model.ngram.rows_nll([ids])[0]) / math.log(2))
    sig = model.signals([new], progress=False)
    assert model.unusualness.ngram_novelty is False
    assert sig["ngram"][0] == pytest.approx(own, rel=1e-9)
    path = tmp_path / "before.lm"
    model.save(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["unusual"]["ngram_novelty"]
    torch.save(ckpt, path)
    before = lm.load(path)
    assert before.unusualness.ngram_novelty is True
    assert before.signals([new], progress=False)["ngram"][0] > own       # the novelty bits, as it was calibrated


def test_score_frame_writes_the_unusual_column_and_says_why(usual):
    rows, model = usual
    df = pd.DataFrame({"text": ["order 377 for shoes shipped to Cy on tuesday",
                                "ERROR 0x7f3a: segfault in kernel module snd_hda_intel",
                                rows[5], None]})
    report = lm.score_frame(model, df, "text", top=2)
    assert list(df.columns) == ["text", "text_ppl", "text_bits", "text_unusual"]
    assert np.isnan(df["text_unusual"].iloc[3])
    assert df["text_unusual"].iloc[1] > df["text_unusual"].iloc[0]
    assert report.top[0].index == 1 and report.top[0].why
    assert report.used == list(DEFAULT_SIGNALS)
    # Row 2 was a training row: the report says so.
    assert any("were in the training text" in n for n in report.notes)
    assert "why:" in repr(report) and "lm-why" in report._repr_html_()
    assert "text_unusual" in report.columns


def test_signal_picks_one_signal_or_all(usual):
    rows, model = usual
    df = pd.DataFrame({"text": rows[:20] + ["zzz 000 ### qqq"]})
    report = lm.score_frame(model, df, "text", top=1, signal="knn")
    assert "text_knn" in df.columns and report.signal == "knn"
    assert report.top[0].index == 20
    assert "by the knn signal" in repr(report)
    lm.score_frame(model, df, "text", top=0, signal="all", overwrite=True)
    for s in ("max", "topk", "unseen", "ngram", "knn"):
        assert f"text_{s}" in df.columns
    with pytest.raises(ConfigError, match="signal must be one of"):
        lm.score_frame(model, df, "text", signal="loud", overwrite=True)


def test_explain_names_the_signal_unseen_words_and_the_nearest_row(usual):
    rows, model = usual
    x = lm.explain(model, "order 512 for a xylophone shipped to Bo on friday")
    assert [w for w, _ in x.unseen] == ["xylophone"] and x.unseen[0][1] > 0
    assert x.nearest and 0 < x.nearest_dist < 1 and not x.copied
    assert math.isfinite(x.unusual) and x.why and set(x.percentiles) >= set(DEFAULT_SIGNALS)
    assert "unseen words: 'xylophone'" in repr(x) and "nearest usual row" in repr(x)
    copy = lm.explain(model, model.neighbours.texts[0])
    assert copy.copied and copy.nearest_dist < 0.01
    assert "copy" in copy.why and "in the training text" in repr(copy)


def test_strip_drops_the_index_and_the_score_says_what_it_left_out(usual, tmp_path):
    rows, model = usual
    path = tmp_path / "m.lm"
    model.save(path)
    again = lm.load(path)
    np.testing.assert_allclose(again.unusual(rows[:5]), model.unusual(rows[:5]), rtol=1e-6)
    again.strip()
    assert again.neighbours is None
    df = pd.DataFrame({"text": rows[:5]})
    report = lm.score_frame(again, df, "text", top=1)
    assert "knn" not in report.used and any("left out of the unusual score: knn" in n for n in report.notes)
    with pytest.raises(ConfigError, match="no 'knn' signal"):
        lm.score_frame(again, df, "text", signal="knn", overwrite=True)


def test_a_damaged_field_is_a_one_line_model_file_error(usual, tmp_path):
    _, model = usual
    path = tmp_path / "m.lm"
    model.save(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["unusual"]["calibration"]["weights"] = ["heavy"]
    torch.save(ckpt, path)
    with pytest.raises(ModelFileError, match="damaged: its calibration weights") as err:
        lm.load(path)
    assert "\n" not in str(err.value)


def test_an_older_file_without_the_fields_still_scores(usual, tmp_path):
    rows, model = usual
    path = tmp_path / "old.lm"
    model.save(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["unusual"], ckpt["neighbours"]
    torch.save(ckpt, path)
    old = lm.load(path)
    df = pd.DataFrame({"text": rows[:5] + ["a completely new sentence"]})
    report = lm.score_frame(old, df, "text", top=1)
    np.testing.assert_allclose(df["text_unusual"], df["text_bits"])     # its mean bits, said so
    assert any("no calibration" in n for n in report.notes)
    assert math.isnan(lm.explain(old, "order 1 for shoes").unusual)


def test_a_model_that_learned_little_says_so(usual):
    rows, model = usual
    quick = lm.train(rows, hidden_dim=16, embed_dim=8, max_steps=1, seed=0, val_fraction=0.2)
    note = analysis.training_note(quick)
    assert "learned little" in note
    assert analysis.training_note(model) == ""
    assert any("learned little" in n for n in lm.explain(quick, rows[0]).notes)
    df = pd.DataFrame({"text": rows[:3]})
    assert any("learned little" in n for n in lm.score_frame(quick, df, "text", top=0).notes)
    pytest.importorskip("ipywidgets")
    from lm_magics.widgets.chat import ChatAssistant
    from lm_magics.widgets.panel import CompletionPanel

    panel = CompletionPanel(quick)
    assert "learned little" in panel.status.value
    panel.close()
    chat = ChatAssistant(quick, user_ns={"orders": df})
    for command in ("/explain order 12 for shoes", "/unusual orders.text top 1"):
        chat.send(command)
        assert "learned little" in chat.messages[-1]["text"], command
    chat.close()


def test_an_ngram_model_gets_the_signals_it_can_compute(usual):
    rows, _ = usual
    ng = lm.train(rows, kind="ngram", seed=0, val_fraction=0.2)
    assert analysis.available_signals(ng) == ["ppl", "max", "topk", "unseen", "knn"]
    df = pd.DataFrame({"text": rows[:3] + ["zzz 000 ### qqq"]})
    report = lm.score_frame(ng, df, "text", top=1)
    assert "ngram" not in report.used and report.top[0].index == 3


def test_lm_score_signal_flag(shell, usual):
    rows, model = usual
    shell.user_ns["orders"] = pd.DataFrame({"text": rows[:10] + ["zzz 000 ### qqq"]})
    with registered(shell, "orders_model", model):
        report = shell.run_line_magic("lm_score", "--name orders_model --df orders --column text --top 1 "
                                                  "--signal unseen")
    assert report.signal == "unseen" and "text_unseen" in shell.user_ns["orders"].columns
    assert "text_unusual" in shell.user_ns["orders"].columns


def test_row_scores_for_the_dask_path(usual):
    rows, model = usual
    texts = pd.Series(rows[:4] + [None])
    u = analysis.row_scores(model, texts, "unusual")
    np.testing.assert_allclose(u[:4], model.unusual(rows[:4]), rtol=1e-9)
    assert np.isnan(u[4])
    np.testing.assert_allclose(analysis.row_scores(model, texts, "perplexity")[:4], model.score(rows[:4]), rtol=1e-9)
    with pytest.raises(ConfigError, match="what must be one of"):
        analysis.row_scores(model, texts, "volume")


# ---------------------------------------------------------------------------------------------- group words

def test_a_frequent_topical_word_beats_a_word_seen_twice():
    rows = ([("flight cancelled again, cancelled twice this week", "cancelled")] * 12
            + [("my flight was cancelled and the 386 was full", "cancelled")] * 2
            + [("the 386 shv alternative", "cancelled")]
            + [("lost my bag at the airport, bag still missing", "luggage")] * 12
            + [("the flight was fine and the crew was nice", "other")] * 20
            + [("flight cancelled, bag lost", "other")] * 2)
    df = pd.DataFrame(rows, columns=["text", "reason"])
    out = lm.compare_groups(df, "text", by="reason")
    words = out.table.loc["cancelled", "words"]
    z = dict(zip(words, out.table.loc["cancelled", "word_z"]))
    assert words[0] == "cancelled"
    assert "shv" not in words[:3] and ("shv" not in z or z["cancelled"] > z["shv"])
    assert out.table.loc["luggage", "words"][0] == "bag"
    ranked = dict(analysis.fighting_words({"cancelled": 30, "shv": 2}, {"cancelled": 35, "shv": 2, "the": 200}, 237))
    assert ranked["cancelled"] > ranked["shv"] > 0


def test_group_words_are_case_folded_with_and_without_a_model(tiny_model):
    df = pd.DataFrame({"text": ["The Cat sat", "the cat SAT", "THE CAT sat"] * 4 + ["a dog ran", "A Dog ran"] * 6,
                       "g": ["cats"] * 12 + ["dogs"] * 12})
    plain = lm.compare_groups(df, "text", by="g")
    modelled = lm.compare_groups(df, "text", by="g", model=tiny_model)
    assert plain.table.loc["cats", "words"] == modelled.table.loc["cats", "words"]
    assert "cat" in plain.table.loc["cats", "words"] and "Cat" not in plain.table.loc["cats", "words"]


def test_copy_coverage_is_the_share_of_a_rows_runs_seen_in_training():
    from lm_magics.engine.ngram import CopyIndex

    train = [np.arange(20), np.arange(100, 130)]
    index = CopyIndex.build(train, [0, 1], window=4)
    cover = index.coverage([list(range(20)), list(range(200, 220)), list(range(10)) + list(range(300, 310)), [1, 2]])
    assert cover[0] == 1.0 and cover[1] == 0.0
    assert 0.0 < cover[2] < 1.0
    assert np.isnan(cover[3])                  # shorter than the window: cannot tell
