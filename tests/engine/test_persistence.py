"""Model files: exact round trip, plain-dict format, metadata, atomic writes, what a save may replace."""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

import lm_magics as lm
from lm_magics.engine import persistence
from lm_magics.engine.inference import Predictor

from conftest import make_special


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


# ------------------------------------------------------------------------ what a save may replace
# Issue 11 ("Files"): a save replaces only a regular file, says why it cannot in one line, keeps the old
# file and leaves no temp file; a replaced file keeps its mode, a new one gets the umask's.

def _one_line(exc: BaseException, *patterns: str) -> str:
    msg = str(exc)
    assert type(exc) is lm.ModelFileError and msg and "\n" not in msg and len(msg) < 400, msg
    assert "Traceback" not in msg
    for pattern in patterns:
        assert re.search(pattern, msg, re.I), msg
    return msg


def _temp_files(folder: Path) -> list:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


SPECIAL = {"fifo": (stat.S_ISFIFO, r"named pipe"), "chardev": (stat.S_ISCHR, r"character device"),
           "socket": (stat.S_ISSOCK, r"socket"), "directory": (stat.S_ISDIR, r"is a directory")}


@pytest.mark.parametrize("kind", list(SPECIAL))
def test_save_never_replaces_a_special_file(tiny_model, tmp_path: Path, kind):
    node = tmp_path / "NODE"
    make_special(kind, node)
    is_kind, hint = SPECIAL[kind]
    for save in (lambda: tiny_model.save(node), lambda: persistence.check_writable(node)):
        with pytest.raises(lm.ModelFileError) as exc:
            save()
        _one_line(exc.value, hint, r"NODE")
        assert is_kind(os.lstat(node).st_mode)              # still the device / pipe / socket / folder
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory"])
def test_symlink_to_a_special_file_is_refused(tiny_model, tmp_path: Path, kind):
    node = tmp_path / "NODE"
    make_special(kind, node)
    link = tmp_path / "link.lm"
    link.symlink_to(node)
    with pytest.raises(lm.ModelFileError) as exc:
        tiny_model.save(link)
    _one_line(exc.value, r"symbolic link|directory", SPECIAL[kind][1])
    assert link.is_symlink() and SPECIAL[kind][0](os.lstat(node).st_mode)


def test_save_writes_through_a_symlink_and_keeps_it(tiny_model, tiny_text, tmp_path: Path):
    (tmp_path / "models").mkdir()
    real = tmp_path / "models" / "real.lm"
    tiny_model.save(real)
    real.chmod(0o640)
    link = tmp_path / "current.lm"
    link.symlink_to(Path("models") / "real.lm")              # a relative link, as `ln -s` makes them
    other = lm.train(tiny_text, hidden_dim=16, embed_dim=8, epochs=1, seed=5)
    other.save(link)
    assert link.is_symlink() and os.readlink(link) == str(Path("models") / "real.lm")
    assert lm.load(real).info["hidden_dim"] == 16 and lm.load(link).info["hidden_dim"] == 16
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert _temp_files(tmp_path) == [] and _temp_files(tmp_path / "models") == []


def test_dangling_symlink_is_refused(tiny_model, tmp_path: Path):
    link = tmp_path / "gone.lm"
    link.symlink_to(tmp_path / "nowhere.lm")
    with pytest.raises(lm.ModelFileError) as exc:
        tiny_model.save(link)
    _one_line(exc.value, r"symbolic link", r"does not exist")
    assert link.is_symlink() and not (tmp_path / "nowhere.lm").exists()


def test_dev_null_is_never_replaced(tiny_model, monkeypatch):
    # The system's own /dev/null (the issue: as root, model.save("/dev/null") replaced it). A guard on the
    # rename makes sure that even a regression of this check cannot touch the real device.
    if not os.path.exists("/dev/null") or not stat.S_ISCHR(os.lstat("/dev/null").st_mode):
        pytest.skip("no character device at /dev/null on this system")
    before = os.lstat("/dev/null")
    real_replace = os.replace

    def guarded_replace(src, dst, *a, **k):
        if os.path.realpath(dst) == "/dev/null":
            os.unlink(src)
            raise AssertionError("a save went as far as renaming over /dev/null")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", guarded_replace)
    monkeypatch.setattr(os, "rename", guarded_replace)
    for call in (lambda: tiny_model.save("/dev/null"), lambda: persistence.check_writable("/dev/null")):
        with pytest.raises(lm.ModelFileError) as exc:
            call()
        _one_line(exc.value, r"character device", r"only regular files")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


