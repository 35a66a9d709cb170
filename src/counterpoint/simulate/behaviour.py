"""The behaviour model: one chunk of HCPs' interaction history, as numpy columns.

All output is synthetic. Each process (rep calls, campaign and rep e-mail, SMS, web and portal
visits with a later ``identify``, webinars, local events, congresses, samples, medical
inquiries, surveys, direct mail, advisory boards, social media) draws per-HCP counts from
Poisson rates that depend on the HCP's activity (Pareto: a few HCPs are very active),
potential decile and persona, places them in weeks weighted by seasonality and at local
working hours, and expands funnels (sent → delivered → opened → clicked) whose steps always
come later than the step before. Rows are encoded as small integers; ``counterpoint.simulate.
events`` turns them into Arrow columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from counterpoint.event.canonical import Action, ActorType, Channel
from counterpoint.simulate.population import (
    CONSENT_EMAIL,
    CONSENT_F2F,
    CONSENT_PROMOTIONAL,
    CONSENT_REMOTE,
    CONSENT_SMS,
    HcpChunk,
    World,
)
from counterpoint.simulate.reference import CONGRESSES, CONTENT_KINDS, MARKETS, SPECIALTIES

__all__ = [
    "ACTIONS",
    "ACTOR_TYPES",
    "CHANNELS",
    "EVENT_NAMES",
    "FIELDS",
    "FUNCTIONS",
    "TEMPLATES",
    "T_IDENTIFY",
    "EventRows",
    "simulate_chunk",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
ACTOR_TYPES: tuple[str, ...] = tuple(a.value for a in ActorType)
FUNCTIONS: tuple[str, ...] = ("commercial", "medical")
_CH = {c: i for i, c in enumerate(CHANNELS)}
_AC = {a: i for i, a in enumerate(ACTIONS)}
_AT = {a: i for i, a in enumerate(ACTOR_TYPES)}
_KIND = {code: k for k, (code, _, _) in enumerate(CONTENT_KINDS)}
COMMERCIAL, MEDICAL = 0, 1
UID_PRIMARY, UID_CRM, UID_EMAIL, UID_PHONE, UID_BAD_NPI = 0, 1, 2, 3, 4

_CHANNEL_TITLE = {
    "f2f_call": "F2F",
    "remote_call": "Remote",
    "phone": "Phone",
    "rep_email": "Rep Email",
    "campaign_email": "Email",
    "sms": "SMS",
    "website": "Website",
    "hcp_portal": "Portal",
    "social_media": "Social Ad",
    "samples": "Sample",
    "medical_inquiry": "Medical Inquiry",
}


def _event_name(channel: str, action: str) -> str:
    """``Email Opened``, ``F2F Call Completed``, ``Medical Inquiry Received``."""
    head = _CHANNEL_TITLE.get(channel, channel.replace("_", " ").title()).split()
    tail = action.replace("_", " ").title().split()
    if tail[0] == head[-1]:
        tail = tail[1:]
    return " ".join(head + tail)


EVENT_NAMES: tuple[str, ...] = tuple(_event_name(c, a) for c in CHANNELS for a in ACTIONS)
"""Source event name of channel ``c`` and action ``a``: ``EVENT_NAMES[c * len(ACTIONS) + a]``."""
assert len(set(EVENT_NAMES)) == len(EVENT_NAMES)

FIELDS: tuple[tuple[str, type[np.generic]], ...] = (
    ("hcp", np.int32),
    ("ts", np.int64),
    ("kind", np.int8),
    ("chan", np.int8),
    ("act", np.int8),
    ("uid", np.int8),
    ("anon", np.bool_),
    ("brand", np.int8),
    ("content", np.int32),
    ("slide", np.int16),
    ("actor_type", np.int8),
    ("actor", np.int32),
    ("func", np.int8),
    ("tpl", np.int32),
    ("link", np.int64),
)
"""Encoded event columns: indices into the vocabularies above (-1 for none)."""

_DEFAULTS: dict[str, object] = {"anon": False, "kind": 0, "tpl": 0}
T_IDENTIFY = -2
"""Template of ``identify`` rows: the HCP's traits as JSON."""

TEMPLATES: list[tuple[str | None, str]] = [(None, "")]
"""``properties`` = prefix + (``syn-<seed>-<n>`` of the linked row, if any) + suffix."""


def _t(prefix: str, suffix: str = "") -> int:
    TEMPLATES.append((prefix, suffix))
    return len(TEMPLATES) - 1


