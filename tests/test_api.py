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
    assert gen == {"n_words", "temperature", "top_k", "top_p", "beam", "seed", "repetition_penalty",
                   "no_repeat_ngram", "stop_at_blank_line"}
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


# ------------------------------------------------------------------------------ continuing (init=)
# Issue 11: settings that made the vocabulary and the network cannot change when continuing; a different
# value is refused in one line, the others apply, and the continued model's config tells the truth.

STRUCTURAL = ("level", "lowercase", "min_freq", "max_vocab", "embed_dim", "hidden_dim", "num_layers",
              "tie_weights", "softmax", "adaptive_threshold")


def _structural(cfg: lm.TrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in STRUCTURAL}


@pytest.mark.parametrize("option", [
    dict(level="char"), dict(level="whitespace"), dict(lowercase=True), dict(min_freq=3), dict(max_vocab=10),
    dict(embed_dim=8), dict(hidden_dim=999), dict(num_layers=2), dict(tie_weights=False), dict(softmax="adaptive"),
    dict(adaptive_threshold=5),
], ids=lambda o: next(iter(o)))
def test_continue_refuses_what_cannot_change(tiny_model, tiny_text, option):
    with pytest.raises(lm.ConfigError) as exc:
        lm.train(tiny_text, init=tiny_model, **option)
    msg = str(exc.value)
    name, value = next(iter(option.items()))
    assert "\n" not in msg and f"{name}={value!r}" in msg and "cannot apply" in msg, msg


def test_continue_lists_every_conflict_at_once(tiny_model, tiny_text):
    # The case: %%lm_train --continue --level char --hidden-dim 999 --lowercase true
    with pytest.raises(lm.ConfigError) as exc:
        lm.train(tiny_text, init=tiny_model, level="char", hidden_dim=999, lowercase=True)
    msg = str(exc.value)
    assert all(s in msg for s in ("level='char' (the model has 'word')", "hidden_dim=999 (the model has 32)",
                                  "lowercase=True (the model has False)")), msg


def test_continue_refuses_a_config_object_that_differs(tiny_model, tiny_text):
    with pytest.raises(lm.ConfigError, match=r"level='char'"):
        lm.train(tiny_text, init=tiny_model, config=lm.TrainConfig(level="char"))


def test_continue_accepts_the_same_values_and_applies_the_others(tiny_model, tiny_text, tmp_path: Path):
    same = {**_structural(tiny_model.config), "softmax": "full"}      # 'full' is what 'auto' gave it
    m2 = lm.train(tiny_text, init=tiny_model, **same, lr=0.002, epochs=1, dropout=0.25,
                  seq_len=9, batch_size=2, seed=7, patience=1)
    assert (m2.config.lr, m2.config.epochs, m2.config.dropout, m2.config.seq_len, m2.config.batch_size,
            m2.config.seed, m2.config.patience) == (0.002, 1, 0.25, 9, 2, 7, 1)
    assert m2.net.drop.p == 0.25 and len(m2.report.history) == 1
    assert _structural(m2.config) == _structural(tiny_model.config)            # 'auto' is kept
    m2.save(tmp_path / "m2.lm")
    assert _structural(lm.load(tmp_path / "m2.lm").config) == _structural(tiny_model.config)


def test_continued_config_tells_the_truth(tiny_model, tiny_text):
    m2 = lm.train(tiny_text, init=tiny_model, epochs=1)
    h = m2.net.hparams()
    assert (m2.config.embed_dim, m2.config.hidden_dim, m2.config.num_layers) == (h["embed_dim"], h["hidden_dim"],
                                                                                h["num_layers"])
    tok = m2.tokenizer
    assert (m2.config.level, m2.config.lowercase, m2.config.min_freq, m2.config.max_vocab) == (
        tok.level, tok.lowercase, tok.min_freq, tok.max_vocab)


