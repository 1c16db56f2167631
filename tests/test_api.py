"""The public Python API: the contract that magics, widgets, the CLI and users rely on."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lm_magics as lm

PUBLIC = {"train", "load", "files", "LanguageModel", "TrainConfig", "GenerateConfig", "TrainReport",
          "StepInfo", "EpochInfo", "StopTraining", "LMError", "ConfigError", "DataError", "ModelFileError",
          "ModelNotFoundError", "load_ipython_extension", "unload_ipython_extension", "__version__"}


def test_all_is_explicit_and_importable():
    assert PUBLIC <= set(lm.__all__)
    for name in lm.__all__:
        assert hasattr(lm, name), name
    assert isinstance(lm.__version__, str)


def test_error_tree():
    for cls in (lm.ConfigError, lm.DataError, lm.ModelFileError, lm.ModelNotFoundError):
        assert issubclass(cls, lm.LMError)
    assert issubclass(lm.ConfigError, ValueError) and issubclass(lm.DataError, ValueError)
    assert issubclass(lm.ModelFileError, OSError) and issubclass(lm.ModelNotFoundError, KeyError)
    assert str(lm.ModelNotFoundError("No model named 'x'.")) == "No model named 'x'."


def test_option_names_are_the_config_fields():
    names = {f.name for f in dataclasses.fields(lm.TrainConfig)}
    assert {"embed_dim", "hidden_dim", "num_layers", "dropout", "seq_len", "batch_size", "epochs", "lr",
            "seed", "device", "min_freq", "max_vocab", "lowercase", "val_fraction"} <= names
    gen = {f.name for f in dataclasses.fields(lm.GenerateConfig)}
    assert gen == {"n_words", "temperature", "top_k", "top_p", "beam", "seed"}
    # generate() takes exactly the GenerateConfig options (plus its own flags).
    params = set(inspect.signature(lm.LanguageModel.generate).parameters) - {"self", "prefix"}
    assert gen <= params


def test_train_returns_a_language_model_with_a_report(tiny_model, tiny_options):
    m = tiny_model
    assert isinstance(m, lm.LanguageModel) and isinstance(m.report, lm.TrainReport)
    assert m.config.hidden_dim == 32 and m.config.seed == 0
    assert m.report.elapsed > 0 and m.report.tokens_per_s > 0 and m.report.losses
    assert m.report.stop_reason in ("finished", "early stop")
    info = m.info
    for key in ("vocab_size", "parameters", "embed_dim", "hidden_dim", "num_layers", "softmax", "tokens",
                "tokens_seen", "val_ppl", "seed", "fingerprint", "rows"):
        assert key in info, key
    assert info["vocab_size"] == len(m.vocab) and info["parameters"] == m.net.num_parameters()
    assert math.isfinite(info["val_ppl"]) and info["val_ppl"] > 1


def test_config_object_and_keyword_overrides(tiny_text):
    base = lm.TrainConfig(hidden_dim=16, embed_dim=8, epochs=1, seed=0)
    m = lm.train(tiny_text, config=base, epochs=2)
    assert m.config.hidden_dim == 16 and len(m.report.history) == 2
    assert base.epochs == 1                                    # the config object is not modified


@pytest.mark.parametrize("make", [
    lambda lines: "\n".join(lines),
    lambda lines: lines,
    lambda lines: tuple(lines),
    lambda lines: (x for x in lines),
    lambda lines: pd.Series(lines + [None]),
], ids=["str", "list", "tuple", "generator", "series"])
def test_data_kinds_give_the_same_model(tiny_text, make):
    lines = tiny_text.splitlines()
    ref = lm.train(lines, hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    m = lm.train(make(lines), hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    assert m.vocab == ref.vocab and m.meta["fingerprint"] == ref.meta["fingerprint"]


def test_files_and_paths(tiny_text, tmp_path: Path):
    (tmp_path / "a.txt").write_text(tiny_text, encoding="utf-8")
    m1 = lm.train(lm.files(tmp_path / "*.txt"), hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    m2 = lm.train(tmp_path / "a.txt", hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    m3 = lm.train(tiny_text, hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    assert m1.meta["fingerprint"] == m2.meta["fingerprint"] == m3.meta["fingerprint"]


def test_val_data(tiny_text):
    lines = tiny_text.splitlines()
    m = lm.train(lines[:50], val_data=lines[50:], hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    assert m.meta["rows"] == 50 and m.meta["val_tokens"] > 0


def test_prediction_api_shapes(tiny_model):
    words = tiny_model.next_words("the cat", k=3)
    assert isinstance(words, list) and all(isinstance(w, str) and isinstance(p, float) for w, p in words)
    assert isinstance(tiny_model.generate("the", n_words=5, seed=0), str)
    cfg = lm.GenerateConfig(n_words=5, seed=0)
    assert tiny_model.generate_with("the", cfg) == tiny_model.generate("the", n_words=5, seed=0)
    toks = list(tiny_model.iter_generate("the", lm.GenerateConfig(n_words=5, temperature=0)))
    greedy_ids = tiny_model._predictor.generate("the", lm.GenerateConfig(n_words=5, temperature=0), True)
    assert toks == [tiny_model.tokenizer.itos[i] for i in greedy_ids if i != tiny_model.tokenizer.eos_id][:len(toks)]
    assert isinstance(tiny_model.perplexity(["the cat sat."]), float)
    scores = tiny_model.score(["the cat", "a dog"])
    assert isinstance(scores, np.ndarray) and scores.shape == (2,)
    bits = tiny_model.bits_per_word(["the cat", "a dog"])
    assert np.allclose(2 ** bits, scores)
    sur = tiny_model.surprisal("the cat sat")
    assert [w for w, _ in sur] == ["the", "cat", "sat"] and all(isinstance(b, float) for _, b in sur)


def test_text_and_html_reprs(tiny_model):
    text = repr(tiny_model)
    assert "vocabulary" in text and "\n" in text
    html = tiny_model._repr_html_()
    assert html.lstrip().startswith("<") and "vocabulary" in html.lower()


def test_to_device_cpu(model_copy):
    before = model_copy.next_words("the", k=3)
    assert model_copy.to("cpu") is model_copy
    assert model_copy.next_words("the", k=3) == before


def test_interrupted_flag_on_a_loaded_model(saved_model):
    m = lm.load(saved_model)
    assert m.interrupted is False and m.report is None