T_SEND = _t('{"send_id":"', '"}')
T_BOUNCE = np.array([_t('{"send_id":"', f'","bounce_type":"{b}"}}') for b in ("hard", "soft")])
T_CLICK = _t('{"send_id":"', '","link":"cta"}')
T_UNSUB = _t('{"send_id":"', '","method":"list_unsubscribe"}')
T_SUBJECT = np.array([_t(f'{{"subject_variant":"{v}"}}') for v in "AB"])
T_CALL = _t('{"call_id":"', '"}')
T_SAMPLE = np.array([_t('{"call_id":"', f'","quantity":{q}}}') for q in (2, 4, 6)])
_DURATIONS = np.array([5, 10, 15, 20, 30])
T_DURATION = np.array([_t(f'{{"duration_min":{d}}}') for d in _DURATIONS])
T_REG = _t('{"registration_id":"', '"}')
T_INQUIRY = _t('{"inquiry_id":"', '"}')
T_TOPIC = np.array(
    [
        _t(f'{{"topic":"{x}"}}')
        for x in ("dosing", "safety", "interactions", "clinical_data", "availability")
    ]
)
T_PATH = np.array(
    [
        _t(f'{{"path":"{x}"}}')
        for x in ("/", "/dosing", "/clinical-data", "/safety", "/patient-support", "/resources")
    ]
)
T_PORTAL = np.array(
    [_t(f'{{"path":"/portal{x}","logged_in":true}}') for x in ("", "/library", "/events")]
)
T_NPS = np.array([_t(f'{{"nps":{x}}}') for x in range(11)])
T_CONGRESS = np.array([_t(f'{{"congress":"{c.name}"}}') for c in CONGRESSES])
T_BOOTH = _t('{"location":"booth"}')
T_PIECE = np.array([_t(f'{{"piece":"{x}"}}') for x in ("leave_behind", "brochure", "letter")])
T_FORMAT = np.array([_t(f'{{"format":"{x}"}}') for x in ("live", "on_demand")])

_DAY = 86_400_000_000
_HOUR = 3_600_000_000
_MIN = 60_000_000
_SEC = 1_000_000


def _hours(weights: dict[int, float]) -> F64:
    w = np.zeros(24)
    for h, v in weights.items():
        w[h] = v
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


WORK_HOURS = _hours(
    {7: 0.2, 8: 0.8, 9: 1, 10: 1, 11: 1, 12: 0.6, 13: 0.8, 14: 1, 15: 1, 16: 0.9, 17: 0.6, 18: 0.2}
)
DIGITAL_HOURS = _hours(
    {7: 0.3, 8: 0.6, 9: 0.8, 10: 0.8, 11: 0.8, 12: 0.9, 13: 0.8, 14: 0.7, 15: 0.7, 16: 0.7}
    | {17: 0.7, 18: 0.6, 19: 0.6, 20: 0.7, 21: 0.6, 22: 0.3}
)
SEND_HOURS = _hours({7: 0.3, 8: 0.8, 9: 1, 10: 0.8, 11: 0.4, 14: 0.3})

RATE_SCALE = 1.16
"""Calibrates the Poisson rates to about 100 interactions per HCP and year on average."""

# persona order: digital_first, f2f_loyalist, hybrid, low_engager, scientific_seeker
P_CALL = np.array([0.45, 1.5, 1.0, 0.45, 0.8])
P_REMOTE = np.array([0.5, 0.08, 0.35, 0.2, 0.3])
P_CAMPAIGN = np.array([1.2, 0.8, 1.0, 0.9, 1.0])
P_OPEN = np.array([0.38, 0.2, 0.3, 0.12, 0.33])
P_CLICK = np.array([0.2, 0.1, 0.15, 0.1, 0.17])
P_REP_EMAIL = np.array([1.3, 0.6, 1.2, 0.5, 0.9])
P_WEB = np.array([1.6, 0.5, 1.0, 0.4, 1.3])
P_WEBINAR = np.array([1.5, 0.3, 1.0, 0.2, 2.0])
P_EVENT = np.array([0.5, 1.5, 1.0, 0.3, 1.2])
P_CONGRESS = np.array([0.7, 1.1, 1.0, 0.3, 1.8])
P_INQUIRY = np.array([0.8, 0.6, 0.8, 0.3, 3.0])
P_SURVEY = np.array([1.3, 0.6, 1.0, 0.3, 1.2])


