"""Optimizer sections: any optax optimizer by name, its keyword arguments checked against its
signature, learning-rate schedules, and chains of optax transformations."""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from mlgrad.config.errors import ConfigError, _fmt, _join, _suggest, _typename, is_number
from mlgrad.config.schema import MAX_SEED, MAX_STEPS
from mlgrad.config.structured import to_dict

#: Largest L-BFGS memory (``memory_size``): its state holds memory_size copies of the
#: parameters, so a larger one only exhausts memory.
MAX_MEMORY_SIZE = 1000

#: Largest magnitude of any other integer argument: optax computes with int32 step counters.
MAX_INT = 2**31 - 1

# Ranges of common optax keyword arguments (any optimizer that has them).
_KWARG_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "b1": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "b2": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "b3": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"),
    "decay": (lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
    "eps": (lambda v: v >= 0.0, "a number >= 0"),
    "eps_root": (lambda v: v >= 0.0, "a number >= 0"),
    "weight_decay": (lambda v: v >= 0.0, "a number >= 0"),
    "memory_size": (
        lambda v: 1 <= v <= MAX_MEMORY_SIZE,
        f"an integer in [1, {MAX_MEMORY_SIZE}] (L-BFGS keeps that many copies of the "
        "parameters; 5 to 20 is usual)",
    ),
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    "transition_begin": (lambda v: 0 <= v <= MAX_STEPS, f"an integer in [0, {MAX_STEPS}]"),
}


def _steps_range(name: str) -> tuple[Callable[[float], bool], str]:
    """The range of a ``*steps`` argument: a step count, at most :data:`MAX_STEPS`."""
    if name.startswith(("warmup", "end")) or name == "steps":
        return (lambda v: 0 <= v <= MAX_STEPS), f"an integer in [0, {MAX_STEPS}]"
    return (lambda v: 0 < v <= MAX_STEPS), f"an integer > 0 and <= {MAX_STEPS}"


def _float_limit(dtype: str | None) -> tuple[float, str]:
    """The largest finite value of the run's float dtype, and how messages name it."""
    import numpy as np

    name = dtype or "float64"
    return float(np.finfo(np.dtype(name)).max), name


