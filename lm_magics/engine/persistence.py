"""Model files: the only module that calls torch.save / torch.load.

A model file is ``torch.save`` of a plain dict (no pickled classes)::

    {"format": "lm_magics.model", "format_version": 2, "kind": "lstm" | "ngram" | "mix",
     "config": {...}, "tokenizer": {"itos": [...], ...}, "meta": {rows, tokens, fingerprint, provenance, ...},
     "hparams": {...}, "state_dict": {name: tensor},          # lstm and mix
     "ngram": {"order", "vocab_size", "eos_id", "keys": [tensor], "counts": [tensor], "discounts"},
                                                              # ngram, mix, and an lstm's baseline
     "copies": {"window", "every", "hashes": tensor, "rows": tensor}}     # optional: the copy index

Format 1 (before n-gram models) had no "kind", "ngram" or "copies": it reads as kind "lstm".

Loading uses ``torch.load(weights_only=True)``, whose unpickler accepts only tensors and plain
containers, so a file can never run code; anything else is refused with ModelFileError. Saving writes a
temporary file in the same folder, fsyncs it and renames it over the target, so an existing model file
is replaced whole or not at all, even if the process dies mid-write.

What saving replaces: only a regular file. A directory, device (``/dev/null``), FIFO or socket at the
path is refused, so a model never takes the place of a system file, even as root. A symbolic link to a
regular file is written through: the file it points to is replaced (atomically, in its own folder) and
the link stays; a dangling link, or one to anything but a regular file, is refused. A replaced file keeps
its permission bits; a new file gets what the umask gives (0644 under umask 022). ``check_writable``
runs the same checks (and a probe write) before any work, so the CLI refuses a bad ``-o`` before
training rather than after.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import torch

from ..errors import ModelFileError
from . import memory
from .paths import kind_of, not_regular

__all__ = ["FORMAT", "FORMAT_VERSION", "write_checkpoint", "read_checkpoint", "atomic_write", "check_writable",
           "model_path", "shown_path"]

FORMAT = "lm_magics.model"
FORMAT_VERSION = 2
KINDS = ("lstm", "ngram", "mix")
_REQUIRED = {"lstm": ("hparams", "config", "tokenizer", "state_dict", "meta"),
             "ngram": ("config", "tokenizer", "meta", "ngram"),
             "mix": ("hparams", "config", "tokenizer", "state_dict", "meta", "ngram")}
_ZIP_MAGIC = b"PK\x03\x04"
_TMP_SUFFIX = ".tmp"

PathLike = Union[str, "os.PathLike[str]"]


# ------------------------------------------------------------------------------------------ paths

def model_path(path: Any) -> Path:
    """A model file's path as given (str, bytes or os.PathLike; ``~`` expanded), or a one-line ModelFileError."""
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            raw = os.fspath(path)
        except TypeError:          # a PathLike whose __fspath__ returns something else
            raw = None
    else:
        raw = None
    if raw is None:
        raise ModelFileError(f"A model file path must be text or a pathlib.Path, got {type(path).__name__}.")
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if "\x00" in raw:
        raise ModelFileError(f"The path {shown_path(raw)} contains a NUL byte (\\x00), which no file name can hold; "
                             f"remove it.")
    if not raw.strip():
        raise ModelFileError("The model file path is empty; give a file name such as 'model.lm'.")
    return Path(os.path.expanduser(raw))


