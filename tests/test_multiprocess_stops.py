"""Several processes stop together (README "Guarantees"): when one process of a multi-process
run dies, every other exits 1 within seconds with one ``error:`` line naming it (no SIGABRT,
no native stack trace from JAX); a coordinator that cannot be bound, resolved or reached is an
exit 2 within the join timeout.

The runs are ``mlgrad train`` processes on localhost (2 CPU devices each, collectives over
gloo), as in ``tests/test_parallel.py``, with short timeouts: ``$MLGRAD_HEARTBEAT_TIMEOUT_S``
(a process is lost after that many seconds without a heartbeat) and ``$MLGRAD_JOIN_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgrad.cli import main
from mlgrad.runs import UsageError, join_processes

ROOT = Path(__file__).resolve().parents[1]
LOGISTIC = ROOT / "configs" / "logistic.yaml"
HEARTBEAT_S = 3  # $MLGRAD_HEARTBEAT_TIMEOUT_S of these runs
# A survivor's verdict comes HEARTBEAT_S (+ one heartbeat interval) after the kill; the rest
# is slack for a loaded machine.
STOP_BOUND_S = HEARTBEAT_S + 5
JOIN_TIMEOUT_S = 2  # $MLGRAD_JOIN_TIMEOUT_S of the coordinator cases
STARTUP_S = 30  # Python, JAX and mlgrad imports on a slow machine, before the join starts

pytestmark = pytest.mark.usefixtures("cache_dir")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train(
    i: int, coordinator: str, out: Path, err: Path, *args: str, join_timeout: float = 120
) -> subprocess.Popen:
    """``mlgrad train`` as process ``i`` of 2; its stderr goes to the file ``err``."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MLGRAD_HEARTBEAT_TIMEOUT_S"] = str(HEARTBEAT_S)
    env["MLGRAD_JOIN_TIMEOUT_S"] = str(join_timeout)
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    argv = ["train", str(LOGISTIC), *args, "--out", str(out), "--coordinator", coordinator]
    argv += ["--num-processes", "2", "--process-id", str(i)]
    with open(err, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "mlgrad", *argv],
            env=env,
            cwd=out.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running after {timeout:g} s")


def _assert_clean(err: str) -> None:
    """No traceback, no JAX fatal log line, no native stack trace."""
    assert "Traceback" not in err, err
    assert "Check failure stack trace" not in err and "Terminating process" not in err, err
    assert not re.search(r"^F\d{4} ", err, re.MULTILINE), err


