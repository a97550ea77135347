"""Reliability, round 2: user mistakes in configs and data files that used to end in a
traceback, the "likely a bug in mlgrad" exit 1, or a hang. Each must exit 2 with one
``error:`` paragraph naming the key or the file, before anything is written.

Every case runs through the CLI in-process (``--dry-run`` unless training is the point); the
current directory is an empty ``work`` directory that must stay empty. Data files are written
next to it, in ``tmp_path``.
"""

from __future__ import annotations

import io
import time
import types
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad.config import MAX_STEPS, ConfigError, build_optimizer
from mlgrad.config.optimizers import MAX_MEMORY_SIZE, check_optimizer_on
from mlgrad.config.schema import MAX_BATCH_SIZE, MAX_KEEP_CHECKPOINTS

pytestmark = pytest.mark.usefixtures("cache_dir")

HUGE = "1" + "0" * 400  # an integer beyond any float


def _user_error(res, *names: str) -> str:
    """Exit 2, one `error:` paragraph naming every one of ``names``, nothing written."""
    res.assert_user_error()
    message = res.err
    assert "\n" not in message.strip(), message
    for name in names:
        assert name in message, message
    assert "likely a bug" not in message, message
    assert list(Path.cwd().iterdir()) == []  # nothing written
    return message


# ---------------------------------------------------------------------------------------------
# 1. numbers that overflow the run's dtype (or any float)


@pytest.mark.parametrize(
    ("model", "override", "key", "fragment"),
    [
        ("linear_regression", "optimizer.learning_rate=1e39", "optimizer.learning_rate", "float32"),
        ("linear_regression", f"optimizer.learning_rate={HUGE}", "optimizer.learning_rate", ""),
        ("linear_regression", "optimizer.learning_rate=1e-50", "optimizer.learning_rate", "is 0"),
        ("linear_regression", f"optimizer.momentum={HUGE}", "optimizer.momentum", ""),
        (
            "linear_regression",
            "optimizer={name: noisy_sgd, learning_rate: 0.1, eta: -1e39}",
            "optimizer.eta",
            "float32",
        ),
        (
            "linear_regression",
            "optimizer={name: adam, learning_rate: 0.1, eps: 1e39}",
            "optimizer.eps",
            "float32",
        ),
        (
            "linear_regression",
            "optimizer.learning_rate={name: constant_schedule, value: 1e39}",
            "optimizer.learning_rate.value",
            "float32",
        ),
        (
            "linear_regression",
            "optimizer={chain: [{name: clip, max_delta: 1.0}, {name: sgd, learning_rate: 1e39}]}",
            "optimizer.chain.1.learning_rate",
            "float32",
        ),
        ("linear_regression", f"data.val_split={HUGE}", "data.val_split", "too large"),
        ("logistic", "model.l2=1e39", "model.l2", "float32"),
        ("logistic", f"model.l2={HUGE}", "model.l2", "too large"),
    ],
)
def test_numbers_beyond_the_dtype_are_config_errors(cli, model, override, key, fragment):
    message = _user_error(cli("train", model, override, "--dry-run"), f"`{key}`")
    assert fragment in message


def test_float64_runs_take_numbers_beyond_float32(cli):
    res = cli("train", "logistic", "train.dtype=float64", "model.l2=1e39", "--dry-run")
    assert res.code == 0, res.err
    res = cli("train", "linear_regression", "train.dtype=float64", f"model.l2={HUGE}", "--dry-run")
    assert res.code == 2  # linear_regression has no l2: the unknown key, not an overflow
    res = cli(
        "train",
        "linear_regression",
        "train.dtype=float64",
        "optimizer.learning_rate=1e-50",
        "--dry-run",
    )
    assert res.code == 0, res.err


def test_an_integer_learning_rate_beyond_int32_trains(cli):
    """It used to reach JAX as a Python int (OverflowError in the first step); now it is the
    float the user meant, and the run diverges with exit 1 and a smaller learning rate."""
    res = cli(
        "train",
        "linear_regression",
        "optimizer.learning_rate=100000000000000000000000",
        "train.steps=2",
        "--out",
        "run",
        "--no-plots",
        "--quiet",
    )
    assert res.code in (0, 1), res.err
    assert "likely a bug" not in res.err and "Traceback" not in res.err
    if res.code == 1:
        assert "diverged" in res.err and "smaller learning rate" in res.err


