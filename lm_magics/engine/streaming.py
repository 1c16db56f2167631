"""Corpora bigger than memory: tokenize to a memory-mapped int32 file, train from windows of it.

    model = lm.train(lm.files("corpus/*.txt"), stream=True)      # automatic for files >= 256 MB

Two passes over the source, neither holding the text:

    pass 1  read rows, hash them (content fingerprint), count the tokens of the training rows
            -> vocabulary (unless the tokenizer already has one)
    pass 2  encode rows in chunks of ~1M ids, append them to ``train.i32`` / ``val.i32``

The token files live in ``cache_dir/<fingerprint>/`` (default ``~/.cache/lm_magics/tokens``, or
``$LM_MAGICS_CACHE/tokens``), keyed by the content, the tokenizer settings and the split, next to the
vocabulary they were encoded with (``meta.json``); they are written into a temporary folder that is
renamed into place at the end, so a cache entry is whole or absent.

A second run on the same files reads nothing: ``cache_dir/.index/<stat key>.json`` maps the files' paths,
sizes and modification times (plus the settings) to the entry. ``cache_check="hash"`` re-reads the files
and recognises the entry by its content hash instead (pass 1 only), for files that may change without
their size or time changing. A ``RowSource`` (rows of a Spark query) brings its own key in place of the
files' stats, and is read once on a miss (its rows spooled to the entry's work folder).

Several processes (the ranks of a distributed run) streaming the same files queue on a file lock in
``cache_dir/.index``: the first one to take it runs both passes, builds the vocabulary and writes it into
the entry; the others wait on the lock (not inside a collective, so no distributed timeout runs), then
find the entry through the index and load the vocabulary and the token files from it. With ``cache_dir``
on a file system all nodes share, that is one build for the whole run; without one, each node builds
its own cache from its own copy of the files (the same files give the same vocabulary and ids, which the
ranks check by fingerprint once they meet).

Training reads the token file through ``StreamBatches``: the ``(rows, B)`` layout of ``batchify`` as a
strided view of the memmap, materialized one BPTT window at a time (a few KB), so the process's own
memory stays flat whatever the corpus size. (Pages of the mapped file that were read count in RSS as
file-backed page cache, which the kernel reclaims under pressure.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, DataError
from .data import SPLIT_BLOCK as _SPLIT_BLOCK, is_missing as _is_missing, series_values as _series_values
from .data import (Corpus, DataStats, Files, StreamBatches, check_val_text,
                   files, rows_of)
from .tokenizer import Tokenizer

try:
    import fcntl
except ImportError:                # Windows: no file locks; concurrent builds stay correct (atomic rename)
    fcntl = None  # type: ignore[assignment]

__all__ = ["STREAM_AUTO_BYTES", "CACHE_CHECKS", "default_cache_dir", "prepare_stream", "StreamBatches",
           "should_stream", "source_bytes", "RowSource"]

STREAM_AUTO_BYTES = 256 * 2**20   # files at least this big are streamed by default
CACHE_CHECKS = ("stat", "hash")   # how a cache hit is recognised for files: sizes and times, or content
_FORMAT = 2                        # bump when the cache layout changes (2: the entry stores its vocabulary)
_INDEX = ".index"                  # cache/.index/<stat key>.json -> entry; the lock files live there too
_FLUSH_IDS = 1 << 20               # ids buffered per file before an append (~4 MB of int32)


@dataclass(frozen=True)
class RowSource:
    """Rows that come from somewhere this process cannot stat (a Spark query), to be streamed.

    ``read()`` returns a fresh iterator of rows (each call re-runs the query); ``key`` names the content as
    the caller knows it (the query plan, its input files, the sample), the way paths, sizes and times name
    files: a cache entry built under the same key is reused without reading a row. A cache miss reads the
    source once and spools its rows to a file inside the entry's work folder, so the two passes see the
    same rows in the same order and the query runs once. Iterating a RowSource reads it (that is what
    ``stream=False`` does: the rows in memory).
    """

    read: Callable[[], Iterable[Any]]
    key: str
    description: str = "rows"

    def __iter__(self) -> Iterator[Any]:
        return iter(self.read())


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


def should_stream(source: object, stream: Optional[bool], distributed: bool = False) -> bool:
    """stream=None: stream file sources of STREAM_AUTO_BYTES or more, and every file source of a
    distributed run (one shared cache instead of every rank tokenizing in memory); True/False: as told."""
    if stream is not None:
        return bool(stream)
    if isinstance(source, RowSource):      # rows from elsewhere: never all in this process's memory
        return True
    size = source_bytes(source)
    return size is not None and (distributed or size >= STREAM_AUTO_BYTES)


# ------------------------------------------------------------------------------------------ sources

def _row_factory(source: object, spool_dir: Path, stats: DataStats) -> Callable[[], Iterator[str]]:
    """A function yielding the rows afresh on each call, without loading the source into memory.

    Files are re-read; lists/Series are re-iterated; a callable is called for a fresh iterator; a one-shot
    iterator (a generator) is spooled to a temporary file first so that it can be read twice.
    """
    if isinstance(source, RowSource):
        source = iter(source.read())     # one pass over the query, spooled to a file below
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


# ------------------------------------------------------------------------------------------ cache index

def _file_stats(source: object) -> Optional[List[list]]:
    """[[absolute path, size, mtime_ns], ...] of a file source, [["source", key]] of a RowSource; None for
    other sources (no stat index)."""
    if isinstance(source, RowSource):
        return [["source", source.key]]
    if not isinstance(source, (Files, Path)):
        return None
    src = source if isinstance(source, Files) else files(source)
    out: List[list] = [["encoding", src.encoding]]     # the same bytes decoded otherwise are other text
    for p in src.paths():
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: dict) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


@contextlib.contextmanager
def _cache_lock(folder: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``folder/name.lock`` while a cache entry is looked up or built.

    Processes that stream the same files (the ranks of one run) queue here: the first builds, the others
    wait and then find the finished entry. fcntl locks are POSIX record locks, which NFS (with its lock
    manager) honours across machines; the kernel drops the lock of a process that dies. Where locking
    is not available the build may happen twice; the atomic rename still keeps one whole entry.
    """
    if fcntl is None:
        yield
        return
    with open(folder / f"{name}.lock", "a+b") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX)
        except OSError:
            pass
        yield            # closing the file releases the lock


