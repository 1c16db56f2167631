"""Text sources -> rows -> token-id streams -> batches for truncated BPTT.

A *source* is a ``str`` (one row per line), a list/tuple/iterable of ``str`` (one row each), a pandas or
polars Series (one row per value), or files (``pathlib.Path``, or :func:`files` for globs; one row per
line, read as a stream). Missing values (None, NaN, pd.NA) are skipped and counted.

Rows are split into training and validation rows by a seeded draw (about ``val_fraction`` of the rows),
so the split is the same on every run. Token ids are kept as a compact int32 numpy array.
"""

from __future__ import annotations

import codecs
import glob
import io
import math
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .paths import NotRegularFile, not_regular, open_regular
from .tokenizer import Tokenizer

__all__ = ["Files", "files", "file_lines", "text_lines", "check_encoding", "rows_of", "DataStats", "Corpus",
           "prepare", "batchify", "windows", "StreamBatches"]

# Rows drawn for validation come in blocks drawn from one generator, so streaming sources get the same
# split as in-memory ones without knowing their length up front.
_SPLIT_BLOCK = 4096
# Below these a held-out split by rows would be meaningless; see prepare().
_MIN_VAL_TOKENS = 20
_MIN_SPLIT_ROWS = 10


@dataclass(frozen=True)
class Files:
    """One or more text files (glob patterns allowed), read line by line: ``lm.train(lm.files("*.txt"))``."""

    patterns: Tuple[str, ...]
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        check_encoding(self.encoding)

    def paths(self) -> List[Path]:
        out: List[Path] = []
        for pat in self.patterns:
            pat = os.path.expanduser(str(pat))
            # A file literally named like a pattern ("a[1].txt") is that file; otherwise a pattern globs.
            hits = [pat] if not glob.has_magic(pat) or os.path.lexists(pat) else sorted(glob.glob(pat))
            if not hits:
                raise DataError(f"No file matches '{pat}'. Check the pattern (and the working directory "
                                f"{os.getcwd()}).")
            for h in hits:
                p = Path(h)
                if not p.exists():
                    raise DataError(f"File not found: '{h}'. Check the path (working directory {os.getcwd()}).")
                if p.is_dir():
                    raise DataError(f"'{h}' is a directory; give the files in it, e.g. '{h}/*.txt'.")
                kind = not_regular(p)
                if kind is not None:
                    raise _not_regular_error(h, kind)
                if not os.access(p, os.R_OK):
                    raise DataError(f"No permission to read '{h}'. Fix its permissions or copy it somewhere readable.")
                out.append(p)
        return out

    def read(self, notes: Optional[List[str]] = None) -> Iterator[str]:
        """The lines of every file in turn (see :func:`file_lines`)."""
        for p in self.paths():
            yield from file_lines(p, self.encoding, notes)

    def __iter__(self) -> Iterator[str]:
        return self.read()


def _not_regular_error(path: str, kind: str) -> DataError:
    return DataError(f"'{path}' is {kind}, not a regular file; lm_magics reads text only from regular files "
                     f"(save the text to a file first).")


def file_lines(path: "str | os.PathLike", encoding: str = "utf-8",
               notes: Optional[List[str]] = None) -> Iterator[str]:
    """The lines of one text file, ending in "\\n" (see :func:`text_lines` for what is refused; ``notes``
    gets a line when a few bytes could not be decoded). Anything but a regular file is refused before
    it is read: a FIFO would block, /dev/zero would never end."""
    if not str(os.fspath(path)).strip():
        raise DataError("A file name is empty; give the path of a text file ('-' reads stdin).")
    try:
        fh = open_regular(path)
    except NotRegularFile as exc:
        raise _not_regular_error(os.fspath(path), str(exc)) from None
    except OSError as exc:
        raise DataError(f"Cannot read '{os.fspath(path)}': {exc.strerror or exc}. Check the path.") from None
    with fh:
        yield from text_lines(fh, os.fspath(path), encoding, notes)


