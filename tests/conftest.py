"""Shared tiny fixtures: a few hundred words of text and one small trained model per test session.

Everything here is seeded and small (hidden_dim=32, embed_dim=16, 3 epochs) so that the whole unit suite
stays fast on 2 CPU cores. Tests that must not disturb the shared model copy it (``model_copy``) or
train their own.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import lm_magics as lm

# Tiny models gain nothing from a second thread, and on a busy 2-core machine torch's thread pool
# spin-waits: one thread made the training tests ~8x faster under load.
torch.set_num_threads(1)

# Real corpora (tests/benchmarks only): ../shared/data next to the repository.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# lr 0.03 (10x the default): a 32-unit model learns something in 3 tiny epochs, so predictions are not flat.
TINY_OPTIONS = dict(hidden_dim=32, embed_dim=16, epochs=3, seed=0, lr=0.03, dropout=0.1)


def make_text(n_sentences: int = 60, seed: int = 0) -> str:
    """A few hundred words of simple, repetitive English, one sentence per line (seeded)."""
    rng = random.Random(seed)
    subjects = ["the cat", "the dog", "a bird", "my friend", "the old man", "the children"]
    verbs = ["sat on", "looked at", "ran to", "walked past", "slept near", "played with"]
    objects = ["the mat", "the door", "a tree", "the river", "the house", "the garden"]
    tails = [".", ".", ".", "!", ", and then it rained.", ", because it was late."]
    lines = []
    for _ in range(n_sentences):
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(tails)}"
        lines.append(s[0].upper() + s[1:])
    return "\n".join(lines)


@pytest.fixture(scope="session")
def tiny_text() -> str:
    """About 350 words of seeded English, one sentence per line."""
    return make_text()


@pytest.fixture(scope="session")
def tiny_options() -> dict:
    """The options tiny_model was trained with (a fresh dict: safe to modify)."""
    return dict(TINY_OPTIONS)


@pytest.fixture(scope="session")
def tiny_model(tiny_text: str) -> "lm.LanguageModel":
    """One small trained model for the whole session. Treat it as read-only (use model_copy to modify)."""
    return lm.train(tiny_text, **TINY_OPTIONS)


@pytest.fixture(scope="module")
def shell():
    """A real IPython InteractiveShell with ``%load_ext lm_magics`` (unloaded after the module)."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "lm_magics")
    yield ip
    ip.run_line_magic("unload_ext", "lm_magics")


@contextmanager
def registered(shell, name: str, model):
    """``with registered(shell, name, model):`` the model is in the shell's registry as ``name``; it is
    dropped again afterwards (a module's magics tests use it to give the session's shell their model)."""
    from lm_magics.registry import get_registry

    get_registry(shell).set(name, model)
    try:
        yield shell
    finally:
        get_registry(shell).drop(name)


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(owner, "name", n)``: owner.name raises KeyboardInterrupt on its n-th call (1-based),
    as Ctrl-C would there; ``monkeypatch.undo()`` puts it back."""

    def patch(owner: object, name: str, when: int = 1) -> None:
        real = getattr(owner, name)
        calls = {"n": 0}

        def wrapper(*a, **k):
            calls["n"] += 1
            if calls["n"] == when:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(owner, name, wrapper)
    return patch


@pytest.fixture
def model_copy(tiny_model: "lm.LanguageModel", tmp_path: Path) -> "lm.LanguageModel":
    """A private copy of tiny_model (through a save/load round trip)."""
    path = tmp_path / "copy.lm"
    tiny_model.save(path)
    return lm.load(path)


@pytest.fixture
def saved_model(tiny_model: "lm.LanguageModel", tmp_path: Path) -> Path:
    """tiny_model saved to a file in tmp_path; returns the path."""
    path = tmp_path / "tiny.lm"
    tiny_model.save(path)
    return path


def make_special(kind: str, path: Path) -> Path:
    """Put a FIFO, a character device (a copy of /dev/null: ``mknod NODE c 1 3``), a socket, a directory or a
    plain file at path, for tests of what a save refuses; skip the test where the system does not allow it."""
    try:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "chardev":
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        elif kind == "socket":
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(str(path))
        elif kind == "directory":
            path.mkdir()
        else:
            path.write_text("not a folder")
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"this system does not let the tests make a {kind} ({exc}); the other kinds still run")
    return path


def wait_until(cond, timeout: float = 30.0) -> bool:
    """Poll cond() until true (never a timing assertion: the timeout only bounds a hang)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
# ------------------------------------------------------------------------------ special files as input

def _unblock(fifo: Path) -> None:
    """Give EOF to anything still blocked opening or reading fifo (a reader that should have refused it)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # ENXIO when nobody is reading: nothing to do
    except OSError:
        return
    os.close(fd)


@pytest.fixture
def special_files(tmp_path: Path):
    """Paths that exist but are not regular files, for tests of what a read refuses: {'named pipe': ...,
    'socket': ..., 'character device': a copy of /dev/null} (never /dev/zero: a reader that failed to refuse
    it would eat all memory). A reader that wrongly opens the FIFO would block forever; teardown unblocks it."""
    found = {"named pipe": make_special("fifo", tmp_path / "pipe.txt"),
             "socket": make_special("socket", tmp_path / "sock.txt"),
             "character device": make_special("chardev", tmp_path / "null.dev")}
    try:
        yield found
    finally:
        _unblock(found["named pipe"])


def no_hang(fn, seconds: float = 20.0, unblock: "Path | None" = None):
    """Run fn() in a thread; fail (instead of hanging the suite) if it has not returned after seconds."""
    import threading

    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if unblock is not None:
            _unblock(unblock)
        pytest.fail(f"still running after {seconds} s: it blocked reading a special file")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def start_until_a_step(cmd: list, log: Path, env: dict, cwd: Path) -> "subprocess.Popen":
    """Start a training command in its own process group, its stderr in log, and return once rank 0's
    progress bar shows a training step (or after 120 s, or when it ended), for tests that then stop it."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    # The bar shows "N/TOTAL, 0:01 elapsed, ..." from the first step on (older bars said "step").
    while not any(w in log.read_text() for w in ("step", "elapsed")) and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.2)
    return proc
