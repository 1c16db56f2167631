"""One formatter for a probability, a token and a number, and the views that use it: the training summary,
``%lm_complete``, ``%lm_explain`` / ``/explain`` and ``/compare`` (text and HTML alike)."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest

import lm_magics as lm
from lm_magics.display import Completions, Explanation, GroupComparison, TrainSummary
from lm_magics.engine.tokenizer import EOS, UNK
from lm_magics.formatting import END_OF_LINE, is_punct, num_text, pairs_text, prob_text, token_text

# A probability entry that reads 0% or 100%: "the 0%", "the 0.0%", ": 100%".
ZERO_OR_ALL = re.compile(r"(?<![<>\d.])(0|0\.0+|100|100\.0+)%")
NEGATIVE_ZERO = re.compile(r"[-−]0(\.0+)?(?!\.?\d*[1-9])")


def _clean(text: str) -> str:
    """The text as a reader sees it (HTML without tags), checked: no 0% or 100%, no negative zero."""
    if text.startswith("<"):        # an HTML view
        text = html.unescape(re.sub(r"<svg.*?</svg>|<[^>]+>", "", text, flags=re.S))
    assert not ZERO_OR_ALL.search(text), text
    assert not NEGATIVE_ZERO.search(text), text
    return text


def test_prob_text_never_rounds_to_nothing_or_everything():
    assert [prob_text(p) for p in (1e-30, 0.004, 0.0051, 0.42, 0.994, 0.996, 1 - 1e-12)] == [
        "<1%", "<1%", "1%", "42%", "99%", ">99%", ">99%"]
    assert prob_text(0.0) == "<1%" and prob_text(1.0) == ">99%"          # a model's float that ran out of digits
    assert prob_text(0.0, exact=True) == "0%" and prob_text(1.0, exact=True) == "100%"
    assert [prob_text(p, 1) for p in (0.0004, 0.0006, 0.9996, 0.5)] == ["<0.1%", "0.1%", ">99.9%", "50.0%"]
    assert prob_text(float("nan")) == "n/a"


def test_token_text_shows_what_cannot_be_seen():
    assert [token_text(t) for t in ("cat", ",", ".", "--", "'s", "n't", "3", EOS, UNK)] == [
        "cat", "“,”", "“.”", "“--”", "'s", "n't", "3", END_OF_LINE, "<unk>"]
    assert END_OF_LINE.startswith("⏎") and not is_punct(EOS) and not is_punct(UNK) and is_punct("?!")
    assert pairs_text([(EOS, 0.9), (",", 0.001), ("cat", 0.0)]) == f"{END_OF_LINE} 90%, “,” <1%, cat <1%"
    assert pairs_text([]) == "(none)"


def test_num_text_never_writes_negative_zero():
    assert [num_text(x, 2) for x in (-0.0, -0.001, 0.004, -0.006, 1.234)] == ["0.00", "0.00", "0.00", "-0.01", "1.23"]
    assert [num_text(x, 2, sign=True) for x in (-0.004, 0.004, 0.25, -0.25)] == ["0.00", "0.00", "+0.25", "-0.25"]
    assert num_text(-0.04) == "0.0" and num_text(None) == "n/a" and num_text(float("inf")) == "n/a"
    assert num_text(-0.001, 2, sign=True, width=6) == "  0.00"


# ------------------------------------------------------------------------------------------ the views


def test_the_training_summary_samples_read_clearly(tiny_model):
    s = TrainSummary("shake", tiny_model, [("MENENIUS", [(":", 0.99999), ("?", 0.00001), (EOS, 0.0)]),
                                         ("the", [(EOS, 0.6), ("king", 0.2), (",", 0.004)])])
    for view in (repr(s), s._repr_html_()):
        text = _clean(view)
        assert "“:” >99%" in text and "“?” <1%" in text and f"{END_OF_LINE} <1%" in text
        assert f"{END_OF_LINE} 60%" in text and "“,” <1%" in text and "<eos>" not in text


def test_completions_read_clearly():
    c = Completions("the", [("cat", 0.9996), (",", 0.0004), (EOS, 0.0002)])
    for view in (repr(c), c._repr_html_()):
        text = _clean(view)
        assert "“,”" in text and END_OF_LINE in text and ">99.9%" in text and "<0.1%" in text


def test_explain_lists_the_end_of_line_and_no_zero_percent(tiny_model):
    # After a sentence's final "." the model expects the line to end: that is what explain must show.
    text = "the cat sat on the mat . the"
    e = lm.explain(tiny_model, text, top=8, k=3)
    expected = {pos: alts for pos, _, _, alts in e.alternatives}
    shown = [w for w, _ in e.words]
    for pos, alts in expected.items():
        words = [w for w, _ in tiny_model.next_words(tiny_model.tokenizer.join(shown[:pos]), 3, include_special=True)]
        assert [w for w, _ in alts] == words
    assert any(w == EOS for alts in expected.values() for w, _ in alts), e
    for view in (repr(e), e._repr_html_()):
        text = _clean(view)
        assert END_OF_LINE in text and "<eos>" not in text


def test_explain_and_compare_never_show_negative_zero():
    e = Explanation("a b", [("a", -0.0001), ("b", 0.02)], [(0, "a", -0.0001, [(",", 0.0), ("b", 1.0)])], "m")
    for view in (repr(e), e._repr_html_()):
        text = _clean(view)
        assert "“,” <1%" in text and "b >99%" in text and "0.0 bits" in text
    table = pd.DataFrame({"rows": [6, 7], "bits": [3.0, 2.9971], "rest_bits": [2.9998, 3.0],
                          "excess_bits": [0.0002, -0.0029], "ngram_excess_bits": [-0.001, 0.001],
                          "words": [["a"], ["b"]]}, index=["x", "y"])
    g = GroupComparison("text", "group", table, {}, 5, "m", agreement=-0.0004)
    for view in (repr(g), g._repr_html_()):
        assert "0.00" in _clean(view)


def test_the_chats_next_and_score_use_the_formatter(tiny_model):
    pytest.importorskip("ipywidgets")
    from lm_magics.registry import ModelRegistry
    from lm_magics.widgets import ChatAssistant

    reg = ModelRegistry()
    reg.set("pets", tiny_model)
    chat = ChatAssistant("pets", registry=reg, user_ns={})
    chat.send("/next the cat sat on the mat .")
    said = chat.messages[-1]["text"]
    assert said.startswith("after ") and "%lm_complete" in said, said   # its offered line lists words only
    _clean(said)
    chat.send("/score the cat sat on the mat .")
    _clean(chat.messages[-1]["text"])
