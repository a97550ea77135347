"""The config layer's error and the small helpers its messages are made of."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeGuard


class ConfigError(ValueError):
    """A config mistake: the message names the full dotted key, the value and what to do.

    Attributes:
        key: the full dotted key (``"optimizer.learning_rate"``), or ``""`` for the file.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


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


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float (a bool, though an int in Python, is not).

    Example:
        >>> is_number(3), is_number(0.5), is_number(True), is_number("3")
        (True, True, False, False)
    """
    return isinstance(value, int | float) and not isinstance(value, bool)


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
