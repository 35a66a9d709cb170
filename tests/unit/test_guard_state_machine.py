"""A Hypothesis state machine drives consent, policy, do-not-contact, bounces, the HCP's own
limit on promotional messages and time, and attempts sends through the guard; a send the
guard allows happens and becomes a touch (commercial, or medical when sent for a medical
purpose or by an MSL).

Invariant: no performed send breaks a rule, as judged by a deliberately simple oracle that
replays the whole history by brute force (it shares no code with the guard's rules). The
negative control runs the same machine with the guard switched off and requires Hypothesis
to find a violating send; a second one switches off only the HCP's own limit and requires
the oracle to find a send past that limit.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from counterpoint.consent.ledger import (
    ConsentChannel,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    ConsentState,
    Proof,
    Purpose,
)
from counterpoint.event.canonical import Channel
from counterpoint.policy.access import Role
from counterpoint.policy.contact import Cap, CapScope, ContactPolicy, QuietHours
from counterpoint.policy.guard import Candidate, DncEntry, HcpFacts, TouchDay, decide

START = dt.datetime(2026, 3, 27, 9, 0, tzinfo=dt.UTC)  # two days before the spring DST change
PROOF = Proof(ConsentSource.API, "machine", wording_version="v1")
CHANNELS = [Channel.CAMPAIGN_EMAIL, Channel.SMS, Channel.REP_EMAIL, Channel.F2F_CALL]
# the oracle's own, independent tables
ORACLE_CONSENT_CHANNEL = {
    "campaign_email": "email", "rep_email": "email", "sms": "sms", "f2f_call": "f2f_call",
}  # fmt: skip
ORACLE_ROLES: dict[str | None, tuple[set[str], set[str]]] = {
    None: ({"campaign_email", "sms"}, {"promotional", "educational", "market_research"}),
    "sales_rep": ({"rep_email", "f2f_call"}, {"promotional", "educational"}),
    "msl": ({"rep_email", "f2f_call"}, {"medical", "educational"}),
}
ORACLE_MINUTES = {"campaign_email": 2.0, "sms": 0.5, "rep_email": 3.0, "f2f_call": 15.0}


@dataclass
class Send:
    step: int
    at: dt.datetime
    channel: str
    purpose: str
    brand: str | None
    role: str | None

    @property
    def commercial(self) -> bool:
        """The function the send's event carries: medical for medical purposes or staff."""
        return self.purpose != "medical" and self.role != "msl"


@dataclass
class History:
    """Everything that happened, in order: (step, kind, data)."""

    events: list[tuple[int, str, Any]] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)


def _policy_at(history: History, step: int) -> ContactPolicy:
    policy = None
    for s, kind, data in history.events:
        if s < step and kind == "policy":
            policy = data
    assert policy is not None
    return policy


def _key(cap: Cap, send: Send) -> str | None:
    return send.channel if cap.scope is CapScope.CHANNEL else send.brand


