"""Build a channel adapter by name from a plain mapping (a YAML or JSON document's values).

``build_adapter("smtp", {"host": …}, context)`` finds the adapter among the installed entry
points, validates the mapping against its ``Config`` and constructs it. Unknown names and
invalid settings fail with errors that name the key and the fix, and never echo a value
(settings hold secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    ChannelAdapter,
    UnknownAdapterError,
    adapter_classes,
)
from counterpoint.errors import ValidationFailedError

__all__ = ["adapter_class", "build_adapter", "parse_config"]


def adapter_class(name: str) -> type[ChannelAdapter]:
    """The installed adapter called ``name``; UnknownAdapterError lists the installed ones."""
    installed = adapter_classes()
    found = installed.get(name)
    if found is None:
        names = ", ".join(sorted(installed)) or "none"
        raise UnknownAdapterError(
            f"there is no channel adapter named {name[:64]!r}",
            field="adapter",
            fix=f"use one of the installed adapters: {names}",
            extra={"installed": sorted(installed)},
        )
    return found


def parse_config(name: str, values: Mapping[str, Any] | None) -> AdapterConfig:
    """``values`` validated as the configuration of adapter ``name``."""
    config_type = adapter_class(name).Config
    try:
        return config_type.model_validate(dict(values or {}))
    except ValidationError as exc:
        raise _invalid(name, config_type, exc) from None


def build_adapter(
    name: str, values: Mapping[str, Any] | None, context: AdapterContext
) -> ChannelAdapter:
    """A ready adapter: looked up, its configuration validated, constructed."""
    cls = adapter_class(name)
    config = parse_config(name, values)
    return cast(ChannelAdapter, cast(Any, cls)(config, context))


def _invalid(name: str, config_type: type[AdapterConfig], exc: ValidationError) -> Exception:
    first = exc.errors(include_input=False, include_url=False)[0]
    key = ".".join(str(part) for part in first["loc"]) or "(settings)"
    field = f"{name}.{key}" if first["loc"] else name
    known = ", ".join(config_type.model_fields)
    if first["type"] == "missing":
        fix = f"add the setting {key}"
    elif first["type"] == "extra_forbidden":
        fix = f"remove {key}; the settings of {name} are: {known}"
    elif not first["loc"]:
        fix = f"change the settings as the message says (see docs/channels.md, adapter {name})"
    else:
        fix = f"correct {key} (see docs/channels.md, adapter {name})"
    return ValidationFailedError(
        f"{field}: {first['msg']}",
        field=field,
        fix=fix,
        extra={"errors": len(exc.errors(include_input=False))},
    )
