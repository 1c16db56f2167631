"""Inference: next-word distributions, the prefix cache, generation (sampling, greedy, beam), scoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import lm_magics as lm
from lm_magics.config import PRECISION_ENV
from lm_magics.engine.inference import Predictor
from lm_magics.engine.precision import native_bf16, scoring_bf16
from lm_magics.engine.tokenizer import SPECIALS


def _fresh(model: lm.LanguageModel) -> Predictor:
    """A predictor with an empty cache over the same weights."""
    return Predictor(model.net, model.tokenizer)


def _full_lp(model: lm.LanguageModel, prefix: str) -> torch.Tensor:
    """Log-probs after prefix computed from scratch, no cache at all."""
    ids = _fresh(model).context_ids(prefix)
    with torch.no_grad():
        feats, _ = model.net.features(torch.tensor(ids).view(-1, 1))
        return model.net.log_probs(feats[-1])[0]


def test_next_words_sorted_probabilities(tiny_model):
    out = tiny_model.next_words("the cat", k=8)
    assert len(out) == 8
    probs = [p for _, p in out]
    assert probs == sorted(probs, reverse=True)
    assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
    assert all(isinstance(w, str) for w, _ in out)


def test_special_tokens_hidden_by_default(tiny_model):
    V = len(tiny_model.tokenizer)
    words = [w for w, _ in tiny_model.next_words("the cat sat on the mat.", k=V)]
    assert not set(words) & set(SPECIALS) and len(words) == V - len(SPECIALS)
    with_special = tiny_model.next_words("the cat sat on the mat.", k=V, include_special=True)
    assert {w for w, _ in with_special} >= set(SPECIALS)
    assert abs(sum(p for _, p in with_special) - 1) < 1e-4        # the whole vocabulary sums to 1


def test_unseen_and_empty_prefix(tiny_model):
    unseen = tiny_model.next_words("zyzzyva quokka", k=3)
    assert len(unseen) == 3
    # Unseen words are <unk>: same distribution as an explicit <unk> prefix.
    assert unseen == tiny_model.next_words("<unk> <unk>", k=3)
    empty = tiny_model.next_words("", k=3)
    assert empty == tiny_model.next_words("   ", k=3) and len(empty) == 3
    # "Start of text": the sentence-initial capitalized words should lead.
    assert any(w[0].isupper() for w, _ in tiny_model.next_words("", k=3))


def test_startswith(tiny_model):
    out = tiny_model.next_words("the", k=5, startswith="c")
    assert out and all(w.startswith("c") for w, _ in out)
    assert [w for w, _ in out] == [w for w, _ in tiny_model.next_words("the", k=100) if w.startswith("c")][:5]
    assert tiny_model.next_words("the", startswith="qqq") == []
    assert tiny_model.next_words("the", startswith="<") == []                      # specials hidden


def test_cached_prediction_equals_fresh_prediction(model_copy):
    m = model_copy
    typed = "The cat sat on the mat , because it was"
    words = typed.split()
    # Type word by word, then backspace to shorter prefixes: every answer equals a from-scratch one.
    sequence = [" ".join(words[:i]) for i in range(len(words) + 1)] + [" ".join(words[:3]), words[0], ""]
    for prefix in sequence:
        cached = m._predictor.log_probs_after(m._predictor.context_ids(prefix))
        assert torch.allclose(cached, _full_lp(m, prefix), atol=1e-5), prefix
        got = m.next_words(prefix, k=5)
        fresh = _fresh(m).next_words(prefix, k=5)
        assert [w for w, _ in got] == [w for w, _ in fresh]
        assert np.allclose([p for _, p in got], [p for _, p in fresh], atol=1e-5)
    m._predictor.clear_cache()
    assert m._predictor._checkpoints == [] and m._predictor._last is None


def test_generate_with_seed_is_repeatable(tiny_model):
    a = tiny_model.generate("the cat", n_words=12, seed=3)
    b = tiny_model.generate("the cat", n_words=12, seed=3)
    assert a == b and a
    texts = {tiny_model.generate("the cat", n_words=12, seed=s) for s in range(6)}
    assert len(texts) > 1


def _ids(model, text):
    return model.tokenizer.encode(text)


# The model's own distribution: no rules against loops (GenerateConfig's defaults have them on).
RAW = dict(repetition_penalty=1.0, no_repeat_ngram=0, stop_at_blank_line=False)


def test_temperature_zero_is_the_argmax_chain(tiny_model):
    n = 8
    out = tiny_model._predictor.generate("the dog", lm.GenerateConfig(n_words=n, temperature=0, **RAW))
    # Rebuild the chain by hand from fresh full-prefix predictions.
    pred = _fresh(tiny_model)
    ctx = pred.context_ids("the dog")
    chain = []
    for _ in range(n):
        lp = pred.log_probs_after(ctx).clone()
        lp[tiny_model.tokenizer.unk_id] = -math.inf
        nxt = int(torch.argmax(lp))
        chain.append(nxt)
        ctx = ctx + [nxt]
    assert out == chain
    # top_k=1 sampling is greedy too, whatever the seed and temperature.
    for seed in (0, 1):
        assert tiny_model._predictor.generate(
            "the dog", lm.GenerateConfig(n_words=n, temperature=1.5, top_k=1, seed=seed, **RAW)) == chain
    assert tiny_model.generate("the dog", n_words=n, temperature=0, **RAW) == tiny_model.tokenizer.decode(chain)


def test_top_p_small_is_greedy(tiny_model):
    greedy = tiny_model.generate("a bird", n_words=6, temperature=0)
    assert tiny_model.generate("a bird", n_words=6, top_p=1e-6, seed=1) == greedy


def test_beam_search(tiny_model):
    ids = tiny_model._predictor.generate("the cat", lm.GenerateConfig(n_words=7, beam=4, **RAW))
    assert len(ids) == 7 and tiny_model.tokenizer.unk_id not in ids
    beam_text = tiny_model.generate("the cat", n_words=7, beam=4, **RAW)
    assert beam_text == tiny_model.tokenizer.decode(ids)
    # Beam search finds a continuation at least as likely as greedy (per token, as it ranks them).
    def logp(cont):
        pred, ctx, total = _fresh(tiny_model), _fresh(tiny_model).context_ids("the cat"), 0.0
        for t in cont:
            total += float(pred.log_probs_after(ctx)[t])
            ctx = ctx + [t]
        return total
    greedy = tiny_model._predictor.generate("the cat", lm.GenerateConfig(n_words=7, temperature=0, **RAW))
    assert logp(ids) >= logp(greedy) - 1e-4


def test_stop_at_eos_and_include_prefix(tiny_model):
    text = tiny_model.generate("the cat", n_words=40, temperature=0, stop_at_eos=True)
    assert "\n" not in text
    full = tiny_model.generate("the cat", n_words=3, temperature=0, include_prefix=True)
    assert full.startswith("the cat")
    toks = list(tiny_model.iter_generate("the cat", lm.GenerateConfig(n_words=5, temperature=0)))
    assert all(isinstance(t, str) for t in toks) and len(toks) <= 5


def test_batched_scoring_equals_one_at_a_time(tiny_model):
    rows = ["the cat", "A bird ran to the garden, because it was late.", "x", "",
            "my friend " * 30, "The children played with the door!", "zyzzyva"]
    together = tiny_model.score(rows)
    alone = np.array([tiny_model.score([r])[0] for r in rows])
    assert together.shape == (len(rows),)
    assert np.allclose(together, alone, rtol=1e-6, atol=0)
    assert np.all(np.isfinite(together)) and np.all(together >= 1)


def _many_rows(n: int = 400) -> list:
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and dog ran to river garden because it was late".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_with_threads_equals_one_at_a_time(tiny_model, monkeypatch, precision):
    """Many rows over two threads (whole batches per worker) at either scoring precision: the same
    numbers as one row per call. In bf16 only the normaliser's matmul is rounded, identically per row."""
    monkeypatch.setenv(PRECISION_ENV, precision)
    rows = _many_rows()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = tiny_model.score(rows)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads        # the workers' single-thread setting is put back
    alone = np.array([tiny_model.score([r])[0] for r in rows[:40]])
    assert np.allclose(together[:40], alone, rtol=1e-5, atol=0)


