"""The declared version floors are the ones .ci/run tests.

pyproject.toml's `dependencies` give each runtime dependency a floor (>=); constraints-min.txt
pins the same versions (==), and .ci/run's minimum-versions stage installs them and runs the
subset in .ci/min-versions-tests.txt. A floor changed in one file only, or a new dependency
without a pin, fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", req).lower()


def _floors() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", dep.strip())
        assert m, f"pyproject.toml: {dep!r} is not NAME>=VERSION"
        floors[_name(m[1])] = m[2]
    return floors


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints-min.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==\s*([0-9][0-9A-Za-z.]*)", line)
        assert m, f"constraints-min.txt: {line!r} is not NAME==VERSION"
        pins[_name(m[1])] = m[2]
    return pins


def test_every_floor_is_pinned_in_constraints_min():
    floors, pins = _floors(), _pins()
    assert {name: pins.get(name) for name in floors} == floors


def test_jaxlib_is_pinned_with_jax():
    """pip would otherwise pair the old jax with the newest jaxlib it accepts."""
    pins = _pins()
    assert pins["jaxlib"] == pins["jax"]


def test_the_ci_subset_names_existing_tests():
    listed = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / ".ci" / "min-versions-tests.txt").read_text().splitlines()
    ]
    listed = [entry.removeprefix("--deselect").strip() for entry in listed if entry]
    assert listed
    for entry in listed:
        path, _, test = entry.partition("::")
        assert (ROOT / path).is_file(), entry
        if test:  # a test renamed or removed would leave stage 3 with an error
            assert re.search(rf"^def {re.escape(test)}\(", (ROOT / path).read_text(), re.M), entry
