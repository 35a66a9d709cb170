"""What happens to an outbox entry after an attempt. Pure: no I/O, no clock, no randomness of
its own (the caller passes a ``random.Random``), so every rule is tested exhaustively.

- Sent: the entry is done.
- A transient failure: try again after an exponential backoff with full jitter, capped;
  after ``max_attempts`` attempts the entry goes to the dead letters (``retries_exhausted``).
- A permanent failure: dead letter at once, with the adapter's reason.
- Refused by the guard at delivery time: the entry is closed as ``refused`` (never sent).
- Refused at delivery only for reasons of *timing* (quiet hours, a minimum gap, a cap
  whose window will roll on, the HCP's own monthly limit): the entry waits and the guard is
  asked again later (``after_deferral``); a deferral is not an attempt. After ``max_defer``
  in the queue it is refused for good. Any other refusal (consent, content, do-not-contact,
  suppression, role) closes it at once.
- An attempt whose outcome is unknown (the worker stopped while it held the entry): an
  adapter whose receiver de-duplicates by idempotency key is simply tried again; any other
  goes to the dead letters (``outcome_unknown``) for a person to look at, never re-sent
  automatically, so a crash can never send twice.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFERRABLE",
    "Outcome",
    "RetryPolicy",
    "Status",
    "Verdict",
    "after_attempt",
    "after_deferral",
    "after_lost_lease",
]


class Status(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    REFUSED = "refused"
    DEAD = "dead"
    CANCELLED = "cancelled"


FINAL: frozenset[Status] = frozenset({Status.SENT, Status.REFUSED, Status.CANCELLED})


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    REFUSED = "refused"


DEFERRABLE: dict[str, dt.timedelta] = {
    "quiet_hours": dt.timedelta(hours=1),
    "min_gap": dt.timedelta(hours=6),
    "over_cap": dt.timedelta(hours=24),
    "over_minutes": dt.timedelta(hours=24),
    "hcp_frequency_cap": dt.timedelta(hours=24),
}
"""Refusal codes that time will lift, and how long to wait before asking again."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 30.0
    cap_seconds: float = 6 * 3600.0
    max_defer: dt.timedelta = dt.timedelta(days=7)

    def delay(self, attempts: int, rng: random.Random) -> dt.timedelta:
        """Full jitter: uniform in [base/2, min(cap, base·2^(attempts-1))]; never zero, so a
        failing receiver is not hammered."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        floor = min(self.base_seconds / 2, ceiling)
        return dt.timedelta(seconds=rng.uniform(floor, ceiling))


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    next_attempt_at: dt.datetime | None = None  # for PENDING
    dead_code: str | None = None  # for DEAD: why


def after_attempt(
    outcome: Outcome,
    *,
    attempts: int,
    now: dt.datetime,
    policy: RetryPolicy,
    rng: random.Random,
    code: str | None = None,
) -> Verdict:
    """The entry's next state after its ``attempts``-th attempt ended with ``outcome``."""
    if outcome is Outcome.SENT:
        return Verdict(Status.SENT)
    if outcome is Outcome.REFUSED:
        return Verdict(Status.REFUSED)
    if outcome is Outcome.PERMANENT:
        return Verdict(Status.DEAD, dead_code=code or "permanent_failure")
    if attempts >= policy.max_attempts:
        return Verdict(Status.DEAD, dead_code="retries_exhausted")
    return Verdict(Status.PENDING, next_attempt_at=now + policy.delay(attempts, rng))


def after_deferral(
    codes: Sequence[str], *, queued_at: dt.datetime, now: dt.datetime, policy: RetryPolicy
) -> Verdict:
    """The entry's next state when the guard refused it now for ``codes``."""
    if not codes or any(c not in DEFERRABLE for c in codes):
        return Verdict(Status.REFUSED)
    if now - queued_at >= policy.max_defer:
        return Verdict(Status.REFUSED)
    wait = max(DEFERRABLE[c] for c in codes)
    return Verdict(Status.PENDING, next_attempt_at=now + wait)


def after_lost_lease(*, idempotent: bool, now: dt.datetime) -> Verdict:
    """An entry found ``sending`` with an expired lease: its worker stopped mid-attempt."""
    if idempotent:
        return Verdict(Status.PENDING, next_attempt_at=now)
    return Verdict(Status.DEAD, dead_code="outcome_unknown")
