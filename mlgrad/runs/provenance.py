"""Where a run came from: :func:`provenance`, recorded in ``summary.json``.

The versions of mlgrad and of the libraries that decide its numbers (Python, JAX, jaxlib,
optax, orbax), the platform and the devices, the command line, and the git commit of the
working directory (with whether its tracked files differ from it) when that is a repository.
Nothing here can fail a run: what cannot be found is null.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: The distributions whose versions are recorded, by the name the record gives them.
PACKAGES = {
    "mlgrad": "mlgrad",
    "jax": "jax",
    "jaxlib": "jaxlib",
    "optax": "optax",
    "orbax": "orbax-checkpoint",
}

#: Seconds each git command may take before it is given up (a slow network file system).
GIT_TIMEOUT_S = 5.0


def provenance(
    directory: str | Path | None = None,
    *,
    argv: list[str] | None = None,
    devices: list[Any] | None = None,
) -> dict[str, Any]:
    """What produced a run: versions, platform, devices, command line and git commit.

    Args:
        directory: where to look for a git repository (default: the working directory).
        argv: the command line (default: ``sys.argv``).
        devices: the JAX devices to record (default: ``jax.devices()``).

    Returns:
        ``{"versions": {"mlgrad", "python", "jax", "jaxlib", "optax", "orbax"}, "platform",
        "machine", "devices": [{"platform", "device_kind", "id"}], "argv", "git": {"commit",
        "dirty"} or None}``; a version that cannot be found is None.

    Example:
        >>> record = provenance()
        >>> sorted(record["versions"])
        ['jax', 'jaxlib', 'mlgrad', 'optax', 'orbax', 'python']
    """
    import jax

    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: _version(dist) for name, dist in PACKAGES.items()})
    if versions["mlgrad"] is None:  # a source checkout that was never installed
        from mlgrad._version import __version__

        versions["mlgrad"] = __version__
    devices = jax.devices() if devices is None else devices
    return {
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "devices": [
            {"platform": d.platform, "device_kind": d.device_kind, "id": d.id} for d in devices
        ],
        "argv": list(sys.argv if argv is None else argv),
        "git": git_state(Path.cwd() if directory is None else Path(directory)),
    }


def git_state(directory: Path) -> dict[str, Any] | None:
    """``{"commit": SHA, "dirty": bool}`` of the repository holding ``directory`` (dirty: a
    tracked file differs from the commit; untracked files, such as the runs, do not count);
    None when git is missing, ``directory`` is not in a repository (or one without commits),
    or git fails or takes longer than :data:`GIT_TIMEOUT_S`."""
    commit = _git(directory, "rev-parse", "--verify", "HEAD")
    if commit is None:
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _git(directory: Path, *args: str) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}  # status takes no lock
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except (metadata.PackageNotFoundError, ValueError):
        return None
