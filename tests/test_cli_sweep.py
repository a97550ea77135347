"""Tests for `mlgrad sweep`: value splitting, the Cartesian product, one compiled program per
group whose runs equal `mlgrad train`, the run directory, user errors and divergence.

The commands run in-process (:func:`mlgrad.cli.main`) on the small ice-cream configs with
few steps; the expected values come from `mlgrad train` runs of the same settings.
"""

from __future__ import annotations

import csv
import importlib
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from mlgrad.config import load_config
from mlgrad.runs import rundir
from mlgrad.runs import sweep as run_sweep
from mlgrad.runs.sweep_plan import parse_axes, plan, split_values
from mlgrad.runs.sweep_report import MIN_LOSS_NOTE

# The module (mlgrad.training.sweep is also the name of the function it exports).
sweep_module = importlib.import_module("mlgrad.training.sweep")

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "configs" / "linear_regression.yaml"
#: The listing of a finished sweep's directory.
FINISHED = ["config.yaml", "report.html", "runs", "sweep.csv", "sweep.json"]
MULTI = ROOT / "configs" / "linear_regression_multi.yaml"

# The CLI caches compiled programs in a temporary directory (fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("cache_dir")

# float32 training: the sweep injects the learning rate into the optimizer state, `mlgrad
# train` folds it into the program as a constant; the roundings differ slightly.
RTOL = 1e-5


@pytest.fixture
def sweep_calls(monkeypatch):
    """Records the calls of mlgrad.training.sweep.sweep (the one-program path)."""
    calls = []
    real = sweep_module.sweep

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "sweep", spy)
    return calls


def _listing(path: Path) -> list[str]:
    """Every path under ``path``; of a sweep's ``runs/`` only the folder (its runs' logs are
    tested in tests/test_tensorboard.py)."""
    paths = (p.relative_to(path) for p in path.rglob("*"))
    return sorted(str(p) for p in paths if p.parts[0] != "runs" or len(p.parts) == 1)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def _train_metrics(cli, config: Path, overrides: list[str], out: str) -> dict[str, float]:
    """The final metrics of `mlgrad train CONFIG OVERRIDES` (its summary.json)."""
    res = cli("train", config, *overrides, "--out", out, "--no-plots", "-q")
    assert res.code == 0, res.err
    return json.loads((Path(out) / "summary.json").read_text())["metrics"]


# ---------------------------------------------------------------------------------------------
# splitting and parsing the arguments


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("0,1,2", ["0", "1", "2"]),
        ("0.1", ["0.1"]),
        ("", [""]),
        ("[temp],[temp,price]", ["[temp]", "[temp,price]"]),
        ("[temp, price], [income]", ["[temp, price]", "[income]"]),
        ("[[1,2],[3]],[4]", ["[[1,2],[3]]", "[4]"]),
        ("{name: a, k: [1,2]},{name: b}", ["{name: a, k: [1,2]}", "{name: b}"]),
        ("'a,b',c", ["'a,b'", "c"]),
        ('"a,\\"b,",c', ['"a,\\"b,"', "c"]),
        ("it's,x", ["it's", "x"]),  # an apostrophe inside a plain value is no quote
        ("[a, 'b,]'],c", ["[a, 'b,]']", "c"]),
    ],
)
def test_split_values_on_top_level_commas_only(text, pieces):
    assert split_values(text) == pieces


def test_values_parse_like_train_overrides():
    axes = parse_axes(
        [
            "data.features=[temp],[temp,price]",
            "optimizer.learning_rate=1e-3,0.5",
            "train.batch_size=null,8",
            "name='a,b'",
        ]
    )
    assert [a.key for a in axes] == [
        "data.features",
        "optimizer.learning_rate",
        "train.batch_size",
        "name",
    ]
    assert axes[0].values == (["temp"], ["temp", "price"])
    assert axes[1].values == (0.001, 0.5)
    assert axes[2].values == (None, 8)
    assert axes[3].values == ("a,b",)
    assert axes[0].override(1) == "data.features=[temp,price]"


