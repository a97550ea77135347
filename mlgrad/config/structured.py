"""A config section checked against its typed dataclass by OmegaConf (a structured config).

:func:`check_section` merges the user's mapping into ``OmegaConf.structured(cls)``: OmegaConf
checks the keys and the structure and fills in the defaults; its exceptions become one
:class:`ConfigError` naming the full key, the expected type, the value and the closest valid
key. A short pre-pass keeps mlgrad's stricter rules where OmegaConf is lenient: a quoted
``"5"`` is not an integer, ``yes`` or ``1`` is not a boolean, ``5`` is not a string, numbers
must be finite; and an integral float (``1e3`` in YAML) is an integer.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from mlgrad.config.errors import ConfigError, _describe, _fmt, _join, _suggest, _typename
from mlgrad.config.schema import _RANGES

# Keys whose range the schema checks (with a message naming their own bounds).
_BOUNDED = frozenset(key for key, _, _ in _RANGES)


def to_dict(cfg: Any, **kwargs: Any) -> dict[str, Any]:
    """``OmegaConf.to_container(cfg, **kwargs)`` of a mapping config, typed as the dict it is."""
    return typing.cast("dict[str, Any]", OmegaConf.to_container(cfg, **kwargs))


def check_section(value: Any, cls: type, key: str, skip: Sequence[str] = ()) -> dict:
    """``value`` (a mapping) checked against the dataclass ``cls``: a plain dict of every field
    (defaults filled in), without the ``skip`` keys.

    Raises:
        ConfigError: naming ``key``'s full dotted sub-key.
    """
    if not isinstance(value, Mapping):
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(
            f"`{key}` must be a mapping of {fields}, got {_fmt(value)} ({_typename(value)}).",
            key,
        )
    tree = {k: v for k, v in value.items() if k not in skip}
    tree = _strict(tree, cls, key)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), tree)
        return to_dict(merged, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise _translate(e, cls, key, skip) from None
    except (TypeError, ValueError) as e:  # a structure OmegaConf cannot merge
        raise ConfigError(f"`{key}`: {e}" if key else str(e), key) from None


def check_fits(value: Any, key: str, dtype: str) -> None:
    """Every float in ``value`` (a checked section: mappings, lists, numbers) fits in the run's
    ``train.dtype``: a float32 run cannot hold 1e39, which would become inf at the first step.

    Raises:
        ConfigError: naming the full key, the value and the largest value of the dtype.
    """
    import numpy as np

    if isinstance(value, Mapping):
        for k, v in value.items():
            check_fits(v, _join(key, k), dtype)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_fits(v, f"{key}[{i}]", dtype)
    elif isinstance(value, float):
        limit = float(np.finfo(np.dtype(dtype)).max)
        if math.isfinite(value) and abs(value) > limit:
            hint = " or train.dtype=float64" if dtype == "float32" else ""
            raise ConfigError(
                f"`{key}` is {_fmt(value)}, which does not fit in {dtype} (the run's "
                f"train.dtype; its largest value is {limit:.6g}); use a smaller value{hint}.",
                key,
            )


def _strict(value: Any, tp: Any, key: str) -> Any:
    """The pre-pass: mlgrad's rules where OmegaConf would convert silently (see module doc)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None or len(options) != 1:
            return value
        tp, origin, args = options[0], typing.get_origin(options[0]), typing.get_args(options[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _type_error(key, tp, value)
        hints = typing.get_type_hints(tp)
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(
                    f"`{_join(key, k)}`: keys must be names (strings), got {_fmt(k)} "
                    f"({_typename(k)}).",
                    _join(key, k),
                )
        return {
            k: _strict(v, hints[k], _join(key, k)) if k in hints else v for k, v in value.items()
        }
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _type_error(key, tp, value)
        item = args[0] if args else Any
        return [_strict(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return _choice(value, tp, key)
    if isinstance(value, Mapping | list | tuple) or value is None:
        return value  # OmegaConf judges the structure
    if tp is bool and not isinstance(value, bool):
        raise _type_error(key, tp, value)
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # 1e4 in YAML is a float
        if isinstance(value, bool | str | float):
            raise _type_error(key, tp, value)
        if isinstance(value, int) and not -(2**63) <= value < 2**63 and key not in _BOUNDED:
            # No array size, count or seed is this large; NumPy and JAX could not hold it.
            # (The run config's own integers have tighter bounds: schema._RANGES.)
            raise ConfigError(
                f"`{key}` must be an integer in [-2**63, 2**63 - 1] (a 64-bit integer), got "
                f"{_fmt(value)}.",
                key,
            )
        return value
    if tp is float:
        if isinstance(value, bool | str):
            raise _type_error(key, tp, value)
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(
                f"`{key}` is {_fmt(value)}, which is too large for a floating-point number "
                f"(the largest is {sys.float_info.max:.6g}); use a smaller value.",
                key,
            ) from None
        if not math.isfinite(number):
            raise ConfigError(f"`{key}` must be a finite number, got {_fmt(value)}.", key)
        return number
    if tp is str and not isinstance(value, str):
        raise _type_error(key, tp, value)
    return value


def _choice(value: Any, tp: Any, key: str) -> Any:
    """A Literal's value or an Enum member's name, with the closest one when misspelt."""
    literal = typing.get_origin(tp) is typing.Literal
    choices = [str(a) for a in typing.get_args(tp)] if literal else [m.name for m in tp]
    if not literal and isinstance(value, tp):
        return value.name
    if not isinstance(value, bool) and (value in typing.get_args(tp) or str(value) in choices):
        return value
    raise ConfigError(
        f"`{key}` must be one of {', '.join(choices)}, got {_fmt(value)}."
        + _suggest(str(value), choices).replace("`", "'"),
        key,
    )


def _type_error(key: str, tp: Any, value: Any) -> ConfigError:
    example = " such as [a, b]" if _describe(tp).startswith("a list") else ""
    return ConfigError(
        f"`{key}` must be {_describe(tp)}{example}, got {_fmt(value)} ({_typename(value)}).",
        key,
    )


def _annotation(cls: type, path: Sequence[str]) -> Any:
    """The annotation of the field at ``path`` below the dataclass ``cls`` (None if unknown)."""
    tp: Any = cls
    for part in path:
        options = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        tp = next((o for o in options if dataclasses.is_dataclass(o)), tp)
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
    return tp


def _translate(e: OmegaConfBaseException, cls: type, key: str, skip: Sequence[str]) -> ConfigError:
    """OmegaConf's exception as mlgrad's one-paragraph ConfigError."""
    path = [p for p in str(getattr(e, "full_key", "") or "").split(".") if p]
    full = _join(key, ".".join(path))
    if isinstance(e, ConfigKeyError) and path:
        parent = _annotation(cls, path[:-1])
        valid = [f.name for f in dataclasses.fields(parent)] if parent else []
        if not path[:-1]:
            valid += list(skip)
        where_key = _join(key, ".".join(path[:-1])) if path[:-1] else key
        where = f"under `{where_key}`" if where_key else "at the top level"
        return ConfigError(
            f"unknown key `{full}`.{_suggest(path[-1], valid, where_key)} Valid keys {where}: "
            f"{', '.join(valid)}.",
            full,
        )
    tp = _annotation(cls, path) if path else None
    if isinstance(e, MissingMandatoryValue) and tp is not None:
        return ConfigError(f"missing required key `{full}` ({_describe(tp)}).", full)
    if tp is not None and hasattr(e, "value"):
        value = e.value
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        return _type_error(full, tp, value)
    msg = str(getattr(e, "msg", None) or e).splitlines()[0].strip()
    return ConfigError(f"`{full}`: {msg}" if full else msg, full)