def oracle_violations(history: History, zone: str | None) -> list[str]:
    """Brute force: replay the history before each send and judge the send."""
    problems: list[str] = []
    for send in history.sends:
        policy = _policy_at(history, send.step)
        before = [(s, k, d) for s, k, d in history.events if s < send.step]
        why = f"send at step {send.step} ({send.channel} {send.purpose} by {send.role})"
        # role
        channels, purposes = ORACLE_ROLES[send.role]
        if send.channel not in channels or send.purpose not in purposes:
            problems.append(f"{why}: role")
        # consent: the last record for the consent channel and purpose decides
        needed = ORACLE_CONSENT_CHANNEL[send.channel]
        last = None
        for _, kind, data in before:
            if kind == "consent" and data[0] == needed and data[1] == send.purpose:
                last = data
        free = {c.value for c in policy.no_consent_channels}
        granted = last is not None and last[2] == "granted"
        expired = last is not None and last[3] is not None and last[3] <= send.at
        if send.channel not in free and (not granted or expired):
            problems.append(f"{why}: consent {last}")
        # do not contact and suppression, replayed
        dnc: set[str] = set()
        suppressed: set[str] = set()
        for _, kind, data in before:
            if kind == "dnc_add":
                dnc.add(data)
            elif kind == "dnc_remove":
                dnc.discard(data)
            elif kind == "bounce":
                suppressed.add(data)
            elif kind == "lift":
                suppressed.discard(data)
        if "all" in dnc or send.channel in dnc:
            problems.append(f"{why}: do not contact")
        if needed in suppressed:
            problems.append(f"{why}: suppressed")
        # caps over every earlier send
        earlier = [p for p in history.sends if p.step < send.step]
        today = send.at.date()
        for cap in policy.caps:
            if cap.scope is CapScope.CHANNEL and cap.key != send.channel:
                continue
            if cap.scope is CapScope.BRAND and cap.key != send.brand:
                continue
            counted = [
                p
                for p in earlier
                if 0 <= (today - p.at.date()).days < cap.period_days
                and (
                    cap.scope is CapScope.ALL
                    or (p.channel if cap.scope is CapScope.CHANNEL else p.brand) == cap.key
                )
            ]
            if cap.max_touches is not None and len(counted) + 1 > cap.max_touches:
                problems.append(f"{why}: cap {cap}")
            spent = sum(ORACLE_MINUTES[p.channel] for p in counted) + ORACLE_MINUTES[send.channel]
            if cap.max_minutes is not None and spent > cap.max_minutes:
                problems.append(f"{why}: minutes {cap}")
        gap = policy.min_gap_hours.get(Channel(send.channel), 0)
        same = [p.at for p in earlier if p.channel == send.channel]
        if same and (send.at - max(same)) < dt.timedelta(hours=gap):
            problems.append(f"{why}: gap")
        local = send.at.astimezone(zoneinfo.ZoneInfo(zone or policy.time_zone))
        q = policy.quiet_hours
        if q is not None:
            t = local.time()
            inside = (q.start <= t < q.end) if q.start < q.end else (t >= q.start or t < q.end)
            if inside:
                problems.append(f"{why}: quiet hours at {local}")
        if local.weekday() in policy.quiet_weekdays:
            problems.append(f"{why}: quiet day {local}")
        # the HCP's own limit: the last preference it gave, over commercial sends of 30 days
        limit = None
        for _, kind, data in before:
            if kind == "preference":
                limit = data
        if limit is not None and send.purpose == "promotional":
            recent = [p for p in earlier if p.commercial and 0 <= (today - p.at.date()).days < 30]
            if len(recent) + 1 > limit:
                problems.append(f"{why}: the HCP's own limit of {limit} per month")
    return problems


_hhmm = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 30]))
_caps = st.lists(
    st.one_of(
        st.builds(Cap, st.just(CapScope.ALL), st.integers(1, 10), st.none(),
                  st.integers(0, 4), st.none() | st.floats(1, 40)),
        st.builds(Cap, st.just(CapScope.CHANNEL), st.integers(1, 10),
                  st.sampled_from([c.value for c in CHANNELS]), st.integers(0, 3)),
        st.builds(Cap, st.just(CapScope.BRAND), st.integers(1, 10),
                  st.sampled_from(["ZENTROVA", "OTHER"]), st.integers(0, 3)),
    ),
    max_size=3,
)  # fmt: skip


