"""Which adapter carries which channel: the routing document and the adapters it builds.

The document (YAML or JSON, ``COUNTERPOINT_CHANNELS_FILE``) names adapter *instances* (an
entry-point adapter and its typed configuration) and maps channels to them::

    adapters:
      mail:
        adapter: smtp
        config: {host: smtp.example.org, port: 587, security: starttls,
                 username: counterpoint, password: "${SMTP_PASSWORD}",
                 from_address: "Cardiomax <news@pharma.example>"}
      inbox: {adapter: rep_inbox}
    routes:
      campaign_email: mail
      rep_email: mail
      f2f_call: inbox

A value written ``${NAME}`` is read from the environment, so the file holds no secret.
Without a document, field channels go to the rep inbox, direct mail to the print export and
everything else to the console adapter (development: nothing leaves the machine). Errors
name the path in the document and the fix. See docs/delivery.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from counterpoint.channel.base import (
    AdapterContext,
    ChannelAdapter,
    UnknownAdapterError,
    adapter_classes,
)
from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel

__all__ = ["DEFAULT_DOCUMENT", "Routes", "load_routes", "parse_routes"]

_FIELD = ("f2f_call", "remote_call", "phone")
DEFAULT_DOCUMENT: Mapping[str, Any] = {
    "adapters": {
        "console": {"adapter": "console", "config": {}},
        "inbox": {"adapter": "rep_inbox", "config": {}},
        "print": {"adapter": "print_export", "config": {}},
    },
    "routes": {
        **{c.value: "console" for c in Channel},
        **dict.fromkeys(_FIELD, "inbox"),
        "direct_mail": "print",
    },
}
"""Routing without a document: nothing leaves the machine."""

_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _problem(path: str, reason: str, fix: str) -> ValidationFailedError:
    return ValidationFailedError(f"channels document, {path}: {reason}", field=path, fix=fix)


def _expand(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str) and (m := _ENV.match(value)):
        if m.group(1) not in env:
            raise _problem(path, f"environment variable {m.group(1)} is not set", "set it")
        return env[m.group(1)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    adapter: str
    config: Any  # the adapter's validated AdapterConfig


@dataclass
class Routes:
    """The parsed routing: channel → adapter instance; adapters are built on first use."""

    instances: dict[str, Instance]
    routes: dict[Channel, str]
    classes: dict[str, type[ChannelAdapter]]
    built: dict[str, ChannelAdapter] = field(default_factory=dict)

    def instance_of(self, channel: Channel) -> Instance:
        name = self.routes.get(channel)
        if name is None:
            raise UnknownAdapterError(
                f"no adapter carries {channel.value}",
                field=f"routes.{channel.value}",
                fix="add a route for this channel to the channels document",
            )
        return self.instances[name]

    def idempotent(self, channel: Channel) -> bool:
        return self.classes[self.instance_of(channel).adapter].idempotent

    def adapter(self, name: str, context: AdapterContext) -> ChannelAdapter:
        if name not in self.built:
            instance = self.instances[name]
            cls: Any = self.classes[instance.adapter]
            self.built[name] = cls(instance.config, context)
        return self.built[name]

    def close(self) -> None:
        for adapter in self.built.values():
            adapter.close()
        self.built.clear()

    def describe(self) -> list[dict[str, str]]:
        return [
            {"channel": c.value, "instance": n, "adapter": self.instances[n].adapter}
            for c, n in sorted(self.routes.items())
        ]


def parse_routes(
    document: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    classes: dict[str, type[ChannelAdapter]] | None = None,
) -> Routes:
    env = os.environ if env is None else env
    classes = adapter_classes() if classes is None else classes
    if not isinstance(document, Mapping):
        raise _problem("(top)", "must be a mapping with adapters and routes", "see docs")
    unknown = set(document) - {"adapters", "routes"}
    if unknown:
        raise _problem(sorted(unknown)[0], "unknown key", "use only adapters and routes")
    instances: dict[str, Instance] = {}
    raw_adapters = document.get("adapters") or {}
    if not isinstance(raw_adapters, Mapping):
        raise _problem("adapters", "must be a mapping of instance names", "see docs")
    for name, spec in raw_adapters.items():
        path = f"adapters.{name}"
        if not isinstance(spec, Mapping) or "adapter" not in spec:
            raise _problem(path, "needs `adapter` (and optionally `config`)", "see docs")
        kind = str(spec["adapter"])
        if kind not in classes:
            raise UnknownAdapterError(
                f"channels document, {path}.adapter: no adapter {kind!r} is installed",
                field=f"{path}.adapter",
                fix="installed adapters: " + ", ".join(sorted(classes)),
            )
        extra = set(spec) - {"adapter", "config"}
        if extra:
            raise _problem(f"{path}.{sorted(extra)[0]}", "unknown key", "use adapter and config")
        raw = _expand(spec.get("config") or {}, f"{path}.config", env)
        try:
            config = classes[kind].Config.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _problem(
                f"{path}.config.{where}", first["msg"], f"see the {kind} adapter in docs"
            ) from None
        instances[str(name)] = Instance(str(name), kind, config)
    routes: dict[Channel, str] = {}
    raw_routes = document.get("routes") or {}
    if not isinstance(raw_routes, Mapping):
        raise _problem("routes", "must map channels to adapter instances", "see docs")
    for channel_name, target in raw_routes.items():
        path = f"routes.{channel_name}"
        try:
            channel = Channel(channel_name)
        except ValueError:
            raise _problem(
                path, "unknown channel", "channels: " + ", ".join(c.value for c in Channel)
            ) from None
        if target not in instances:
            raise _problem(path, f"no adapter instance {target!r}", "name one under adapters")
        kind = instances[target].adapter
        if channel not in classes[kind].channels:
            raise _problem(
                path,
                f"the {kind} adapter cannot carry {channel.value}",
                "route it to an adapter that can (see docs/channels.md)",
            )
        routes[channel] = str(target)
    return Routes(instances, routes, classes)


def load_routes(path: Path | None, *, env: Mapping[str, str] | None = None) -> Routes:
    """The routing document at ``path``, or the default routing when ``path`` is None."""
    if path is None:
        classes = adapter_classes()
        installed = {
            name: spec
            for name, spec in DEFAULT_DOCUMENT["adapters"].items()
            if spec["adapter"] in classes
        }
        document = {
            "adapters": installed,
            "routes": {c: n for c, n in DEFAULT_DOCUMENT["routes"].items() if n in installed},
        }
        return parse_routes(document, env=env, classes=classes)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailedError(
            f"cannot read the channels document {path}: {exc.strerror}",
            field="channels_file",
            fix="point COUNTERPOINT_CHANNELS_FILE at a readable YAML or JSON file",
        ) from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationFailedError(
            f"the channels document {path} is not valid {path.suffix or 'YAML'}: {exc}",
            field="channels_file",
            fix="correct the syntax",
        ) from None
    return parse_routes(document or {}, env=env)
