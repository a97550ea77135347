"""Benchmark: the training engine ``mlgrad.fit`` against hand-written loops, and the CLI's start-up.

Run from the repository root (one to two minutes on 2 CPU cores)::

    python benchmarks/training.py     # --repeats N, --quick, --only a|b-full|b-mini|vae|e|c|d
    python benchmarks/training.py --baseline 55d9878^   # also fit as it was before issue I

It prints, measured side by side in one run on the same model, data and optimizer:

1. ``mlgrad.fit`` against (i) a hand-written plain JAX ``lax.scan`` loop in one ``jax.jit``
   (issue J's targets: fit <= 1.05x the scan on a, <= 1.00x on b full-batch, <= 0.90x on b
   mini-batch; none on vae), (ii) a ``jax.jit``-ed step called once per Python
   iteration and (iii) a PyTorch eager loop (only when ``torch`` is importable; it is not a
   project dependency, see the note printed at the end), for

   a. the ice-cream linear regression (``models.linear_regression``, temperature only,
      standardised inside the model): 10,000 full-batch steps of gradient descent,
      ``optax.sgd(0.1)`` (``configs/linear_regression.yaml``'s optimizer);
   b. the digits autoencoder (``models.autoencoder`` with ``configs/autoencoder.yaml``'s
      architecture, 64-128-8-128-64, GELU, sigmoid output) on the training split (1437 x 64),
      data ``(x, x)``, ``optax.adam(3e-3)`` (the config's peak learning rate, without its
      schedule): 100 full-batch steps, and 500 mini-batch steps with batches of 128 (epoch
      ``e`` shuffled by ``permutation(fold_in(key, e))``; the last batch of an epoch has 29
      real examples: fit pads and masks it, the hand-written JAX loops pad it and take the
      mean of the per-example errors over the real ones, PyTorch takes a smaller batch).

   vae. the digits variational autoencoder of ``examples/vae.py`` (64-128-2x8 encoder,
      8-128-64 decoder, one reparameterised sample per image) trained with a PRNG key per
      step and its two loss terms as aux: ``fit(..., with_key=True, has_aux=True,
      drop_remainder=True)``, 500 steps of batches of 128, ``optax.adam(1e-3)``; the
      hand-written loops draw the same batches (``permutation(fold_in(key, e), n)``, the
      last 29 examples of each epoch's order left out) and the same step keys
      (``fold_in(split(key)[1], t)``) and record the loss, KL and reconstruction of every
      step. (No PyTorch column: its random numbers differ.)

   Every contender starts from the same parameters, records the loss of every step and
   returns it as a host array (fit's ``history``). Contenders of a workload do the same
   arithmetic, so their final losses agree (printed as a check; PyTorch's mini-batches come
   in another order).
With ``--baseline REV`` (``benchmarks/_baseline.py``) ``mlgrad.fit`` as it was at commit REV
runs as one more contender of a, b-full and b-mini, and ``fit / fit @ REV`` is printed against
the 1.03x target of issue I.

(e) Where a step of b mini-batch goes, fit and the scan side by side: XLA's per-kernel trace
   (``benchmarks/_profile.py``) summed by kind (library matmuls, Eigen matmuls, elementwise
   fusions, gathers, copies, sorts...), the runtime's time between kernels, the kernels per
   step, the achieved GFLOP/s (XLA's FLOP count of one step over the untraced time per step)
   next to this machine's f32 matmul peak measured in the same run, and fit's costliest
   kernels.

2. The wall time of ``mlgrad train configs/linear_regression.yaml --out DIR`` as a subprocess
   (``python -m mlgrad``, the console script's entry point) from a cold start (an empty
   persistent compilation cache: ``MLGRAD_CACHE_DIR`` set to a fresh temporary directory)
   and with a warm one (the same directory, second run), next to the time of merely starting
   Python and importing ``mlgrad.cli``, ``mlgrad.runs`` and JAX, and ``mlgrad --help``, next
   to ``python -c "import jax, optax"`` (targets: warm train <= 1.5x that; ``--help`` < 0.3 s).
3. (d) A long run's overhead: 20,000 ice-cream steps with ``checkpoint_every=100`` and
   ``log_every=1`` against one checkpoint and a record every 1,000 steps (target <= 1.5x).

Times are medians of interleaved repeats (every repeat runs each contender once, in a rotating
order, so that load from other processes hits all alike); compile time is excluded and
reported separately as (first call - median). Ratios are paired per repeat: median
[25th-75th percentile]. PyTorch runs with 1 or all intra-op threads, whichever is faster on
the machine at the time (printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:0] = [str(_HERE), str(_ROOT)]  # _timing, mlgrad and models from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mlgrad.models.autoencoder as autoencoder  # noqa: E402
import mlgrad.models.linear_regression as linear_regression  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _timing import (  # noqa: E402
    Timing,
    environment,
    format_seconds,
    format_table,
    paired_ratio,
)
from mlgrad.models._common import scaling  # noqa: E402

from mlgrad.data import load  # noqa: E402
from mlgrad.training import fit  # noqa: E402

try:
    import torch
except ImportError:  # not a project dependency
    torch = None

# issue J's targets for fit / the hand-written scan (the VAE has none: issue I asks only for
# its time per step beside the plain-JAX loop)
ICE_CREAM_TARGET = 1.05
AE_FULL_TARGET = 1.00
AE_MINI_TARGET = 0.90
BASELINE_TARGET = 1.03  # issue I: fit today / fit at --baseline REV
BASELINE: dict[str, Any] = {}  # {"rev": ..., "fit": fit at that commit}, set by --baseline
ICE_CREAM_STEPS = 10_000
AE_FULL_STEPS = 100
AE_MINI_STEPS = 500
VAE_STEPS = 500
VAE_LR = 1e-3  # examples/vae.py's
BATCH = 128
AE_LR = 3e-3  # configs/autoencoder.yaml's peak learning rate, held constant here
LR_LR = 0.1  # configs/linear_regression.yaml
CLI_CONFIG = "configs/linear_regression.yaml"
CLI_TARGET = 1.5  # issue J: warm `mlgrad train CLI_CONFIG` / `python -c "import jax, optax"`
HELP_TARGET = 0.3  # seconds
LONG_TARGET = 1.5  # issue J: the long run / the sparse one

TORCH_NOTE = (
    "PyTorch is not importable, so its column is left out (it is not a dependency of "
    "mlgrad). To include it, install a CPU build into this Python environment: here "
    "`pip install torch==2.13.0`, which resolves to a CPU wheel (other version specs may "
    "download a multi-GB CUDA build)."
)

HOW_TO_READ = """\
How to read this: "time" is the median wall time of one whole training run of the given
steps (compile excluded), "per step" that divided by the steps; "compile" is the first call's
extra time (tracing, XLA compilation, first transfers). Ratios are contender / plain scan,
paired within each repeat: median [25th-75th percentile]; a spread straddling 1.00 is
machine noise. fit and the scan also get 3x more repeats of their own (cheap), so the
target's ratio rests on 4x the repeats. "final loss" is the last step's loss: equal losses
show the same arithmetic."""


# --------------------------------------------------------------------------------------------
# Timing: interleaved repeats of whole training runs
# --------------------------------------------------------------------------------------------


def time_runs(
    contenders: dict[str, Callable[[], Any]],
    repeats: int,
    focus: tuple[str, ...] = ("mlgrad.fit", "plain lax.scan"),
    focus_repeats: int = 0,
    sample_time: float = 0.02,
) -> tuple[dict[str, Timing], dict[str, float], dict[str, Any]]:
    """Times whole training runs as the median of interleaved repeats.

    The first call of each contender is timed on its own (it includes compilation). Each
    sample is then ``number`` back-to-back calls (``number`` chosen so that a sample lasts at
    least ``sample_time``; one call for runs longer than that), divided by ``number``. Every
    repeat takes one sample of each contender, in an order that rotates (and reverses every
    other cycle) so that no contender always follows the same one. This is
    ``benchmarks/_timing.time_interleaved`` without its untimed settling call per sample,
    which would double the time of the long (seconds) PyTorch and per-step loops. The
    ``focus`` contenders (the targets' ratios) then get ``focus_repeats`` more interleaved
    repeats of their own, which are cheap, so that their paired ratio is more precise.

    Returns:
      (name -> Timing, name -> first-call seconds, name -> the first call's result)
    """
    names = list(contenders)
    first, results, numbers = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = jax.block_until_ready(contenders[name]())
        first[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(contenders[name]())  # a second, warm call sizes the samples
        numbers[name] = max(1, math.ceil(sample_time / (time.perf_counter() - t0)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    rounds = [names] * repeats + [list(focus)] * focus_repeats
    for r, group in enumerate(rounds):
        k = r % len(group)
        order = group[k:] + group[:k]
        for name in order[::-1] if (r // len(group)) % 2 else order:
            fn, number = contenders[name], numbers[name]
            t0 = time.perf_counter()
            for _ in range(number):
                out = fn()
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - t0) / number)
    timings = {n: Timing(n, np.asarray(samples[n]), numbers[n]) for n in names}
    return timings, first, results


def ratio_to(numerator: Timing, base: Timing) -> Any:
    """The paired ratio over the repeats both ran (the first ones: see :func:`time_runs`)."""
    k = min(len(numerator.per_call), len(base.per_call))
    return paired_ratio(
        numerator._replace(per_call=numerator.per_call[:k]),
        base._replace(per_call=base.per_call[:k]),
    )


# --------------------------------------------------------------------------------------------
# Hand-written JAX loops
# --------------------------------------------------------------------------------------------


def plain_step(loss: Callable, opt: optax.GradientTransformation) -> Callable:
    """(params, opt_state, batch) -> (params, opt_state, loss): one optax step."""

    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def jax_full_batch(loss: Callable, opt: optax.GradientTransformation, params, data, steps: int):
    """The plain scan and the jitted-step loop for full-batch training."""
    step = plain_step(loss, opt)

    @jax.jit
    def scanned(params, data):
        def body(carry, _):
            p, s = carry
            p, s, value = step(p, s, data)
            return (p, s), value

        (p, _), losses = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
        return p, losses

    jit_step = jax.jit(step)
    jit_init = jax.jit(opt.init)

    def scan_run():
        p, losses = scanned(params, data)
        return p, np.asarray(losses)

    def loop_run():
        p, s, losses = params, jit_init(params), []
        for _ in range(steps):
            p, s, value = jit_step(p, s, data)
            losses.append(value)
        return p, np.asarray(jax.device_get(losses))

    return scan_run, loop_run


def masked_mse(apply: Callable) -> Callable:
    """The hand-written loops' autoencoder loss of a padded batch ``(xb, mask)``: the mean
    over the real examples of the per-example mean squared error."""

    def masked_loss(params, batch_):
        xb, mask = batch_
        per_example = jnp.mean((apply(params, xb) - xb) ** 2, axis=1)
        return jnp.sum(jnp.where(mask, per_example, 0.0)) / jnp.sum(mask)

    return masked_loss


def jax_mini_batch(
    apply: Callable, opt: optax.GradientTransformation, params, x, key, steps: int, batch: int
):
    """The plain scan and the jitted-step loop for shuffled mini-batches of an autoencoder.

    Epoch e's order is ``permutation(fold_in(key, e), n)`` (as in fit); the last batch of an
    epoch is padded with the epoch's first examples and masked: the loss is the mean over the
    real examples of the per-example mean squared error.
    """
    n = x.shape[0]
    per_epoch = -(-n // batch)
    pad = per_epoch * batch - n

    def order(key, epoch):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)
        return jnp.concatenate([perm, perm[:pad]]) if pad else perm

    step = plain_step(masked_mse(apply), opt)

    def batch_of(x, perm, slot):
        idx = jax.lax.dynamic_slice(perm, (slot * batch,), (batch,))
        mask = slot * batch + jnp.arange(batch) < n
        return jnp.take(x, idx, axis=0), mask

    @jax.jit
    def scanned(params, x, key):
        epochs = -(-steps // per_epoch)
        orders = jax.vmap(order, in_axes=(None, 0))(key, jnp.arange(epochs))

        def body(carry, s):
            p, o = carry
            epoch, slot = jnp.divmod(s, per_epoch)
            p, o, value = step(p, o, batch_of(x, orders[epoch], slot))
            return (p, o), value

        (p, _), losses = jax.lax.scan(body, (params, opt.init(params)), jnp.arange(steps))
        return p, losses

    jit_order = jax.jit(order)
    jit_init = jax.jit(opt.init)

    @jax.jit
    def jit_step(params, opt_state, x, perm, slot):
        return step(params, opt_state, batch_of(x, perm, slot))

    def scan_run():
        p, losses = scanned(params, x, key)
        return p, np.asarray(losses)

    def loop_run():
        p, s, losses = params, jit_init(params), []
        for i in range(steps):
            epoch, slot = divmod(i, per_epoch)
            if slot == 0:
                perm = jit_order(key, epoch)
            p, s, value = jit_step(p, s, x, perm, slot)
            losses.append(value)
        return p, np.asarray(jax.device_get(losses))

    return scan_run, loop_run


def jax_keyed_aux(
    loss: Callable, opt: optax.GradientTransformation, params, x, key, steps: int, batch: int
):
    """The plain scan and the jitted-step loop for ``loss(params, batch, key) -> (loss, aux)``
    on shuffled whole mini-batches of ``x`` (fit's ``drop_remainder=True``).

    Epoch e's order is ``permutation(fold_in(key, e), n)`` without its last ``n % batch``
    examples, and step t's key is ``fold_in(split(key)[1], t)`` (as in fit). Both record the
    loss and every aux value of every step.
    """
    n = x.shape[0]
    per_epoch = n // batch

    def order(key, epoch):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)
        return perm[: per_epoch * batch]

    def step(params, opt_state, xb, step_key):
        (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, xb, step_key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, aux

    def batch_of(x, perm, slot):
        return jnp.take(x, jax.lax.dynamic_slice(perm, (slot * batch,), (batch,)), axis=0)

    @jax.jit
    def scanned(params, x, key):
        epochs = -(-steps // per_epoch)
        orders = jax.vmap(order, in_axes=(None, 0))(key, jnp.arange(epochs))
        stream = jax.random.split(key)[1]

        def body(carry, s):
            p, o = carry
            epoch, slot = jnp.divmod(s, per_epoch)
            xb = batch_of(x, orders[epoch], slot)
            p, o, value, aux = step(p, o, xb, jax.random.fold_in(stream, s))
            return (p, o), (value, aux)

        (p, _), (losses, aux) = jax.lax.scan(body, (params, opt.init(params)), jnp.arange(steps))
        return p, losses, aux

    jit_order = jax.jit(order)
    jit_init = jax.jit(opt.init)

    @jax.jit
    def jit_step(params, opt_state, x, perm, slot, key, t):
        step_key = jax.random.fold_in(jax.random.split(key)[1], t)
        return step(params, opt_state, batch_of(x, perm, slot), step_key)

    def scan_run():
        p, losses, aux = scanned(params, x, key)
        return p, np.asarray(losses), jax.tree.map(np.asarray, aux)

    def loop_run():
        p, s, losses, auxes = params, jit_init(params), [], []
        for i in range(steps):
            epoch, slot = divmod(i, per_epoch)
            if slot == 0:
                perm = jit_order(key, epoch)
            p, s, value, aux = jit_step(p, s, x, perm, slot, key, i)
            losses.append(value)
            auxes.append(aux)
        losses, auxes = jax.device_get((losses, auxes))
        return p, np.asarray(losses), {k: np.asarray([a[k] for a in auxes]) for k in auxes[0]}

    return scan_run, loop_run


# --------------------------------------------------------------------------------------------
# PyTorch eager loops (same parameters, same arithmetic)
# --------------------------------------------------------------------------------------------


def torch_params(params) -> Any:
    return jax.tree.map(lambda v: torch.tensor(np.array(v), requires_grad=True), params)


def torch_loop(loss: Callable, make_opt: Callable, params, batches: Callable, steps: int):
    """loss(params, batch) in torch ops; batches(step) -> the batch of that step."""

    def run():
        p = torch_params(params)
        opt = make_opt(jax.tree.leaves(p))
        losses = []
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            value = loss(p, batches(i))
            value.backward()
            opt.step()
            losses.append(value.detach())
        return p, torch.stack(losses).numpy()

    return run


def torch_linear_regression(params, x, y, mean, scale, steps):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    mean_t, scale_t = torch.from_numpy(mean), torch.from_numpy(scale)

    def loss(p, batch):
        xb, yb = batch
        return torch.mean((((xb - mean_t) / scale_t) @ p["w"] + p["b"] - yb) ** 2)

    return torch_loop(
        loss, lambda leaves: torch.optim.SGD(leaves, lr=LR_LR), params, lambda i: (xt, yt), steps
    )


def torch_autoencoder(params, x, steps, batch=None, seed=0):
    """64-128-8-128-64: GELU (tanh approximation, as jax.nn.gelu), identity code, sigmoid."""
    xt = torch.from_numpy(x)
    n = x.shape[0]

    def stack(layers, h, last):
        for i in range(len(layers)):
            layer = layers[f"layer_{i}"]
            h = h @ layer["w"] + layer["b"]
            h = last(h) if i == len(layers) - 1 else torch.nn.functional.gelu(h, approximate="tanh")
        return h

    def loss(p, xb):
        code = stack(p["encoder"], xb, lambda h: h)
        return torch.mean((stack(p["decoder"], code, torch.sigmoid) - xb) ** 2)

    if batch is None:
        batches = lambda i: xt  # noqa: E731
    else:
        per_epoch = -(-n // batch)
        gen = torch.Generator().manual_seed(seed)
        perm = [None]

        def batches(i):
            epoch_slot = i % per_epoch
            if epoch_slot == 0:
                perm[0] = torch.randperm(n, generator=gen)
            return xt[perm[0][epoch_slot * batch : (epoch_slot + 1) * batch]]

    return torch_loop(
        loss, lambda leaves: torch.optim.Adam(leaves, lr=AE_LR), params, batches, steps
    )


def pick_torch_threads() -> str:
    """Sets PyTorch's intra-op threads to 1 or to the CPU count, whichever trains faster.

    On a machine that other processes keep busy, OpenMP's worker threads can spin-wait for a
    core and make PyTorch several times slower than with one thread; on a quiet machine more
    threads win. Timed on 20 full-batch autoencoder steps, best of two, each setting.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _, contenders = digits_autoencoder(20, None)
    run = contenders["PyTorch eager"]
    times = {}
    for threads in sorted({1, cpus or 1}):
        torch.set_num_threads(threads)
        run()
        times[threads] = min(_seconds(run) for _ in range(2))
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    tried = ", ".join(f"{k} thread(s): {format_seconds(v / 20)}/step" for k, v in times.items())
    return f"torch {torch.__version__}: {best} intra-op thread(s), the faster here ({tried})"


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def warm_up(loss: Callable, opt: optax.GradientTransformation, params, batch, n: int = 0) -> None:
    """Compiles and runs one plain step (and, with ``n``, a permutation of ``n``): a program
    of no contender, so that JAX's first-use costs of the model's operations (tracing and
    lowering rules, caches) are not charged to whichever contender compiles first."""
    jax.block_until_ready(jax.jit(plain_step(loss, opt))(params, opt.init(params), batch))
    if n:
        jax.block_until_ready(
            jax.jit(jax.random.permutation, static_argnums=1)(jax.random.PRNGKey(1), n)
        )


def ice_cream(steps: int) -> tuple[str, dict[str, Callable[[], Any]]]:
    data = load(name="ice_cream")
    model = linear_regression.build(linear_regression.Config(), data)
    params = model.init(None)
    batch = (jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    opt = optax.sgd(LR_LR)
    scan_run, loop_run = jax_full_batch(model.loss, opt, params, batch, steps)
    contenders = {
        "mlgrad.fit": lambda: fit(model.loss, params, batch, optimizer=opt, steps=steps),
        "plain lax.scan": scan_run,
        "jit step per iteration": loop_run,
    }
    if BASELINE:
        old = BASELINE["fit"]
        contenders[f"mlgrad.fit @ {BASELINE['rev']}"] = lambda: old(
            model.loss, params, batch, optimizer=opt, steps=steps
        )
    if torch is not None:
        mean, scale = (s.astype(np.float32) for s in scaling(data.x_train, True))
        contenders["PyTorch eager"] = torch_linear_regression(
            params, data.x_train, data.y_train, mean, scale, steps
        )
    title = f"(a) ice-cream linear regression (30 x 1), full-batch GD sgd(0.1), {steps} steps"
    warm_up(model.loss, opt, params, batch)
    return title, contenders


def digits_model() -> tuple[Any, Any]:
    """The digits data (training split 1437 x 64) and configs/autoencoder.yaml's model."""
    data = load(name="digits", val_split=0.2, split_seed=0)
    cfg = autoencoder.Config(
        encoder_sizes=[128],
        latent=8,
        activation="gelu",
        latent_activation="identity",
        output_activation="sigmoid",
    )
    return data, autoencoder.build(cfg, data)


def digits_autoencoder(steps: int, batch: int | None) -> tuple[str, dict[str, Callable]]:
    data, model = digits_model()
    key = jax.random.PRNGKey(0)
    params = model.init(key)
    x = jnp.asarray(data.x_train)
    opt = optax.adam(AE_LR)
    if batch is None:
        scan_run, loop_run = jax_full_batch(model.loss, opt, params, (x, x), steps)
        how = "full-batch"
    else:
        scan_run, loop_run = jax_mini_batch(model.apply, opt, params, x, key, steps, batch)
        how = f"mini-batch {batch} (ragged last batch)"
    contenders = {
        "mlgrad.fit": lambda: fit(
            model.loss, params, (x, x), optimizer=opt, steps=steps, batch_size=batch, key=key
        ),
        "plain lax.scan": scan_run,
        "jit step per iteration": loop_run,
    }
    if BASELINE:
        old = BASELINE["fit"]
        contenders[f"mlgrad.fit @ {BASELINE['rev']}"] = lambda: old(
            model.loss, params, (x, x), optimizer=opt, steps=steps, batch_size=batch, key=key
        )
    if torch is not None:
        contenders["PyTorch eager"] = torch_autoencoder(params, data.x_train, steps, batch)
    n, p = data.x_train.shape
    warm_up(model.loss, opt, params, (x, x), 0 if batch is None else n)
    title = (
        f"(b) digits autoencoder 64-128-8-128-64 ({n} x {p}), {how}, adam({AE_LR}), {steps} steps"
    )
    return title, contenders


def load_example(name: str) -> Any:
    """``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    path = _ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_vae(steps: int) -> tuple[str, dict[str, Callable]]:
    vae = load_example("vae")
    data = load(name="digits", val_split=0.2, split_seed=0)
    key = jax.random.PRNGKey(0)
    x = jnp.asarray(data.x_train)
    params = vae.init(key, x.shape[1])
    opt = optax.adam(VAE_LR)
    scan_run, loop_run = jax_keyed_aux(vae.loss, opt, params, x, key, steps, BATCH)
    contenders = {
        "mlgrad.fit": lambda: fit(
            vae.loss,
            params,
            x,
            optimizer=opt,
            steps=steps,
            batch_size=BATCH,
            drop_remainder=True,
            key=key,
            with_key=True,
            has_aux=True,
        ),
        "plain lax.scan": scan_run,
        "jit step per iteration": loop_run,
    }
    n, p = data.x_train.shape
    # warm JAX's first-use costs (the PRNG's normal and permutation, the model's operations)
    warm = jax.jit(jax.value_and_grad(vae.loss, has_aux=True))
    jax.block_until_ready(warm(params, x[:BATCH], key))
    jax.block_until_ready(jax.jit(jax.random.permutation, static_argnums=1)(key, n))
    title = (
        f"(vae) digits VAE 64-128-2x{vae.LATENT} / {vae.LATENT}-128-64 ({n} x {p}), "
        f"mini-batch {BATCH} (drop_remainder), a key per step, aux KL + reconstruction, "
        f"adam({VAE_LR}), {steps} steps"
    )
    return title, contenders


def final_loss(result: Any) -> float:
    history = result.history if hasattr(result, "history") else result[1]
    return float(np.asarray(history)[-1])


def run_workload(
    title: str,
    contenders: dict[str, Callable],
    steps: int,
    repeats: int,
    target: float | None,
) -> str:
    then = [n for n in contenders if n.startswith("mlgrad.fit @")]
    focus = ("mlgrad.fit", "plain lax.scan", *then)
    timings, first, results = time_runs(contenders, repeats, focus, focus_repeats=3 * repeats)
    base = timings["plain lax.scan"]
    rows = []
    for name, t in timings.items():
        ratio = "1 (baseline)" if t is base else str(ratio_to(t, base))
        rows.append(
            [
                name,
                format_seconds(t.median),
                format_seconds(t.median / steps),
                "n/a" if name == "PyTorch eager" else format_seconds(first[name] - t.median),
                ratio,
                f"{final_loss(results[name]):.7g}",
            ]
        )
    headers = ["contender", "time", "per step", "compile", "ratio to scan", "final loss"]
    table = format_table(headers, rows, title=title)
    ratio = ratio_to(timings["mlgrad.fit"], base)
    verdict = (
        "(no target)"
        if target is None
        else f"{'meets' if ratio.median <= target else 'MISSES'} the {target:.2f}x target"
    )
    text = (
        f"{table}\nfit / scan = {ratio}: {verdict} "
        f"({len(base.per_call)} paired repeats, {repeats} of them with every contender)"
    )
    old = next((t for name, t in timings.items() if name.startswith("mlgrad.fit @")), None)
    if old is not None:
        then = ratio_to(timings["mlgrad.fit"], old)
        verdict = "meets" if then.median <= BASELINE_TARGET else "MISSES"
        text += (
            f"\nfit / fit @ {BASELINE['rev']} = {then}: {verdict} the {BASELINE_TARGET:.2f}x "
            "target (issue I: the research features cost the existing configs nothing)"
        )
    return text


# --------------------------------------------------------------------------------------------
# (e) Where a step's time goes
# --------------------------------------------------------------------------------------------


def step_breakdown(steps: int, batch: int, runs: int = 3) -> str:
    """The mini-batch autoencoder's step, fit and the plain scan side by side: XLA's kernels
    summed by kind (``benchmarks/_profile.py``), the runtime between them, the achieved
    GFLOP/s (XLA's FLOP count of one step / the untraced time per step) and this machine's
    f32 matmul peak measured now."""
    from _profile import by_kind, kernel_times, kind, matmul_peak, step_flops

    _, contenders = digits_autoencoder(steps, batch)
    names = ("mlgrad.fit", "plain lax.scan")
    traced = {name: kernel_times(contenders[name], runs) for name in names}
    untraced: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(5):  # best of 5, interleaved
        for name in names:
            t0 = time.perf_counter()
            jax.block_until_ready(contenders[name]())
            untraced[name].append(time.perf_counter() - t0)
    per_step = {name: min(untraced[name]) / steps for name in names}

    data, model = digits_model()
    params = model.init(jax.random.PRNGKey(0))
    opt = optax.adam(AE_LR)
    xb = jnp.asarray(data.x_train[:batch])
    flops = step_flops(
        plain_step(masked_mse(model.apply), opt),
        params,
        opt.init(params),
        (xb, jnp.ones(batch, bool)),
    )
    peak = matmul_peak()

    def us(x: float) -> str:
        return f"{x:.1f}"

    kinds = {name: by_kind(traced[name][0]) for name in names}
    labels = sorted({k for name in names for k in kinds[name]}, key=lambda k: -kinds[names[0]][k])
    n_steps = steps * runs
    rows = [[label, *(us(kinds[name][label] / n_steps) for name in names)] for label in labels]
    sums = {name: sum(traced[name][0].values()) / n_steps for name in names}
    walls = {name: traced[name][2] / n_steps * 1e6 for name in names}
    kernels = {name: sum(traced[name][1].values()) / n_steps for name in names}
    rows += [
        ["= the kernels' sum", *(us(sums[name]) for name in names)],
        ["runtime and host between kernels (wall - sum)", *(us(walls[n] - sums[n]) for n in names)],
        ["traced wall time per step", *(us(walls[name]) for name in names)],
        ["untraced time per step (best of 5)", *(us(per_step[name] * 1e6) for name in names)],
        ["kernels per step", *(f"{kernels[name]:.1f}" for name in names)],
        [
            "achieved GFLOP/s (untraced)",
            *(f"{flops / per_step[name] / 1e9:.1f}" for name in names),
        ],
    ]
    title = (
        f"(e) where a step of (b) mini-batch {batch} goes: XLA kernels by kind, microseconds "
        f"per step ({runs} traced runs of {steps} steps)"
    )
    table = format_table(["kernel kind", *names], rows, title=title)
    top = traced["mlgrad.fit"][0].most_common(8)
    lines = [f"  {name:40s} {kind(name):38s} {t / n_steps:6.1f} us" for name, t in top]
    return (
        f"{table}\none step: {flops / 1e6:.1f} MFLOP (XLA's count); f32 matmul peak measured "
        f"now: {peak / 1e9:.1f} GFLOP/s (jnp.dot, square 256-1024); fit reaches "
        f"{flops / per_step['mlgrad.fit'] / peak:.0%} of it\n"
        "(on a CPU fit sorts the epochs' shuffles with NumPy: their time is in the runtime and "
        "host row, not a kernel)\n"
        "fit's costliest kernels:\n" + "\n".join(lines)
    )


# --------------------------------------------------------------------------------------------
# The CLI from a cold and a warm compilation cache
# --------------------------------------------------------------------------------------------


def run_subprocess(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def cli_start(pairs: int) -> str:
    """`mlgrad train` cold (fresh cache dir) then warm (same dir), ``pairs`` times."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, "-m", "mlgrad", "train", CLI_CONFIG, "--out"]
    cold, warm, imports, floor, helps = [], [], [], [], []
    work = Path(tempfile.mkdtemp(prefix="mlgrad-bench-"))
    try:
        for i in range(pairs):
            floor.append(run_subprocess([sys.executable, "-c", "import jax, optax"], env))
            helps.append(run_subprocess([sys.executable, "-m", "mlgrad", "--help"], env))
            imports.append(
                run_subprocess(
                    [sys.executable, "-c", "import jax, optax, mlgrad.cli, mlgrad.runs"], env
                )
            )
            env["MLGRAD_CACHE_DIR"] = str(work / f"cache{i}")  # fresh, empty
            cold.append(run_subprocess([*command, str(work / f"cold{i}")], env))
            warm.append(run_subprocess([*command, str(work / f"warm{i}")], env))
        entries = sum(1 for _ in (work / "cache0").rglob("*") if _.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def cell(xs: list[float]) -> str:
        spread = f" [{format_seconds(min(xs))}-{format_seconds(max(xs))}]" if len(xs) > 1 else ""
        return format_seconds(float(np.median(xs))) + spread

    rows = [
        ["python -c 'import jax, optax' (the floor)", cell(floor)],
        ["python -c 'import jax, optax, mlgrad.cli, mlgrad.runs'", cell(imports)],
        ["mlgrad --help", cell(helps)],
        ["mlgrad train, cold (empty compilation cache)", cell(cold)],
        ["mlgrad train, warm (same cache, second run)", cell(warm)],
    ]
    title = (
        f"(c) `mlgrad train {CLI_CONFIG} --out DIR` as a subprocess (python -m mlgrad), "
        f"{pairs} cold/warm pair(s)"
    )
    table = format_table(["run", "wall time (median [min-max])"], rows, title=title)
    saved = float(np.median(cold)) - float(np.median(warm))
    ratio = float(np.median(warm)) / float(np.median(floor))
    help_s = float(np.median(helps))
    return (
        f"{table}\nwarm cache saves {format_seconds(saved)} "
        f"({entries} cache entries written by the cold run)\n"
        f"warm train / import jax, optax = {ratio:.2f}x: "
        f"{'meets' if ratio <= CLI_TARGET else 'MISSES'} the {CLI_TARGET}x target; "
        f"mlgrad --help {format_seconds(help_s)}: "
        f"{'meets' if help_s < HELP_TARGET else 'MISSES'} the {HELP_TARGET} s target"
    )


def long_run(pairs: int) -> str:
    """(d) A long run's overhead: 20,000 ice-cream steps checkpointed every 100 steps and
    logged every step, against one checkpoint and a record every 1,000 steps, as
    subprocesses (figures off, a warm compilation cache), interleaved."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    work = Path(tempfile.mkdtemp(prefix="mlgrad-bench-long-"))
    env["MLGRAD_CACHE_DIR"] = str(work / "cache")
    base = [sys.executable, "-m", "mlgrad", "train", CLI_CONFIG, "train.steps=20000"]
    dense = [*base, "train.checkpoint_every=100", "train.log_every=1"]
    sparse = [*base, "train.checkpoint_every=20000", "train.log_every=1000"]
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    try:
        run_subprocess([*sparse, "--out", str(work / "warm-up"), "--no-plots", "-q"], env)
        for i in range(pairs):
            for name, argv in (("dense", dense), ("sparse", sparse))[:: 1 if i % 2 else -1]:
                out = ["--out", str(work / f"{name}{i}"), "--no-plots", "-q"]
                times[name].append(run_subprocess([*argv, *out], env))
        files = sum(1 for _ in (work / "dense0" / "checkpoints").iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dense_s, sparse_s = (float(np.median(times[k])) for k in ("dense", "sparse"))
    rows = [
        ["checkpoint_every=100, log_every=1 (200 checkpoints, 20,000 records)", dense_s],
        ["checkpoint_every=20000, log_every=1000", sparse_s],
    ]
    rows = [[what, format_seconds(t)] for what, t in rows]
    title = f"(d) `mlgrad train {CLI_CONFIG} train.steps=20000`: the overhead of a long run"
    table = format_table(["run", "wall time (median)"], rows, title=title)
    ratio = dense_s / sparse_s
    verdict = "meets" if ratio <= LONG_TARGET else "MISSES"
    return (
        f"{table}\ndense / sparse = {ratio:.2f}x: {verdict} the {LONG_TARGET}x target "
        f"({pairs} interleaved pairs; {files} checkpoints kept; saves asynchronous, one in "
        "flight at a time)"
    )


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="repeats per workload")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI start-up timings")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also time mlgrad.fit as it was at git commit REV (e.g. 55d9878^, before issue "
        "I's research features) and print today's fit / that fit",
    )
    parser.add_argument(
        "--only",
        choices=["a", "b-full", "b-mini", "vae", "e", "c", "d"],
        action="append",
        help="run only these",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 8)
    only = set(args.only or ["a", "b-full", "b-mini", "vae", "e", "c", "d"])
    if args.no_cli:
        only -= {"c", "d"}
    t_start = time.perf_counter()
    if args.baseline:
        from _baseline import load_fit

        BASELINE.update(rev=args.baseline, fit=load_fit(args.baseline, _ROOT))

    print("mlgrad training benchmark")
    for line in environment():
        print(line)
    if torch is not None:
        print(pick_torch_threads())
    print()
    print(HOW_TO_READ)
    print()
    workloads = []
    if "a" in only:
        workloads.append((lambda: ice_cream(ICE_CREAM_STEPS), ICE_CREAM_STEPS, ICE_CREAM_TARGET))
    if "b-full" in only:
        workloads.append(
            (lambda: digits_autoencoder(AE_FULL_STEPS, None), AE_FULL_STEPS, AE_FULL_TARGET)
        )
    if "b-mini" in only:
        workloads.append(
            (lambda: digits_autoencoder(AE_MINI_STEPS, BATCH), AE_MINI_STEPS, AE_MINI_TARGET)
        )
    if "vae" in only:
        workloads.append((lambda: digits_vae(VAE_STEPS), VAE_STEPS, None))
    for make, steps, target in workloads:
        title, contenders = make()
        print(run_workload(title, contenders, steps, repeats, target), flush=True)
        print()
    if "e" in only:
        print(step_breakdown(AE_MINI_STEPS, BATCH), flush=True)
        print()
    if "c" in only:
        print(cli_start(1 if args.quick else 2), flush=True)
        print()
    if "d" in only:
        print(long_run(1 if args.quick else 2), flush=True)
        print()
    if torch is None:
        print(textwrap.fill(TORCH_NOTE, width=100))
    print(f"total benchmark time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