class GuardedSends(RuleBasedStateMachine):
    guard_on = True
    own_limit_on = True

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.step = 0
        self.seq = 0
        self.zone: str | None = "Europe/Berlin"
        self.policy = ContactPolicy(market="DE", time_zone="Europe/Berlin")
        self.consents: list[ConsentRecord] = []
        self.dnc: dict[str, DncEntry] = {}
        self.suppressed: set[ConsentChannel] = set()
        self.max_promotional: int | None = None
        self.history = History()
        self._note("policy", self.policy)

    def _note(self, kind: str, data: Any) -> None:
        self.step += 1
        self.history.events.append((self.step, kind, data))

    @rule(zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", None]))
    def move_hcp(self, zone: str | None) -> None:
        if not self.history.sends:  # the HCP's zone is fixed once contacts begin
            self.zone = zone

    @rule(
        channel=st.sampled_from(
            [ConsentChannel.EMAIL, ConsentChannel.SMS, ConsentChannel.F2F_CALL]
        ),
        purpose=st.sampled_from(list(Purpose)),
        state=st.sampled_from([ConsentState.GRANTED, ConsentState.DENIED, ConsentState.REVOKED]),
        expires_h=st.none() | st.integers(1, 200),
    )
    def consent(
        self, channel: ConsentChannel, purpose: Purpose, state: ConsentState, expires_h: int | None
    ) -> None:
        self.seq += 1
        expires = (
            self.now + dt.timedelta(hours=expires_h)
            if expires_h and state is ConsentState.GRANTED
            else None
        )
        scope = ConsentScope(channel, purpose, "DE")
        record = ConsentRecord(self.seq, "hcp_1", scope, state, self.now, self.now, PROOF, expires)
        self.consents.append(record)
        self._note("consent", (channel.value, purpose.value, state.value, expires))

    @rule(
        caps=_caps, gaps=st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 72), max_size=2)
    )
    def change_limits(self, caps: list[Cap], gaps: dict[Channel, int]) -> None:
        self.policy = replace(self.policy, caps=tuple(caps), min_gap_hours=dict(gaps))
        self._note("policy", self.policy)

    @rule(
        quiet=st.none() | st.tuples(_hhmm, _hhmm).filter(lambda q: q[0] != q[1]),
        days=st.frozensets(st.integers(0, 6), max_size=2),
        free=st.frozensets(st.sampled_from([Channel.F2F_CALL]), max_size=1),
    )
    def change_calendar(
        self, quiet: tuple[dt.time, dt.time] | None, days: frozenset[int], free: frozenset[Channel]
    ) -> None:
        hours = QuietHours(*quiet) if quiet else None
        self.policy = replace(
            self.policy, quiet_hours=hours, quiet_weekdays=days, no_consent_channels=free
        )
        self._note("policy", self.policy)

    @rule(channel=st.sampled_from([None, *CHANNELS]))
    def add_dnc(self, channel: Channel | None) -> None:
        key = channel.value if channel else "all"
        self.dnc[key] = DncEntry(channel, "asked")
        self._note("dnc_add", key)

    @rule(channel=st.sampled_from([None, *CHANNELS]))
    def remove_dnc(self, channel: Channel | None) -> None:
        key = channel.value if channel else "all"
        self.dnc.pop(key, None)
        self._note("dnc_remove", key)

    @rule(channel=st.sampled_from([ConsentChannel.EMAIL, ConsentChannel.SMS]))
    def hard_bounce(self, channel: ConsentChannel) -> None:
        self.suppressed.add(channel)
        self._note("bounce", channel.value)

    @rule(channel=st.sampled_from([ConsentChannel.EMAIL, ConsentChannel.SMS]))
    def lift(self, channel: ConsentChannel) -> None:
        self.suppressed.discard(channel)
        self._note("lift", channel.value)

    @rule(limit=st.none() | st.integers(1, 4))
    def set_preference(self, limit: int | None) -> None:
        self.max_promotional = limit
        self._note("preference", limit)

    @rule(minutes=st.integers(1, 60 * 80))
    def advance(self, minutes: int) -> None:
        self.now += dt.timedelta(minutes=minutes)

    def _facts(self) -> HcpFacts:
        days: dict[tuple[dt.date, str, str | None], int] = defaultdict(int)
        promotional: dict[tuple[dt.date, str, str | None], int] = defaultdict(int)
        last: dict[str, dt.datetime] = {}
        for s in self.history.sends:
            days[(s.at.date(), s.channel, s.brand)] += 1
            promotional[(s.at.date(), s.channel, s.brand)] += s.commercial
            last[s.channel] = max(last.get(s.channel, s.at), s.at)
        return HcpFacts(
            hcp_id="hcp_1",
            market="DE",
            time_zone=self.zone,
            consents=tuple(self.consents),
            touches=tuple(
                TouchDay(d, c, b, n, promotional=promotional[(d, c, b)])
                for (d, c, b), n in days.items()
            ),
            last_touch=last,
            dnc=tuple(self.dnc.values()),
            suppressed=frozenset(self.suppressed),
            max_promotional_per_month=self.max_promotional if self.own_limit_on else None,
        )

    @rule(
        channel=st.sampled_from(CHANNELS),
        purpose=st.sampled_from(list(Purpose)),
        brand=st.sampled_from([None, "ZENTROVA", "OTHER"]),
        role=st.sampled_from([None, Role.SALES_REP, Role.MSL]),
    )
    def attempt_send(
        self, channel: Channel, purpose: Purpose, brand: str | None, role: Role | None
    ) -> None:
        candidate = Candidate(channel, purpose, self.now, brand=brand, role=role)
        allowed = decide(self._facts(), self.policy, candidate).allowed if self.guard_on else True
        if allowed:
            self.step += 1
            self.history.sends.append(
                Send(self.step, self.now, channel.value, purpose.value, brand,
                     role.value if role else None)
            )  # fmt: skip

    @invariant()
    def no_send_breaks_a_rule(self) -> None:
        problems = oracle_violations(self.history, self.zone)
        assert not problems, problems


