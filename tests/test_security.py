"""Model files never run code, and are never half-written (issue 7, items 2 and 3).

* A malicious pickle (its ``__reduce__`` creates a marker file) saved under a model-file name, as a raw
  pickle, as a ``torch.save`` zip, and hidden inside an otherwise valid checkpoint, is refused by
  ``lm.load`` and by the CLI with a ModelFileError, and the marker never appears. A control shows
  the payload is live: plain ``pickle.load`` does create the marker.
* Saving over an existing model is atomic: a child process killed with SIGKILL in the middle of
  writing a large model leaves the old file loadable with identical predictions. A SIGKILL leaves no
  chance to clean up, so a hidden ``.NAME.*.tmp`` file may remain beside the model; it is never
  mistaken for the model and can be deleted. A KeyboardInterrupt (or any error) during save removes
  its temp file and leaves the old file byte-identical.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import lm_magics as lm
from lm_magics.engine import persistence
from lm_magics.engine.inference import Predictor

REPO = Path(__file__).resolve().parents[1]


class Evil:
    """Unpickling this creates a marker file (stands in for any code an attacker would run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _predictions(model):
    pred = Predictor(model.net, model.tokenizer)
    return [pred.next_words(p, k=10) for p in ("", "the cat", "a bird ran")]


def _malicious_files(tmp_path: Path, marker: Path, saved_model: Path) -> dict:
    files = {}
    raw = tmp_path / "raw_pickle.lm"
    with open(raw, "wb") as fh:
        pickle.dump({"format": "lm_magics.model", "payload": Evil(marker)}, fh)
    files["raw pickle"] = raw
    zipped = tmp_path / "torch_zip.lm"
    torch.save({"payload": Evil(marker)}, zipped)
    files["torch.save zip"] = zipped
    legacy = tmp_path / "torch_legacy.lm"
    torch.save(Evil(marker), legacy, _use_new_zipfile_serialization=False)
    files["torch legacy format"] = legacy
    # The sneakiest: a real, valid checkpoint with one evil object tucked into its metadata.
    ckpt = torch.load(saved_model, weights_only=True)
    ckpt["meta"]["note"] = Evil(marker)
    hidden = tmp_path / "valid_with_payload.lm"
    torch.save(ckpt, hidden)
    files["valid checkpoint + payload"] = hidden
    return files


def test_the_payload_is_live(tmp_path: Path):
    marker = tmp_path / "control_marker"
    raw = io.BytesIO()
    pickle.dump(Evil(marker), raw)
    pickle.loads(raw.getvalue())          # what an unsafe loader would do
    assert marker.exists()


def test_load_refuses_malicious_pickles(tmp_path: Path, saved_model: Path):
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path, marker, saved_model)
    for kind, path in files.items():
        with pytest.raises(lm.ModelFileError) as info:
            lm.load(path)
        msg = str(info.value)
        assert "\n" not in msg and ("not a model file" in msg or "never runs code" in msg
                                    or "Refused" in msg), (kind, msg)
        assert not marker.exists(), f"{kind}: code ran while loading"
    assert len(files) == 4


