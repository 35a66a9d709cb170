"""Reading a journey document from YAML, with every problem pointing at its line. Pure.

``load_document(text, source=...)`` parses the YAML once (PyYAML's node API, so every value
keeps its position), checks it against the model (``journey.definition``) and returns the
document, or ``None`` and the problems. Each ``Problem`` carries a machine-readable code, the
dotted path of the field (``flow.nodes.3.next``), the node id where there is one, the 1-based
line in the source and the fix, and renders as ``file:line: [code] node X: message (fix: …)``.

The YAML is read with the YAML 1.2 core rules for plain scalars, not PyYAML's YAML 1.1 ones:
``10:30`` stays the text ``10:30`` (YAML 1.1 reads it as the number 630, a base-60 integer)
and ``NO`` stays the market code (YAML 1.1 reads it as false); only ``true`` and ``false``
are booleans. Checks beyond the model (reachability, loops, content, consent) are in
``journey.validation``; they use the same ``Problem`` and ``LineIndex``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from counterpoint.errors import ValidationFailedError
from counterpoint.journey.definition import JourneyDocument, NodeType

__all__ = [
    "FORMAT_FIX",
    "MAX_SOURCE_CHARS",
    "MAX_VALUES",
    "JourneyInvalidError",
    "LineIndex",
    "LoadedDocument",
    "Problem",
    "Severity",
    "dump_document",
    "load_document",
]

Severity = Literal["error", "warning"]

FORMAT_FIX = "see the journey format in docs/journeys.md"
MAX_SOURCE_CHARS = 1_000_000
"""The longest journey source read (a journey of a few hundred nodes is far below)."""
MAX_VALUES = 200_000
"""The most values a document may expand to (aliases counted as often as they are used)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a journey document, pointing at where it is written."""

    code: str
    message: str
    path: str
    """Dotted path of the field, e.g. ``flow.nodes.3.next`` (``""``: the whole document)."""
    node: str | None
    """The id of the flow node concerned, if any."""
    line: int | None
    """1-based line in the source, when the document was read from text."""
    severity: Severity
    fix: str
    source: str = "<journey>"

    @property
    def error(self) -> bool:
        return self.severity == "error"

    def render(self) -> str:
        """``file:line: [code] node X: message (fix: …)`` (line and node when known)."""
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        node = f"node {self.node}: " if self.node else ""
        tag = self.code if self.error else f"{self.code}, warning"
        return f"{where}: [{tag}] {node}{self.message} (fix: {self.fix})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "node": self.node,
            "line": self.line,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class LineIndex:
    """Where each path of the document starts in the source, and the node ids by index."""

    source: str = "<journey>"
    lines: Mapping[str, int] = field(default_factory=dict)
    node_ids: Mapping[int, str] = field(default_factory=dict)
    touchpoint_ids: Mapping[int, str] = field(default_factory=dict)

    def line(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest written ancestor (a missing field is
        reported where its parent starts)."""
        parts = path.split(".") if path else []
        while parts:
            found = self.lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.lines.get("")

    def node_of(self, path: str) -> str | None:
        """The id of the flow node a path lies in (``flow.nodes.3.next`` → node 3's id)."""
        match = _NODE_PATH.match(path)
        return self.node_ids.get(int(match.group(1))) if match else None

    def problem(
        self,
        code: str,
        message: str,
        path: str,
        fix: str,
        *,
        severity: Severity = "error",
        node: str | None = None,
    ) -> Problem:
        """A problem at ``path``, with its line and (unless given) the node it lies in."""
        return Problem(
            code=code,
            message=message,
            path=path,
            node=node if node is not None else self.node_of(path),
            line=self.line(path),
            severity=severity,
            fix=fix,
            source=self.source,
        )


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """The result of reading one journey source: the document when it is well formed."""

    document: JourneyDocument | None
    problems: list[Problem]
    lines: LineIndex

    @property
    def ok(self) -> bool:
        return self.document is not None and not any(p.error for p in self.problems)

    def require(self) -> JourneyDocument:
        """The document, or ``JourneyInvalidError`` listing every problem."""
        if self.document is None or not self.ok:
            raise JourneyInvalidError([p for p in self.problems if p.error])
        return self.document


