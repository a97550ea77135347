"""Tests for mlgrad.config: schema, YAML loading, overrides, optimizers, one clear error each."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import DictConfig

from mlgrad.config import (
    ConfigError,
    build_model,
    build_optimizer,
    config_diff,
    load_config,
    model_config,
    optimizer_names,
    parse_override,
    schedule_names,
    to_yaml,
)
from mlgrad.data import load

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))

BASE = """\
name: t
seed: 0
model: {name: linear_regression}
data: {name: ice_cream, features: [temp], target: cons}
optimizer: {name: sgd, learning_rate: 0.1}
train: {steps: 10}
"""


@pytest.fixture
def write(tmp_path):
    """Writes a config file (text or bytes) and returns its path."""

    def _write(content: str | bytes = BASE, name: str = "c.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
        return path

    return _write


def test_shipped_configs_are_listed():
    assert SHIPPED == [
        "autoencoder.yaml",
        "autoencoder_linear.yaml",
        "edge_of_stability.yaml",
        "linear_regression.yaml",
        "linear_regression_multi.yaml",
        "logistic.yaml",
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate_and_build(name):
    cfg, module = load_config(CONFIGS / name)
    assert isinstance(cfg, DictConfig)
    assert cfg.name == name.removesuffix(".yaml")
    data = load(
        cfg.data.name,
        features=None if cfg.data.features is None else list(cfg.data.features),
        target=cfg.data.target,
        val_split=cfg.data.val_split,
        split_seed=cfg.data.split_seed,
    )
    model = build_model(cfg, module, data)
    assert callable(model.loss)
    assert isinstance(
        build_optimizer(cfg.optimizer, steps=cfg.train.steps), optax.GradientTransformation
    )


def test_shipped_config_contents():
    lr, _ = load_config(CONFIGS / "linear_regression.yaml")
    assert (lr.data.name, list(lr.data.features), lr.data.target, lr.data.val_split) == (
        "ice_cream",
        ["temp"],
        "cons",
        0.0,
    )
    multi, _ = load_config(CONFIGS / "linear_regression_multi.yaml")
    assert list(multi.data.features) == ["temp", "price", "income"]
    logistic, _ = load_config(CONFIGS / "logistic.yaml")
    assert (logistic.data.name, logistic.data.val_split, logistic.data.split_seed) == (
        "breast_cancer",
        0.2,
        0,
    )
    ae, _ = load_config(CONFIGS / "autoencoder.yaml")
    assert (ae.data.name, ae.data.val_split, ae.data.split_seed, ae.model.latent) == (
        "digits",
        0.2,
        0,
        8,
    )
    linear, _ = load_config(CONFIGS / "autoencoder_linear.yaml")
    acts = {linear.model[k] for k in ("activation", "latent_activation", "output_activation")}
    assert acts == {"identity"} and linear.model.latent == 8


def test_defaults_are_filled_in_and_model_config_is_the_dataclass(write):
    cfg, module = load_config(write())
    assert cfg.train.batch_size is None and cfg.train.log_every > 0
    assert cfg.data.val_split == 0.0 and cfg.data.path is None
    mc = model_config(cfg, module)
    assert isinstance(mc, module.Config)
    assert "name" not in vars(mc)
    assert "standardize" in cfg.model  # the model's own fields, defaults included


def test_overrides_dotted_lists_schedules_and_floats(write):
    cfg, _ = load_config(
        write(),
        [
            "optimizer.learning_rate=0.05",
            "train.steps=1e3",
            "data.features=[temp,price]",
            "optimizer.momentum=0.9",
            "seed=3",
        ],
    )
    assert cfg.optimizer.learning_rate == 0.05
    assert cfg.train.steps == 1000 and isinstance(cfg.train.steps, int)
    assert list(cfg.data.features) == ["temp", "price"]
    assert cfg.optimizer.momentum == 0.9 and cfg.seed == 3
    cfg, _ = load_config(
        write(),
        [
            "optimizer={name: adam, learning_rate: {name: cosine_decay_schedule, "
            "init_value: 0.01, decay_steps: 10}}"
        ],
    )
    assert cfg.optimizer.name == "adam"  # a mapping override replaces the whole section
    assert "momentum" not in cfg.optimizer
    assert cfg.optimizer.learning_rate.decay_steps == 10


def test_parse_override():
    assert parse_override("data.features=[temp,price]") == ("data.features", ["temp", "price"])
    assert parse_override("optimizer.learning_rate=1e-3") == ("optimizer.learning_rate", 1e-3)
    assert parse_override("train.batch_size=null") == ("train.batch_size", None)
    assert parse_override("name=a=b") == ("name", "a=b")


def test_model_name_defaults_to_file_stem(write):
    cfg, _ = load_config(write(BASE.replace("name: t\n", ""), name="my_run.yaml"))
    assert cfg.name == "my_run"


def test_relative_data_path_resolved_against_base_dir(write, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n1,2\n2,4\n3,6\n")
    cfg, _ = load_config(write(), ["data={path: d.csv, target: y}"], base_dir=tmp_path)
    assert cfg.data.path == str(csv.resolve())


def test_interpolation_is_resolved(write):
    cfg, _ = load_config(
        write(BASE + "extra: 1\n".replace("extra: 1\n", "")),
        ["train.checkpoint_every=${train.steps}"],
    )
    assert cfg.train.checkpoint_every == 10


# ---------------------------------------------------------------------------------------------
# every mistake: one ConfigError naming the full key (and the closest valid one)

# (overrides, key named in the message, other fragments the message must contain)
BAD_OVERRIDES = [
    (["train.stepz=5"], "train.stepz", ["did you mean `train.steps`?"]),
    (["trian.steps=5"], "trian", ["did you mean `train`?"]),
    (["optimizer.momentun=0.9"], "optimizer.momentun", ["did you mean `optimizer.momentum`?"]),
    (["model.standardise=true"], "model.standardise", ["did you mean `model.standardize`?"]),
    (["data.featurs=[temp]"], "data.featurs", ["did you mean `data.features`?"]),
    (["train.steps=abc"], "train.steps", ["integer", "'abc'"]),
    (["train.steps=1.5"], "train.steps", ["integer", "1.5"]),
    (["train.steps=true"], "train.steps", ["integer"]),
    (["train.batch_size=[1]"], "train.batch_size", ["integer"]),
    (["data.val_split=abc"], "data.val_split", ["number"]),
    (["data.features=temp"], "data.features", ["list of strings"]),
    (["model.standardize=maybe"], "model.standardize", ["boolean"]),
    (["optimizer.nesterov=1"], "optimizer.nesterov", ["true or false"]),
    (["optimizer.momentum=fast"], "optimizer.momentum", ["number", "'fast'"]),
    (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate", ["> 0", "-0.1"]),
    (["optimizer.learning_rate=0"], "optimizer.learning_rate", ["> 0"]),
    (["optimizer.learning_rate=.nan"], "optimizer.learning_rate", ["finite"]),
    (["optimizer.momentum=1.5"], "optimizer.momentum", ["[0, 1)"]),
    (["train.steps=0"], "train.steps", ["[1,", "got 0"]),
    (["train.steps=-5"], "train.steps", ["got -5"]),
    (["train.steps=1e12"], "train.steps", ["2147483647"]),
    (["train.batch_size=0"], "train.batch_size", ["> 0"]),
    (["train.log_every=0"], "train.log_every", ["> 0"]),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints", ["> 0"]),
    (["data.val_split=1"], "data.val_split", ["[0, 1)"]),
    (["data.val_split=-0.1"], "data.val_split", ["[0, 1)"]),
    (["seed=-1"], "seed", ["[0, 4294967295]"]),
    (["name=a/b"], "name", ["run name"]),
    (["model.name=linear_regresion"], "model.name", ["did you mean 'linear_regression'?"]),
    (["model.name=nosuchpkg.model"], "model.name", ["unknown model"]),
    (["optimizer.name=adamm"], "optimizer.name", ["did you mean 'adam'?"]),
    (["optimizer.name=7"], "optimizer.name", ["unknown optax optimizer"]),
    (
        ["optimizer.learning_rate={name: cosine_decay_schedul, init_value: 0.1, decay_steps: 9}"],
        "optimizer.learning_rate.name",
        ["did you mean 'cosine_decay_schedule'?"],
    ),
    (
        ["optimizer.learning_rate={name: cosine_decay_schedule, init_value: 0.1}"],
        "optimizer.learning_rate.decay_steps",
        ["give it explicitly"],
    ),
    (
        ["optimizer.learning_rate={name: cosine_decay_schedule, init_value: 0.1, decay_step: 9}"],
        "optimizer.learning_rate.decay_step",
        ["did you mean `optimizer.learning_rate.decay_steps`?"],
    ),
    (
        ["optimizer.learning_rate={name: cosine_decay_schedule, init_value: 0.1, decay_steps: 0}"],
        "optimizer.learning_rate.decay_steps",
        ["> 0"],
    ),
    (
        [
            "optimizer.learning_rate={name: linear_schedule, init_value: 0.1, end_value: -1, "
            "transition_steps: 5}"
        ],
        "optimizer.learning_rate",
        [">= 0"],
    ),
    (["optimizer.learning_rate={init_value: 0.1}"], "optimizer.learning_rate.name", ["schedule"]),
    (["optimizer={name: adam}"], "optimizer.learning_rate", ["give it explicitly"]),
    (["optimizer={name: lbfgs, linesearch: zoom}"], "optimizer.linesearch", ["Python object"]),
    (["optimizer=5"], "optimizer", ["mapping"]),
    (["train=5"], "train", ["mapping"]),
    (["model=[1]"], "model", ["mapping"]),
    (["data.name=ice_crem"], "data.name", ["did you mean 'ice_cream'?"]),
    (["data.path=x.csv"], "data.path", ["x.csv", "not found"]),  # replaces data.name
    (["data={path: missing.csv, target: y}"], "data.path", ["missing.csv", "not found"]),
    (["data={path: c.yaml, target: y}"], "data.path", [".csv"]),
    (["data={name: null}"], "data", ["exactly one of"]),
    (["data.features=[]"], "data.features", ["empty"]),
    (["data.features=[temp,temp]"], "data.features", ["more than once"]),
    (["train.steps.x=4"], "train.steps", ["not a mapping"]),
    (["train.checkpoint_every=${train.nope}"], "train.checkpoint_every", ["nope"]),
]


@pytest.mark.parametrize(
    ("overrides", "key", "fragments"),
    BAD_OVERRIDES,
    ids=[" ".join(c[0])[:60] for c in BAD_OVERRIDES],
)
def test_bad_overrides_name_the_full_key(write, overrides, key, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths resolve here
    with pytest.raises(ConfigError) as info:
        load_config(write(), overrides)
    msg = str(info.value)
    assert info.value.key == key
    assert f"`{key}" in msg  # `data` for a conflict names `data.name` and `data.path`
    for fragment in fragments:
        assert fragment.lower() in msg.lower(), msg
    assert "\n" not in msg  # one paragraph
    assert msg.startswith(f"override '{overrides[-1]}'") or msg.startswith(str(write())), msg


# (file content, fragments of the message)
BAD_FILES = [
    ("", ["is empty"]),
    ("# only a comment\n", ["is empty"]),
    ("- 1\n- 2\n", ["mapping", "top level", "list"]),
    ("42\n", ["mapping", "integer"]),
    ("just a string\n", ["mapping", "string"]),
    ("a: [1\n", ["not valid YAML", "line"]),
    ("a: 1\na: 2\n", ["not valid YAML", "duplicate key"]),
    ("a: !!python/object:os.system {}\n", ["not valid YAML"]),
    (b"name: caf\xe9\n", ["not UTF-8", "0xe9"]),
    (BASE + "extra: 1\n", ["unknown key `extra`"]),
    (BASE + "1: 2\n", ["keys must be names"]),
    (BASE.replace("model: {name: linear_regression}\n", ""), ["missing required section `model`"]),
    (
        BASE.replace("model: {name: linear_regression}", "model: {standardize: true}"),
        ["missing required key `model.name`"],
    ),
    (
        BASE.replace("optimizer: {name: sgd, learning_rate: 0.1}\n", ""),
        ["missing required section `optimizer`"],
    ),
    (
        BASE.replace("data: {name: ice_cream, features: [temp], target: cons}\n", ""),
        ["missing required section `data`"],
    ),
]


@pytest.mark.parametrize(
    ("content", "fragments"), BAD_FILES, ids=[repr(c[0])[:40] for c in BAD_FILES]
)
def test_bad_files_one_clear_error(write, content, fragments):
    path = write(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment.lower() in msg.lower(), msg


def test_missing_config_file_suggests_a_neighbour(tmp_path):
    (tmp_path / "logistic.yaml").write_text(BASE)
    with pytest.raises(ConfigError, match=r"not found\. Did you mean 'logistic.yaml'\?"):
        load_config(tmp_path / "logistc.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"not of the form key=value"):
        load_config(CONFIGS / "linear_regression.yaml", ["train.steps"])
    with pytest.raises(ConfigError, match=r"not a dotted key"):
        load_config(CONFIGS / "linear_regression.yaml", ["train..steps=3"])
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(CONFIGS / "linear_regression.yaml", ["data.features=[temp"])


def test_model_errors_from_build_name_the_field():
    cfg, module = load_config(CONFIGS / "logistic.yaml", ["model.l2=-1"])
    data = load("breast_cancer", val_split=0.2, split_seed=0)
    with pytest.raises(ConfigError) as info:
        build_model(cfg, module, data)
    assert info.value.key == "model.l2" and "`model.l2`" in str(info.value)
    cfg, module = load_config(CONFIGS / "autoencoder.yaml", ["model.activation=tanhh"])
    with pytest.raises(ConfigError) as info:
        build_model(cfg, module, load("digits", val_split=0.2, split_seed=0))
    assert info.value.key == "model.activation" and "'tanh'" in str(info.value)


def test_user_model_by_module_path(write, tmp_path, monkeypatch):
    pkg = tmp_path / "mymodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(
        textwrap.dedent("""\
        import dataclasses
        from typing import Literal

        @dataclasses.dataclass
        class Config:
            width: int = 4
            act: Literal["tanh", "relu"] = "tanh"
            sizes: list[int] = dataclasses.field(default_factory=lambda: [2, 3])

        def build(cfg, data):
            raise NotImplementedError
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, module = load_config(write(), ["model={name: mymodels.tiny, width: 8}"])
    assert module.__name__ == "mymodels.tiny"
    assert model_config(cfg, module) == module.Config(width=8)
    with pytest.raises(ConfigError, match=r"`model.act` must be one of tanh, relu.*'tanh'"):
        load_config(write(), ["model={name: mymodels.tiny, act: tanhh}"])
    with pytest.raises(ConfigError, match=r"`model.sizes\[1\]` must be an integer"):
        load_config(write(), ["model={name: mymodels.tiny, sizes: [1, x]}"])


