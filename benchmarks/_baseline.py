"""``mlgrad.fit`` as it was at an earlier commit, beside today's, in the same process.

``python benchmarks/training.py --baseline REV`` times ``fit`` at REV as one more contender
(issue I's criterion: the research features must not slow the existing configs' ``fit``
by more than 3%). The commit's ``mlgrad`` package is extracted with ``git archive`` into a
temporary folder and imported under its own names: today's modules are set aside, the old
ones imported, renamed ``_baseline_mlgrad...`` and the current ones put back, so each ``fit``
keeps its own module globals. (A function-level import inside the old ``fit`` would get
today's module; the loop itself has none.)
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SKIP = ("cli", "runs", "__main__", "draw", "plots")  # not needed by fit, and slow to import


def load_fit(rev: str, root: Path) -> Callable[..., Any]:
    """``mlgrad.training.fit.fit`` of commit ``rev`` of the repository at ``root``."""
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", rev, "mlgrad", "models", "configs"],
        check=True,
        capture_output=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix=f"mlgrad-{rev[:12]}-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    current = {k: v for k, v in sys.modules.items() if k == "mlgrad" or k.startswith("mlgrad.")}
    for name in current:
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module("mlgrad")
        for info in pkgutil.walk_packages(package.__path__, "mlgrad."):
            if not any(part in _SKIP for part in info.name.split(".")):
                importlib.import_module(info.name)
        fit = sys.modules["mlgrad.training.fit"].fit
    finally:
        sys.path.remove(str(folder))
        old = [k for k in sys.modules if k == "mlgrad" or k.startswith("mlgrad.")]
        for name in old:
            sys.modules["_baseline_" + name] = sys.modules.pop(name)
        sys.modules.update(current)
    return fit
