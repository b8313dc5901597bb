"""egoframe's one config style: pydantic models that refuse unknown keys, read from YAML with ``--set a.b=v``
overrides, and one one-line error for every bad value (``where: what``)."""

from __future__ import annotations

import os
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from egoframe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section: unknown keys and wrong types are errors, also when a value is assigned later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validate_config(model: type[M], data: dict[str, Any], source: str | None = None) -> M:
    """``model`` from ``data``; a validation error becomes one ConfigError naming the first bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{source + ': ' if source else ''}{where}: {message}{more}") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set each dotted key (``optim.lr``) of ``overrides`` in the nested ``data``, in place; returns it."""
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {key} is a value, not a section")
            node = child
        node[leaf] = value
    return data


def load_yaml_config(model: type[M], path: str, overrides: dict[str, Any] | None = None,
                     expected: str = "a mapping of settings") -> M:
    """Read ``path`` (YAML), apply ``overrides`` and validate it as ``model``."""
    import yaml

    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold {expected}")
    return validate_config(model, apply_overrides(data, overrides))
