"""Tests for the `mlgrad` command line: exit codes, run directories, resume, eval, divergence.

Most tests call :func:`mlgrad.cli.main` in-process (fast); two run the real module in a
subprocess to prove exit codes and that no traceback reaches the user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mlgrad.data import load
from mlgrad.runs import initial_state, prepare
from mlgrad.runs.metrics_log import MetricsLog, without_timing
from mlgrad.training.checkpoint import all_steps, restore

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
LR = CONFIGS / "linear_regression.yaml"
MULTI = CONFIGS / "linear_regression_multi.yaml"
LOGISTIC = CONFIGS / "logistic.yaml"


# The CLI caches compiled programs in a temporary directory (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _state(run_dir: Path, step: int | None = None):
    """The train state in a run directory's checkpoint (default: the latest)."""
    setup = prepare(run_dir / "config.yaml")
    return restore(run_dir / "checkpoints", initial_state(setup), step)


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's records less the wall-clock steps_per_s (which no two runs share)."""
    return without_timing(MetricsLog.read(run_dir / "metrics.jsonl"))


# ---------------------------------------------------------------------------------------------
# user errors: exit code 2, one message naming the full key, nothing written

BAD_CONFIGS = [
    (["train.stepz=5"], "train.stepz", "did you mean `train.steps`?"),
    (["trian.steps=5"], "trian", "did you mean `train`?"),
    (["optimizer.momentun=0.9"], "optimizer.momentun", "did you mean `optimizer.momentum`?"),
    (["model.standardise=false"], "model.standardise", "did you mean `model.standardize`?"),
    (["train.steps=abc"], "train.steps", "integer"),
    (["data.val_split=half"], "data.val_split", "number"),
    (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate", "> 0"),
    (["train.steps=0"], "train.steps", "got 0"),
    (["data.val_split=1.0"], "data.val_split", "[0, 1)"),
    (["model.name=linear_regresion"], "model.name", "did you mean 'linear_regression'?"),
    (["optimizer.name=sgdd"], "optimizer.name", "did you mean 'sgd'?"),
    (
        ["optimizer.learning_rate={name: exponential_decy, init_value: 0.1}"],
        "optimizer.learning_rate.name",
        "did you mean 'exponential_decay'?",
    ),
    (
        ["optimizer.learning_rate={name: exponential_decay, init_value: 0.1, decay_rate: 0.5}"],
        "optimizer.learning_rate.transition_steps",
        "explicitly",
    ),
    (["data.name=ice_crem"], "data.name", "did you mean 'ice_cream'?"),
    (["data={path: no_such.csv, target: y}"], "data.path", "not found"),
    (["data.features=[tmp]"], "data.features", "did you mean 'temp'?"),
    (["data.target=con"], "data.target", "did you mean 'cons'?"),
    (["model={name: logistic, l2: -1}", "data={name: breast_cancer}"], "model.l2", ">= 0"),
]


@pytest.mark.parametrize(
    ("overrides", "key", "hint"), BAD_CONFIGS, ids=[" ".join(c[0])[:50] for c in BAD_CONFIGS]
)
def test_bad_config_exits_2_names_key_writes_nothing(cli, overrides, key, hint):
    res = cli("train", LR, *overrides)
    res.assert_user_error()
    assert f"`{key}`" in res.err
    assert hint.lower() in res.err.lower()
    assert _listing(Path.cwd()) == []  # no runs/ directory, nothing at all


BAD_FILES = [
    (None, "not found"),
    ("", "is empty"),
    ("model: [1\n", "not valid YAML"),
    (b"name: \xff\xfe\n", "not UTF-8"),
    ("- a\n- b\n", "mapping"),
    ("model: {name: linear_regression}\ndata: {name: ice_cream}\n", "`optimizer`"),
]


@pytest.mark.parametrize(
    ("content", "fragment"), BAD_FILES, ids=[repr(c[0])[:30] for c in BAD_FILES]
)
def test_bad_config_file_exits_2(cli, tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    res = cli("train", path)
    res.assert_user_error()
    assert fragment in res.err and str(path) in res.err
    assert _listing(Path.cwd()) == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "missing COMMAND"),
        (["trian", LR], "did you mean 'train'?"),
        (["train"], "CONFIG"),
        (["train", LR, "--resume"], "--resume needs --out"),
        (["train", LR, "--bogus"], "unrecognized arguments"),
        (["train", LR, "steps"], "not of the form key=value"),
        (["eval", "no_such_run"], "not found"),
    ],
)
def test_usage_errors_exit_2(cli, argv, fragment):
    res = cli(*argv)
    assert res.code == 2
    assert fragment in res.err
    assert "Traceback" not in res.err
    assert _listing(Path.cwd()) == []