def shown_path(p: Any, limit: int = 120) -> str:
    """A path quoted for a one-line message: control characters escaped, the middle of a long one elided."""
    s = str(p)
    if not s.isprintable():
        s = repr(s)[1:-1]
    if len(s) > limit:
        s = s[: limit // 2 - 2] + "..." + s[-(limit // 2 - 2):]
    return f"'{s}'"


def _not_a_folder(p: Path) -> Optional[Path]:
    """The first existing component above p that is not a folder (why a path gives ENOTDIR), if any."""
    for parent in reversed(p.parents):
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                return parent
        except OSError:
            return None
    return None


def _save_error(exc: OSError, path: Path, existed: bool) -> ModelFileError:
    """A one-line ModelFileError naming the cause of a failed save (and saying the old file is intact)."""
    code = getattr(exc, "errno", None)
    folder = path.parent
    kept = f"; {shown_path(path)} is unchanged" if existed else ""
    if code in (errno.EACCES, errno.EPERM):
        return ModelFileError(f"No permission to write in {shown_path(folder)}; save somewhere else{kept}.")
    if code == errno.EROFS:
        return ModelFileError(f"Cannot save {shown_path(path)}: the file system is read-only; save somewhere "
                              f"writable{kept}.")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        why = "the file is too large for this file system" if code == errno.EFBIG else (
            "the disk is full" if code == errno.ENOSPC else "the disk quota is used up")
        return ModelFileError(f"Cannot save {shown_path(path)}: {why}; free some space or save somewhere else{kept}.")
    if code == errno.ENOTDIR:
        bad = _not_a_folder(path)
        what = f"{shown_path(bad)} is a file, not a folder" if bad else "a part of the path is not a folder"
        return ModelFileError(f"Cannot save {shown_path(path)}: {what}; give a path inside a folder.")
    if code == errno.ENAMETOOLONG:
        n = max(len(os.fsencode(part)) for part in path.parts)
        what = (f"a name in it is too long ({n} bytes; a file or folder name holds at most 255)" if n > 255 else
                f"the path is too long ({len(os.fsencode(str(path))):,} bytes; at most 4,096)")
        return ModelFileError(f"Cannot save {shown_path(path)}: {what}; use a shorter name.")
    if code == errno.ENOENT:
        return ModelFileError(f"Folder {shown_path(folder)} does not exist; create it first (os.makedirs).")
    if code == errno.EISDIR:
        return ModelFileError(f"{shown_path(path)} is a directory; give a file name such as "
                              f"{shown_path(path / 'model.lm')}.")
    if code == errno.ELOOP:
        return ModelFileError(f"Cannot save {shown_path(path)}: too many levels of symbolic links; give the real path.")
    reason = (exc.strerror if getattr(exc, "strerror", None) else str(exc)) or type(exc).__name__
    return ModelFileError(f"Cannot save {shown_path(path)}: {reason.splitlines()[0][:160]}{kept}.")


def _target(path: Path) -> "tuple[Path, Optional[os.stat_result]]":
    """The file a save at path writes (a symlink's target) and its stat (None: it will be created).

    Raises ModelFileError when the path is anything a save must not replace, or cannot be created."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _save_error(exc, path, False) from None
    target = path
    if st is not None and stat.S_ISLNK(st.st_mode):
        # Write through the link: replace the file it points to, keep the link itself.
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ModelFileError(f"{shown_path(path)} is a symbolic link to {shown_path(os.readlink(path))}, which "
                                 f"does not exist; lm_magics writes through a link only to an existing file. Save "
                                 f"to the real path, or remove the link.") from None
        except OSError as exc:
            raise _save_error(exc, path, False) from None
        target = Path(os.path.realpath(path))
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{shown_path(path)} is a symbolic link to {shown_path(target)}, which is "
                                 f"{kind_of(st.st_mode)}; "
                                 f"lm_magics replaces only regular files. Give the path of a model file.")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileError(f"{shown_path(path)} is a directory; give a file name such as "
                                 f"{shown_path(path / 'model.lm')}.")
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{shown_path(path)} is {kind_of(st.st_mode)}, not a regular file; lm_magics replaces "
                                 f"only regular files. Give the path of a model file.")
        return target, st
    folder = target.parent
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        bad = _not_a_folder(target)
        if bad is not None:
            raise ModelFileError(f"Cannot save {shown_path(path)}: {shown_path(bad)} is a file, not a folder; give a "
                                 f"path inside a folder.") from None
        raise ModelFileError(f"Folder {shown_path(folder)} does not exist; create it first (os.makedirs).") from None
    except OSError as exc:
        raise _save_error(exc, target, False) from None
    if not stat.S_ISDIR(fst.st_mode):
        raise ModelFileError(f"Cannot save {shown_path(path)}: {shown_path(folder)} is a file, not a folder; give "
                             f"a path inside a folder.")
    return target, None


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else set-and-restore."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _mkstemp(target: Path, existed: bool) -> "tuple[int, str]":
    # A hidden temp name beside the target; the target's name is cut so that the temp name stays within
    # the 255-byte limit whenever the target's own name does.
    stem = os.fsencode(target.name)[:100].decode(errors="ignore") or "model"
    try:
        return tempfile.mkstemp(prefix=f".{stem}.", suffix=_TMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise _save_error(exc, target, existed) from None


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        sv = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    blocks = sv.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else sv.f_bavail
    return blocks * sv.f_frsize


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        return False


def _check_space(target: Path, size: Optional[int], existed: bool) -> None:
    """Refuse a save that cannot fit: ``size`` bytes (what will be written) against the free space; without
    a size, a disk with no space at all. A read-only file system is named as such, not as a full disk."""
    if _read_only(target.parent):
        raise _save_error(OSError(errno.EROFS, "read-only file system"), target, existed)
    free = _free_bytes(target.parent)
    if free is None:
        return
    if (size is None and free == 0) or (size is not None and free < size):
        why = "the disk is full" if free == 0 else (f"the disk has too little free space (about {size / 1e6:,.1f} "
                                                    f"MB needed, {free / 1e6:,.1f} MB free)")
        raise ModelFileError(f"Cannot save {shown_path(target)}: {why}; free some space or save somewhere else"
                             + (f"; {shown_path(target)} is unchanged." if existed else "."))


def check_writable(path: Any, size: Optional[int] = None) -> Path:
    """Check, before any work, that a model file can be saved at path; return the file that will be written.

    Refuses (one-line ModelFileError) what a save would refuse: a directory, device, FIFO or socket, a
    dangling link, a missing folder or a parent that is a file, a name too long or holding a NUL byte.
    Then creates and removes a probe file in the folder (a read-only file system or a folder without
    write permission fail here, root included) and checks the free space (``size`` bytes if given, else
    any). Leaves nothing behind.

    >>> check_writable("out/model.lm")          # doctest: +SKIP
    PosixPath('out/model.lm')
    """
    p = model_path(path)
    target, st = _target(p)
    fd, tmp = _mkstemp(target, st is not None)
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    _check_space(target, size, st is not None)
    return target


# ------------------------------------------------------------------------------------------ saving

class _Recorded:
    """A file wrapper that remembers the first OSError of a write: torch's zip writer turns a failed write
    (a full disk) into "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", and this keeps
    the real cause for the message."""

    def __init__(self, fh: Any):
        self.fh, self.error = fh, None

    def write(self, b: Any) -> int:
        try:
            return self.fh.write(b)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def atomic_write(path: Any, write: Callable[[Any], None], size: Optional[int] = None) -> None:
    """Call write(fileobj) on a temp file beside path, then rename it over path (all or nothing).

    Only a regular file is ever replaced (see the module docstring for links and special files); the
    replaced file's mode is kept, a new file gets 0666 minus the umask. Every failure is a one-line
    ModelFileError naming the cause, with the old file untouched and the temp file removed. ``size``
    (bytes, if known) is checked against the free space first.
    """
    p = model_path(path)
    target, st = _target(p)
    existed = st is not None
    _check_space(target, size, existed)
    fd, tmp = _mkstemp(target, existed)
    rec: Optional[_Recorded] = None
    try:
        with os.fdopen(fd, "wb") as raw:                      # owns fd from here: closed whatever happens
            _copy_mode(raw.fileno(), st)
            rec = _Recorded(raw)
            write(rec)
            rec.flush()
            os.fsync(raw.fileno())
        _target(p)        # still a regular file (or still absent) just before the rename
        os.replace(tmp, target)
    except BaseException as exc:
        # Whatever stopped us (disk full, Ctrl-C, a bug), the old file is untouched: drop the temp file.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, ModelFileError):
            raise
        cause = rec.error if rec is not None and rec.error is not None else exc
        if isinstance(cause, OSError) and isinstance(exc, (OSError, RuntimeError)):
            raise _save_error(cause, target, existed) from None
        raise
    _sync_folder(target.parent)


def _copy_mode(fd: int, old: Optional[os.stat_result]) -> None:
    """Give the temp file (0600 from mkstemp) the replaced file's mode and owner, or 0666 minus the umask."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask())
    if old is not None and hasattr(os, "fchown") and (old.st_uid, old.st_gid) != tuple(os.fstat(fd)[4:6]):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)             # keeps the owner where we may (root)
        except OSError:
            pass


