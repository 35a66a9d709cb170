"""The MLR workflow in pure form: the transition table, review rules, approval completeness,
the hashes signatures bind to, and required metadata. Hypothesis drives random sequences."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from counterpoint.content.workflow import (
    FINAL_STATES,
    REQUIRED_DISCIPLINES,
    TRANSITIONS,
    ApprovalTerms,
    ContentState,
    Decision,
    Discipline,
    InvalidTransitionError,
    Signature,
    WorkflowEvent,
    advance,
    allowed_events,
    approval_complete,
    content_hash,
    expected_meaning,
    manifest_hash,
    required_metadata_problems,
    review_problems,
)

S, E = ContentState, WorkflowEvent
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
TERMS = ApprovalTerms("JOB-1", ("DE",), ("campaign_email",), T0, T0 + dt.timedelta(days=365))

states = st.sampled_from(list(ContentState))
events = st.sampled_from(list(WorkflowEvent))


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": "asset",
        "asset_type": "campaign_email",
        "code": "CMX-1",
        "title": "Hello",
        "brand": "Cardiomax",
        "therapeutic_area": "cardiology",
        "topics": ["dosing"],
        "journey_stage": "awareness",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "channels": ["campaign_email"],
        "claims": [],
        "minutes": 2.0,
        "persona": None,
        "parent": None,
        "body": {"subject": "Hi", "text": "Hello"},
    }
    item.update(changes)
    return item


def _hash(item: dict[str, Any], fragments: dict[str, str] | None = None) -> str:
    return content_hash(item, fragment_hashes=fragments or {}, parent_hash=None)


# --- the table ------------------------------------------------------------------------------


def test_the_table_is_the_documented_workflow() -> None:
    assert advance(S.DRAFT, E.SUBMIT) is S.SUBMITTED
    assert advance(S.SUBMITTED, E.REVIEW_STARTED) is S.IN_REVIEW
    assert advance(S.IN_REVIEW, E.APPROVE) is S.APPROVED
    assert advance(S.IN_REVIEW, E.REQUEST_CHANGES) is S.CHANGES_REQUESTED
    assert advance(S.IN_REVIEW, E.REJECT) is S.REJECTED
    assert advance(S.APPROVED, E.EXPIRE) is S.EXPIRED
    assert advance(S.APPROVED, E.WITHDRAW) is S.WITHDRAWN
    assert advance(S.APPROVED, E.DEPENDENCY_CHANGED) is S.SUBMITTED
    assert {S.REJECTED, S.EXPIRED, S.WITHDRAWN} == FINAL_STATES


def test_a_refused_transition_names_state_event_and_what_is_allowed() -> None:
    with pytest.raises(InvalidTransitionError) as caught:
        advance(S.DRAFT, E.APPROVE)
    error = caught.value
    assert error.status == 409
    assert error.code == "invalid_transition"
    assert "draft" in error.detail
    assert "approve" in error.detail
    assert "submit" in error.detail  # what draft allows
    with pytest.raises(InvalidTransitionError) as final:
        advance(S.REJECTED, E.EDIT)
    assert "final" in final.value.detail
    assert final.value.fix
    assert "new item" in final.value.fix


@given(states, events)
def test_advance_follows_the_table_exactly(state: ContentState, event: WorkflowEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert advance(state, event) is TRANSITIONS[(state, event)]
        assert event in allowed_events(state)
    else:
        with pytest.raises(InvalidTransitionError):
            advance(state, event)
        assert event not in allowed_events(state)


@given(st.lists(events, max_size=40))
def test_random_event_sequences_never_leave_the_table(sequence: list[WorkflowEvent]) -> None:
    state, previous = S.DRAFT, None
    for event in sequence:
        try:
            after = advance(state, event)
        except InvalidTransitionError:
            assert (state, event) not in TRANSITIONS
            continue
        assert after in ContentState
        assert (state, event) in TRANSITIONS
        if after is S.APPROVED and state is not S.APPROVED:
            assert event is E.APPROVE  # approved is reached only through approve
        previous, state = state, after
    assert previous is None or previous in ContentState


@given(states)
def test_an_edit_from_any_non_final_state_lands_in_draft(state: ContentState) -> None:
    if state in FINAL_STATES:
        with pytest.raises(InvalidTransitionError):
            advance(state, E.EDIT)
    else:
        assert advance(state, E.EDIT) is S.DRAFT


def test_only_approve_leads_into_approved() -> None:
    into = {(s, e) for (s, e), t in TRANSITIONS.items() if t is S.APPROVED}
    assert into == {(S.IN_REVIEW, E.APPROVE)}


def test_final_states_accept_nothing() -> None:
    for state in FINAL_STATES:
        assert allowed_events(state) == []


# --- hashes ---------------------------------------------------------------------------------


text = st.text(min_size=1, max_size=30)


@given(text, text)
def test_an_edit_of_the_body_changes_content_and_manifest(before: str, after: str) -> None:
    old, new = _item(body={"text": before}), _item(body={"text": after})
    same = before == after
    assert (_hash(old) == _hash(new)) is same
    assert (manifest_hash(_hash(old), TERMS) == manifest_hash(_hash(new), TERMS)) is same


@given(st.sampled_from(["title", "brand", "markets", "channels", "minutes", "claims"]))
def test_metadata_is_covered_by_the_hash(name: str) -> None:
    changed = {
        "title": "Other",
        "brand": "Other",
        "markets": ["AT"],
        "channels": [],
        "minutes": 3.0,
        "claims": [{"text": "x", "references": ["r"]}],
    }[name]
    assert _hash(_item()) != _hash(_item(**{name: changed}))


def test_fragments_and_parent_are_covered_by_the_hash() -> None:
    base = _hash(_item(), {"footer": "a" * 64})
    assert base != _hash(_item(), {"footer": "b" * 64})
    assert base != _hash(_item(), {})
    with_parent = content_hash(_item(), fragment_hashes={"footer": "a" * 64}, parent_hash="c")
    assert with_parent != base
    assert with_parent != content_hash(
        _item(), fragment_hashes={"footer": "a" * 64}, parent_hash="d"
    )


def test_the_hash_is_canonical() -> None:
    reordered = dict(reversed(list(_item().items())))
    assert _hash(reordered) == _hash(_item())
    assert _hash(_item(minutes=2)) == _hash(_item(minutes=2.0))  # as stored: a float
    terms = ApprovalTerms("JOB-1", ("DE", "AT"), ("rep_email", "campaign_email"), T0, T0)
    swapped = ApprovalTerms("JOB-1", ("AT", "DE"), ("campaign_email", "rep_email"), T0, T0)
    assert manifest_hash("h", terms) == manifest_hash("h", swapped)


@given(
    st.sampled_from(["job_code", "markets", "channels", "valid_from", "valid_until"]),
)
def test_every_approval_term_is_covered_by_the_manifest(name: str) -> None:
    changed = {
        "job_code": "JOB-2",
        "markets": ("AT",),
        "channels": ("rep_email",),
        "valid_from": T0 - dt.timedelta(days=1),
        "valid_until": T0 + dt.timedelta(days=30),
    }[name]
    other = _terms(name, changed)
    assert manifest_hash("h", other) != manifest_hash("h", TERMS)


def _terms(name: str, value: Any) -> ApprovalTerms:
    fields = {
        "job_code": TERMS.job_code,
        "markets": TERMS.markets,
        "channels": TERMS.channels,
        "valid_from": TERMS.valid_from,
        "valid_until": TERMS.valid_until,
    }
    fields[name] = value
    return ApprovalTerms(**fields)


# --- reviews and signatures -------------------------------------------------------------------


def _signed(discipline: Discipline, who: str, manifest: str = "m1") -> Signature:
    return Signature(discipline, who, Decision.APPROVED, manifest, True)


def _problems(**changes: Any) -> list[str]:
    args: dict[str, Any] = {
        "author_id": "author",
        "reviewer_id": "rev-1",
        "reviewer_role": "mlr_reviewer",
        "discipline": Discipline.MEDICAL,
        "manifest_hash": "m1",
        "signatures": [],
    }
    args.update(changes)
    return [p.code for p in review_problems(**args)]


def test_a_reviewer_may_review() -> None:
    assert _problems() == []


def test_the_author_may_never_review_their_own_content() -> None:
    assert _problems(reviewer_id="author") == ["own_content"]


def test_the_reviewer_must_hold_the_mlr_reviewer_role() -> None:
    assert _problems(reviewer_role="brand_manager") == ["not_a_reviewer"]


def test_one_person_signs_for_one_discipline_per_version() -> None:
    signed = [_signed(Discipline.MEDICAL, "rev-1")]
    assert _problems(discipline=Discipline.LEGAL, signatures=signed) == ["second_discipline"]
    # another version (manifest): the same person may review again
    assert _problems(discipline=Discipline.LEGAL, signatures=signed, manifest_hash="m2") == []
    # another person for the other discipline: fine
    assert _problems(reviewer_id="rev-2", discipline=Discipline.LEGAL, signatures=signed) == []


def test_a_discipline_signs_once_per_version() -> None:
    signed = [_signed(Discipline.MEDICAL, "rev-1")]
    assert _problems(reviewer_id="rev-2", signatures=signed) == ["already_signed"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Discipline)),
            st.sampled_from(["m1", "m2"]),
            st.booleans(),
        ),
        max_size=8,
    ),
    st.sampled_from(["promotional", "medical", "educational"]),
)
def test_approval_is_complete_exactly_when_every_required_discipline_signed_the_manifest(
    parts: list[tuple[Discipline, str, bool]], function: str
) -> None:
    signatures = [
        Signature(d, f"r{i}", Decision.APPROVED if ok else Decision.REJECTED, m, ok)
        for i, (d, m, ok) in enumerate(parts)
    ]
    signed_now = {d for d, m, ok in parts if ok and m == "m1"}
    expected = REQUIRED_DISCIPLINES[function] <= signed_now
    assert approval_complete(signatures, function, "m1") is expected


def test_every_function_needs_all_three_disciplines() -> None:
    for function in ("promotional", "medical", "educational"):
        assert REQUIRED_DISCIPLINES[function] == set(Discipline)
    two = [_signed(Discipline.MEDICAL, "a"), _signed(Discipline.LEGAL, "b")]
    assert not approval_complete(two, "medical", "m1")
    assert approval_complete([*two, _signed(Discipline.REGULATORY, "c")], "medical", "m1")


def test_the_meaning_names_the_discipline() -> None:
    assert expected_meaning(Discipline.REGULATORY) == "approved as regulatory reviewer"


# --- required metadata -----------------------------------------------------------------------


def test_a_complete_asset_has_no_problems() -> None:
    assert required_metadata_problems(_item()) == []


def test_each_missing_field_is_named_with_a_fix() -> None:
    bare = _item(
        brand=None,
        topics=[],
        journey_stage=None,
        markets=[],
        channels=[],
        minutes=None,
        body={"subject": "Hi"},
    )
    problems = required_metadata_problems(bare)
    fields = [f for f, _, _ in problems]
    assert fields == [
        "brand",
        "topics",
        "journey_stage",
        "markets",
        "channels",
        "minutes",
        "body.text",
    ]
    assert all(reason and fix for _, reason, fix in problems)


@pytest.mark.parametrize(
    ("asset_type", "body", "missing"),
    [
        ("sms_text", {}, ["body.text"]),
        ("clm_deck", {"slides": []}, ["body.slides"]),
        ("web_page", {}, ["body.html"]),
        ("survey", {"questions": []}, ["body.questions"]),
        ("leaflet", {"file_name": "a.pdf"}, ["body.file_name"]),
        ("leaflet", {"url": "https://example.invalid/a.pdf"}, []),
        ("direct_mail", {"text": "Dear doctor"}, []),
    ],
)
def test_the_body_each_asset_type_needs(
    asset_type: str, body: dict[str, Any], missing: list[str]
) -> None:
    problems = required_metadata_problems(_item(asset_type=asset_type, body=body))
    assert [f for f, _, _ in problems] == missing


def test_a_fragment_needs_its_text_and_scope() -> None:
    fragment = {"kind": "fragment", "title": "Footer", "function": "promotional", "body": {}}
    fields = [f for f, _, _ in required_metadata_problems(fragment)]
    assert fields == ["markets", "languages", "body.text"]


# --- the service's rules in pure form ------------------------------------------------------------


class ReviewDesk(RuleBasedStateMachine):
    """An item, its reviews and edits, driven by the pure rules the service applies: an
    approved item's signatures always bind to its current content and terms."""

    def __init__(self) -> None:
        super().__init__()
        self.state = S.DRAFT
        self.version = 1
        self.signatures: list[Signature] = []
        self.approved_manifest: str | None = None

    @property
    def manifest(self) -> str:
        return manifest_hash(_hash(_item(body={"text": f"v{self.version}"})), TERMS)

    def _try(self, event: WorkflowEvent) -> bool:
        try:
            self.state = advance(self.state, event)
        except InvalidTransitionError:
            return False
        return True

    @rule()
    def submit(self) -> None:
        self._try(E.SUBMIT)

    @rule()
    def edit(self) -> None:
        before = self.manifest
        if self._try(E.EDIT):
            self.version += 1
            assert self.manifest != before
            self.approved_manifest = None

    @rule()
    def fragment_changed(self) -> None:
        if self.state not in FINAL_STATES:
            self.version += 1  # the included fragment's hash is part of the content hash
            self._try(E.DEPENDENCY_CHANGED)
            self.approved_manifest = None

    @rule(
        discipline=st.sampled_from(list(Discipline)),
        reviewer=st.sampled_from(["author", "r1", "r2", "r3"]),
        decision=st.sampled_from(list(Decision)),
        replay=st.booleans(),
    )
    def review(
        self, discipline: Discipline, reviewer: str, decision: Decision, replay: bool
    ) -> None:
        manifest = self.manifest if not replay else "stale-" + self.manifest
        if self.state not in (S.SUBMITTED, S.IN_REVIEW) or manifest != self.manifest:
            return  # the service refuses: invalid transition, or stale content
        problems = review_problems(
            author_id="author",
            reviewer_id=reviewer,
            reviewer_role="mlr_reviewer",
            discipline=discipline,
            manifest_hash=manifest,
            signatures=self.signatures,
        )
        if reviewer == "author":
            assert problems
        if problems:
            return
        self.state = advance(self.state, E.REVIEW_STARTED)
        signed = decision is Decision.APPROVED
        self.signatures.append(Signature(discipline, reviewer, decision, manifest, signed))
        if signed and approval_complete(self.signatures, "promotional", manifest):
            self.state = advance(self.state, E.APPROVE)
            self.approved_manifest = manifest
        elif decision is Decision.CHANGES_REQUESTED:
            self.state = advance(self.state, E.REQUEST_CHANGES)
        elif decision is Decision.REJECTED:
            self.state = advance(self.state, E.REJECT)

    @precondition(lambda self: self.state is S.APPROVED)
    @rule(withdraw=st.booleans())
    def end(self, withdraw: bool) -> None:
        self.state = advance(self.state, E.WITHDRAW if withdraw else E.EXPIRE)

    @invariant()
    def approved_means_signatures_bind(self) -> None:
        if self.state is S.APPROVED:
            assert self.approved_manifest == self.manifest
            assert approval_complete(self.signatures, "promotional", self.manifest)
            signers = {s.reviewer_id for s in self.signatures if s.manifest_hash == self.manifest}
            assert "author" not in signers

    @invariant()
    def one_person_one_discipline_per_version(self) -> None:
        seen: dict[tuple[str, str], set[Discipline]] = {}
        for s in self.signatures:
            seen.setdefault((s.manifest_hash, s.reviewer_id), set()).add(s.discipline)
        assert all(len(d) == 1 for d in seen.values())


ReviewDesk.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_review_desk = ReviewDesk.TestCase