class JourneyInvalidError(ValidationFailedError):
    """A journey document with errors; ``extra['problems']`` lists each with its line."""

    code = "journey_invalid"

    def __init__(self, problems: Sequence[Problem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            first.render() + more,
            field=first.path or None,
            fix=first.fix,
            extra={"problems": [p.as_dict() for p in problems]},
        )
        self.problems = list(problems)


# --- YAML with the YAML 1.2 core scalars ---------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's booleans and numbers."""


_CORE = "tag:yaml.org,2002:"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in {_CORE + "bool", _CORE + "int"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_CORE + "bool", re.compile(r"^(?:true|false)$"), list("tf"))
_Loader.add_implicit_resolver(
    _CORE + "int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)) == "true"


_Loader.add_constructor(_CORE + "int", _construct_int)
_Loader.add_constructor(_CORE + "bool", _construct_bool)
# The float resolver of YAML 1.1 also reads base-60 numbers (``1:30.5``): keep it to decimals.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(r"^(?!.*:)" + rx.pattern.removeprefix("^"), rx.flags))
        if tag == _CORE + "float"
        else (tag, rx)
        for tag, rx in resolvers
    ]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}


class _TooLargeError(Exception):
    pass


_NODE_PATH = re.compile(r"^flow\.nodes\.(\d+)(?:\.|$)")