def test_help_and_version(cli):
    import mlgrad

    res = cli("--version")
    assert res.code == 0 and res.out.strip() == f"mlgrad {mlgrad.__version__}"
    res = cli("--help")
    assert res.code == 0 and "train" in res.out and "eval" in res.out
    res = cli("train", "--help")
    assert res.code == 0 and "--resume" in res.out and "KEY=VALUE" in res.out


def test_output_path_under_a_regular_file_exits_2(cli):
    Path("afile").write_text("x")
    for out in ("afile/run", "afile"):
        res = cli("train", LR, "--out", out)
        res.assert_user_error()
        assert "afile" in res.err
    assert _listing(Path.cwd()) == ["afile"]


def test_non_empty_out_refused_without_resume(cli):
    Path("taken").mkdir()
    Path("taken/notes.txt").write_text("mine")
    res = cli("train", LR, "--out", "taken")
    res.assert_user_error()
    assert "not empty" in res.err and "--resume" in res.err
    assert _listing(Path.cwd()) == ["taken", "taken/notes.txt"]


def test_dry_run_prints_resolved_config_and_writes_nothing(cli):
    res = cli("train", LR, "train.steps=7", "--dry-run")
    assert res.code == 0, res.err
    assert "steps: 7" in res.out and "name: linear_regression" in res.out
    assert "standardize: true" in res.out  # model defaults filled in
    assert _listing(Path.cwd()) == []


# ---------------------------------------------------------------------------------------------
# a run directory


def test_run_writes_all_files_and_reaches_least_squares(cli):
    res = cli("train", LR, "train.keep_checkpoints=5", "--out", "run")
    assert res.code == 0, res.err
    run = Path("run")
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "summary.json", "loss.png"} <= names
    assert {"fit.png", "loss_surface.png"} <= names  # single-feature regression's own figures
    assert all_steps(run / "checkpoints") == [0, 100, 200]  # step 0, every 100, the end

    summary = json.loads((run / "summary.json").read_text())
    for key in (
        "metrics",
        "coefficients",
        "intercept",
        "wall_time_s",
        "devices",
        "steps",
        "name",
        "config",
    ):
        assert key in summary, key
    assert summary["steps"] == 200 and summary["name"] == "linear_regression"
    assert summary["devices"][0]["platform"] == jax.devices()[0].platform
    assert set(summary["coefficients"]) == {"temp"}

    data = load("ice_cream", dtype=np.float64)
    design = np.column_stack([data.x_train[:, 0], np.ones(len(data.x_train))])
    (slope, intercept), *_ = np.linalg.lstsq(design, data.y_train, rcond=None)
    assert summary["coefficients"]["temp"] == pytest.approx(slope, rel=1e-4)
    assert summary["intercept"] == pytest.approx(intercept, rel=1e-4)
    mse = np.mean((design @ [slope, intercept] - data.y_train) ** 2)
    assert summary["metrics"]["train_loss"] == pytest.approx(mse, rel=1e-4)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 201))  # log_every 1
    # no validation split; the learning rate and the gradient's norm of every logged step
    keys = {"step", "train_loss", "lr", "grad_norm", "steps_per_s"}
    assert all(set(r) == keys and r["steps_per_s"] > 0 for r in records)
    assert all(r["lr"] == pytest.approx(0.1) for r in records)  # the config's sgd(0.1)
    # the first step's gradient, at w = 0: d/dw mean((w x + b - y)^2), d/db likewise
    x = (data.x_train[:, 0] - data.x_train[:, 0].mean()) / data.x_train[:, 0].std()
    grad0 = [np.mean(2 * -data.y_train * x), np.mean(2 * -data.y_train)]
    assert records[0]["grad_norm"] == pytest.approx(np.linalg.norm(grad0), rel=1e-5)
    assert "devices: " in res.err
    assert res.out.startswith("done: 200 steps") and "run" in res.out


