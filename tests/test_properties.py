"""Property tests (hypothesis, bounded): the tokenizer's round trip on arbitrary unicode, and a loader
that never raises anything but ModelFileError on arbitrary bytes.

Documented normalization (engine/tokenizer.py): decoding rewrites only the spacing between tokens (and
lowercases when asked), so tokenizing the decoded text gives the same tokens back. Line breaks are
<eos>, decoded as "\n"; at the whitespace level a literal "<eos>" in the text is that marker too (as
"<unk>" is the unknown word at every level), so it comes back as a line break.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lm_magics as lm
from lm_magics.engine.tokenizer import Tokenizer

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that stresses the tokenizer: all of unicode, plus a dense mix of the characters it treats
# specially (punctuation, quotes and clitics, digits, whitespace, brackets, '<unk>' pieces).
_SPECIAL = list(".,;:!?'’\"“”-/_()[]{}<>$#@%…—«»、。，0123456789 \t\n\r") + ["'s", "n't", "<unk>", "<eos>", "e\u0301"]
texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(_SPECIAL), st.text(min_size=1, max_size=4)), max_size=60).map("".join),
)


@pytest.mark.parametrize("level", ["word", "whitespace", "char"])
@pytest.mark.parametrize("lowercase", [False, True])
@BOUNDED
@given(text=texts)
@example(text="don't 3.14 , 'S 1,000 cats' (a) <unk>")
@example(text="a ' s")
@example(text="İ ß ǅ")           # lowercasing that changes length or needs a second pass
@example(text="a\x85b\u2028c\x1e\r\n<eos>\n")
def test_tokenize_join_tokenize_is_stable(level, lowercase, text):
    tok = Tokenizer(level=level, lowercase=lowercase)
    tokens = tok.tokenize(text)
    assert tok.tokenize(tok.join(tokens)) == _without_eos_marker(tokens, level)


def _without_eos_marker(tokens, level):
    return [t for t in tokens if t != "<eos>"] if level == "whitespace" else tokens


@pytest.mark.parametrize("level", ["word", "whitespace", "char"])
@BOUNDED
@given(text=texts)
@example(text="\x85\x85")
@example(text="\x1e")
@example(text="the end\n")
def test_encode_decode_round_trip_with_a_fitted_vocabulary(level, text):
    tok = Tokenizer(level=level).fit(text.splitlines() or [""])
    ids = tok.encode(text)
    if "<unk>" not in [t for line in text.splitlines() for t in tok.tokenize(line)]:
        assert tok.unk_id not in ids                       # every token is in a vocabulary fitted on it
    decoded = tok.decode(ids)
    assert tok.tokenize(decoded) == _without_eos_marker(tok.tokenize(text), level)
    assert tok.encode(decoded) == ids
    # Lines survive too: as many line breaks (<eos>) as the text had.
    assert decoded.count("\n") == ids.count(tok.eos_id)


# ------------------------------------------------------------------------------------ the loader

@pytest.fixture(scope="module")
def good_bytes(tiny_model, tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("prop") / "good.lm"
    tiny_model.save(p)
    return p.read_bytes()


def _load_bytes(data: bytes) -> None:
    """Write data to a model-file name and load it: a model or a ModelFileError, nothing else."""
    fd, name = tempfile.mkstemp(suffix=".lm")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            m = lm.load(name)
        except lm.ModelFileError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg
            return
        m.next_words("the", k=2)   # whatever loads must also work
    finally:
        os.unlink(name)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000))
def test_loader_on_arbitrary_bytes(data):
    _load_bytes(data)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000))
def test_loader_on_bytes_that_start_like_a_zip(data):
    _load_bytes(b"PK\x03\x04" + data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_loader_on_mutated_real_model_files(good_bytes, flips, cut):
    b = bytearray(good_bytes)
    for pos, mask in flips:
        b[pos % len(b)] ^= mask
    if cut is not None:
        b = b[: cut % len(b)]
    _load_bytes(bytes(b))


# ------------------------------------------------------------------ magic argument parsing

@pytest.fixture(scope="module")
def magic_shell(tiny_model, tmp_path_factory):
    """A shell with the extension and a model, in an empty folder (nothing typed can touch the repo)."""
    from IPython.core.interactiveshell import InteractiveShell

    from lm_magics.registry import ModelRegistry, get_registry

    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("magics"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lm_magics")
    saved = get_registry(shell)
    shell._lm_magics_registry = ModelRegistry()     # its own models: %lm_drop here touches no other test's
    get_registry(shell).set("tiny", tiny_model)
    yield shell
    shell._lm_magics_registry = saved
    os.chdir(old)


_FLAGS = ["--name", "--epochs", "--lr", "--hidden-dim", "--df", "--column", "--where", "-o", "-k",
          "--seed", "--temperature", "--top-p", "--beam", "--softmax", "--continue", "--quiet", "--bogus"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(_FLAGS), st.text(max_size=12),
                          st.sampled_from(["-1", "0", "nan", "inf", "1e9", "'", '"', "{x}", "$y", "--"])),
                max_size=6),
       st.sampled_from(["lm_complete", "lm_generate", "lm_info", "lm_use", "lm_load", "lm_drop", "lm_train"]))
def test_magic_argument_parsing_raises_only_usage_errors(magic_shell, words, magic):
    """Whatever a user types after a magic, the result is a value or a one-line UsageError."""
    from IPython.core.error import UsageError

    line = " ".join(words)
    try:
        if magic == "lm_train":
            magic_shell.run_cell_magic(magic, line + " --epochs 1 --max-steps 1 --quiet", "")
        else:
            magic_shell.run_line_magic(magic, line)
    except UsageError as exc:
        assert "\n" not in str(exc).strip(), str(exc)   # one line (a typed form feed may be echoed back)
