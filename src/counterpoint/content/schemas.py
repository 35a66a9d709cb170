"""The content document: what an author writes to create or edit an asset or a fragment (the
API's request body, and each document of a file given to ``counterpoint content create``).

Shapes and formats are checked here (codes, ISO markets and languages, channels that suit the
asset type, claims with references, the body of each asset type); completeness is checked at
submission (``workflow.required_metadata_problems``), so a draft may be saved unfinished.
Templates are checked against the known fragments by ``check_templates``. See docs/content.md.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from counterpoint.errors import ValidationFailedError
from counterpoint.event.canonical import Channel
from counterpoint.profile.validation import country_codes, market_fix

__all__ = [
    "ASSET_CHANNELS",
    "SMS_MAX_CHARS",
    "AssetDocument",
    "AssetType",
    "ContentDocument",
    "ContentDocumentError",
    "ContentFunction",
    "DocumentProblem",
    "FragmentDocument",
    "JourneyStage",
    "TemplateCheck",
    "body_of",
    "check_templates",
    "metadata_of",
    "parse_document",
    "parse_documents",
    "problems_of",
]

SMS_MAX_CHARS = 612  # four concatenated GSM-7 segments
_CODE = r"^[A-Za-z0-9][\w.\-]{0,99}$"
_TAG = r"^[\w][\w .\-/&]{0,99}$"
_SHA256 = r"^[0-9a-f]{64}$"
_URL = r"^https?://[^\s]{1,2000}$"
_FIX = "see the document format in docs/content.md"


class AssetType(enum.StrEnum):
    CAMPAIGN_EMAIL = "campaign_email"
    REP_EMAIL_TEMPLATE = "rep_email_template"
    SMS_TEXT = "sms_text"
    CLM_DECK = "clm_deck"
    LEAFLET = "leaflet"
    WEB_PAGE = "web_page"
    EVENT_INVITATION = "event_invitation"
    DIRECT_MAIL = "direct_mail"
    SURVEY = "survey"


class ContentFunction(enum.StrEnum):
    PROMOTIONAL = "promotional"
    MEDICAL = "medical"
    EDUCATIONAL = "educational"


class JourneyStage(enum.StrEnum):
    AWARENESS = "awareness"
    CONSIDERATION = "consideration"
    ADOPTION = "adoption"
    ADVOCACY = "advocacy"


C = Channel
ASSET_CHANNELS: Mapping[AssetType, frozenset[Channel]] = {
    AssetType.CAMPAIGN_EMAIL: frozenset({C.CAMPAIGN_EMAIL}),
    AssetType.REP_EMAIL_TEMPLATE: frozenset({C.REP_EMAIL}),
    AssetType.SMS_TEXT: frozenset({C.SMS, C.MESSAGING}),
    AssetType.CLM_DECK: frozenset({C.F2F_CALL, C.REMOTE_CALL}),
    AssetType.LEAFLET: frozenset(
        {
            C.F2F_CALL,
            C.REMOTE_CALL,
            C.REP_EMAIL,
            C.CAMPAIGN_EMAIL,
            C.WEBSITE,
            C.HCP_PORTAL,
            C.EVENT,
            C.CONGRESS,
        }
    ),
    AssetType.WEB_PAGE: frozenset({C.WEBSITE, C.HCP_PORTAL}),
    AssetType.EVENT_INVITATION: frozenset({C.CAMPAIGN_EMAIL, C.REP_EMAIL, C.WEBINAR, C.EVENT}),
    AssetType.DIRECT_MAIL: frozenset({C.DIRECT_MAIL}),
    AssetType.SURVEY: frozenset({C.SURVEY, C.WEBSITE, C.HCP_PORTAL}),
}
"""The channels each asset type may be approved for (docs/content.md has this table)."""


@functools.cache
def _language_codes() -> frozenset[str]:
    return frozenset(x.alpha_2 for x in pycountry.languages if hasattr(x, "alpha_2"))


def _markets(values: list[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        code = raw.strip().upper()
        if code not in country_codes():
            raise ValueError(f"{raw[:20]!r} is not an ISO 3166-1 alpha-2 code: {market_fix(raw)}")
        if code not in out:
            out.append(code)
    return out


def _languages(values: list[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        code = raw.strip().lower()
        if code not in _language_codes():
            raise ValueError(f"{raw[:20]!r} is not an ISO 639-1 language code (such as de, en)")
        if code not in out:
            out.append(code)
    return out


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in values))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Claim(_Strict):
    text: str = Field(min_length=1, max_length=2000)
    references: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=50, description="every claim cites at least one reference"
    )


class EmailBody(_Strict):
    type: Literal["campaign_email", "rep_email_template", "event_invitation"]
    subject: str | None = Field(None, min_length=1, max_length=300)
    text: str | None = Field(None, min_length=1, max_length=100_000)
    html: str | None = Field(None, min_length=1, max_length=500_000)


class SmsBody(_Strict):
    type: Literal["sms_text"]
    text: str | None = Field(None, min_length=1, max_length=SMS_MAX_CHARS)


class Slide(_Strict):
    title: str = Field(min_length=1, max_length=300)
    key_message: str = Field(min_length=1, max_length=2000)
    html: str | None = Field(None, min_length=1, max_length=200_000)


class DeckBody(_Strict):
    type: Literal["clm_deck"]
    slides: list[Slide] = Field(default_factory=list, max_length=500)


class _FileParts(_Strict):
    file_name: str | None = Field(None, min_length=1, max_length=300, pattern=r"^[^/\\]+$")
    sha256: str | None = Field(None, pattern=_SHA256, description="SHA-256 of the file, hex")
    media_type: str | None = Field(None, pattern=r"^[\w.+\-]+/[\w.+\-]+$", max_length=100)


class LeafletBody(_FileParts):
    type: Literal["leaflet"]
    url: str | None = Field(None, pattern=_URL)


class WebPageBody(_Strict):
    type: Literal["web_page"]
    html: str | None = Field(None, min_length=1, max_length=1_000_000)


class DirectMailBody(_FileParts):
    type: Literal["direct_mail"]
    text: str | None = Field(None, min_length=1, max_length=100_000)
    html: str | None = Field(None, min_length=1, max_length=500_000)


class Question(_Strict):
    text: str = Field(min_length=1, max_length=2000)
    kind: Literal["single_choice", "multiple_choice", "scale", "free_text"] = "free_text"
    options: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=50
    )

    @model_validator(mode="after")
    def _choices_have_options(self) -> Question:
        if self.kind in ("single_choice", "multiple_choice") and len(self.options) < 2:
            raise ValueError("a choice question needs at least two options")
        return self


class SurveyBody(_Strict):
    type: Literal["survey"]
    intro: str | None = Field(None, min_length=1, max_length=5000)
    questions: list[Question] = Field(default_factory=list, max_length=200)


AssetBody = Annotated[
    EmailBody | SmsBody | DeckBody | LeafletBody | WebPageBody | DirectMailBody | SurveyBody,
    Field(discriminator="type"),
]


class FragmentBody(_Strict):
    text: str | None = Field(None, min_length=1, max_length=50_000)
    html: str | None = Field(None, min_length=1, max_length=200_000)


Code = Annotated[str, Field(pattern=_CODE, description="unique, e.g. CMX-DE-EM-001")]
TagText = Annotated[str, Field(pattern=_TAG)]


class _Document(_Strict):
    code: Code
    title: str = Field(min_length=1, max_length=300)
    brand: TagText | None = None
    function: ContentFunction
    markets: list[str] = Field(default_factory=list, max_length=250)
    languages: list[str] = Field(default_factory=list, max_length=50)
    synthetic: bool = Field(False, description="true for invented (test or demo) content")

    _check_markets = field_validator("markets")(_markets)
    _check_languages = field_validator("languages")(_languages)


class FragmentDocument(_Document):
    """A reusable part (header, safety information, footer) included by assets with
    ``{% include "code" %}``; it may use tokens but include no other fragment."""

    kind: Literal["fragment"] = "fragment"
    body: FragmentBody = Field(default_factory=FragmentBody)


class AssetDocument(_Document):
    """An asset, or a local variant of one (``parent`` names its global parent's code)."""

    kind: Literal["asset"] = "asset"
    asset_type: AssetType
    therapeutic_area: TagText | None = None
    topics: list[TagText] = Field(default_factory=list, max_length=50)
    journey_stage: JourneyStage | None = None
    channels: list[Channel] = Field(default_factory=list, max_length=len(Channel))
    claims: list[Claim] = Field(default_factory=list, max_length=100)
    minutes: float | None = Field(None, gt=0, le=600, description="estimated HCP minutes")
    persona: TagText | None = None
    parent: Code | None = Field(None, description="the global parent's code (a local variant)")
    body: AssetBody | None = None

    _check_topics = field_validator("topics")(_unique)

    @model_validator(mode="before")
    @classmethod
    def _tag_body(cls, data: Any) -> Any:
        """The body's shape follows ``asset_type``: tag it so the right model checks it."""
        if isinstance(data, dict) and isinstance(data.get("body"), dict):
            kind = data.get("asset_type")
            if isinstance(kind, str) and kind in {t.value for t in AssetType}:
                return {**data, "body": {**data["body"], "type": kind}}
            return {key: value for key, value in data.items() if key != "body"}
        return data

    @field_validator("channels")
    @classmethod
    def _channels_suit_the_type(
        cls, channels: list[Channel], info: ValidationInfo
    ) -> list[Channel]:
        kind = info.data.get("asset_type")
        if not isinstance(kind, AssetType):
            return channels  # the asset type's own error says what is wrong
        suited = ASSET_CHANNELS[kind]
        unsuited = [c.value for c in channels if c not in suited]
        if unsuited:
            raise ValueError(
                f"{', '.join(unsuited)} do not suit a {kind.value}; "
                f"use {', '.join(sorted(c.value for c in suited))}"
            )
        return list(dict.fromkeys(channels))

    @model_validator(mode="after")
    def _not_its_own_parent(self) -> AssetDocument:
        if self.parent is not None and self.parent == self.code:
            raise ValueError("parent: an item cannot be its own parent")
        return self


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "asset"))
    return str(getattr(value, "kind", "asset"))


