"""Vectorised validation of bulk interaction rows: a whole chunk → the log's Arrow rows at once.

``convert_chunk`` applies the rules of ``counterpoint.event.rows.validate_event_row`` to a
whole Arrow table (a Parquet chunk) and returns the valid rows already in ``LOG_SCHEMA``;
``convert_rows`` does the same for rows read as Python dicts (CSV, NDJSON). The result equals
``events_to_arrow`` of the per-row validator's events, row for row and byte for byte.

How the rules are applied:

* Values with one obvious form are checked column-wise with ``pyarrow.compute`` (and numpy
  over the string buffers): message ids and the free-text fields (Python's ``str.strip``
  whitespace, the length limit), ISO 8601 timestamps of the common form
  ``YYYY-MM-DD[T ]hh:mm:ss[.f{1,6}](Z|±hh:mm)`` and Parquet timestamps, and ``properties``
  JSON text that ``json.dumps`` would write back unchanged (compact, no duplicate keys, no
  ``\\u`` escapes, integers and short plain decimals only, at most one level of arrays).
  Distinct user and anonymous ids of the common ASCII forms (NPI with its check digit,
  e-mail, CRM, national, anonymous tokens) get their canonical key column-wise too.
* Everything else is decided by the per-row validator's own field rules (``_Fields`` and
  the cached identifier parsers of event/rows.py), called once per *distinct* value of a
  column (phone numbers and other ids, codes, markets, booleans, odd timestamps, other
  JSON), or once per row for values that cannot be hashed (dict ``properties`` of NDJSON,
  Parquet structs).
* Rows found invalid are passed to ``validate_event_row`` itself, so their errors are exactly
  the existing ones. Should it accept such a row (a bug here, logged as a warning; or a text
  with a lone surrogate from Python rows, which the log's Arrow form cannot hold), its event
  is kept, in file order, through ``events_to_arrow``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from counterpoint.event.arrow import LOG_SCHEMA, _dumps, events_to_arrow
from counterpoint.event.canonical import EventKind, LogEvent
from counterpoint.event.rows import (
    _ACTIONS,
    _ACTOR_TYPES,
    _CHANNELS,
    _FAST_BOOLS,
    _FUNCTIONS,
    _KINDS,
    _MESSAGE_ID_MAX,
    _TEXT_MAX,
    EVENT_COLUMNS,
    MAX_FUTURE,
    _anonymous_subject,
    _fast_markets,
    _Fields,
    _market,
    _properties,
    _RefusedError,
    _synthetic,
    _user_subject,
    validate_event_row,
)
from counterpoint.profile.records import RowError

__all__ = ["InvalidRow", "convert_chunk", "convert_rows"]

_log = logging.getLogger(__name__)

InvalidRow = tuple[int, dict[str, object], list[RowError]]
"""(row number, the row as read, every problem of the row) of a refused row."""

_TS: Final = pa.timestamp("us", tz="UTC")
_STR: Final = pa.string()
_BOOL: Final = pa.bool_()
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_US: Final = (dt.datetime(1, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)

_BoolArray = npt.NDArray[np.bool_]
_IntArray = npt.NDArray[np.int64]
_Rule = Callable[[object], tuple[Any, ...]]

# Every character for which Python's ``str.isspace`` is true: what ``str.strip()`` removes
# (tests/unit/test_bulk_rows.py checks the list against Python).
_SPACES: Final = "".join(map(chr, (
    *range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
)))  # fmt: skip
_SPACE_CLASS: Final = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _SPACES) + "]"
_EDGE_SPACE: Final = f"^{_SPACE_CLASS}|{_SPACE_CLASS}$"
_FIRST_BYTES: Final = np.zeros(256, dtype=np.bool_)
"""First UTF-8 bytes of the white space characters (a prefilter for ``_EDGE_SPACE``)."""
_FIRST_BYTES[[c.encode()[0] for c in _SPACES]] = True
_LAST_BYTES: Final = np.zeros(256, dtype=np.bool_)
_LAST_BYTES[[c.encode()[-1] for c in _SPACES]] = True

# JSON text that decoding then ``_dumps`` gives back unchanged (duplicate keys aside, checked
# separately): no white space, strings without \u or \/ escapes or raw control characters,
# integers without -0 or leading zeros, decimals of at most 15 significant digits written as
# ``_dumps`` writes them (as Python's repr does, in this range).
_J_STR: Final = r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt])*"'
_J_FLOAT: Final = (
    r"-?(?:[1-9][0-9]{0,6}\.(?:0|[0-9]{0,7}[1-9])|0\.(?:0|0{0,3}[1-9](?:[0-9]{0,6}[1-9])?))"
)
_J_INT: Final = r"(?:0|-?[1-9][0-9]{0,17})"
_J_SCALAR: Final = f"(?:{_J_STR}|{_J_FLOAT}|{_J_INT}|true|false|null)"
_J_VALUE: Final = f"(?:{_J_SCALAR}|\\[(?:{_J_SCALAR}(?:,{_J_SCALAR})*)?\\])"
_J_OBJECT: Final = f"^\\{{(?:{_J_STR}:{_J_VALUE}(?:,{_J_STR}:{_J_VALUE})*)?\\}}$"
_J_MEMBER: Final = f"({_J_STR}):{_J_VALUE}[,}}]"
"""One member and the separator after it (which makes the match take the whole value)."""

_TEXT_FIELDS: Final = ("event", "brand", "content_id", "slide", "actor_id")

# Identifiers whose canonical key needs no Python (profile/identifiers.py): ASCII only, where
# Python's \w, \s and str.lower agree with these classes.
_NPI: Final = r"^(?:npi:)?[0-9]{10}$"
_EMAIL_CHAR: Final = r"[!-?A-~]"  # printable ASCII but @ (and white space)
_LABEL: Final = r"[!-\-/-?A-~]+"  # … and no dot: a domain label is never empty
_EMAIL_TYPED: Final = f"^email:{_EMAIL_CHAR}+@{_LABEL}(?:\\.{_LABEL})+$"
_BARE_CHAR: Final = r"[!-9;-?A-~]"  # … and no colon either
_BARE_LABEL: Final = r"[!-\-/-9;-?A-~]+"
_EMAIL_BARE: Final = f"^{_BARE_CHAR}+@{_BARE_LABEL}(?:\\.{_BARE_LABEL})+$"
_EMAIL_MAX: Final = 254  # longer addresses are refused by the rule (profile/identifiers.py)
_ID_CHAR: Final = r"[A-Za-z0-9_.\-:/@+#]"
_CRM_TYPED: Final = f"^crm:{_ID_CHAR}{{1,128}}$"
_CRM_BARE: Final = r"^[A-Za-z0-9_.\-/#][A-Za-z0-9_.\-/+#]{0,127}$"  # no @ or colon, no + first
_NATIONAL_TYPED: Final = r"^national:[A-Z]{2}-[A-Za-z0-9.\-/]{1,64}$"
_ANON_TOKEN: Final = f"^{_ID_CHAR}{{1,128}}$"


@dataclass(slots=True)
class _Column:
    """One input column: an Arrow array, and the values that have no place in it."""

    values: pa.Array
    extra: dict[int, object] = field(default_factory=dict)
    """Row index → the Python value (the array holds null there)."""


# --- public API -------------------------------------------------------------------------------


def convert_chunk(
    table: pa.Table,
    *,
    file: str,
    source: str,
    received_at: dt.datetime,
    first_row_number: int = 1,
    row_numbers: Sequence[int] | None = None,
) -> tuple[pa.Table, list[InvalidRow]]:
    """The valid rows of an interaction chunk in ``LOG_SCHEMA`` (file order), and the others.

    Valid rows are exactly those for which ``validate_event_row`` returns a ``LogEvent`` and
    the table equals ``events_to_arrow`` of those events. Each refused row comes with its row
    number (``row_numbers[i]``, else ``first_row_number + i``), the row as a dict (as
    ``read_chunks`` gives it) and the errors of ``validate_event_row``.
    """
    columns = {name: _Column(_normalise(table.column(name))) for name in _known(table.column_names)}
    return _convert(
        columns,
        table.num_rows,
        lambda indices: _table_rows(table, indices),
        file=file,
        source=source,
        received_at=received_at,
        numbers=_numbers(table.num_rows, first_row_number, row_numbers),
    )


def convert_rows(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    *,
    file: str,
    source: str,
    received_at: dt.datetime,
    first_row_number: int = 1,
    row_numbers: Sequence[int] | None = None,
) -> tuple[pa.Table, list[InvalidRow]]:
    """``convert_chunk`` for rows read as dicts (CSV strings, NDJSON values).

    ``columns`` names the keys to read (a ``Chunk``'s columns); unknown ones are ignored, as
    the row validator ignores them.
    """
    built = {name: _python_column(rows, name) for name in _known(columns)}
    return _convert(
        built,
        len(rows),
        lambda indices: [dict(rows[i]) for i in indices],
        file=file,
        source=source,
        received_at=received_at,
        numbers=_numbers(len(rows), first_row_number, row_numbers),
    )


# --- the conversion ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Checked:
    valid: _BoolArray
    """Per row, whether every rule holds."""
    table: pa.Table
    """The valid rows in ``LOG_SCHEMA``."""


def _convert(
    columns: dict[str, _Column],
    n: int,
    rows_at: Callable[[list[int]], list[dict[str, object]]],
    *,
    file: str,
    source: str,
    received_at: dt.datetime,
    numbers: Sequence[int],
) -> tuple[pa.Table, list[InvalidRow]]:
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=dt.UTC)
    checked = _check(columns, n, source=source, received_at=received_at)
    refused = np.flatnonzero(~checked.valid).tolist()
    invalid: list[InvalidRow] = []
    rescued: list[tuple[int, LogEvent]] = []
    for index, row in zip(refused, rows_at(refused), strict=True):
        number = numbers[index]
        result = validate_event_row(
            row, row_number=number, file=file, source=source, received_at=received_at
        )
        if isinstance(result, LogEvent):
            _log.warning("bulk validation refused row %s of %s, which is valid", number, file)
            rescued.append((index, result))
        else:
            invalid.append((number, row, result))
    table = checked.table
    if rescued:
        table = _merge(table, np.flatnonzero(checked.valid), rescued)
    return table, invalid


def _merge(table: pa.Table, positions: _IntArray, rescued: list[tuple[int, LogEvent]]) -> pa.Table:
    """``table`` (rows at ``positions``) and the rescued events, in file order."""
    extra = events_to_arrow([event for _, event in rescued])
    where = np.concatenate([positions, np.array([i for i, _ in rescued], dtype=np.int64)])
    both = pa.concat_tables([table, extra])
    return both.take(pa.array(np.argsort(where, kind="stable")))


def _check(
    columns: Mapping[str, _Column], n: int, *, source: str, received_at: dt.datetime
) -> _Checked:
    """Every rule of ``validate_event_row`` over whole columns."""

    def column(name: str) -> _Column:
        return columns.get(name) or _Column(pa.nulls(n))

    message = _text(column("message_id"), _MESSAGE_ID_MAX)
    kind = _apply(column("type"), _kind_rule, (_BOOL, _STR))
    user = _subjects(column("user_id"), _user_rule, _user_fast)
    anonymous = _subjects(column("anonymous_id"), _anonymous_rule, _anonymous_fast)
    identify = kind.equal(1, EventKind.IDENTIFY.value)
    has_user = user.present(1)
    has_anonymous = anonymous.present(1)
    valid = message.flags(0) & message.present(1) & kind.flags(0) & user.flags(0)
    valid &= anonymous.flags(0) & ~(identify & ~has_user)
    valid &= np.where(has_user, user.flags(2), has_anonymous & anonymous.flags(2))
    codes: dict[str, _Values] = {}
    for name, table in (
        ("channel", _CHANNELS),
        ("action", _ACTIONS),
        ("actor_type", _ACTOR_TYPES),
        ("function", _FUNCTIONS),
    ):
        codes[name] = _apply(column(name), _code_rule(name, table), (_BOOL, _STR))
        valid &= codes[name].flags(0)
    for name in ("channel", "action"):  # required for track rows
        valid &= identify | codes[name].present(1)
    texts: dict[str, _Values] = {}
    for name in _TEXT_FIELDS:
        texts[name] = _text(column(name), _TEXT_MAX)
        valid &= texts[name].flags(0)
    stamp_ok, occurred_at = _timestamps(column("timestamp"), received_at + MAX_FUTURE)
    valid &= stamp_ok
    properties = _properties_json(column("properties"))
    valid &= properties.flags(0)
    market = _apply(column("market"), _market_rule, (_BOOL, _STR))
    valid &= market.flags(0)
    synthetic = _synthetic_column(column("synthetic"))
    valid &= synthetic.flags(0)

    rows = np.flatnonzero(valid)
    count = len(rows)
    identify_kept = identify[rows]
    prefix = np.where(identify_kept, '{"traits":', '{"properties":')
    subject = pc.if_else(pa.array(has_user[rows], _BOOL), user.at(3, rows), anonymous.at(3, rows))
    arrays = {
        "message_id": message.at(1, rows),
        "kind": pa.array(np.where(identify_kept, "identify", "track"), _STR),
        "subject": subject,
        "occurred_at": pa.array(occurred_at[rows], pa.int64()).cast(_TS),
        "received_at": pa.repeat(pa.scalar(received_at, _TS), count),
        "source": pa.repeat(pa.scalar(source, _STR), count),
        "channel": codes["channel"].at(1, rows),
        "action": codes["action"].at(1, rows),
        "event_name": texts["event"].at(1, rows),
        "anonymous_id": anonymous.at(1, rows),
        "brand": texts["brand"].at(1, rows),
        "content_id": texts["content_id"].at(1, rows),
        "slide": texts["slide"].at(1, rows),
        "actor_type": codes["actor_type"].at(1, rows),
        "actor_id": texts["actor_id"].at(1, rows),
        "function": codes["function"].at(1, rows),
        "market": market.at(1, rows),
        "payload": pc.binary_join_element_wise(
            pa.array(prefix, _STR), properties.at(1, rows), "}", ""
        ),
        "synthetic": synthetic.at(1, rows),
    }
    table = pa.Table.from_arrays([arrays[f.name] for f in LOG_SCHEMA], schema=LOG_SCHEMA)
    return _Checked(valid, table)


# --- columns ----------------------------------------------------------------------------------


def _known(names: Sequence[str]) -> list[str]:
    return [name for name in dict.fromkeys(names) if name in EVENT_COLUMNS]


def _numbers(n: int, first: int, numbers: Sequence[int] | None) -> Sequence[int]:
    if numbers is None:
        return range(first, first + n)
    if len(numbers) != n:
        raise ValueError(f"{len(numbers)} row numbers for {n} rows")
    return numbers


def _normalise(data: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, whose values in Python are those ``read_chunks`` gives."""
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks() if data.num_chunks else pa.array([], data.type)
    if pa.types.is_dictionary(data.type):
        data = data.dictionary_decode()
    if pa.types.is_large_string(data.type) or pa.types.is_string_view(data.type):
        data = data.cast(_STR)
    elif pa.types.is_timestamp(data.type) and data.type.unit == "ns":
        data = data.cast(pa.timestamp("us", data.type.tz), safe=False)  # as read_chunks does
    return data


def _python_column(rows: Sequence[Mapping[str, object]], name: str) -> _Column:
    """A column of dict rows: an Arrow array, and the values it cannot hold as they are aside."""
    try:
        values: list[object] = list(map(itemgetter(name), rows))
    except KeyError:
        values = [row.get(name) for row in rows]
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        array = None
    if array is not None:
        if pa.types.is_string(array.type) or pa.types.is_null(array.type):
            return _Column(_normalise(array))
        exact = {pa.bool_(): bool, pa.int64(): int}.get(array.type)
        if exact is not None and {type(v) for v in values} <= {exact, type(None)}:
            return _Column(array)
    plain = [type(v) is str and _utf8(v) for v in values]
    extra = {
        i: v for i, (v, p) in enumerate(zip(values, plain, strict=True)) if v is not None and not p
    }
    strings = [v if p else None for v, p in zip(values, plain, strict=True)]
    return _Column(pa.array(strings, _STR), extra)


def _table_rows(table: pa.Table, indices: list[int]) -> list[dict[str, object]]:
    """The rows at ``indices`` as dicts, as ``read_chunks`` gives Parquet rows."""
    if not indices:
        return []
    taken = table.take(pa.array(indices, pa.int64()))
    fields = [
        f.with_type(pa.timestamp("us", f.type.tz))
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns"
        else f
        for f in taken.schema
    ]
    if pa.schema(fields) != taken.schema:
        taken = taken.cast(pa.schema(fields), safe=False)
    data: dict[str, list[object]] = taken.to_pydict()
    names = list(data)
    return [dict(zip(names, values, strict=True)) for values in zip(*data.values(), strict=True)]


def _np(values: pa.Array) -> _BoolArray:
    """A boolean Arrow array as numpy (null is false)."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


@dataclass(slots=True)
class _Values:
    """A rule's results: per entry, one array per element of the rule's result tuple; per row,
    the entry holding the row's result."""

    arrays: list[pa.Array]
    index: _IntArray | None
    """Row → entry; ``None`` when entry i is row i."""

    def _rows(self, entries: _BoolArray) -> _BoolArray:
        return entries if self.index is None else entries[self.index]

    def flags(self, k: int) -> _BoolArray:
        """Element ``k`` (a boolean) per row."""
        return self._rows(_np(self.arrays[k]))

    def present(self, k: int) -> _BoolArray:
        """Whether element ``k`` is not None, per row."""
        return self._rows(_np(self.arrays[k].is_valid()))

    def equal(self, k: int, value: object) -> _BoolArray:
        return self._rows(_np(pc.equal(self.arrays[k], value)))

    def at(self, k: int, rows: _IntArray) -> pa.Array:
        """Element ``k`` of these rows."""
        where = rows if self.index is None else self.index[rows]
        return self.arrays[k].take(pa.array(where, pa.int64()))


def _apply(column: _Column, rule: _Rule, types: Sequence[pa.DataType]) -> _Values:
    """``rule`` over every value of the column, called once per distinct value."""
    data = column.values
    n = len(data)
    if data.null_count == n:
        results = [rule(None)]
        index = np.zeros(n, dtype=np.int64)
    else:
        try:
            encoded = pc.dictionary_encode(data)
        except pa.ArrowNotImplementedError:  # unhashable values: dicts, lists
            results = [rule(value) for value in data.to_pylist()]
            index = np.arange(n, dtype=np.int64)
        else:
            results = [rule(value) for value in encoded.dictionary.to_pylist()]
            indices = encoded.indices
            if indices.null_count:
                results.append(rule(None))
                indices = pc.fill_null(indices, len(results) - 1)
            index = np.asarray(indices.to_numpy(), dtype=np.int64)
    return _with_extra(_Values(_transpose(results, types), index), column.extra, rule, types)


def _transpose(results: Sequence[tuple[Any, ...]], types: Sequence[pa.DataType]) -> list[pa.Array]:
    try:
        return [pa.array([r[k] for r in results], t) for k, t in enumerate(types)]
    except UnicodeEncodeError:  # a lone surrogate, from Python rows: leave it to the row path
        return _transpose([_encodable(r) for r in results], types)


def _encodable(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """``result``, or a refusal when one of its texts cannot be written as UTF-8."""
    if all(type(v) is not str or _utf8(v) for v in result):
        return result
    return (False, *([None] * (len(result) - 1)))


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _with_extra(
    values: _Values, extra: Mapping[int, object], rule: _Rule, types: Sequence[pa.DataType]
) -> _Values:
    """``values`` with the rule's results for the ``extra`` values (as entries of their own)."""
    if not extra:
        return values
    base = len(values.arrays[0])
    n = base if values.index is None else len(values.index)
    index = np.arange(n, dtype=np.int64) if values.index is None else values.index.copy()
    where = sorted(extra)
    index[where] = np.arange(base, base + len(where))
    added = _transpose([rule(extra[i]) for i in where], types)
    arrays = [pa.concat_arrays([a, b]) for a, b in zip(values.arrays, added, strict=True)]
    return _Values(arrays, index)


# --- subjects ---------------------------------------------------------------------------------

_Fast = Callable[[pa.Array], tuple[_BoolArray, _BoolArray, pa.Array]]
"""Texts → (handled, valid, subject) for the identifiers whose key needs no Python."""


def _subjects(column: _Column, rule: _Rule, fast: _Fast) -> _Values:
    """(text ok, text, subject ok, subject), as ``_Fields.text`` then ``_Fields.subject``,
    per distinct value; keys of the common forms are built column-wise."""
    data = column.values
    if not pa.types.is_string(data.type) or data.null_count == len(data):
        return _apply(column, rule, (_BOOL, _STR, _BOOL, _STR))
    encoded = pc.dictionary_encode(data)
    distinct = _text(_Column(encoded.dictionary), _TEXT_MAX)
    text_ok, text = distinct.arrays
    handled, valid, subject = fast(text)
    handled &= _np(text_ok) & _np(text.is_valid())
    subject_ok = pa.array(handled & valid, _BOOL)
    subject = pc.if_else(subject_ok, subject, pa.scalar(None, _STR))
    rest = np.flatnonzero(~handled)
    if len(rest):  # the other forms, and refusals: the validator's rule
        found = _transpose(
            [rule(value) for value in text.take(pa.array(rest)).to_pylist()],
            (_BOOL, _STR, _BOOL, _STR),
        )
        at = np.zeros(len(handled), dtype=np.bool_)
        at[rest] = True
        mask = pa.array(at, _BOOL)
        subject_ok = pc.replace_with_mask(subject_ok, mask, found[2])
        subject = pc.replace_with_mask(subject, mask, found[3])
    arrays = [text_ok, text, subject_ok, subject]
    indices = encoded.indices
    if indices.null_count:
        arrays = [
            pa.concat_arrays([a, r])
            for a, r in zip(
                arrays, _transpose([rule(None)], (_BOOL, _STR, _BOOL, _STR)), strict=True
            )
        ]
        indices = pc.fill_null(indices, len(handled))
    values = _Values(arrays, np.asarray(indices.to_numpy(), dtype=np.int64))
    return _with_extra(values, column.extra, rule, (_BOOL, _STR, _BOOL, _STR))


def _user_fast(text: pa.Array) -> tuple[_BoolArray, _BoolArray, pa.Array]:
    """NPIs (typed or bare), ASCII e-mail addresses (typed, or bare without a colon), CRM ids
    (typed, or bare without @ or colon and not starting with +) and national ids with an
    upper-case country, as ``parse_user_id``; phone numbers and other forms are left out."""
    npi = _np(pc.match_substring_regex(text, _NPI))
    length = np.asarray(pc.utf8_length(text).fill_null(0).to_numpy(zero_copy_only=False))
    email_typed = _np(pc.match_substring_regex(text, _EMAIL_TYPED)) & (
        length <= _EMAIL_MAX + len("email:")
    )
    email_bare = _np(pc.match_substring_regex(text, _EMAIL_BARE)) & (length <= _EMAIL_MAX)
    crm_typed = _np(pc.match_substring_regex(text, _CRM_TYPED))
    crm_bare = _np(pc.match_substring_regex(text, _CRM_BARE)) & ~npi
    national = _np(pc.match_substring_regex(text, _NATIONAL_TYPED))
    valid = np.ones(len(text), dtype=np.bool_)
    if npi.any():
        valid[npi] = _npi_valid(_Strings.of(text.filter(pa.array(npi, _BOOL))))
    lower = pc.ascii_lower(text)
    subject = _where(
        [
            (npi, pc.binary_join_element_wise("npi:", pc.utf8_slice_codeunits(text, -10), "")),
            (email_typed, lower),
            (email_bare, pc.binary_join_element_wise("email:", lower, "")),
            (crm_typed | national, text),
            (crm_bare, pc.binary_join_element_wise("crm:", text, "")),
        ],
        len(text),
    )
    return npi | email_typed | email_bare | crm_typed | crm_bare | national, valid, subject


def _anonymous_fast(text: pa.Array) -> tuple[_BoolArray, _BoolArray, pa.Array]:
    """ASCII tokens, as ``parse_identifier("anon", …)``."""
    token = _np(pc.match_substring_regex(text, _ANON_TOKEN))
    subject = pc.binary_join_element_wise("anon:", text, "")
    return token, np.ones(len(text), dtype=np.bool_), subject


def _where(choices: Sequence[tuple[_BoolArray, pa.Array]], n: int) -> pa.Array:
    """Per row, the array of the first choice whose flag is set (else null)."""
    result = pa.nulls(n, _STR)
    for flag, values in reversed(choices):
        if flag.any():
            result = pc.if_else(pa.array(flag, _BOOL), values, result)
    return result


def _npi_valid(text: _Strings) -> _BoolArray:
    """Whether the last ten (ASCII) digits pass the NPI check (``npi_is_valid``): the Luhn
    algorithm over 80840 and the first nine digits."""
    digits = [text.byte(text.end - 10 + k).astype(np.int64) - _ZERO for k in range(10)]
    total = np.full(len(text.start), 24, dtype=np.int64)  # the prefix 80840, doubled in turn
    for k in range(9):
        digit = digits[k]
        if k % 2 == 0:  # counted from the right of 80840 + nine digits, these are doubled
            digit = digit * 2
            digit = np.where(digit > 9, digit - 9, digit)
        total += digit
    valid: _BoolArray = (10 - total % 10) % 10 == digits[9]
    return valid


# --- field rules: the per-row validator's own, on one value -----------------------------------


def _kind_rule(value: object) -> tuple[bool, str]:
    f = _Fields({"type": value}, "", 0)
    kind = f.code("type", _KINDS, required=False) or EventKind.TRACK
    return not f.errors, kind.value


def _code_rule(name: str, codes: Mapping[str, Any]) -> _Rule:
    def rule(value: object) -> tuple[bool, str | None]:
        f = _Fields({name: value}, "", 0)
        found = f.code(name, codes, required=False)
        return not f.errors, None if found is None else found.value

    return rule


def _text_rule(max_len: int) -> _Rule:
    def rule(value: object) -> tuple[bool, str | None]:
        f = _Fields({"text": value}, "", 0)
        text = f.text("text", max_len)
        return not f.errors, text

    return rule


def _subject_rule(name: str, parse: Callable[[str], str | _RefusedError]) -> _Rule:
    """(text ok, text, subject ok, subject), as ``_Fields.text`` then ``_Fields.subject``."""

    def rule(value: object) -> tuple[bool, str | None, bool, str | None]:
        f = _Fields({name: value}, "", 0)
        text = f.text(name)
        if f.errors or text is None:
            return not f.errors, None, False, None
        found = parse(text)
        if isinstance(found, _RefusedError):
            return True, text, False, None
        return True, text, True, found

    return rule


_user_rule: Final = _subject_rule("user_id", _user_subject)
_anonymous_rule: Final = _subject_rule("anonymous_id", _anonymous_subject)


def _market_rule(value: object) -> tuple[bool, str | None]:
    f = _Fields({"market": value}, "", 0)
    market = f.parsed("market", _market, _fast_markets())
    return not f.errors, market


def _synthetic_rule(value: object) -> tuple[bool, bool]:
    f = _Fields({"synthetic": value}, "", 0)
    flag = f.parsed("synthetic", _synthetic, _FAST_BOOLS) or False
    return not f.errors, flag


def _properties_rule(value: object) -> tuple[bool, str | None]:
    """(ok, the payload's inner JSON text: ``_dumps`` of the properties)."""
    f = _Fields({"properties": value}, "", 0)
    properties = f.parsed("properties", _properties)
    if f.errors:
        return False, None
    return True, _dumps(properties or {})


def _timestamp_rule(limit: dt.datetime) -> _Rule:
    def rule(value: object) -> tuple[bool, int]:
        f = _Fields({"timestamp": value}, "", 0)
        stamp = f.timestamp(limit)
        if stamp is None:
            return False, 0
        return True, (stamp - _EPOCH) // dt.timedelta(microseconds=1)

    return rule


# --- vectorised fields ------------------------------------------------------------------------


@dataclass(slots=True)
class _Strings:
    """The layout of a string array: where each value starts and ends in ``data``."""

    start: _IntArray
    end: _IntArray
    data: npt.NDArray[np.uint8]
    valid: _BoolArray

    @classmethod
    def of(cls, values: pa.Array) -> _Strings:
        _, offsets, data = values.buffers()
        n, at = len(values), values.offset
        bounds = np.frombuffer(offsets, dtype=np.int32)[at : at + n + 1].astype(np.int64)
        text = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else None
        return cls(
            start=bounds[:-1],
            end=bounds[1:],
            data=np.zeros(1, dtype=np.uint8) if text is None else text,
            valid=_np(values.is_valid()),
        )

    def byte(self, at: _IntArray) -> npt.NDArray[np.uint8]:
        """The byte at each position (clipped to the data)."""
        return self.data[np.clip(at, 0, len(self.data) - 1)]


def _text(column: _Column, max_len: int) -> _Values:
    """(ok, stripped text or None), as ``_Fields.text``."""
    data = column.values
    rule = _text_rule(max_len)
    if not pa.types.is_string(data.type):
        return _apply(column, rule, (_BOOL, _STR))
    layout = _Strings.of(data)
    filled = layout.valid & (layout.end > layout.start)
    maybe = filled & (
        _FIRST_BYTES[layout.byte(layout.start)] | _LAST_BYTES[layout.byte(layout.end - 1)]
    )
    if maybe.any():
        candidates = np.flatnonzero(maybe)
        padded = _np(pc.match_substring_regex(data.take(pa.array(candidates)), _EDGE_SPACE))
        if padded.any():
            mask = np.zeros(len(data), dtype=np.bool_)
            mask[candidates[padded]] = True
            strip = pa.array(mask, _BOOL)
            stripped = [text.strip() for text in data.filter(strip).to_pylist()]
            data = pc.replace_with_mask(data, strip, pa.array(stripped, _STR))
            layout = _Strings.of(data)
    size = layout.end - layout.start
    ok = np.ones(len(data), dtype=np.bool_)
    long = layout.valid & (size > max_len)  # bytes; characters are checked below
    if long.any():
        ok[long] = np.asarray(pc.utf8_length(data.filter(pa.array(long))).to_numpy()) <= max_len
    none = layout.valid & ((size == 0) | ~ok)  # empty, or refused
    if none.any():
        data = pc.if_else(pa.array(none, _BOOL), pa.scalar(None, _STR), data)
    return _with_extra(
        _Values([pa.array(ok, _BOOL), data], None), column.extra, rule, (_BOOL, _STR)
    )


def _synthetic_column(column: _Column) -> _Values:
    data = column.values
    if pa.types.is_boolean(data.type):
        values = _Values([pa.repeat(pa.scalar(True), len(data)), pc.fill_null(data, False)], None)
        return _with_extra(values, column.extra, _synthetic_rule, (_BOOL, _BOOL))
    return _apply(column, _synthetic_rule, (_BOOL, _BOOL))


def _timestamps(column: _Column, limit: dt.datetime) -> tuple[_BoolArray, _IntArray]:
    """(ok, microseconds since the epoch, UTC), as ``_Fields.timestamp``."""
    data = column.values
    n = len(data)
    limit_us = (limit - _EPOCH) // dt.timedelta(microseconds=1)
    ok = np.zeros(n, dtype=np.bool_)
    micros = np.zeros(n, dtype=np.int64)
    slow = np.ones(n, dtype=np.bool_)
    if pa.types.is_timestamp(data.type):
        # A Parquet timestamp is an instant (a naive one is read as UTC, like the validator).
        values = data.cast(pa.timestamp("us", data.type.tz)).view(pa.int64())
        micros = np.asarray(pc.fill_null(values, 0).to_numpy(), dtype=np.int64)
        ok = _np(values.is_valid()) & (micros <= limit_us)
        slow[:] = False
    elif pa.types.is_string(data.type):
        fast, fast_ok, fast_micros = _parse_iso(_Strings.of(data), limit_us)
        ok[fast], micros[fast] = fast_ok[fast], fast_micros[fast]
        slow = ~fast
    rule = _timestamp_rule(limit)
    if slow.any():
        part = data if slow.all() else data.filter(pa.array(slow, _BOOL))
        found = _apply(_Column(part), rule, (_BOOL, pa.int64()))
        ok[slow] = found.flags(0)
        micros[slow] = np.asarray(found.arrays[1].to_numpy(), dtype=np.int64)[found.index]
    for index, value in column.extra.items():
        ok[index], micros[index] = rule(value)
    return ok, micros


_DAYS_IN_MONTH: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_ZERO, _NINE = ord("0"), ord("9")


def _parse_iso(text: _Strings, limit_us: int) -> tuple[_BoolArray, _BoolArray, _IntArray]:
    """Strings ``YYYY-MM-DD[T ]hh:mm:ss[.f{1,6}](Z|±hh:mm)`` as ``datetime.fromisoformat``
    reads them and the validator turns them into UTC: (of this form with every part in range,
    ok, microseconds)."""
    start, end = text.start, text.end

    def at(position: _IntArray) -> _IntArray:
        return text.byte(position).astype(np.int64)

    def digits(position: _IntArray, width: int) -> tuple[_BoolArray, _IntArray]:
        good = np.ones(len(position), dtype=np.bool_)
        value = np.zeros(len(position), dtype=np.int64)
        for k in range(width):
            byte = at(position + k)
            good &= (byte >= _ZERO) & (byte <= _NINE)
            value = value * 10 + byte - _ZERO
        return good, value

    size = end - start
    shape = text.valid & (size >= 20) & (size <= 32)
    parts = []
    for offset, width in ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2)):
        good, value = digits(start + offset, width)
        shape &= good
        parts.append(value)
    year, month, day, hour, minute, second = parts
    for offset, char in ((4, "-"), (7, "-"), (13, ":"), (16, ":")):
        shape &= at(start + offset) == ord(char)
    separator = at(start + 10)
    shape &= (separator == ord("T")) | (separator == ord(" "))
    zulu = at(end - 1) == ord("Z")
    zone_at = np.where(zulu, end - 1, end - 6)
    sign = at(end - 6)
    zone_hours_ok, zone_hours = digits(end - 5, 2)
    zone_minutes_ok, zone_minutes = digits(end - 2, 2)
    shape &= zulu | (
        ((sign == ord("+")) | (sign == ord("-")))
        & zone_hours_ok
        & (at(end - 3) == ord(":"))
        & zone_minutes_ok
    )
    places = zone_at - (start + 20)  # digits of the fraction, when there is one
    has_fraction = zone_at > start + 19
    fraction_ok = (at(start + 19) == ord(".")) & (places >= 1) & (places <= 6)
    fraction = np.zeros(len(start), dtype=np.int64)
    for k in range(6):
        byte = at(start + 20 + k)
        inside = k < places
        fraction_ok &= ~inside | ((byte >= _ZERO) & (byte <= _NINE))
        fraction += np.where(inside, (byte - _ZERO) * 10 ** (5 - k), 0)
    shape &= (zone_at == start + 19) | (has_fraction & fraction_ok)

    zone_hours = np.where(zulu, 0, zone_hours)
    zone_minutes = np.where(zulu, 0, zone_minutes)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month - 1, 0, 11)] + ((month == 2) & leap)
    # Out-of-range parts are left to Python, which accepts some (an offset of +01:60).
    fast = shape & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    fast &= (hour <= 23) & (minute <= 59) & (second <= 59)
    fast &= (zone_hours <= 23) & (zone_minutes <= 59)
    offset_us = np.where(sign == ord("-"), -1, 1) * (zone_hours * 60 + zone_minutes) * 60_000_000
    local = _days_from_civil(year, month, day) * 86_400_000_000 + fraction
    local += ((hour * 60 + minute) * 60 + second) * 1_000_000
    micros: _IntArray = local - offset_us
    # A non-zero offset is converted with astimezone, which fails before year 1.
    ok = fast & (micros <= limit_us) & ((offset_us == 0) | (micros >= _MIN_US))
    return fast, ok, micros


