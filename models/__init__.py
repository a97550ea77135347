"""The lecture notes' example models, and the lookup that finds a model by name.

A model module defines a ``Config`` dataclass (its typed schema: plain types, a default for
every field, usable as an OmegaConf structured config) and ``build(cfg, data) -> Model``. The
:class:`Model` is a named tuple of pure functions that close over the config and over statistics
of the training split, so nothing hides in globals or in the parameters.

Built-in models: ``linear_regression``, ``logistic``, ``autoencoder``. A user's own model is any
importable module (``mypkg.mymodel``) or attribute (``mypkg.mymodel:my_model``) that has
``Config`` and ``build``; naming it in a config imports it, which runs that module's code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BUILTIN_MODELS", "Model", "ModelNotFoundError", "find_model"]

BUILTIN_MODELS = ("linear_regression", "logistic", "autoencoder")

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")


class Model(NamedTuple):
    """A model as pure functions of its parameters (a pytree).

    Attributes:
        init: ``init(key) -> params``, the initial parameters from a PRNG key.
        apply: ``apply(params, x) -> y``, predictions for a batch ``x`` of shape (n, features).
        loss: ``loss(params, batch) -> scalar`` with ``batch = (x, y)``: a mean over the
            examples of the batch plus terms that do not depend on the batch (penalties), as
            the training engine requires for padded mini-batches.
        metrics: ``metrics(params, batch) -> dict`` of scalars; always ``"loss"``, classifiers
            add ``"accuracy"``.
        report: ``report(params) -> dict``, JSON-able extras for a run summary (for example
            coefficients in the data's own units).
        plots: ``plots(params, data, fit_result, out_dir) -> list[Path]``, writes the model's
            PNG figures into ``out_dir`` and returns their paths. ``fit_result`` may be ``None``.
    """

    init: Callable[[Any], Any]
    apply: Callable[[Any, Any], Any]
    loss: Callable[[Any, Any], Any]
    metrics: Callable[[Any, Any], dict[str, Any]]
    report: Callable[[Any], dict[str, Any]]
    plots: Callable[[Any, Any, Any, Path], list[Path]]


class ModelNotFoundError(ValueError):
    """No model of that name: the message lists the built-in models and the closest match."""


def _not_found(name: str, why: str) -> ModelNotFoundError:
    match = difflib.get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.6)
    hint = f" Did you mean {match[0]!r}?" if match else ""
    return ModelNotFoundError(
        f"unknown model {name!r} ({why}).{hint} Built-in models: {', '.join(BUILTIN_MODELS)}; "
        "or give your own module as 'package.module' (or 'package.module:attribute') that "
        "defines Config and build, importable on the Python path (for a module in the current "
        "directory: PYTHONPATH=.)."
    )


def find_model(name: str) -> Any:
    """Finds a model by short name or import path.

    ``linear_regression`` finds the built-in ``models.linear_regression``; ``mypkg.mymodel``
    imports a user's module, ``mypkg.mymodel:attr`` an attribute of it. Whatever is found must
    have a ``Config`` dataclass and a callable ``build(cfg, data) -> Model``. Importing a user's
    module runs its code, so name only modules you trust.

    Args:
        name: a built-in model name, or a dotted module path with an optional ``:attribute``.

    Returns:
        The module (or attribute) with ``Config`` and ``build``.

    Raises:
        ModelNotFoundError: a ``ValueError`` listing the built-in models and, for a
            misspelling, the closest one; also when what was found lacks ``Config`` or
            ``build``. An import error raised inside an existing user module propagates.

    Example:
        >>> from models import find_model
        >>> find_model("linear_regression").__name__
        'models.linear_regression'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise _not_found(str(name), "not a model name or a Python import path")
    if name in BUILTIN_MODELS:
        module_name, attr = f"{__name__}.{name}", None
    else:
        module_name, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only "the module named is missing" means not found; a missing dependency of an
        # existing module is the user's bug and must surface as it is.
        parts = module_name.split(".")
        if e.name is None or e.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise
        raise _not_found(name, f"no module named {e.name!r}") from None
    for part in (attr or "").split(".") if attr else ():
        if not hasattr(obj, part):
            raise _not_found(name, f"module {module_name!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    missing = [a for a in ("Config", "build") if not hasattr(obj, a)]
    if missing:
        raise _not_found(
            name,
            f"{name!r} has no {' or '.join(missing)}; a model defines a "
            "Config dataclass and build(cfg, data) -> Model",
        )
    if not (isinstance(obj.Config, type) and dataclasses.is_dataclass(obj.Config)):
        raise _not_found(name, f"{name}.Config is not a dataclass")
    if not callable(obj.build):
        raise _not_found(name, f"{name}.build is not callable")
    return obj
