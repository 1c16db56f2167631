"""Corpora bigger than memory: tokenize to a memory-mapped int32 file, train from windows of it.

    model = lm.train(lm.files("corpus/*.txt"), stream=True)      # automatic for files >= 256 MB

Two passes over the source, neither holding the text:

    pass 1  read rows, hash them (content fingerprint), count the tokens of the training rows
            -> vocabulary (unless the tokenizer already has one)
    pass 2  encode rows in chunks of ~1M ids, append them to ``train.i32`` / ``val.i32``

The token files live in ``cache_dir/<fingerprint>/`` (default ``~/.cache/lm_magics/tokens``), keyed by the
content, the tokenizer settings and the split; they are written into a temporary folder that is renamed
into place at the end, so a cache entry is whole or absent. A second run on the same text skips pass 2.

Training reads the token file through ``StreamBatches``: the ``(rows, B)`` layout of ``batchify`` as a
strided view of the memmap, materialized one BPTT window at a time (a few KB), so the process's own
memory stays flat whatever the corpus size. (Pages of the mapped file that were read count in RSS as
file-backed page cache, which the kernel reclaims under pressure.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..errors import DataError
from .data import _SPLIT_BLOCK, Corpus, DataStats, Files, StreamBatches, _is_missing, _series_values, files, rows_of
from .tokenizer import Tokenizer

__all__ = ["STREAM_AUTO_BYTES", "default_cache_dir", "prepare_stream", "StreamBatches", "should_stream",
           "source_bytes"]

STREAM_AUTO_BYTES = 256 * 2**20   # files at least this big are streamed by default
_FORMAT = 1                        # bump when the cache layout changes
_FLUSH_IDS = 1 << 20               # ids buffered per file before an append (~4 MB of int32)


def default_cache_dir() -> Path:
    base = os.environ.get("LM_MAGICS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lm_magics")
    return Path(base) / "tokens"


def source_bytes(source: object) -> Optional[int]:
    """Total size of a file source in bytes (None for other sources)."""
    if isinstance(source, (Files, Path)):
        src = source if isinstance(source, Files) else files(source)
        return sum(p.stat().st_size for p in src.paths())
    return None


def should_stream(source: object, stream: Optional[bool]) -> bool:
    """stream=None: stream file sources of STREAM_AUTO_BYTES or more; True/False: as told."""
    if stream is not None:
        return bool(stream)
    size = source_bytes(source)
    return size is not None and size >= STREAM_AUTO_BYTES


# ------------------------------------------------------------------------------------------ sources

def _row_factory(source: object, spool_dir: Path, stats: DataStats) -> Callable[[], Iterator[str]]:
    """A function yielding the rows afresh on each call, without loading the source into memory.

    Files are re-read; lists/Series are re-iterated; a callable is called for a fresh iterator; a one-shot
    iterator (a generator) is spooled to a temporary file first so that it can be read twice.
    """
    if isinstance(source, (Files, Path, str, bytes)) or _series_values(source) is not None \
            or isinstance(source, (list, tuple)):
        return rows_of(source, stats)    # files stream; in-memory sources are already in memory
    if callable(source):
        return lambda: _clean(source(), stats)
    if not isinstance(source, Iterable):
        raise DataError(f"Cannot read text from a {type(source).__name__}; pass lm.files('path'), a list of "
                        f"str, or a function returning an iterator of str.")
    if iter(source) is not source:   # re-iterable container
        return lambda: _clean(iter(source), stats)
    spool = spool_dir / "spooled.txt"
    with open(spool, "w", encoding="utf-8") as fh:
        for row in _clean(source, stats):
            fh.write(" ".join(row.splitlines()) + "\n")   # one row per line
    return rows_of(Path(spool))


def _clean(values: Iterable, stats: DataStats) -> Iterator[str]:
    for v in values:
        if isinstance(v, str):
            yield v
        elif _is_missing(v):
            stats.missing += 1
        else:
            yield v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


def _split(rows: Iterator[str], val_fraction: float, seed: int, has_val_source: bool) -> Iterator[Tuple[bool, str]]:
    """(is_val, row): the same seeded draw as data.prepare, so streamed and in-memory splits agree."""
    if has_val_source or val_fraction <= 0:
        for r in rows:
            yield False, r
        return
    rng = np.random.default_rng(seed)
    mask = np.zeros(0, bool)
    for i, r in enumerate(rows):
        j = i % _SPLIT_BLOCK
        if j == 0:
            mask = rng.random(_SPLIT_BLOCK) < val_fraction
        yield bool(mask[j]), r


# ------------------------------------------------------------------------------------------ prepare

class _Appender:
    """Buffered appends of int32 ids to a file."""

    def __init__(self, path: Path):
        self.fh = open(path, "wb")
        self.buf: List[int] = []
        self.count = 0
        self.unk = 0

    def extend(self, ids: List[int], unk_id: int) -> None:
        self.buf.extend(ids)
        if len(self.buf) >= _FLUSH_IDS:
            self.flush(unk_id)

    def flush(self, unk_id: int) -> None:
        if self.buf:
            arr = np.asarray(self.buf, dtype=np.int32)
            self.unk += int(np.count_nonzero(arr == unk_id))
            self.fh.write(arr.tobytes())
            self.count += arr.size
            self.buf = []

    def close(self, unk_id: int) -> None:
        self.flush(unk_id)
        self.fh.close()


def _open_ids(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, np.int32)
    return np.memmap(path, dtype=np.int32, mode="r")


def prepare_stream(source: object, tokenizer: Tokenizer, *, val_source: object = None,
                   val_fraction: float = 0.1, seed: int = 0,
                   cache_dir: "str | os.PathLike | None" = None) -> Corpus:
    """Like data.prepare, but the training (and validation) ids are memory-mapped int32 files.

    Returns a Corpus whose ``train`` is an ``np.memmap``; ``tokenizer`` is fitted in place (or kept when
    it already has a vocabulary). The cache entry is reused when the same text is streamed again with
    the same tokenizer settings and split.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the token cache folder '{cache}' ({exc.strerror}); pass "
                        f"cache_dir= a writable folder.") from None
    stats = DataStats()
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))   # becomes the cache entry, or is removed
    try:
        rows = _row_factory(source, work, stats)
        has_val = val_source is not None
        # ---- pass 1: fingerprint the content (+ settings), count the training rows' tokens
        h = hashlib.blake2b(digest_size=16)
        fitted = tokenizer.fitted
        settings = dict(format=_FORMAT, level=tokenizer.level, lowercase=tokenizer.lowercase,
                        min_freq=tokenizer.min_freq, max_vocab=tokenizer.max_vocab, seed=seed,
                        val_fraction=0.0 if has_val else val_fraction,
                        vocab=hashlib.blake2b("\n".join(tokenizer.itos).encode(), digest_size=8).hexdigest()
                        if fitted else None)
        h.update(json.dumps(settings, sort_keys=True).encode())
        counter: Counter = Counter()
        block: List[str] = []

        def hashed(pairs: Iterator[Tuple[bool, str]]) -> Iterator[str]:
            for is_val, r in pairs:
                block.append(r)
                if len(block) >= 4096:
                    h.update("\n".join(block).encode("utf-8", "surrogatepass") + b"\n")
                    block.clear()
                if not is_val:
                    yield r

        train_rows = hashed(_split(rows(), val_fraction, seed, has_val))
        if fitted:
            for _ in train_rows:
                pass
        else:
            tokenizer.count(train_rows, counter)
        h.update(("\n".join(block) + "\n").encode("utf-8", "surrogatepass"))
        key = h.hexdigest()
        entry = cache / key

        if not fitted:
            if not counter:
                raise DataError("No text to train on. Give at least a sentence or two of text.")
            tokenizer.build(counter)
        if (entry / "meta.json").exists():
            meta = json.loads((entry / "meta.json").read_text())
        else:
            # ---- pass 2: encode in chunks into the token files of the temporary entry
            stats.missing = 0
            train_out, val_out = _Appender(work / "train.i32"), _Appender(work / "val.i32")
            n_rows = n_val_rows = 0
            unk = tokenizer.unk_id
            for is_val, r in _split(rows(), val_fraction, seed, has_val):
                n_rows += 1
                n_val_rows += is_val
                (val_out if is_val else train_out).extend(tokenizer.encode_line(r), unk)
            train_out.close(unk)
            val_out.close(unk)
            meta = dict(rows=n_rows, train_rows=n_rows - n_val_rows, val_rows=n_val_rows,
                        train_tokens=train_out.count, val_tokens=val_out.count, unk_tokens=train_out.unk,
                        missing=stats.missing, itos_hash=settings["vocab"], settings=settings)
            (work / "meta.json").write_text(json.dumps(meta))
            try:
                os.rename(work, entry)       # atomic: the entry appears whole
            except OSError:
                if not (entry / "meta.json").exists():   # not a concurrent writer finishing first
                    raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)

    train = _open_ids(entry / "train.i32")
    val = _open_ids(entry / "val.i32")
    for k in ("rows", "train_rows", "val_rows", "train_tokens", "val_tokens", "unk_tokens", "missing"):
        setattr(stats, k, int(meta[k]))
    if has_val:
        vstats = DataStats()
        parts = list(tokenizer.encode_lines(rows_of(val_source, vstats)()))
        val = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        stats.val_rows, stats.val_tokens = vstats.rows or stats.val_rows, int(val.size)
        stats.notes.extend(vstats.notes)
    if train.size < 2:
        raise DataError("No text to train on. Give at least a sentence or two of text.")
    stats.notes.append(f"streamed {stats.train_tokens:,} training tokens from a memory-mapped token file "
                       f"({entry})")
    return Corpus(train, val, tokenizer, stats, key)