def files(*patterns: "str | os.PathLike", encoding: str = "utf-8") -> Files:
    """Mark paths (or glob patterns) as files to read, as opposed to text: ``lm.files("notes/*.md")``.

    ``encoding`` is the files' text encoding (``"latin-1"``, ``"cp1252"``, ``"utf-16"``, ...); files that
    do not decode with it are refused with a message saying what they look like."""
    if not patterns:
        raise DataError("files() needs at least one path or glob pattern.")
    for p in patterns:
        if not isinstance(p, (str, os.PathLike)) or isinstance(os.fspath(p), bytes):
            raise DataError(f"files() takes paths or glob patterns (str or pathlib.Path), got "
                            f"{type(p).__name__}.")
        if not str(os.fspath(p)).strip():     # Path('') is '.', the working directory: not what was meant
            raise DataError("A file name is empty; give a file or a glob pattern, e.g. 'notes/*.txt'.")
    return Files(tuple(os.fspath(p) for p in patterns), encoding)


# ------------------------------------------------------------------------------------ decoding files

_SNIFF_BYTES = 1 << 16      # the head of a file that is checked for magic numbers, BOMs and NUL bytes
# A text file in the wrong encoding yields an undecodable byte (U+FFFD) for most non-ASCII characters:
# several per hundred characters in accented Latin text, about one in two in binary data. A share above
# this refuses the file; fewer (a damaged byte here and there) are replaced and reported in a note.
_MAX_BAD_SHARE = 0.001
_CHECK_EVERY = 1 << 20      # characters between share checks on a long file (fail early, not at the end)
_MAGIC = tuple((re.compile(start, re.S), what, todo) for start, what, todo in (
    # (how the file starts, what it is, what to do); none of these starts a text file
    (rb"\x1f\x8b", "gzip-compressed data", "decompress it first (gunzip)"),
    (rb"BZh[1-9]1AY&SY", "bzip2-compressed data", "decompress it first (bunzip2)"),
    (rb"\xfd7zXZ\x00", "xz-compressed data", "decompress it first (unxz)"),
    (rb"\x28\xb5\x2f\xfd", "zstd-compressed data", "decompress it first (unzstd)"),
    (rb"PK\x03\x04", "a zip archive (or an lm_magics model file)", "extract the text files from it"),
    (rb"7z\xbc\xaf\x27\x1c", "a 7-zip archive", "extract the text files from it"),
    (rb"%PDF-\d", "a PDF document", "extract its text first (e.g. pdftotext)"),
    (rb"\x89PNG\r\n", "a PNG image", "give a text file"),
    (rb"\xff\xd8\xff", "a JPEG image", "give a text file"),
    (rb"\x7fELF", "an executable", "give a text file"),
    (rb"\x93NUMPY", "a numpy array file", "give a text file"),
))
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def check_encoding(encoding: object) -> str:
    """The normalized codec name of a text encoding ('latin-1' -> 'iso8859-1'), else ConfigError."""
    if not isinstance(encoding, str):
        raise ConfigError(f"encoding must be the name of a text encoding such as 'utf-8' or 'latin-1', got "
                          f"{type(encoding).__name__}.")
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"Unknown text encoding {encoding!r}; use e.g. 'utf-8', 'latin-1', 'cp1252' or "
                          f"'utf-16'.")
    return info.name


def _encoding_hint(enc: str) -> str:
    return f"pass its encoding: --encoding {enc} (in Python lm.files(path, encoding='{enc}'))"


def _looks_like(head: bytes, codec: str) -> Tuple[str, str]:
    """(what the bytes look like, what to do) for a file that does not decode as codec."""
    for magic, what, todo in _MAGIC:
        if magic.match(head):
            return what, todo
    for bom, family in _BOMS:
        if head.startswith(bom):
            return f"{family.upper()} text with a byte-order mark", _encoding_hint(family)
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > len(head) // 4 and even < odd // 8:
            return "UTF-16 text without a byte-order mark", _encoding_hint("utf-16-le")
        if even > len(head) // 4 and odd < even // 8:
            return "UTF-16 text without a byte-order mark", _encoding_hint("utf-16-be")
        return "binary data with NUL bytes", "give a text file"
    if not _decodes(head, codec):
        if any(0x80 <= b <= 0x9F for b in head):
            return "Windows-1252 text", _encoding_hint("cp1252")
        return "Latin-1 text", _encoding_hint("latin-1")
    # The start decodes: the bad bytes come later (files joined from several sources, or damage).
    return ("text in more than one encoding, or damaged",
            "convert it all to UTF-8, or pass its encoding (e.g. --encoding latin-1)")