def _key_text(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _walk(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    dupes: list[tuple[str, int]],
    budget: list[int],
) -> None:
    """Record the line of every path under ``node`` (aliases followed, each use counted
    against ``budget``) and every key written twice in one mapping."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLargeError
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            if key is None:
                continue
            child = f"{path}.{key}" if path else key
            if key in seen:
                dupes.append((child, key_node.start_mark.line + 1))
                continue
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, dupes, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}.{i}" if path else str(i)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, dupes, budget)


def _ids(data: Any, section: str, items: str) -> dict[int, str]:
    """The ``id`` of every item of ``data[section][items]`` that has one, by position."""
    part = data.get(section) if isinstance(data, dict) else None
    listed = part.get(items) if isinstance(part, dict) else None
    if not isinstance(listed, list):
        return {}
    return {i: str(x["id"]) for i, x in enumerate(listed) if isinstance(x, dict) and "id" in x}


def _syntax_problem(exc: yaml.YAMLError, source: str) -> Problem:
    line: int | None = None
    message = "the text is not valid YAML"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        if exc.problem:
            message = f"not valid YAML: {exc.problem}"
        context = exc.context_mark
        if exc.context and context is not None and context.line + 1 != line:
            message += f" ({exc.context} that starts at line {context.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
    return Problem(
        "yaml_syntax",
        message,
        "",
        None,
        line,
        "error",
        "fix the YAML at that line (indentation, a missing colon, an unclosed quote); "
        "quote values that contain ': ' or start with a special character",
        source,
    )


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node tree (for lines) and the data constructed from it, in one pass."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


_TOO_DEEP = "the document is nested too deeply to read"
_TOO_DEEP_FIX = "write the journey with fewer nested levels"


def load_document(text: str, *, source: str = "<journey>") -> LoadedDocument:
    """Read a journey document from YAML text; every problem carries its line."""
    empty = LineIndex(source)

    def refuse(message: str, fix: str) -> LoadedDocument:
        return LoadedDocument(None, [empty.problem("too_large", message, "", fix)], empty)

    if len(text) > MAX_SOURCE_CHARS:
        message = f"the source is {len(text):,} characters; at most {MAX_SOURCE_CHARS:,} are read"
        return refuse(message, "split the journey into smaller journeys")
    try:
        root, data = _parse(text)
    except yaml.YAMLError as exc:
        return LoadedDocument(None, [_syntax_problem(exc, source)], empty)
    except RecursionError:
        return refuse(_TOO_DEEP, _TOO_DEEP_FIX)
    lines: dict[str, int] = {}
    dupes: list[tuple[str, int]] = []
    if root is not None:
        lines[""] = root.start_mark.line + 1
        try:
            _walk(root, "", lines, dupes, [MAX_VALUES])
        except _TooLargeError:
            message = f"the document expands to more than {MAX_VALUES:,} values"
            return refuse(message, "write it without deeply repeated aliases (&anchor / *alias)")
        except RecursionError:  # pragma: no cover - the parser is deeper than the walk
            return refuse(_TOO_DEEP, _TOO_DEEP_FIX)
    index = LineIndex(source, lines, _ids(data, "flow", "nodes"), _ids(data, "map", "touchpoints"))
    problems = [
        Problem(
            "duplicate_key",
            f"the key {path.rsplit('.', 1)[-1]!r} is written twice; YAML keeps only the last",
            path,
            index.node_of(path),
            line,
            "error",
            "remove one of the two keys",
            source,
        )
        for path, line in dupes
    ]
    if data is None:
        message = "the document is empty"
        problems.append(index.problem("schema", message, "", "write a journey: " + FORMAT_FIX))
        return LoadedDocument(None, problems, index)
    try:
        document = JourneyDocument.model_validate(data)
    except ValidationError as exc:
        problems.extend(_schema_problems(exc, index, data))
        return LoadedDocument(None, problems, index)
    return LoadedDocument(document, problems, index)


def dump_document(document: JourneyDocument) -> str:
    """The document as YAML (fields by their written names; unset optional fields left out).
    ``load_document`` of the result gives the same document."""
    data = document.model_dump(mode="json", by_alias=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --- pydantic's errors as problems ---------------------------------------------------------------
_NODE_TAGS = frozenset(t.value for t in NodeType)
_CONDITION_TAGS = frozenset({"all", "any", "not", "attribute", "events", "feature", "consent"})
_PREFIX = re.compile(r"^(flow\.nodes|nodes|touchpoints)\.(\d+)(?: \([^)]*\))?: ")


def _path_of(loc: Sequence[int | str]) -> list[str]:
    """Pydantic's location as the path the author wrote: the union tags it inserts (the
    node's ``type`` after ``flow.nodes.N``, a condition's kind before the same-named field)
    are dropped."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        text = str(part)
        if i == 3 and tuple(map(str, loc[:2])) == ("flow", "nodes") and text in _NODE_TAGS:
            continue
        if text in _CONDITION_TAGS and i + 1 < len(loc) and str(loc[i + 1]) == text:
            continue
        parts.append(text)
    return parts


# Codes of the checks the model's validators make, recognised by their messages.
_MESSAGE_CODES: tuple[tuple[str, str, str], ...] = (
    (
        "no such node",
        "unknown_node",
        "point to the id of a node in flow.nodes (or add the missing node)",
    ),
    ("is used twice", "duplicate_id", "give every node and touchpoint its own id"),
    (
        "goes back to the entry node",
        "schema",
        "point to the step after the entry; to let HCPs enter again, set re_entry on the entry",
    ),
    ("is not in the map", "unknown_touchpoint", "name a touchpoint id from map.touchpoints"),
    ("is not one of the stages", "unknown_stage", "use a stage listed in map.stages"),
    (
        "names the map touchpoint",
        "missing_touchpoint",
        "add touchpoint: <id of the map touchpoint this step serves>",
    ),
    ("exactly one entry node", "schema", "a flow has one node of type entry"),
)

_OWNER_FIX = (
    "give the touchpoint an owner with at least a responsible and an accountable role, "
    "e.g. owner: {responsible: marketing_ops, accountable: brand_manager}"
)