ContentDocument = Annotated[
    Annotated[AssetDocument, Tag("asset")] | Annotated[FragmentDocument, Tag("fragment")],
    Discriminator(_kind_of, custom_error_type="kind", custom_error_message="unknown kind"),
]
"""An asset or a fragment, told apart by ``kind`` (default ``asset``)."""

_ADAPTER: TypeAdapter[AssetDocument | FragmentDocument] = TypeAdapter(ContentDocument)


@dataclass(frozen=True, slots=True)
class DocumentProblem:
    """One problem of one document: which (index in the file, code), where, why, the fix."""

    index: int | None
    code: str | None
    field: str
    reason: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "code": self.code,
            "field": self.field,
            "reason": self.reason,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        where = f"document {self.index}" if self.index is not None else "document"
        if self.code:
            where += f" ({self.code})"
        return f"{where}: {self.field}: {self.reason} (fix: {self.fix})"


class ContentDocumentError(ValidationFailedError):
    """Every problem of a document (or of a whole file), each naming its field and fix."""

    code = "content_invalid"

    def __init__(self, problems: Sequence[DocumentProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            f"{first.field}: {first.reason}{more}",
            field=first.field,
            fix=first.fix,
            extra={"problems": [p.as_dict() for p in problems]},
        )
        self.problems = list(problems)


_BODY_TAGS = frozenset(AssetType) | {"asset", "fragment"}


def _location(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        elif part in _BODY_TAGS and (i == 0 or loc[i - 1] == "body"):
            continue  # the union's tag, not a field the author wrote
        else:
            parts.append(part)
    return ".".join(parts) or "document"


def problems_of(
    exc: ValidationError, *, index: int | None = None, code: str | None = None
) -> list[DocumentProblem]:
    """Pydantic's errors as problems naming the field the author wrote."""
    out: list[DocumentProblem] = []
    for error in exc.errors():
        field = _location(error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        if ": " in reason and field == "document" and reason.split(": ", 1)[0].isidentifier():
            field, reason = reason.split(": ", 1)
        if error["type"] == "extra_forbidden":
            reason = "is not a field of this document"
        out.append(DocumentProblem(index, code, field, reason, _FIX))
    return out


def _code_in(data: Any) -> str | None:
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def parse_document(data: Any, *, index: int | None = None) -> AssetDocument | FragmentDocument:
    """One document, or ``ContentDocumentError`` listing every problem."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ContentDocumentError(problems_of(exc, index=index, code=_code_in(data))) from None


def parse_documents(data: Any) -> list[AssetDocument | FragmentDocument]:
    """One document or a list of them; every problem of every document, or all of them."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ContentDocumentError(
            [DocumentProblem(None, None, "document", "the file holds no document", _FIX)]
        )
    parsed: list[AssetDocument | FragmentDocument] = []
    problems: list[DocumentProblem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(
                DocumentProblem(index, None, "document", "is not a mapping of fields", _FIX)
            )
            continue
        try:
            parsed.append(parse_document(item, index=index))
        except ContentDocumentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ContentDocumentError(problems)
    return parsed


def body_of(document: AssetDocument | FragmentDocument) -> dict[str, Any]:
    """The body as stored: without the type tag and unset parts."""
    if document.body is None:
        return {}
    return document.body.model_dump(mode="json", exclude={"type"}, exclude_none=True)


def metadata_of(document: AssetDocument | FragmentDocument) -> dict[str, Any]:
    """Every field but the body, as stored (JSON-ready)."""
    plain = document.model_dump(mode="json", exclude={"body"})
    if isinstance(document, FragmentDocument):
        plain.update(
            asset_type=None,
            therapeutic_area=None,
            topics=[],
            journey_stage=None,
            channels=[],
            claims=[],
            minutes=None,
            persona=None,
            parent=None,
        )
    return plain


# --- templates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateCheck:
    """What the templates of one document use, and what is wrong with them."""

    fragments: frozenset[str]
    tokens: frozenset[str]
    problems: list[DocumentProblem]


def template_sources(document: AssetDocument | FragmentDocument) -> list[tuple[str, str]]:
    """(field, source) of every part rendered with tokens."""
    body = document.body
    if body is None:
        return []
    names = ("subject", "text", "html")
    found = [(f"body.{n}", getattr(body, n)) for n in names if getattr(body, n, None)]
    if isinstance(body, DeckBody):
        found += [(f"body.slides[{i}].html", s.html) for i, s in enumerate(body.slides) if s.html]
    return found


def check_templates(
    document: AssetDocument | FragmentDocument,
    known_fragments: Collection[str],
    *,
    index: int | None = None,
) -> TemplateCheck:
    """Check every template part: syntax, tokens, and included fragments among
    ``known_fragments`` (a fragment includes none)."""
    from counterpoint.content.render import TemplateError, check_fragment, check_template

    fragment = isinstance(document, FragmentDocument)
    fragments: set[str] = set()
    tokens: set[str] = set()
    problems: list[DocumentProblem] = []
    for field, source in template_sources(document):
        try:
            if fragment:
                info = check_fragment(source, field=field)
            else:
                info = check_template(source, field=field, fragments=known_fragments)
        except TemplateError as exc:
            problems.append(
                DocumentProblem(
                    index,
                    document.code,
                    exc.field or field,
                    exc.detail,
                    exc.fix or "see docs/rendering.md for tokens and fragments",
                )
            )
            continue
        fragments |= info.fragments
        tokens |= info.tokens
    return TemplateCheck(frozenset(fragments), frozenset(tokens), problems)