def test_a_schedule_that_overflows_int32_steps_is_a_config_error(cli):
    schedule = (
        "optimizer.learning_rate={name: piecewise_constant_schedule, init_value: 0.1, "
        "boundaries_and_scales: {3000000000: 0.5}}"
    )
    _user_error(cli("train", "linear_regression", schedule, "--dry-run"), "optimizer.learning_rate")


# ---------------------------------------------------------------------------------------------
# 2. optimizers that cannot update every parameter (sm3 fails on a scalar bias)


def _linear_params():
    return {
        "w": jax.ShapeDtypeStruct((1,), jnp.float32),
        "b": jax.ShapeDtypeStruct((), jnp.float32),
    }


def test_check_optimizer_on_names_the_optimizer_and_the_parameter():
    cfg = {"name": "sm3", "learning_rate": 0.1}
    with pytest.raises(ConfigError) as info:
        check_optimizer_on(build_optimizer(cfg), _linear_params(), cfg)
    assert info.value.key == "optimizer.name"
    message = str(info.value)
    assert message.startswith("`optimizer.name`: optax.sm3 cannot train"), message
    assert "`b`" in message and "scalar" in message and "adam" in message
    chain = {"chain": [{"name": "clip", "max_delta": 1.0}, cfg]}
    with pytest.raises(ConfigError) as info:
        check_optimizer_on(build_optimizer(chain), _linear_params(), chain)
    assert info.value.key == "optimizer.chain.1.name"


@pytest.mark.parametrize("name", ["adam", "adafactor", "lbfgs", "lion", "lamb", "lars", "fromage"])
def test_check_optimizer_on_accepts_optimizers_that_work(name):
    cfg = {"name": name, "learning_rate": 0.1}
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(())}
    check_optimizer_on(build_optimizer(cfg), params, cfg)


def test_an_optimizer_that_fails_on_a_scalar_parameter_exits_2(cli):
    args = ("train", "linear_regression", "optimizer={name: sm3, learning_rate: 0.1}")
    for extra in (("--dry-run",), ("train.steps=3", "--out", "run", "--no-plots")):
        _user_error(cli(*args, *extra), "`optimizer.name`", "sm3")


# ---------------------------------------------------------------------------------------------
# 3. and 4. NPZ members that are not numeric arrays, files that are not NPZ, no feature columns


def _npz_bytes(**members: bytes | np.ndarray) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                npy = io.BytesIO()
                np.save(npy, value, allow_pickle=value.dtype.hasobject)
                value = npy.getvalue()
            z.writestr(name, value)
    return buf.getvalue()


_X, _Y = np.arange(12.0).reshape(6, 2), np.arange(6.0)
_NPY_Y = _npz_bytes(**{"y.npy": _Y})


def _huge_header() -> bytes:
    """x.npy whose header declares 10**15 float64 values but holds 6."""
    npy = io.BytesIO()
    np.save(npy, np.arange(6.0))
    data = npy.getvalue()
    end = data.index(b"\n") + 1
    header = data[:end].replace(b"(6,)", b"(1000000000000000,)")
    header = header[:-1].rstrip(b" ")
    header += b" " * (end - 1 - len(header)) + b"\n"
    return _npz_bytes(**{"x.npy": header + data[end:], "y.npy": _Y})


BAD_NPZ = [
    ("object-member", _npz_bytes(**{"x.npy": np.array([{"a": 1}] * 6), "y.npy": _Y}), "'x'"),
    ("zero-filled", b"\0" * 4096, "NPZ"),
    ("three-zero-bytes", b"\0\0\0", "NPZ"),
    ("text-member", _npz_bytes(**{"x.npy": _X, "y": b"hello"}), "'y'"),
    ("not-npy-member", _npz_bytes(**{"x.npy": _X, "y.npy": b"hello world"}), "'y'"),
    ("truncated-member", _npz_bytes(**{"x.npy": _X, "y.npy": _NPY_Y[:60]}), "'y'"),
    ("header-declares-petabytes", _huge_header(), "'x'"),
    ("complex-member", _npz_bytes(**{"x.npy": _X + 1j, "y.npy": _Y}), "'x'"),
    ("zero-feature-columns", _npz_bytes(**{"x.npy": np.zeros((6, 0)), "y.npy": _Y}), "feature"),
    ("zero-target-columns", _npz_bytes(**{"x.npy": _X, "y.npy": np.zeros((6, 0))}), "'y'"),
]


