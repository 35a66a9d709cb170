"""One error base: a stable machine-readable code, an HTTP status, and a fix for the user.

API handlers render these as RFC 9457 problem documents; the CLI prints them and exits non-zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConflictError",
    "CounterpointError",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnauthorizedError",
    "ValidationFailedError",
]


class CounterpointError(Exception):
    """Base of every expected failure. Never rendered as a 500."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.fix = fix
        self.extra = extra or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments: the default reduction would lose field, fix and extra, and
        # errors cross process boundaries (the ingestion's mapping processes raise them)
        return (_rebuild, (type(self), self.detail, self.field, self.fix, self.extra))

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://counterpoint.invalid/problems/{self.code}",
            "title": self.code.replace("_", " "),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        if self.fix is not None:
            body["fix"] = self.fix
        body.update(self.extra)
        return body


def _rebuild(
    cls: type[CounterpointError],
    detail: str,
    field: str | None,
    fix: str | None,
    extra: dict[str, Any],
) -> CounterpointError:
    return cls(detail, field=field, fix=fix, extra=extra)


class ValidationFailedError(CounterpointError):
    status = 400
    code = "validation_failed"


class UnauthorizedError(CounterpointError):
    status = 401
    code = "unauthorized"


class NotFoundError(CounterpointError):
    status = 404
    code = "not_found"


class ConflictError(CounterpointError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(CounterpointError):
    status = 413
    code = "payload_too_large"