def _decodes(data: bytes, codec: str) -> bool:
    """True if data is valid in codec (a multi-byte character cut at the end is fine)."""
    try:
        codecs.getincrementaldecoder(codec)().decode(data, final=False)
        return True
    except UnicodeDecodeError:
        return False


def text_lines(binary: BinaryIO, name: str, encoding: str = "utf-8",
               notes: Optional[List[str]] = None) -> Iterator[str]:
    """The lines of a binary stream decoded as text (universal newlines), refusing what is not text.

    Refused with a DataError that says what the data looks like and what to do: compressed files and
    other known binary formats (by their magic number), text with a UTF-16/32 byte-order mark read as
    another encoding, 8-bit text read as UTF-16/32, and data of which more than 0.1% of the characters
    are undecodable or NUL bytes (binary data, or text in another encoding, e.g. Latin-1 read as UTF-8),
    judged on the first 64 KB and again as the lines are read. A few undecodable bytes are replaced by
    U+FFFD, and ``notes`` gets a line that says how many (and one when a file read in an 8-bit encoding
    is valid UTF-8, which it most likely is then).
    """
    codec = check_encoding(encoding)
    head = binary.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(binary, "peek") else b""
    label = "UTF-8" if codec == "utf-8" else encoding

    def refuse(detail: str) -> DataError:
        what, todo = _looks_like(head, codec)
        return DataError(f"'{name}' is not {label} text (it looks like {what}{detail}); {todo}.")

    if any(m.match(head) for m, _, _ in _MAGIC):
        raise refuse("")
    family = next((f for bom, f in _BOMS if head.startswith(bom)), None)
    if family is not None and not codec.startswith(family):
        raise refuse("")
    if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
        codec = "utf-8-sig"                  # UTF-8 with a BOM: the BOM is not part of the first word
    wide = codec.startswith(("utf-16", "utf-32"))
    if wide and head and b"\x00" not in head and _decodes(head, "utf-8"):
        # UTF-16/32 text has NULs (every ASCII character, every newline); without any this is 8-bit text.
        raise DataError(f"'{name}' is not {label} text (it looks like UTF-8 text: it has no NUL bytes); drop "
                        f"--encoding {encoding} (UTF-8 is the default).")
    # The head shows most bad files at once (and a file of NULs without a newline has no line to count).
    sample = codecs.getincrementaldecoder(codec)(errors="replace").decode(head, final=False)
    bad = sample.count("\ufffd") + sample.count("\x00")
    if bad > _MAX_BAD_SHARE * len(sample):
        raise refuse(f": {bad:,} of the first {len(sample):,} characters are undecodable or NUL")
    if notes is not None and not wide and codec not in ("utf-8", "utf-8-sig") and not head.isascii() \
            and _decodes(head, "utf-8"):
        note = f"'{name}' also reads as UTF-8 (its non-ASCII bytes are valid UTF-8); if it is UTF-8, drop " \
               f"--encoding {encoding}"
        if note not in notes:
            notes.append(note)
    text = io.TextIOWrapper(binary, encoding=codec, errors="replace", newline=None)
    chars = bad = 0
    next_check = _CHECK_EVERY
    try:
        for line in text:
            chars += len(line)
            if not line.isascii():           # O(1) in CPython: most lines skip the scan
                bad += line.count("\ufffd")
            if "\x00" in line:
                bad += line.count("\x00")
            if chars >= next_check:
                next_check += _CHECK_EVERY
                if bad > _MAX_BAD_SHARE * chars:
                    raise refuse(f": {bad:,} of the first {chars:,} characters are undecodable or NUL")
            yield line
    finally:
        text.detach()                        # the caller owns (and closes) the binary stream
    if bad > _MAX_BAD_SHARE * chars:
        raise refuse(f": {bad:,} of its {chars:,} characters are undecodable or NUL")
    if bad and notes is not None:
        note = f"'{name}': {bad:,} of {chars:,} characters are undecodable bytes (read as U+FFFD) or NULs"
        if note not in notes:
            notes.append(note)


