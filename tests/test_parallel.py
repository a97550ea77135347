"""Data-parallel and multi-process training against single-device training.

The multi-device runs happen in subprocesses: ``XLA_FLAGS=--xla_force_host_platform_device_count``
gives a process several host CPU devices, and two processes on localhost join with
``jax.distributed`` (CPU collectives over gloo). The reference is always an ordinary run on
one device: in the same subprocess (``devices=1``), or in this process (which has one device).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mlgrad.cli import main
from mlgrad.runs import initial_state, prepare
from mlgrad.training.checkpoint import restore
from mlgrad.training.parallel import data_mesh

ROOT = Path(__file__).resolve().parents[1]
LOGISTIC = ROOT / "configs" / "logistic.yaml"
WORKER = Path(__file__).with_name("parallel_worker.py")

pytestmark = pytest.mark.usefixtures("cache_dir")


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def _mlgrad(*argv: object, devices: int, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlgrad", *map(str, argv)],
        env=_env(devices),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out:\n{out}\n{err}")
    return proc.returncode, out, err


def _state(run_dir: Path):
    setup = prepare(run_dir / "config.yaml")
    return restore(run_dir / "checkpoints", initial_state(setup))


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The shipped logistic config, 200 steps, trained in this process on its one device."""
    assert jax.device_count() == 1
    run_dir = tmp_path_factory.mktemp("single") / "run"
    assert main(["train", str(LOGISTIC), "train.steps=200", "--out", str(run_dir), "-q"]) == 0
    return run_dir


# ---------------------------------------------------------------------------------------------
# fit on 4 devices equals fit on 1


