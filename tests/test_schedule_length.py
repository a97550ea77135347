"""Schedules that say what they mean (H, item 6): a schedule whose length is not train.steps
gets a warning; the shipped configs' schedules follow train.steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgrad.config import load_config, schedule_length_warnings

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def cosine(decay_steps):
    return {"name": "cosine_decay_schedule", "init_value": 0.1, "decay_steps": decay_steps}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_follow_their_steps(config):
    for steps in (None, 7000):
        overrides = [] if steps is None else [f"train.steps={steps}"]
        cfg = load_config(config, overrides)[0]
        assert schedule_length_warnings(cfg.optimizer, cfg.train.steps) == []


def test_the_autoencoders_schedule_follows_train_steps():
    cfg = load_config(CONFIGS[0].parent / "autoencoder.yaml", ["train.steps=30000"])[0]
    assert cfg.optimizer.learning_rate.decay_steps == 30000


def test_a_short_schedule_warns_with_the_steps_at_its_end_value():
    (text,) = schedule_length_warnings({"name": "sgd", "learning_rate": cosine(2000)}, 30000)
    assert "`optimizer.learning_rate` (cosine_decay_schedule) ends at step 2000" in text
    assert "the last 28000 steps train at its end value" in text
    assert "decay_steps: ${train.steps}" in text


def test_a_long_schedule_warns_that_it_is_cut():
    (text,) = schedule_length_warnings({"name": "sgd", "learning_rate": cosine(500)}, 300)
    assert "stopped 200 steps before its end" in text


def test_begin_and_length_add_up_and_chains_are_searched():
    linear = {"name": "linear_schedule", "init_value": 0.1, "end_value": 0.0,
              "transition_steps": 900, "transition_begin": 100}  # fmt: skip
    assert schedule_length_warnings({"name": "sgd", "learning_rate": linear}, 1000) == []
    chain = {"chain": [{"name": "clip_by_global_norm", "max_norm": 1.0},
                       {"name": "adamw", "learning_rate": cosine(10)}]}  # fmt: skip
    (text,) = schedule_length_warnings(chain, 1000)
    assert text.startswith("`optimizer.chain.1.learning_rate` (cosine_decay_schedule)")


def test_numbers_and_schedules_without_a_length_never_warn():
    assert schedule_length_warnings({"name": "sgd", "learning_rate": 0.1}, 10) == []
    decay = {"name": "exponential_decay", "init_value": 0.1, "transition_steps": 10,
             "decay_rate": 0.5}  # fmt: skip
    assert schedule_length_warnings({"name": "sgd", "learning_rate": decay}, 1000) == []