def _message(error: ErrorDetails, path: list[str]) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"{path[-1]!r} is required" if path else "a required field is missing"
    if kind == "extra_forbidden":
        return f"{path[-1]!r} is not a field here" if path else "unknown field"
    if kind == "union_tag_invalid":
        return "type must be one of: " + ", ".join(t.value for t in NodeType)
    if kind == "union_tag_not_found":
        return "a node needs a type: " + ", ".join(t.value for t in NodeType)
    if kind == "model_type" and not path:
        return "the document must be a mapping of fields (journey, title, brand, markets, …)"
    return str(error["msg"]).removeprefix("Value error, ")


def _schema_problem(error: ErrorDetails, index: LineIndex, data: Any) -> Problem:
    path = _path_of(error["loc"])
    message = _message(error, path)
    code, fix = "schema", FORMAT_FIX
    if error["type"] == "value_error":
        # A model validator names the list item in its message (``nodes.3 (send): …``),
        # relative to the model it checks, which is where pydantic's location ends.
        prefix = _PREFIX.match(message)
        if prefix:
            path = [*path, *prefix.group(1).split("."), prefix.group(2)]
            message = message[prefix.end() :]
        elif path == ["map"] and message.startswith("stages"):
            path = ["map", "stages"]
        for needle, found_code, found_fix in _MESSAGE_CODES:
            if needle in message:
                code, fix = found_code, found_fix
                break
        path = _field_of(path, code, message, data)
    if path[:2] == ["map", "touchpoints"] and len(path) > 2:
        if _owner_missing(error, path):
            code, fix = "missing_owner", _OWNER_FIX
            message = _owner_message(path)
        tp = index.touchpoint_ids.get(int(path[2])) if path[2].isdigit() else None
        message = f"touchpoint {tp}: {message}" if tp else message
    return index.problem(code, message, ".".join(path), fix)


_TARGET = re.compile(r"goes to '([^']*)'")
_TARGET_FIELDS = ("next", "timeout_next", "then", "else", "refused_next")
_FIELD_OF_CODE = {
    "duplicate_id": "id",
    "unknown_touchpoint": "touchpoint",
    "unknown_stage": "stage",
}


def _item(data: Any, path: list[str]) -> Any:
    """The raw value at ``path`` in the parsed YAML (None when it is not there)."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _field_of(path: list[str], code: str, message: str, data: Any) -> list[str]:
    """Narrow a model validator's item path to the field it is about (the ``next`` that
    names an unknown node, the ``id`` used twice), so the line is the field's."""
    if code in _FIELD_OF_CODE:
        return [*path, _FIELD_OF_CODE[code]]
    if "goes back to the entry node" in message:
        nodes = _item(data, ["flow", "nodes"])
        entries = [
            n.get("id") for n in nodes or [] if isinstance(n, dict) and n.get("type") == "entry"
        ]
        target = entries[0] if entries else None
    else:
        found = _TARGET.search(message)
        target = found.group(1) if found and code == "unknown_node" else None
    node = _item(data, path)
    if target is None or not isinstance(node, dict):
        return path
    for name in _TARGET_FIELDS:
        if node.get(name) == target:
            return [*path, name]
    for i, arm in enumerate(node.get("arms") or []):
        if isinstance(arm, dict) and arm.get("next") == target:
            return [*path, "arms", str(i), "next"]
    return path


def _owner_missing(error: ErrorDetails, path: list[str]) -> bool:
    if len(path) < 4 or path[3] != "owner":
        return False
    if len(path) > 4 and path[4] not in ("responsible", "accountable"):
        return False
    return error["type"] == "missing" or error.get("input") in (None, "")


def _owner_message(path: list[str]) -> str:
    if len(path) == 4:
        return "it has no owner (responsible and accountable roles)"
    return f"its owner has no {path[4]} role"


def _schema_problems(exc: ValidationError, index: LineIndex, data: Any) -> Iterator[Problem]:
    for error in exc.errors():
        yield _schema_problem(error, index, data)