@dataclass(slots=True)
class EventRows:
    """Encoded rows, appended block by block; ``add`` returns the first row's position."""

    blocks: dict[str, list[npt.NDArray[np.generic]]] = field(
        default_factory=lambda: {name: [] for name, _ in FIELDS}
    )
    n: int = 0

    def add(self, hcp: npt.NDArray[np.integer], ts: I64, **values: object) -> int:
        k = len(hcp)
        start = self.n
        if k == 0:
            return start
        given = {"hcp": hcp, "ts": ts, **values}
        for name, dtype in FIELDS:
            value = given.get(name, _DEFAULTS.get(name, -1))
            if isinstance(value, np.ndarray):
                arr = value.astype(dtype, copy=False)
            else:
                arr = np.full(k, value, dtype=dtype)
            assert len(arr) == k, name
            self.blocks[name].append(arr)
        self.n += k
        return start

    def finish(self) -> dict[str, npt.NDArray[Any]]:
        out: dict[str, npt.NDArray[Any]] = {}
        for name, dtype in FIELDS:
            parts = self.blocks[name]
            out[name] = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
        return out


def _ragged(counts: I64) -> tuple[I64, I64]:
    """For per-parent child counts: each child's parent and its position among siblings."""
    total = int(counts.sum())
    parent = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(total) - np.repeat(first, counts)
    return parent, position