@pytest.mark.parametrize(("data", "fragment"), [pytest.param(d, f, id=i) for i, d, f in BAD_NPZ])
def test_bad_npz_files_name_the_file_and_member_and_never_suggest_pickle(
    cli, tmp_path, data, fragment
):
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    message = _user_error(cli("train", "linear_regression", f"data={{path: {path}}}", "--dry-run"))
    assert "bad.npz" in message and fragment in message, message
    assert "pickle.load" not in message and "allow_pickle" not in message, message


def test_named_feature_arrays_with_no_columns_are_refused(cli, tmp_path):
    path = tmp_path / "named.npz"
    np.savez(path, a=np.zeros((6, 0)), y=_Y)
    data = f"data={{path: {path}, features: [a], target: y}}"
    message = _user_error(cli("train", "linear_regression", data, "--dry-run"), "named.npz")
    assert "no feature columns" in message


def test_a_csv_of_only_the_target_column_is_refused(cli, tmp_path):
    path = tmp_path / "only.csv"
    path.write_text("y\n1\n2\n3\n")
    data = f"data={{path: {path}, target: y}}"
    message = _user_error(cli("train", "linear_regression", data, "--dry-run"), "only.csv")
    assert "no feature column" in message


# ---------------------------------------------------------------------------------------------
# 5. paths that cannot even be looked up


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("~nosuchuser_mlgrad/x.csv", "nosuchuser_mlgrad"),
        ("a" * 300 + ".csv", "cannot access"),
        ("~nosuchuser_mlgrad", "nosuchuser_mlgrad"),
    ],
)
def test_paths_that_cannot_be_looked_up_are_data_errors(cli, path, fragment):
    data = f"data={{path: '{path}', target: y}}"
    message = _user_error(cli("train", "linear_regression", data, "--dry-run"), "`data.path`")
    assert fragment in message and path[:40] in message, message


def test_loader_expanduser_of_an_unknown_user():
    from mlgrad.data import DataError, load

    with pytest.raises(DataError, match="~nosuchuser_mlgrad/x.csv: file not found") as info:
        load(path="~nosuchuser_mlgrad/x.csv", target="y")
    assert info.value.key == "path"


# ---------------------------------------------------------------------------------------------
# 6. wide files: every check is linear in the number of columns


def _wide_csv(path: Path, columns: int) -> Path:
    names = [f"c{j}" for j in range(columns)]
    rows = [",".join(str((i + j) % 7) for j in range(columns)) for i in range(3)]
    path.write_text(
        "\n".join([",".join([*names, "y"]), *(r + f",{i}" for i, r in enumerate(rows))])
    )
    return path


def test_a_30000_column_csv_is_checked_in_linear_time(cli, tmp_path):
    path = _wide_csv(tmp_path / "wide.csv", 30_000)
    start = time.perf_counter()
    res = cli("train", "linear_regression", f"data={{path: {path}, target: y}}", "--dry-run")
    assert res.code == 0, res.err
    assert "x_train (3, 30000)" in res.out + res.err
    # A missing column names a few of the columns, not all 30,000.
    res = cli("train", "linear_regression", f"data={{path: {path}, target: nope}}", "--dry-run")
    message = _user_error(res, "wide.csv", "'nope'")
    assert "(30001 in all)" in message and len(message) < 1000
    assert time.perf_counter() - start < 3.0


def test_duplicate_columns_of_a_wide_header_are_found_in_linear_time(tmp_path):
    from mlgrad.data import DataError, load

    names = [f"c{j}" for j in range(100_000)] + ["c5", "y"]
    path = tmp_path / "dupes.csv"
    path.write_text(",".join(names) + "\n" + ",".join("1" * len(names)) + "\n")
    start = time.perf_counter()
    with pytest.raises(DataError, match="'c5' more than once"):
        load(path=path, target="y")
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------
# 7. every integer key has an upper bound


