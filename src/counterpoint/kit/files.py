"""Reading bulk import files (CSV, Parquet, NDJSON) in chunks, with row numbers people can find.

``read_chunks`` yields ``Chunk`` values of at most ``chunk_rows`` rows each. Every row is a
``dict`` of column name to value: CSV values are strings (an empty cell is ``""``; nothing is
converted, so ``00123`` stays ``"00123"``), Parquet and NDJSON values are typed (``None`` is
missing, Parquet timestamps are ``datetime``). A Parquet chunk also carries its
``pyarrow.Table`` for columnar fast paths.

Row numbers are what a person sees when opening the file: for CSV the physical line number
(the header is line 1; a quoted value spanning lines moves the following rows down), for
NDJSON the line number, for Parquet the row position counting from 1. Blank lines are skipped
without a report; CSV rows with the wrong number of fields and NDJSON lines that are not a
JSON object are reported in ``Chunk.bad_lines`` and left out of ``rows``.

A file that cannot be read at all raises ``ValidationFailedError`` naming the file and a fix.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from counterpoint.errors import ValidationFailedError

__all__ = [
    "Chunk",
    "FileFormat",
    "count_rows",
    "detect_format",
    "encodable",
    "file_sha256",
    "read_chunks",
    "write_rejects",
]

FileFormat = Literal["csv", "parquet", "ndjson"]

_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
_SNIFF_BYTES = 1 << 20
_CSV_BLOCK_BYTES = 1 << 22
_LINE_BREAK = r"\r\n|\r|\n"
_BREAKS = re.compile(_LINE_BREAK)
_GIVE_UP_AFTER = 1000
"""An NDJSON file whose first this many non-blank lines are all bad is not NDJSON."""


@dataclass(slots=True)
class Chunk:
    """Consecutive rows of an import file."""

    columns: list[str]
    """The file's columns (NDJSON: the keys seen in this chunk, in first-seen order)."""
    loaded: list[dict[str, object]] | None
    """The rows as dicts; ``None`` until first asked for when ``table`` holds them."""
    first_row_number: int
    """The row number of ``rows[0]`` (of the next row when ``rows`` is empty)."""
    table: pa.Table | None = None
    """Parquet only: the same rows as an Arrow table."""
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    """(row number, what is wrong) for lines that could not be read as a row."""
    row_numbers: list[int] | None = None
    """The number of each row when they are not consecutive (blank or bad lines between them);
    ``None`` when ``rows[i]`` is row ``first_row_number + i``. Prefer ``numbered()``."""

    @property
    def rows(self) -> list[dict[str, object]]:
        """The rows as dicts (built from ``table`` on first use: columnar readers skip it)."""
        if self.loaded is None:
            self.loaded = _python_rows(self.table) if self.table is not None else []
        return self.loaded

    @property
    def size(self) -> int:
        """How many rows the chunk holds (without building them)."""
        if self.loaded is None and self.table is not None:
            return int(self.table.num_rows)
        return len(self.rows)

    def numbered(self) -> Iterator[tuple[int, dict[str, object]]]:
        """Each row with its row number."""
        if self.row_numbers is None:
            return enumerate(self.rows, self.first_row_number)
        return zip(self.row_numbers, self.rows, strict=True)


def _unreadable(path: Path, problem: str, fix: str) -> ValidationFailedError:
    return ValidationFailedError(
        f"cannot read {path}: {problem}", field="file", fix=fix, extra={"file": str(path)}
    )


def detect_format(path: str | os.PathLike[str]) -> FileFormat:
    """The file's format from its suffix: .csv, .parquet/.pq, .ndjson/.jsonl."""
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise _unreadable(
            Path(path),
            "unknown file type",
            "name the file .csv (CSV), .parquet or .pq (Parquet), .ndjson or .jsonl (NDJSON)",
        )
    return found


