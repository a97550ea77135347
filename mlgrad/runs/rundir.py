"""Run directories: their names, the checks before one is written, atomic writes, a claim.

Every file of a run directory is written atomically (:func:`write_atomic`: a temporary file in
the same directory, then ``os.replace``), so a crash leaves the old file or the new one, never
a torn one; a killed write leaves only its temporary file, which :func:`is_leftover`
recognises and the next writer removes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from mlgrad import _faults
from mlgrad.runs.errors import RunError, UsageError

#: Created (O_EXCL) in a sweep's run directory while it trains and writes, so that a second
#: sweep started with the same directory is refused instead of mixing its files in.
CLAIM = ".sweep-running"


def utc_stamp() -> str:
    """The current UTC time as ``20261204T162500Z`` (run names, ``finished_utc``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def default_run_dir(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>``, with ``-2``, ``-3``, ... when that exists already."""
    base = Path("runs") / f"{name}-{utc_stamp()}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def check_can_create(path: Path) -> None:
    """Raises UsageError unless ``path`` is a directory we can write or can be created."""
    path = path.absolute()
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


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an atomic write that was killed (see
    :func:`write_atomic`): a run killed while writing its first file leaves only that, and
    the directory still counts as empty."""
    name = path.name
    return name.startswith(".") and ".tmp-" in name and name.rpartition(".tmp-")[2].isdigit()


def is_empty(path: Path) -> bool:
    """Whether ``path`` does not exist or holds nothing but leftovers of killed writes."""
    return not path.exists() or all(is_leftover(p) for p in path.iterdir())


def remove_leftovers(path: Path) -> None:
    """Removes the temporary files of killed atomic writes from the directory ``path``."""
    for leftover in filter(is_leftover, path.iterdir()):
        with contextlib.suppress(OSError):
            leftover.unlink()


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file in the same directory and os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _faults.kill_point("write")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN and infinities (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def to_json(obj: Any) -> str:
    """``obj`` as indented JSON text (NaN refused: use :func:`finite_or_none` first)."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def claim(run_dir: Path, *, default_name: str | None = None) -> tuple[Path, bool]:
    """Takes ``run_dir`` for one writer (a sweep) before it trains: creates :data:`CLAIM` in
    it exclusively. Returns the directory (with ``default_name``, a default directory taken
    meanwhile moves on to the next free default name) and whether this call created it.

    Raises:
        UsageError: another writer holds the claim, or the directory filled meanwhile.
        RunError: the directory cannot be created.
    """
    while True:
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if default_name and (free := default_run_dir(default_name)) != run_dir:
                run_dir = free
                continue
            raise UsageError(
                f"another sweep is writing to {run_dir} (it holds {CLAIM}); choose another "
                f"--out, or delete {run_dir / CLAIM} if no sweep is running."
            ) from None
        except OSError as e:
            raise RunError(f"cannot create the run directory {run_dir}: {e}") from None
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        others = [p for p in run_dir.iterdir() if p.name != CLAIM and not is_leftover(p)]
        if others:  # filled between the emptiness check and the claim
            release(run_dir, created)
            check_empty(run_dir, advice="Choose another --out.")
        return run_dir, created


def release(run_dir: Path, created: bool) -> None:
    """Removes the claim, and the directory if this writer made it and left nothing in it."""
    with contextlib.suppress(OSError):
        (run_dir / CLAIM).unlink()
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: a finished sweep's files stay


def check_empty(run_dir: Path, *, advice: str) -> None:
    """Raises UsageError (ending in ``advice``) when ``run_dir`` holds anything but leftovers."""
    if not is_empty(run_dir):
        raise UsageError(f"output directory {run_dir} exists and is not empty. {advice}")