def test_cli_refuses_malicious_pickles(tmp_path: Path, saved_model: Path, capsys):
    from lm_magics.cli import main

    marker = tmp_path / "PWNED_CLI"
    files = _malicious_files(tmp_path, marker, saved_model)
    for kind, path in files.items():
        for args in (["complete", str(path), "the cat"], ["generate", str(path), "the"], ["info", str(path)]):
            assert main(args) == 1, (kind, args)
            err = capsys.readouterr().err.strip()
            assert "Traceback" not in err and len(err.splitlines()) == 1, err
            assert not marker.exists(), f"{kind}: code ran in the CLI"
    # End to end once, as a user runs it: `python -m lm_magics complete evil.lm "the cat"`.
    r = subprocess.run([sys.executable, "-m", "lm_magics", "complete", str(files["valid checkpoint + payload"]),
                        "the cat"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and "never runs code" in r.stderr and r.stdout == "", r.stderr
    assert not marker.exists()


def test_lm_load_magic_refuses_malicious_pickles(tmp_path: Path, saved_model: Path, tiny_model):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.registry import get_registry

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lm_magics")
    reg = get_registry(shell)
    reg.set("kept", tiny_model)
    before = tiny_model.next_words("the cat", k=5)
    marker = tmp_path / "PWNED_MAGIC"
    for kind, path in _malicious_files(tmp_path, marker, saved_model).items():
        with pytest.raises(UsageError) as exc:
            shell.run_line_magic("lm_load", f"{path} --name kept")
        assert len(str(exc.value).splitlines()) == 1, str(exc.value)
        assert not marker.exists(), f"{kind}: code ran in %lm_load"
        # Nothing lost: the model registered under that name is the one from before.
        assert reg.get("kept") is tiny_model and tiny_model.next_words("the cat", k=5) == before
    reg.drop("kept")


# -------------------------------------------------------------------------------- atomic saving

_CHILD = textwrap.dedent("""
    import sys, time
    import torch
    import lm_magics as lm
    from lm_magics.api import LanguageModel
    from lm_magics.config import TrainConfig
    from lm_magics.engine import persistence
    from lm_magics.engine.model import LSTMLanguageModel
    from lm_magics.engine.tokenizer import Tokenizer

    target, mode = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    V = 50_000
    tok = Tokenizer(itos=["<unk>", "<eos>"] + [f"w{i}" for i in range(V - 2)])
    net = LSTMLanguageModel(V, 256, 256, 1, 0.0, tie_weights=True)     # ~13M parameters, ~53 MB
    big = LanguageModel(net, tok, TrainConfig(embed_dim=256, hidden_dim=256))

    if mode == "midway":
        # Announce when half the file is written, then keep writing slowly: the parent kills us there.
        real_save = persistence.torch.save

        class Announcing:
            def __init__(self, fh):
                self.fh, self.n, self.told = fh, 0, False
            def write(self, b):
                self.n += len(b)
                if self.n > 10_000_000 and not self.told:
                    self.told = True
                    print("midway", flush=True)
                if self.told:
                    time.sleep(0.01)
                return self.fh.write(b)
            def __getattr__(self, name):
                return getattr(self.fh, name)

        persistence.torch.save = lambda obj, fh, *a, **k: real_save(obj, Announcing(fh), *a, **k)
    print("ready", flush=True)
    while True:
        big.save(target)
        print("saved", flush=True)
""")


def _start_child(target: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(target), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited early: {proc.stderr.read()[-2000:]}")
        if line.strip() == word:
            return
    raise AssertionError(f"child never said {word!r}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_save_leaves_the_old_file(tiny_model, saved_model: Path):
    before_bytes, before = saved_model.read_bytes(), _predictions(tiny_model)
    proc = _start_child(saved_model, "midway")
    try:
        _wait_for(proc, "midway")
        temps = [p for p in saved_model.parent.iterdir() if p.name.endswith(".tmp")]
        assert temps                                                  # really in the middle of a save
    finally:
        _kill(proc)
    assert saved_model.read_bytes() == before_bytes
    assert _predictions(lm.load(saved_model)) == before
    # What a SIGKILL leaves: only hidden temp files named after the model, never a half model file.
    left = sorted(p.name for p in saved_model.parent.iterdir() if p != saved_model)
    assert left and all(n.startswith(f".{saved_model.name}.") and n.endswith(".tmp") for n in left), left
    for n in left:
        with pytest.raises(lm.ModelFileError):          # a torn temp file is never mistaken for a model
            lm.load(saved_model.parent / n)
        (saved_model.parent / n).unlink()


@pytest.mark.slow
def test_sigkill_at_a_random_moment_of_repeated_saves(tiny_model, saved_model: Path):
    before = _predictions(tiny_model)
    proc = _start_child(saved_model, "loop")
    try:
        _wait_for(proc, "ready")
        time.sleep(0.5)          # somewhere inside the first or second save of ~53 MB
    finally:
        _kill(proc)
    m = lm.load(saved_model)                     # whole old model or whole new one, never a torn file
    if m.info["vocab_size"] == 50_000:
        assert m.next_words("w1", k=3)
    else:
        assert _predictions(m) == before
    for p in saved_model.parent.iterdir():
        if p.name.endswith(".tmp"):
            p.unlink()


def test_keyboard_interrupt_during_save_keeps_the_old_file(tiny_model, tiny_text, saved_model: Path,
                                                          monkeypatch):
    before_bytes = saved_model.read_bytes()
    other = lm.train(tiny_text, hidden_dim=8, embed_dim=8, epochs=1, seed=3)
    real_save = torch.save

    def interrupted_save(obj, fh, *a, **k):
        buf = io.BytesIO()
        real_save(obj, buf)
        fh.write(buf.getvalue()[: buf.tell() // 2])     # half the bytes are on disk ...
        raise KeyboardInterrupt                          # ... when Ctrl-C arrives

    monkeypatch.setattr(persistence.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        other.save(saved_model)
    assert saved_model.read_bytes() == before_bytes
    assert sorted(os.listdir(saved_model.parent)) == [saved_model.name]    # the temp file was removed
    monkeypatch.setattr(persistence.torch, "save", real_save)
    assert _predictions(lm.load(saved_model)) == _predictions(tiny_model)
    other.save(saved_model)                                                  # and the next save works
    assert lm.load(saved_model).info["hidden_dim"] == 8


# -------------------------------------------------------------------------------- declared sizes
# Issue 11: a small crafted file that declares huge sizes is refused before anything big is built.

def _crafted(saved_model: Path, tmp_path: Path, name: str, edit) -> Path:
    ckpt = torch.load(saved_model, weights_only=True)
    edit(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


@pytest.fixture
def no_big_networks(monkeypatch):
    """Fail the test if lm.load builds a real (not shape-only "meta") network bigger than 10M parameters."""
    from lm_magics import api
    from lm_magics.engine.model import LSTMLanguageModel

    built = []

    def guarded(V, E, H, L=2, dropout=0.2, tie_weights=True, adaptive=False, cutoffs=None, head_bias=False):
        n = V * (E + H) + 4 * H * (E + H) * L            # about the parameters (embedding, output, LSTM)
        on_meta = torch.empty(0).device.type == "meta"
        built.append((n, on_meta))
        assert on_meta or n < 10_000_000, f"lm.load built a {n:,}-parameter network from a crafted file"
        return LSTMLanguageModel(V, E, H, L, dropout, tie_weights, adaptive, cutoffs, head_bias)

    monkeypatch.setattr(api, "LSTMLanguageModel", guarded)
    return built


@pytest.mark.parametrize("name, edit, hint", [
    ("vocab60M", lambda c: (c["hparams"].update(vocab_size=60_000_000), c["config"].update(max_vocab=60_000_000)),
     r"vocabulary has \d+ words but its settings declare vocab_size=60,000,000"),
    ("hidden40k", lambda c: (c["hparams"].update(hidden_dim=40_000), c["config"].update(hidden_dim=40_000)),
     r"1 LSTM layer\(s\) of 40,000 units"),
    ("embed40k", lambda c: c["hparams"].update(embed_dim=40_000), r"embedding"),
    ("layers1000", lambda c: c["hparams"].update(num_layers=1000), r"1000 LSTM layer"),
    ("adaptive", lambda c: c["hparams"].update(adaptive=True, cutoffs=[2, 5] * 1000), r"cut-offs"),
    ("not-int", lambda c: c["hparams"].update(hidden_dim=32.0), r"hidden_dim=32\.0"),
    ("bool", lambda c: c["hparams"].update(num_layers=True), r"num_layers=True"),
    ("shape", lambda c: c["state_dict"].update({"lstm.bias_ih_l0": torch.zeros(7)}), r"lstm\.bias_ih_l0"),
    ("extra", lambda c: c["state_dict"].update({"extra.weight": torch.zeros(3)}), r"extra\.weight"),
])
def test_crafted_sizes_are_refused_before_building(saved_model: Path, tmp_path: Path, no_big_networks, name,
                                                   edit, hint):
    path = _crafted(saved_model, tmp_path, f"{name}.lm", edit)
    assert path.stat().st_size < 1_000_000                      # a small file ...
    with pytest.raises(lm.ModelFileError) as exc:                # ... refused in one line
        lm.load(path)
    msg = str(exc.value)
    assert "\n" not in msg and "damaged" in msg and re.search(hint, msg), msg
    assert all(on_meta or n < 10_000_000 for n, on_meta in no_big_networks)


def test_crafted_sizes_through_lm_load_magic(saved_model: Path, tmp_path: Path, tiny_model, no_big_networks):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.registry import get_registry

    path = _crafted(saved_model, tmp_path, "big.lm", lambda c: c["hparams"].update(vocab_size=60_000_000))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lm_magics")
    reg = get_registry(shell)
    reg.set("kept", tiny_model)
    with pytest.raises(UsageError, match="vocab_size=60,000,000"):
        shell.run_line_magic("lm_load", f"{path} --name kept")
    assert reg.get("kept") is tiny_model
    reg.drop("kept")


def test_honest_models_of_every_shape_still_load(tiny_text, tmp_path: Path, no_big_networks):
    for i, kw in enumerate([dict(num_layers=2), dict(tie_weights=False), dict(embed_dim=8, hidden_dim=24),
                            dict(softmax="adaptive"), dict(softmax="adaptive", num_layers=2)]):
        m = lm.train(tiny_text, **{"hidden_dim": 16, "embed_dim": 16, "epochs": 1, "seed": 0, **kw})
        m.save(tmp_path / f"{i}.lm")
        back = lm.load(tmp_path / f"{i}.lm")
        assert back.next_words("the cat", k=5) == m.next_words("the cat", k=5), kw


def test_a_zip_that_unpacks_to_more_than_memory_is_refused(saved_model: Path, tmp_path: Path, monkeypatch):
    import zipfile

    from lm_magics.engine import memory

    bomb = tmp_path / "bomb.lm"
    with zipfile.ZipFile(saved_model) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        prefix = src.namelist()[0].split("/")[0]
        dst.writestr(f"{prefix}/data/999", b"\0" * 50_000_000, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1_000_000
    monkeypatch.setenv(memory.ENV, "20MB")
    with pytest.raises(lm.ModelFileError) as exc:
        lm.load(bomb)
    assert re.search(r"Loading '.*bomb\.lm' needs about 50\.\d MB of memory, more than the 20\.0 MB",
                     str(exc.value)), str(exc.value)
