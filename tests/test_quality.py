"""Quality on real text: after a short, fixed budget of optimizer steps the model beats a unigram model
on the same validation split by a wide margin, and its top next word after a frequent context is a
sensible word. Uses ../shared/data (tinyshakespeare, else wikitext-2's valid.txt); skipped when absent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import lm_magics as lm
from lm_magics.engine.data import prepare
from lm_magics.engine.tokenizer import Tokenizer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"   # ../shared/data

CANDIDATES = [SHARED_DATA / "tinyshakespeare" / "input.txt", SHARED_DATA / "wikitext-2" / "valid.txt"]
FUNCTION_WORDS = {"the", "a", "an", "of", "and", "to", "in", "that", "is", "it", "be"}

# ~4,000 steps x 560 tokens would be an epoch-scale run; 250 steps is a few seconds on 2 cores.
BUDGET = dict(embed_dim=64, hidden_dim=128, num_layers=1, dropout=0.1, batch_size=16, seq_len=35, max_steps=250,
              lr=1e-2, max_vocab=10_000, seed=0)


@pytest.fixture(scope="module")
def corpus_path():
    for p in CANDIDATES:
        if p.exists():
            return p
    pytest.skip(f"real corpora not found under {SHARED_DATA} (tinyshakespeare/input.txt or "
                f"wikitext-2/valid.txt); the quality test needs ../shared/data next to the repository")


@pytest.fixture(scope="module")
def trained(corpus_path):
    text = corpus_path.read_text(encoding="utf-8")
    return text, lm.train(text, **BUDGET)


def _unigram_ppl(model: lm.LanguageModel, text: str) -> float:
    """Perplexity of an add-one unigram model fitted on the model's own training split, on its
    validation split (same rows: the split is seeded)."""
    corpus = prepare(text, Tokenizer.from_dict(model.tokenizer.to_dict()),
                     val_fraction=model.config.val_fraction, seed=model.config.seed)
    assert corpus.val.size == model.meta["val_tokens"]
    counts = np.bincount(corpus.train, minlength=len(model.tokenizer)).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return math.exp(-logp[corpus.val].mean())


@pytest.mark.slow
def test_beats_a_unigram_model_by_a_wide_margin(trained):
    text, model = trained
    assert model.report.steps == BUDGET["max_steps"]
    lstm = model.report.best_val_ppl
    unigram = _unigram_ppl(model, text)
    print(f"validation perplexity {lstm:.1f} vs unigram {unigram:.1f} (ratio {lstm / unigram:.2f})")
    assert lstm < 0.6 * unigram


@pytest.mark.slow
def test_top_next_word_after_a_frequent_context_is_sensible(trained, corpus_path):
    _, model = trained
    specials = {"<unk>", "<eos>"}
    top = model.next_words("of the", k=5)
    first = top[0][0]
    # After "of the" comes a noun or adjective: a real word, and not another function word.
    assert first.isalpha() and first not in specials and first.lower() not in FUNCTION_WORDS, top
    assert sum(w.isalpha() for w, _ in top) >= 4, top
    if corpus_path.parent.name == "tinyshakespeare":
        first_am = model.next_words("I am", k=1)[0][0]
        assert first_am.isalpha() and first_am != "I", first_am
        # A line starts with a capitalized word (every line of the play does).
        assert model.next_words("", k=1)[0][0][0].isupper()