def prepare_stream(source: object, tokenizer: Tokenizer, *, val_source: object = None,
                   val_fraction: float = 0.1, seed: int = 0,
                   cache_dir: "str | os.PathLike | None" = None, cache_check: str = "stat") -> Corpus:
    """Like data.prepare, but the training (and validation) ids are memory-mapped int32 files.

    Returns a Corpus whose ``train`` is an ``np.memmap``; ``tokenizer`` is fitted in place (or kept when
    it already has a vocabulary). The cache entry is reused when the same text is streamed again with
    the same tokenizer settings and split. For files, ``cache_check="stat"`` (default) recognises that
    text from the files' paths, sizes and modification times without reading them; ``"hash"`` re-reads
    the files and compares a hash of their content.
    """
    if cache_check not in CACHE_CHECKS:
        raise ConfigError(f"cache_check must be 'stat' (file sizes and times) or 'hash' (re-read the content), "
                          f"got {cache_check!r}.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        (cache / _INDEX).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the token cache folder '{cache}' ({exc.strerror}); pass "
                        f"cache_dir= a writable folder.") from None
    has_val = val_source is not None
    fitted = tokenizer.fitted
    settings = dict(format=_FORMAT, level=tokenizer.level, lowercase=tokenizer.lowercase,
                    min_freq=tokenizer.min_freq, max_vocab=tokenizer.max_vocab, seed=seed,
                    val_fraction=0.0 if has_val else val_fraction,
                    vocab=hashlib.blake2b("\n".join(tokenizer.itos).encode(), digest_size=8).hexdigest()
                    if fitted else None)
    stats_now = _file_stats(source)
    # The stat key names "these files, as they are now, with these settings": a hit needs no reading.
    stat_key = None if stats_now is None else hashlib.blake2b(
        json.dumps([settings, stats_now]).encode(), digest_size=16).hexdigest()
    index = cache / _INDEX / f"{stat_key}.json" if stat_key else None
    seen = _read_json(index) if index is not None else None     # before queueing on the lock
    how = "built"
    with _cache_lock(cache / _INDEX, stat_key or "content"):
        key = None
        now = _read_json(index) if index is not None else None
        # The index is rewritten only by a process that has just read and hashed the files, so a change
        # while this one queued means the content was checked a moment ago: "hash" can trust it too.
        if now is not None and (cache_check == "stat" or now != seen):
            key = now["entry"] if (cache / now["entry"] / "meta.json").exists() else None
            same = (f"same {source.description}" if isinstance(source, RowSource) else
                    "same files, sizes and times")
            how = (f"cache hit ({same})" if cache_check == "stat" else
                   "cache hit (content hashed by another process just now)")
        if key is None:
            key, built = _build(source, tokenizer, cache, settings, val_fraction, seed, has_val)
            how = "built" if built else "cache hit (same content hash)"
            if index is not None:
                _write_json(index, dict(entry=key, nonce=uuid.uuid4().hex, files=stats_now))
    entry = cache / key
    meta = json.loads((entry / "meta.json").read_text())
    if not fitted:                       # the vocabulary built with this entry, whoever built it
        tokenizer.itos = list(meta["tokenizer"]["itos"])
        tokenizer._reindex()
    stats = DataStats()
    train = _open_ids(entry / "train.i32")
    val = _open_ids(entry / "val.i32")
    for k in ("rows", "train_rows", "val_rows", "train_tokens", "val_tokens", "unk_tokens", "missing"):
        setattr(stats, k, int(meta[k]))
    if has_val:
        vstats = DataStats()
        parts = list(tokenizer.encode_lines(rows_of(val_source, vstats)()))
        val = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        check_val_text(val, vstats)
        stats.val_rows, stats.val_tokens = vstats.rows or stats.val_rows, int(val.size)
        stats.notes.extend(vstats.notes)
    if train.size < 2:
        raise DataError("No text to train on. Give at least a sentence or two of text.")
    stats.notes.append(f"streamed {stats.train_tokens:,} training tokens from a memory-mapped token file "
                       f"({entry}; {how})")
    return Corpus(train, val, tokenizer, stats, key)