@dataclass
class DataStats:
    """What a source held: the training summary reports it."""

    rows: int = 0            # rows (lines, values) used
    missing: int = 0         # None / NaN values skipped
    converted: int = 0       # non-text values turned into text with str()
    train_rows: int = 0
    val_rows: int = 0
    train_tokens: int = 0
    val_tokens: int = 0
    unk_tokens: int = 0      # training tokens outside the vocabulary
    notes: List[str] = field(default_factory=list)


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    try:  # pandas.NA, numpy.nan wrapped in other types, NaT
        ne = v != v
    except Exception:
        return False
    if type(ne).__name__ == "NAType":  # pandas.NA != pandas.NA is NA, and bool(NA) raises
        return True
    try:
        return bool(ne)
    except Exception:
        return False


def _series_values(s: object) -> Optional[Iterable]:
    """Values of a pandas/polars Series (or None if s is not one), rejecting non-text columns."""
    mod = type(s).__module__
    if not (mod.startswith("pandas") or mod.startswith("polars")) or not hasattr(s, "dtype"):
        return None
    dtype = str(s.dtype)
    if hasattr(s, "to_list") and mod.startswith("polars"):
        if dtype.startswith(("Int", "UInt", "Float", "Boolean")):
            raise DataError(f"The column holds {dtype} values, not text; pick a text column or convert it "
                            f"with .cast(str).")
        return s.to_list()
    kind = getattr(s.dtype, "kind", "O")
    if kind in "iufcbmM":
        name = getattr(s, "name", None)
        raise DataError(f"Column {name!r} holds {dtype} values, not text; pick a text column or convert it "
                        f"with .astype(str).")
    return s.tolist() if dtype != "category" else s.astype(object).tolist()


def rows_of(source: object, stats: Optional[DataStats] = None) -> Callable[[], Iterator[str]]:
    """Return a function that yields the rows of ``source`` afresh each time (sources are read twice:
    once to build the vocabulary, once to encode). One-shot iterators are materialized first."""
    stats = stats if stats is not None else DataStats()
    if isinstance(source, (Files, Path)):
        src = source if isinstance(source, Files) else files(source)
        src.paths()  # fail early with a clear message
        return lambda: src.read(stats.notes)
    if isinstance(source, str):
        text = source
        return lambda: iter(text.splitlines())
    if isinstance(source, bytes):
        raise DataError("Got bytes, not text: decode them first, e.g. data.decode('utf-8', errors='replace').")
    values = _series_values(source)
    if values is None:
        if hasattr(source, "columns"):
            raise DataError("Got a whole DataFrame; pass one text column, e.g. df['text'].")
        if not isinstance(source, Iterable):
            raise DataError(f"Cannot read text from a {type(source).__name__}; pass a str, a list of str, "
                            f"a pandas Series or lm.files('path').")
        values = source if isinstance(source, (list, tuple)) else list(source)
    rows: List[str] = []
    for v in values:
        if isinstance(v, str):
            rows.append(v)
        elif _is_missing(v):
            stats.missing += 1
        elif isinstance(v, bytes):
            rows.append(v.decode("utf-8", errors="replace"))
            stats.converted += 1
        else:
            rows.append(str(v))
            stats.converted += 1
    return lambda: iter(rows)