def test_product_in_argument_order_last_key_fastest(tmp_path):
    axes = parse_axes(["optimizer.learning_rate=0.1,0.2,0.3", "seed=5,6", "train.steps=3"])
    runs, groups = plan(LR, axes)
    expected = list(itertools.product([0.1, 0.2, 0.3], [5, 6]))
    assert [(r.learning_rate, r.seed) for r in runs] == expected
    assert [r.index for r in runs] == list(range(6))
    assert all(r.cfg.train.steps == 3 for r in runs)
    # Seeds and learning rates only: one group, one program.
    assert len(groups) == 1 and [r.index for r in groups[0].runs] == list(range(6))
    # Each run's overrides reproduce its config with `mlgrad train`'s loader.
    for run in runs:
        cfg, _ = load_config(LR, run.overrides)
        assert cfg == run.cfg


def test_dry_run_prints_the_plan_and_writes_nothing(cli):
    res = cli("sweep", MULTI, "data.features=[temp],[temp,price]", "seed=0,1", "--dry-run")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["run", "data.features", "seed", "learning_rate", "group"]
    body = [line.split() for line in lines[1:5]]
    assert [b[1:4] for b in body] == [
        ["[temp]", "0", "0.2"],
        ["[temp]", "1", "0.2"],
        ["[temp,price]", "0", "0.2"],
        ["[temp,price]", "1", "0.2"],
    ]
    assert [b[4] for b in body] == ["0", "0", "1", "1"]
    assert "4 runs in 2 groups" in res.out
    assert _listing(Path.cwd()) == []


# ---------------------------------------------------------------------------------------------
# seeds x learning rates: one compiled program, each run equal to `mlgrad train`


def test_seeds_by_learning_rates_is_one_program_equal_to_train(cli, sweep_calls):
    common = ["train.steps=20", "train.batch_size=8", "data.val_split=0.2"]
    res = cli(
        "sweep", MULTI, "seed=3,4", "optimizer.learning_rate=0.05,0.3", *common, "--out", "sw"
    )
    assert res.code == 0, res.err
    assert len(sweep_calls) == 1  # the four runs are one vmapped program
    assert sorted(sweep_calls[0]["seeds"]) == [3, 4]
    assert sorted(sweep_calls[0]["learning_rates"]) == [0.05, 0.3]

    rows = _rows(Path("sw"))
    assert [(r["run"], r["seed"], r["learning_rate"]) for r in rows] == [
        ("0", "3", "0.05"),
        ("1", "3", "0.3"),
        ("2", "4", "0.05"),
        ("3", "4", "0.3"),
    ]
    losses = set()
    for row in rows:
        overrides = [f"seed={row['seed']}", f"optimizer.learning_rate={row['learning_rate']}"]
        want = _train_metrics(cli, MULTI, overrides + common, f"train{row['run']}")
        assert row["diverged"] == "false"
        assert float(row["train_loss"]) == pytest.approx(want["train_loss"], rel=RTOL)
        assert float(row["val_loss"]) == pytest.approx(want["val_loss"], rel=RTOL)
        losses.add(round(float(row["train_loss"]), 7))
    assert len(losses) == 4  # seeds (batch order) and learning rates really differ

    summary = json.loads(Path("sw/sweep.json").read_text())
    (group,) = summary["groups"]
    assert group["compiled_as"] == "one vmapped program" and group["runs"] == [0, 1, 2, 3]
    run1 = summary["runs"][1]
    assert run1["overrides"] == ["seed=3", "optimizer.learning_rate=0.3", *common]
    assert run1["metrics"]["val_loss"] == pytest.approx(float(rows[1]["val_loss"]), rel=1e-12)


def test_schedule_learning_rate_sweeps_seeds_in_one_program(cli, sweep_calls):
    schedule = (
        "optimizer.learning_rate={name: exponential_decay, init_value: 0.3, "
        "transition_steps: 4, decay_rate: 0.5}"
    )
    common = [schedule, "train.steps=12", "train.batch_size=8"]
    res = cli("sweep", MULTI, "seed=0,1", *common, "--out", "sw", "-q")
    assert res.code == 0, res.err
    assert len(sweep_calls) == 1
    rows = _rows(Path("sw"))
    assert [r["learning_rate"] for r in rows] == ["exponential_decay"] * 2
    want = _train_metrics(cli, MULTI, ["seed=1", *common], "t1")
    assert float(rows[1]["train_loss"]) == pytest.approx(want["train_loss"], rel=RTOL)
    assert rows[0]["train_loss"] != rows[1]["train_loss"]


