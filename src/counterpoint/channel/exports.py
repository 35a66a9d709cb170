"""Export files: rep tasks for the CRM and direct-mail batches for the print house.

Each adapter appends CSV rows (RFC 4180, UTF-8, every field quoted, CRLF) to one file per UTC
day under the data directory, ``idempotency_key`` first; the columns are in docs/channels.md.
A batch is written with one ``write``, flushed and fsynced once, under an exclusive lock on
the file, so that several workers (threads or processes) may share it. Keys already in the
file are skipped: a retry adds no second row.

``KeyedFile`` is the append-only, key-de-duplicating file both adapters (and the console
adapter's JSON-lines file) are built on.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from counterpoint.channel.base import (
    AdapterConfig,
    AdapterContext,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    TransientDeliveryError,
)
from counterpoint.event.canonical import Channel
from counterpoint.kit.clock import utc

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per file
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CRM_COLUMNS",
    "PRINT_COLUMNS",
    "REP_CHANNELS",
    "CrmExportAdapter",
    "DamagedFileError",
    "ExportConfig",
    "KeyedFile",
    "PrintExportAdapter",
    "csv_records",
    "jsonl_records",
    "postal_lines",
    "rep_of",
]

_log = logging.getLogger(__name__)

Parsed = tuple[list[str], int, bytes]
"""Keys of the complete records, the length of the complete part, and what to append to
make a final record that lacks only its line end whole (b"" when none)."""


class DamagedFileError(OSError):
    """The file cannot be read as records before its end: left alone for a person."""


# --- the keyed, append-only file -------------------------------------------------------------


class KeyedFile:
    """An append-only file of records, each keyed by an idempotency key.

    ``append`` writes the records whose keys are not in the file yet and says which it
    wrote. The keys are read from the file on first use and whenever it grew by someone
    else's hand (another worker or process). A final record cut short by a crash (never
    acknowledged, since acknowledgement follows fsync) is removed before appending; a record
    that lacks only its line end is completed. Damage elsewhere stops writing (OSError)
    rather than risk the rows that are there.
    """

    def __init__(
        self, path: Path, parse: Callable[[bytes, bool], Parsed], header: bytes = b""
    ) -> None:
        self.path = path
        self._parse = parse
        self._header = header
        self._keys: set[str] = set()
        self._size = 0
        self._inode: int | None = None
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Write ``(key, bytes)`` records not yet present; per record, whether it was written
        now. Raises OSError (nothing acknowledged, the file as it was) when writing fails."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._catch_up(fd)
                written: list[bool] = []
                fresh: dict[str, bytes] = {}
                for key, data in records:
                    new = key not in self._keys and key not in fresh
                    if new:
                        fresh[key] = data
                    written.append(new)
                if fresh:
                    payload = (self._header if self._size == 0 else b"") + b"".join(fresh.values())
                    self._write(fd, payload)
                    self._keys.update(fresh)
                return written
            finally:
                os.close(fd)  # releases the lock

    def _catch_up(self, fd: int) -> None:
        stat = os.fstat(fd)
        if stat.st_ino != self._inode or stat.st_size < self._size:
            self._keys.clear()
            self._size = 0
            self._inode = stat.st_ino
        if stat.st_size == self._size:
            return
        data = os.pread(fd, stat.st_size - self._size, self._size)
        keys, good, suffix = self._parse(data, self._size == 0)
        self._keys.update(keys)
        if good < len(data):
            _log.warning(
                "%s ends with a record cut short (%d bytes); removing it",
                self.path,
                len(data) - good,
            )
            os.ftruncate(fd, self._size + good)
        self._size += good
        if suffix:
            self._write(fd, suffix)

    def _write(self, fd: int, payload: bytes) -> None:
        view = memoryview(payload)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(payload)


def _lines(data: bytes, cursor: list[int]) -> Iterator[str]:
    """``data`` line by line (each with its end); ``cursor[0]`` is the offset read up to."""
    while cursor[0] < len(data):
        start = cursor[0]
        newline = data.find(b"\n", start)
        cursor[0] = len(data) if newline < 0 else newline + 1
        yield data[start : cursor[0]].decode("utf-8", "replace")


def csv_records(columns: int) -> Callable[[bytes, bool], Parsed]:
    """The parser of a CSV ``KeyedFile`` whose rows have ``columns`` quoted fields."""

    def parse(data: bytes, at_start: bool) -> Parsed:
        cursor = [0]
        reader = csv.reader(_lines(data, cursor), strict=True)
        keys: list[str] = []
        good = 0
        header = at_start
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return keys, good, b""
            except csv.Error:
                if cursor[0] < len(data):
                    raise DamagedFileError(f"the CSV is damaged before byte {cursor[0]}") from None
                return keys, good, b""  # an open quote at the end: cut short
            whole = data[cursor[0] - 1 : cursor[0]] == b"\n"
            if not whole and not (len(row) == columns and data.endswith(b'"')):
                return keys, good, b""
            good = cursor[0]
            if row and not header:
                keys.append(row[0])
            header = False
            if not whole:
                return keys, good, b"\r\n"

    return parse


def jsonl_records(data: bytes, at_start: bool) -> Parsed:
    """The parser of a JSON-lines ``KeyedFile`` keyed by each object's ``idempotency_key``."""
    keys: list[str] = []
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start)
        line = data[start:] if newline < 0 else data[start:newline]
        key = _json_key(line)
        if newline < 0:
            if key is None:
                return keys, start, b""
            keys.append(key)
            return keys, len(data), b"\n"
        if key is not None:
            keys.append(key)
        start = newline + 1
    return keys, start, b""


