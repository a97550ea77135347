"""The ``model`` section: the model found by name and checked against its own ``Config``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlgrad.config.errors import ConfigError, _fmt, _typename
from mlgrad.config.structured import check_section, to_dict


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
    fields = check_section(section, module.Config, "model", skip=("name",))
    try:
        module.Config(**fields)  # runs the dataclass's own checks (__post_init__)
    except (ValueError, TypeError) as e:
        raise _model_error(e) from None
    return {"name": section["name"], **fields}


def _model_error(e: Exception) -> ConfigError:
    """A model's own error as a ConfigError: a :class:`ModelConfigError` names its key."""
    from mlgrad.registry import ModelConfigError

    key = e.key if isinstance(e, ModelConfigError) else "model"
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
        The :class:`mlgrad.Model`.
    """
    try:
        return module.build(model_config(cfg, module), data)
    except (ValueError, TypeError) as e:
        raise _model_error(e) from None


def model_config(cfg: DictConfig, module: Any) -> Any:
    """The model module's ``Config`` instance for a validated run config.

    Args:
        cfg: a config from :func:`load_config`.
        module: the model module it returned.

    Returns:
        ``module.Config(**fields)``, the fields of ``cfg.model`` without ``name``.
    """
    fields = {k: v for k, v in to_dict(cfg.model).items() if k != "name"}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(module.Config), fields))
