"""The development adapter: every message as one JSON line in ``<data_dir>/outbox/console.jsonl``
and, with ``echo``, one line on standard error.

It carries every channel, so a development set-up sends nothing anywhere yet shows exactly
what would go out (the JSON line is the webhook body, plus ``adapter`` and ``written_at``).
Keys already in the file are skipped, so a retry writes no second line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field
from rich.console import Console
from rich.text import Text

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.channel.exports import KeyedFile, jsonl_records
from counterpoint.channel.webhook import encode_payload, message_payload
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import utc

__all__ = ["ConsoleAdapter", "ConsoleConfig"]

_SUMMARY_CHARS = 60


class ConsoleConfig(AdapterConfig):
    echo: bool = Field(True, description="print a one-line summary per message to stderr")


class ConsoleAdapter:
    """Writes messages to a local JSON-lines file instead of sending them."""

    name: ClassVar[str] = "console"
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    idempotent: ClassVar[bool] = True
    Config: ClassVar[type[AdapterConfig]] = ConsoleConfig

    def __init__(self, config: ConsoleConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context
        self.file = KeyedFile(context.data_dir / "outbox" / "console.jsonl", jsonl_records)
        self._console = Console(stderr=True, highlight=False, soft_wrap=True)

    def __repr__(self) -> str:
        return f"ConsoleAdapter(path={str(self.file.path)!r})"

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        written_at = utc(self._context.clock.now()).isoformat()
        results: list[Receipt | DeliveryError | None] = [None] * len(messages)
        pending: list[tuple[int, bytes]] = []
        for i, message in enumerate(messages):
            payload = {"adapter": self.name, "written_at": written_at, **message_payload(message)}
            try:
                pending.append((i, encode_payload(payload) + b"\n"))
            except DeliveryError as exc:
                results[i] = exc
        try:
            written = self.file.append([(messages[i].idempotency_key, line) for i, line in pending])
        except OSError as exc:
            reason = f"could not write {self.file.path.name}: {exc.strerror or exc}"
            for i, _ in pending:
                results[i] = TransientDeliveryError(reason, code="io")
        else:
            for (i, _), new in zip(pending, written, strict=True):
                message = messages[i]
                if new and self.config.echo:
                    self._console.print(_summary(message))
                results[i] = Receipt(
                    provider_id=message.idempotency_key,
                    delivered=True,
                    detail=None if new else "already written",
                )
        return [r for r in results if r is not None]

    def close(self) -> None:
        return None


def _summary(message: OutboundMessage) -> Text:
    """``console  campaign_email → hcp_… <address> "Subject"  [key]`` on one line."""
    about = message.subject or message.text
    about = " ".join(about.split())
    if len(about) > _SUMMARY_CHARS:
        about = about[: _SUMMARY_CHARS - 1] + "…"
    line = Text("console ", style="dim")
    line.append(message.channel.value, style="bold cyan")
    line.append(f" → {message.hcp_id}")
    if message.address:
        line.append(" " + " ".join(message.address.split()), style="green")
    line.append(f' "{about}"')
    line.append(f"  [{message.idempotency_key}]", style="dim")
    return line