def count_rows(path: str | os.PathLike[str]) -> int | None:
    """The number of rows, for progress: exact for Parquet (from its metadata), the number of
    lines (less the CSV header) for CSV and NDJSON. ``None`` when the file cannot be read."""
    file = Path(path)
    try:
        kind = detect_format(file)
        if kind == "parquet":
            return int(pq.ParquetFile(file).metadata.num_rows)
        lines = _count_lines(file)
    except (ValidationFailedError, OSError, pa.ArrowException):
        return None
    return max(lines - 1, 0) if kind == "csv" else lines


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        while block := fh.read(_SNIFF_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def read_chunks(path: str | os.PathLike[str], chunk_rows: int = 50_000) -> Iterator[Chunk]:
    """The rows of ``path`` in chunks of at most ``chunk_rows`` rows (at least one chunk).

    Raises ``ValidationFailedError`` when the file cannot be read at all.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    file = Path(path)
    kind = detect_format(file)
    if not file.is_file():
        raise _unreadable(file, "no such file", "check the path and the file name")
    if kind == "parquet":
        return _read_parquet(file, chunk_rows)
    if kind == "csv":
        return _read_csv(file, chunk_rows)
    return _read_ndjson(file, chunk_rows)


def _sniff(path: Path, what: str) -> bytes:
    """The first bytes of a text file; refuses empty and binary files."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc), "check the file's permissions") from None
    if not head.strip():
        raise _unreadable(path, "the file is empty", f"write {what}")
    if b"\x00" in head:
        raise _unreadable(
            path,
            "this is a binary file, not text",
            "export the data as UTF-8 text, or give a Parquet file the suffix .parquet",
        )
    return head


# --- Parquet ----------------------------------------------------------------------------------


_PARQUET_FIX = "export the file again as Parquet (it may be truncated or not Parquet at all)"


def _read_parquet(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, f"not a readable Parquet file ({exc})", _PARQUET_FIX) from None
    return _parquet_chunks(path, parquet, chunk_rows)


def _parquet_chunks(path: Path, parquet: pq.ParquetFile, chunk_rows: int) -> Iterator[Chunk]:
    schema = parquet.schema_arrow
    columns = list(schema.names)
    number = 1
    try:
        for table in _rechunk(parquet.iter_batches(batch_size=chunk_rows), schema, chunk_rows):
            yield Chunk(columns, None, number, table=table)
            number += table.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, f"not a readable Parquet file ({exc})", _PARQUET_FIX) from None
    if number == 1:
        yield Chunk(columns, [], 1, table=schema.empty_table())


def _rechunk(batches: Iterator[pa.RecordBatch], schema: pa.Schema, size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows (the last may be shorter) from batches of any size."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending = rest.to_batches()
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema=schema)


def _rows(data: pa.Table | pa.RecordBatch) -> list[dict[str, object]]:
    """The rows as dicts (column by column, which is faster than ``to_pylist``)."""
    columns: dict[str, list[object]] = data.to_pydict()
    if not columns:
        return [{} for _ in range(data.num_rows)]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _python_rows(table: pa.Table) -> list[dict[str, object]]:
    """Rows as dicts; nanosecond timestamps are truncated to the microseconds Python keeps."""
    fields = []
    for column in table.schema:
        if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
            column = column.with_type(pa.timestamp("us", column.type.tz))
        fields.append(column)
    schema = pa.schema(fields)
    if schema != table.schema:
        table = table.cast(schema, safe=False)
    return _rows(table)


# --- CSV --------------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    head = _sniff(path, "a header row, then one row per record")
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable(path, "the file is not UTF-8 text", "save it as UTF-8 CSV") from None
    return next(csv.reader([text]), [])


