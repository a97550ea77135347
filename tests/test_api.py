"""The public surface: names, no shadowing, no global side effects on import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mlgrad

CALCULUS = [
    "difference_quotient",
    "derivative",
    "partial_derivative",
    "gradient",
    "directional_derivative",
    "jacobian",
    "value_and_jacobian",
    "hessian",
    "hvp",
    "chain_rule",
    "linearization",
    "taylor",
    "backprop_table",
    "check_grad",
]


def test_the_design_names_are_exported():
    for name in [*CALCULUS, "numerical", "fit", "sweep"]:
        assert name in mlgrad.__all__, name
        assert getattr(mlgrad, name) is not None
    for name in ("derivative", "gradient", "jacobian", "hessian"):
        assert callable(getattr(mlgrad.numerical, name))
    assert set(mlgrad.__all__) <= set(dir(mlgrad))


def test_no_public_name_shadows_one_researchers_import_beside_mlgrad():
    # functools.partial and jax.linearize mean something else; jax's own names stay jax's.
    assert not {"partial", "linearize", "grad", "jacfwd", "jacrev", "jvp", "vjp"} & set(
        mlgrad.__all__
    )


def test_importing_mlgrad_leaves_jax_config_alone():
    script = textwrap.dedent(
        """
        import jax
        before = dict(jax.config.values)
        import mlgrad, mlgrad.cli, mlgrad.models
        after = dict(jax.config.values)
        changed = sorted(k for k in before if before[k] != after[k])
        print(changed, jax.config.jax_enable_x64)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[] False"


def test_every_public_name_survives_importing_every_module():
    """Lazy exports: importing a submodule sets it as the package's attribute, which would
    shadow a public function of the same name (``mlgrad.taylor`` once was a module)."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil
        import mlgrad
        for m in pkgutil.walk_packages(mlgrad.__path__, "mlgrad."):
            if not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        wrong = [n for n in mlgrad.__all__ if n not in ("numerical", "draw", "__version__")
                 and type(getattr(mlgrad, n)).__name__ == "module"]
        print(wrong, callable(mlgrad.taylor), mlgrad.numerical.__name__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[] True mlgrad.numerical"
