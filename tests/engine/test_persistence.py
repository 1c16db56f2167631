"""Model files: exact round trip, plain-dict format, metadata, atomic writes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch

import lm_magics as lm
from lm_magics.engine import persistence
from lm_magics.engine.inference import Predictor


def test_round_trip_is_exact(tiny_model, tmp_path: Path):
    path = tmp_path / "m.lm"
    tiny_model.save(path)
    back = lm.load(path)
    sa, sb = tiny_model.net.state_dict(), back.net.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # Same weights and the same (empty) cache history: bit-identical probabilities. (The shared model's
    # cache may hold states from other tests, and a state reached in steps differs in the last bits.)
    original = Predictor(tiny_model.net, tiny_model.tokenizer)
    for prefix in ("", "the cat", "zyzzyva sat on"):
        assert back.next_words(prefix, k=10) == original.next_words(prefix, k=10)
    cfg = lm.GenerateConfig(n_words=10, seed=0)
    assert back._predictor.generate("the", cfg) == original.generate("the", cfg)
    assert back.vocab == tiny_model.vocab
    assert back.config == tiny_model.config
    assert back.net.tied == tiny_model.net.tied
    # Tied weights are still one tensor after loading.
    if back.net.tied:
        assert back.net.decoder.weight is back.net.embed.weight


def test_info_and_meta_preserved(tiny_model, saved_model: Path):
    back = lm.load(saved_model)
    assert back.info == tiny_model.info
    for key in ("rows", "tokens", "tokens_seen", "val_ppl", "seed", "fingerprint", "elapsed", "runs",
                "history", "trained_at"):
        assert back.meta[key] == tiny_model.meta[key], key
    assert back.report is None and back.interrupted is False


def test_file_is_a_plain_dict_loadable_with_weights_only(saved_model: Path):
    assert saved_model.read_bytes()[:4] == b"PK\x03\x04"
    ckpt = torch.load(saved_model, weights_only=True)
    assert ckpt["format"] == "lm_magics.model" and ckpt["format_version"] == persistence.FORMAT_VERSION
    assert set(ckpt) >= {"hparams", "config", "tokenizer", "state_dict", "meta"}
    assert isinstance(ckpt["tokenizer"]["itos"], list)


def test_adaptive_model_round_trip(tiny_text, tmp_path: Path):
    m = lm.train(tiny_text, hidden_dim=32, embed_dim=16, epochs=1, seed=0, softmax="adaptive")
    assert m.info["softmax"] == "adaptive"
    m.save(tmp_path / "a.lm")
    back = lm.load(tmp_path / "a.lm")
    assert back.info["softmax"] == "adaptive" and back.net.cutoffs == m.net.cutoffs
    assert back.next_words("the cat", k=5) == m.next_words("the cat", k=5)


def test_save_over_existing_file_replaces_it_whole(tiny_model, tmp_path: Path, tiny_text):
    path = tmp_path / "m.lm"
    tiny_model.save(path)
    other = lm.train(tiny_text, hidden_dim=16, embed_dim=8, epochs=1, seed=5)
    other.save(path)
    assert lm.load(path).info["hidden_dim"] == 16
    assert [p.name for p in tmp_path.iterdir()] == ["m.lm"]            # no temp files left behind


def test_save_accepts_str_and_home(tiny_model, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    tiny_model.save("~/home.lm")
    assert (tmp_path / "home.lm").exists()
    assert lm.load("~/home.lm").vocab == tiny_model.vocab


def test_save_errors(tiny_model, tmp_path: Path):
    with pytest.raises(lm.ModelFileError, match="directory"):
        tiny_model.save(tmp_path)
    with pytest.raises(lm.ModelFileError, match="does not exist"):
        tiny_model.save(tmp_path / "no" / "such" / "m.lm")


def test_failed_write_leaves_old_file_and_no_temp(tiny_model, saved_model: Path, monkeypatch):
    before = saved_model.read_bytes()

    def broken(obj, fh, *a, **k):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(persistence.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        tiny_model.save(saved_model)
    assert saved_model.read_bytes() == before
    assert sorted(os.listdir(saved_model.parent)) == [saved_model.name]


def test_read_checkpoint_checks_format(tmp_path: Path):
    p = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, p)
    with pytest.raises(lm.ModelFileError, match="not an lm_magics model"):
        lm.load(p)
    assert zipfile.is_zipfile(p)