class UnguardedSends(GuardedSends):
    guard_on = False


class LimitedHcp(GuardedSends):
    """Starts with promotional consent on every channel and an own limit of one a month, so
    the HCP's own limit is reached often (the other rules still vary)."""

    @initialize()
    def prepare(self) -> None:
        for channel in (ConsentChannel.EMAIL, ConsentChannel.SMS, ConsentChannel.F2F_CALL):
            self.consent(channel, Purpose.PROMOTIONAL, ConsentState.GRANTED, None)
        self.set_preference(1)

    @rule(channel=st.sampled_from([Channel.CAMPAIGN_EMAIL, Channel.SMS]))
    def attempt_promotional_send(self, channel: Channel) -> None:
        """More promotional sends than the generic rule makes, to press on the limit."""
        self.attempt_send(channel, Purpose.PROMOTIONAL, None, None)


class OwnLimitIgnored(LimitedHcp):
    own_limit_on = False


RUN = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def test_no_performed_send_breaks_a_rule() -> None:
    run_state_machine_as_test(GuardedSends, settings=RUN)


def test_negative_control_without_the_guard_the_oracle_finds_violations() -> None:
    quick = settings(RUN, database=None, phases=[Phase.generate], print_blob=False)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(UnguardedSends, settings=quick)


def test_no_performed_send_passes_the_hcp_limit() -> None:
    run_state_machine_as_test(LimitedHcp, settings=settings(RUN, max_examples=80))


def test_negative_control_ignoring_the_hcp_limit_lets_the_oracle_find_it() -> None:
    """Every other rule still guarded: the only violations left are of the HCP's own limit."""
    quick = settings(
        RUN, database=None, phases=[Phase.generate], print_blob=False, derandomize=True
    )
    with pytest.raises(AssertionError, match="the HCP's own limit"):
        run_state_machine_as_test(OwnLimitIgnored, settings=quick)


def test_the_hcp_limit_stops_sends_in_the_machine() -> None:
    machine = GuardedSends()
    machine.consent(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, ConsentState.GRANTED, None)
    machine.consent(ConsentChannel.EMAIL, Purpose.EDUCATIONAL, ConsentState.GRANTED, None)
    machine.change_calendar(None, frozenset(), frozenset())
    machine.change_limits([], {})
    machine.set_preference(2)
    for _ in range(3):
        machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, None, None)
    assert len(machine.history.sends) == 2
    machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.EDUCATIONAL, None, None)  # not limited
    assert len(machine.history.sends) == 3
    machine.advance(60 * 24 * 30)  # the first sends leave the 30-day window
    machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, None, None)
    assert len(machine.history.sends) == 4
    machine.no_send_breaks_a_rule()
    machine.teardown()


def test_the_machine_performs_sends_when_the_rules_allow_them() -> None:
    """The positive machine is not vacuous: with consent and no limits, sends happen."""
    machine = GuardedSends()
    machine.consent(ConsentChannel.EMAIL, Purpose.PROMOTIONAL, ConsentState.GRANTED, None)
    machine.change_calendar(None, frozenset(), frozenset())
    machine.change_limits([], {})
    machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, None, None)
    machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, "ZENTROVA", None)
    assert len(machine.history.sends) == 2
    machine.no_send_breaks_a_rule()
    machine.hard_bounce(ConsentChannel.EMAIL)
    machine.attempt_send(Channel.CAMPAIGN_EMAIL, Purpose.PROMOTIONAL, None, None)
    assert len(machine.history.sends) == 2
    machine.teardown()
