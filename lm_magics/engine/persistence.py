"""Model files: the only module that calls torch.save / torch.load.

A model file is ``torch.save`` of a plain dict (no pickled classes)::

    {"format": "lm_magics.model", "format_version": 1,
     "hparams": {...}, "config": {...}, "tokenizer": {"itos": [...], ...},
     "state_dict": {name: tensor}, "meta": {rows, tokens, fingerprint, seed, val_ppl, elapsed, ...}}

Loading uses ``torch.load(weights_only=True)``, whose unpickler accepts only tensors and plain
containers, so a file can never run code; anything else is refused with ModelFileError. Saving writes a
temporary file in the same folder, fsyncs it and renames it over the target, so an existing model file
is replaced whole or not at all, even if the process dies mid-write.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import torch

from ..errors import ModelFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "write_checkpoint", "read_checkpoint", "atomic_write"]

FORMAT = "lm_magics.model"
FORMAT_VERSION = 1
_REQUIRED = ("hparams", "config", "tokenizer", "state_dict", "meta")
_ZIP_MAGIC = b"PK\x03\x04"

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: "callable") -> None:
    """Call write(fileobj) on a temp file beside path, then rename it over path (all or nothing)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.is_dir():
        raise ModelFileError(f"'{path}' is a directory; give a file name such as '{path / 'model.lm'}'.")
    folder = path.parent
    if not folder.exists():
        raise ModelFileError(f"Folder '{folder}' does not exist; create it first (os.makedirs).")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        raise ModelFileError(f"No permission to write in '{folder}'; save somewhere else.") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Whatever stopped us (disk full, Ctrl-C, a bug), the old file is untouched: drop the temp file.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_checkpoint(path: PathLike, payload: Dict[str, Any]) -> None:
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda fh: torch.save(ckpt, fh))


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read and check a model file; raise ModelFileError with what to do on any problem."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise ModelFileError(f"Model file '{p}' not found (working directory {os.getcwd()}).")
    if p.is_dir():
        raise ModelFileError(f"'{p}' is a directory, not a model file.")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except PermissionError:
        raise ModelFileError(f"No permission to read '{p}'; fix its permissions.") from None
    if head != _ZIP_MAGIC:
        kind = "it is empty" if not head else "it is not a saved lm_magics model"
        raise ModelFileError(f"'{p}' is not a model file ({kind}); save one with model.save(path).")
    try:  # a readable zip without torch's data.pkl is some other archive, not a damaged model
        zf = zipfile.ZipFile(p)
    except Exception:  # unreadable as a zip: torch.load below says how
        zf = None
    if zf is not None:
        with zf:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist()):
                raise ModelFileError(f"'{p}' is a zip archive, not a saved lm_magics model; save one with "
                                     f"model.save(path).")
            # torch.load does not check the CRC-32 the zip keeps for every entry, so a flipped bit in
            # the weights would load silently; one pass of zlib's crc32 (about 1 GB/s) catches it.
            try:
                bad = zf.testzip()
            except Exception as exc:
                bad = _first_line(exc)
        if bad is not None:
            raise ModelFileError(f"'{p}' is corrupted (checksum mismatch in {bad}); save the model again or "
                                 f"copy the file again.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"Refused '{p}': it holds Python objects other than weights, and lm_magics "
                             f"never runs code from model files ({_first_line(exc)}).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError, TypeError,
            AttributeError, IndexError, UnicodeDecodeError, MemoryError, OverflowError, AssertionError) as exc:
        raise ModelFileError(f"'{p}' is damaged or truncated and cannot be loaded ({_first_line(exc)}); "
                             f"save the model again.") from None
    except Exception as exc:  # torch's loaders raise a zoo of types on crafted bytes
        raise ModelFileError(f"'{p}' cannot be loaded ({type(exc).__name__}: {_first_line(exc)}); "
                             f"save the model again.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelFileError(f"'{p}' is a PyTorch file but not an lm_magics model; save one with model.save(path).")
    version = ckpt.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"'{p}' has no valid format version; it is damaged. Save the model again.")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"'{p}' was saved by a newer lm_magics (format {version}, this one reads up to "
                             f"{FORMAT_VERSION}); upgrade with `pip install -U lm-magics`.")
    missing = [k for k in _REQUIRED if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise ModelFileError(f"'{p}' lacks {', '.join(missing)}; it is damaged. Save the model again.")
    return ckpt


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return (s[0] if s else type(exc).__name__)[:160]
