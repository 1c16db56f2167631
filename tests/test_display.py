"""display.py: result objects render plain data, as text (deterministic) and as escaped HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lm_magics.display import (Completions, Generation, ScoredRow, ScoreReport, histogram_svg, interrupted_text,
                               model_html, model_text, shade_words, sparkline_svg)

INFO = {"vocab_size": 1234, "level": "word", "lowercase": True, "num_layers": 1, "hidden_dim": 128,
        "embed_dim": 64, "softmax": "full", "tie_weights": True, "parameters": 98765, "rows": 10,
        "tokens": 2000, "tokens_seen": 6000, "val_ppl": None}


def test_completions_are_plain_data_with_a_table_view():
    c = Completions("the cat", [("sat", 0.5), ("<script>", 0.25)], "pets")
    assert c.words == ["sat", "<script>"] and c.probs == [0.5, 0.25]
    text = repr(c)
    assert "the cat" in text and "sat" in text and "pets" in text
    html = c._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html     # words are escaped in HTML


def test_generation_keeps_prefix_and_text_apart():
    g = Generation("the dog", ", and the cat", "pets", full="the dog, and the cat")
    assert str(g) == "the dog, and the cat" and g.text == ", and the cat"


def test_model_views_come_from_the_info_dict():
    text = model_text(INFO)
    assert "1,234 word tokens (lowercased)" in text and "LSTM 1x128" in text and "98,765" in text
    assert "validation perplexity: n/a" in text
    html = model_html({**INFO, "level": "<script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_shaded_words_escape_and_grow_more_opaque_with_surprisal():
    html = shade_words([("<i>", 1.0), ("cat", 16.0)])
    assert "&lt;i&gt;" in html and "<i>" not in html
    assert "rgba(230,80,40,0.06)" in html and "rgba(230,80,40,1.00)" in html


def test_charts_are_inline_svg_and_empty_without_data():
    assert histogram_svg(np.array([])) == "" and sparkline_svg([1.0]) == ""
    assert histogram_svg(np.array([1.0, 2.0, np.nan, 3.0])).startswith("<svg")
    assert "<polyline" in sparkline_svg([3.0, 2.0, 1.0])


def test_score_report_text_and_html():
    idx = pd.Index(["a", "b"])
    scores = pd.Series([5.0, np.nan], index=idx)
    bits = pd.Series([np.log2(5.0), np.nan], index=idx)
    row = ScoredRow("a", "the <cat>", 5.0, float(np.log2(5.0)), [("the", 1.0), ("<cat>", 3.0)])
    report = ScoreReport("text", "text_ppl", "text_bits", scores, bits, [row], [row], "pets")
    text = repr(report)
    assert "Scored 2 rows of 'text' with 'pets'" in text and "1 missing" in text and "the <cat>" in text
    html = report._repr_html_()
    assert "&lt;cat&gt;" in html and "<cat>" not in html and "lm-score-hist" in html


def test_the_interrupted_line_says_which_model_is_which():
    assert interrupted_text("interrupted", 8, "'good_interrupted'", 440.9, "'good'", 322.9) == (
        "Training interrupted after 8 steps: kept the earlier 'good' (val ppl 322.9); the interrupted model is "
        "'good_interrupted' (val ppl 440.9).")
    assert interrupted_text("stopped", 1, "'new'", None) == (
        "Training stopped after 1 step: kept the best model so far as 'new' (val ppl n/a).")
    assert interrupted_text("interrupted", 1200, "m.interrupted.lm", 2670.0, "m.lm") == (
        "Training interrupted after 1,200 steps: kept the earlier m.lm; the interrupted model is m.interrupted.lm "
        "(val ppl 2,670.0).")
