"""``mlgrad curvature``: the Hessian of a trained run against independent references.

* linear regression: the spectrum is ``numpy.linalg.eigvalsh`` of ``2 Z^T Z / n``, with ``Z``
  the standardised design and its column of ones built by hand from the CSV;
* the logistic unit: every eigenvalue is ``eigvalsh`` of ``jax.hessian`` of the loss;
* Adam: the preconditioned sharpness is the top eigenvalue of ``P^{-1/2} H P^{-1/2}`` with
  ``P`` written out from the checkpoint's state, and ``P`` reproduces optax's own step;
* the stability limits: their formulas, and gradient descent on ``λ x^2 / 2`` just inside and
  just outside each;
* the verdicts on constructed spectra; the exit code 2 cases, which write nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from mlgrad import curvature_report as cr
from mlgrad.config import load_config
from mlgrad.runs import Console, curvature, train_and_evaluate
from mlgrad.runs.evaluate import restore_latest
from mlgrad.runs.setup import as_batch, prepare

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
QUIET = Console(quiet=True)
SCHEDULE = "{name: linear_schedule, init_value: 0.1, end_value: 0.01, transition_steps: 100}"
WRITTEN = ["curvature.json", "curvature_landscape.png", "curvature_spectrum.png"]
SHIPPED = [
    "linear_regression",
    "linear_regression_multi",
    "logistic",
    "autoencoder",
    "autoencoder_linear",
]


def _train(directory: Path, name: str, *overrides: str) -> Path:
    cfg, _ = load_config(CONFIGS / f"{name}.yaml", ["train.checkpoint_every=50", *overrides])
    train_and_evaluate(cfg, directory, console=QUIET, plots=False)
    return directory


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, cache_dir):
    return tmp_path_factory.mktemp("curvature_runs")


@pytest.fixture(scope="module")
def multi(runs_dir):
    """Three-feature linear regression, 50 steps of heavy-ball momentum, and its curvature."""
    run = _train(runs_dir / "multi", "linear_regression_multi", "train.steps=50")
    return run, curvature(run, plots=False)


@pytest.fixture(scope="module")
def logistic(runs_dir):
    """The logistic unit, 50 steps of Nesterov momentum, and its curvature."""
    run = _train(runs_dir / "logistic", "logistic", "train.steps=50", "train.eval_every=50")
    return run, curvature(run, plots=False)


def _checkpoint_in_float64(run: Path):
    """The run's float64 setup, its checkpoint's state, the flat float64 parameters and the
    training loss of them (the way the tests see the run, independently of the report)."""
    setup32 = prepare(run / "config.yaml")
    state = restore_latest(setup32, run)
    setup = prepare(run / "config.yaml", ["train.dtype=float64"])
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), state.params)
        flat, unravel = ravel_pytree(params)
        batch = as_batch(setup.data.train)
    return setup, state, flat, lambda z: setup.model.objective(unravel(z), batch)


# --------------------------------------------------------------------------------------------
# Runs against independent references
# --------------------------------------------------------------------------------------------


def test_regression_spectrum_is_that_of_2_ZtZ_over_n_built_by_hand(multi):
    run, report = multi
    with open(ROOT / "mlgrad" / "datasets" / "ice_cream.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[c]) for c in ("temp", "price", "income")] for r in rows])
    z = np.c_[np.ones(len(x)), (x - x.mean(axis=0)) / x.std(axis=0)]
    expected = np.linalg.eigvalsh(2 * z.T @ z / len(x))
    np.testing.assert_allclose(report["eigenvalues"]["all"], expected, rtol=1e-12, atol=1e-13)
    assert report["closed_form"]["max_abs_difference_hessian"] < 1e-12
    assert report["kind"] == "cup"
    assert report["condition_number"] == pytest.approx(expected[-1] / expected[0], rel=1e-12)
    assert report["computed_in"] == "float64"
    assert report["parameters"]["count"] == 4
    assert "standardised features" in report["parameters"]["what"]
    assert [p["name"] for p in report["parameters"]["order"]] == ["b", "w"]
    # heavy-ball momentum 0.5, learning rate 0.2: the limit 2(1 + 0.5)/0.2 = 15
    stability = report["stability"]
    assert stability["rule"] == "heavy-ball momentum" and stability["limit"] == pytest.approx(15)
    assert stability["sharpness"] == pytest.approx(expected[-1], rel=1e-12)
    assert stability["standing"] == "stable"
    assert json.loads((run / "curvature.json").read_text()) == report
    names = sorted(p.name for p in run.iterdir() if p.name.startswith(("curvature", ".")))
    assert names == ["curvature.json"] and report["figures"] == []  # no temporary files left


def test_logistic_eigenvalues_are_those_of_jax_hessian(logistic):
    run, report = logistic
    _, _, flat, loss = _checkpoint_in_float64(run)
    with jax.enable_x64(True):
        hessian = np.asarray(jax.hessian(loss)(flat))
    expected = np.linalg.eigvalsh(hessian)
    assert report["method"]["name"] == "dense" and report["parameters"]["count"] == 31
    np.testing.assert_allclose(report["eigenvalues"]["all"], expected, rtol=1e-9, atol=1e-12)
    assert report["eigenvalues"]["largest"][0] == pytest.approx(expected[-1], rel=1e-12)
    assert report["kind"] == "cup" and min(report["eigenvalues"]["all"]) > 0
    # Nesterov momentum 0.9, learning rate 0.3: 2(1 + 0.9) / ((1 + 1.8) 0.3)
    stability = report["stability"]
    assert stability["rule"] == "Nesterov momentum"
    assert stability["limit"] == pytest.approx(3.8 / (2.8 * 0.3), rel=1e-12)


def test_adam_preconditioned_sharpness_at_the_scheduled_learning_rate(runs_dir):
    run = _train(
        runs_dir / "adam",
        "linear_regression",
        "train.steps=50",
        "data.features=[temp,price,income]",
        "optimizer.name=adam",
        f"optimizer.learning_rate={SCHEDULE}",
    )
    report = curvature(run, plots=False)
    _, state, flat, loss = _checkpoint_in_float64(run)
    adam = state.opt_state[0]  # optax.adam: (ScaleByAdamState, its learning rate's state)
    t = int(adam.count)
    nu = np.asarray(ravel_pytree(jax.tree.map(np.asarray, adam.nu))[0], np.float64)
    p = (1 - 0.9**t) * (np.sqrt(nu / (1 - 0.999**t)) + 1e-8)  # Cohen et al. 2022's P
    with jax.enable_x64(True):
        hessian = np.asarray(jax.hessian(loss)(flat))
    s = 1 / np.sqrt(p)
    expected = np.linalg.eigvalsh(s[:, None] * hessian * s[None, :])[-1]  # λ_max(P⁻¹H)
    stability = report["stability"]
    eta = 0.1 - 0.09 * 50 / 100  # the linear schedule at the checkpoint's step
    assert t == 50 and stability["step"] == 50 and stability["learning_rate_is_scheduled"]
    assert stability["learning_rate"] == pytest.approx(eta, rel=1e-6)
    assert stability["rule"] == "Adam" and stability["quantity"] == "λ_max(P⁻¹H)"
    assert stability["limit"] == pytest.approx(38 / eta, rel=1e-6)
    assert stability["sharpness"] == pytest.approx(expected, rel=1e-9)
    assert stability["sharpness_of_H"] == pytest.approx(np.linalg.eigvalsh(hessian)[-1])


# --------------------------------------------------------------------------------------------
# The mathematics on constructed cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eigenvalues", "residuals", "kind"),
    [
        ([0.5, 2.0], 0.0, "cup"),
        ([-2.0, -0.5], 0.0, "upside-down cup"),
        ([-2.0, 2.0], 0.0, "saddle"),
        ([-1e-3, 1.0], 0.0, "saddle"),
        ([0.0, 1.0], 0.0, "flat"),
        ([1e-9, 1.0], 0.0, "flat"),  # rounding on either side of zero is flat, not a saddle
        ([-1e-9, 1.0], 0.0, "flat"),
        ([-1e-14, 2.0, 2.0], 0.0, "flat"),
        ([-1e-3, 1.0], [2e-3, 0.0], "flat"),  # an error bar across the band: not decided
        ([1e-3, 1.0], [2e-3, 0.0], "flat"),
        ([-1e-3, 1.0], [1e-4, 0.0], "saddle"),
    ],
)
def test_verdicts(eigenvalues, residuals, kind):
    assert cr.verdict(eigenvalues, residuals).kind == kind


def test_the_flat_band_is_relative_to_the_largest_eigenvalue():
    assert cr.verdict([1e-4, 1.0]).kind == "cup"
    assert cr.verdict([1e-4, 1.0], rtol=1e-3).kind == "flat"
    assert cr.verdict([1e-4, 1e6]).kind == "flat"  # 1e-4 is noise beside 1e6
    reading = cr.verdict(np.array([-3e-7, 1e-7, 0.5, 2.0]), complete=True)
    assert (reading.negative, reading.flat, reading.positive) == (0, 2, 2)
    assert reading.tolerance == pytest.approx(2e-5)
    assert cr.condition_number([0.5, 2.0]) == 4.0 and cr.condition_number([0.0, 1.0]) is None


@pytest.mark.parametrize(
    ("momentum", "nesterov", "limit"),
    [
        (None, False, 2 / 0.1),
        (0.5, False, 2 * 1.5 / 0.1),
        (0.9, False, 2 * 1.9 / 0.1),
        (0.9, True, 2 * 1.9 / (2.8 * 0.1)),
    ],
)
def test_sgd_limits_are_where_optax_starts_to_diverge(momentum, nesterov, limit):
    found = cr.stability_limit("sgd", 0.1, momentum=momentum, nesterov=nesterov)
    assert found.limit == pytest.approx(limit, rel=1e-12)
    opt = optax.sgd(0.1, momentum=momentum, nesterov=nesterov)

    def final(lam: float) -> float:  # |x| after 3000 steps on f(x) = lam x^2 / 2 from x = 1
        def step(carry, _):
            x, s = carry
            u, s = opt.update(lam * x, s)
            return (x + u, s), None

        x0 = jnp.ones(())
        (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), None, length=3000)
        return float(jnp.abs(x))

    assert final(0.98 * limit) < 1e-3
    assert not final(1.02 * limit) < 1e3  # grown, or overflowed to inf or nan


def test_adam_limit_and_preconditioner_reproduce_optax():
    assert cr.stability_limit("adam", 0.001).limit == pytest.approx(38_000)
    assert cr.stability_limit("adam", 0.1, b1=0.5).limit == pytest.approx(60)
    opt, lr = optax.adam(0.01), 0.01
    params = jnp.zeros(5)
    state = opt.init(params)
    grads = jax.random.normal(jax.random.PRNGKey(0), (7, 5))
    for g in grads:
        update, state = opt.update(g, state)
    adam = state[0]
    p = cr.adam_preconditioner(np.asarray(adam.nu), int(adam.count))
    # with P frozen, Adam's step is the momentum average over P: u = -η mu / P
    np.testing.assert_allclose(update, -lr * np.asarray(adam.mu) / p, rtol=1e-5)
    with pytest.raises(ValueError, match="no stability limit"):
        cr.stability_limit("lion", 0.1)


@pytest.mark.slow  # 5 s: three Lanczos programs compile
def test_lanczos_matches_the_dense_spectrum():
    a = np.random.default_rng(1).normal(size=(60, 60))
    h = a @ a.T / 60 - 0.3 * np.eye(60)  # a saddle: eigenvalues from -0.3 to about 3.5

    def f(z):
        return 0.5 * z @ h @ z

    expected = np.linalg.eigvalsh(h)
    with jax.enable_x64(True):
        x = jnp.zeros(60)
        dense = cr.hessian_spectrum(f, x, k=3)
        lanczos = cr.hessian_spectrum(f, x, k=3, dense_max=0)
        p = np.linspace(0.5, 2.0, 60)
        by_lanczos = cr.preconditioned_sharpness(f, x, p)[0]
    s = 1 / np.sqrt(p)
    assert dense.method == "dense" and lanczos.method == "lanczos"
    np.testing.assert_allclose(dense.values, expected, atol=1e-12)
    top, bottom = cr.top_and_bottom(lanczos, 3)
    np.testing.assert_allclose(top, expected[::-1][:3], rtol=1e-8)
    np.testing.assert_allclose(bottom, expected[:1], rtol=1e-8)
    assert cr.verdict(lanczos.values, lanczos.residuals, complete=False).kind == "saddle"
    sharp = np.linalg.eigvalsh(s[:, None] * h * s[None, :])[-1]
    assert by_lanczos == pytest.approx(sharp, rel=1e-8)


def test_filter_normalized_directions_have_each_filters_norm():
    params = {"w": np.arange(12.0).reshape(3, 4) - 5, "b": np.array([3.0, -4.0]), "c": 2.0}
    d = cr.filter_normalized(jax.random.PRNGKey(0), params)
    np.testing.assert_allclose(
        np.linalg.norm(d["w"], axis=0), np.linalg.norm(params["w"], axis=0), rtol=1e-6
    )
    assert np.linalg.norm(d["b"]) == pytest.approx(5.0) and abs(float(d["c"])) == 2.0


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_cli_writes_the_files_and_prints_the_findings(cli, multi, tmp_path):
    run, _ = multi
    res = cli("curvature", run, "--out", tmp_path / "out", "-k", "2")
    assert res.code == 0, res.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == WRITTEN
    for name in WRITTEN[1:]:
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
    assert "cup: all 4 eigenvalues are positive" in res.out
    assert "2 Z^T Z / n" in res.out and "heavy-ball momentum limit 2(1+β)/η = 15" in res.out
    report = json.loads((tmp_path / "out" / "curvature.json").read_text())
    assert len(report["eigenvalues"]["largest"]) == 2
    assert res.err == ""


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_missing_or_unfinished_runs_exit_2_and_write_nothing(cli, multi, tmp_path):
    run, _ = multi
    res = cli("curvature", tmp_path / "nowhere")
    res.assert_user_error()
    assert "not found" in res.err and "mlgrad train" in res.err
    assert not (tmp_path / "nowhere").exists()

    (tmp_path / "empty").mkdir()
    res = cli("curvature", tmp_path / "empty")
    res.assert_user_error()
    assert "no config.yaml" in res.err and _listing(tmp_path / "empty") == []

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((run / "config.yaml").read_text())
    res = cli("curvature", unfinished)
    res.assert_user_error()
    assert "has not finished training" in res.err and "--resume" in res.err
    assert _listing(unfinished) == ["config.yaml"]

    (unfinished / "summary.json").write_text("{}")  # finished, but its checkpoints are gone
    res = cli("curvature", unfinished)
    res.assert_user_error()
    assert "no complete checkpoint" in res.err
    assert _listing(unfinished) == ["config.yaml", "summary.json"]

    (tmp_path / "file").write_text("")
    before = _listing(run)
    res = cli("curvature", run, "--out", tmp_path / "file")
    res.assert_user_error()
    assert "not a directory" in res.err and _listing(run) == before


def test_bad_options_exit_2(cli, tmp_path):
    cli("curvature", tmp_path, "--flat-tol", "0").assert_user_error()
    cli("curvature", tmp_path, "-k", "0").assert_user_error()
    cli("curvature").assert_user_error()


@pytest.mark.slow  # about a minute: the autoencoder's 18,760 parameters go through Lanczos
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_gets_its_files(cli, runs_dir, name):
    warmup = ["optimizer.learning_rate.warmup_steps=10"] if name == "autoencoder" else []
    run = _train(
        runs_dir / f"shipped-{name}", name, "train.steps=50", "train.eval_every=50", *warmup
    )
    res = cli("curvature", run)
    assert res.code == 0, res.err
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("curvature")) == WRITTEN
    report = json.loads((run / "curvature.json").read_text())
    assert report["kind"] in ("cup", "saddle", "flat")
    assert report["stability"]["limit"] > 0