# ---------------------------------------------------------------------------------------------
# optimizers


def test_optimizer_and_schedule_names():
    assert {"sgd", "adam", "adamw", "lbfgs", "rmsprop"} <= set(optimizer_names())
    assert "scale_by_learning_rate" not in optimizer_names()
    assert {"cosine_decay_schedule", "warmup_cosine_decay_schedule", "exponential_decay"} <= set(
        schedule_names()
    )
    assert "join_schedules" not in schedule_names()


def _updates(opt, steps=3):
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    state = opt.init(params)
    out = []
    for i in range(steps):
        grads = {"w": jnp.array([0.3, -0.1, 0.2]) * (i + 1)}
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params["w"]))
    return np.stack(out)


@pytest.mark.parametrize(
    ("section", "reference"),
    [
        (
            {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
            lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
        ),
        (
            {"name": "adamw", "learning_rate": 0.01, "b1": 0.8, "weight_decay": 0.1},
            lambda: optax.adamw(0.01, b1=0.8, weight_decay=0.1),
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "name": "warmup_cosine_decay_schedule",
                    "init_value": 0.0,
                    "peak_value": 0.1,
                    "warmup_steps": 1,
                    "decay_steps": 3,
                },
            },
            lambda: optax.adam(optax.warmup_cosine_decay_schedule(0.0, 0.1, 1, 3)),
        ),
    ],
)
def test_build_optimizer_equals_optax(section, reference):
    np.testing.assert_array_equal(
        _updates(build_optimizer(section, steps=3)), _updates(reference())
    )


