"""Loading a run config: read the file, apply the overrides, resolve interpolations, check
every section (OmegaConf structured configs), return a ``DictConfig``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlgrad.config.errors import ConfigError, _fmt, _join, _typename
from mlgrad.config.files import _apply_override, _config_path, _read_config_file, parse_override
from mlgrad.config.models import _check_model, _find_model
from mlgrad.config.optimizers import optimizer_spec
from mlgrad.config.schema import _RANGES, _RUN_NAME, RunConfig
from mlgrad.config.structured import check_fits, check_section, to_dict


def _origin(key: str, overrides: Sequence[tuple[str, str]], path: Path) -> str:
    """Where a key came from: the (last) override that set it, or the file."""
    for k, text in reversed(overrides):
        if key == k or key.startswith((k + ".", k + "[")) or k.startswith(key + "."):
            short = text if len(text) <= 160 else text[:157] + "..."
            return f"override {short!r}"
    return str(path)


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
        _apply_overrides(tree, parsed)
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
        tree = to_dict(config, resolve=True)
    elif isinstance(config, Mapping):
        tree = _plain_copy(config)
    else:
        raise ConfigError(
            f"a config must be a DictConfig or a mapping of its sections, got "
            f"{_typename(config)}; to load a YAML file use load_config(path).",
            "",
        )
    tree.setdefault("name", "run")
    _apply_overrides(tree, [parse_override(text) for text in overrides])
    return _validate(tree, Path.cwd())


#: A data set is named by one of these; an override of one replaces the other.
_DATA_SOURCES = ("data.name", "data.path")


def _apply_overrides(tree: dict, parsed: Sequence[tuple[str, Any]]) -> None:
    """Applies ``(key, value)`` overrides in order. Overriding the data's source replaces the
    config's: ``data.path=my.csv`` on a config that names a built-in data set (``data.name``)
    unsets the name, and ``data.name=...`` unsets a ``data.path``, unless an override sets
    both (then the data check says that only one may be given)."""
    for key, value in parsed:
        _apply_override(tree, key, value)
    given = {key for key, value in parsed if key in _DATA_SOURCES and value is not None}
    data = tree.get("data")
    if len(given) == 1 and isinstance(data, dict):
        (other,) = set(_DATA_SOURCES) - given
        data[other.split(".")[1]] = None


def _plain_copy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _plain_copy(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_plain_copy(v) for v in tree]
    return tree


def _validate(tree: dict, base: Path) -> tuple[DictConfig, Any]:
    """The whole config checked, section by section, in the order a reader would."""
    tree = _resolved(tree)
    _required_sections(tree)
    checked = check_section(tree, RunConfig, "")
    for key, ok, expected in _RANGES:
        value = _get(checked, key)
        if not ok(value):
            raise ConfigError(f"`{key}` must be {expected}, got {_fmt(value)}.", key)
    if not _RUN_NAME.match(checked["name"]):
        raise ConfigError(
            f"`name` must be a run name of letters, digits, '_', '.', '+' and '-' (it names "
            f"the run directory), got {_fmt(checked['name'])}.",
            "name",
        )
    dtype = checked["train"]["dtype"]
    module = _find_model(checked["model"]["name"])
    checked["model"] = _check_model(checked["model"], module)
    check_fits(checked["model"], "model", dtype)
    checked["data"] = _check_data(checked["data"], base)
    optimizer_spec(checked["optimizer"], steps=checked["train"]["steps"], dtype=dtype)
    return cast(DictConfig, OmegaConf.merge(OmegaConf.structured(RunConfig), checked)), module


def _resolved(tree: dict) -> dict:
    """``${...}`` interpolations resolved first, so that what is checked is what is used."""
    if any(not isinstance(k, str) for k in tree):
        bad = next(k for k in tree if not isinstance(k, str))
        raise ConfigError(f"`{bad}`: keys must be names (strings), got {_typename(bad)}.", str(bad))
    try:
        return to_dict(OmegaConf.create(tree), resolve=True)
    except OmegaConfBaseException as e:
        full_key = str(getattr(e, "full_key", None) or "")
        msg = str(getattr(e, "msg", None) or e).splitlines()[0].strip()
        raise ConfigError(f"`{full_key}`: {msg}" if full_key else msg, full_key) from None


def _required_sections(tree: dict) -> None:
    """``model`` (with ``name``), ``optimizer`` and ``data`` must be given; ``model: NAME`` is
    short for ``model: {name: NAME}``."""
    model = tree.get("model")
    if isinstance(model, str):
        tree["model"] = model = {"name": model}
    if "model" not in tree:
        raise ConfigError("missing required section `model` (with `model.name`).", "model")
    if not isinstance(model, Mapping):
        raise ConfigError(
            f"`model` must be a mapping with `model.name`, got {_fmt(model)}.", "model"
        )
    if "name" not in model:
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


def _check_data(data: dict, base: Path) -> dict:
    """The data section's source checked by :func:`mlgrad.data.check_source` (the one place
    those checks live); a relative path becomes absolute."""
    from mlgrad.data import DataError, check_source

    try:
        path = check_source(
            data["name"], data["path"], data["features"], base=base, label=lambda a: f"`data.{a}`"
        )
    except DataError as e:
        key = f"data.{e.key}" if e.key else "data"
        raise ConfigError(f"`{key}`: {e}.", key) from None
    return {**data, "path": None if path is None else str(path)}


def _get(tree: Mapping, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


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