def test_a_file_whose_config_lies_loads_with_the_truth(saved_model: Path, tmp_path: Path):
    # What an earlier version saved after `--continue --level char --lowercase true --hidden-dim 999`.
    import torch

    ckpt = torch.load(saved_model, weights_only=True)
    ckpt["config"].update(level="char", lowercase=True, hidden_dim=999)
    torch.save(ckpt, tmp_path / "lying.lm")
    m = lm.load(tmp_path / "lying.lm")
    assert (m.config.level, m.config.lowercase, m.config.hidden_dim) == ("word", False, 32)


def test_adaptive_model_continues_with_its_own_output_layer(tiny_text):
    m = lm.train(tiny_text, hidden_dim=16, embed_dim=8, epochs=1, seed=0, softmax="adaptive")
    m2 = lm.train(tiny_text, init=m, epochs=1, tie_weights=False, softmax="adaptive")
    assert m2.net.adaptive and m2.config.softmax == "adaptive"
    with pytest.raises(lm.ConfigError, match=r"softmax='full' \(the model has 'adaptive'\)"):
        lm.train(tiny_text, init=m, softmax="full")
# ---------------------------------------------------------------------------------------------- n-gram kind,
# baseline, mixture, copies, provenance, model files by kind

DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ngram_model(tiny_text):
    return lm.train(tiny_text, kind="ngram", seed=0)


def test_ngram_kind_has_the_language_model_surface(ngram_model, tiny_text, tmp_path):
    m = ngram_model
    assert m.kind == "ngram" and m.net is None and m.info["order"] == 3      # tiny data: order 3
    words = [w for w, _ in m.next_words("The cat", k=5)]
    assert words and set(words) <= {"sat", "looked", "ran", "walked", "slept", "played"}
    assert m.generate("The cat", n_words=5, seed=0) == m.generate("The cat", n_words=5, seed=0)
    assert m.perplexity(tiny_text) < m.perplexity("zebra quantum gravel.")
    assert [w for w, _ in m.surprisal("The cat sat")] == ["The", "cat", "sat"]
    assert m.score(["The cat sat on the mat.", None])[1] != m.score(["The cat sat on the mat."])[0]
    m.save(tmp_path / "ng.lm")
    back = lm.load(tmp_path / "ng.lm")
    assert back.kind == "ngram" and back.info == m.info
    assert back.next_words("The dog", k=3) == m.next_words("The dog", k=3)


def test_ngram_refuses_network_options_in_one_line(tiny_text):
    with pytest.raises(lm.ConfigError, match="kind='ngram' has no hidden_dim, epochs") as info:
        lm.train(tiny_text, kind="ngram", hidden_dim=64, epochs=3)
    assert "\n" not in str(info.value)
    with pytest.raises(lm.ConfigError, match="cannot be continued"):
        lm.train(tiny_text, init=lm.train(tiny_text, kind="ngram"))


def test_format_1_files_still_load():
    old = lm.load(DATA / "format1.lm")
    assert old.kind == "lstm" and old.baseline is None and old.copies("the cat sat") is None
    assert old.next_words("The cat", k=2)
    assert "not available" in repr(old)


def test_damaged_ngram_tables_are_a_model_file_error(ngram_model, tmp_path):
    from lm_magics.engine import persistence

    path = tmp_path / "bad.lm"
    ngram_model.save(path)
    ckpt = persistence.read_checkpoint(path)
    ckpt["ngram"]["counts"][0] = ckpt["ngram"]["counts"][0][:3]                # sizes no longer match
    persistence.write_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format", "format_version")})
    with pytest.raises(lm.ModelFileError, match="damaged"):
        lm.load(path)


def test_lstm_carries_a_baseline_and_a_mixture_never_worse_on_validation(tiny_model, tiny_text):
    from lm_magics.engine.ngram import stream_rows

    assert tiny_model.info["baseline"]["order"] == 3 and 0 <= tiny_model.meta["mix_weight"] <= 1
    # Held-out rows as the training split saw them: the mixture's perplexity there beats neither part's worse.
    from lm_magics.engine.data import prepare
    from lm_magics.engine.tokenizer import Tokenizer

    corpus = prepare(tiny_text, Tokenizer.from_dict(tiny_model.tokenizer.to_dict()), seed=0)
    rows = [r.tolist() for r in stream_rows(corpus.val, tiny_model.tokenizer.eos_id)]
    nll = {k: np.concatenate(tiny_model.part(k)._predictor.encoded_nll(rows)).mean() for k in ("lstm", "ngram", "mix")}
    assert nll["mix"] <= min(nll["lstm"], nll["ngram"]) + 1e-9