def test_build_optimizer_inject_hyperparams():
    opt = build_optimizer({"name": "sgd", "learning_rate": 0.1}, inject_hyperparams=True)
    state = opt.init({"w": jnp.zeros(2)})
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1)
    np.testing.assert_allclose(_updates(opt), _updates(optax.sgd(0.1)), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# comparing and printing


def test_config_diff_and_yaml_round_trip(write, tmp_path):
    a, _ = load_config(write())
    b, _ = load_config(write(), ["train.steps=20", "optimizer.momentum=0.5"])
    assert config_diff(a, b) == ["optimizer.momentum", "train.steps"]
    assert config_diff(a, a) == []
    saved = tmp_path / "saved.yaml"
    saved.write_text(to_yaml(b))
    c, _ = load_config(saved)
    assert config_diff(b, c) == []


def test_loading_does_not_touch_jax_config(write):
    before = (jax.config.jax_enable_x64, jax.config.jax_compilation_cache_dir)
    load_config(write())
    assert (jax.config.jax_enable_x64, jax.config.jax_compilation_cache_dir) == before


# ---------------------------------------------------------------------------------------------
# fuzzing: anything typed by hand ends in a ConfigError or a valid config, never another error

_FUZZ_KEYS = [
    "name",
    "seed",
    "model",
    "model.name",
    "model.standardize",
    "data",
    "data.name",
    "data.path",
    "data.features",
    "data.val_split",
    "optimizer",
    "optimizer.name",
    "optimizer.learning_rate",
    "optimizer.momentum",
    "optimizer.learning_rate.name",
    "optimizer.learning_rate.decay_steps",
    "train",
    "train.steps",
    "train.batch_size",
    "x.y",
]
_FUZZ_VALUES = [
    "",
    "null",
    "0",
    "-1",
    "1e400",
    ".nan",
    "1e-3",
    "true",
    "[1,2]",
    "[temp]",
    "[]",
    "{}",
    "{name: cosine_decay_schedule, init_value: 0.1, decay_steps: 5}",
    "abc",
    "${nope}",
    "${train.steps}",
    "!!binary aGk=",
    "2001-01-01",
    "99999999999999999999",
    "{1: 2}",
    "*a",
    "[[[]]]",
    ": :",
    "'open",
    "- a",
]


def test_fuzzed_configs_end_in_a_config_error_or_a_valid_config(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = (CONFIGS / "linear_regression.yaml").read_text()
    path = tmp_path / "fuzz.yaml"
    value = st.one_of(st.sampled_from(_FUZZ_VALUES), st.text(max_size=10))
    override = st.builds("{}={}".format, st.sampled_from(_FUZZ_KEYS), value)
    content = st.one_of(st.just(base), st.text(max_size=60), st.binary(max_size=30))

    @settings(
        max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.lists(override, max_size=3), content)
    def check(overrides, text):
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_config(path, overrides)
        except ConfigError as e:
            assert str(e).strip() and "\n" not in str(e).strip()

    check()


# ---------------------------------------------------------------------------------------------
# optimizer chains

CHAIN = [
    "optimizer={chain: [{name: clip_by_global_norm, max_norm: 1.0}, "
    "{name: adamw, learning_rate: 0.05, weight_decay: 0.001}]}"
]


def test_a_chain_with_clipping_equals_the_same_chain_built_by_hand_step_for_step(write):
    """Gradient clipping before AdamW from a config, against optax.chain written by hand and a
    plain optax loop (no mlgrad.fit): the same loss at every step, the same parameters."""
    from mlgrad import fit
    from mlgrad.config import learning_rate, learning_rate_key, optimizer_label

    cfg, module = load_config(write(), CHAIN)
    assert optimizer_label(cfg.optimizer) == "clip_by_global_norm + adamw"
    assert learning_rate_key(cfg.optimizer) == "chain.1.learning_rate"
    assert learning_rate(cfg.optimizer) == 0.05
    data = load("ice_cream")
    model = build_model(cfg, module, data)
    batch = (jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    params = model.init(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda p: p + 3.0, params)  # far away: the clipping is active
    result = fit(model.loss, params, batch, optimizer=build_optimizer(cfg.optimizer), steps=40)

    by_hand = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.05, weight_decay=0.001))
    state, p, losses, clipped = by_hand.init(params), params, [], 0
    for _ in range(40):
        loss, grads = jax.value_and_grad(model.loss)(p, batch)
        norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
        clipped += norm > 1.0
        updates, state = by_hand.update(grads, state, p)
        p, losses = optax.apply_updates(p, updates), [*losses, float(loss)]
    assert clipped >= 5  # the clipping mattered
    np.testing.assert_allclose(np.asarray(result.history), losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_a_chain_takes_schedules_and_index_overrides(write):
    cfg, _ = load_config(
        write(),
        [
            *CHAIN,
            "optimizer.chain.1.learning_rate={name: cosine_decay_schedule, init_value: 0.1, "
            "decay_steps: 10}",
            "optimizer.chain.0.max_norm=2.5",
        ],
    )
    assert cfg.optimizer.chain[0].max_norm == 2.5
    assert cfg.optimizer.chain[1].learning_rate.name == "cosine_decay_schedule"
    assert isinstance(build_optimizer(cfg.optimizer, steps=10), optax.GradientTransformation)


BAD_CHAINS = [
    (["optimizer.chain.0.name=clip_by_global_nrm"], "optimizer.chain.0.name", ["did you mean"]),
    (
        ["optimizer.chain.0.max_nrom=1"],
        "optimizer.chain.0.max_nrom",
        ["`optimizer.chain.0.max_norm`"],
    ),
    (["optimizer.chain.1.learning_rate=-1"], "optimizer.chain.1.learning_rate", ["> 0"]),
    (["optimizer.chain.1.weight_decay=-1"], "optimizer.chain.1.weight_decay", [">= 0"]),
    (["optimizer.chain.5.max_norm=1"], "optimizer.chain.5", ["has 2 items"]),
    (["optimizer.chain=[]"], "optimizer.chain", ["non-empty list"]),
    (["optimizer.chain=[5]"], "optimizer.chain.0", ["mapping"]),
    (["optimizer.chain=[{name: l2_loss}]"], "optimizer.chain.0.predictions", ["explicitly"]),
    (["optimizer.name=adam"], "optimizer.name", ["unknown key", "chain"]),
]


@pytest.mark.parametrize(("overrides", "key", "fragments"), BAD_CHAINS)
def test_bad_chains_name_the_element_and_key(write, overrides, key, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(write(), [*CHAIN, *overrides])
    assert info.value.key == key, str(info.value)
    for fragment in fragments:
        assert fragment.lower() in str(info.value).lower(), str(info.value)
