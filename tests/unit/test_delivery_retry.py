"""The outbox's retry rules: bounded, jittered, never zero, dead letters with reasons."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import given
from hypothesis import strategies as st

from counterpoint.delivery.retry import (
    DEFERRABLE,
    Outcome,
    RetryPolicy,
    Status,
    after_attempt,
    after_deferral,
    after_lost_lease,
)

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 20),
    base_seconds=st.floats(0.5, 600),
    cap_seconds=st.floats(600, 86_400),
)


@given(policies, st.integers(1, 30), st.integers(0, 2**32))
def test_a_transient_failure_waits_within_bounds_until_attempts_run_out(
    policy: RetryPolicy, attempts: int, seed: int
) -> None:
    verdict = after_attempt(
        Outcome.TRANSIENT, attempts=attempts, now=NOW, policy=policy, rng=random.Random(seed)
    )
    if attempts >= policy.max_attempts:
        assert verdict.status is Status.DEAD
        assert verdict.dead_code == "retries_exhausted"
        return
    assert verdict.status is Status.PENDING
    assert verdict.next_attempt_at is not None
    wait = (verdict.next_attempt_at - NOW).total_seconds()
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2 ** (attempts - 1))
    assert min(policy.base_seconds / 2, ceiling) <= wait <= ceiling
    assert wait > 0


@given(policies, st.integers(1, 30), st.sampled_from(["550", "no_address", None]))
def test_permanent_failures_are_dead_letters_at_once_with_their_code(
    policy: RetryPolicy, attempts: int, code: str | None
) -> None:
    verdict = after_attempt(
        Outcome.PERMANENT,
        attempts=attempts,
        now=NOW,
        policy=policy,
        rng=random.Random(0),
        code=code,
    )
    assert verdict.status is Status.DEAD
    assert verdict.dead_code == (code or "permanent_failure")


@given(policies, st.integers(1, 30))
def test_sent_and_refused_are_final(policy: RetryPolicy, attempts: int) -> None:
    for outcome, status in ((Outcome.SENT, Status.SENT), (Outcome.REFUSED, Status.REFUSED)):
        verdict = after_attempt(
            outcome, attempts=attempts, now=NOW, policy=policy, rng=random.Random(0)
        )
        assert verdict.status is status
        assert verdict.next_attempt_at is None


def test_the_jitter_spreads_retries() -> None:
    policy = RetryPolicy(base_seconds=30, cap_seconds=3600)
    rng = random.Random(1)
    waits = {
        after_attempt(
            Outcome.TRANSIENT, attempts=4, now=NOW, policy=policy, rng=rng
        ).next_attempt_at
        for _ in range(50)
    }
    assert len(waits) > 40  # not one synchronised retry storm


def test_a_lost_attempt_is_retried_only_where_the_receiver_de_duplicates() -> None:
    assert after_lost_lease(idempotent=True, now=NOW).status is Status.PENDING
    lost = after_lost_lease(idempotent=False, now=NOW)
    assert lost.status is Status.DEAD
    assert lost.dead_code == "outcome_unknown"


@given(
    st.lists(st.sampled_from([*sorted(DEFERRABLE), "no_consent", "content_expired"]), min_size=1),
    st.integers(0, 10 * 24),
)
def test_only_timing_refusals_defer_and_never_beyond_the_longest_wait(
    codes: list[str], hours_queued: int
) -> None:
    policy = RetryPolicy()
    queued = NOW - dt.timedelta(hours=hours_queued)
    verdict = after_deferral(codes, queued_at=queued, now=NOW, policy=policy)
    timing_only = all(c in DEFERRABLE for c in codes)
    if timing_only and NOW - queued < policy.max_defer:
        assert verdict.status is Status.PENDING
        assert verdict.next_attempt_at == NOW + max(DEFERRABLE[c] for c in codes)
    else:
        assert verdict.status is Status.REFUSED