@dataclass
class Corpus:
    """Token ids ready to train on, the tokenizer that made them, and what the source held."""

    train: np.ndarray            # (N,) int32, rows concatenated, each ending in <eos>
    val: np.ndarray              # (M,) int32, may be empty
    tokenizer: Tokenizer
    stats: DataStats
    fingerprint: str = ""        # hash of the training ids: recorded in the model file
    train_row_numbers: Optional[np.ndarray] = None   # source row number of each training row (copy check)


def _fingerprint(ids: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(ids).view(np.uint8), digest_size=12).hexdigest()


def fingerprint_span(ids: np.ndarray, start: int, stop: int) -> str:
    """``_fingerprint(ids[start:stop])``. For a whole memory-mapped token file the span is read with plain
    file reads, 256 KB at a time: hashing through the mapping would leave every page of the span counted in
    this process's RSS (a rank's shard of a 1 GB corpus is hundreds of MB)."""
    import hashlib

    name = getattr(ids, "filename", None)
    if not (isinstance(ids, np.memmap) and name and ids.offset == 0 and os.path.getsize(name) == ids.nbytes):
        return _fingerprint(ids[start:stop])
    h = hashlib.blake2b(digest_size=12)
    item = ids.dtype.itemsize
    with open(name, "rb") as fh:
        fh.seek(start * item)
        left = (stop - start) * item
        while left > 0:
            chunk = fh.read(min(left, 1 << 18))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def check_val_text(val: np.ndarray, vstats: DataStats) -> None:
    """Validation text that is given must hold something to predict (two tokens: a word and its <eos>).
    An empty one is almost always a slice past the end of a list, not a wish to train unvalidated."""
    if val.size < 2:
        missing = f", {vstats.missing} missing" if vstats.missing else ""
        raise DataError(f"val_data has no text to validate on ({vstats.rows} row(s){missing}); give validation "
                        f"text, or leave val_data out to hold out val_fraction of the rows.")