def test_seeds_beyond_int32_are_vmapped_too(cli, sweep_calls):
    """Configs take seeds up to 2**32 - 1; the sweep's uint32 seeds give the same keys."""
    big = 2**32 - 7
    common = ["train.steps=10", "train.batch_size=8"]
    res = cli("sweep", MULTI, f"seed=1,{big}", *common, "--out", "sw", "-q")
    assert res.code == 0, res.err
    assert len(sweep_calls) == 1
    rows = _rows(Path("sw"))
    want = _train_metrics(cli, MULTI, [f"seed={big}", *common], "t")
    assert float(rows[1]["train_loss"]) == pytest.approx(want["train_loss"], rel=1e-7)


# ---------------------------------------------------------------------------------------------
# shape-changing keys: one group per value, trained one after the other


def test_shape_changing_key_makes_sequential_groups(cli, sweep_calls):
    common = ["train.steps=15"]
    res = cli(
        "sweep",
        MULTI,
        "data.features=[temp],[temp,price]",
        "optimizer.learning_rate=0.1,0.3",
        *common,
        "--out",
        "sw",
    )
    assert res.code == 0, res.err
    assert len(sweep_calls) == 2  # one program per feature set
    assert [sorted(c["learning_rates"]) for c in sweep_calls] == [[0.1, 0.3], [0.1, 0.3]]
    summary = json.loads(Path("sw/sweep.json").read_text())
    assert [g["runs"] for g in summary["groups"]] == [[0, 1], [2, 3]]
    assert [g["values"] for g in summary["groups"]] == [
        {"data.features": "[temp]"},
        {"data.features": "[temp,price]"},
    ]
    rows = _rows(Path("sw"))
    assert list(rows[0]) == [
        "run",
        "data.features",
        "seed",
        "learning_rate",
        "train_loss",
        "min_loss",
        "diverged",
    ]
    assert [r["data.features"] for r in rows] == [
        "[temp]",
        "[temp]",
        "[temp,price]",
        "[temp,price]",
    ]
    for i in (0, 3):
        overrides = summary["runs"][i]["overrides"]
        want = _train_metrics(cli, MULTI, overrides, f"t{i}")
        assert float(rows[i]["train_loss"]) == pytest.approx(want["train_loss"], rel=RTOL)
    # Two features fit better than one.
    assert float(rows[3]["train_loss"]) < float(rows[1]["train_loss"])
    assert "group 2/2: data.features=[temp,price]" in res.err


# ---------------------------------------------------------------------------------------------
# the run directory