class _CsvLines:
    """Turns the CSV reader's logical rows into physical line numbers, and collects bad rows."""

    def __init__(self) -> None:
        self.logical = 2
        self.offset = 0
        self.invalid: deque[tuple[int | None, str, str]] = deque()
        self.bad: list[tuple[int, str]] = []

    def on_invalid(self, row: pa_csv.InvalidRow) -> str:
        got = row.actual_columns
        reason = f"has {got} field{'s' * (got != 1)} where the header has {row.expected_columns}"
        self.invalid.append((row.number, row.text, reason))
        return "skip"

    def _skip_invalid(self) -> None:
        while self.invalid and (self.invalid[0][0] or 0) <= self.logical:
            number, text, reason = self.invalid.popleft()
            if number is None:
                self.bad.append((0, reason))
                continue
            self.bad.append((number + self.offset, reason))
            if number == self.logical:
                self.offset += len(_BREAKS.findall(text))
                self.logical += 1

    def number(self, n: int, breaks: Sequence[int] | None) -> list[int]:
        """The line numbers of the next ``n`` rows; ``breaks`` their line breaks, if any."""
        out: list[int] = []
        while len(out) < n:
            self._skip_invalid()
            if breaks is None:
                run = n - len(out)
                if self.invalid and self.invalid[0][0] is not None:
                    run = min(run, self.invalid[0][0] - self.logical)
                start = self.logical + self.offset
                out.extend(range(start, start + run))
                self.logical += run
            else:
                out.append(self.logical + self.offset)
                self.offset += breaks[len(out) - 1]
                self.logical += 1
        return out

    def finish(self) -> None:
        self.logical = 1 << 62
        self._skip_invalid()


def _line_breaks(batch: pa.RecordBatch) -> list[int] | None:
    """Per row, the line breaks inside quoted values; None when there are none."""
    total: Any = None
    for column in batch.columns:
        counts = pc.count_substring_regex(column, _LINE_BREAK)
        total = counts if total is None else pc.add(total, counts)
    if total is None or pc.sum(total).as_py() in (None, 0):
        return None
    breaks: list[int] = total.to_pylist()
    return breaks


def _blank_rows(batch: pa.RecordBatch) -> list[bool] | None:
    """Per row, whether every value is empty (a blank line); None when no row is."""
    blank: Any = None
    for column in batch.columns:
        empty = pc.equal(column, "")
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is None or not pc.any(blank).as_py():
        return None
    flags: list[bool] = blank.to_pylist()
    return flags