def _days_from_civil(year: _IntArray, month: _IntArray, day: _IntArray) -> _IntArray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: _IntArray = era * 146_097 + day_of_era - 719_468
    return days


def _properties_json(column: _Column) -> _Values:
    """(ok, the payload's inner JSON text), as ``_Fields.parsed(_properties)`` then ``_dumps``:
    JSON text of the form ``_J_OBJECT`` without repeated keys is its own inner text."""
    data = column.values
    if not pa.types.is_string(data.type) or data.null_count == len(data):
        return _apply(column, _properties_rule, (_BOOL, _STR))
    encoded = pc.dictionary_encode(data)
    distinct = encoded.dictionary
    kept = _np(pc.match_substring_regex(distinct, _J_OBJECT))
    several = kept & _np(pc.match_substring(distinct, ","))
    if several.any():
        kept[several] = ~_repeated_keys(distinct.filter(pa.array(several, _BOOL)))
    ok = pa.repeat(pa.scalar(True), len(distinct))
    inner = distinct
    if not kept.all():
        others = pa.array(~kept, _BOOL)
        found = _apply(_Column(distinct.filter(others)), _properties_rule, (_BOOL, _STR))
        every = np.arange(int((~kept).sum()), dtype=np.int64)
        ok = pc.replace_with_mask(ok, others, found.at(0, every))
        inner = pc.replace_with_mask(inner, others, found.at(1, every))
    indices = encoded.indices
    if indices.null_count:  # no properties: {}
        ok = pa.concat_arrays([ok, pa.array([True], _BOOL)])
        inner = pa.concat_arrays([inner, pa.array(["{}"], _STR)])
        indices = pc.fill_null(indices, len(distinct))
    values = _Values([ok, inner], np.asarray(indices.to_numpy(), dtype=np.int64))
    return _with_extra(values, column.extra, _properties_rule, (_BOOL, _STR))


def _repeated_keys(objects: pa.Array) -> _BoolArray:
    """Per JSON object of the form ``_J_OBJECT``: whether a key appears more than once."""
    # '{"a":1,"b":[2]}' → '{⏎"a"⏎"b"' → ['{', '"a"', '"b"']: the keys as written, whose
    # escapes are one to one with the decoded keys.
    keys = pc.split_pattern(pc.replace_substring_regex(objects, _J_MEMBER, "\n\\1"), "\n")
    rows = np.asarray(pc.list_parent_indices(keys).to_numpy(), dtype=np.int64)
    codes = np.asarray(pc.dictionary_encode(pc.list_flatten(keys)).indices.to_numpy(), np.int64)
    pairs = np.sort(rows * (int(codes.max(initial=0)) + 1) + codes)
    repeated = np.zeros(len(objects), dtype=np.bool_)
    same = pairs[1:][pairs[1:] == pairs[:-1]]
    repeated[same // (int(codes.max(initial=0)) + 1)] = True
    return repeated