class _Model:
    def __init__(self, world: World, chunk: HcpChunk, rng: np.random.Generator) -> None:
        self.w = world
        self.c = chunk
        self.rng = rng
        self.rows = EventRows()
        self.years = world.weeks / 52.0
        weights = world.week_weight / world.week_weight.sum()
        self.week_cdf = np.cumsum(weights)
        self.week_cdf[-1] = 1.0
        self.start_wd = world.start.weekday()
        self.start_us = world.start_us
        self.end_us = world.end_us
        self.market = chunk.market.astype(np.int64)
        self.spec = chunk.specialty.astype(np.int64)
        self.decile = chunk.decile.astype(np.float64)
        self.persona = chunk.persona.astype(np.int64)
        self.rep = chunk.territory.astype(np.int64)

    # -- drawing helpers ---------------------------------------------------------------
    def counts(self, rate_per_year: F64) -> I64:
        out: I64 = self.rng.poisson(rate_per_year * (RATE_SCALE * self.years))
        return out

    def local_to_utc(self, h: I64, day: I64, local_us: I64) -> I64:
        week = np.clip(day // 7, 0, self.w.weeks - 1)
        offset = self.w.tz_offset[self.c.tz[h], week]
        out: I64 = self.start_us + day * _DAY + local_us - offset * _SEC
        return out

    def at_hours(self, n: int, hour_cdf: F64) -> I64:
        hour = np.searchsorted(hour_cdf, self.rng.random(n), side="right")
        out: I64 = hour * _HOUR + (self.rng.random(n) * _HOUR).astype(np.int64)
        return out

    def times(self, h: I64, hour_cdf: F64, weekend: float = 0.0) -> I64:
        n = len(h)
        week = np.searchsorted(self.week_cdf, self.rng.random(n), side="right")
        week = np.minimum(week, self.w.weeks - 1)
        wd = self.rng.integers(0, 5, n)
        if weekend:
            wd = np.where(self.rng.random(n) < weekend, 5 + (wd % 2), wd)
        day = week * 7 + (wd - self.start_wd) % 7
        ts = self.local_to_utc(h, day, self.at_hours(n, hour_cdf))
        # local time near either end of the history can fall outside it in UTC: move a week
        ts = np.where(ts < self.start_us, ts + 7 * _DAY, ts)
        out: I64 = np.where(ts >= self.end_us, ts - 7 * _DAY, ts)
        return out

    def brand(self, h: I64) -> I64:
        cdf = self.w.brand_cdf[self.spec[h], self.market[h]]
        out: I64 = (self.rng.random(len(h))[:, None] >= cdf).sum(axis=1)
        return np.minimum(out, len(self.w.brands) - 1)

    def content(self, brand: I64, kind: str) -> I64:
        k = _KIND[kind]
        count = int(self.w.content_count[k])
        out: I64 = self.w.content_base[brand, k] + self.rng.integers(0, count, len(brand))
        return out

    def delay(self, n: int, lo_us: float, hi_us: float) -> I64:
        out: I64 = (lo_us + self.rng.random(n) * (hi_us - lo_us)).astype(np.int64)
        return out

    def lognormal(self, n: int, median_us: float, sigma: float, cap_us: float) -> I64:
        d = median_us * np.exp(sigma * self.rng.standard_normal(n))
        out: I64 = np.clip(d, _SEC, cap_us).astype(np.int64)
        return out

    def pick(self, p: F64 | float, n: int) -> B:
        out: B = self.rng.random(n) < p
        return out

    def in_range(self, ts: I64) -> B:
        out: B = (ts >= self.start_us) & (ts < self.end_us)
        return out

    def persona_of(self, table: F64, h: I64) -> F64:
        out: F64 = table[self.persona[h]]
        return out

    # -- processes ---------------------------------------------------------------------
    def calls(self) -> None:
        c, rng = self.c, self.rng
        act = c.activity**0.5
        rate = 10.0 * (0.2 + 0.16 * self.decile) * P_CALL[self.persona] * act
        h = np.repeat(np.arange(c.n), self.counts(rate))
        n = len(h)
        remote = self.pick(self.persona_of(P_REMOTE, h), n)
        phone = self.pick(0.07, n)
        chan = np.where(phone, _CH["phone"], np.where(remote, _CH["remote_call"], _CH["f2f_call"]))
        # a call needs promotional consent for its channel (phone calls: remote_call's)
        granted = np.where(
            chan == _CH["f2f_call"],
            c.consent[h, CONSENT_F2F, CONSENT_PROMOTIONAL],
            c.consent[h, CONSENT_REMOTE, CONSENT_PROMOTIONAL],
        )
        keep = granted
        h, chan, phone, remote = h[keep], chan[keep], phone[keep], remote[keep]
        n = len(h)
        begin = self.times(h, WORK_HOURS)
        actor_type = np.full(n, _AT["rep"])
        actor = self.rep[h].copy()
        kam = (self.decile[h] >= 9) & self.pick(0.2, n)
        m = self.market[h[kam]]
        actor[kam] = self.w.kam_base[m] + (rng.random(len(m)) * self.w.kam_count[m]).astype(
            np.int64
        )
        actor_type[kam] = _AT["kam"]
        brand = self.brand(h)
        content = self.content(brand, "CLM")
        slides = np.where(phone, 0, rng.binomial(5, 0.5, n))
        dur_i = np.where(phone, rng.integers(0, 2, n), rng.integers(1, 5, n))
        end = begin + _DURATIONS[dur_i] * _MIN
        ok = self.in_range(end)
        base = self.rows.add(
            h[ok],
            end[ok],
            chan=chan[ok],
            act=_AC["call_completed"],
            uid=UID_CRM,
            brand=brand[ok],
            content=content[ok],
            actor_type=actor_type[ok],
            actor=actor[ok],
            func=COMMERCIAL,
            tpl=T_DURATION[dur_i[ok]],
        )
        link = np.full(n, -1, dtype=np.int64)
        link[ok] = base + np.arange(int(ok.sum()))
        parent, pos = _ragged(np.where(ok, slides, 0))
        deck = self.w.clm_slides[content[parent]]
        first = rng.integers(1, 4, n)[parent]
        slide = np.minimum(first + pos, deck)
        ts = begin[parent] + (pos + 1) * 100 * _SEC + self.delay(len(parent), 0, 60 * _SEC)
        self.rows.add(
            h[parent],
            ts,
            chan=chan[parent],
            act=_AC["content_viewed"],
            uid=UID_CRM,
            brand=brand[parent],
            content=content[parent],
            slide=slide,
            actor_type=actor_type[parent],
            actor=actor[parent],
            func=COMMERCIAL,
            tpl=T_CALL,
            link=link[parent],
        )
        allowed = np.array([mk.samples_allowed for mk in MARKETS])[self.market[h]]
        dropped = end + self.delay(n, 30 * _SEC, 5 * _MIN)
        sample = ok & allowed & (chan == _CH["f2f_call"]) & self.pick(0.3, n)
        sample &= dropped < self.end_us
        self.rows.add(
            h[sample],
            dropped[sample],
            chan=_CH["samples"],
            act=_AC["sample_dropped"],
            uid=UID_CRM,
            brand=brand[sample],
            actor_type=actor_type[sample],
            actor=actor[sample],
            func=COMMERCIAL,
            tpl=T_SAMPLE[rng.integers(0, 3, int(sample.sum()))],
            link=link[sample],
        )

    def email(
        self,
        h: I64,
        sent: I64,
        *,
        chan: int,
        uid: int,
        content_kind: str,
        sent_actor_type: int,
        sent_actor: I64 | int,
        p_open: F64,
        p_click: F64,
        p_unsub: float,
        p_deliver: float = 0.97,
    ) -> None:
        """A send and its funnel: delivered or bounced, then opened, clicked, unsubscribed."""
        rng = self.rng
        n = len(h)
        brand = self.brand(h)
        content = self.content(brand, content_kind)
        delivered = self.pick(p_deliver, n)
        t_deliver = sent + self.delay(n, 2 * _SEC, 180 * _SEC)
        opened = delivered & (rng.random(n) < p_open)
        t_open = t_deliver + self.lognormal(n, 3 * _HOUR, 1.3, 6 * _DAY)
        clicked = opened & (rng.random(n) < p_click)
        t_click = t_open + self.delay(n, 5 * _SEC, 300 * _SEC)
        unsub = opened & self.pick(p_unsub, n)
        t_unsub = t_open + self.delay(n, 10 * _SEC, 600 * _SEC)
        keep = np.ones(n, dtype=np.bool_)
        if p_unsub > 0:
            # after an unsubscribe, that HCP gets no more of these e-mails
            first_unsub = np.full(self.c.n, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first_unsub, h[unsub], t_unsub[unsub])
            keep = sent < first_unsub[h]
        actor = (
            sent_actor[keep] if isinstance(sent_actor, np.ndarray) else np.full(n, sent_actor)[keep]
        )
        sel = np.flatnonzero(keep)
        h, sent, brand, content = h[sel], sent[sel], brand[sel], content[sel]
        base = self.rows.add(
            h,
            sent,
            chan=chan,
            act=_AC["sent"],
            uid=uid,
            brand=brand,
            content=content,
            actor_type=sent_actor_type,
            actor=actor,
            func=COMMERCIAL,
            tpl=T_SUBJECT[rng.integers(0, 2, len(sel))] if chan == _CH["campaign_email"] else 0,
        )
        link = base + np.arange(len(sel))
        steps = (
            (delivered, t_deliver, "delivered", _AT["system"], T_SEND),
            (~delivered, t_deliver, "bounced", _AT["system"], -2),
            (opened, t_open, "opened", _AT["hcp"], T_SEND),
            (clicked, t_click, "clicked", _AT["hcp"], T_CLICK),
            (unsub, t_unsub, "unsubscribed", _AT["hcp"], T_UNSUB),
        )
        for mask, ts, action, actor_type, tpl in steps:
            m = mask[sel] & (ts[sel] < self.end_us)
            k = int(m.sum())
            self.rows.add(
                h[m],
                ts[sel][m],
                chan=chan,
                act=_AC[action],
                uid=uid,
                brand=brand[m],
                content=content[m],
                actor_type=actor_type,
                func=COMMERCIAL,
                tpl=T_BOUNCE[rng.integers(0, 2, k)] if tpl == -2 else tpl,
                link=link[m],
            )

    def emails(self) -> None:
        c = self.c
        # campaign and rep e-mail both need promotional consent for ``email``
        email_ok = c.has_email & c.consent[:, CONSENT_EMAIL, CONSENT_PROMOTIONAL]
        # campaign e-mail: marketing waves to every HCP with an address and consent
        ok = email_ok
        rate = np.where(ok, 24.0 * P_CAMPAIGN[self.persona] * (0.5 + 0.09 * self.decile), 0.0)
        h = np.repeat(np.arange(c.n), self.counts(rate))
        engage = np.clip(c.activity[h] ** 0.4, 0.4, 2.2)
        self.email(
            h,
            self.times(h, SEND_HOURS),
            chan=_CH["campaign_email"],
            uid=UID_EMAIL,
            content_kind="EM",
            sent_actor_type=_AT["marketing"],
            sent_actor=-1,
            p_open=np.minimum(self.persona_of(P_OPEN, h) * engage, 0.9),
            p_click=self.persona_of(P_CLICK, h),
            p_unsub=0.012,
        )
        # rep-triggered e-mail: from the territory's rep, opened more often
        ok = email_ok
        rate = np.where(ok, 5.0 * P_REP_EMAIL[self.persona] * (0.4 + 0.12 * self.decile), 0.0)
        h = np.repeat(np.arange(c.n), self.counts(rate))
        self.email(
            h,
            self.times(h, WORK_HOURS),
            chan=_CH["rep_email"],
            uid=UID_CRM,
            content_kind="RE",
            sent_actor_type=_AT["rep"],
            sent_actor=self.rep[h],
            p_open=np.minimum(self.persona_of(P_OPEN, h) * 1.6, 0.9),
            p_click=self.persona_of(P_CLICK, h) * 1.3,
            p_unsub=0.0,
            p_deliver=0.985,
        )
        # SMS: sent → delivered → clicked
        ok = c.has_phone & c.consent[:, CONSENT_SMS, CONSENT_PROMOTIONAL]
        rate = np.where(ok, 5.0 * P_CAMPAIGN[self.persona], 0.0)
        h = np.repeat(np.arange(c.n), self.counts(rate))
        n = len(h)
        sent = self.times(h, SEND_HOURS)
        brand = self.brand(h)
        content = self.content(brand, "SMS")
        base = self.rows.add(
            h,
            sent,
            chan=_CH["sms"],
            act=_AC["sent"],
            uid=UID_PHONE,
            brand=brand,
            content=content,
            actor_type=_AT["marketing"],
            func=COMMERCIAL,
        )
        link = base + np.arange(n)
        delivered = self.pick(0.98, n)
        t_del = sent + self.delay(n, 1 * _SEC, 30 * _SEC)
        clicked = delivered & self.pick(self.persona_of(P_CLICK, h) * 0.6, n)
        t_click = t_del + self.lognormal(n, 20 * _MIN, 1.2, 2 * _DAY)
        for mask, ts, action, actor_type in (
            (delivered, t_del, "delivered", _AT["system"]),
            (clicked, t_click, "clicked", _AT["hcp"]),
        ):
            m = mask & (ts < self.end_us)
            self.rows.add(
                h[m],
                ts[m],
                chan=_CH["sms"],
                act=_AC[action],
                uid=UID_PHONE,
                brand=brand[m],
                content=content[m],
                actor_type=actor_type,
                func=COMMERCIAL,
                tpl=T_SEND,
                link=link[m],
            )

    def web(self) -> None:
        c, rng = self.c, self.rng
        rate = np.where(c.web_user, 10.0 * c.activity * P_WEB[self.persona], 0.0)
        h = np.repeat(np.arange(c.n), self.counts(rate))
        n = len(h)
        ts = self.times(h, DIGITAL_HOURS, weekend=0.12)
        known_at = c.identified_at[h]
        known = (known_at >= 0) & (ts >= known_at)
        portal = known & self.pick(0.45, n)
        chan = np.where(portal, _CH["hcp_portal"], _CH["website"])
        uid = np.where(known, UID_PRIMARY, -1)
        brand = self.brand(h)
        tpl = np.where(
            portal,
            T_PORTAL[rng.integers(0, len(T_PORTAL), n)],
            T_PATH[rng.integers(0, len(T_PATH), n)],
        )
        self.rows.add(
            h,
            ts,
            chan=chan,
            act=_AC["visited"],
            uid=uid,
            anon=True,
            brand=brand,
            actor_type=_AT["hcp"],
            func=COMMERCIAL,
            tpl=tpl,
        )
        parent, pos = _ragged(rng.poisson(1.3, n))
        k = len(parent)
        views_at = ts[parent] + (pos + 1) * self.delay(k, 20 * _SEC, 150 * _SEC)
        download = self.pick(0.06, k)
        m = views_at < self.end_us
        child_known = (known_at[parent] >= 0) & (views_at >= known_at[parent])
        self.rows.add(
            h[parent][m],
            views_at[m],
            chan=chan[parent][m],
            act=np.where(download, _AC["downloaded"], _AC["content_viewed"])[m],
            uid=np.where(child_known, UID_PRIMARY, -1)[m],
            anon=True,
            brand=brand[parent][m],
            content=self.content(brand[parent][m], "WEB"),
            actor_type=_AT["hcp"],
            func=COMMERCIAL,
        )
        # social media ad clicks land on the website as anonymous visitors
        rate = np.where(c.web_user, 1.2 * c.activity * (self.persona == 0), 0.0)
        h = np.repeat(np.arange(c.n), self.counts(rate))
        ts = self.times(h, DIGITAL_HOURS, weekend=0.25)
        known_at = c.identified_at[h]
        self.rows.add(
            h,
            ts,
            chan=_CH["social_media"],
            act=_AC["clicked"],
            uid=np.where((known_at >= 0) & (ts >= known_at), UID_PRIMARY, -1),
            anon=True,
            brand=self.brand(h),
            actor_type=_AT["hcp"],
            func=COMMERCIAL,
        )
        # identify: the portal registration that ties the anonymous id to the HCP
        h = np.flatnonzero(c.identified_at >= 0)
        at = c.identified_at[h]
        self.rows.add(h, at, kind=1, uid=UID_PRIMARY, anon=True, tpl=T_IDENTIFY)
        reg = at + self.delay(len(h), 2 * _SEC, 30 * _SEC)
        m = reg < self.end_us
        self.rows.add(
            h[m],
            reg[m],
            chan=_CH["hcp_portal"],
            act=_AC["registered"],
            uid=UID_PRIMARY,
            anon=True,
            actor_type=_AT["hcp"],
            func=COMMERCIAL,
        )

    def registrations(
        self, chan: str, rate: F64, kind: str, attend: F64, medical: float, hour_cdf: F64
    ) -> None:
        """Webinars and local events: registered, then attended or no_show on the day."""
        rng = self.rng
        h = np.repeat(np.arange(self.c.n), self.counts(rate))
        n = len(h)
        reg = self.times(h, DIGITAL_HOURS, weekend=0.1)
        brand = self.brand(h)
        content = self.content(brand, kind)
        func = np.where(self.pick(medical, n), MEDICAL, COMMERCIAL)
        base = self.rows.add(
            h,
            reg,
            chan=_CH[chan],
            act=_AC["registered"],
            uid=UID_PRIMARY,
            brand=brand,
            content=content,
            actor_type=_AT["hcp"],
            func=func,
            tpl=T_FORMAT[rng.integers(0, 2, n)] if chan == "webinar" else 0,
        )
        day = (reg - self.start_us) // _DAY + rng.integers(3, 22, n)
        session = self.local_to_utc(h, day, self.at_hours(n, hour_cdf))
        came = rng.random(n) < attend[h]
        m = (session > reg) & (session < self.end_us)
        self.rows.add(
            h[m],
            session[m],
            chan=_CH[chan],
            act=np.where(came, _AC["attended"], _AC["no_show"])[m],
            uid=UID_PRIMARY,
            brand=brand[m],
            content=content[m],
            actor_type=_AT["hcp"],
            func=func[m],
            tpl=T_REG,
            link=(base + np.arange(n))[m],
        )

    def congresses(self) -> None:
        c, rng = self.c, self.rng
        spec_names = np.array(SPECIALTIES)
        for ci, day0 in self.w.congress_days:
            congress = CONGRESSES[ci]
            relevant = np.isin(spec_names[self.spec], congress.specialties)
            p = (0.03 + 0.4 * relevant) * (0.5 + self.decile / 10) * P_CONGRESS[self.persona]
            h = np.flatnonzero(rng.random(c.n) < p)
            n = len(h)
            ta = [b for b, br in enumerate(self.w.brands) if br.ta_code == congress.ta_code]
            brand = self.brand(h)
            if ta:
                brand = np.where(self.pick(0.6, n), ta[0], brand)
            reg_day = day0 - rng.integers(14, 60, n)
            reg = self.local_to_utc(h, reg_day, self.at_hours(n, DIGITAL_HOURS))
            ok = reg >= self.start_us
            self.rows.add(
                h[ok],
                reg[ok],
                chan=_CH["congress"],
                act=_AC["registered"],
                uid=UID_PRIMARY,
                brand=brand[ok],
                actor_type=_AT["hcp"],
                func=COMMERCIAL,
                tpl=T_CONGRESS[ci],
            )
            attend_day = day0 + rng.integers(0, congress.days, n)
            attended = self.local_to_utc(h, attend_day, self.at_hours(n, WORK_HOURS))
            ok = self.in_range(attended)
            self.rows.add(
                h[ok],
                attended[ok],
                chan=_CH["congress"],
                act=_AC["attended"],
                uid=UID_PRIMARY,
                brand=brand[ok],
                actor_type=_AT["hcp"],
                func=COMMERCIAL,
                tpl=T_CONGRESS[ci],
            )
            for chan, action, mean, tpl in (
                ("congress", "visited", 2.2, T_BOOTH),
                ("event_app", "content_viewed", 1.8, 0),
            ):
                parent, _pos = _ragged(rng.poisson(mean, n))
                k = len(parent)
                day = day0 + rng.integers(0, congress.days, k)
                ts = self.local_to_utc(h[parent], day, self.at_hours(k, WORK_HOURS))
                b = np.where(self.pick(0.5, k), brand[parent], self.brand(h[parent]))
                ok = self.in_range(ts)
                self.rows.add(
                    h[parent][ok],
                    ts[ok],
                    chan=_CH[chan],
                    act=_AC[action],
                    uid=UID_PRIMARY,
                    brand=b[ok],
                    content=self.content(b[ok], "CG"),
                    actor_type=_AT["hcp"],
                    func=COMMERCIAL,
                    tpl=tpl,
                )

    def medical(self) -> None:
        c, rng = self.c, self.rng
        rate = 0.5 * P_INQUIRY[self.persona] * (0.6 + 0.08 * self.decile) * c.activity**0.5
        h = np.repeat(np.arange(c.n), self.counts(rate))
        n = len(h)
        received = self.times(h, DIGITAL_HOURS, weekend=0.05)
        brand = self.brand(h)
        base = self.rows.add(
            h,
            received,
            chan=_CH["medical_inquiry"],
            act=_AC["inquiry_received"],
            uid=UID_PRIMARY,
            brand=brand,
            actor_type=_AT["hcp"],
            func=MEDICAL,
            tpl=T_TOPIC[rng.integers(0, len(T_TOPIC), n)],
        )
        answered = received + self.lognormal(n, 1.5 * _DAY, 0.8, 14 * _DAY)
        m_i = self.market[h]
        by_msl = self.pick(0.4, n)
        msl = self.w.msl_base[m_i] + (rng.random(n) * self.w.msl_count[m_i]).astype(np.int64)
        actor = np.where(by_msl, msl, self.w.medinfo[m_i])
        ok = answered < self.end_us
        self.rows.add(
            h[ok],
            answered[ok],
            chan=_CH["medical_inquiry"],
            act=_AC["inquiry_answered"],
            uid=UID_PRIMARY,
            brand=brand[ok],
            actor_type=np.where(by_msl, _AT["msl"], _AT["medical_affairs"])[ok],
            actor=actor[ok],
            func=MEDICAL,
            tpl=T_INQUIRY,
            link=(base + np.arange(n))[ok],
        )
        # advisory boards: a few top-decile specialists a year, run by MSLs
        spec_ok = (self.spec != SPECIALTIES.index("pharmacist")) & (self.decile >= 9)
        h = np.repeat(np.arange(c.n), self.counts(np.where(spec_ok, 0.25, 0.0)))
        m_i = self.market[h]
        msl = self.w.msl_base[m_i] + (rng.random(len(h)) * self.w.msl_count[m_i]).astype(np.int64)
        self.rows.add(
            h,
            self.times(h, WORK_HOURS),
            chan=_CH["advisory_board"],
            act=_AC["attended"],
            uid=UID_PRIMARY,
            brand=self.brand(h),
            actor_type=_AT["msl"],
            actor=msl,
            func=MEDICAL,
        )

    def other(self) -> None:
        c, rng = self.c, self.rng
        rate = 1.0 * P_SURVEY[self.persona] * c.activity**0.5
        h = np.repeat(np.arange(c.n), self.counts(rate))
        n = len(h)
        brand = self.brand(h)
        self.rows.add(
            h,
            self.times(h, DIGITAL_HOURS, weekend=0.1),
            chan=_CH["survey"],
            act=_AC["survey_answered"],
            uid=UID_PRIMARY,
            brand=brand,
            content=self.content(brand, "SV"),
            actor_type=_AT["hcp"],
            func=np.where(self.pick(0.2, n), MEDICAL, COMMERCIAL),
            tpl=T_NPS[np.minimum(rng.binomial(10, 0.72, n), 10)],
        )
        h = np.repeat(np.arange(c.n), self.counts(np.full(c.n, 3.0)))
        n = len(h)
        brand = self.brand(h)
        self.rows.add(
            h,
            self.times(h, SEND_HOURS),
            chan=_CH["direct_mail"],
            act=_AC["sent"],
            uid=UID_CRM,
            brand=brand,
            content=self.content(brand, "DM"),
            actor_type=_AT["marketing"],
            func=COMMERCIAL,
            tpl=T_PIECE[rng.integers(0, len(T_PIECE), n)],
        )
        web_rate = 1.2 * P_WEBINAR[self.persona] * np.minimum(c.activity, 5.0)
        attend = np.array([0.62, 0.45, 0.55, 0.35, 0.7])[self.persona]
        self.registrations("webinar", web_rate, "WB", attend, 0.3, _hours({13: 0.4, 18: 1}))
        ev_rate = 0.5 * P_EVENT[self.persona] * (0.4 + 0.12 * self.decile)
        self.registrations("event", ev_rate, "EV", attend + 0.15, 0.1, _hours({18: 1, 19: 1}))


def simulate_chunk(world: World, chunk: HcpChunk, rng: np.random.Generator) -> EventRows:
    """Every interaction of one chunk of HCPs over the whole history, in generation order."""
    model = _Model(world, chunk, rng)
    model.calls()
    model.emails()
    model.web()
    model.congresses()
    model.medical()
    model.other()
    return model.rows
