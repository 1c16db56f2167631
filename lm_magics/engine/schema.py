"""What a model file may hold, field by field: one schema for every kind (lstm, ngram, mix) and format.

``api.load`` checks a file against it before anything is built from the file, so a value that would
load and fail later (a NaN weight, a text where a number belongs, a negative count, a vocabulary with
a repeated word) is a one-line ModelFileError at load, naming the field, and never a crash in
``%lm_models``, a summary or a generation afterwards. Each check raises ValueError("its FIELD ..."),
which the loader turns into "FILE is damaged: its FIELD ...".

Fields not named here (written by a later version, or by another part of lm_magics) are left alone: a
newer file stays loadable, and what reads such a field checks it itself.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping

import torch

__all__ = ["check_meta", "check_tokenizer", "check_tensors", "META_FIELDS"]


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _ppl(v: Any) -> bool:
    return v is None or (type(v) in (int, float) and math.isfinite(v) and v >= 1.0 - 1e-9)


def _seconds(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and v >= 0


def _text(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 10_000


def _maybe(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _history(v: Any) -> bool:
    """[[epoch, train_loss, val_ppl], ...]: numbers (NaN allowed where a run had no validation text)."""
    return isinstance(v, list) and all(
        isinstance(row, list) and len(row) == 3 and type(row[0]) is int and row[0] >= 0
        and all(type(x) in (int, float) and not math.isinf(x) for x in row[1:]) for row in v)


# field -> (check, what it must be): the meta fields that summaries, tables and front-ends read.
META_FIELDS: Dict[str, "tuple[Callable[[Any], bool], str]"] = {
    **{k: (_maybe(_count), "a whole number of at least 0") for k in (
        "rows", "missing", "tokens", "val_tokens", "unk_tokens", "tokens_seen", "epochs_trained", "runs")},
    "val_ppl": (_ppl, "a finite perplexity of at least 1 (or missing)"),
    "baseline_val_ppl": (_ppl, "a finite perplexity of at least 1 (or missing)"),
    "elapsed": (_maybe(_seconds), "a number of seconds"),
    "train_elapsed": (_maybe(_seconds), "a number of seconds"),
    "seed": (_maybe(lambda v: type(v) is int and v >= 0), "a whole number (or missing)"),
    "fingerprint": (_maybe(_text), "a text"),
    "trained_at": (_maybe(_text), "a text"),
    "precision": (_maybe(_text), "a text"),
    "mix_note": (_maybe(_text), "a text"),
    "interrupted": (_maybe(lambda v: isinstance(v, bool)), "True or False"),
    "mix_weight": (_maybe(lambda v: type(v) in (int, float) and 0.0 <= v <= 1.0), "a number from 0 to 1"),
    "history": (_maybe(_history), "a list of [epoch, loss, perplexity] numbers"),
    "provenance": (_maybe(lambda v: isinstance(v, dict)), "a dict"),
    "ddp": (_maybe(lambda v: isinstance(v, dict)), "a dict"),
}


def check_meta(meta: Any) -> None:
    """Raise ValueError naming the first meta field that is not what it must be."""
    if not isinstance(meta, Mapping):
        raise ValueError(f"its training record is a {type(meta).__name__}, not a dict")
    for key, (ok, what) in META_FIELDS.items():
        if key in meta and not ok(meta[key]):
            raise ValueError(f"its {key} must be {what}, got {_shown(meta[key])}")


def check_tokenizer(d: Any) -> None:
    """Raise ValueError for a tokenizer record whose fields are not of their kind or whose vocabulary
    holds a non-text, an empty or a repeated entry, or lacks <unk> / <eos>."""
    if not isinstance(d, Mapping):
        raise ValueError("its tokenizer is not a dict")
    if d.get("level") not in ("word", "whitespace", "char"):
        raise ValueError(f"its tokenizer level must be 'word', 'whitespace' or 'char', got {_shown(d.get('level'))}")
    if not isinstance(d.get("lowercase"), bool):
        raise ValueError(f"its tokenizer lowercase must be True or False, got {_shown(d.get('lowercase'))}")
    for key, low in (("min_freq", 1), ("max_vocab", 3)):
        v = d.get(key)
        if type(v) is not int or v < low:
            raise ValueError(f"its tokenizer {key} must be a whole number of at least {low}, got {_shown(v)}")
    itos = d.get("itos")
    if not isinstance(itos, list) or not all(isinstance(w, str) and w for w in itos):
        raise ValueError("its vocabulary is not a list of words")
    if len(set(itos)) != len(itos):
        raise ValueError("its vocabulary lists a word twice")
    if "<unk>" not in itos or "<eos>" not in itos:
        raise ValueError("its vocabulary lacks <unk> or <eos>")


def check_tensors(tensors: Any, what: str = "weights") -> None:
    """Raise ValueError when a tensor (in a dict or list, nested) holds NaN or infinite values."""
    for t in _walk(tensors):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"its {what} hold NaN or infinite values (the model diverged when it was trained)")


def _walk(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk(v)


def _shown(v: Any, limit: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"