@pytest.mark.parametrize(
    ("override", "key", "bound"),
    [
        ("train.checkpoint_every=1e20", "train.checkpoint_every", MAX_STEPS),
        ("train.eval_every=1e20", "train.eval_every", MAX_STEPS),
        ("train.log_every=1e20", "train.log_every", MAX_STEPS),
        (f"train.checkpoint_every={MAX_STEPS + 1}", "train.checkpoint_every", MAX_STEPS),
        (f"train.keep_checkpoints={MAX_KEEP_CHECKPOINTS + 1}", "train.keep_checkpoints", None),
        ("train.batch_size=1e20", "train.batch_size", MAX_BATCH_SIZE),
        (f"train.steps={HUGE}", "train.steps", MAX_STEPS),
        ("seed=1e20", "seed", 2**32 - 1),
        ("data.split_seed=1e20", "data.split_seed", 2**32 - 1),
        (
            "optimizer.learning_rate={name: cosine_decay_schedule, init_value: 0.1, "
            "decay_steps: 1e20}",
            "optimizer.learning_rate.decay_steps",
            MAX_STEPS,
        ),
        (
            "optimizer.learning_rate={name: warmup_cosine_decay_schedule, init_value: 0.0, "
            "peak_value: 0.1, warmup_steps: 3000000000, decay_steps: 100}",
            "optimizer.learning_rate.warmup_steps",
            MAX_STEPS,
        ),
        (
            "optimizer.learning_rate={name: exponential_decay, init_value: 0.1, "
            "transition_steps: 1e20, decay_rate: 0.5}",
            "optimizer.learning_rate.transition_steps",
            MAX_STEPS,
        ),
        (
            "optimizer.learning_rate={name: exponential_decay, init_value: 0.1, "
            "transition_steps: 10, decay_rate: 0.5, transition_begin: 1e20}",
            "optimizer.learning_rate.transition_begin",
            MAX_STEPS,
        ),
        (
            "optimizer={name: lbfgs, learning_rate: 0.1, memory_size: 1e9}",
            "optimizer.memory_size",
            MAX_MEMORY_SIZE,
        ),
        ("optimizer={name: noisy_sgd, learning_rate: 0.1, seed: 1e20}", "optimizer.seed", None),
        (
            "optimizer={name: adafactor, learning_rate: 0.1, min_dim_size_to_factor: 1e20}",
            "optimizer.min_dim_size_to_factor",
            2**31 - 1,
        ),
    ],
)
def test_integer_keys_are_bounded(cli, override, key, bound):
    start = time.perf_counter()
    message = _user_error(cli("train", "linear_regression", override, "--dry-run"), f"`{key}`")
    if bound is not None:
        assert str(bound) in message, message
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("override", ["model.latent=1e30", "model.encoder_sizes=[16, 1e30]"])
def test_model_integers_beyond_64_bits_are_config_errors(cli, override):
    key = override.split("=")[0]
    message = _user_error(cli("train", "autoencoder", override, "--dry-run"), f"`{key}")
    assert "64-bit" in message


def test_the_largest_counts_are_valid_and_cheap(cli):
    from mlgrad.runs.setup import chunk_size

    res = cli(
        "train",
        "linear_regression",
        f"train.checkpoint_every={MAX_STEPS}",
        f"train.eval_every={MAX_STEPS}",
        f"train.log_every={MAX_STEPS}",
        f"train.keep_checkpoints={MAX_KEEP_CHECKPOINTS}",
        f"train.batch_size={MAX_BATCH_SIZE}",
        "--dry-run",
    )
    assert res.code == 0, res.err
    train = types.SimpleNamespace(
        steps=MAX_STEPS, checkpoint_every=MAX_STEPS, eval_every=MAX_STEPS - 1
    )
    start = time.perf_counter()
    assert chunk_size(train, has_val=True) >= 1
    assert time.perf_counter() - start < 1.0


def test_a_sweep_with_an_optimizer_that_fails_on_a_scalar_parameter_exits_2(cli):
    res = cli("sweep", "linear_regression", "optimizer={name: sm3, learning_rate: 0.1}", "seed=0,1")
    _user_error(res, "`optimizer.name`", "sm3")
