"""The package as a new user gets it: a wheel, installed outside the repository.

Marked ``ci`` (and ``slow``, so the default suite skips it): ``.ci/run`` runs ``pytest -m ci``
as its second stage. The wheel is built from this checkout and installed (without its
dependencies) into a fresh virtual environment, which borrows the dependencies of the test
environment through a path file, so that the stage stays well inside its two minutes; the
test checks that ``mlgrad`` then comes from that environment's wheel, not from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_MODEL = '''
"""A user's own model, as the README describes it: Config and build, Model from mlgrad."""
import dataclasses

import jax.numpy as jnp

from mlgrad import Model


@dataclasses.dataclass
class Config:
    scale: float = 1.0


def build(cfg, data):
    def init(key):
        return {"a": jnp.zeros(()), "b": jnp.zeros(())}

    def apply(params, x):
        return params["a"] * x[:, 0] / cfg.scale + params["b"]

    def loss(params, batch):
        x, y = batch
        return jnp.mean((apply(params, x) - y) ** 2)

    return Model(
        init=init,
        apply=apply,
        loss=loss,
        metrics=lambda params, batch: {"loss": loss(params, batch)},
        report=lambda params: {"a": float(params["a"]) / cfg.scale, "b": float(params["b"])},
        plots=lambda params, data, result, out_dir: [],
    )
'''

USER_CONFIG = """
name: mine
model: {{name: {model}, scale: 100.0}}
data: {{name: ice_cream, features: [temp], target: cons}}
optimizer: {{name: adam, learning_rate: 0.05}}
train: {{steps: 3000, checkpoint_every: 3000}}
"""


def _source_copy(tmp_path: Path) -> Path:
    """The checkout's files (tracked, and untracked but not ignored) in a fresh folder: a
    wheel built in the checkout itself would also hold whatever an earlier build left in its
    build/ folder (a module since removed)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "source"
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (copy / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / os.fsdecode(name))
    return copy


def _wheel(tmp_path: Path) -> Path:
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path / "dist"), str(_source_copy(tmp_path))],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("mlgrad-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    subprocess.run(
        [*pip_install, "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies (JAX, optax, ...) of the test environment, after the wheel's own files.
    Path(site, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def test_the_wheel_holds_exactly_the_library_models_configs_and_data(tmp_path):
    names = zipfile.ZipFile(_wheel(tmp_path)).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"mlgrad", "mlgrad-0.1.0.dist-info"}, tops
    files = set(names)
    # every module of the library is in it (a package missing from pyproject's list is not)
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mlgrad").rglob("*.py")}
    assert sources - files == set()
    for model in ("__init__", "_common", "linear_regression", "logistic", "autoencoder"):
        assert f"mlgrad/models/{model}.py" in files
    configs = {n for n in names if n.startswith("mlgrad/configs/") and n.endswith(".yaml")}
    assert {Path(n).stem for n in configs} == {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    assert "mlgrad/datasets/ice_cream.csv" in files
    assert "mlgrad-0.1.0.dist-info/licenses/LICENSE" in files
    assert "mlgrad/py.typed" in files  # PEP 561: type checkers read the inline annotations
    assert not [n for n in names if "/tests/" in n or n.startswith(("models/", "configs/"))]
    suffixes = {Path(n).suffix for n in names if not n.startswith("mlgrad-0.1.0.dist-info")}
    assert suffixes <= {".py", ".yaml", ".csv", ".md", ".typed"}, suffixes


@pytest.mark.slow
@pytest.mark.ci
def test_installed_wheel_trains_builtin_and_user_models_beside_a_users_models_package(tmp_path):
    bin_dir = _fresh_venv(tmp_path, _wheel(tmp_path))
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (work / "models" / "__init__.py").write_text('"""A research project\'s own models."""\n')
    (work / "models" / "broken.py").write_text('raise RuntimeError("never import me")\n')
    (work / "models" / "mine.py").write_text(USER_MODEL)
    (work / "mymodel.py").write_text(USER_MODEL)
    (work / "mymodel.yaml").write_text(USER_CONFIG.format(model="mymodel"))
    (work / "package_model.yaml").write_text(USER_CONFIG.format(model="models.mine"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGRAD_", "PYTHON"))}
    env.update(PYTHONPATH=".", MLGRAD_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")

    def mlgrad(*args: str) -> str:
        done = subprocess.run(
            [str(bin_dir / "mlgrad"), *args], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import mlgrad.models; print(mlgrad.models.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(tmp_path / "venv") in where  # the wheel's copy, not the checkout

    assert "linear_regression" in mlgrad("configs")
    mlgrad("train", "linear_regression", "--out", "builtin", "-q")
    summary = json.loads((work / "builtin" / "summary.json").read_text())
    assert summary["coefficients"]["temp"] == pytest.approx(0.0031074, rel=1e-4)
    assert summary["intercept"] == pytest.approx(0.20686, rel=1e-4)

    data = np.genfromtxt(ROOT / "mlgrad" / "datasets" / "ice_cream.csv", delimiter=",", names=True)
    (slope, intercept), *_ = np.linalg.lstsq(
        np.c_[data["temp"], np.ones(len(data))], data["cons"], rcond=None
    )
    for config in ("mymodel.yaml", "package_model.yaml"):
        out = f"run-{Path(config).stem}"
        mlgrad("train", config, "--out", out, "-q")
        summary = json.loads((work / out / "summary.json").read_text())
        assert summary["a"] == pytest.approx(slope, rel=1e-3), config
        assert summary["b"] == pytest.approx(intercept, rel=1e-3), config
    assert "linear_regression.yaml" in mlgrad("configs", "linear_regression", "--copy")
    assert (work / "linear_regression.yaml").is_file()