def test_bf16_scoring_stays_close_to_fp32(tiny_model, monkeypatch):
    rows = _many_rows(60)
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    exact = tiny_model.score(rows)
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    rounded = tiny_model.score(rows)
    assert np.all(np.abs(rounded / exact - 1) < 0.02)   # stated tolerance: a row's perplexity within 2%


def test_scoring_precision_follows_the_env_and_the_model(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert scoring_bf16("bf16", cpu) is False and scoring_bf16("auto", cpu) is False
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert scoring_bf16("fp32", cpu) is True
    monkeypatch.delenv(PRECISION_ENV)
    assert scoring_bf16("fp32", cpu) is False and scoring_bf16("bf16", cpu) is True
    assert scoring_bf16("auto", cpu) is native_bf16(cpu)


def test_score_series_keeps_index_and_gives_nan_for_missing(tiny_model):
    s = pd.Series(["the cat sat.", None, "a dog", float("nan"), pd.NA],
                  index=["a", "b", "c", "d", "e"], dtype=object)
    out = tiny_model.score(s)
    assert isinstance(out, pd.Series) and list(out.index) == list(s.index)
    assert out.isna().tolist() == [False, True, False, True, True]
    assert out["a"] == pytest.approx(tiny_model.score(["the cat sat."])[0], rel=1e-9)
    bits = tiny_model.bits_per_word(s)
    assert bits["c"] == pytest.approx(math.log2(out["c"]), rel=1e-9)


def test_surprisal_is_consistent_with_score_and_perplexity(tiny_model):
    text = "The cat sat on the mat, because it was late."
    sur = tiny_model.surprisal(text)
    assert [w for w, _ in sur] == tiny_model.tokenizer.tokenize(text)
    assert all(b >= 0 for _, b in sur)
    # score counts the row's <eos> too: rebuild it from the surprisal plus the end-of-row token.
    nll = tiny_model._predictor.row_nll([text])[0]
    assert np.allclose(np.array([b for _, b in sur]) * math.log(2), nll[:-1], atol=1e-9)
    assert math.exp(nll.mean()) == pytest.approx(tiny_model.score([text])[0], rel=1e-9)
    # perplexity of several rows = exp(total nats / total tokens).
    rows = [text, "the dog"]
    nlls = tiny_model._predictor.row_nll(rows)
    expect = math.exp(sum(v.sum() for v in nlls) / sum(len(v) for v in nlls))
    assert tiny_model.perplexity(rows) == pytest.approx(expect, rel=1e-9)
    assert tiny_model.perplexity(text + "\nthe dog") == pytest.approx(expect, rel=1e-9)


def test_surprisal_shows_unseen_words_as_written(tiny_model):
    sur = tiny_model.surprisal("the zyzzyva sat")
    assert [w for w, _ in sur] == ["the", "zyzzyva", "sat"]


def test_cache_is_thread_safe(model_copy):
    import threading

    errors = []
    prefixes = ["the cat", "the cat sat", "a bird", "", "the old man looked"]
    expect = {p: _fresh(model_copy).next_words(p, k=3) for p in prefixes}

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(30):
            p = prefixes[rng.integers(len(prefixes))]
            got = model_copy.next_words(p, k=3)
            if [w for w, _ in got] != [w for w, _ in expect[p]]:
                errors.append(p)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ------------------------------------------------------------------ issue 11: numerically safe sampling

@pytest.mark.parametrize("temperature", [5e-324, 1e-300, 1e-45, 1e-8, 1e-3, 0.5, 1.5, 10.0, 99.99, 100.0])
@pytest.mark.parametrize("top_p", [5e-324, 1e-300, 1e-12, 0.3, 1.0])
def test_pick_is_a_valid_draw_for_every_allowed_setting(temperature, top_p):
    # float32 turned lp / 1e-300 into all -inf and lp / 1e308 into NaN, and a top_p below float32's
    # smallest number cut every word: "probability tensor contains either inf, nan or element < 0".
    from lm_magics.engine.inference import _pick

    lp = torch.log_softmax(torch.randn(50, generator=torch.Generator().manual_seed(0)) * 8, -1)   # (V,) float32
    lp[3] = -math.inf                                          # a word the network never predicts
    before = lp.clone()
    cfg = lm.GenerateConfig(temperature=temperature, top_p=top_p)
    gen = torch.Generator().manual_seed(1)
    picks = {_pick(lp, cfg, gen, unk=0) for _ in range(20)}
    assert torch.equal(lp, before)                             # the caller's log-probs are untouched
    assert picks and all(0 < i < 50 and i != 3 for i in picks)
    if temperature < 1e-3 or top_p < 1e-3:                     # effectively greedy
        best = int(torch.argmax(torch.where(torch.arange(50) == 0, -math.inf, lp)))
        assert picks == {best}


def test_extreme_but_allowed_settings_through_generate(tiny_model):
    for kw in (dict(temperature=100.0), dict(temperature=1e-300), dict(top_p=1e-320), dict(seed=2**63 - 1)):
        assert isinstance(tiny_model.generate("the cat", n_words=5, **kw), str)
    assert tiny_model.generate("the cat", n_words=6, temperature=1e-300, seed=3) == \
        tiny_model.generate("the cat", n_words=6, temperature=0)