class _FullDisk(io.RawIOBase):
    """A file whose every write fails as a full disk does (ENOSPC)."""

    def __init__(self, fd: int):
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def _full_disk(monkeypatch, buffered: bool) -> None:
    """The temp file's writes fail with ENOSPC. Buffered, torch's zip writer turns that into
    "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", as on a real full disk."""
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *a, **k):
        if "w" not in mode:
            return real_fdopen(fd, mode, *a, **k)
        return io.BufferedWriter(_FullDisk(fd)) if buffered else _FullDisk(fd)

    monkeypatch.setattr(os, "fdopen", fdopen)


def _raise(code: int, text: str):
    def fail(*a, **k):
        raise OSError(code, text)
    return fail


@pytest.mark.parametrize("case", ["full-disk", "full-disk-unbuffered", "read-only", "no-permission", "statvfs-full"])
def test_save_errors_are_one_line_and_keep_the_old_file(tiny_model, tiny_text, saved_model: Path, monkeypatch,
                                                        case):
    before = saved_model.read_bytes()
    other = lm.train(tiny_text, hidden_dim=8, embed_dim=8, epochs=1, seed=3)
    if case.startswith("full-disk"):
        _full_disk(monkeypatch, buffered=case == "full-disk")
        hint = r"disk is full"
    elif case == "statvfs-full":
        fake = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 10, 10, 0, 255))
        monkeypatch.setattr(os, "statvfs", lambda p: fake)
        hint = r"disk is full"
    else:
        code, text = ((errno.EROFS, "Read-only file system") if case == "read-only"
                      else (errno.EACCES, "Permission denied"))
        monkeypatch.setattr(tempfile, "mkstemp", _raise(code, text))
        hint = r"read-only" if case == "read-only" else r"No permission"
    with pytest.raises(lm.ModelFileError) as exc:
        other.save(saved_model)
    _one_line(exc.value, hint, r"is unchanged|save somewhere")
    monkeypatch.undo()
    assert saved_model.read_bytes() == before
    assert sorted(os.listdir(saved_model.parent)) == [saved_model.name]


def test_full_disk_on_a_new_file_leaves_nothing(tiny_model, tmp_path: Path, monkeypatch):
    _full_disk(monkeypatch, buffered=True)
    with pytest.raises(lm.ModelFileError) as exc:
        tiny_model.save(tmp_path / "new.lm")
    _one_line(exc.value, r"disk is full")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["parent-is-a-file", "name-too-long", "path-too-long", "nul-byte", "empty",
                                  "missing-folder"])
def test_bad_paths_are_one_line_errors(tiny_model, tmp_path: Path, case):
    (tmp_path / "notes.txt").write_text("my notes\n")
    path, hint = {
        "parent-is-a-file": (tmp_path / "notes.txt" / "m.lm", r"notes\.txt' is a file, not a folder"),
        "name-too-long": (tmp_path / ("m" * 300 + ".lm"), r"too long \(303 bytes"),
        "path-too-long": (tmp_path / "/".join(["d" * 200] * 25) / "m.lm", r"too long|does not exist"),
        "nul-byte": (str(tmp_path / "m\x00.lm"), r"NUL byte"),
        "empty": ("", r"empty"),
        "missing-folder": (tmp_path / "no" / "m.lm", r"does not exist.*create it"),
    }[case]
    for call in (lambda: tiny_model.save(path), lambda: persistence.check_writable(path)):
        with pytest.raises(lm.ModelFileError) as exc:
            call()
        _one_line(exc.value, hint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize("path", [None, 123, 4.5, ["m.lm"], object()], ids=repr)
def test_save_to_a_non_path_is_a_model_file_error(tiny_model, path):
    with pytest.raises(lm.ModelFileError) as exc:
        tiny_model.save(path)
    _one_line(exc.value, r"path must be text or a pathlib\.Path, got " + type(path).__name__)
    with pytest.raises(lm.ModelFileError):
        lm.load(path)


def test_a_long_name_that_fits_gets_a_temp_name_that_fits(tiny_model, tmp_path: Path):
    path = tmp_path / ("m" * 250 + ".lm")                   # 253 bytes: the temp name adds ~14
    tiny_model.save(path)
    assert lm.load(path).vocab == tiny_model.vocab and _temp_files(tmp_path) == []


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_what_the_umask_gives(tiny_model, tmp_path: Path, umask, expected):
    old = os.umask(umask)
    try:
        tiny_model.save(tmp_path / "new.lm")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.lm").stat().st_mode) == expected


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o664])
def test_a_replaced_file_keeps_its_mode(tiny_model, saved_model: Path, mode):
    saved_model.chmod(mode)
    old = os.umask(0o077)                  # the umask does not apply to a file that already exists
    try:
        tiny_model.save(saved_model)
    finally:
        os.umask(old)
    assert stat.S_IMODE(saved_model.stat().st_mode) == mode