def _sync_folder(folder: Path) -> None:
    """fsync the folder so the rename itself survives a power cut (best effort; not on every OS)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def payload_bytes(obj: Any) -> int:
    """About how many bytes torch.save writes for obj: its tensors' bytes and its texts' lengths."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(k) + payload_bytes(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj) + 2 * len(obj)
    if isinstance(obj, str):
        return len(obj) + 4
    return 8


def write_checkpoint(path: Any, payload: Dict[str, Any]) -> None:
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    # The file is about the size of all its tensors (weights, n-gram tables, copy index) plus the
    # vocabulary: checked against the free space before the first byte is written.
    size = payload_bytes(payload) + 65_536
    atomic_write(path, lambda fh: torch.save(ckpt, fh), size=size)


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read and check a model file; raise ModelFileError with what to do on any problem."""
    p = model_path(path)
    try:
        p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ModelFileError(f"Model file {shown_path(p)} not found (working directory {os.getcwd()}).") from None
    except OSError as exc:     # a name too long, a loop of links, a folder that may not be searched
        raise ModelFileError(f"Cannot read {shown_path(p)}: {(exc.strerror or str(exc)).lower()}; give the path "
                             f"of a model file.") from None
    if p.is_dir():
        raise ModelFileError(f"'{p}' is a directory, not a model file.")
    kind = not_regular(p)     # a FIFO would block the open below, /dev/zero would never end
    if kind is not None:
        raise ModelFileError(f"{shown_path(p)} is {kind}, not a model file; give a file saved with model.save(path).")
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except PermissionError:
        raise ModelFileError(f"No permission to read '{p}'; fix its permissions.") from None
    except OSError as exc:
        raise ModelFileError(f"Cannot read {shown_path(p)}: {(exc.strerror or str(exc)).lower()}.") from None
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
            # What torch.load will unpack, checked before it does (a crafted zip can deflate to gigabytes).
            memory.check(sum(i.file_size for i in zf.infolist()), f"Loading {shown_path(p)}",
                         "load it where more memory is free", error=ModelFileError)
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
    kind = ckpt.setdefault("kind", "lstm")    # format 1 files hold LSTMs only
    if kind not in KINDS:
        raise ModelFileError(f"'{p}' holds a model of unknown kind {kind!r}; it is damaged or from a newer "
                             f"lm_magics. Save the model again.")
    missing = [k for k in _REQUIRED[kind] if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise ModelFileError(f"'{p}' lacks {', '.join(missing)}; it is damaged. Save the model again.")
    return ckpt


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return (s[0] if s else type(exc).__name__)[:160]
