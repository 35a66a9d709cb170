"""Refusals of the content library, each with a stable code (see docs/content.md)."""

from __future__ import annotations

from counterpoint.errors import ConflictError, CounterpointError, ValidationFailedError

__all__ = [
    "ContentForbiddenError",
    "ContentIncompleteError",
    "FragmentNotApprovedError",
    "ReauthenticationFailedError",
    "ReviewRefusedError",
    "SignatureMeaningError",
    "StaleContentError",
]


class ContentForbiddenError(CounterpointError):
    status = 403
    code = "forbidden"


class StaleContentError(ConflictError):
    code = "stale_content"


class ReauthenticationFailedError(CounterpointError):
    status = 403
    code = "reauthentication_failed"


class SignatureMeaningError(ValidationFailedError):
    code = "signature_meaning"


class ReviewRefusedError(CounterpointError):
    status = 403
    code = "review_refused"


class ContentIncompleteError(ValidationFailedError):
    code = "content_incomplete"


class FragmentNotApprovedError(ConflictError):
    code = "fragment_not_approved"
