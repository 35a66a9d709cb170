"""The content library service on the real database: create, edit, submit, review and sign,
propagation through fragments and variants, withdrawal, expiry, audit and generation."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from tests.conftest import NOW, TEST_ACTOR

from counterpoint.container import Container
from counterpoint.content.models import ContentGeneration, ContentItem, ContentReview
from counterpoint.content.repository import ItemFilter
from counterpoint.content.schemas import ContentDocumentError, parse_document, parse_documents
from counterpoint.content.service import (
    ContentForbiddenError,
    ContentIncompleteError,
    FragmentNotApprovedError,
    ReauthenticationFailedError,
    ReviewRefusedError,
    SignatureMeaningError,
    StaleContentError,
)
from counterpoint.content.workflow import ApprovalTerms, InvalidTransitionError
from counterpoint.errors import NotFoundError, ValidationFailedError
from counterpoint.kit.clock import FixedClock
from counterpoint.policy.access import Principal
from counterpoint.policy.audit import Actor

PASSWORD = "correct horse battery staple"
EXAMPLES = Path(__file__).parents[2] / "examples" / "content" / "library.yaml"
DISCIPLINES = ("medical", "legal", "regulatory")


def _footer(text: str = "Abmelden: {{ links.unsubscribe }}") -> dict[str, Any]:
    return {
        "kind": "fragment",
        "code": "footer-de",
        "title": "Footer",
        "function": "promotional",
        "markets": ["DE", "AT"],
        "languages": ["de"],
        "body": {"text": text},
    }


def _email(code: str = "CMX-DE-EM-1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "code": code,
        "asset_type": "campaign_email",
        "title": "Cardiomax news",
        "brand": "Cardiomax",
        "therapeutic_area": "cardiology",
        "topics": ["dosing"],
        "journey_stage": "consideration",
        "function": "promotional",
        "markets": ["DE"],
        "languages": ["de"],
        "channels": ["campaign_email"],
        "claims": [{"text": "Works (synthetic)", "references": ["Synthetic 2026;1:1"]}],
        "minutes": 2,
        "synthetic": True,
        "body": {
            "subject": "Hallo {{ hcp.last_name }}",
            "text": 'Neue Daten.\n{% include "footer-de" %}',
        },
    }
    doc.update(changes)
    return doc


class Library:
    """The container with an author and three MLR reviewers (passwords set)."""

    def __init__(self, container: Container) -> None:
        self.c = container
        container.users.create("author", "brand_manager", TEST_ACTOR, brands=["Cardiomax"])
        container.users.create("other-brand", "brand_manager", TEST_ACTOR, brands=["Zentrova"])
        for name in ("med", "leg", "reg", "rev4"):
            container.users.create(name, "mlr_reviewer", TEST_ACTOR)
            container.users.set_password(name, PASSWORD, TEST_ACTOR)
        self.author = container.users.principal("author")
        self.reviewers = {
            d: container.users.principal(n)
            for d, n in zip(DISCIPLINES, ("med", "leg", "reg"), strict=True)
        }

    def actor(self, who: Principal) -> Actor:
        return Actor.of(who, "tests")

    def create(self, *docs: dict[str, Any]) -> list[dict[str, Any]]:
        return self.c.content.create_many(
            parse_documents(list(docs)), self.author, self.actor(self.author)
        )

    def edit(self, item_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        return self.c.content.update(
            item_id, parse_document(doc), self.author, self.actor(self.author)
        )

    def submit(
        self, item_id: str, channels: tuple[str, ...] = ("campaign_email",), **terms: Any
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "job_code": "JOB-1",
            "markets": ("DE",),
            "channels": channels,
            "valid_from": NOW,
            "valid_until": NOW + dt.timedelta(days=365),
        }
        values.update(terms)
        return self.c.content.submit(
            item_id, ApprovalTerms(**values), self.author, self.actor(self.author)
        )

    def sign(
        self,
        item_id: str,
        discipline: str,
        who: Principal | None = None,
        *,
        manifest: str | None = None,
        password: str = PASSWORD,
        meaning: str | None = None,
    ) -> dict[str, Any]:
        signer = who or self.reviewers[discipline]
        current = manifest or self.c.content.get(item_id)["manifest_hash"]
        return self.c.content.review(
            item_id,
            discipline,
            "approved",
            None,
            signer,
            self.actor(signer),
            password=password,
            meaning=meaning or f"approved as {discipline} reviewer",
            manifest_hash=current,
        )

    def approve(
        self, item_id: str, channels: tuple[str, ...] = ("campaign_email",)
    ) -> dict[str, Any]:
        self.submit(item_id, channels)
        for discipline in DISCIPLINES:
            result = self.sign(item_id, discipline)
        return result["item"]

    def generation(self) -> int:
        with self.c.sessions() as session:
            row = session.get(ContentGeneration, 1)
            return row.value if row else -1

    def reviews(self) -> int:
        with self.c.sessions() as session:
            return len(session.scalars(select(ContentReview)).all())

    def actions(self) -> list[str]:
        return [r.action for r in self.c.audit.iter_records()]


@pytest.fixture
def lib(container: Container) -> Library:
    return Library(container)


@pytest.fixture
def approved(lib: Library) -> dict[str, str]:
    """An approved footer fragment and an approved e-mail that includes it."""
    footer, email = lib.create(_footer(), _email())
    lib.approve(footer["id"], channels=())
    lib.approve(email["id"])
    return {"footer": footer["id"], "email": email["id"]}


# --- create ---------------------------------------------------------------------------------


def test_a_created_item_is_a_draft_of_its_author_audited_and_counted(lib: Library) -> None:
    before = lib.generation()
    footer, email = lib.create(_footer(), _email())
    assert email["state"] == footer["state"] == "draft"
    assert email["author_id"] == lib.author.user_id
    assert email["fragments"] == ["footer-de"]
    assert email["version"] == 1
    assert len(email["content_hash"]) == 64
    assert email["manifest_hash"] is None  # nothing to sign before submission
    assert lib.generation() > before
    assert lib.actions().count("content.create") == 2
    record = [r for r in lib.c.audit.iter_records() if r.action == "content.create"][-1]
    assert record.after is not None
    assert record.after["body"]["subject"].startswith("Hallo")
    assert lib.c.audit.verify()[1] == []


def test_a_file_with_any_bad_document_stores_nothing_and_names_every_problem(
    lib: Library,
) -> None:
    docs = [
        _footer(),
        _email("A-1", body={"subject": "x", "text": '{% include "nope" %}'}),
        _email("A-2", parent="missing-parent"),
        _email("A-1"),
    ]
    with pytest.raises(ContentDocumentError) as caught:
        lib.create(*docs)
    found = {(p.index, p.field) for p in caught.value.problems}
    assert (1, "body.text") in found  # unknown fragment
    assert (2, "parent") in found
    assert (3, "code") in found  # duplicate within the file
    assert all(p.fix for p in caught.value.problems)
    assert lib.c.content.list(ItemFilter())["total"] == 0


def test_shape_errors_name_each_field(lib: Library) -> None:
    bad = _email(markets=["XX"], languages=["zz"], channels=["sms"], minutes=-1)
    bad["claims"] = [{"text": "no refs", "references": []}]
    bad["body"] = {"subject": "s", "text": "t", "slides": []}
    with pytest.raises(ContentDocumentError) as caught:
        parse_document(bad)
    fields = {p.field for p in caught.value.problems}
    assert {"markets", "languages", "minutes", "claims[0].references", "body.slides"} <= fields
    with pytest.raises(ContentDocumentError) as channel:
        parse_document(_email(channels=["sms"]))
    assert channel.value.problems[0].field == "channels"
    assert "campaign_email" in channel.value.problems[0].reason


def test_an_sms_longer_than_612_characters_is_refused() -> None:
    doc = _email(asset_type="sms_text", channels=["sms"], body={"text": "x" * 613})
    with pytest.raises(ContentDocumentError) as caught:
        parse_document(doc)
    assert caught.value.problems[0].field == "body.text"


def test_a_brand_scoped_author_creates_only_for_their_brands(lib: Library) -> None:
    other = lib.c.users.principal("other-brand")
    with pytest.raises(ContentForbiddenError) as caught:
        lib.c.content.create(parse_document(_email()), other, Actor.of(other, "tests"))
    assert caught.value.field == "brand"
    assert lib.c.content.list(ItemFilter())["total"] == 0


def test_the_example_library_loads(lib: Library) -> None:
    data = yaml.safe_load(EXAMPLES.read_text(encoding="utf-8"))
    created = lib.create(*data)
    assert {c["code"] for c in created} >= {"footer-de", "CMX-DE-EM-001", "CMX-AT-EM-001"}
    assert all(c["synthetic"] for c in created)
    variant = lib.c.content.get("CMX-AT-EM-001")
    assert variant["parent"] == "CMX-DE-EM-001"


# --- submit ---------------------------------------------------------------------------------


def test_submission_names_every_missing_field(lib: Library) -> None:
    (item,) = lib.create(
        {
            "code": "BARE-1",
            "asset_type": "campaign_email",
            "title": "Bare",
            "function": "promotional",
        }
    )
    with pytest.raises(ContentIncompleteError) as caught:
        lib.submit(item["id"])
    fields = [p["field"] for p in caught.value.extra["problems"]]
    assert fields[:3] == ["brand", "therapeutic_area", "topics"]
    assert {"markets", "languages", "channels", "minutes", "body.subject", "body.text"} <= set(
        fields
    )
    for name in ("brand", "minutes", "body.subject"):
        assert name in caught.value.detail
    assert lib.c.content.get(item["id"])["state"] == "draft"


def test_a_promotional_email_needs_an_unsubscribe_link(lib: Library) -> None:
    lib.create(_footer(text="Kein Link hier."))
    (item,) = lib.create(_email())
    with pytest.raises(ContentIncompleteError) as caught:
        lib.submit(item["id"])
    assert caught.value.field == "body.text"
    assert "unsubscribe" in caught.value.detail


def test_an_item_whose_fragment_is_not_approved_cannot_be_submitted(lib: Library) -> None:
    _, email = lib.create(_footer(), _email())
    with pytest.raises(FragmentNotApprovedError) as caught:
        lib.submit(email["id"])
    assert "footer-de" in caught.value.detail
    assert caught.value.status == 409


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"markets": ("FR",)}, "markets"),
        ({"markets": ()}, "markets"),
        ({"channels": ("sms",)}, "channels"),
        ({"channels": ()}, "channels"),
        ({"job_code": "no spaces allowed"}, "job_code"),
        ({"valid_until": NOW - dt.timedelta(days=1)}, "valid_until"),
        ({"valid_from": NOW + dt.timedelta(days=400)}, "valid_until"),
    ],
)
def test_bad_approval_terms_are_named(lib: Library, terms: dict[str, Any], field: str) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    with pytest.raises(ValidationFailedError) as caught:
        lib.submit(item["id"], **terms)
    assert caught.value.field == field
    assert caught.value.fix
    assert lib.c.content.get(item["id"])["state"] == "draft"


# --- review and sign --------------------------------------------------------------------------


def test_three_signatures_approve_and_bind_to_the_manifest(lib: Library) -> None:
    footer, email = lib.create(_footer(), _email())
    lib.approve(footer["id"], channels=())
    submitted = lib.submit(email["id"])
    manifest = submitted["manifest_hash"]
    assert lib.sign(email["id"], "medical")["item"]["state"] == "in_review"
    assert lib.sign(email["id"], "legal")["item"]["state"] == "in_review"
    done = lib.sign(email["id"], "regulatory")["item"]
    assert done["state"] == "approved"
    assert done["approval"]["approved_hash"] == manifest
    assert done["approval"]["approved_at"] == NOW
    history = lib.c.content.history(email["id"])
    assert [r["binds"] for r in history["reviews"]] == [True, True, True]
    assert all(
        r["meaning"] == f"approved as {r['discipline']} reviewer" for r in history["reviews"]
    )
    assert all(r["audit_seq"] for r in history["reviews"])
    assert "content.approved" in lib.actions()
    assert lib.actions().count("content.sign") == 6  # three for the footer, three here


def test_the_author_cannot_approve_their_own_content(lib: Library) -> None:
    lib.c.users.create("writer-reviewer", "mlr_reviewer", TEST_ACTOR)
    lib.c.users.set_password("writer-reviewer", PASSWORD, TEST_ACTOR)
    writer = lib.c.users.principal("writer-reviewer")
    # an author who later became a reviewer (the role changed): still their own content
    (item,) = lib.c.content.create_many(
        parse_documents([_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"})]),
        lib.author,
        lib.actor(lib.author),
    )
    with lib.c.sessions.begin() as session:
        session.get(ContentItem, item["id"]).author_id = writer.user_id  # type: ignore[union-attr]
    lib.submit(item["id"])
    with pytest.raises(ReviewRefusedError) as caught:
        lib.sign(item["id"], "medical", writer)
    assert caught.value.extra["rule"] == "own_content"
    assert "author" in caught.value.detail
    assert lib.reviews() == 0
    lib.sign(item["id"], "medical")  # the control: another reviewer signs
    assert lib.reviews() == 1


def test_the_same_user_cannot_sign_two_disciplines(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    lib.submit(item["id"])
    med = lib.reviewers["medical"]
    lib.sign(item["id"], "medical", med)
    with pytest.raises(ReviewRefusedError) as caught:
        lib.sign(item["id"], "legal", med)
    assert caught.value.extra["rule"] == "second_discipline"
    assert lib.reviews() == 1


def test_a_wrong_password_records_no_signature_and_is_audited(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    lib.submit(item["id"])
    with pytest.raises(ReauthenticationFailedError) as caught:
        lib.sign(item["id"], "medical", password="not the password")
    assert caught.value.status == 403
    assert caught.value.code == "reauthentication_failed"
    assert lib.reviews() == 0
    assert lib.c.content.get(item["id"])["state"] == "submitted"
    failures = [r for r in lib.c.audit.iter_records() if r.action == "signature.reauth_failed"]
    assert len(failures) == 1
    assert "not the password" not in str(failures[0].after)
    assert PASSWORD not in str([r.after for r in lib.c.audit.iter_records()])
    lib.sign(item["id"], "medical")  # the control: the right password signs
    assert lib.reviews() == 1


def test_a_disabled_reviewer_cannot_sign(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    lib.submit(item["id"])
    med = lib.reviewers["medical"]
    lib.c.users.disable("med", TEST_ACTOR, "left the company")
    assert not lib.c.users.verify_password(med.user_id, PASSWORD)
    with pytest.raises(ReauthenticationFailedError):
        lib.sign(item["id"], "medical", med)


def test_a_wrong_meaning_is_refused_naming_the_expected_words(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    lib.submit(item["id"])
    with pytest.raises(SignatureMeaningError) as caught:
        lib.sign(item["id"], "medical", meaning="approved as legal reviewer")
    assert caught.value.status == 400
    assert "approved as medical reviewer" in caught.value.detail
    assert lib.reviews() == 0


def test_replaying_a_signature_after_an_edit_is_stale(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    old = lib.submit(item["id"])["manifest_hash"]
    lib.sign(item["id"], "medical")
    edited = lib.edit(item["id"], _email(body={"subject": "s2", "text": "{{ links.unsubscribe }}"}))
    assert edited["state"] == "draft"
    assert edited["version"] == 2
    lib.submit(item["id"])
    with pytest.raises(StaleContentError) as caught:
        lib.sign(item["id"], "legal", manifest=old)
    assert caught.value.status == 409
    assert caught.value.code == "stale_content"
    assert "changed since you opened it" in caught.value.detail
    history = lib.c.content.history(item["id"])
    assert [r["binds"] for r in history["reviews"]] == [False]  # the old one no longer binds
    lib.sign(item["id"], "legal")  # the control: the current manifest signs
    binds = [r["binds"] for r in lib.c.content.history(item["id"])["reviews"]]
    assert binds == [False, True]


def test_changing_the_terms_changes_the_manifest(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    first = lib.submit(item["id"])["manifest_hash"]
    lib.edit(item["id"], _email(body={"subject": "s", "text": "Neu {{ links.unsubscribe }}"}))
    second = lib.submit(item["id"], job_code="JOB-2")["manifest_hash"]
    assert first != second


def test_changes_requested_and_rejected_need_comments(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    manifest = lib.submit(item["id"])["manifest_hash"]
    leg = lib.reviewers["legal"]
    with pytest.raises(ValidationFailedError) as caught:
        lib.c.content.review(
            item["id"], "legal", "changes_requested", " ", leg, lib.actor(leg),
            password=None, meaning=None, manifest_hash=manifest,
        )  # fmt: skip
    assert caught.value.field == "comments"
    result = lib.c.content.review(
        item["id"], "legal", "changes_requested", "Claim 1 needs a newer reference", leg,
        lib.actor(leg), password=None, meaning=None, manifest_hash=manifest,
    )  # fmt: skip
    assert result["item"]["state"] == "changes_requested"
    assert "newer reference" in (result["item"]["review_note"] or "")
    with pytest.raises(InvalidTransitionError):
        lib.submit(item["id"])  # an edit comes first


def test_rejected_is_final(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    manifest = lib.submit(item["id"])["manifest_hash"]
    reg = lib.reviewers["regulatory"]
    lib.c.content.review(
        item["id"], "regulatory", "rejected", "Off-label claim", reg, lib.actor(reg),
        password=None, meaning=None, manifest_hash=manifest,
    )  # fmt: skip
    with pytest.raises(InvalidTransitionError) as caught:
        lib.edit(item["id"], _email(title="Another try", body={"subject": "s", "text": "x"}))
    assert "final" in caught.value.detail
    assert lib.c.content.get(item["id"])["state"] == "rejected"


def test_a_draft_cannot_be_reviewed(lib: Library) -> None:
    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    with pytest.raises(InvalidTransitionError):
        lib.sign(item["id"], "medical", manifest="0" * 64)


# --- propagation ----------------------------------------------------------------------------


def test_a_fragment_edit_sends_approved_assets_back_to_review(
    lib: Library, approved: dict[str, str]
) -> None:
    before = lib.c.content.get(approved["email"])
    assert before["state"] == "approved"
    generation = lib.generation()
    lib.edit(approved["footer"], _footer(text="Abmelden hier: {{ links.unsubscribe }}"))
    after = lib.c.content.get(approved["email"])
    assert after["state"] == "submitted"
    assert after["review_note"] == "fragment footer-de changed"
    assert after["content_hash"] != before["content_hash"]
    assert after["version"] == before["version"] + 1
    assert after["approval"]["approved_hash"] is None
    history = lib.c.content.history(approved["email"])
    assert [r["binds"] for r in history["reviews"]] == [False, False, False]
    assert lib.generation() > generation
    assert "content.dependency_changed" in lib.actions()
    # the fragment is in draft: the asset cannot be signed until it is approved again
    with pytest.raises(FragmentNotApprovedError):
        lib.sign(approved["email"], "medical")
    lib.approve(approved["footer"], channels=())
    for discipline in DISCIPLINES:
        lib.sign(approved["email"], discipline)
    assert lib.c.content.get(approved["email"])["state"] == "approved"


def test_an_unchanged_edit_is_not_a_new_version(lib: Library, approved: dict[str, str]) -> None:
    result = lib.edit(approved["footer"], _footer())
    assert result["changed"] is False
    assert lib.c.content.get(approved["email"])["state"] == "approved"


def test_a_parent_edit_flags_its_local_variants(lib: Library, approved: dict[str, str]) -> None:
    (variant,) = lib.create(
        _email("CMX-AT-EM-1", parent="CMX-DE-EM-1", markets=["AT"], title="AT variant")
    )
    lib.c.content.submit(
        variant["id"],
        ApprovalTerms("JOB-AT", ("AT",), ("campaign_email",), NOW, NOW + dt.timedelta(days=90)),
        lib.author,
        lib.actor(lib.author),
    )
    for discipline in DISCIPLINES:
        lib.sign(variant["id"], discipline)
    assert lib.c.content.get(variant["id"])["state"] == "approved"
    lib.edit(approved["email"], _email(title="Cardiomax news, revised"))
    flagged = lib.c.content.get(variant["id"])
    assert flagged["state"] == "submitted"
    assert flagged["review_note"] == "global parent CMX-DE-EM-1 changed"
    assert not any(r["binds"] for r in lib.c.content.history(variant["id"])["reviews"])


def test_a_fragment_edit_reaches_variants_through_their_parent(
    lib: Library, approved: dict[str, str]
) -> None:
    (variant,) = lib.create(_email("CMX-AT-EM-1", parent="CMX-DE-EM-1", markets=["AT"]))
    lib.edit(approved["footer"], _footer(text="Neu: {{ links.unsubscribe }}"))
    note = lib.c.content.get(variant["id"])["review_note"]
    assert note in ("fragment footer-de changed", "global parent CMX-DE-EM-1 changed")
    assert lib.c.content.get(variant["id"])["version"] == 2


def test_a_variant_of_a_variant_is_refused(lib: Library, approved: dict[str, str]) -> None:
    lib.create(_email("CMX-AT-EM-1", parent="CMX-DE-EM-1", markets=["AT"]))
    with pytest.raises(ContentDocumentError) as caught:
        lib.create(_email("CMX-AT-EM-2", parent="CMX-AT-EM-1", markets=["AT"]))
    assert caught.value.problems[0].field == "parent"
    assert "local variant" in caught.value.problems[0].reason


# --- withdraw and expire ----------------------------------------------------------------------


def test_withdrawal_is_immediate_and_audited(lib: Library, approved: dict[str, str]) -> None:
    reg = lib.reviewers["regulatory"]
    generation = lib.generation()
    result = lib.c.content.withdraw(approved["email"], "safety update", reg, lib.actor(reg))
    assert result["state"] == "withdrawn"
    assert result["approval"]["withdrawn_at"] == NOW
    assert result["approval"]["approved_hash"]  # the record of what was approved stays
    assert lib.generation() > generation
    record = [r for r in lib.c.audit.iter_records() if r.action == "content.withdraw"][-1]
    assert record.reason == "safety update"
    assert record.actor == "reg"
    with pytest.raises(InvalidTransitionError):
        lib.c.content.withdraw(approved["email"], "again", reg, lib.actor(reg))


def test_only_reviewers_withdraw_and_a_reason_is_required(
    lib: Library, approved: dict[str, str]
) -> None:
    with pytest.raises(ContentForbiddenError):
        lib.c.content.withdraw(approved["email"], "because", lib.author, lib.actor(lib.author))
    reg = lib.reviewers["regulatory"]
    with pytest.raises(ValidationFailedError) as caught:
        lib.c.content.withdraw(approved["email"], "", reg, lib.actor(reg))
    assert caught.value.field == "reason"
    assert lib.c.content.get(approved["email"])["state"] == "approved"


def test_withdrawing_a_fragment_sends_its_assets_back_to_review(
    lib: Library, approved: dict[str, str]
) -> None:
    reg = lib.reviewers["regulatory"]
    lib.c.content.withdraw(approved["footer"], "wrong imprint", reg, lib.actor(reg))
    email = lib.c.content.get(approved["email"])
    assert email["state"] == "submitted"
    assert email["review_note"] == "fragment footer-de withdrawn"


def test_expiry_moves_approved_items_past_valid_until(
    lib: Library, approved: dict[str, str], clock: FixedClock
) -> None:
    assert lib.c.content.expire_due() == []
    soon = lib.c.content.expiring(400)
    assert [i["code"] for i in soon] == ["CMX-DE-EM-1", "footer-de"]  # same day: by code
    assert lib.c.content.expiring(30) == []
    clock.advance(dt.timedelta(days=366))
    generation = lib.generation()
    expired = lib.c.content.expire_due()
    assert {i["code"] for i in expired} == {"CMX-DE-EM-1", "footer-de"}
    assert lib.c.content.get(approved["email"])["state"] == "expired"
    assert lib.generation() > generation
    assert "content.expire" in lib.actions()
    assert lib.c.content.expire_due() == []


def test_expiring_lists_soonest_first(lib: Library) -> None:
    body = {"subject": "s", "text": "{{ links.unsubscribe }}"}
    for code, days in (("LATE", 60), ("SOON", 10), ("NEVER", 400)):
        (item,) = lib.create(_email(code, body=body))
        lib.submit(item["id"], valid_until=NOW + dt.timedelta(days=days))
        for discipline in DISCIPLINES:
            lib.sign(item["id"], discipline)
    assert [i["code"] for i in lib.c.content.expiring(90)] == ["SOON", "LATE"]
    with pytest.raises(ValidationFailedError):
        lib.c.content.expiring(0)


# --- reading ------------------------------------------------------------------------------------


def test_list_filters_and_pages(lib: Library) -> None:
    lib.create(_footer(), _email("A-1"), _email("A-2", markets=["AT"]), _email("B-1"))
    everything = lib.c.content.list(ItemFilter(), limit=2)
    assert everything["total"] == 4
    assert len(everything["items"]) == 2
    assert everything["next_offset"] == 2
    assert "body" not in everything["items"][0]
    assert lib.c.content.list(ItemFilter(kind="fragment"))["total"] == 1
    assert lib.c.content.list(ItemFilter(market="AT"))["total"] == 2  # footer and A-2
    assert lib.c.content.list(ItemFilter(text="a-"))["total"] == 2
    assert lib.c.content.list(ItemFilter(channel="campaign_email"))["total"] == 3
    assert lib.c.content.list(ItemFilter(state="approved"))["total"] == 0


def test_reads_respect_brand_scope(lib: Library) -> None:
    _, email = lib.create(_footer(), _email())
    other = lib.c.users.principal("other-brand")
    with pytest.raises(NotFoundError):
        lib.c.content.get(email["id"], other)
    codes = [i["code"] for i in lib.c.content.list(ItemFilter(), principal=other)["items"]]
    assert codes == ["footer-de"]  # a fragment without a brand is shared


def test_the_audit_chain_holds_after_a_whole_workflow(
    lib: Library, approved: dict[str, str]
) -> None:
    lib.edit(approved["footer"], _footer(text="Neu: {{ links.unsubscribe }}"))
    count, problems = lib.c.audit.verify()
    assert problems == []
    assert count > 10


def test_a_stored_item_does_not_share_the_callers_document(lib: Library) -> None:
    doc = _email()
    lib.create(_footer())
    (item,) = lib.create(copy.deepcopy(doc))
    doc["title"] = "changed after create"
    assert lib.c.content.get(item["id"])["title"] == "Cardiomax news"


def test_concurrent_signatures_complete_the_approval(lib: Library) -> None:
    """The last two disciplines sign at the same moment: both signatures are kept and the
    item is approved (changes to the library run one after another)."""
    from concurrent.futures import ThreadPoolExecutor

    (item,) = lib.create(_email(body={"subject": "s", "text": "{{ links.unsubscribe }}"}))
    manifest = lib.submit(item["id"])["manifest_hash"]
    lib.sign(item["id"], "medical", manifest=manifest)
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda d: lib.sign(item["id"], d, manifest=manifest), ["legal", "regulatory"])
        )
    assert len(results) == 2
    assert lib.reviews() == 3
    assert lib.c.content.get(item["id"])["state"] == "approved"
