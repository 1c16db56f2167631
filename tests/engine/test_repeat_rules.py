"""GenerateConfig's rules against loops (repetition_penalty, no_repeat_ngram, stop_at_blank_line): the same
in every predictor (LSTM, n-gram, mixture), in sampling and in beam search, checked and repeatable."""

from __future__ import annotations

import math
import random

import pytest
import torch

import lm_magics as lm
from lm_magics.engine.inference import RepeatRules
from lm_magics.errors import ConfigError

from conftest import TINY_OPTIONS

RAW = dict(repetition_penalty=1.0, no_repeat_ngram=0, stop_at_blank_line=False)


def play_text(speeches: int = 80, seed: int = 0) -> str:
    """Play-formatted text: a speaker's name on a line, a short speech, a blank line (like tinyshakespeare)."""
    rng = random.Random(seed)
    names = ["MENENIUS:", "MARCIUS:", "First Citizen:", "All:"]
    words = "we are the poor good citizens speak hear me you know our price corn let us kill him".split()
    parts = []
    for _ in range(speeches):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) + rng.choice([".", "!", "?"])
                 for _ in range(rng.randint(1, 2))]
        parts.append("\n".join([rng.choice(names)] + lines))
    return "\n\n".join(parts)


@pytest.fixture(scope="module")
def play_models():
    text = play_text()
    return {"lstm": lm.train(text, **TINY_OPTIONS), "ngram": lm.train(text, kind="ngram", seed=0)}


def _lines(text: str):
    return [line.strip() for line in text.split("\n")]


def _most_in_a_row(lines) -> int:
    best = run = 1 if lines else 0
    for a, b in zip(lines, lines[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


@pytest.mark.parametrize("kind", ["lstm", "ngram"])
def test_defaults_never_write_the_same_line_three_times_in_a_row(play_models, kind):
    from lm_magics.widgets._base import iter_words      # the chat's and the panel's generation

    model = play_models[kind]
    for prefix in ("MENENIUS:", "All:\nwe are", "speak"):
        for temperature in (0.0, 0.8):
            for seed in (0, 1, 2):
                cfg = lm.GenerateConfig(n_words=60, temperature=temperature, seed=seed)
                chat = model.tokenizer.join(list(iter_words(model, prefix, cfg)))
                assert _most_in_a_row(_lines(chat)) < 3, (prefix, temperature, seed, chat)
                text = model.generate_with(prefix, cfg.replace(n_words=40))
                assert _most_in_a_row(_lines(text)) < 3, (prefix, temperature, seed, text)
                assert "\n\n" not in text.strip("\n")                # stop_at_blank_line


@pytest.mark.parametrize("kind", ["lstm", "ngram"])
def test_without_the_rules_the_same_models_loop(play_models, kind):
    """The models of the test above, greedy and with the rules off: lines repeat (what the defaults fix)."""
    model = play_models[kind]
    worst = max(_most_in_a_row(_lines(model.generate(p, n_words=60, temperature=0, **RAW)))
                for p in ("MENENIUS:", "All:\nwe are", "speak"))
    assert worst >= 3


@pytest.mark.parametrize("kind", ["lstm", "ngram"])
def test_the_rules_are_repeatable_with_a_seed(play_models, kind):
    model = play_models[kind]
    for beam in (1, 3):
        a = model.generate("MENENIUS:", n_words=30, temperature=0.8, seed=4, beam=beam)
        assert a == model.generate("MENENIUS:", n_words=30, temperature=0.8, seed=4, beam=beam)


@pytest.mark.parametrize("kind", ["lstm", "ngram"])
@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_is_never_broken(play_models, kind, beam):
    model = play_models[kind]
    tok = model.tokenizer
    for temperature in (0.0, 1.0):
        ids = model._predictor.generate("we are", lm.GenerateConfig(
            n_words=40, temperature=temperature, seed=0, beam=beam, no_repeat_ngram=3, stop_at_blank_line=False))
        seq = tok.encode("we are") + ids
        grams = [tuple(seq[i:i + 3]) for i in range(len(seq) - 2)]
        assert len(grams) == len(set(grams)), tok.decode(ids)


def test_blank_line_ends_the_text_only_after_a_word(play_models):
    model = play_models["ngram"]
    eos = model.tokenizer.eos_id
    for seed in range(6):
        ids = model._predictor.generate("MENENIUS:", lm.GenerateConfig(n_words=60, temperature=1.0, seed=seed))
        words_at = [i for i, t in enumerate(ids) if t != eos]
        # No blank line (two line ends in a row) after the first word; before it, the prefix's line may end.
        after = ids[words_at[0]:] if words_at else []
        assert all(not (a == b == eos) for a, b in zip(after, after[1:])), model.tokenizer.decode(ids)


def test_penalty_and_bans_on_a_distribution():
    words = torch.tensor([False, False, True, True, True, False])   # 0 <unk>, 1 <eos>, 2-4 words, 5 ","
    rules = RepeatRules(lm.GenerateConfig(repetition_penalty=2.0, no_repeat_ngram=2), words, eos=1)
    lp = torch.log(torch.full((6,), 1 / 6))
    out = rules.apply(lp, [1, 2, 5], [3, 5])   # seen: 2, 3 (words) and 5, 1 (not words); last token 5
    assert torch.allclose(out[2], lp[2] - math.log(2)) and torch.allclose(out[4], lp[4])
    assert out[5] == lp[5] and out[1] == lp[1]                  # punctuation and line ends: no penalty
    assert out[3] == -math.inf                                  # "5 3" was written: 3 after 5 is banned
    # weight(), what rejection sampling at temperature 1 keeps a draw with, is the same rule token by token.
    for t in range(6):
        assert rules.weight(t, [1, 2, 5], [3, 5]) == pytest.approx(math.exp(float(out[t] - lp[t])))
    assert torch.equal(RepeatRules(lm.GenerateConfig(**RAW), words, eos=1).apply(lp, [1, 2, 3], []), lp)
    # stop_at_blank_line: no line end right after a line end before the first word; after one, it ends the text.
    blank = RepeatRules(lm.GenerateConfig(**dict(RAW, stop_at_blank_line=True)), words, eos=1)
    assert blank.apply(lp, [1], [])[1] == -math.inf and blank.apply(lp, [1, 2, 1], [])[1] == -math.inf
    assert blank.apply(lp, [1], [2, 1])[1] == lp[1]
    assert blank.ends_text([1], [2, 1], 1) and not blank.ends_text([1, 2, 1], [], 1)
    assert not blank.ends_text([1], [2], 1)


@pytest.mark.parametrize("options, needle", [
    (dict(repetition_penalty=0.5), "repetition_penalty must be at least 1"),
    (dict(no_repeat_ngram=1), "no_repeat_ngram must be 0"),
    (dict(no_repeat_ngram=-2), "no_repeat_ngram must be at least 0"),
    (dict(stop_at_blank_line="yes"), "stop_at_blank_line must be True or False"),
    (dict(repetition_penalty=float("nan")), "repetition_penalty must be a finite number"),
])
def test_the_options_are_checked(options, needle):
    with pytest.raises(ConfigError) as err:
        lm.GenerateConfig(**options)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_flags_come_from_the_config(shell):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no_repeat_ngram must be 0"):
        shell.run_line_magic("lm_generate", "--no-repeat-ngram 1 the cat")
    with pytest.raises(UsageError, match="repetition-penalty: expected a number"):
        shell.run_line_magic("lm_generate", "--repetition-penalty lots the cat")

