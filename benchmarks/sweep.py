"""Benchmark: a 64-run sweep (8 learning rates x 8 seeds) as one program, against 64 ``fit`` calls.

Run from the repository root (under a minute on 2 CPU cores)::

    python benchmarks/sweep.py        # --repeats N, --batch-size B (default: the config's)

The model, data, optimizer and step count are ``configs/linear_regression.yaml``'s (the
ice-cream regression, temperature only, standardised inside the model, ``optax.sgd``, 200
full-batch steps); the learning rates are 8 values log-spaced around the config's 0.1 and the
seeds 0..7. Printed side by side, measured in one run (medians of interleaved repeats,
compilation excluded and reported separately):

* ``sweep``: ``mlgrad.training.sweep.sweep`` of all 64 runs, one compiled program;
* ``64 x fit``: 64 sequential ``mlgrad.fit`` calls, one per (seed, learning rate), each with
  the plain ``optax.sgd(lr)`` (8 optimizer objects built once, so their programs are cached);
* ``1 x fit``: one of those runs alone;

then the ratio sweep / single run (acceptance target <= 8x) and the largest relative
difference between a sweep run and the same run alone (target <= 1e-6), for params, the
final loss and the loss history, against the plain optimizer and against the same
``inject_hyperparams`` optimizer.

With ``--batch-size 8`` (mini-batches, a ragged last batch) the sweep is about 20x a single
run on a 2-core CPU (2026-11-22): drawing 64 runs' epoch orders (64 x 50 permutations, a sort
each) is 64 times one run's shuffling and takes most of the sweep's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:0] = [str(_HERE), str(_ROOT)]  # _timing, mlgrad and models from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _timing import (  # noqa: E402
    environment,
    format_seconds,
    format_table,
    paired_ratio,
    time_interleaved,
)
from omegaconf import OmegaConf  # noqa: E402

import models.linear_regression as linear_regression  # noqa: E402
from mlgrad.config import optimizer_spec  # noqa: E402
from mlgrad.data import load  # noqa: E402
from mlgrad.training import fit  # noqa: E402
from mlgrad.training.sweep import sweep  # noqa: E402

CONFIG = _ROOT / "configs" / "linear_regression.yaml"
LEARNING_RATES = [float(v) for v in np.geomspace(0.01, 0.9, 8)]
SEEDS = list(range(8))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    cfg = OmegaConf.load(CONFIG)
    d = cfg.data
    dataset = load(
        d.name,
        features=list(d.features),
        target=d.target,
        val_split=d.val_split,
    )
    model_cfg = linear_regression.Config(standardize=cfg.model.standardize)
    model = linear_regression.build(model_cfg, dataset)
    data = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train))
    steps = int(cfg.train.steps)
    batch_size = args.batch_size if args.batch_size is not None else cfg.train.batch_size
    optimizer_fn, kwargs = optimizer_spec(cfg.optimizer, steps=steps)
    kwargs.pop("learning_rate")

    grid = [(s, lr) for s in SEEDS for lr in LEARNING_RATES]  # sweep's seed-major order
    plain = {lr: optimizer_fn(learning_rate=lr, **kwargs) for lr in LEARNING_RATES}
    injected = {
        lr: optax.inject_hyperparams(optimizer_fn)(learning_rate=lr, **kwargs)
        for lr in LEARNING_RATES
    }
    starts = {}
    for seed in SEEDS:
        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        starts[seed] = (model.init(init_key), key)

    def run_sweep():
        return sweep(
            model.loss,
            model.init,
            data,
            optimizer_fn=optimizer_fn,
            optimizer_kwargs=kwargs,
            learning_rates=LEARNING_RATES,
            seeds=SEEDS,
            steps=steps,
            batch_size=batch_size,
        )

    def run_one(seed: int, lr: float, optimizers=plain):
        params, key = starts[seed]
        return fit(
            model.loss,
            params,
            data,
            optimizer=optimizers[lr],
            steps=steps,
            batch_size=batch_size,
            key=key,
        )

    def run_all():
        return [run_one(seed, lr) for seed, lr in grid]

    t0 = time.perf_counter()
    result = run_sweep()
    jax.block_until_ready(result.params)
    first_sweep = time.perf_counter() - t0
    t0 = time.perf_counter()
    solos = run_all()
    first_all = time.perf_counter() - t0
    single_seed, single_lr = grid[0]

    timings = time_interleaved(
        {
            "sweep (64 runs, one program)": lambda: run_sweep().histories,
            "64 x fit (sequential)": lambda: [r.history for r in run_all()],
            "1 x fit (single run)": lambda: run_one(single_seed, single_lr).history,
        },
        repeats=args.repeats,
        target_time=5e-3,
    )
    t_sweep, t_all, t_one = timings.values()

    # Accuracy: each sweep run against the same run alone.
    solos_injected = [run_one(seed, lr, injected) for seed, lr in grid]
    diffs = {}
    for name, runs in (("plain sgd(lr)", solos), ("inject_hyperparams", solos_injected)):
        p, f, h = 0.0, 0.0, 0.0
        for i, alone in enumerate(runs):
            for got, want in zip(
                jax.tree.leaves(result.params), jax.tree.leaves(alone.params), strict=True
            ):
                p = max(p, _rel(np.asarray(got)[i], want))
            f = max(f, _rel(result.final_losses[i], model.loss(alone.params, data)))
            h = max(h, _rel(result.histories[i], alone.history))
        diffs[name] = (p, f, h)

    rows = [
        [name, format_seconds(t.median), f"{t.median / t_one.median:.2f}x"]
        for name, t in timings.items()
    ]
    title = (
        f"Sweep of {len(grid)} runs ({len(LEARNING_RATES)} learning rates x {len(SEEDS)} "
        f"seeds): ice-cream regression, {optimizer_fn.__name__}, {steps} steps, batch_size="
        f"{batch_size}"
    )
    print("\n".join(environment()))
    print()
    print(format_table(["contender", "median time", "/ single run"], rows, title=title))
    ratio = paired_ratio(t_sweep, t_one)
    verdict = "meets" if ratio.median <= 8 else "MISSES"
    print(
        f"\nsweep / single run: {ratio.median:.2f}x (95% CI {ratio.low:.2f}-{ratio.high:.2f}); "
        f"{verdict} the target <= 8x"
    )
    print(f"sweep / 64 sequential fits: {paired_ratio(t_sweep, t_all).median:.3f}x")
    print(
        f"first call (compile + run): sweep {format_seconds(first_sweep)}, "
        f"64 x fit {format_seconds(first_all)} (8 optimizer objects: 8 programs)"
    )
    print()
    print(
        format_table(
            ["solo run's optimizer", "params", "final loss", "loss history"],
            [[name, *(f"{v:.2e}" for v in vals)] for name, vals in diffs.items()],
            title="max relative difference, sweep run vs the same run alone (target <= 1e-6)",
        )
    )
    diverged = int(result.diverged.sum())
    print(f"\ndiverged runs: {diverged}; best run: ", end="")
    best = min(result.table(), key=lambda r: np.nan_to_num(r["final_loss"], nan=np.inf))
    print(best)


if __name__ == "__main__":
    main()
