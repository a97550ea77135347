"""Run configs: a typed schema, YAML loading, dotted overrides, and one clear error per mistake.

A run config names a model, a data set, an optax optimizer (with an optional schedule) and the
training settings::

    name: linear_regression          # run name (default: the file's stem)
    seed: 0                          # PRNG seed of the initial parameters and the batch order
    model: {name: linear_regression} # + the model module's own Config fields
    data: {name: ice_cream, features: [temp], target: cons, val_split: 0.0, split_seed: 0}
    optimizer:
      name: sgd                      # any optax optimizer: sgd, adam, adamw, lbfgs, ...
      learning_rate: 0.1             # or a schedule: {name: cosine_decay_schedule,
                                     #                 init_value: 0.1, decay_steps: 1000}
      momentum: 0.9                  # other keys: keyword arguments of optax.<name>
    train: {steps: 1000, batch_size: null, eval_every: 100, checkpoint_every: 1000,
            keep_checkpoints: 3, log_every: 10}

:func:`load_config` reads the YAML file, applies ``key=value`` overrides
(``optimizer.learning_rate=0.05 data.features=[temp,price]``), validates everything against
the schema (the ``model`` section against the chosen model module's own ``Config`` dataclass,
the optimizer keys against the optax function's signature), and returns an OmegaConf
``DictConfig``. Every mistake raises :class:`ConfigError` (a ``ValueError``) with one message
that names the full dotted key, the value, what was expected and, for a misspelling, the
closest valid name. OmegaConf's own exceptions never escape.

Validating imports the model module named in the config: a dotted path (``mypkg.mymodel``)
runs that module's code, so name only modules you trust.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "ConfigError",
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "config_diff",
    "load_config",
    "model_config",
    "optimizer_names",
    "optimizer_spec",
    "parse_override",
    "read_config_file",
    "schedule_names",
    "to_yaml",
    "validate_config",
]

#: Largest step count (the engine's step counter is an int32).
MAX_STEPS = 2**31 - 1
#: PRNG seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A config mistake: the message names the full dotted key, the value and what to do.

    Attributes:
        key: the full dotted key (``"optimizer.learning_rate"``), or ``""`` for the file.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------
# the schema


@dataclasses.dataclass
class DataConfig:
    """Where the data comes from: a built-in data set (``name``) or a CSV/NPZ file (``path``)."""

    name: str | None = None
    path: str | None = None
    features: list[str] | None = None
    target: str | None = None
    val_split: float = 0.0
    split_seed: int = 0


@dataclasses.dataclass
class TrainConfig:
    """Training loop settings (all counts are optimizer steps)."""

    steps: int = 1000
    batch_size: int | None = None
    eval_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    # Where to train: "auto" (every device JAX sees; data parallel when there are several) or
    # a number N (the first N devices). Any: a str-or-int union that OmegaConf can hold.
    devices: Any = "auto"


@dataclasses.dataclass
class RunConfig:
    """The whole run. ``model`` and ``optimizer`` are open mappings, validated separately."""

    name: str = ""
    seed: int = 0
    model: Any = dataclasses.field(default_factory=dict)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: Any = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


# (full key, predicate on the value, what it must be). Checked after the types.
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    ("data.val_split", lambda v: 0.0 <= v < 1.0, "a number in [0, 1) (0 = no validation split)"),
    ("data.split_seed", lambda v: 0 <= v <= MAX_SEED, f"an integer in [0, {MAX_SEED}]"),
    ("train.steps", lambda v: 0 < v <= MAX_STEPS, f"an integer in [1, {MAX_STEPS}]"),
    ("train.batch_size", lambda v: v is None or v > 0, "null (full batch) or an integer > 0"),
    ("train.eval_every", lambda v: v > 0, "an integer > 0"),
    ("train.checkpoint_every", lambda v: v > 0, "an integer > 0"),
    ("train.keep_checkpoints", lambda v: v > 0, "an integer > 0"),
    ("train.log_every", lambda v: v > 0, "an integer > 0"),
    (
        "train.devices",
        lambda v: v == "auto" or (type(v) is int and v > 0),
        "auto (every device) or a number of devices > 0",
    ),
)

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

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
    "memory_size": (lambda v: v >= 1, "an integer >= 1"),
}

# optax functions that take a learning_rate but are building blocks, not optimizers.
_NOT_OPTIMIZERS = frozenset({"scale_by_learning_rate", "scale_by_rprop"})
# optax.schedules functions that do not build a schedule from plain values.
_NOT_SCHEDULES = frozenset({"inject_hyperparams", "inject_stateful_hyperparams", "join_schedules"})


# ---------------------------------------------------------------------------------------------
# small helpers


def _fmt(value: Any) -> str:
    """A value as the user wrote it (YAML-ish), shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typename(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _suggest(word: str, options: Sequence[str], prefix: str = "") -> str:
    """' Did you mean `prefix.x`?' for the closest option, or ''."""
    match = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" Did you mean `{_join(prefix, match[0])}`?" if match else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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


# ---------------------------------------------------------------------------------------------
# type checking of plain values against dataclass annotations


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; returns it normalised (ints to floats).

    Understands the plain types of a structured config: bool, int, float, str, Optional/Union,
    list/tuple/Sequence, dict/Mapping, Literal, Enum, nested dataclasses and Any. Anything else
    is left to OmegaConf.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check_value(value, option, key)
            except ConfigError as e:
                errors.append(e)
        if len(options) == 1:
            raise errors[0]
        expected = " or ".join(_describe(a) for a in args)
        raise ConfigError(
            f"`{key}` must be {expected}, got {_fmt(value)} ({_typename(value)}).", key
        )
    if dataclasses.is_dataclass(tp):
        return _check_dataclass(value, tp, key)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        choices = [str(a) for a in args]
        raise ConfigError(
            f"`{key}` must be one of {', '.join(choices)}, got {_fmt(value)}."
            + _suggest(str(value), choices).replace("`", "'"),
            key,
        )
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = [m.name for m in tp]
        if isinstance(value, tp):
            return value.name
        if isinstance(value, str) and value in names:
            return value
        raise ConfigError(
            f"`{key}` must be one of {', '.join(names)}, got {_fmt(value)}."
            + _suggest(str(value), names).replace("`", "'"),
            key,
        )
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"`{key}` must be {_describe(tp)} such as [a, b], got {_fmt(value)} "
                f"({_typename(value)}).",
                key,
            )
        if origin is tuple and len(args) >= 1 and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(
                    f"`{key}` must be a list of {len(args)} items, got {len(value)}.", key
                )
            return [
                _check_value(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            ]
        item = args[0] if args else Any
        return [_check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"`{key}` must be a mapping, got {_fmt(value)} ({_typename(value)}).", key
            )
        item = args[1] if len(args) == 2 else Any
        return {k: _check_value(v, item, _join(key, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)  # 1e4 in YAML is a float
    elif tp is float:
        if _is_number(value):
            if not math.isfinite(value):
                raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value  # an annotation we do not model: OmegaConf checks it
    raise ConfigError(
        f"`{key}` must be {_describe(tp)}, got {_fmt(value)} ({_typename(value)}).", key
    )


def _describe(tp: Any) -> str:
    """'an integer', 'a list of strings', ... for an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    simple = {
        bool: "a boolean (true or false)",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
    }
    if tp in simple:
        return simple[tp]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        item = _describe(args[0]) if args else "values"
        for article in ("a ", "an "):
            item = item.removeprefix(article)
        plural = {"integer": "integers", "number": "numbers", "string": "strings"}
        return f"a list of {plural.get(item, item)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _required(field: dataclasses.Field) -> bool:
    no_default = (
        field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    )
    return no_default or field.default == "???"


def _check_dataclass(value: Any, cls: type, key: str, skip: Sequence[str] = ()) -> dict:
    """Checks a mapping against a dataclass: unknown keys, missing keys, each field's type."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"`{key}` must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, "
            f"got {_fmt(value)} ({_typename(value)}).",
            key,
        )
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    names = [f.name for f in fields] + list(skip)
    _check_keys(value, names, key, f"under `{key}`" if key else "at the top level")
    hints = typing.get_type_hints(cls)
    out = {}
    for field in fields:
        full = _join(key, field.name)
        if field.name not in value:
            if _required(field):
                raise ConfigError(
                    f"missing required key `{full}` ({_describe(hints[field.name])}).", full
                )
            continue
        out[field.name] = _check_value(value[field.name], hints[field.name], full)
    return out


def _get(tree: Mapping, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


# ---------------------------------------------------------------------------------------------
# YAML and overrides


def _yaml_loader() -> Any:
    """OmegaConf's YAML loader (1e-3 is a float, duplicate keys and alias bombs are errors)."""
    try:
        from omegaconf._yaml import get_yaml_loader  # omegaconf >= 2.4
    except ImportError:  # pragma: no cover - omegaconf 2.3
        from omegaconf._utils import get_yaml_loader
    return get_yaml_loader()


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise ConfigError(f"{where} is not valid YAML: {detail}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a config.") from None


def read_config_file(path: str | Path) -> dict:
    """The YAML mapping in a config file, unvalidated; ConfigError if it is not one."""
    return _read_config_file(Path(path))


def _read_config_file(path: Path) -> dict:
    where = str(path)
    if not path.exists():
        hint = ""
        siblings = (
            sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        )
        if siblings:
            hint = _suggest(path.name, siblings).replace("`", "'")
            hint += f" Configs in {path.parent}: {', '.join(siblings)}."
        raise ConfigError(f"config file {where} not found.{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {where} is not a regular file.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {where}: {e.strerror or e}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {where} is not UTF-8 text (byte {raw[e.start]:#04x} at offset "
            f"{e.start}); save it as UTF-8."
        ) from None
    tree = _parse_yaml(text, f"config file {where}")
    if tree is None:
        raise ConfigError(
            f"config file {where} is empty; a config needs at least `model`, `data` and "
            "`optimizer` sections (see configs/ for examples)."
        )
    if not isinstance(tree, dict):
        raise ConfigError(
            f"config file {where} must hold a mapping of keys (name, seed, model, data, "
            f"optimizer, train) at the top level, got a {_typename(tree)}."
        )
    return tree


_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_override(text: str) -> tuple[str, Any]:
    """Parses one ``key=value`` override; the value is YAML (``[temp,price]``, ``1e-3``, ``null``).

    Args:
        text: ``"dotted.key=value"``.

    Returns:
        ``(key, value)`` with the value parsed as a YAML scalar, list or mapping.

    Raises:
        ConfigError: without ``=``, with a malformed key or an unparsable value.

    Example:
        >>> parse_override("data.features=[temp,price]")
        ('data.features', ['temp', 'price'])
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(
            f"override {text!r} is not of the form key=value (for example train.steps=500)."
        )
    if not _OVERRIDE_KEY.match(key):
        raise ConfigError(
            f"override {text!r}: {key!r} is not a dotted key such as optimizer.learning_rate."
        )
    try:
        parsed = _parse_yaml(value, f"the value of override {text!r}") if value.strip() else None
    except ConfigError as e:
        if value.lstrip().startswith(("{", "[")):
            raise ConfigError(
                f"{e} A list or mapping with spaces must be one shell word: quote the whole "
                "override, e.g. 'optimizer.learning_rate={name: exponential_decay, ...}'."
            ) from None
        raise
    return key, parsed


def _apply_override(tree: dict, key: str, value: Any) -> None:
    """Sets ``tree[a][b][c] = value`` for ``key = 'a.b.c'``; a value replaces, never merges."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"`{where}` is {_fmt(child)}, not a mapping, so it has no key `{parts[i + 1]}`.",
                where,
            )
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------
# optimizers and schedules


@functools.cache
def optimizer_names() -> tuple[str, ...]:
    """The optax optimizers a config may name: public optax functions taking ``learning_rate``."""
    import optax

    names = []
    for name in dir(optax):
        fn = getattr(optax, name)
        if name.startswith("_") or name in _NOT_OPTIMIZERS or not inspect.isfunction(fn):
            continue
        try:
            if "learning_rate" in inspect.signature(fn).parameters:
                names.append(name)
        except (TypeError, ValueError):  # pragma: no cover - no signature
            continue
    return tuple(sorted(names))


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
    fn: Callable, kwargs: Mapping, prefix: str, what: str, steps: int, skip: Sequence[str] = ()
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
        out[name] = _check_kwarg(value, kinds, key, steps)
        if name.endswith("steps") and _is_number(value):
            ok, expected = (lambda v: v > 0, "an integer > 0")
            if name.startswith(("warmup", "end")) or name == "steps":
                ok, expected = (lambda v: v >= 0, "an integer >= 0")
            if not ok(value):
                raise ConfigError(f"`{key}` must be {expected}, got {_fmt(value)}.", key)
        if name in _KWARG_RANGES and _is_number(value):
            ok, expected = _KWARG_RANGES[name]
            if not ok(value):
                raise ConfigError(f"`{key}` must be {expected}, got {_fmt(value)}.", key)
    return out


def _check_kwarg(value: Any, kinds: set[str], key: str, steps: int) -> Any:
    if value is None:
        if "none" in kinds or "any" in kinds:
            return None
    elif isinstance(value, Mapping) and "schedule" in kinds:
        return _build_schedule(value, key, steps)
    elif isinstance(value, bool):
        if kinds & {"bool", "any"}:
            return value
    elif _is_number(value):
        if kinds & {"number", "int", "any", "schedule"}:
            if not math.isfinite(value):
                raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
            if kinds & {"number", "any", "schedule"} or isinstance(value, int):
                return value
            if float(value).is_integer():
                return int(value)
    elif isinstance(value, str):
        if kinds & {"str", "any"}:
            return value
    elif "any" in kinds:
        return value
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


def _build_schedule(spec: Mapping, key: str, steps: int) -> Callable:
    """Builds an optax schedule from ``{name: ..., kwargs}`` and checks its values."""
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
    kwargs = _check_kwargs(fn, spec, key, f"schedule {name}", steps, skip=("name",))
    try:
        schedule = fn(**kwargs)
    except Exception as e:  # optax's own argument checks
        raise ConfigError(f"`{key}`: optax.{name} rejected its arguments: {e}", key) from None
    # A schedule is a function of the step; look at it where training will use it.
    for step in sorted({0, steps // 2, max(steps - 1, 0)}):
        try:
            v = float(schedule(step))
        except Exception as e:
            raise ConfigError(f"`{key}`: schedule {name} fails at step {step}: {e}", key) from None
        if not math.isfinite(v) or v < 0:
            raise ConfigError(
                f"`{key}`: schedule {name} gives {v:g} at step {step}; learning rates must be "
                "finite and >= 0.",
                key,
            )
    return schedule


def optimizer_spec(
    cfg: Mapping | DictConfig, *, steps: int = 1, prefix: str = "optimizer"
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The optax function and its keyword arguments (schedules built) for an optimizer section.

    ``fn(**kwargs)`` is the optimizer; ``optax.inject_hyperparams(fn)(**kwargs)`` is the same
    optimizer with its hyperparameters in the optimizer state (for sweeps).

    Args:
        cfg: ``{name: <optax optimizer>, learning_rate: <number or schedule>, **kwargs}``.
        steps: the run's step count, where schedules are checked for finite, non-negative
            values.
        prefix: the key of this section in error messages.

    Returns:
        ``(fn, kwargs)``.

    Raises:
        ConfigError: unknown optimizer or schedule name (with the closest one), unknown or
            missing keyword arguments, wrong types, a learning rate that is not > 0.
    """
    import optax

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"`{prefix}` must be a mapping such as {{name: adam, learning_rate: 0.01}}, got "
            f"{_fmt(cfg)} ({_typename(cfg)}).",
            prefix,
        )
    names = optimizer_names()
    name = cfg.get("name")
    if name is None:
        raise ConfigError(
            f"missing required key `{prefix}.name` (an optax optimizer such as sgd or adam).",
            _join(prefix, "name"),
        )
    if not isinstance(name, str) or name not in names:
        raise ConfigError(
            f"`{prefix}.name`: unknown optax optimizer {_fmt(name)}."
            + _suggest(str(name), names).replace("`", "'")
            + f" Optimizers: {', '.join(names)}.",
            _join(prefix, "name"),
        )
    fn = getattr(optax, name)
    kwargs = _check_kwargs(fn, cfg, prefix, f"optimizer {name}", steps, skip=("name",))
    lr_key = _join(prefix, "learning_rate")
    lr = cfg.get("learning_rate")
    if _is_number(lr) and not lr > 0:
        raise ConfigError(
            f"`{lr_key}` must be a number > 0, got {_fmt(lr)}. Gradient descent steps against "
            "the gradient with a positive step size; try 0.01.",
            lr_key,
        )
    return fn, kwargs


def build_optimizer(
    cfg: Mapping | DictConfig, *, steps: int = 1, inject_hyperparams: bool = False
) -> Any:
    """The optax ``GradientTransformation`` named by an optimizer config section.

    Args:
        cfg: the ``optimizer`` section: ``{name, learning_rate, **kwargs}``.
        steps: the run's step count (schedules are checked over it).
        inject_hyperparams: wrap with ``optax.inject_hyperparams`` so that the hyperparameters
            live in the optimizer state (as sweeps over learning rates need).

    Returns:
        An ``optax.GradientTransformation``.

    Example:
        >>> opt = build_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9})
        >>> type(opt).__name__
        'GradientTransformationExtraArgs'
    """
    import optax

    fn, kwargs = optimizer_spec(cfg, steps=steps)
    if inject_hyperparams:
        fn = optax.inject_hyperparams(fn)
    try:
        return fn(**kwargs)
    except Exception as e:  # optax's own argument checks
        name = getattr(fn, "__name__", "optimizer")
        raise ConfigError(
            f"`optimizer`: optax.{name} rejected its arguments: {e}", "optimizer"
        ) from None


# ---------------------------------------------------------------------------------------------
# models


def _find_model(name: Any) -> Any:
    from mlgrad import registry

    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"`model.name` must be a model name such as {', '.join(registry.BUILTIN_MODELS)}, "
            f"got {_fmt(name)} ({_typename(name)}).",
            "model.name",
        )
    try:
        return registry.find_model(name)
    except registry.ModelNotFoundError as e:
        raise ConfigError(f"`model.name`: {e}", "model.name") from None
    except ImportError as e:  # the user's module exists but one of its own imports fails
        raise ConfigError(
            f"`model.name`: importing {name!r} failed: {e}. Fix that module's imports "
            "(or install what it needs).",
            "model.name",
        ) from None


def _check_model(section: Any, module: Any) -> dict:
    """Checks the model section against the module's ``Config`` (and its ``__post_init__``)."""
    fields = _check_dataclass(section, module.Config, "model", skip=("name",))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(module.Config), fields)
        OmegaConf.to_object(merged)  # runs the dataclass's own checks (__post_init__)
    except OmegaConfBaseException as e:
        raise _translate(e, "model") from None
    except (ValueError, TypeError) as e:
        raise _model_error(e, module) from None
    return {"name": section["name"], **OmegaConf.to_container(merged)}


def _model_error(e: Exception, module: Any) -> ConfigError:
    """A model's own ValueError as a ConfigError naming the field its message names first."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    words = re.findall(r"[A-Za-z_]\w*", str(e))
    field = next((w for w in words if w in fields), None)
    key = _join("model", field) if field else "model"
    return ConfigError(f"`{key}`: {e}", key)


def build_model(cfg: DictConfig, module: Any, data: Any) -> Any:
    """Builds the model of a validated config for ``data``: ``module.build(Config, data)``.

    The model checks its settings against the data here (activation names, penalty ranges,
    target shape); its ``ValueError`` becomes a :class:`ConfigError` naming ``model.<field>``.

    Args:
        cfg: a config from :func:`load_config`.
        module: the model module it returned.
        data: the :class:`mlgrad.data.Dataset` loaded from ``cfg.data``.

    Returns:
        The :class:`models.Model`.
    """
    try:
        return module.build(model_config(cfg, module), data)
    except (ValueError, TypeError) as e:
        raise _model_error(e, module) from None


def model_config(cfg: DictConfig, module: Any) -> Any:
    """The model module's ``Config`` instance for a validated run config.

    Args:
        cfg: a config from :func:`load_config`.
        module: the model module it returned.

    Returns:
        ``module.Config(**fields)``, the fields of ``cfg.model`` without ``name``.
    """
    fields = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "name"}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(module.Config), fields))


def _translate(e: OmegaConfBaseException, prefix: str = "") -> ConfigError:
    """One ConfigError from an OmegaConf exception (its message, with the full key)."""
    full_key = getattr(e, "full_key", None) or ""
    key = _join(prefix, full_key) if full_key else prefix
    msg = str(getattr(e, "msg", None) or e).splitlines()[0].strip()
    return ConfigError(f"`{key}`: {msg}" if key else msg, key)


# ---------------------------------------------------------------------------------------------
# data


def _check_data(data: dict, base: Path) -> dict:
    import mlgrad.data as mdata

    name, path = data.get("name"), data.get("path")
    names = mdata.BUILTIN_DATASETS
    if (name is None) == (path is None):
        both = "both are set" if name is not None else "neither is set"
        raise ConfigError(
            f"give exactly one of `data.name` (a built-in data set: {', '.join(names)}) and "
            f"`data.path` (a CSV or NPZ file); {both}.",
            "data",
        )
    if name is not None and name not in names:
        hint = _suggest(name, names).replace("`", "'")
        if name.lower().endswith((".csv", ".npz")):
            hint += " For a file, set `data.path` instead."
        raise ConfigError(
            f"`data.name`: unknown data set {_fmt(name)}.{hint} Built-in data sets: "
            f"{', '.join(names)}.",
            "data.name",
        )
    if path is not None:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            problem = "is not a regular file" if p.exists() else "not found"
            raise ConfigError(
                f"`data.path`: data file {path} {problem} (relative paths are resolved "
                f"against the current directory, {base}).",
                "data.path",
            )
        if p.suffix.lower() not in (".csv", ".npz"):
            raise ConfigError(
                f"`data.path`: {path} has suffix {p.suffix or '(none)'!r}; use a .csv file with a "
                "header row or a .npz archive.",
                "data.path",
            )
        data["path"] = str(p.resolve())
    if data.get("features") is not None:
        features = data["features"]
        if not features:
            raise ConfigError(
                "`data.features` is an empty list; name at least one column, or leave it null "
                "for the data set's default.",
                "data.features",
            )
        dupes = sorted({f for f in features if features.count(f) > 1})
        if dupes:
            raise ConfigError(
                f"`data.features` lists {', '.join(dupes)} more than once.", "data.features"
            )
    return data


# ---------------------------------------------------------------------------------------------
# the loader


def _origin(key: str, overrides: Sequence[tuple[str, str]], path: Path) -> str:
    """Where a key came from: the (last) override that set it, or the file."""
    for k, text in reversed(overrides):
        if key == k or key.startswith((k + ".", k + "[")) or k.startswith(key + "."):
            return f"override {text!r}"
    return str(path)


def _config_path(name_or_path: str | Path) -> Path:
    """The config file meant: an existing file, or a built-in config's name."""
    from mlgrad import registry

    path = Path(name_or_path)
    if path.exists() or path.parent != Path():  # a path with folders is always a path
        return path
    try:
        return registry.find_config(name_or_path)
    except registry.ConfigNotFoundError as e:
        raise ConfigError(str(e)) from None


def load_config(
    path: str | Path, overrides: Sequence[str] = (), *, base_dir: str | Path | None = None
) -> tuple[DictConfig, Any]:
    """Loads, overrides and validates a run config.

    Args:
        path: the YAML file, or the name of a built-in config (``linear_regression``; see
            :func:`mlgrad.registry.builtin_configs`).
        overrides: ``key=value`` strings applied in order, e.g. ``["train.steps=500",
            "data.features=[temp,price]"]``; a value replaces the key's value (a mapping
            replaces a whole section).
        base_dir: the directory relative data paths are resolved against (default: the current
            directory). The returned config holds the absolute path.

    Returns:
        ``(cfg, model_module)``: the resolved config (an OmegaConf ``DictConfig``; ``cfg.model``
        holds ``name`` and every field of the model's ``Config``, defaults filled in) and the
        model module (with ``Config`` and ``build``).

    Raises:
        ConfigError: one message naming the full key, the value and what was expected, and
            for a misspelled key or name the closest valid one.

    Example:
        >>> cfg, module = load_config("configs/linear_regression.yaml", ["train.steps=500"])
        >>> cfg.train.steps, module.__name__
        (500, 'mlgrad.models.linear_regression')
    """
    path = _config_path(path)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    parsed = [parse_override(o) for o in overrides]
    origins = [(k, o) for (k, _), o in zip(parsed, overrides, strict=True)]
    tree = _read_config_file(path)
    tree.setdefault("name", path.stem)
    try:
        for key, value in parsed:
            _apply_override(tree, key, value)
        return _validate(tree, base)
    except ConfigError as e:
        origin = _origin(e.key, origins, path) if e.key else str(path)
        raise ConfigError(f"{origin}: {e}", e.key) from None


def validate_config(
    config: DictConfig | Mapping, overrides: Sequence[str] = ()
) -> tuple[DictConfig, Any]:
    """Validates a config built in Python, as :func:`load_config` validates a file's.

    Args:
        config: a ``DictConfig`` (for example from :func:`load_config`) or a plain mapping of
            the same sections (``name``, ``model``, ``data``, ``optimizer``, ``train``).
        overrides: ``key=value`` strings applied in order, as in :func:`load_config`.

    Returns:
        ``(cfg, model_module)``, as :func:`load_config`.

    Raises:
        ConfigError: as :func:`load_config`.

    Example:
        >>> cfg, _ = load_config("configs/linear_regression.yaml")
        >>> validate_config(cfg, ["train.steps=5"])[0].train.steps
        5
    """
    if isinstance(config, DictConfig):
        tree = OmegaConf.to_container(config, resolve=True)
    elif isinstance(config, Mapping):
        tree = _plain_copy(config)
    else:
        raise ConfigError(
            f"a config must be a DictConfig or a mapping of its sections, got "
            f"{_typename(config)}; to load a YAML file use load_config(path).",
            "",
        )
    tree.setdefault("name", "run")
    for text in overrides:
        _apply_override(tree, *parse_override(text))
    return _validate(tree, Path.cwd())


def _plain_copy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _plain_copy(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_plain_copy(v) for v in tree]
    return tree


def _validate(tree: dict, base: Path) -> tuple[DictConfig, Any]:
    # Resolve ${...} interpolations first, so that what is checked is what is used.
    if any(not isinstance(k, str) for k in tree):
        bad = next(k for k in tree if not isinstance(k, str))
        raise ConfigError(f"`{bad}`: keys must be names (strings), got {_typename(bad)}.", str(bad))
    try:
        tree = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    except OmegaConfBaseException as e:
        raise _translate(e) from None
    model_section = tree.get("model")
    if isinstance(model_section, str):  # `model: logistic` is short for {name: logistic}
        tree["model"] = model_section = {"name": model_section}
    if not isinstance(model_section, Mapping) or "name" not in model_section:
        if "model" not in tree:
            raise ConfigError("missing required section `model` (with `model.name`).", "model")
        if isinstance(model_section, Mapping):
            raise ConfigError(
                "missing required key `model.name` (a model such as linear_regression).",
                "model.name",
            )
    if "optimizer" not in tree:
        raise ConfigError(
            "missing required section `optimizer` (e.g. {name: sgd, learning_rate: 0.1}).",
            "optimizer",
        )
    if "data" not in tree:
        raise ConfigError("missing required section `data` (`data.name` or `data.path`).", "data")
    checked = _check_dataclass(tree, RunConfig, "")
    merged = OmegaConf.to_container(OmegaConf.structured(RunConfig))
    for section in ("data", "train"):
        merged[section].update(checked.pop(section, {}))
    merged.update(checked)
    for key, ok, expected in _RANGES:
        value = _get(merged, key)
        if not ok(value):
            raise ConfigError(f"`{key}` must be {expected}, got {_fmt(value)}.", key)
    if not _RUN_NAME.match(merged["name"]):
        raise ConfigError(
            f"`name` must be a run name of letters, digits, '_', '.', '+' and '-' (it names "
            f"the run directory), got {_fmt(merged['name'])}.",
            "name",
        )
    if not isinstance(merged["model"], Mapping):
        raise ConfigError(
            f"`model` must be a mapping with `model.name`, got {_fmt(merged['model'])}.", "model"
        )
    module = _find_model(merged["model"]["name"])
    merged["model"] = _check_model(merged["model"], module)
    merged["data"] = _check_data(merged["data"], base)
    optimizer_spec(merged["optimizer"], steps=merged["train"]["steps"])
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), merged)
    except OmegaConfBaseException as e:  # pragma: no cover - checked above
        raise _translate(e) from None
    return cfg, module


# ---------------------------------------------------------------------------------------------
# comparing and printing


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, _join(prefix, k)))
        return out
    return {prefix: tree}


def config_diff(a: DictConfig | Mapping, b: DictConfig | Mapping) -> list[str]:
    """The full dotted keys whose values differ between two configs (sorted).

    Example:
        >>> config_diff({"train": {"steps": 1, "log_every": 1}}, {"train": {"steps": 2,
        ...             "log_every": 1}})
        ['train.steps']
    """

    def plain(c: Any) -> Any:
        return OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c

    fa, fb = _flatten(plain(a)), _flatten(plain(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k, ...) != fb.get(k, ...))


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` of a run directory holds)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