def _json_key(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    key = value.get("idempotency_key") if isinstance(value, dict) else None
    return key if isinstance(key, str) else None


# --- the CSV export adapters -----------------------------------------------------------------


class ExportConfig(AdapterConfig):
    directory: Path | None = Field(
        None,
        description="where the daily files go; relative paths are under the data directory "
        "(default: exports/crm or exports/print)",
    )

    @field_validator("directory")
    @classmethod
    def _plain(cls, value: Path | None) -> Path | None:
        if value is not None and (not str(value).strip() or ".." in value.parts):
            raise ValueError("name a directory without '..'")
        return value


CRM_COLUMNS = (
    "idempotency_key",
    "exported_at",
    "rep",
    "hcp_id",
    "channel",
    "subject",
    "text",
    "content_id",
    "approval_code",
    "brand",
    "market",
    "outbox_id",
    "details",
)
_ADDRESS_LINES = 6
PRINT_COLUMNS = (
    "idempotency_key",
    "exported_at",
    "hcp_id",
    *(f"address_line_{i}" for i in range(1, _ADDRESS_LINES + 1)),
    "market",
    "brand",
    "content_id",
    "approval_code",
    "subject",
    "text",
    "outbox_id",
)
REP_CHANNELS: frozenset[Channel] = frozenset(
    {Channel.F2F_CALL, Channel.REMOTE_CALL, Channel.PHONE, Channel.REP_EMAIL, Channel.MESSAGING}
)


def _csv_bytes(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def _text(value: str | None) -> str:
    return "" if value is None else value


def rep_of(message: OutboundMessage) -> str:
    """The user name in ``metadata["rep"]``; PermanentDeliveryError when there is none."""
    rep = message.metadata.get("rep")
    if not isinstance(rep, str) or not rep.strip():
        raise PermanentDeliveryError("no rep named in metadata.rep", code="no_rep")
    return rep.strip()


class _CsvExportAdapter:
    name: ClassVar[str]
    channels: ClassVar[frozenset[Channel]]
    idempotent: ClassVar[bool] = True
    Config: ClassVar[type[AdapterConfig]] = ExportConfig
    columns: ClassVar[tuple[str, ...]]
    _folder: ClassVar[str]
    _prefix: ClassVar[str]

    def __init__(self, config: ExportConfig, context: AdapterContext) -> None:
        self.config = config
        self._context = context
        folder = config.directory or Path("exports") / self._folder
        self.directory = folder if folder.is_absolute() else context.data_dir / folder
        self._file: KeyedFile | None = None
        self._header = _csv_bytes([self.columns])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(directory={str(self.directory)!r})"

    def path_for(self, day: dt.date) -> Path:
        return self.directory / f"{self._prefix}-{day.isoformat()}.csv"

    def _file_for(self, day: dt.date) -> KeyedFile:
        path = self.path_for(day)
        if self._file is None or self._file.path != path:
            self._file = KeyedFile(path, csv_records(len(self.columns)), self._header)
        return self._file

    def row(self, message: OutboundMessage, exported_at: str) -> list[str]:
        raise NotImplementedError

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt | DeliveryError]:
        now = utc(self._context.clock.now())
        exported_at = now.isoformat(timespec="seconds")
        results: list[Receipt | DeliveryError | None] = [None] * len(messages)
        pending: list[tuple[int, str, bytes]] = []
        for i, message in enumerate(messages):
            try:
                if message.channel not in self.channels:
                    raise PermanentDeliveryError(
                        f"the {self.name} adapter does not carry {message.channel}", code="channel"
                    )
                pending.append(
                    (i, message.idempotency_key, _csv_bytes([self.row(message, exported_at)]))
                )
            except DeliveryError as exc:
                results[i] = exc
        file = self._file_for(now.date())
        try:
            written = file.append([(key, data) for _, key, data in pending])
        except OSError as exc:
            reason = f"could not write {file.path.name}: {exc.strerror or exc}"
            for i, _, _ in pending:
                results[i] = TransientDeliveryError(reason, code="io")
        else:
            for (i, _, _), new in zip(pending, written, strict=True):
                detail = "row written" if new else "already in the file"
                results[i] = Receipt(provider_id=file.path.name, detail=detail)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._file = None


class CrmExportAdapter(_CsvExportAdapter):
    """Rep tasks as rows of ``exports/crm/rep-tasks-YYYY-MM-DD.csv`` for the CRM's import."""

    name: ClassVar[str] = "crm_export"
    channels: ClassVar[frozenset[Channel]] = REP_CHANNELS
    columns: ClassVar[tuple[str, ...]] = CRM_COLUMNS
    _folder: ClassVar[str] = "crm"
    _prefix: ClassVar[str] = "rep-tasks"

    def row(self, message: OutboundMessage, exported_at: str) -> list[str]:
        rep = rep_of(message)
        details = {k: v for k, v in message.metadata.items() if k != "rep"}
        return [
            message.idempotency_key,
            exported_at,
            rep,
            message.hcp_id,
            message.channel.value,
            _text(message.subject),
            message.text,
            _text(message.content_id),
            _text(message.approval_code),
            _text(message.brand),
            _text(message.market),
            message.outbox_id,
            _details(details),
        ]


class PrintExportAdapter(_CsvExportAdapter):
    """Direct-mail pieces as rows of ``exports/print/direct-mail-YYYY-MM-DD.csv``."""

    name: ClassVar[str] = "print_export"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.DIRECT_MAIL})
    columns: ClassVar[tuple[str, ...]] = PRINT_COLUMNS
    _folder: ClassVar[str] = "print"
    _prefix: ClassVar[str] = "direct-mail"

    def row(self, message: OutboundMessage, exported_at: str) -> list[str]:
        lines = postal_lines(message.address)
        return [
            message.idempotency_key,
            exported_at,
            message.hcp_id,
            *lines,
            *([""] * (_ADDRESS_LINES - len(lines))),
            _text(message.market),
            _text(message.brand),
            _text(message.content_id),
            _text(message.approval_code),
            _text(message.subject),
            message.text,
            message.outbox_id,
        ]


def postal_lines(address: str | None) -> list[str]:
    """The non-empty lines of a postal address block (1 to 6)."""
    lines = [line.strip() for line in (address or "").splitlines() if line.strip()]
    if not lines:
        raise PermanentDeliveryError("no postal address", code="no_address")
    if len(lines) > _ADDRESS_LINES:
        raise PermanentDeliveryError(
            f"the postal address has {len(lines)} lines; at most {_ADDRESS_LINES} fit",
            code="invalid_address",
        )
    return lines


def _details(values: dict[str, Any]) -> str:
    if not values:
        return ""
    try:
        return json.dumps(values, ensure_ascii=False, sort_keys=True, default=_iso)
    except (TypeError, ValueError) as exc:
        raise PermanentDeliveryError(
            f"metadata cannot be written as JSON ({str(exc)[:120]})", code="bad_message"
        ) from None


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not JSON")
