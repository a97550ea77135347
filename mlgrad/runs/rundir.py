"""Run directories: their names, the checks before one is written, atomic writes, and one
owner at a time.

Every file of a run directory is written atomically (:func:`write_atomic`: a temporary file in
the same directory, then ``os.replace``), so a crash leaves the old file or the new one, never
a torn one; a killed write leaves only its temporary file, named with a token of its directory
(``.config.yaml.mlgrad-tmp-<token>-<pid>``), which :func:`is_leftover` recognises and the next
writer removes. Nothing else is ever deleted: a user's own file stays, and makes the directory
count as not empty.

One process owns a run directory at a time (:class:`RunDirLock`): an OS file lock
(``fcntl.flock``) on ``.mlgrad.lock`` in it, exclusive while ``mlgrad train`` or ``mlgrad
sweep`` writes, shared while ``mlgrad eval`` reads. The kernel releases it when the process
ends, however it ends, so a SIGKILL never leaves a stale claim; a second writer is refused
with the holder's PID.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

from mlgrad import _faults
from mlgrad._atomic import is_leftover, replace_with, temporary  # noqa: F401 (rundir.temporary)
from mlgrad.runs.errors import RunError, UsageError

#: The lock file of a run directory (:class:`RunDirLock`); removed when its owner finishes.
LOCK = ".mlgrad.lock"


def utc_stamp() -> str:
    """The current UTC time as ``20261204T162500Z`` (run names, ``finished_utc``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def default_run_dir(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>``, with ``-2``, ``-3``, ... when that exists already."""
    base = Path("runs") / f"{name}-{utc_stamp()}"
    check_name_lengths(base)
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def check_name_lengths(path: Path) -> None:
    """Raises UsageError when a name in ``path`` is longer than the file system allows
    (checked before anything touches the path, which would fail with ENAMETOOLONG)."""
    name_max = 255
    with contextlib.suppress(OSError, ValueError):
        existing = next((p for p in Path(path).absolute().parents if p.exists()), Path("/"))
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    for part in Path(path).parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"output path {path}: the name {part[:30]}... is {len(os.fsencode(part))} "
                f"bytes long; the file system allows {name_max}. Choose a shorter --out (or "
                "run name)."
            )


def check_can_create(path: Path) -> None:
    """Raises UsageError unless ``path`` is a directory we can write or can be created: not a
    file, not a symbolic link to nothing, no name longer than the file system allows."""
    path = path.absolute()
    check_name_lengths(path)
    if path.is_symlink() and not path.exists():
        raise UsageError(
            f"output path {path} is a symbolic link to {os.readlink(path)}, which does not "
            "exist; create that directory, or choose another --out."
        )
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"output path {path} exists and is not a directory.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"output directory {path} is not writable.")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(
            f"cannot create output directory {path}: {parent} is a file, not a directory."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output directory {path}: {parent} is not writable.")


def is_empty(path: Path) -> bool:
    """Whether ``path`` does not exist or holds nothing but leftovers and a lock file."""
    return not path.exists() or all(is_leftover(p) or p.name == LOCK for p in path.iterdir())


def remove_leftovers(path: Path) -> None:
    """Removes the temporary files of killed atomic writes from the directory ``path``."""
    for leftover in filter(is_leftover, path.iterdir()):
        with contextlib.suppress(OSError):
            leftover.unlink()


def write_atomic(path: Path, content: str | bytes) -> None:
    """Writes ``content`` (text, as UTF-8, or bytes) to ``path`` via a temporary file in the
    same directory and os.replace (:func:`mlgrad._atomic.replace_with`; kill point ``write``)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    replace_with(path, lambda f: f.write(data), kill_point="write")


def append_durably(path: Path, text: str) -> None:
    """Appends ``text`` to ``path`` and syncs it; a write that fails part-way is cut back,
    so the file never keeps half a line (an OSError names the file)."""
    with open(path, "a", encoding="utf-8") as f:
        size = f.tell()
        try:
            f.write(text)
            f.flush()
            _faults.kill_point("write")
            os.fsync(f.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                f.truncate(size)
            raise OSError(e.errno, e.strerror, str(path)) from None


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN and infinities (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def to_json(obj: Any) -> str:
    """``obj`` as indented JSON text (NaN refused: use :func:`finite_or_none` first)."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


class RunDirLock:
    """The OS lock that makes one process the owner of a run directory (see module doc).

    Args:
        run_dir: the directory (created if missing, when exclusive).
        what: what the owner does, shown to a process that is refused (``mlgrad train``).
        shared: a reader's lock (``mlgrad eval``): readers share, a writer excludes them.

    Raises:
        UsageError: another process holds the directory (its PID named).
    """

    def __init__(self, run_dir: Path, *, what: str, shared: bool = False) -> None:
        self.run_dir, self.what, self.shared = Path(run_dir), what, shared
        self._fd: int | None = None
        self._acquire()

    def _acquire(self) -> None:
        path = self.run_dir / LOCK
        while True:
            try:
                if not self.shared:
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = self._open(path)
            except OSError as e:
                if self.shared:
                    return  # a read-only run directory: a reader goes without the lock
                raise RunError(f"cannot create the run directory {self.run_dir}: {e}") from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UsageError(
                    f"{self.run_dir} is in use by another mlgrad process ({holder}); wait for "
                    "it to finish, or choose another --out."
                ) from None
            if _same_file(fd, path):  # not a lock file its owner removed meanwhile
                break
            os.close(fd)
        self._fd = fd
        if not self.shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()}, {self.what}\n".encode(), 0)

    def _open(self, path: Path) -> int:
        """The lock file's descriptor; a reader that creates it removes it again (it writes
        nothing into the run directory)."""
        self._created = False
        if not self.shared:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self._created = True
            return fd
        except FileExistsError:
            return os.open(path, os.O_RDONLY)

    def release(self) -> None:
        """Removes the lock file (a writer's, or one a reader made) and releases the lock."""
        if self._fd is None:
            return
        if not self.shared or self._created:
            with contextlib.suppress(OSError):
                (self.run_dir / LOCK).unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def claim(
    run_dir: Path, *, what: str, default_name: str | None = None, resume: bool = False
) -> tuple[Path, RunDirLock, bool]:
    """Takes ``run_dir`` for one writer: its lock, then (unless ``resume``) the check that it
    is empty, both under the lock. With ``default_name``, a default directory that another
    process took meanwhile moves on to the next free default name.

    Returns:
        The directory, its held lock, and whether this call created the directory.

    Raises:
        UsageError: another process owns it, or it filled meanwhile.
    """
    while True:
        created = not run_dir.exists()
        try:
            lock = RunDirLock(run_dir, what=what)
        except UsageError:
            if default_name and (free := default_run_dir(default_name)) != run_dir:
                run_dir = free
                continue
            raise
        if resume or is_empty(run_dir):
            return run_dir, lock, created
        lock.release()
        if default_name and (free := default_run_dir(default_name)) != run_dir:
            run_dir = free
            continue
        check_empty(run_dir, advice="Choose another --out.")


def remove_if_empty(run_dir: Path) -> None:
    """Removes ``run_dir`` if nothing is in it (a writer that made it and wrote nothing)."""
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def check_empty(run_dir: Path, *, advice: str) -> None:
    """Raises UsageError (ending in ``advice``) when ``run_dir`` holds anything but leftovers."""
    if not is_empty(run_dir):
        raise UsageError(f"output directory {run_dir} exists and is not empty. {advice}")