def test_run_directory_files_table_and_best_run(cli):
    res = cli(
        "sweep",
        MULTI,
        "optimizer.learning_rate=0.01,0.1,0.3",
        "seed=0,1",
        "train.steps=20",
        "data.val_split=0.2",
        "--out",
        "sw",
    )
    assert res.code == 0, res.err
    run_dir = Path("sw")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.yaml",
        "loss_curves.png",
        "report.html",
        "runs",
        "sweep.csv",
        "sweep.json",
    ]
    png = (run_dir / "loss_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

    rows = _rows(run_dir)
    assert len(rows) == 6
    assert list(rows[0]) == [
        "run",
        "seed",
        "learning_rate",
        "train_loss",
        "val_loss",
        "min_loss",
        "diverged",
    ]
    val = [float(r["val_loss"]) for r in rows]
    best = min(range(6), key=val.__getitem__)
    for r in rows:
        assert float(r["min_loss"]) > 0

    summary = json.loads((run_dir / "sweep.json").read_text())
    assert summary["best_run"] == best and summary["best_by"] == "val_loss"
    assert summary["swept"] == {
        "optimizer.learning_rate": ["0.01", "0.1", "0.3"],
        "seed": ["0", "1"],
    }
    assert summary["devices"] and summary["wall_time_s"] > 0
    assert summary["base_config"]["train"]["steps"] == 20
    assert [r["run"] for r in summary["runs"]] == list(range(6))

    # config.yaml is the base config (CONFIG + the single-valued overrides), loadable.
    cfg, _ = load_config(run_dir / "config.yaml")
    assert cfg.train.steps == 20 and cfg.data.val_split == 0.2
    assert cfg.optimizer.learning_rate == 0.2  # the file's own; the swept values are per run

    # The printed table: a header, one line per run in run order, the best marked '*'.
    lines = res.out.splitlines()
    assert lines[0].split()[:3] == ["run", "seed", "learning_rate"]
    table = lines[1:7]
    assert [line.lstrip("* ").split()[0] for line in table] == [str(i) for i in range(6)]
    assert [line.startswith("*") for line in table] == [i == best for i in range(6)]
    assert f"best: run {best} " in res.out and "devices: " in res.out
    assert lines[7:9] == MIN_LOSS_NOTE.splitlines()  # what the two losses are


def test_classifier_rows_have_accuracy(cli):
    logistic = ROOT / "configs" / "logistic.yaml"
    res = cli(
        "sweep", logistic, "optimizer.learning_rate=0.01,0.3", "train.steps=15", "--out", "sw"
    )
    assert res.code == 0, res.err
    rows = _rows(Path("sw"))
    assert list(rows[0])[3:7] == ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert all(0.5 < float(r["val_accuracy"]) <= 1.0 for r in rows)


def test_default_run_dir_and_quiet(cli):
    res = cli("sweep", LR, "optimizer.learning_rate=0.1,0.2", "train.steps=3", "--no-plots", "-q")
    assert res.code == 0, res.err
    assert res.err == ""
    (run,) = Path("runs").iterdir()
    assert run.name.startswith("linear_regression-sweep-")
    assert sorted(p.name for p in run.iterdir()) == FINISHED


# ---------------------------------------------------------------------------------------------
# divergence


def test_a_diverging_learning_rate_is_reported_not_fatal(cli):
    res = cli("sweep", LR, "optimizer.learning_rate=0.1,3.0", "train.steps=50", "--out", "sw")
    assert res.code == 0, res.err
    rows = _rows(Path("sw"))
    assert [r["diverged"] for r in rows] == ["false", "true"]
    assert math.isfinite(float(rows[0]["train_loss"]))
    assert math.isnan(float(rows[1]["train_loss"]))
    summary = json.loads(Path("sw/sweep.json").read_text())
    assert summary["runs"][1]["metrics"]["train_loss"] is None and summary["best_run"] == 0
    assert "(1 diverged)" in res.out


def test_every_run_diverged_exits_1_and_keeps_the_table(cli):
    res = cli("sweep", LR, "optimizer.learning_rate=3.0,5.0", "train.steps=50", "--out", "sw")
    assert res.code == 1
    assert "every run of the sweep diverged" in res.err and "smaller learning rate" in res.err
    assert "optimizer.learning_rate=0.3" in res.err
    assert [r["diverged"] for r in _rows(Path("sw"))] == ["true", "true"]
    assert json.loads(Path("sw/sweep.json").read_text())["best_run"] is None


# ---------------------------------------------------------------------------------------------
# user errors: exit 2, the key named, nothing written

BAD_SWEEPS = [
    (["optimizer.learning_rate=0.1,-1"], "optimizer.learning_rate", "> 0"),
    (["train.stepz=1,2"], "train.stepz", "did you mean `train.steps`?"),
    (["seed=0,,1"], "seed", "empty value"),
    (["seed=0,1,"], "seed", "empty value"),
    (["seed=0,1", "seed=2"], "seed", "given twice"),
    (["seed=0,0"], "seed", "more than once"),
    (["seed=0,x"], "seed", "integer"),
    (["data.features=[temp],[tmp]"], "data.features", "did you mean 'temp'?"),
    (["data.features=[temp],[temp,price"], "data.features", "valid YAML"),
    (["optimizer.name=sgd,adamw_"], "optimizer.name", "did you mean 'adamw'?"),
    (
        ["optimizer.name=sgd,adam", "seed=0,1", "optimizer.momentum=0.9"],
        "optimizer.momentum",
        "run with optimizer.name=adam seed=0",
    ),
    (["train.batch_size=4,0"], "train.batch_size", "got 0"),
    (["seed=0,1", "train.devices=2"], "train.devices", "JAX sees 1 device"),
]


@pytest.mark.parametrize(
    ("arguments", "key", "hint"), BAD_SWEEPS, ids=[" ".join(c[0])[:40] for c in BAD_SWEEPS]
)
def test_bad_sweep_exits_2_names_key_writes_nothing(cli, arguments, key, hint):
    res = cli("sweep", LR, *arguments, "train.steps=2")
    res.assert_user_error()
    assert f"`{key}`" in res.err
    assert hint.lower() in res.err.lower()
    assert _listing(Path.cwd()) == []


def test_non_empty_out_and_usage_errors(cli):
    Path("taken").mkdir()
    Path("taken/notes.txt").write_text("mine")
    res = cli("sweep", LR, "seed=0,1", "--out", "taken")
    res.assert_user_error()
    assert "not empty" in res.err
    res = cli("sweep", LR, "seed")
    res.assert_user_error()
    assert "key=value" in res.err
    assert _listing(Path.cwd()) == ["taken", "taken/notes.txt"]


def test_help_lists_sweep(cli):
    res = cli("--help")
    assert res.code == 0 and "sweep" in res.out
    res = cli("sweep", "--help")
    assert res.code == 0 and "KEY=V1,V2" in res.out and "--dry-run" in res.out
    res = cli("swep", LR)
    assert res.code == 2 and "did you mean 'sweep'?" in res.err


# ---------------------------------------------------------------------------------------------
# nothing half-written


def test_an_interrupt_or_a_failed_write_leaves_a_sweep_that_resumes(cli, monkeypatch):
    # Interrupted before its first chunk finished: only the plan is saved; --resume trains.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real_sweep = sweep_module.sweep
    monkeypatch.setattr(sweep_module, "sweep", interrupted)
    args = ("sweep", LR, "seed=0,1", "train.steps=2", "--out", "sw", "--no-plots")
    res = cli(*args)
    assert res.code == 130
    assert f"continue with: mlgrad sweep {LR} seed=0,1 train.steps=2 --out sw --resume" in res.err
    assert _listing(Path("sw")) == ["progress", "progress/plan.json"]
    monkeypatch.setattr(sweep_module, "sweep", real_sweep)
    res = cli(*args, "--resume")
    assert res.code == 0, res.err
    assert _listing(Path("sw")) == FINISHED  # progress gone
    # Nothing to resume in a finished sweep.
    res = cli(*args, "--resume")
    res.assert_user_error()
    assert "is complete" in res.err

    # The results cannot be written: those written are removed, the trained runs are kept,
    # and --resume writes the results without training again.
    real = rundir.write_atomic

    def disk_full_at_the_summary(path, text):
        if path.name == "sweep.json":
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(rundir, "write_atomic", disk_full_at_the_summary)
    args = ("sweep", LR, "seed=0,1", "train.steps=2", "--out", "sw2", "--no-plots")
    res = cli(*args)
    assert res.code == 1 and "No space left" in res.err
    assert not {"sweep.json", "sweep.csv", "runs"} & set(_listing(Path("sw2")))
    monkeypatch.setattr(rundir, "write_atomic", real)
    res = cli(*args, "--resume")
    assert res.code == 0, res.err
    assert "done before the interruption" in res.err
    assert _listing(Path("sw2")) == FINISHED


def test_a_second_sweep_into_the_same_directory_is_refused(cli, monkeypatch):
    """A sweep owns its run directory (an OS lock) while it trains: a sweep or a run that
    starts into the same --out meanwhile (even after both found it empty) exits 2 naming the
    owner's PID and writes nothing; a default directory name moves on to the next free one."""
    real_train = run_sweep._Groups.train

    def others_start_meanwhile(self):
        assert (Path("sw") / rundir.LOCK).is_file()  # ours, held while training
        monkeypatch.setattr(rundir, "check_empty", lambda *a, **k: None)  # raced past it
        second = cli("sweep", LR, "seed=5", "train.steps=2", "--out", "sw", "--no-plots")
        second.assert_user_error()
        assert f"in use by another mlgrad process (PID {os.getpid()}, mlgrad sweep)" in second.err
        run = cli("train", LR, "train.steps=2", "--out", "sw", "--no-plots")
        run.assert_user_error()
        assert "in use by another mlgrad process" in run.err
        return real_train(self)

    monkeypatch.setattr(run_sweep._Groups, "train", others_start_meanwhile)
    res = cli("sweep", LR, "seed=0,1", "train.steps=2", "--out", "sw", "--no-plots", "-q")
    assert res.code == 0, res.err
    assert _listing(Path("sw")) == FINISHED  # lock gone
    assert [r["seed"] for r in _rows(Path("sw"))] == ["0", "1"]

    # A default name that another process owns after this one chose it: the next one.
    monkeypatch.setattr(run_sweep._Groups, "train", real_train)
    names = iter(["runs/a", "runs/b"])
    monkeypatch.setattr(rundir, "default_run_dir", lambda name: Path(next(names)))
    with rundir.RunDirLock(Path("runs/a"), what="another sweep"):
        res = cli("sweep", LR, "seed=0", "train.steps=2", "--no-plots", "-q")
        assert res.code == 0, res.err
        assert _listing(Path("runs/a")) == [rundir.LOCK]  # the other's, untouched
    assert _listing(Path("runs/b")) == FINISHED


# ---------------------------------------------------------------------------------------------
# the figure


def test_trailing_mean_matches_a_direct_mean():
    from mlgrad.plots import _trailing_mean

    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, 50)
    want = [x[max(0, k - 7) : k].mean() for k in range(1, 51)]
    np.testing.assert_allclose(_trailing_mean(x, 7), want, rtol=1e-12)
    x[30] = np.inf  # a diverged run: NaN from its first non-finite loss on
    out = _trailing_mean(x, 7)
    assert np.isfinite(out[:30]).all() and np.isnan(out[30:]).all()