def test_score_frame_with_baseline_and_label(tiny_model):
    pd = pytest.importorskip("pandas", reason="DataFrame columns need the pandas extra (the test extra has it)")
    prose = ["The cat sat on the mat.", "The dog ran to the door.", "A bird looked at the tree."] * 4
    code = ["import os, sys", "for i in range(10): x += i", "def f(a, b): return a * b"] * 4
    df = pd.DataFrame({"text": prose + code, "kind": ["prose"] * 12 + ["code"] * 11 + [None]})
    report = lm.score_frame(tiny_model, df, "text", baseline=True, label="kind", positive="code", top=1)
    assert {"text_ngram_ppl", "text_mix_ppl"} <= set(df.columns)
    # The side columns come from the model's own pass; they are what the parts score on their own.
    for part in ("ngram", "mix"):
        alone = np.exp(tiny_model.part(part).row_mean_nll(df["text"], progress=False))
        np.testing.assert_allclose(df[f"text_{part}_ppl"], alone, rtol=1e-6)
    assert set(report.auc) == {"unusual", "lstm", "ngram", "mix"} and report.labelled == 23
    assert all(v > 0.7 for v in report.auc.values())
    assert "ROC AUC" in repr(report) and "n-gram" in repr(report)
    df["three"] = ["a", "b", "c"] * 8
    with pytest.raises(lm.DataError, match="3 classes"):
        lm.score_frame(tiny_model, df, "text", overwrite=True, label="three", positive="a")
    with pytest.raises(lm.ConfigError, match="not boolean"):
        lm.score_frame(tiny_model, df, "text", overwrite=True, label="kind")
    df["is_code"] = df["kind"] == "code"
    assert lm.score_frame(tiny_model, df, "text", overwrite=True, label="is_code").auc["lstm"] > 0.5
    # without labels: each side score's rank agreement with the model's, and its figure on every shown row
    unlabelled = lm.score_frame(tiny_model, df, "text", overwrite=True, baseline=True, top=2)
    assert set(unlabelled.agreement) == {"ngram", "mix"} and all(-1 <= v <= 1 for v in unlabelled.agreement.values())
    assert "rank agreement" in repr(unlabelled) and "--label" in repr(unlabelled)
    assert set(unlabelled.top[0].side) == {"ngram", "mix"} and "<th>n-gram</th>" in unlabelled._repr_html_()


def test_planted_row_is_flagged_verbatim_not_paraphrased():
    rows = [f"row {i} says the weather is fine today ." for i in range(20)]
    rows.append("patient zeta reported sharp pain in the left knee after the long walk home")
    m = lm.train(rows, kind="ngram", val_fraction=0.0)
    hits = m.copies("so patient zeta reported sharp pain in the left knee after the long walk home")
    assert len(hits) == 1 and hits[0]["row"] == 20 and hits[0]["length"] >= 8
    assert m.copies("patient zeta said a sharp pain hit the left knee after a long walk") == []
    assert m.copied("patient zeta reported", "sharp pain in the left knee after the long walk")[0]["row"] == 20
    assert "copy check" in repr(m) and m.strip().copies("patient zeta") is None
    assert lm.train(rows, kind="ngram", copy_window=0).copies("x") is None


def test_provenance_survives_save_and_load(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("The cat sat on the mat.\nThe dog sat on the log.\n" * 10)
    m = lm.train(lm.files(str(f)), kind="ngram", provenance={"cell": True})
    m.save(tmp_path / "m.lm")
    prov = lm.load(tmp_path / "m.lm").meta["provenance"]
    assert prov["files"][0]["bytes"] == f.stat().st_size and prov["cell"] is True
    assert prov["package"].startswith("lm_magics ")
    assert str(f) in repr(lm.load(tmp_path / "m.lm"))
