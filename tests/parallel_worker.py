"""Run by tests/test_parallel.py in a subprocess with several (forced) host CPU devices.

Trains small least-squares problems with ``fit`` on every device (data parallel) and on one
device, in float64, and prints one JSON object: per case the final params and loss
histories of both runs, and how the batch was split across devices inside the compiled loss;
then the same for two sweeps (runs split across the devices against one device).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/parallel_worker.py
"""

from __future__ import annotations

import json

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mlgrad.training import fit, sweep  # noqa: E402

# (examples, batch size): full batches that divide evenly or not across 4 devices, mini-batches
# that divide, that do not (padded slots), smaller than the device count, and a ragged epoch.
CASES = [(36, None), (37, None), (37, 8), (37, 10), (37, 3), (40, 12)]

seen: list[str] = []


def loss_fn(params, batch):
    x, y = batch
    # How XLA's partitioner placed the batch: split (not replicated) across how many devices.
    jax.debug.inspect_array_sharding(
        x, callback=lambda s: seen.append([len(s.device_set), not s.is_fully_replicated])
    )
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def main() -> None:
    rng = np.random.default_rng(0)
    out = {"devices": len(jax.devices()), "cases": []}
    for n, batch_size in CASES:
        x = rng.normal(size=(n, 3))
        y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=n)
        params = {"w": np.zeros(3), "b": np.zeros(())}
        runs = {}
        for devices in ("auto", 1):
            seen.clear()
            r = fit(
                loss_fn,
                params,
                (x, y),
                optimizer=optax.adam(0.05),
                steps=40,
                batch_size=batch_size,
                key=jax.random.PRNGKey(3),
                val_data=(x[:5], y[:5]),
                eval_every=20,
                devices=devices,
            )
            if devices == "auto":
                parallel_state = r.state
            runs[str(devices)] = {
                "w": np.asarray(r.params["w"]).tolist(),
                "b": float(r.params["b"]),
                "history": r.history.tolist(),
                "val": r.val_history.tolist(),
                "params_devices": len(r.params["w"].sharding.device_set),
                "params_replicated": bool(r.params["w"].sharding.is_fully_replicated),
                "batch_split": seen[:],  # [devices, split?] per compiled use of the loss
            }
        out["cases"].append({"n": n, "batch_size": batch_size, "runs": runs})
    # The state of the last data-parallel run, continued on one device, is gathered there.
    more = fit(
        loss_fn, None, (x, y), optimizer=optax.adam(0.05), steps=50, state=parallel_state, devices=1
    )
    out["continued_on_one_device"] = [
        len(parallel_state.params["w"].sharding.device_set),
        len(more.params["w"].sharding.device_set),
    ]
    out["sweeps"] = [_sweeps(x, y, batch_size) for batch_size in (None, 8)]
    print(json.dumps(out))


def _sweeps(x, y, batch_size):
    """A sweep of 2 seeds x 4 learning rates with its 8 runs split across the devices, and the
    same sweep on one device."""

    def init(key):
        return {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}

    def loss(params, batch):
        # How XLA placed the runs' parameters (the run axis, under the sweep's vmap).
        jax.debug.inspect_array_sharding(
            params["w"],
            callback=lambda s: seen.append([len(s.device_set), not s.is_fully_replicated]),
        )
        return jnp.mean((batch[0] @ params["w"] + params["b"] - batch[1]) ** 2)

    result = {}
    for devices in ("auto", 1):
        seen.clear()
        r = sweep(
            loss,
            init,
            (x, y),
            optimizer_fn=optax.sgd,
            learning_rates=[0.01, 0.03, 0.1, 0.3],
            seeds=[0, 1],
            steps=30,
            batch_size=batch_size,
            devices=devices,
        )
        w = r.params["w"]
        result[str(devices)] = {
            "histories": r.histories.tolist(),
            "w": np.asarray(w).tolist(),
            "devices": len(w.sharding.device_set),
            "replicated": w.sharding.is_fully_replicated,
            "runs_split": seen[:],  # [devices, split?] of the runs' params in the loss
        }
    return result


if __name__ == "__main__":
    main()