def test_default_run_dir_under_runs(cli):
    res = cli("train", LR, "train.steps=3", "--no-plots", "-q")
    assert res.code == 0, res.err
    (run,) = Path("runs").iterdir()
    assert run.name.startswith("linear_regression-") and run.name.endswith("Z")
    assert (run / "summary.json").is_file()
    assert res.err == ""  # --quiet


def test_classifier_summary_metrics_and_eval(cli):
    res = cli("train", LOGISTIC, "train.steps=40", "train.eval_every=20", "--out", "lg", "-q")
    assert res.code == 0, res.err
    summary = json.loads(Path("lg/summary.json").read_text())
    metrics = summary["metrics"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(metrics)
    assert 0.5 < metrics["val_accuracy"] <= 1.0
    records = [json.loads(x) for x in Path("lg/metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evaluated] == [20, 40]
    assert all("val_accuracy" in r for r in evaluated)
    assert evaluated[-1]["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-5)
    assert (Path("lg") / "probabilities.png").is_file()

    before = _listing(Path("lg"))
    res = cli("eval", "lg")
    assert res.code == 0, res.err
    assert "step 40 of 40" in res.out
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert key in res.out
    res = cli("eval", "lg", "--json")
    assert json.loads(res.out)["metrics"] == pytest.approx(metrics)
    assert _listing(Path("lg")) == before  # eval writes nothing


def test_eval_without_checkpoint_exits_2(cli):
    Path("empty").mkdir()
    cli("eval", "empty").assert_user_error()
    res = cli("train", LR, "train.steps=2", "--out", "r", "--no-plots", "-q")
    assert res.code == 0
    shutil.rmtree("r/checkpoints")
    res = cli("eval", "r")
    res.assert_user_error()
    assert "no complete checkpoint" in res.err


# ---------------------------------------------------------------------------------------------
# resume


@pytest.mark.parametrize(
    "config, overrides",
    [
        (LR, []),  # full batch
        (MULTI, ["train.batch_size=8"]),  # mini-batches of 8 of 30 rows: a ragged last batch
    ],
    ids=["full-batch", "mini-batch"],
)
def test_resume_is_bit_identical(cli, config, overrides):
    common = [*overrides, "train.checkpoint_every=10", "train.log_every=1", "--no-plots", "-q"]
    assert cli("train", config, "train.steps=26", "--out", "whole", *common).code == 0
    assert cli("train", config, "train.steps=13", "--out", "split", *common).code == 0
    res = cli("train", config, "train.steps=26", "--out", "split", "--resume", *common)
    assert res.code == 0, res.err
    whole, split = _state(Path("whole")), _state(Path("split"))
    assert int(whole.step) == int(split.step) == 26
    for a, b in zip(_leaves(whole), _leaves(split), strict=True):
        np.testing.assert_array_equal(a, b)  # params, optimizer state, step, key: bit for bit
    assert _metrics(Path("whole")) == _metrics(Path("split"))  # all but the timings
    saved = Path("split/config.yaml").read_text()
    assert "steps: 26" in saved
    assert json.loads(Path("split/summary.json").read_text())["resumed_from_step"] == 13


def test_resume_refuses_a_changed_key(cli):
    common = ["train.steps=10", "--out", "r", "--no-plots", "-q"]
    assert cli("train", LR, *common).code == 0
    before = {p: p.read_bytes() for p in Path("r").rglob("*") if p.is_file()}
    res = cli(
        "train", LR, "train.steps=20", "optimizer.learning_rate=0.05", "--out", "r", "--resume"
    )
    res.assert_user_error()
    assert "`optimizer.learning_rate`" in res.err and "0.1" in res.err and "0.05" in res.err
    assert {p: p.read_bytes() for p in Path("r").rglob("*") if p.is_file()} == before
    res = cli("train", LR, "train.steps=5", "--out", "r", "--resume")
    res.assert_user_error()
    assert "already at step 10" in res.err


def test_resume_truncates_metrics_to_the_checkpoint(cli):
    common = [
        "train.checkpoint_every=10",
        "train.keep_checkpoints=5",
        "train.log_every=1",
        "--out",
        "r",
        "--no-plots",
        "-q",
    ]
    assert cli("train", LR, "train.steps=20", *common).code == 0
    reference = _state(Path("r"))
    reference_metrics = _metrics(Path("r"))
    # A run killed after logging past its last complete checkpoint: step 20's checkpoint is
    # gone, metrics.jsonl runs ahead (and ends in a torn line).
    shutil.rmtree("r/checkpoints/20")
    with open("r/metrics.jsonl", "a") as f:
        f.write('{"step": 21, "train_loss": 1.0}\n{"step": 22, "tr')
    res = cli("train", LR, "train.steps=20", "--resume", *common)
    assert res.code == 0, res.err
    assert _metrics(Path("r")) == reference_metrics  # steps 1..20, once each
    for a, b in zip(_leaves(reference), _leaves(_state(Path("r"))), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# failures during training: exit code 1


def test_divergence_exits_1_and_keeps_the_last_good_checkpoint(cli):
    # Standardised least squares has curvature 2 along each parameter: lr 10 multiplies the
    # error by -19 every step, so float32 overflows within a few dozen steps.
    res = cli("train", LR, "optimizer.learning_rate=10", "--out", "d", "--no-plots")
    assert res.code == 1
    assert "Traceback" not in res.err
    assert "diverged at step" in res.err and "smaller learning rate" in res.err
    step = int(res.err.split("diverged at step ")[1].split(":")[0])
    assert 2 <= step <= 200
    good = _state(Path("d"))
    assert int(good.step) == step - 1
    assert all(np.all(np.isfinite(x)) for x in _leaves(good.params))
    assert not Path("d/summary.json").exists()
    records = [json.loads(x) for x in Path("d/metrics.jsonl").read_text().splitlines()]
    assert all(r["step"] < step for r in records)


# ---------------------------------------------------------------------------------------------
# the process: compilation cache, JAX's config left alone, real subprocesses


def test_compilation_cache_is_written_and_jax_config_restored(cli, cache_dir):
    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    assert cli("train", LR, "train.steps=2", "--out", "c", "--no-plots", "-q").code == 0
    assert any(cache_dir.iterdir())  # compiled programs were cached, however small
    after = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    assert after == before


def _subprocess(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLGRAD_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "mlgrad", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_real_process_bad_config_exit_2_without_traceback(tmp_path):
    bad = _subprocess(["train", str(LR), "train.stepz=3"], tmp_path, tmp_path / "cache")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert "did you mean `train.steps`?" in bad.stderr.lower()
    assert _listing(tmp_path) == []


@pytest.mark.slow  # a fresh interpreter imports JAX and compiles from scratch (~5 s)
def test_real_process_trains_and_fills_the_cache(tmp_path):
    cache = tmp_path / "cache"
    ok = _subprocess(
        ["train", str(LR), "train.steps=3", "--out", "r", "--no-plots"], tmp_path, cache
    )
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr and "devices: " in ok.stderr
    assert ok.stdout.startswith("done: 3 steps")
    assert any(cache.iterdir())


def test_every_command_has_an_interrupt_message():
    # Ctrl-C in any command ends with its own one-line message (exit 130), never a KeyError.
    from mlgrad.cli import _INTERRUPTED
    from mlgrad.cli.parsers import COMMANDS

    assert set(_INTERRUPTED) == set(COMMANDS)
