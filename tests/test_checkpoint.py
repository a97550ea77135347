"""Tests of the orbax checkpoint layer: round trips, keep-last-N, resume, clear errors, faults."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mlgrad.training import Checkpointer, CheckpointError, TrainState, checkpoint, fit

ADAM = optax.adam(0.05)


def mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def data(n: int = 30, d: int = 3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x @ np.arange(1.0, d + 1) + 0.5).astype(np.float32)


def fresh_state(d: int = 3, optimizer=ADAM, seed: int = 99) -> TrainState:
    """A template: right structure and shapes, values unrelated to any saved run."""
    params = {"w": jnp.zeros(d), "b": jnp.zeros(())}
    return TrainState(
        params, optimizer.init(params), jnp.asarray(0, jnp.int32), jax.random.PRNGKey(seed)
    )


def train(**kwargs):
    """Adam on mini-batches of 7 (ragged) in chunks of 5: one compiled program for all tests."""
    params = fresh_state().params
    return fit(mse, params, data(), optimizer=ADAM, batch_size=7, chunk_size=5, **kwargs)


def assert_tree_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(u).dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(u, v)


def test_round_trip_of_the_full_train_state(tmp_path):
    r = train(steps=5, key=jax.random.PRNGKey(5))
    assert checkpoint.save(tmp_path / "ckpt", r.state) == 5
    assert checkpoint.latest_step(tmp_path / "ckpt") == 5
    restored = checkpoint.restore(tmp_path / "ckpt", like=fresh_state())
    assert isinstance(restored, TrainState)
    assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
    assert_tree_equal(restored, r.state)  # params, adam mu/nu/count, step, key: bit for bit
    assert int(restored.opt_state[0].count) == 5


def test_keep_last_n_and_resume_from_a_checkpoint_is_bit_identical(tmp_path):
    """Checkpoints written from fit's callback; resuming from step 15 reproduces step 20."""
    d, key = tmp_path / "run", jax.random.PRNGKey(1)
    with Checkpointer(d, keep=2) as ckpt:
        ckpt.save(fresh_state(seed=1))  # step 0, as the CLI does; always kept
        whole = train(steps=20, key=key, callback=lambda state, *_: ckpt.save(state))
        assert ckpt.all_steps() == [0, 15, 20]  # 5 and 10 pruned by keep=2
    assert checkpoint.all_steps(d) == [0, 15, 20]
    assert_tree_equal(checkpoint.restore(d, like=fresh_state()), whole.state)
    state15 = checkpoint.restore(d, like=fresh_state(), step=15)
    assert int(state15.step) == 15
    resumed = train(steps=20, state=state15)
    assert_tree_equal(resumed.state, whole.state)


def test_shape_mismatch_names_the_arrays_and_shapes(tmp_path):
    checkpoint.save(tmp_path, fresh_state(d=3))
    with pytest.raises(ValueError, match=r"params/w: expected float32\[4\], found float32\[3\]"):
        checkpoint.restore(tmp_path, like=fresh_state(d=4))


def test_optimizer_mismatch_is_a_clear_error(tmp_path):
    checkpoint.save(tmp_path, fresh_state())
    sgd = optax.sgd(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"opt_state/0/trace/w: expected float32\[3\], not in"):
        checkpoint.restore(tmp_path, like=fresh_state(optimizer=sgd))


def test_missing_checkpoints(tmp_path):
    assert checkpoint.latest_step(tmp_path / "nothing") is None
    assert checkpoint.all_steps(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        checkpoint.restore(tmp_path, like=fresh_state())
    checkpoint.save(tmp_path, fresh_state())
    with pytest.raises(FileNotFoundError, match=r"available steps: \[0\]"):
        checkpoint.restore(tmp_path, like=fresh_state(), step=7)


def test_a_step_is_never_overwritten(tmp_path):
    checkpoint.save(tmp_path, fresh_state())
    with pytest.raises(ValueError, match="already exists"):
        checkpoint.save(tmp_path, fresh_state(seed=3))
    assert_tree_equal(checkpoint.restore(tmp_path, like=fresh_state(seed=5)), fresh_state())


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = fresh_state()._replace(step=jnp.asarray(1, jnp.int32))
    checkpoint.save(tmp_path, good, keep=1)

    def disk_full(self, directory, *args, **kwargs):
        (directory / "partial-array").write_text("half written")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full)
        with pytest.raises(CheckpointError, match=r"step 2.*No space left"):
            checkpoint.save(tmp_path, good._replace(step=jnp.asarray(2, jnp.int32)), keep=1)
    assert checkpoint.all_steps(tmp_path) == [1]
    assert_tree_equal(checkpoint.restore(tmp_path, like=fresh_state()), good)
    checkpoint.save(tmp_path, good._replace(step=jnp.asarray(2, jnp.int32)), keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]  # leftovers cleaned, 1 pruned


