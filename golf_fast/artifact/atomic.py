"""Atomic file writes: the target holds either its old bytes or all of the new ones, never half.

How: the bytes go to a file no one else sees, are fsynced, and replace the target with one
``rename``; then the folder is fsynced. Where Linux offers ``O_TMPFILE``, that file has no name
at all until it is complete (it is linked under a temporary name just before the rename), so a
writer killed with SIGKILL, which no handler can catch, leaves nothing behind. Elsewhere the file
is named ``.<target>.<pid>.<random>.gftmp`` from the start; a writer that dies leaves it, and the
next write into the same folder removes every such file whose owner process no longer exists.

New files get the permissions ``open()`` would give them (``0o666`` minus the umask), not the
``0o600`` of ``tempfile.mkstemp``. Writing to a path that is a folder is a ``IsADirectoryError``.
"""

from __future__ import annotations

import errno
import os
import secrets
from typing import Sequence, Union

TMP_SUFFIX = ".gftmp"
_CHUNK = 1 << 24


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def clean_stale_temps(folder: str) -> list[str]:
    """Remove ``.*.<pid>.<random>.gftmp`` files in ``folder`` whose writer ``pid`` is dead; return them."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        parts = name[:-len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def _temp_name(folder: str, target: str) -> str:
    return os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(6)}{TMP_SUFFIX}")


def _write_all(fd: int, parts: Sequence) -> None:
    for data in parts:
        view = memoryview(data).cast("B")
        for off in range(0, len(view), _CHUNK):
            piece = view[off:off + _CHUNK]
            while piece:
                n = os.write(fd, piece)
                piece = piece[n:]
    os.fsync(fd)


def _open_anonymous(folder: str) -> int:
    """An unnamed file in ``folder`` (``O_TMPFILE``), or -1 where the OS or filesystem has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return -1
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return -1
        raise


def _link_anonymous(fd: int, folder: str, name: str) -> None:
    """linkat(/proc/self/fd/N → folder/name, AT_SYMLINK_FOLLOW). Passing a folder fd makes Python
    call ``linkat`` with the follow flag (plain ``link()`` would not follow the /proc link)."""
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", os.path.basename(name), dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def _fsync_folder(folder: str) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a folder; the rename is done anyway
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_bytes(path: Union[str, os.PathLike], data: Union[bytes, Sequence]) -> None:
    """Write ``data`` (bytes, or a list of bytes-like pieces written one after the other) to
    ``path`` atomically (see the module docstring)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a folder; expected a file path to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: folder {folder!r} does not exist")
    clean_stale_temps(folder)
    tmp = _temp_name(folder, path)
    fd = _open_anonymous(folder)
    anonymous = fd >= 0
    if not anonymous:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            _write_all(fd, [data] if isinstance(data, (bytes, bytearray, memoryview)) else data)
            if anonymous:  # give it a name only now that it is complete
                _link_anonymous(fd, folder, tmp)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)
