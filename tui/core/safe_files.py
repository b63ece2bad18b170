"""Private, link-proof file writes and reads for files that hold customer text.

Exports, error reports, models and configs carry ticket text or settings, so they are created
0600 (folders 0700) whatever the umask. The watch folder is a drop box other people write to,
so nothing here follows a symbolic link: new files are created with O_CREAT|O_EXCL|O_NOFOLLOW
under a fresh temporary name and renamed into place (rename(2) replaces a planted link instead
of writing through it), and files are read through a descriptor opened with O_NOFOLLOW and
checked with fstat, so the file checked is the file read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NAME_KEEP = 180
"""Characters of a file's name kept in its temporary name (NAME_MAX is 255 bytes)."""


class NotRegularFile(OSError):
    """The path is a symbolic link, folder, FIFO, socket or device, not a plain file."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", name)
        self.kind = kind
        """What it is instead, in words: "a symbolic link", "a FIFO", ..."""


class UnwritablePath(ValueError):
    """A destination that cannot be written; the message names the path and the reason."""


def kind_of(mode: int) -> str:
    """What an `st_mode` describes, in words, for messages about files that are skipped."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as 0700 folders, whatever the umask.

    Folders that already exist are left as they are: they are the user's choice.

    Raises:
        OSError: A folder could not be created, or `path` exists and is not a folder.
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        _fchmod_dir(folder, None)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    return path


def open_private_subdir(parent_fd: int, name: str) -> int:
    """Open (creating it 0700 if missing) the folder `name` inside `parent_fd`; never a link.

    An existing folder of ours is tightened to 0700 (older versions made them 0755).

    Returns:
        A descriptor of the folder, for the `dir_fd` arguments of the other functions.

    Raises:
        NotRegularFile: `name` is a symbolic link or something else that is not a folder.
        OSError: The folder could not be created or opened.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, PRIVATE_DIR_MODE, dir_fd=parent_fd)
    try:
        fd = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            found = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            raise NotRegularFile(name, kind_of(found.st_mode)) from None
        raise
    with contextlib.suppress(PermissionError):  # another user's folder: theirs to set
        os.fchmod(fd, PRIVATE_DIR_MODE)
    return fd


def _fchmod_dir(folder: Path, dir_fd: int | None) -> None:
    fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(fd, PRIVATE_DIR_MODE)
    finally:
        os.close(fd)


def create_private_temp(
    folder: Path | str, name: str, *, dir_fd: int | None = None
) -> tuple[BinaryIO, str]:
    """Create a new, empty 0600 file with a unique hidden name beside `name` in `folder`.

    O_EXCL|O_NOFOLLOW: the name is fresh, so nothing planted there is opened or followed.

    Returns:
        The open binary handle and the temporary file's path (relative to `dir_fd` if given).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(100):
        tmp = os.path.join(folder, f".{name[:_NAME_KEEP]}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, PRIVATE_FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may have taken the owner's bits too
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        return os.fdopen(fd, "wb"), tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


@dataclass(frozen=True)
class PendingFile:
    """A file being written by `atomic_writer`: it replaces the target only on success."""

    file: BinaryIO
    temp_path: str
    """Where the content is until it is moved into place (for checks such as parsing it)."""

    def write(self, data: bytes | str) -> None:
        self.file.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_writer(
    path: Path | str, *, keep_mode: bool = False, dir_fd: int | None = None
) -> Iterator[PendingFile]:
    """Write a file atomically and privately: a temp file in the same folder, fsync, rename.

    A crash or an exception leaves the old file (if any) in place and no temp file behind.

    Args:
        path: The file to write (with `dir_fd`, a name inside that folder).
        keep_mode: Keep an existing file's permission bits (and group, where allowed);
            a new file is 0600 either way.
        dir_fd: A folder descriptor from `open_private_subdir`.
    """
    folder, name = os.path.split(os.fspath(path))
    if not name:
        raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
    mode, group = PRIVATE_FILE_MODE, -1
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            found = os.stat(path, dir_fd=dir_fd)
            if stat.S_ISREG(found.st_mode):
                mode, group = stat.S_IMODE(found.st_mode), found.st_gid
    handle, tmp = create_private_temp(folder, name, dir_fd=dir_fd)
    try:
        with handle:
            if group != -1:
                with contextlib.suppress(OSError):
                    os.fchown(handle.fileno(), -1, group)
            os.fchmod(handle.fileno(), mode)
            yield PendingFile(handle, tmp)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    _fsync_dir(folder or ".", dir_fd)


def write_private(
    path: Path | str, data: bytes | str, *, keep_mode: bool = False, dir_fd: int | None = None
) -> None:
    """`atomic_writer` for content already in memory (str is written as UTF-8)."""
    with atomic_writer(path, keep_mode=keep_mode, dir_fd=dir_fd) as pending:
        pending.write(data)


def _fsync_dir(folder: str, dir_fd: int | None) -> None:
    """Make a rename durable; best effort, as some filesystems refuse fsync on folders."""
    with contextlib.suppress(OSError):
        if dir_fd is not None and folder in ("", "."):
            os.fsync(dir_fd)
            return
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY | _CLOEXEC, dir_fd=dir_fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_tree_private(root: Path) -> None:
    """Set 0700 on every folder and 0600 on every file under `root` (links are skipped).

    For trees written by code that copies permissions from elsewhere (`shutil.copytree`).
    """
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, PRIVATE_DIR_MODE)
        for name in (*dirs, *files):
            full = os.path.join(folder, name)
            if not os.path.islink(full) and not os.path.isdir(full):
                os.chmod(full, PRIVATE_FILE_MODE)


def open_regular_nofollow(
    name: Path | str, *, dir_fd: int | None = None
) -> tuple[int, os.stat_result]:
    """Open a plain file for reading without following a link or blocking on a FIFO.

    The type is checked on the open descriptor (fstat), so a file swapped for a link or a
    FIFO between a directory scan and this call is refused, not read.

    Returns:
        The descriptor (the caller closes it) and its fstat.

    Raises:
        NotRegularFile: It is a symbolic link, folder, FIFO, socket or device.
        OSError: It cannot be opened.
    """
    flags = os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK | _CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(os.fspath(name), "a symbolic link") from None
        raise
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        os.close(fd)
        raise NotRegularFile(os.fspath(name), kind_of(found.st_mode))
    return fd, found


def read_fd(fd: int) -> bytes:
    """Everything from an open descriptor to its end."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def check_writable_file(path: Path) -> None:
    """Fail early when `path` cannot become a file: before minutes of training, not after.

    Creates (and removes) a probe file when the folder exists, which is the only reliable
    test (read-only mounts, ACLs, root); otherwise checks the nearest existing folder.

    Raises:
        UnwritablePath: With the path and the reason.
    """
    if not path.name or path.is_dir():
        raise UnwritablePath(
            f"{path}: is a folder; give the file to write, such as {path / 'specialist.joblib'}"
        )
    folder = path.parent
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UnwritablePath(f"{path}: {existing} is not a folder")
    if existing != folder:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UnwritablePath(f"{path}: cannot create folders in {existing} (permission denied)")
        return
    try:
        handle, tmp = create_private_temp(folder, path.name)
    except OSError as exc:
        raise UnwritablePath(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None
    handle.close()
    with contextlib.suppress(OSError):
        os.unlink(tmp)
