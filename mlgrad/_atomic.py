"""Atomic files without heavy imports: the temporary names of atomic writes, and figures
written whole or not at all.

:mod:`mlgrad.runs.rundir` writes text through :func:`temporary` names and removes the
:func:`is_leftover` ones of killed writes; :func:`save_figure` writes a matplotlib figure the
same way (:func:`mlgrad.draw.save`, the run's figures, the figure worker). This module imports
neither JAX nor matplotlib, so the figure worker (:mod:`mlgrad._figure_worker`) stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mlgrad import _faults


def _token(directory: Path) -> str:
    """A token of ``directory`` (its absolute path) that names its temporary files."""
    return hashlib.sha1(str(directory.absolute()).encode()).hexdigest()[:8]


def temporary(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` goes through."""
    return path.with_name(f".{path.name}.mlgrad-tmp-{_token(path.parent)}-{os.getpid()}")


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an atomic write into its directory that was
    killed (see :func:`temporary`): a run killed while writing its first file leaves only
    that, and the directory still counts as empty. The token is the directory's own, so a
    user's file that merely looks temporary is never taken for one."""
    head, sep, tail = path.name.rpartition(f".mlgrad-tmp-{_token(path.parent)}-")
    return bool(sep) and head.startswith(".") and tail.isdigit()


def save_figure(fig: Any, path: str | Path, format: str | None = None) -> Path:
    """Writes the matplotlib figure ``fig`` to ``path`` atomically: ``fig.savefig`` into a
    temporary file of the same directory (a :func:`temporary` name, so a run directory's
    leftovers are recognised), then ``os.replace``. Missing parent folders are created; an
    existing file is replaced, never truncated. The ``figure`` kill point fires with the
    temporary file complete and not yet renamed.

    Returns:
        ``path``.

    Raises:
        OSError: the file cannot be written (nothing is left behind).
    """
    path = Path(path)
    fmt = format or path.suffix.lower().lstrip(".") or "png"
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_with(path, lambda f: fig.savefig(f, format=fmt), kill_point="figure")
    return path


def replace_with(path: Path, write: Callable[[IO[bytes]], Any], *, kill_point: str) -> None:
    """Writes ``path`` whole or not at all: ``write(f)`` fills a new :func:`temporary` file of
    the same directory (its name unique per call: threads of one process may write at once),
    which is synced, passes the ``kill_point`` and replaces ``path`` (``os.replace``). On any
    failure the temporary file is removed and the error raised; ``path`` is untouched."""
    tmp = Path(f"{temporary(path)}{secrets.randbelow(10**6):06d}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _faults.kill_point(kill_point)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