def test_a_replaced_file_keeps_its_owner_when_root_saves(tiny_model, saved_model: Path):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("only root can give a file to another owner; as anyone else the owner is the saver")
    os.chown(saved_model, 1234, 5678)
    tiny_model.save(saved_model)
    st = saved_model.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_check_writable_leaves_nothing_behind(tmp_path: Path, saved_model: Path):
    before = saved_model.read_bytes()
    assert persistence.check_writable(tmp_path / "new.lm") == tmp_path / "new.lm"
    assert persistence.check_writable(saved_model) == saved_model
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved_model.name]
    assert saved_model.read_bytes() == before


def test_check_writable_finds_a_read_only_or_full_disk(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", _raise(errno.EROFS, "Read-only file system"))
    with pytest.raises(lm.ModelFileError) as exc:
        persistence.check_writable(tmp_path / "m.lm")
    _one_line(exc.value, r"read-only")
    monkeypatch.undo()
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 10, 10, 0, 255)))
    with pytest.raises(lm.ModelFileError) as exc:
        persistence.check_writable(tmp_path / "m.lm")
    _one_line(exc.value, r"disk is full")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def _mount_tmpfs(folder: Path, size: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("real read-only and full file systems need root and mount(8); the monkeypatched tests "
                    "above cover the same errors")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount is not permitted here ({done.stderr.strip()[:80]}); the monkeypatched tests cover "
                    f"the same errors")


def test_a_real_full_and_read_only_file_system(tiny_model, tiny_text, tmp_path: Path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "256k")
    try:
        tiny_model.save(disk / "m.lm")                      # ~100 kB fits
        before = (disk / "m.lm").read_bytes()
        big = lm.train(tiny_text, hidden_dim=160, embed_dim=64, epochs=1, seed=0)   # ~600 kB does not
        with pytest.raises(lm.ModelFileError) as exc:
            big.save(disk / "m.lm")
        _one_line(exc.value, r"too little free space \(about 0\.\d MB needed", r"is unchanged")
        assert (disk / "m.lm").read_bytes() == before and os.listdir(disk) == ["m.lm"]
        # Without the free-space check, the write itself fails with ENOSPC (torch's "unexpected pos").
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(persistence, "_check_space", lambda *a, **k: None)
            with pytest.raises(lm.ModelFileError) as exc:
                big.save(disk / "m.lm")
        _one_line(exc.value, r"disk is full", r"is unchanged")
        assert (disk / "m.lm").read_bytes() == before and os.listdir(disk) == ["m.lm"]
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for call in (lambda: tiny_model.save(disk / "m.lm"), lambda: persistence.check_writable(disk / "n.lm")):
            with pytest.raises(lm.ModelFileError) as exc:
                call()
            _one_line(exc.value, r"read-only")
        assert (disk / "m.lm").read_bytes() == before and os.listdir(disk) == ["m.lm"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_save_accepts_bytes_and_pathlike(tiny_model, tmp_path: Path):
    tiny_model.save(os.fsencode(tmp_path / "b.lm"))
    assert lm.load(tmp_path / "b.lm").vocab == tiny_model.vocab
