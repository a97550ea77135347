"""Provenance: versions, platform, devices, command line and git state, checked against the
sources themselves (importlib.metadata, platform, jax, git run here)."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jax
import pytest

from mlgrad.cli import main
from mlgrad.runs import provenance as provenance_module
from mlgrad.runs.provenance import git_state, provenance

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "configs" / "linear_regression.yaml"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def outside_any_repository(tmp_path, monkeypatch):
    """tmp_path, where git must not find an enclosing repository."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    return tmp_path


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    out = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_versions_platform_devices_and_argv():
    record = provenance(argv=["mlgrad", "train", "x.yaml"])
    assert record["versions"] == {
        "python": platform.python_version(),
        "mlgrad": metadata.version("mlgrad"),
        "jax": jax.__version__,
        "jaxlib": metadata.version("jaxlib"),
        "optax": metadata.version("optax"),
        "orbax": metadata.version("orbax-checkpoint"),
    }
    assert record["platform"] == platform.platform()
    assert record["machine"] == platform.machine()
    assert record["devices"] == [
        {"platform": d.platform, "device_kind": d.device_kind, "id": d.id} for d in jax.devices()
    ]
    assert record["argv"] == ["mlgrad", "train", "x.yaml"]
    assert provenance()["argv"] == sys.argv
    json.dumps(record, allow_nan=False)  # fit for summary.json


@needs_git
def test_git_commit_clean_and_dirty(outside_any_repository):
    repo = outside_any_repository
    _git(repo, "init", "-q")
    (repo / "model.py").write_text("a = 1\n")
    _git(repo, "add", "model.py")
    _git(repo, "commit", "-q", "-m", "first")
    commit = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"commit": commit, "dirty": False}
    (repo / "runs").mkdir()
    (repo / "runs" / "metrics.jsonl").write_text("{}\n")  # untracked: still clean
    assert git_state(repo / "runs") == {"commit": commit, "dirty": False}
    (repo / "model.py").write_text("a = 2\n")  # a tracked file changed
    assert git_state(repo) == {"commit": commit, "dirty": True}
    assert provenance(repo)["git"] == {"commit": commit, "dirty": True}


@needs_git
def test_not_a_repository_or_no_commit_is_null(outside_any_repository):
    assert git_state(outside_any_repository) is None
    assert provenance(outside_any_repository)["git"] is None
    _git(outside_any_repository, "init", "-q")  # a repository without a commit
    assert git_state(outside_any_repository) is None


def test_no_git_or_a_hanging_git_is_null(outside_any_repository, monkeypatch):
    bin_dir = outside_any_repository / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no git on the PATH
    assert git_state(ROOT) is None
    hanging = bin_dir / "git"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(provenance_module, "GIT_TIMEOUT_S", 0.2)
    assert git_state(ROOT) is None


def test_summary_json_records_the_provenance(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    argv = ["train", str(LR), "train.steps=3", "--out", "run", "--no-plots", "-q"]
    assert main(argv) == 0
    summary = json.loads(Path("run/summary.json").read_text())
    assert summary["provenance"] == {**provenance(), "git": None}