def _check_float(value: float | int, key: str, dtype: str | None) -> float:
    """A number as a float: finite and representable in the run's dtype (``train.dtype``)."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if math.isnan(number):
        raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
    limit, name = _float_limit(dtype)
    if not abs(number) <= limit:
        if math.isinf(number) and not isinstance(value, int):
            raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
        hint = " or train.dtype=float64" if name == "float32" else ""
        raise ConfigError(
            f"`{key}` is {_fmt(value)}, which does not fit in {name} (the run's train.dtype; "
            f"its largest value is {limit:.6g}); use a smaller value{hint}.",
            key,
        )
    return number


# optax functions that take a learning_rate but are building blocks, not optimizers.
_NOT_OPTIMIZERS = frozenset({"scale_by_learning_rate", "scale_by_rprop"})


# optax functions a chain cannot name: they combine transformations given as Python objects.
_NOT_TRANSFORMATIONS = frozenset(
    {"chain", "named_chain", "multi_transform", "inject_hyperparams", "inject_stateful_hyperparams"}
)
# optax.schedules functions that do not build a schedule from plain values.
_NOT_SCHEDULES = frozenset({"inject_hyperparams", "inject_stateful_hyperparams", "join_schedules"})


def _check_keys(section: Mapping, valid: Sequence[str], prefix: str, where: str) -> None:
    for key in section:
        if not isinstance(key, str):
            raise ConfigError(
                f"`{_join(prefix, key)}`: keys must be names (strings), got {_fmt(key)} "
                f"({_typename(key)}).",
                _join(prefix, key),
            )
        if key not in valid:
            raise ConfigError(
                f"unknown key `{_join(prefix, key)}`.{_suggest(key, valid, prefix)} "
                f"Valid keys {where}: {', '.join(valid)}.",
                _join(prefix, key),
            )


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """The optax optimizers a config may name: public optax functions taking ``learning_rate``."""
    import optax

    return tuple(sorted(name for name in dir(optax) if _is_optimizer(name)))


@functools.cache
def _is_optimizer(name: str) -> bool:
    """Whether ``name`` is one of :func:`optimizer_names` (checked alone: listing them all
    inspects every optax function, a tenth of a second on a run's start)."""
    import optax

    if name.startswith("_") or name in _NOT_OPTIMIZERS or name not in dir(optax):
        return False
    fn = getattr(optax, name)
    if not inspect.isfunction(fn):
        return False
    try:
        return "learning_rate" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - no signature
        return False


class _OptimizerNames(Sequence[str]):
    """:func:`optimizer_names` as ``_single_spec`` uses them: a name is checked alone, the
    whole list is made only for an error message."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _is_optimizer(name)

    def __getitem__(self, i: Any) -> Any:
        return optimizer_names()[i]

    def __len__(self) -> int:
        return len(optimizer_names())


@functools.cache
def schedule_names() -> tuple[str, ...]:
    """The optax schedules a config may name (``optax.schedules``' schedule builders)."""
    import optax

    return tuple(
        sorted(
            n
            for n in dir(optax.schedules)
            if not n.startswith("_")
            and n not in _NOT_SCHEDULES
            and inspect.isfunction(getattr(optax.schedules, n))
        )
    )


def _kinds(annotation: Any) -> set[str]:
    """The value kinds an optax annotation allows: number, int, bool, str, none, schedule, any.

    ``ArrayLike`` (a union that includes ``bool``) counts as a number only: a config's
    ``momentum: true`` is a mistake, not 1.0.
    """
    kinds = _raw_kinds(annotation)
    return kinds - {"bool", "int"} if "number" in kinds else kinds


def _raw_kinds(annotation: Any) -> set[str]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {"any"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_raw_kinds(a) for a in args))
    if annotation is type(None):
        return {"none"}
    if annotation is bool:
        return {"bool"}
    if annotation is int:
        return {"int"}
    if annotation in (float, complex):
        return {"number"}
    if annotation is str:
        return {"str"}
    if origin is not None and getattr(origin, "__name__", "") == "Callable":
        return {"schedule"}
    if origin is not None:  # Iterable[...], Mapping[...], ...: pytrees of plain values
        return {"any"}
    if isinstance(annotation, type):
        import numpy as np

        if issubclass(annotation, np.bool_):
            return {"bool"}
        if issubclass(annotation, np.number | np.ndarray) or "Array" in annotation.__name__:
            return {"number"}
    return {"object"}  # a Python object (e.g. a GradientTransformation): not from a config


def _signature(fn: Callable) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        return inspect.signature(fn)


def _check_kwargs(
    fn: Callable,
    kwargs: Mapping,
    prefix: str,
    what: str,
    steps: int,
    skip: Sequence[str] = (),
    dtype: str | None = None,
) -> dict:
    """Checks keyword arguments of an optax function by its signature; builds schedules."""
    params = {
        n: p
        for n, p in _signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in skip
    }
    _check_keys(kwargs, [*skip, *params], prefix, f"of {what}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs]
    if missing:
        keys = ", ".join(f"`{_join(prefix, n)}`" for n in missing)
        raise ConfigError(
            f"{what} needs {keys}; give {'it' if len(missing) == 1 else 'them'} explicitly.",
            _join(prefix, missing[0]),
        )
    out = {}
    for name, value in kwargs.items():
        if name in skip:
            continue
        key = _join(prefix, name)
        kinds = _kinds(params[name].annotation)
        ranges = [_KWARG_RANGES[name]] if name in _KWARG_RANGES else []
        if name.endswith("steps"):
            ranges.insert(0, _steps_range(name))
        if is_number(value) and not (isinstance(value, float) and math.isnan(value)):
            for ok, expected in ranges:  # before the type check: it names the bound
                if not ok(value):
                    raise ConfigError(f"`{key}` must be {expected}, got {_fmt(value)}.", key)
        out[name] = _check_kwarg(value, kinds, key, steps, dtype)
    return out


def _check_kwarg(value: Any, kinds: set[str], key: str, steps: int, dtype: str | None) -> Any:
    if value is None:
        if "none" in kinds or "any" in kinds:
            return None
    elif isinstance(value, Mapping) and "schedule" in kinds:
        return _build_schedule(value, key, steps, dtype)
    elif isinstance(value, bool):
        if kinds & {"bool", "any"}:
            return value
    elif is_number(value):
        if kinds & {"number", "any", "schedule"}:
            if isinstance(value, int) and abs(value) <= MAX_INT:
                return value  # a small integer: also a valid array, PRNG seed, count...
            return _check_float(value, key, dtype)
        if "int" in kinds:
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
                if value.is_integer():
                    value = int(value)
            if isinstance(value, int):
                if abs(value) > MAX_INT:
                    raise ConfigError(
                        f"`{key}` must be an integer in [{-MAX_INT}, {MAX_INT}] (optax counts "
                        f"with 32-bit integers), got {_fmt(value)}.",
                        key,
                    )
                return value
    elif isinstance(value, str):
        if kinds & {"str", "any"}:
            return value
    elif "any" in kinds:
        return _check_plain(value, key, dtype)
    if not kinds - {"object", "none"}:
        raise ConfigError(
            f"`{key}` takes a Python object, which a config cannot give; leave it out.", key
        )
    expected = []
    if kinds & {"number", "schedule"}:
        expected.append("a number")
    if "int" in kinds:
        expected.append("an integer")
    if "bool" in kinds:
        expected.append("true or false")
    if "str" in kinds:
        expected.append("a string")
    if "schedule" in kinds:
        expected.append("a schedule mapping {name: ..., ...}")
    if "none" in kinds:
        expected.append("null")
    raise ConfigError(
        f"`{key}` must be {' or '.join(expected) or 'a plain value'}, got {_fmt(value)} "
        f"({_typename(value)}).",
        key,
    )


def _check_plain(value: Any, key: str, dtype: str | None) -> Any:
    """A list or mapping of plain values (an argument optax types loosely): every number in
    it finite and within the run's dtype (an integer beyond int32 becomes a float)."""
    if isinstance(value, Mapping):
        for k in value:
            if is_number(k):
                _check_kwarg(k, {"any"}, f"{key}.{k}", 1, dtype)
        return {k: _check_plain(v, _join(key, k), dtype) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_check_plain(v, f"{key}.{i}", dtype) for i, v in enumerate(value))
    if is_number(value):
        return _check_kwarg(value, {"any"}, key, 1, dtype)
    return value


def _build_schedule(spec: Mapping, key: str, steps: int, dtype: str | None = None) -> Callable:
    """Builds an optax schedule from ``{name: ..., kwargs}`` and checks its values: at the
    first, middle and last step, given as optax gives them (an int32 step counter), in the
    run's dtype."""
    import contextlib

    import jax
    import jax.numpy as jnp
    import optax

    names = schedule_names()
    name = spec.get("name")
    if name is None:
        raise ConfigError(
            f"`{key}` is a mapping, so it is a schedule and needs `{key}.name` (one of "
            f"{', '.join(names)}); or give a number.",
            _join(key, "name"),
        )
    if not isinstance(name, str) or name not in names:
        raise ConfigError(
            f"`{key}.name`: unknown optax schedule {_fmt(name)}."
            + _suggest(str(name), names).replace("`", "'")
            + f" Schedules: {', '.join(names)}.",
            _join(key, "name"),
        )
    fn = getattr(optax.schedules, name)
    kwargs = _check_kwargs(fn, spec, key, f"schedule {name}", steps, ("name",), dtype)
    warmup, total = kwargs.get("warmup_steps"), kwargs.get("decay_steps")
    warm = name == "warmup_cosine_decay_schedule"
    if warm and is_number(warmup) and is_number(total) and total <= warmup:
        raise ConfigError(
            f"`{key}.decay_steps` ({total:g}) must be larger than `{key}.warmup_steps` "
            f"({warmup:g}): the schedule's length counts its warm-up. When it follows the "
            f"run (decay_steps: ${{train.steps}}), train more than {warmup:g} steps or "
            f"shorten the warm-up ({key}.warmup_steps=...).",
            _join(key, "decay_steps"),
        )
    try:
        schedule = fn(**kwargs)
    except Exception as e:  # optax's own argument checks
        raise ConfigError(f"`{key}`: optax.{name} rejected its arguments: {e}", key) from None
    # A schedule is a function of the step; look at it where training will use it.
    x64 = contextlib.nullcontext() if dtype is None else jax.enable_x64(dtype == "float64")
    limit, dtype_name = _float_limit(dtype)
    for step in sorted({0, steps // 2, max(steps - 1, 0)}):
        try:
            with x64:
                v = float(schedule(jnp.asarray(min(step, MAX_STEPS), jnp.int32)))
        except Exception as e:
            raise ConfigError(
                f"`{key}`: schedule {name} fails at step {step}: {type(e).__name__}: {e}", key
            ) from None
        if not math.isfinite(v) or v < 0 or v > limit:
            raise ConfigError(
                f"`{key}`: schedule {name} gives {v:g} at step {step}; learning rates must be "
                f"finite, >= 0 and fit in {dtype_name} (the run's train.dtype).",
                key,
            )
    return schedule


def optimizer_spec(
    cfg: Mapping | DictConfig,
    *,
    steps: int = 1,
    prefix: str = "optimizer",
    dtype: str | None = None,
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The optax function and its keyword arguments (schedules built) for an optimizer section.

    ``fn(**kwargs)`` is the optimizer; ``optax.inject_hyperparams(fn)(**kwargs)`` is the same
    optimizer with its hyperparameters in the optimizer state (for sweeps).

    Args:
        cfg: ``{name: <optax optimizer>, learning_rate: <number or schedule>, **kwargs}``, or
            a chain ``{chain: [{name: <optax transformation>, **kwargs}, ...]}`` (for example
            gradient clipping before AdamW), each element checked the same way; the chain's
            learning rate is that of the element that sets one.
        steps: the run's step count, where schedules are checked for finite, non-negative
            values.
        prefix: the key of this section in error messages.
        dtype: the run's ``train.dtype`` (``float32`` or ``float64``): every number must be
            finite and fit in it, and a learning rate must not round to 0 in it. ``None``:
            finite float64 numbers.

    Returns:
        ``(fn, kwargs)``.

    Raises:
        ConfigError: unknown optimizer or schedule name (with the closest one), unknown or
            missing keyword arguments, wrong types, a learning rate that is not > 0,
            numbers that overflow the dtype, integers beyond their bounds (step counts at most
            ``MAX_STEPS``, ``memory_size`` at most ``MAX_MEMORY_SIZE``, other integers within
            int32).
    """

    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"`{prefix}` must be a mapping such as {{name: adam, learning_rate: 0.01}}, got "
            f"{_fmt(cfg)} ({_typename(cfg)}).",
            prefix,
        )
    if "chain" in cfg:
        return _chain_spec(cfg, steps=steps, prefix=prefix, dtype=dtype)
    return _single_spec(cfg, _OptimizerNames(), steps=steps, prefix=prefix, dtype=dtype)


def _single_spec(
    cfg: Mapping,
    names: Sequence[str],
    *,
    steps: int,
    prefix: str,
    what: str = "optimizer",
    dtype: str | None = None,
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """One optax function by name, its keyword arguments checked (a learning rate > 0)."""
    import optax

    name = cfg.get("name")
    if name is None:
        raise ConfigError(
            f"missing required key `{prefix}.name` (an optax {what} such as "
            f"{'sgd or adam' if what == 'optimizer' else 'clip_by_global_norm or adamw'}).",
            _join(prefix, "name"),
        )
    if not isinstance(name, str) or name not in names:
        plural = "Optimizers" if what == "optimizer" else "Transformations"
        raise ConfigError(
            f"`{prefix}.name`: unknown optax {what} {_fmt(name)}."
            + _suggest(str(name), names).replace("`", "'")
            + f" {plural}: {', '.join(names)}.",
            _join(prefix, "name"),
        )
    fn = getattr(optax, name)
    kwargs = _check_kwargs(fn, cfg, prefix, f"{what} {name}", steps, ("name",), dtype)
    lr_key = _join(prefix, "learning_rate")
    lr = cfg.get("learning_rate")
    if is_number(lr) and not lr > 0:
        raise ConfigError(
            f"`{lr_key}` must be a number > 0, got {_fmt(lr)}. Gradient descent steps against "
            "the gradient with a positive step size; try 0.01.",
            lr_key,
        )
    if is_number(lr) and dtype is not None:
        import numpy as np

        tiny = np.finfo(np.dtype(dtype)).smallest_subnormal
        if not np.dtype(dtype).type(lr) > 0:
            raise ConfigError(
                f"`{lr_key}` is {_fmt(lr)}, which is 0 in {dtype} (the run's train.dtype; its "
                f"smallest positive value is {float(tiny):.3g}); use a larger learning rate"
                + (" or train.dtype=float64." if dtype == "float32" else "."),
                lr_key,
            )
    return fn, kwargs


@functools.cache
def transformation_names() -> tuple[str, ...]:
    """What a chain's element may name: any public optax function that builds a gradient
    transformation from plain values (optimizers, clipping, weight decay, scaling, ...)."""
    import optax

    return tuple(
        n
        for n in sorted(dir(optax))
        if not n.startswith("_")
        and n not in _NOT_TRANSFORMATIONS
        and inspect.isfunction(getattr(optax, n))
        and n not in schedule_names()
    )


def _chain_spec(
    cfg: Mapping, *, steps: int, prefix: str, dtype: str | None = None
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``{chain: [{name, **kwargs}, ...]}``: ``optax.chain`` of the elements, in order.

    The returned builder takes ``learning_rate``, which replaces the learning rate of the
    element that sets one (its key: :func:`learning_rate_key`), so that sweeps can inject it.
    """
    import optax

    _check_keys(cfg, ["chain"], prefix, "of an optimizer chain")
    chain_key = _join(prefix, "chain")
    elements = cfg["chain"]
    if not isinstance(elements, list) or not elements:
        raise ConfigError(
            f"`{chain_key}` must be a non-empty list of transformations such as "
            "[{name: clip_by_global_norm, max_norm: 1.0}, {name: adamw, learning_rate: 0.001}], "
            f"got {_fmt(elements)}.",
            chain_key,
        )
    specs = []
    for i, element in enumerate(elements):
        key = f"{chain_key}.{i}"
        if not isinstance(element, Mapping):
            raise ConfigError(
                f"`{key}` must be a mapping {{name: ..., ...}}, got {_fmt(element)}.", key
            )
        fn, kwargs = _single_spec(
            element,
            transformation_names(),
            steps=steps,
            prefix=key,
            what="transformation",
            dtype=dtype,
        )
        try:
            built = fn(**kwargs)
        except Exception as e:  # optax's own argument checks
            raise ConfigError(
                f"`{key}`: optax.{fn.__name__} rejected its arguments: {e}", key
            ) from None
        if not isinstance(built, optax.GradientTransformation):
            raise ConfigError(
                f"`{key}.name`: optax.{fn.__name__} is not a gradient transformation; a chain "
                "holds optimizers and transformations such as clip_by_global_norm.",
                _join(key, "name"),
            )
        specs.append((fn, kwargs))
    index = _learning_rate_index(cfg)

    def chain(**override: Any) -> Any:
        parts = []
        for i, (fn, kwargs) in enumerate(specs):
            parts.append(fn(**({**kwargs, **override} if i == index else kwargs)))
        return optax.chain(*parts)

    lr = {} if index is None else {"learning_rate": specs[index][1]["learning_rate"]}
    return chain, lr


def _learning_rate_index(cfg: Mapping) -> int | None:
    """The chain element whose learning rate is the run's (the first that sets one)."""
    for i, element in enumerate(cfg.get("chain") or []):
        if isinstance(element, Mapping) and element.get("learning_rate") is not None:
            return i
    return None


def learning_rate_key(cfg: Mapping | DictConfig) -> str:
    """Where an optimizer section keeps the run's learning rate, below ``optimizer``:
    ``learning_rate``, or ``chain.<i>.learning_rate`` for the element of a chain that sets one.

    Example:
        >>> learning_rate_key({"chain": [{"name": "clip", "max_delta": 1.0},
        ...                              {"name": "sgd", "learning_rate": 0.1}]})
        'chain.1.learning_rate'
    """
    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    index = _learning_rate_index(cfg) if "chain" in cfg else None
    return "learning_rate" if index is None else f"chain.{index}.learning_rate"


def optimizer_label(cfg: Mapping | DictConfig) -> str:
    """A short name for an optimizer section: ``adam``, or ``clip_by_global_norm + adamw``."""
    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    if "chain" in cfg:
        return " + ".join(str(e.get("name")) for e in cfg["chain"] if isinstance(e, Mapping))
    return str(cfg.get("name"))


def learning_rate(cfg: Mapping | DictConfig) -> Any:
    """The run's learning rate (a number, a schedule mapping, or None: the default)."""
    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    node: Any = cfg
    for part in learning_rate_key(cfg).split("."):
        node = node[int(part)] if part.isdigit() else node.get(part)
        if node is None:
            return None
    return node


def build_optimizer(
    cfg: Mapping | DictConfig,
    *,
    steps: int = 1,
    inject_hyperparams: bool = False,
    dtype: str | None = None,
) -> Any:
    """The optax ``GradientTransformation`` named by an optimizer config section.

    Args:
        cfg: the ``optimizer`` section: ``{name, learning_rate, **kwargs}``.
        steps: the run's step count (schedules are checked over it).
        inject_hyperparams: wrap with ``optax.inject_hyperparams`` so that the hyperparameters
            live in the optimizer state (as sweeps over learning rates need).
        dtype: the run's ``train.dtype``; numbers must fit in it (see :func:`optimizer_spec`).

    Returns:
        An ``optax.GradientTransformation``.

    Example:
        >>> opt = build_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9})
        >>> type(opt).__name__
        'GradientTransformationExtraArgs'
    """
    import optax

    fn, kwargs = optimizer_spec(cfg, steps=steps, dtype=dtype)
    if inject_hyperparams:
        fn = optax.inject_hyperparams(fn)
    try:
        return fn(**kwargs)
    except Exception as e:  # optax's own argument checks
        name = getattr(fn, "__name__", "optimizer")
        raise ConfigError(
            f"`optimizer`: optax.{name} rejected its arguments: {e}", "optimizer"
        ) from None


def check_optimizer_on(
    optimizer: Any, params: Any, cfg: Mapping | DictConfig | None = None
) -> None:
    """Checks that an optimizer can train parameters of these shapes, without computing
    anything: ``optimizer.init`` and one ``optimizer.update`` traced abstractly
    (``jax.eval_shape``), as the training loop calls them. Some optax optimizers cannot handle
    every parameter (``sm3`` fails on a scalar such as a bias ``b``); this finds that before
    anything is written. Call it in the run's precision (``jax.enable_x64`` for float64).

    Args:
        optimizer: the optax ``GradientTransformation`` (:func:`build_optimizer`).
        params: the model's parameters, arrays or ``jax.ShapeDtypeStruct`` s (for example
            ``jax.eval_shape(model.init, jax.random.PRNGKey(0))``).
        cfg: the ``optimizer`` section it was built from; the message names its key
            (``optimizer.name``, or ``optimizer.chain.<i>.name`` for the element of a chain
            that fails) and the optax function.

    Raises:
        ConfigError: naming the key, the parameter that fails (when one alone does) and
            optax's reason.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = build_optimizer({"name": "sm3", "learning_rate": 0.1})
        >>> check_optimizer_on(opt, {"w": jnp.zeros(3), "b": jnp.zeros(())},
        ...                    {"name": "sm3", "learning_rate": 0.1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlgrad.config.errors.ConfigError: `optimizer.name`: optax.sm3 cannot train ...
    """
    import jax

    reason = _step_failure(optimizer, params)
    if reason is None:
        return
    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    key, label = "optimizer.name", "the optimizer"
    if isinstance(cfg, Mapping):
        key, label = "optimizer.name", f"optax.{cfg.get('name')}"
        if "chain" in cfg:
            key, label = "optimizer.chain", f"the chain {optimizer_label(cfg)}"
            for i, element in enumerate(cfg["chain"]):
                try:
                    part = build_optimizer({"chain": [element]})
                except ConfigError:
                    continue
                if _step_failure(part, params) is not None:
                    key, label = f"optimizer.chain.{i}.name", f"optax.{element.get('name')}"
                    break
    where = ""  # the parameter at fault, when some work alone and one does not
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    failing = [(p, leaf) for p, leaf in leaves if _step_failure(optimizer, leaf) is not None]
    if 0 < len(failing) < len(leaves):
        path, leaf = failing[0]
        shape = tuple(getattr(leaf, "shape", ()))
        kind = "a scalar, " if not shape else ""
        where = f" on the parameter `{_path_name(path)}` ({kind}shape {shape})"
    raise ConfigError(
        f"`{key}`: {label} cannot train this model's parameters: its update fails{where} "
        f"({reason}). Choose another optimizer for `{key}`, such as adam or sgd.",
        key,
    )


def _path_name(path: Sequence[Any]) -> str:
    """A pytree path as ``layers.0.w``."""
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:  # pragma: no cover - a key type of the future
            parts.append(str(entry))
    return ".".join(parts) or "(the parameters)"


def _step_failure(optimizer: Any, params: Any) -> str | None:
    """Why ``init`` and one ``update`` of ``optimizer`` on ``params`` fail (traced abstractly,
    as the training loop calls them), or None when they work and keep the shapes."""
    import jax
    import jax.numpy as jnp
    import optax

    def step(p: Any) -> tuple[Any, Any, Any]:
        state = optimizer.init(p)
        grads = jax.tree.map(jnp.zeros_like, p)
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):

            def value_fn(q: Any) -> Any:
                return sum(jnp.sum(x) for x in jax.tree.leaves(q))

            updates, new_state = optimizer.update(
                grads, state, p, value=value_fn(p), grad=grads, value_fn=value_fn
            )
        else:
            updates, new_state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, new_state

    try:
        new_params, state, new_state = jax.eval_shape(step, params)
    except Exception as e:  # whatever optax raises: the reason goes into the message
        text = " ".join(str(e).split())
        text = text if len(text) <= 200 else text[:197] + "..."
        return f"{type(e).__name__}: {text}" if text else type(e).__name__

    def shapes(tree: Any) -> tuple[Any, list[tuple[Any, Any]]]:
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, [(tuple(x.shape), x.dtype) for x in leaves]

    if shapes(new_params) != shapes(params):
        return "the updated parameters do not keep their shapes and dtypes"
    if shapes(new_state) != shapes(state):
        return "the optimizer state changes shape or dtype after a step"
    return None


# The schedules whose length is a config value: {name: (keys whose sum is the step at which
# the schedule reaches its end value)}. Others (exponential_decay's transition_steps is a
# period, piecewise schedules have no single end) have no length to compare.
_SCHEDULE_LENGTHS: dict[str, tuple[str, ...]] = {
    "cosine_decay_schedule": ("decay_steps",),
    "warmup_cosine_decay_schedule": ("decay_steps",),
    "linear_schedule": ("transition_begin", "transition_steps"),
    "polynomial_schedule": ("transition_begin", "transition_steps"),
    "cosine_onecycle_schedule": ("transition_steps",),
    "linear_onecycle_schedule": ("transition_steps",),
}


def _schedules(cfg: Mapping, prefix: str) -> list[tuple[str, Mapping]]:
    """``(key, spec)`` of every schedule mapping in an optimizer section (chains included)."""
    found = []
    for k, v in cfg.items():
        key = _join(prefix, str(k))
        if k == "chain" and isinstance(v, Sequence) and not isinstance(v, str):
            for i, element in enumerate(v):
                if isinstance(element, Mapping):
                    found += _schedules(element, _join(key, str(i)))
        elif isinstance(v, Mapping) and isinstance(v.get("name"), str):
            found.append((key, v))
    return found


def schedule_length_warnings(cfg: Mapping | DictConfig, steps: int) -> list[str]:
    """A warning for each schedule in the optimizer section ``cfg`` whose length is not the
    run's ``train.steps``: a shorter one trains its last steps at the end value, a longer one
    never reaches it. A schedule that follows the run (``decay_steps: ${train.steps}``) never
    warns.

    Example:
        >>> cfg = {"name": "adam", "learning_rate": {"name": "cosine_decay_schedule",
        ...        "init_value": 0.01, "decay_steps": 2000}}
        >>> print(schedule_length_warnings(cfg, 30000)[0])  # doctest: +NORMALIZE_WHITESPACE
        `optimizer.learning_rate` (cosine_decay_schedule) ends at step 2000 but train.steps is
        30000: the last 28000 steps train at its end value. Let the schedule follow the run
        (decay_steps: ${train.steps}) or set its length.
    """
    if isinstance(cfg, DictConfig):
        cfg = to_dict(cfg, resolve=True)
    warnings = []
    for key, spec in _schedules(cfg, "optimizer"):
        keys = _SCHEDULE_LENGTHS.get(str(spec["name"]), ())
        values = [spec.get(k, 0) for k in keys]
        if not keys or not all(is_number(v) for v in values):
            continue
        length = int(sum(values))
        if length == steps:
            continue
        effect = (
            f"the last {steps - length} steps train at its end value"
            if length < steps
            else f"it is stopped {length - steps} steps before its end"
        )
        follow = f"{keys[-1]}: ${{train.steps}}" if len(keys) == 1 else f"{keys[-1]} to match"
        warnings.append(
            f"`{key}` ({spec['name']}) ends at step {length} but train.steps is {steps}: "
            f"{effect}. Let the schedule follow the run ({follow}) or set its length."
        )
    return warnings