def prepare(source: object, tokenizer: Tokenizer, *, val_source: object = None, val_fraction: float = 0.1,
            seed: int = 0) -> Corpus:
    """Tokenize a source into training and validation ids.

    If ``tokenizer`` has no vocabulary yet it is built from the training rows. With ``val_source`` given,
    all of ``source`` trains and ``val_source`` validates; otherwise about ``val_fraction`` of the rows
    (seeded) validate. Inputs too small for that fall back, and the fallback is written to
    ``stats.notes``.
    """
    stats = DataStats()
    rows = rows_of(source, stats)

    def split_rows() -> Iterator[Tuple[bool, str]]:
        """(is_val, row) for every row, the same on every call."""
        if val_source is not None or val_fraction <= 0:
            for r in rows():
                yield False, r
            return
        rng = np.random.default_rng(seed)
        mask: np.ndarray = np.zeros(0, bool)
        for i, r in enumerate(rows()):
            j = i % _SPLIT_BLOCK
            if j == 0:
                mask = rng.random(_SPLIT_BLOCK) < val_fraction
            yield bool(mask[j]), r

    fit_vocab = not tokenizer.fitted
    if fit_vocab:
        counter = tokenizer.count(r for v, r in split_rows() if not v)
        if not counter:
            # Every row may have landed in validation (a handful of rows): count them all instead.
            counter = tokenizer.count(r for _, r in split_rows())
        tokenizer.build(counter)
        if counter and not tokenizer.fitted:
            # Every word is rarer than min_freq: a model of <unk> alone could never suggest a word.
            top = max((n for w, n in counter.items() if w not in tokenizer.stoi), default=0)
            if top == 0:
                raise DataError("The text holds only <unk>/<eos> markers, no words; give some real text.")
            raise DataError(f"No word occurs at least min_freq={tokenizer.min_freq} times (the most frequent "
                            f"occurs {top}); lower min_freq or give more text.")

    # Blank rows are kept as a lone <eos>: in line-oriented text they separate paragraphs (WikiText's
    # convention, kept so perplexities compare with the textbook model's).
    train_parts: List[List[int]] = []
    val_parts: List[List[int]] = []
    train_numbers: List[int] = []
    for is_val, r in split_rows():
        ids = tokenizer.encode_line(r)
        if not is_val:
            train_numbers.append(stats.rows)
        stats.rows += 1
        (val_parts if is_val else train_parts).append(ids)
    numbers = np.asarray(train_numbers, dtype=np.int64)
    stats.train_rows, stats.val_rows = len(train_parts), len(val_parts)

    train = _concat(train_parts)
    val = _concat(val_parts)
    if val_source is not None:
        vstats = DataStats()
        val = _concat([tokenizer.encode_line(r) for r in rows_of(val_source, vstats)()])
        stats.val_rows = vstats.rows if vstats.rows else sum(1 for _ in rows_of(val_source)())
        stats.missing += vstats.missing
        stats.notes.extend(vstats.notes)
        check_val_text(val, vstats)

    real_tokens = int(train.size - stats.train_rows + val.size - stats.val_rows)  # without <eos>
    if stats.rows == 0 or real_tokens <= 0:
        extra = f" ({stats.missing} missing values skipped)" if stats.missing else ""
        raise DataError(f"No text to train on{extra}. Give at least a sentence or two of text.")

    if val_source is None and val_fraction > 0 and (
            stats.rows < _MIN_SPLIT_ROWS or val.size < _MIN_VAL_TOKENS or train.size < 2 * _MIN_VAL_TOKENS):
        # Too few rows for a row split: hold out the last val_fraction of the token stream instead, or,
        # for a few dozen tokens, validate on the training text itself.
        allids = _concat([train, val]) if val.size else train
        n_val = int(round(allids.size * val_fraction))
        if n_val >= _MIN_VAL_TOKENS and allids.size - n_val >= 2 * _MIN_VAL_TOKENS:
            train, val = allids[:-n_val], allids[-n_val:]
            stats.notes.append(f"only {stats.rows} row(s): validating on the last {n_val} tokens instead of "
                               f"held-out rows")
        else:
            train, val = allids, allids
            stats.notes.append(f"only {allids.size} tokens: validation perplexity is measured on the "
                               f"training text (add more text for a held-out estimate)")
        stats.train_rows, stats.val_rows = stats.rows, 0
        numbers = None   # the rows are no longer whole training rows in order: no row numbers
    stats.train_tokens, stats.val_tokens = int(train.size), int(val.size)
    stats.unk_tokens = int(np.count_nonzero(train == tokenizer.unk_id))
    if stats.missing:
        stats.notes.append(f"skipped {stats.missing} missing value(s)")
    if stats.converted:
        stats.notes.append(f"turned {stats.converted} non-text value(s) into text")
    return Corpus(train, val, tokenizer, stats, _fingerprint(train), numbers)


def _concat(parts: Sequence) -> np.ndarray:
    if not parts:
        return np.zeros(0, np.int32)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts).astype(np.int32, copy=False)
    flat: List[int] = []
    for p in parts:
        flat.extend(p)
    return np.asarray(flat, dtype=np.int32)


# ------------------------------------------------------------------------------------------ batches

def batchify(ids: np.ndarray, batch_size: int) -> torch.Tensor:
    """Lay a token stream out as ``batch_size`` parallel streams, one per column.

    The stream ``a b c d e f g h i j k l m n o p q r s t u v w x`` with batch_size 4 becomes::

                  col 0  col 1  col 2  col 3
        row 0  [    a      g      m      s   ]
        row 1  [    b      h      n      t   ]
        row 2  [    c      i      o      u   ]
        row 3  [    d      j      p      v   ]
        row 4  [    e      k      q      w   ]
        row 5  [    f      l      r      x   ]

    Each column is contiguous text, so the LSTM state at the end of one window is the right start for the
    next window of the same column. Leftover tokens (fewer than batch_size) are dropped.
    Returns a (rows, batch_size) int64 tensor.
    """
    if isinstance(ids, np.memmap):   # a streamed corpus: a view of the file, read one window at a time
        return StreamBatches(ids, batch_size)  # type: ignore[return-value]
    n = ids.size // batch_size
    if n < 2:
        raise DataError(f"{ids.size} tokens cannot fill {batch_size} streams; use a smaller batch_size.")
    cols = torch.from_numpy(np.ascontiguousarray(ids[: n * batch_size], dtype=np.int64)).view(batch_size, n)
    return cols.t().contiguous()  # (n, B)