@pytest.mark.parametrize(
    "case", ["64 runs in 2 groups", "12 learning rates", "25 labels", "all diverged"]
)
def test_loss_curves_draws_every_case(tmp_path, case):
    from mlgrad.plots import loss_curves

    rng = np.random.default_rng(1)
    steps = np.arange(1, 101)
    kwargs = {}
    if case == "64 runs in 2 groups":
        lrs = np.tile(np.repeat([0.01, 0.03, 0.1, 0.3], 8), 2)
        groups = np.repeat([0, 1], 32)
        labels = [f"g{g}, lr {lr}" for g, lr in zip(groups, lrs, strict=True)]
        kwargs = {"color_values": lrs, "color_groups": groups, "best": 5}
    elif case == "12 learning rates":
        lrs = np.geomspace(1e-3, 1.0, 12)
        labels = [f"lr {lr:.3g}" for lr in lrs]
        kwargs = {"color_values": lrs}
    else:
        labels = [f"model.latent={i}" for i in range(25)]
        lrs = np.full(25, 0.1)
    histories = [np.exp(-lr * steps) + rng.uniform(0, 1e-3, 100) for lr in lrs]
    if case == "all diverged":
        histories = [np.concatenate([h[:40], np.full(60, np.nan)]) for h in histories]
    path = loss_curves(tmp_path / "c.png", histories, labels, smooth=3, **kwargs)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_resume_refuses_a_sweep_of_other_runs_or_on_changed_data(cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    args = ("sweep", LR, "seed=0,1", "train.steps=2", "--out", "sw", "--no-plots")
    with monkeypatch.context() as m:
        m.setattr(sweep_module, "sweep", interrupted)
        assert cli(*args).code == 130
    other = cli("sweep", LR, "seed=0,2", "train.steps=2", "--out", "sw", "--no-plots", "--resume")
    other.assert_user_error()
    assert "interrupted sweep of other runs" in other.err
    import mlgrad.runs.setup as setup_module

    monkeypatch.setattr(setup_module, "data_fingerprint", lambda data: "changed")
    changed = cli(*args, "--resume")
    changed.assert_user_error()
    assert "the data changed" in changed.err
    assert _listing(Path("sw")) == ["progress", "progress/plan.json"]  # nothing written