def _build(source: object, tokenizer: Tokenizer, cache: Path, settings: dict, val_fraction: float,
           seed: int, has_val: bool) -> Tuple[str, bool]:
    """Passes 1 and 2 (see the module docstring); returns (content key, whether pass 2 ran).

    Pass 1 always runs here (it yields the content key); when an entry with that key exists, pass 2 is
    skipped and the entry's stored vocabulary is used. ``tokenizer`` is not changed: the caller loads
    the vocabulary from the entry, so builder and waiters take it from the same place.
    """
    stats = DataStats()
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))   # becomes the cache entry, or is removed
    try:
        rows = _row_factory(source, work, stats)
        spooled_missing = stats.missing       # a spooled source counted its missing values while spooling
        # ---- pass 1: fingerprint the content (+ settings), count the training rows' tokens
        h = hashlib.blake2b(digest_size=16)
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
        if tokenizer.fitted:
            for _ in train_rows:
                pass
        else:
            tokenizer.count(train_rows, counter)
        h.update(("\n".join(block) + "\n").encode("utf-8", "surrogatepass"))
        key = h.hexdigest()
        entry = cache / key
        if (entry / "meta.json").exists():
            return key, False
        if tokenizer.fitted:
            vocab = tokenizer
        else:
            if not counter:
                raise DataError("No text to train on. Give at least a sentence or two of text.")
            vocab = Tokenizer.from_dict(tokenizer.to_dict()).build(counter)
        del counter
        # ---- pass 2: encode in chunks into the token files of the temporary entry
        stats.missing = spooled_missing       # pass 1 counted them once; pass 2 counts them again
        train_out, val_out = _Appender(work / "train.i32"), _Appender(work / "val.i32")
        n_rows = n_val_rows = 0
        unk = vocab.unk_id
        for is_val, r in _split(rows(), val_fraction, seed, has_val):
            n_rows += 1
            n_val_rows += is_val
            (val_out if is_val else train_out).extend(vocab.encode_line(r), unk)
        train_out.close(unk)
        val_out.close(unk)
        meta = dict(rows=n_rows, train_rows=n_rows - n_val_rows, val_rows=n_val_rows,
                    train_tokens=train_out.count, val_tokens=val_out.count, unk_tokens=train_out.unk,
                    missing=stats.missing, settings=settings, tokenizer=vocab.to_dict())
        (work / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(work, entry)       # atomic: the entry appears whole
        except OSError:
            if not (entry / "meta.json").exists():   # not a concurrent writer finishing first
                raise
        return key, True
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