def windows(data: torch.Tensor, seq_len: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Truncated-BPTT windows over batchified data: inputs rows i..i+T-1, targets one row later::

        x = data[i   : i+T]      (T, B)
        y = data[i+1 : i+T+1]    (T, B)   the next token of every input position

    The last window is shorter when the rows do not divide evenly.
    """
    for i in range(0, data.size(0) - 1, seq_len):
        t = min(seq_len, data.size(0) - 1 - i)
        yield data[i: i + t], data[i + 1: i + 1 + t]


def _file_span(ids: np.ndarray) -> Optional[Tuple[str, int]]:
    """(file, byte offset of ids[0]) for a contiguous view of a memory-mapped file; None otherwise."""
    mm = getattr(ids, "_mmap", None)
    name = getattr(ids, "filename", None)
    if mm is None or not name or not ids.flags.c_contiguous or ids.size == 0:
        return None
    try:
        start = np.frombuffer(mm, dtype=np.uint8).ctypes.data   # where the mapping begins in memory
    except (TypeError, ValueError):
        return None
    offset = getattr(ids, "offset", 0)
    # The mapping starts at the page boundary at or below the memmap's offset into the file.
    return name, ids.ctypes.data - start + offset - offset % mmap.ALLOCATIONGRANULARITY


class StreamBatches:
    """The ``(rows, B)`` layout of :func:`data.batchify` over a memory-mapped token stream, without a copy.

    Column j is the contiguous run ``ids[j*n : (j+1)*n]``, so ``ids[:n*B].reshape(B, n)`` is a view of the
    file; ``self[i:i+T]`` reads rows i..i+T-1 of every column (B short runs) into a (T, B) int64 tensor.
    It supports what ``windows`` and ``fit`` use: ``size(0)``, row slices and ``.to(device)``.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, device: "torch.device | str" = "cpu"):
        n = ids.size // batch_size
        if n < 2:
            raise DataError(f"{ids.size} tokens cannot fill {batch_size} streams; use a smaller batch_size.")
        self.ids, self.batch_size, self.rows = ids, batch_size, n
        self.cols = ids[: n * batch_size].reshape(batch_size, n)      # (B, n) view of the memmap
        self._file = _file_span(ids)      # (path, byte offset of ids[0]) when ids lie in a token file
        self.device = torch.device(device)

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.rows, self.batch_size)

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[dim]

    def to(self, device: "torch.device | str") -> "StreamBatches":
        return self if torch.device(device) == self.device else StreamBatches(self.ids, self.batch_size, device)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        if not isinstance(rows, slice):
            raise TypeError("StreamBatches supports row slices only")
        start, stop, step = rows.indices(self.rows)
        if self._file is None or step != 1:
            block = np.ascontiguousarray(self.cols[:, rows].T, dtype=np.int64)   # (T, B): B runs of T ids
            return torch.from_numpy(block).to(self.device)
        # Plain reads, not the mapping: a page touched through a mapping joins this process's RSS, with
        # its neighbours (the kernel maps MB-sized folios), so B columns would pin B*MBs per window.
        path, base = self._file
        t, item = max(0, stop - start), self.ids.dtype.itemsize
        block = np.empty((self.batch_size, t), np.int32)
        with open(path, "rb") as fh:
            for j in range(self.batch_size):
                fh.seek(base + (j * self.rows + start) * item)
                block[j] = np.frombuffer(fh.read(t * item), dtype=self.ids.dtype, count=t)
        return torch.from_numpy(np.ascontiguousarray(block.T, dtype=np.int64)).to(self.device)


# Public names for the other modules of the package (front-ends never import underscored names).
is_missing = _is_missing
series_values = _series_values
SPLIT_BLOCK = _SPLIT_BLOCK
