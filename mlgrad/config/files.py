"""Reading configs: YAML with OmegaConf's safe loader, built-in config names, dotted
``key=value`` overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mlgrad.config.errors import ConfigError, _fmt, _suggest, _typename


def _yaml_loader() -> Any:
    """OmegaConf's YAML loader (1e-3 is a float, duplicate keys and alias bombs are errors)."""
    from omegaconf._yaml import get_yaml_loader

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


# Dotted names; a number indexes a list (optimizer.chain.1.learning_rate).
_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")


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
    """Sets ``tree[a][b][c] = value`` for ``key = 'a.b.c'`` (a number indexes a list); a value
    replaces, never merges."""
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list) and part.isdigit():
            if int(part) >= len(node):
                raise ConfigError(
                    f"`{where}`: the list `{'.'.join(parts[:i])}` has {len(node)} items "
                    f"(0 to {len(node) - 1}).",
                    where,
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            parent = ".".join(parts[:i])
            raise ConfigError(
                f"`{parent}` is {_fmt(node)}, not a mapping, so it has no key `{part}`.", parent
            )
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def _config_path(name_or_path: str | Path) -> Path:
    """The config file meant: an existing file, or a built-in config's name."""
    from mlgrad import registry

    path = Path(name_or_path)
    if path.parent != Path():  # a path with folders is always a path
        return path
    try:
        return registry.find_config(name_or_path)
    except registry.ConfigNotFoundError as e:
        raise ConfigError(str(e)) from None


def keys_following(name_or_path: str | Path, key: str = "train.steps") -> list[str]:
    """The dotted keys of a config file whose value interpolates ``key`` (``decay_steps:
    ${train.steps}``): they change with it. A file that cannot be read has none.

    Example:
        >>> keys_following("autoencoder")
        ['optimizer.learning_rate.decay_steps']
    """

    def walk(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [k for name, v in node.items() for k in walk(v, f"{prefix}{name}.")]
        if isinstance(node, list):
            return [k for i, v in enumerate(node) for k in walk(v, f"{prefix}{i}.")]
        return [prefix[:-1]] if isinstance(node, str) and f"${{{key}}}" in node else []

    try:
        return walk(_read_config_file(_config_path(name_or_path)), "")
    except ConfigError:
        return []