def test_typed_prng_keys_round_trip(tmp_path):
    state = fresh_state()._replace(key=jax.random.key(42))
    checkpoint.save(tmp_path, state)
    restored = checkpoint.restore(tmp_path, like=fresh_state()._replace(key=jax.random.key(0)))
    assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored.key), jax.random.key_data(state.key))


def test_asynchronous_saves_are_complete_once_waited_for(tmp_path):
    """Asynchronous: save returns before the write is committed; the next save, a listing,
    wait() and close() wait for it; the checkpoints equal the synchronous ones bit for bit."""
    d, key = tmp_path / "run", jax.random.PRNGKey(1)
    with Checkpointer(d, keep=2, asynchronous=True) as ckpt:
        ckpt.save(fresh_state(seed=1))
        whole = train(steps=20, key=key, callback=lambda state, *_: ckpt.save(state))
        assert ckpt.all_steps() == [0, 15, 20]  # waits for the save of step 20
    assert_tree_equal(checkpoint.restore(d, like=fresh_state()), whole.state)
    with Checkpointer(tmp_path / "other", asynchronous=True) as ckpt:
        ckpt.save(whole.state)
        ckpt.wait()
        assert checkpoint.all_steps(tmp_path / "other") == [20]  # another reader sees it


def test_an_asynchronous_failure_surfaces_at_the_wait(tmp_path, monkeypatch):
    good = fresh_state()._replace(step=jnp.asarray(1, jnp.int32))
    ckpt = Checkpointer(tmp_path, keep=1, asynchronous=True)
    ckpt.save(good)
    ckpt.wait()

    def disk_full(self, directory, *args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ocp.StandardCheckpointHandler, "async_save", disk_full)
        with pytest.raises(CheckpointError, match=r"step 2.*No space left"):
            ckpt.save(good._replace(step=jnp.asarray(2, jnp.int32)))
            ckpt.wait()
    ckpt.close()
    assert checkpoint.all_steps(tmp_path) == [1]


def test_a_failed_background_write_is_not_listed(tmp_path, monkeypatch):
    """An asynchronous save that fails in orbax's background thread (after the save call
    returned): the wait raises, and neither this writer nor a reader lists its step."""
    good = fresh_state()._replace(step=jnp.asarray(1, jnp.int32))
    ckpt = Checkpointer(tmp_path, keep=2, asynchronous=True)
    ckpt.save(good)
    ckpt.wait()

    def disk_full(self, directory):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ocp.StandardCheckpointHandler, "finalize", disk_full)
        ckpt.save(good._replace(step=jnp.asarray(2, jnp.int32)))  # returns: the write goes on
        with pytest.raises(CheckpointError, match=r"step 2.*No space left"):
            ckpt.wait()
    assert ckpt.all_steps() == [1] == checkpoint.all_steps(tmp_path)
    ckpt.save(good._replace(step=jnp.asarray(3, jnp.int32)))
    assert ckpt.all_steps() == [1, 3] == checkpoint.all_steps(tmp_path)
    ckpt.close()


def test_checkpoints_written_with_ocdbt_restore(tmp_path, monkeypatch):
    """Checkpoints written before mlgrad stored each array on its own (one OCDBT store; the
    only store of an orbax whose handler has no ``use_ocdbt`` option)."""
    state = fresh_state(seed=1)._replace(step=jnp.asarray(7, jnp.int32))
    options = inspect.signature(ocp.StandardCheckpointHandler).parameters
    ocdbt = {"use_ocdbt": True} if "use_ocdbt" in options else {}
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_handler", lambda: ocp.StandardCheckpointHandler(**ocdbt))
        checkpoint.save(tmp_path, state)
    assert (tmp_path / "7" / "default" / "manifest.ocdbt").is_file()
    assert_tree_equal(checkpoint.restore(tmp_path, like=fresh_state()), state)
