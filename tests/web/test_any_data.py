"""Pages render whatever the API accepts (issue #15, item 1).

Values are formatted by their column's type, never by how a string looks, and an
annotation is shown whatever an annotator wrote. The renderers are also
property-tested on arbitrary JSON and text (hypothesis), without a database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.requests import Request

from aicrm.ai import closed, scoring, trend
from aicrm.ai.annotations import Annotation
from aicrm.apikeys import ApiKey
from aicrm.crm import clients, leads, session
from aicrm.crm.activities import Activity
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client, Lead
from aicrm.crm.timeline import Entry
from aicrm.crm.users import User
from aicrm.web import _display as display
from aicrm.web._render import templates
from aicrm.web._work import Work
from tests.web.conftest import Crm, sign_in

TRAPS = {
    "last_contact": "2026-01-05T10:00:00 UTC",
    "note": "1999-12-31T-- SPECIAL OFFER --",
    "when": "2026-01-01Tnot-a-date-at-all",
}


def test_text_shaped_like_a_date_is_shown_as_text(client: TestClient, crm: Crm) -> None:
    with crm.db.connect() as conn, session.transaction(conn, "test"):
        lead = leads.create_lead(conn, company_name="Acme", attributes=dict(TRAPS))
        leads.update_lead(conn, lead.id, {"company_name": "2026-01-01Tnot-a-date-at-all"})
        leads.update_lead(conn, lead.id, {"company_name": "Acme"})  # history keeps the old one
        made = clients.create_client(conn, name="Offers Inc", industry="retail")
        clients.update_client(conn, made.id, {"industry": "1999-12-31T-- SPECIAL OFFER --"})
    sign_in(client, crm.data.read_token)
    page = client.get(f"/leads/{lead.id}")
    assert page.status_code == 200, page.text
    assert "2026-01-05T10:00:00 UTC" in page.text and "2026-01-01Tnot-a-date-at-all" in page.text
    assert "1999-12-31T-- SPECIAL OFFER --" in page.text
    shown = client.get(f"/clients/{made.id}")
    assert shown.status_code == 200 and "SPECIAL OFFER" in shown.text
    # A real timestamp in the history is still formatted as one.
    assert display.shown("2026-01-05T10:00:00+00:00", "updated_at") == "2026-01-05 10:00 UTC"


def test_any_scoring_annotation_renders(client: TestClient, crm: Crm) -> None:
    entries: list[dict[str, Any]] = [
        {"model": "m", "version": "v", "values": {"tier": "B"}},  # no produced_at
        {"produced_at": "", "values": {"factors": [["status", "x", 1000]]}},
        {"values": {"factors": [{"feature": "status", "value": "x", "contribution": "abc"}]}},
        {"values": {"factors": [["status", "x", "abc"], "junk", {"feature": None}]}},
        {"values": {"factors": {"not": "a list"}, "horizon_days": {"x": 1}}},
        {"values": "not an object", "confidence": "high", "produced_at": 5},
    ]
    sign_in(client, crm.data.read_token)
    for entry in entries:
        with crm.db.connect() as conn, session.transaction(conn, "test"):
            lead = leads.create_lead(conn, ai_score=0.5, ai_annotations={scoring.ANNOTATOR: entry})
        page = client.get(f"/leads/{lead.id}")
        assert page.status_code == 200, (entry, page.text[-500:])
    assert "×" in display.odds(1000) and display.odds("abc") == "—"


def test_an_engagement_factor_is_shown_in_words_and_any_words_are_escaped(
    client: TestClient, crm: Crm
) -> None:
    odd = '<b>"3 calls"</b> \u202e & more'
    entry = {"values": {"factors": [
        ["calls_14d", 3, 0.8],
        {"feature": "status", "value": "new", "contribution": 0.1, "words": odd},
    ]}}  # fmt: skip
    sign_in(client, crm.data.read_token)
    with crm.db.connect() as conn, session.transaction(conn, "test"):
        lead = leads.create_lead(conn, ai_score=0.5, ai_annotations={scoring.ANNOTATOR: entry})
    page = client.get(f"/leads/{lead.id}")
    assert page.status_code == 200
    assert "3 calls in the last 14 days" in page.text
    assert "Calls in the last 14 days: <b>" not in page.text  # the words, not label: value
    assert "&lt;b&gt;&#34;3 calls&#34;&lt;/b&gt;" in page.text and odd not in page.text


# --- property tests of the renderers, no database ------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
COLUMNS = st.sampled_from([*Lead.COLUMNS, "anything", ""]) | st.text(max_size=20)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY = ApiKey(uuid.uuid4(), "viewer", "write", "abc", NOW, None, None)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def request(path: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "query_string": b"",
                    "headers": [], "scheme": "http", "server": ("testserver", 80)})  # fmt: skip


@SETTINGS
@given(value=JSON, column=COLUMNS, with_time=st.booleans())
def test_the_filters_return_text_for_any_value(value: Any, column: str, with_time: bool) -> None:
    for text in (
        display.shown(value, column),
        display.shown(value),
        display.when(value, with_time),
        display.score(value),
        display.odds(value),
    ):
        assert isinstance(text, str)


FORM_FIELDS = ("first_name", "last_name", "email", "company_name", "source", "status", "owner")


def work_of(text: str, attributes: dict[str, Any]) -> Work:
    """An owner and an open task whose every text is ``text`` (the "Owner and tasks" card)."""
    user = User(uuid.uuid4(), text, text, True, NOW)
    task = Activity(uuid.uuid4(), "task", text, text, NOW, None, user.id, text, uuid.uuid4(),
                    None, None, attributes, NOW, NOW)  # fmt: skip
    return Work(owner=user, users=[user], open_tasks=[task])


@SETTINGS
@given(
    text=st.text(),
    attributes=st.dictionaries(st.text(), JSON, max_size=5),
    annotation=JSON,
    changes=st.dictionaries(st.sampled_from(Lead.COLUMNS) | st.text(), JSON, max_size=5),
    score=st.none() | st.floats(min_value=0, max_value=1),
)
def test_the_lead_and_client_pages_render_any_json_and_text(
    text: str, attributes: dict[str, Any], annotation: Any, changes: dict[str, Any],
    score: float | None,
) -> None:  # fmt: skip
    lead = Lead(uuid.uuid4(), text, text, text, text, text, "new", score, text,
                {scoring.ANNOTATOR: annotation, text: annotation}, attributes,
                None, None, False, NOW, NOW)  # fmt: skip
    found = (
        Annotation.parse(scoring.ANNOTATOR, annotation) if isinstance(annotation, dict) else None
    )
    timeline = [Entry("history", str(i), NOW, text, {"operation": op, "changes": changes})
                for i, op in enumerate(("insert", "update", "delete"))]  # fmt: skip
    timeline += [
        Entry("activity", str(uuid.uuid4()), NOW, text,
              {"kind": kind, "subject": text, "body": text, "due_at": text, "done_at": done,
               "attributes": attributes})
        for kind, done in (("task", None), ("task", text), ("note", None), (text, annotation))
    ]  # fmt: skip
    points = [trend.Point(NOW, s, text) for s in (score or 0.0, 0.5)]
    for outcome in (None, closed.Outcome(lead.id, text, text, NOW)):
        html = templates.get_template("lead.html").render(
            request=request(f"/leads/{lead.id}"), key=KEY, lead=lead, client=None,
            contacts=Page([], None), timeline=timeline, scoring=found,
            factors=display.factors(found.values) if found else [], duplicates=None,
            owner=None, more_url=None, work=work_of(text, attributes), outcome=outcome,
            trend=points, sparkline=trend.sparkline(points),
        )  # fmt: skip
        assert "<h1>" in html
    form = templates.get_template("lead_form.html").render(
        request=request(f"/leads/{lead.id}/edit"), key=KEY, lead=lead, version=text,
        values=dict.fromkeys(FORM_FIELDS, text), statuses=[text, "new"],
        users=work_of(text, attributes).users, duplicates=[
            {"kind": "lead", "id": str(lead.id), "name": text, "email": text}
        ], stale=dict.fromkeys(FORM_FIELDS, text), error=text,
    )  # fmt: skip
    assert 'id="duplicates"' in form and 'id="stale"' in form
    client = Client(uuid.uuid4(), text or "x", text, score, text, {}, attributes, NOW, NOW)
    html = templates.get_template("client.html").render(
        request=request(f"/clients/{client.id}"), key=KEY, client=client, origin=[],
        contacts=Page([], None), timeline=timeline, just=None, was_already=False,
        owner=None, more_url=f"/api/clients/{client.id}/timeline",
        work=work_of(text, attributes),
    )  # fmt: skip
    assert "<h1>" in html
