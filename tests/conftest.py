"""Shared test helpers: an independent NumPy reference for derivatives, and the CLI runner.

The reference never calls mlgrad or JAX: each test function has a JAX form (what mlgrad
differentiates) and a NumPy twin (what the finite differences below differentiate, in
float64 with a central stencil).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pytest

# Small, repeatable property tests: the suite must stay fast on a 2-core CI machine.
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(autouse=True, scope="session")
def _full_float32_matmuls():
    """float32 matrix products at full precision, as on a CPU. On a GPU JAX's default is
    TF32 (10-bit mantissas): on an H200 forward and reverse Jacobians then differ by 2e-4,
    and a sweep's full-batch runs drift 5e-6 from fit alone; the tests check the float32
    claims, so they run at "highest" (a no-op on a CPU)."""
    import jax

    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A module's CLI runs cache compiled programs in one temporary directory, not ~/.cache."""
    path = tmp_path_factory.mktemp("jax_cache")
    old = os.environ.get("MLGRAD_CACHE_DIR")
    os.environ["MLGRAD_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        del os.environ["MLGRAD_CACHE_DIR"]
    else:
        os.environ["MLGRAD_CACHE_DIR"] = old


def fd_jacobian(f_np, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian of a NumPy function, shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    y0 = np.asarray(f_np(x), dtype=np.float64)
    jac = np.zeros(y0.shape + x.shape)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        jac[(..., *idx)] = (np.asarray(f_np(x + e)) - np.asarray(f_np(x - e))) / (2 * h)
    return jac


def fd_hessian(f_np, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of a scalar NumPy function (second-order stencil)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    hess = np.zeros((n, n))
    flat = x.ravel()

    def f(z):
        return float(f_np(z.reshape(x.shape)))

    for i in range(n):
        for j in range(n):
            ei, ej = np.zeros(n), np.zeros(n)
            ei[i], ej[j] = h, h
            hess[i, j] = (
                f(flat + ei + ej) - f(flat + ei - ej) - f(flat - ei + ej) + f(flat - ei - ej)
            ) / (4 * h * h)
    return hess.reshape(x.shape + x.shape)


class CliResult(NamedTuple):
    """What one in-process `mlgrad ...` call gave: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def assert_user_error(self) -> None:
        """Exit 2 with one `error:` (or argparse `usage:`) paragraph and no traceback."""
        assert self.code == 2, self
        assert self.err.startswith(("error: ", "usage: ")), self.err
        assert "Traceback" not in self.err + self.out
        assert self.err.count("error:") == 1, self.err


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Runs `mlgrad ARGS` in-process with the current directory an empty tmp_path/work."""
    from mlgrad.cli import main

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(*argv: object) -> CliResult:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