@pytest.mark.slow  # 20 s of the CI budget; test_cli_on_four_devices guards data parallelism there
def test_fit_and_sweep_on_four_devices_equal_one_device():
    proc = subprocess.run(
        [sys.executable, str(WORKER)],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["devices"] == 4
    for case in report["cases"]:
        what = f"n={case['n']}, batch_size={case['batch_size']}"
        parallel, alone = case["runs"]["auto"], case["runs"]["1"]
        # Data parallel: the loss saw its batch split across 4 devices; params replicated.
        assert [4, True] in parallel["batch_split"], what
        assert all(n == 1 for n, _ in alone["batch_split"]), what
        assert parallel["params_devices"] == 4 and parallel["params_replicated"], what
        assert alone["params_devices"] == 1, what
        # The same training, up to the order of float64 sums.
        np.testing.assert_allclose(parallel["w"], alone["w"], rtol=1e-12, atol=1e-14, err_msg=what)
        np.testing.assert_allclose(parallel["b"], alone["b"], rtol=1e-12, atol=1e-14, err_msg=what)
        np.testing.assert_allclose(parallel["history"], alone["history"], rtol=1e-12, err_msg=what)
        np.testing.assert_allclose(parallel["val"], alone["val"], rtol=1e-12, err_msg=what)
        # And training did something: the loss fell.
        assert alone["history"][-1] < 0.5 * alone["history"][0], what
    assert report["continued_on_one_device"] == [4, 1]
    for sweep in report["sweeps"]:  # 8 runs, 2 per device, results gathered on every device
        split, alone = sweep["auto"], sweep["1"]
        assert [4, True] in split["runs_split"]
        assert split["devices"] == 4 and split["replicated"]
        assert all(n == 1 for n, _ in alone["runs_split"]) and alone["devices"] == 1
        np.testing.assert_allclose(split["histories"], alone["histories"], rtol=1e-12)
        np.testing.assert_allclose(split["w"], alone["w"], rtol=1e-12, atol=1e-14)


def test_cli_on_four_devices_equals_one_device(single, tmp_path):
    code, _, err = _finish(
        _mlgrad("train", LOGISTIC, "train.steps=200", "--out", "run", devices=4, cwd=tmp_path)
    )
    assert code == 0, err
    assert "data parallel over 4 devices" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [d["id"] for d in summary["devices"]] == [0, 1, 2, 3]
    want = json.loads((single / "summary.json").read_text())
    assert len(want["devices"]) == 1
    for key, value in want["metrics"].items():
        assert summary["metrics"][key] == pytest.approx(value, rel=1e-5), key
    for got, ref in zip(_leaves(_state(tmp_path / "run")), _leaves(_state(single)), strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# two processes on localhost equal one process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(*argv: object, cwd: Path, timeout: float = 240) -> list[tuple[int, str, str]]:
    """`mlgrad ARGV` as processes 0 and 1 of one run on localhost, 2 CPU devices each; their
    (exit code, stdout, stderr)."""
    coordinator = f"localhost:{_free_port()}"
    procs = [
        _mlgrad(
            *argv,
            "--coordinator",
            coordinator,
            "--num-processes",
            2,
            "--process-id",
            i,
            devices=2,
            cwd=cwd,
        )
        for i in range(2)
    ]
    return [_finish(proc, timeout) for proc in procs]


@pytest.mark.slow  # two fresh interpreters joining over gloo: 25 s of the CI budget
def test_two_processes_equal_one_process(single, tmp_path):
    """Two processes of two devices each train the logistic config as one data-parallel run
    over 4 devices; with no --out they agree on process 0's run directory."""
    results = _two_processes("train", LOGISTIC, "train.steps=200", cwd=tmp_path)
    for i, (code, _, err) in enumerate(results):
        assert code == 0, f"process {i}: {err}"
    # Process 0 alone speaks and writes.
    assert "done:" in results[0][1] and "2 processes" in results[0][2]
    assert "done:" not in results[1][1] and "devices:" not in results[1][2]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    names = [p.name for p in run_dir.iterdir() if not p.name.startswith(".")]
    assert sum(n.startswith("events.out.tfevents.") for n in names) == 1  # TensorBoard's
    assert sorted(n for n in names if not n.startswith("events.out.tfevents.")) == [
        "checkpoints",
        "config.yaml",
        "loss.png",
        "metrics.jsonl",
        "probabilities.png",
        "report.html",
        "run.json",
        "summary.json",
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["devices"]) == 4
    want = json.loads((single / "summary.json").read_text())
    for key, value in want["metrics"].items():
        assert summary["metrics"][key] == pytest.approx(value, rel=1e-5), key
    # The checkpoint written by both processes (orbax's multi-process protocol) restores in a
    # single process to the single-process run's state.
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [0, 200]
    for got, ref in zip(_leaves(_state(run_dir)), _leaves(_state(single)), strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)

    # Both processes resume the run to step 300, as one process resumes its copy of the
    # single-process run.
    resumed = _two_processes(
        "train", LOGISTIC, "train.steps=300", "--out", run_dir, "--resume", cwd=tmp_path
    )
    for i, (code, _, err) in enumerate(resumed):
        assert code == 0, f"process {i}: {err}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["resumed_from_step"] == 200
    alone = tmp_path / "alone"
    shutil.copytree(single, alone)
    assert (
        main(["train", str(LOGISTIC), "train.steps=300", "--out", str(alone), "--resume", "-q"])
        == 0
    )
    for got, ref in zip(_leaves(_state(run_dir)), _leaves(_state(alone)), strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)

    # When process 0 cannot write (metrics.jsonl is now a directory), every process stops
    # with exit 1 at once instead of waiting for it at the next collective.
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").mkdir()
    (code0, _, err0), (code1, _, err1) = _two_processes(
        "train", LOGISTIC, "train.steps=400", "--out", run_dir, "--resume", cwd=tmp_path, timeout=60
    )
    assert (code0, code1) == (1, 1), (err0, err1)
    assert "cannot write the run directory" in err0 and "Traceback" not in err0
    assert "process 0 could not write the run directory" in err1
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [0, 200, 300]


# ---------------------------------------------------------------------------------------------
# choosing devices, and mistakes


def test_one_device_is_not_sharded():
    assert data_mesh("auto") is None  # this process has one CPU device
    assert data_mesh(1) is None


@pytest.mark.parametrize(
    ("devices", "error", "match"),
    [
        (0, ValueError, "from 1 to 1"),
        (2, ValueError, "JAX sees 1 device"),
        ("gpu", ValueError, "'auto', a number"),
        (True, TypeError, "'auto' or an int"),
        ([], ValueError, "non-empty list"),
        (["cpu:0"], TypeError, "list of jax.Device"),
    ],
)
def test_bad_devices_are_explained(devices, error, match):
    with pytest.raises(error, match=match):
        data_mesh(devices)


def test_cli_refuses_more_devices_than_there_are(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(LOGISTIC), "train.devices=4", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "`train.devices`" in err and "JAX sees 1 device" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--num-processes", "2", "--process-id", "0"], "need --coordinator"),
        (["--coordinator", "localhost"], "HOST:PORT"),
        (["--coordinator", "localhost:1", "--num-processes", "0"], "must be >= 1"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"], "0..1"),
        # Port 0 would let process 0 pick a port that the others cannot know.
        (
            ["--coordinator", "127.0.0.1:0", "--num-processes", "2", "--process-id", "1"],
            "1 to 65535",
        ),
    ],
)
def test_bad_process_flags_are_usage_errors(argv, match, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(LOGISTIC), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert match in err and "Traceback" not in err
    assert not out.exists()
