"""Scoring a DataFrame column: per-row, index-aligned, NaN-safe, batched == one at a time, --into safety."""

import math

import numpy as np
import pandas as pd
import pytest

import lm_magics as lm
from conftest import registered
from lm_magics.errors import ConfigError, DataError
from lm_magics import score_frame
from lm_magics.display import ScoreReport, histogram_svg

TEXT = "\n".join([
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog sat together .",
    "the bird sang on the branch .",
    "the cat saw the bird on the mat .",
] * 8)


@pytest.fixture(scope="module")
def model():
    return lm.train(TEXT, epochs=3, hidden_dim=32, embed_dim=16, seed=0)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {"text": ["the cat sat on the mat .", None, "zebra quantum lollipop", "the dog sat on the log .",
                  float("nan"), "a cat and a dog sat together . the bird sang on the branch ."],
         "label": list("hhshhh")},
        index=[10, 3, 7, 42, 5, 1])


def test_scores_are_per_row_aligned_and_nan_safe(model, frame):
    report = score_frame(model, frame, "text", top=2)
    assert isinstance(report, ScoreReport)
    assert list(frame.columns) == ["text", "label", "text_ppl", "text_bits", "text_unusual"]
    assert list(report.scores.index) == [10, 3, 7, 42, 5, 1]
    assert frame["text_ppl"].isna().tolist() == [False, True, False, False, True, False]
    # Each row scored on its own: the same as scoring that row alone.
    alone = model.score(["zebra quantum lollipop"])[0]
    assert frame.loc[7, "text_ppl"] == pytest.approx(alone, rel=1e-6)
    # bits = log2(perplexity)
    ok = frame["text_ppl"].notna()
    np.testing.assert_allclose(frame.loc[ok, "text_bits"], np.log2(frame.loc[ok, "text_ppl"]), rtol=1e-9)
    # The nonsense row is the most surprising, a training sentence among the least.
    assert report.top[0].index == 7
    assert report.bottom[0].index in (10, 42, 1)
    assert report.missing == 2


def test_duplicate_index_labels_stay_in_place(model):
    df = pd.DataFrame({"text": ["the cat sat on the mat .", "zebra quantum lollipop", None]}, index=[1, 1, 2])
    score_frame(model, df, "text", top=1)
    assert df["text_ppl"].iloc[1] > df["text_ppl"].iloc[0] and np.isnan(df["text_ppl"].iloc[2])
    assert df["text_ppl"].iloc[1] == pytest.approx(model.score(["zebra quantum lollipop"])[0], rel=1e-6)


def test_batched_equals_one_at_a_time(model):
    rng = np.random.default_rng(0)
    words = "the cat dog sat on mat log bird sang branch a and together saw . unknownword".split()
    rows = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 40, size=120)]
    rows[5] = ""   # an empty row is just <eos>
    batched = model.score(pd.Series(rows))
    single = np.array([model.score([r])[0] for r in rows])
    np.testing.assert_allclose(batched.to_numpy(), single, rtol=1e-5)
    # And the per-token surprisal of the report matches the batched NLL.
    nll = model._row_nll(rows[:3])
    for r, v in zip(rows[:3], nll):
        bits = [b for _, b in model.surprisal(r)]
        np.testing.assert_allclose(bits, v[:-1] / math.log(2), rtol=1e-5)


def test_into_never_overwrites_without_overwrite(model, frame):
    frame["score"] = 1.0
    with pytest.raises(ConfigError, match="already exists"):
        score_frame(model, frame, "text", into="score")
    assert (frame["score"] == 1.0).all() and "score_bits" not in frame
    score_frame(model, frame, "text", into="score", overwrite=True)
    assert frame["score"].isna().sum() == 2 and "score_bits" in frame
    # The default columns are protected the same way.
    score_frame(model, frame, "text")
    with pytest.raises(ConfigError, match="--overwrite"):
        score_frame(model, frame, "text")


def test_bad_input_is_one_line(model, frame):
    with pytest.raises(DataError, match="has no column 'txt'"):
        score_frame(model, frame, "txt")
    with pytest.raises(DataError, match="not text"):
        score_frame(model, pd.DataFrame({"n": [1, 2]}), "n")
    with pytest.raises(ConfigError, match="top"):
        score_frame(model, frame, "text", top=-1)
    assert "text_ppl" not in frame      # nothing written by a failed call


def test_report_renders_text_and_html(model, frame):
    report = score_frame(model, frame, "text", top=2)
    text = repr(report)
    assert "Most unusual" in text and "zebra quantum lollipop" in text and "2 missing" in text
    assert "why:" in text and "'text_unusual' (unusualness" in text
    page = report._repr_html_()
    assert page.count("<svg") == 1 and "lm-score-hist" in page
    assert "title='" in page and "bits'" in page  # per-word shading with the bits as tooltip
    assert "&lt;" not in text
    assert len(report.top) == 2 and len(report.bottom) == 2
    assert [w for w, _ in report.top[0].words] == ["zebra", "quantum", "lollipop"]
    assert score_frame(model, frame, "text", top=0, overwrite=True).top == []


def test_html_escapes_row_text(model):
    df = pd.DataFrame({"text": ["<script>alert(1)</script> the cat"]})
    page = score_frame(model, df, "text")._repr_html_()
    assert "<script>" not in page and "&lt;</span>" in page


def test_histogram_handles_constant_and_empty():
    assert histogram_svg(np.array([])) == ""
    assert "<rect" in histogram_svg(np.array([2.0, 2.0, 2.0]))


# ---------------------------------------------------------------------------------------------- magic

@pytest.fixture
def shell(shell, model):
    """The session's shell (tests/conftest.py) with this module's model registered as 'pets'."""
    with registered(shell, "pets", model):
        yield shell


def test_magic_scores_into_the_frame(shell, frame):
    from IPython.core.error import UsageError

    shell.user_ns["df"] = frame
    report = shell.run_line_magic("lm_score", "--df df --column text --into s --top 1")
    assert isinstance(report, ScoreReport) and report.model_name == "pets"
    assert "s" in frame and "s_bits" in frame and len(report.top) == 1
    with pytest.raises(UsageError, match="already exists"):
        shell.run_line_magic("lm_score", "--df df --column text --into s")
    shell.run_line_magic("lm_score", "--df df --column text --into s --overwrite")
    with pytest.raises(UsageError, match="No variable named 'nope'"):
        shell.run_line_magic("lm_score", "--df nope --column text")
    with pytest.raises(UsageError, match="No model named 'other'"):
        shell.run_line_magic("lm_score", "--name other --df df --column text")
    with pytest.raises(UsageError, match="has no column"):
        shell.run_line_magic("lm_score", "--df df --column missing")


def test_scoring_in_chunks_gives_the_same_numbers(tiny_model, monkeypatch):
    import lm_magics.api as api

    rows = ["the cat sat.", None, "a dog ran to the garden", "", "the cat", float("nan"), "late"]
    whole = tiny_model.score(rows)
    monkeypatch.setattr(api, "_SCORE_CHUNK_ROWS", 2)     # four chunks (and a progress bar that stays hidden)
    chunked = tiny_model.score(rows)
    assert np.array_equal(np.isnan(whole), np.isnan(chunked))
    assert np.allclose(whole[~np.isnan(whole)], chunked[~np.isnan(chunked)], rtol=1e-6)   # other batch shapes