def _read_csv(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    names = _csv_header(path)
    lines = _CsvLines()
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=lines.on_invalid,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise _csv_problem(path, exc) from None
    if any(not pa.types.is_string(t) for t in reader.schema.types):
        raise _unreadable(path, "the header row could not be read", "check the header row")
    return _guarded_csv_chunks(path, reader, lines, chunk_rows)


def _csv_problem(path: Path, exc: Exception) -> ValidationFailedError:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text:
        return _unreadable(path, "the file is not UTF-8 text", "save it as UTF-8 CSV")
    return _unreadable(path, f"not a readable CSV file ({text})", "check the file is CSV")


def _guarded_csv_chunks(
    path: Path, reader: pa_csv.CSVStreamingReader, lines: _CsvLines, chunk_rows: int
) -> Iterator[Chunk]:
    try:
        yield from _csv_chunks(reader, list(reader.schema.names), lines, chunk_rows)
    except pa.ArrowException as exc:
        raise _csv_problem(path, exc) from None


def _csv_chunks(
    reader: pa_csv.CSVStreamingReader, columns: list[str], lines: _CsvLines, chunk_rows: int
) -> Iterator[Chunk]:
    rows: list[dict[str, object]] = []
    numbers: list[int] = []
    emitted = False
    for batch in reader:
        batch_numbers = lines.number(batch.num_rows, _line_breaks(batch))
        batch_rows = _rows(batch)
        blank = _blank_rows(batch)
        if blank is not None:
            kept = [i for i, is_blank in enumerate(blank) if not is_blank]
            batch_rows = [batch_rows[i] for i in kept]
            batch_numbers = [batch_numbers[i] for i in kept]
        rows.extend(batch_rows)
        numbers.extend(batch_numbers)
        while len(rows) >= chunk_rows:
            yield _chunk(columns, rows[:chunk_rows], numbers[:chunk_rows], lines.bad)
            rows, numbers, lines.bad, emitted = rows[chunk_rows:], numbers[chunk_rows:], [], True
    next_number = lines.logical + lines.offset
    lines.finish()
    if rows or lines.bad or not emitted:
        yield _chunk(columns, rows, numbers, lines.bad, next_number=next_number)


def _chunk(
    columns: list[str],
    rows: list[dict[str, object]],
    numbers: list[int],
    bad: list[tuple[int, str]],
    next_number: int = 1,
) -> Chunk:
    if not numbers:
        return Chunk(columns, rows, next_number, bad_lines=bad)
    consecutive = numbers[-1] - numbers[0] == len(numbers) - 1
    return Chunk(
        columns, rows, numbers[0], bad_lines=bad, row_numbers=None if consecutive else numbers
    )


# --- NDJSON -----------------------------------------------------------------------------------


def _read_ndjson(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    _sniff(path, "one JSON object per line")
    columnar = _ndjson_columnar(path, chunk_rows)
    return columnar if columnar is not None else _ndjson_chunks(path, chunk_rows)


def _ndjson_columnar(path: Path, chunk_rows: int) -> Iterator[Chunk] | None:
    """Arrow's JSON reader, in one pass, when every line is plainly one JSON object.

    ``_object_lines`` checks that on the bytes (Arrow would otherwise count rows that are not
    lines: it skips blank lines, joins an object spread over lines, splits a line holding two),
    and the first block must have plain (not nested) values. Should a later block not read
    (a value of another type than the first block's, a line that is no object, text that is
    not UTF-8), the rows before it are kept and the rest of the file is read line by line,
    which names each bad line exactly. Any other file is read line by line from the start.
    """
    lines = _object_lines(path)
    if lines is None:
        return None
    try:
        options = pa_json.ReadOptions(block_size=_JSON_BLOCK_BYTES)
        reader = pa_json.open_json(path, read_options=options)
    except (pa.ArrowException, OSError, ValueError):
        return None
    if any(pa.types.is_nested(f.type) for f in reader.schema):
        return None  # objects as Arrow structs would gain every key seen in the file
    return _ndjson_tables(path, reader, chunk_rows, lines)


def _ndjson_tables(
    path: Path, reader: pa_json.StreamingReader, chunk_rows: int, lines: int
) -> Iterator[Chunk]:
    schema = reader.schema
    columns = list(schema.names)
    number = 1
    stopped: list[pa.ArrowException] = []
    for table in _rechunk(_until_invalid(reader, stopped), schema, chunk_rows):
        yield Chunk(columns, None, number, table=table)
        number += table.num_rows
    if stopped:
        yield from _ndjson_chunks(path, chunk_rows, first_line=number)
    elif number - 1 != lines:
        raise RuntimeError(f"{path}: Arrow read {number - 1} rows from {lines} lines")


def _until_invalid(
    reader: pa_json.StreamingReader, stopped: list[pa.ArrowException]
) -> Iterator[pa.RecordBatch]:
    """The reader's batches up to the first block it cannot read (noted in ``stopped``): any
    Arrow error, as the reader's own pass over the file used to treat them."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowException as exc:
            stopped.append(exc)
            return
        yield batch


_SCAN_BYTES = 1 << 22
_JSON_BLOCK_BYTES = 1 << 22
"""Arrow parses a file in blocks of this size (in parallel); a block that cannot be read ends
the columnar reading."""
_BLANKS = np.array([0x20, 0x09, 0x0D], dtype=np.uint8)
_LOOK_BACK = 8


def _object_lines(path: Path) -> int | None:
    """The number of lines if each is plainly one JSON object, on the bytes alone: every line
    ends with ``}``, no ``{`` follows a ``}`` on the same line (with at most a few blanks
    between), and no ``\\u`` escape starts a surrogate (it could be half a character,
    which Arrow would let through). ``None`` if any check fails."""
    lines = 0
    tail = b""
    with path.open("rb") as fh:
        while block := fh.read(_SCAN_BYTES):
            data = tail + block if tail else block
            cut = data.rfind(b"\n") + 1
            piece, tail = data[:cut], data[cut:]
            if piece:
                count = _plain_object_lines(piece)
                if count is None:
                    return None
                lines += count
    if tail:
        if _plain_object_lines(tail + b"\n") is None:
            return None
        lines += 1
    return lines or None


def _plain_object_lines(piece: bytes) -> int | None:
    """``_object_lines`` for whole lines (``piece`` ends with a line break)."""
    a = np.frombuffer(piece, dtype=np.uint8)
    breaks = np.flatnonzero(a == 0x0A)
    if breaks[0] == 0:
        return None  # a blank first line
    last = a[breaks - 1]
    crlf = last == 0x0D
    if crlf.any():
        if (breaks[crlf] < 2).any():
            return None
        last = last.copy()
        last[crlf] = a[breaks[crlf] - 2]
    if not bool((last == 0x7D).all()):
        return None
    slashes = np.flatnonzero(a[:-2] == 0x5C)
    escapes = slashes[a[slashes + 1] == 0x75]
    if bool(np.isin(a[escapes + 2], (0x64, 0x44)).any()):
        return None
    opening = np.flatnonzero(a == 0x7B)
    for back in range(1, _LOOK_BACK + 1):
        opening = opening[opening >= back]
        before = a[opening - back]
        if bool((before == 0x7D).any()):
            return None
        opening = opening[np.isin(before, _BLANKS)]
        if not len(opening):
            return len(breaks)
    return None


def _ndjson_chunks(path: Path, chunk_rows: int, first_line: int = 1) -> Iterator[Chunk]:
    """Line by line, from ``first_line`` (the lines before it were read already)."""
    rows: list[dict[str, object]] = []
    numbers: list[int] = []
    keys: dict[str, None] = {}
    bad: list[tuple[int, str]] = []
    seen_good = emitted = first_line > 1
    number = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if number < first_line or not line.strip():
                continue
            value, problem = _json_line(line)
            if value is None:
                bad.append((number, problem))
                if not seen_good and len(bad) >= _GIVE_UP_AFTER:
                    break
                continue
            seen_good = True
            rows.append(value)
            numbers.append(number)
            keys.update(dict.fromkeys(value))
            if len(rows) == chunk_rows:
                yield _chunk(list(keys), rows, numbers, bad)
                rows, numbers, keys, bad, emitted = [], [], {}, [], True
    if not seen_good and bad:
        first, problem = bad[0]
        raise _unreadable(
            path,
            f"no line is a JSON object (line {first} {problem})",
            'write one JSON object per line, e.g. {"message_id": "m-1", ...}',
        )
    if rows or bad or not emitted:
        yield _chunk(list(keys), rows, numbers, bad, next_number=number + 1)


def _json_line(line: bytes) -> tuple[dict[str, object] | None, str]:
    try:
        value = json.loads(line)
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "is nested too deeply"
    if not isinstance(value, dict):
        return None, f"is a JSON {type(value).__name__}, not an object"
    if b"\\ud" in line.lower() and not encodable(value):
        return None, "has a \\u escape that is half of a character (a lone surrogate)"
    return value, ""


def encodable(value: object) -> bool:
    """Whether every string in a decoded JSON value is valid Unicode (no lone surrogates)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (imports record it, and key idempotent re-imports on it)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RowProblem(Protocol):
    """What a reject file needs of a row error (``profile.records.RowError`` has it)."""

    @property
    def row(self) -> int: ...
    @property
    def field(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def fix(self) -> str: ...


def _reject_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def write_rejects(
    path: Path,
    columns: Sequence[str],
    rows: Iterable[tuple[int, Mapping[str, object]]],
    errors: Iterable[RowProblem],
) -> Path:
    """``<file>.rejects.csv`` beside ``path``: the rejected rows as they were, each with its
    reasons and fixes, so that they can be corrected and imported again."""
    target = path.with_name(f"{path.stem}.rejects.csv")
    reasons: dict[int, list[str]] = {}
    for e in errors:
        reasons.setdefault(e.row, []).append(f"{e.field}: {e.reason} (fix: {e.fix})")
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "reasons", *columns])
        for number, row in rows:
            cells = [_reject_cell(row.get(c)) for c in columns]
            writer.writerow([number, "; ".join(reasons.get(number, [])), *cells])
    return target