def _coordinator_pids(port: int) -> list[int]:
    """Process 0's coordination-service child for ``port`` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if f"[::]:{port}".encode() in args and b"-c" in args:
            found.append(int(cmdline.parent.name))
    return found


# ---------------------------------------------------------------------------------------------
# a process dies: the others stop within seconds, with one line naming it


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_process_stops_the_other(victim, tmp_path):
    port = _free_port()
    errs = [tmp_path / f"err{i}.txt" for i in range(2)]
    procs = [
        _train(i, f"localhost:{port}", tmp_path / "run", errs[i], "train.steps=1000000")
        for i in range(2)
    ]
    survivor = 1 - victim
    try:
        deadline = time.monotonic() + STARTUP_S + 60
        while "devices:" not in errs[0].read_text():  # process 0 announces training
            assert time.monotonic() < deadline, errs[0].read_text()
            assert procs[0].poll() is None and procs[1].poll() is None, errs[0].read_text()
            time.sleep(0.1)
        time.sleep(1.5)  # mid-training
        assert procs[0].poll() is None and procs[1].poll() is None
        procs[victim].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = _wait(procs[survivor], STOP_BOUND_S + 30)
        took = time.monotonic() - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    err = errs[survivor].read_text()
    assert code == 1, (code, err)  # not -6 (SIGABRT)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: process {victim} of the run stopped"), err
    assert f"process {survivor} stops too" in errors[0] and "--resume" in errors[0]
    _assert_clean(err)
    assert took < STOP_BOUND_S, f"process {survivor} stopped {took:.1f} s after the kill"
    # Process 0's coordinator child outlived process 0 only long enough for the others.
    deadline = time.monotonic() + 2 * HEARTBEAT_S + 5 + 10
    while _coordinator_pids(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _coordinator_pids(port)


# ---------------------------------------------------------------------------------------------
# the coordinator cannot be reached or bound: exit 2 within the join timeout


def test_an_unreachable_coordinator_is_exit_2_within_the_join_timeout(tmp_path):
    """Process 1 alone: nothing answers at the coordinator's address."""
    err = tmp_path / "err.txt"
    started = time.monotonic()
    coordinator = f"127.0.0.1:{_free_port()}"
    proc = _train(1, coordinator, tmp_path / "run", err, "-q", join_timeout=JOIN_TIMEOUT_S)
    code = _wait(proc, STARTUP_S + JOIN_TIMEOUT_S)
    took = time.monotonic() - started
    text = err.read_text()
    assert code == 2, text
    assert text.startswith("error: cannot join the processes of the run at 127.0.0.1:"), text
    assert f"within {JOIN_TIMEOUT_S} s" in text and "coordinator did not answer" in text
    assert text.count("\n") == 1, text
    _assert_clean(text)
    assert JOIN_TIMEOUT_S <= took < STARTUP_S + JOIN_TIMEOUT_S  # waited, then stopped
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unresolvable", "port in use", "port held", "nobody joins"])
def test_coordinator_problems_are_exit_2(case, tmp_path):
    """An unresolvable host; process 0 on a port something listens on; process 1 at a port
    where something else listens; process 0 whose peer never comes. Each exits 2 within the
    join timeout, with one error line, and no coordinator child is left behind."""
    port = _free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        if case in ("port in use", "port held"):
            listener.listen()
        else:
            listener.close()
        coordinator = "mlgrad-test.invalid" if case == "unresolvable" else "127.0.0.1"
        pid = 1 if case == "port held" else 0
        err = tmp_path / "err.txt"
        started = time.monotonic()
        address = f"{coordinator}:{port}"
        proc = _train(pid, address, tmp_path / "run", err, "-q", join_timeout=JOIN_TIMEOUT_S)
        code = _wait(proc, STARTUP_S + JOIN_TIMEOUT_S)
        took = time.monotonic() - started
    text = err.read_text()
    assert code == 2, text
    expected = {
        "unresolvable": "cannot resolve the host 'mlgrad-test.invalid'",
        "port in use": f"process 0 cannot listen on port {port}",
        "port held": "process 0's coordinator did not answer",
        "nobody joins": "not every one of the 2 processes connected",
    }[case]
    assert text.startswith("error: ") and expected in text, text
    assert text.count("\n") == 1, text
    _assert_clean(text)
    assert took < STARTUP_S + JOIN_TIMEOUT_S
    assert not _coordinator_pids(port)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# the timeouts themselves


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_join_timeout_is_a_usage_error(value, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLGRAD_JOIN_TIMEOUT_S", value)
    argv = ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1"]
    assert main(["train", str(LOGISTIC), "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert "$MLGRAD_JOIN_TIMEOUT_S" in err and "Traceback" not in err


def test_the_keywords_beat_the_environment(monkeypatch):
    monkeypatch.setenv("MLGRAD_JOIN_TIMEOUT_S", "soon")
    monkeypatch.setenv("MLGRAD_HEARTBEAT_TIMEOUT_S", "later")
    with pytest.raises(UsageError, match="--join-timeout must be a positive number"):
        join_processes("localhost:1", 2, 1, timeout_s=0)
    with pytest.raises(UsageError, match="heartbeat_timeout_s must be a positive number"):
        join_processes("localhost:1", 2, 1, timeout_s=5, heartbeat_timeout_s=-3)
