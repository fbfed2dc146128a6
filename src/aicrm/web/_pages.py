"""The dashboard's pages: sign in with an API key, leads, a lead, clients, the summary.

Pages call the CRM library directly on the API's connection pool (no HTTP to the
API). The API key travels in the cookie ``aicrm_key`` (HttpOnly, SameSite=Strict) and
is checked on every request by the API's own dependencies (:mod:`aicrm.api.auth`, on
:mod:`aicrm.apikeys`): ``read`` to view, ``write`` to convert. Forms are also refused
when the browser says they come from another site.
"""

from __future__ import annotations

import uuid
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from aicrm.ai import closed, scoring, trend
from aicrm.ai.annotations import Annotation
from aicrm.api.auth import authenticate
from aicrm.api.deps import Db, ReadDb, ReadKey, WriteKey
from aicrm.crm import (
    clients,
    contacts,
    conversion,
    leads,
    reports,
    statuses as crm_statuses,
    store,
    timeline,
    users,
)
from aicrm.crm.records import Lead
from aicrm.db import Connection
from aicrm.errors import DuplicateFound, Forbidden, InvalidInput, Unauthorized
from aicrm.web import _charts as charts, _display as display, _tasks as tasks, _work as work
from aicrm.web._render import PageRoute, page

router = APIRouter(include_in_schema=False, route_class=PageRoute)

COOKIE = "aicrm_key"
PAGE_SIZE = 25
TIMELINE_SIZE = 100
STATIC = {"style.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}

# The distinct sources, by a loose index scan on leads_source_idx (fast on big tables).
SOURCES = """
WITH RECURSIVE s AS (
    (SELECT source FROM leads WHERE source IS NOT NULL ORDER BY source LIMIT 1)
    UNION ALL
    SELECT (SELECT l.source FROM leads l WHERE l.source > s.source ORDER BY l.source LIMIT 1)
    FROM s WHERE s.source IS NOT NULL
)
SELECT source FROM s WHERE source IS NOT NULL LIMIT 100
"""

Text = str | None


def same_site(request: Request) -> None:
    """Refuse a form posted from another site (SameSite=Strict already keeps the
    cookie away from one; this also covers the login form, which has no cookie)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("This form was sent from another site. Open the dashboard and try again.")


def local_path(path: str | None) -> str:
    """``path`` if it stays on this site, else the leads page (no open redirects)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/leads"


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/leads", status_code=303)


@router.get("/login")
def login_form(request: Request, next: Text = None) -> Response:
    return page(request, "login.html", next=local_path(next), error=None)


@router.post("/login")
def login(
    request: Request,
    conn: Db,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/leads",
) -> Response:
    """Check the key and keep it in the ``aicrm_key`` cookie for this browser session."""
    same_site(request)
    token = key.strip()
    try:
        authenticate(conn, token)
    except Unauthorized:
        error = "That key is not valid, or it was revoked. Check it and try again."
        return page(request, "login.html", 401, next=local_path(next), error=error)
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    same_site(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/leads")
def leads_page(
    request: Request,
    conn: ReadDb,
    key: ReadKey,
    q: Text = None,
    status: Text = None,
    source: Text = None,
    converted: Text = None,
    owner: Text = None,
    cursor: Text = None,
) -> Response:
    """Leads, newest first, filtered by status, source, owner and converted, and searched."""
    shown = {"q": _blank(q), "status": _blank(status), "source": _blank(source),
             "converted": _blank(converted), "owner": _blank(owner)}  # fmt: skip
    flag = {"yes": True, "no": False}.get(shown["converted"] or "")
    notice = None
    try:
        found = leads.list_leads(
            conn,
            status=shown["status"],
            source=shown["source"],
            converted=flag,
            owner=shown["owner"],
            query=store.Query(search=shown["q"], cursor=_blank(cursor), limit=PAGE_SIZE),
        )
        items, next_cursor = found.items, found.next_cursor
    except InvalidInput as exc:  # a search with no words, an unknown status: say so in place
        items, next_cursor, notice = [], None, exc.message
    filters = {k: v for k, v in shown.items() if v}
    return page(
        request,
        "leads.html",
        leads=items,
        filters=shown,
        statuses=crm_statuses.names(conn),  # lead_statuses (008), in the funnel's order
        sources=[row[0] for row in conn.execute(SOURCES).fetchall()],
        owners=users.list_users(conn),
        notice=notice,
        next_url=f"/leads?{urlencode(filters | {'cursor': next_cursor})}" if next_cursor else None,
        first_url=f"/leads?{urlencode(filters)}" if cursor else None,
    )


def _scoring(lead: Lead) -> Annotation | None:
    """The lead-scoring annotator's entry (score, tier, method), if it scored."""
    entry = lead.ai_annotations.get(scoring.ANNOTATOR)
    if not isinstance(entry, dict):
        return None
    return Annotation.parse(scoring.ANNOTATOR, entry)


def _lead_context(conn: Connection, lead_id: str) -> dict[str, Any]:
    lead = leads.get_lead(conn, lead_id)
    found = _scoring(lead)
    client = (
        clients.get_client(conn, lead.converted_to_client_id)
        if lead.converted_to_client_id
        else None
    )
    return {
        "lead": lead,
        "client": client,
        "contacts": contacts.list_contacts(conn, lead_id=lead.id, query=store.Query(limit=100)),
        **_timeline(conn, "leads", lead.id, lead.owner_id),
        "scoring": found,
        # converted or lost: its outcome is shown, never a chance to convert
        "outcome": closed.outcome(conn, str(lead.id)),
        "trend": (points := trend.trend(conn, str(lead.id))),
        "sparkline": trend.sparkline(points),
        # Any annotator may write any JSON here: only showable factors are kept.
        "factors": display.factors(found.values) if found else [],
        "duplicates": None,
        "work": work.for_record(conn, "lead", lead.id, lead.owner_id),
    }


def _timeline(
    conn: Connection, table: str, record_id: uuid.UUID, owner_id: uuid.UUID | None
) -> dict[str, Any]:
    """The newest entries of a record's timeline (activities and history), and its owner."""
    found = timeline.timeline(conn, table, record_id, limit=TIMELINE_SIZE)
    return {
        "timeline": found.items,
        "more_url": f"/api/{table}/{record_id}/timeline" if found.next_cursor else None,
        "owner": users.get_user(conn, owner_id) if owner_id else None,
    }


@router.get("/leads/{lead_id}")
def lead_page(request: Request, lead_id: str, conn: Db, key: ReadKey) -> Response:
    """A lead: its details, contacts, AI score and history, and the convert button."""
    return page(request, "lead.html", **_lead_context(conn, lead_id))


@router.post("/leads/{lead_id}/convert")
def convert(
    request: Request,
    lead_id: str,
    conn: Db,
    key: WriteKey,
    allow_duplicate: Annotated[bool, Form()] = False,
) -> Response:
    """Convert the lead into a new client. A duplicate email shows the records in the
    way and asks again (409); "convert anyway" sends ``allow_duplicate``."""
    same_site(request)
    try:
        done = conversion.convert_lead(
            conn, lead_id, allow_duplicate=allow_duplicate, actor=key.name
        )
    except DuplicateFound as exc:
        context = _lead_context(conn, lead_id)
        context["duplicates"] = exc.details.get("conflicting", [])
        return page(request, "lead.html", 409, **context)
    state = "already" if done.already_converted else "converted"
    return RedirectResponse(
        f"/clients/{done.client_id}?{urlencode({state: str(done.lead_id)})}", status_code=303
    )


@router.get("/clients")
def clients_page(
    request: Request, conn: ReadDb, key: ReadKey, q: Text = None, cursor: Text = None
) -> Response:
    """Clients, newest first, searched by name and industry."""
    search, notice = _blank(q), None
    try:
        found = clients.list_clients(
            conn, query=store.Query(search=search, cursor=_blank(cursor), limit=PAGE_SIZE)
        )
        items, next_cursor = found.items, found.next_cursor
    except InvalidInput as exc:
        items, next_cursor, notice = [], None, exc.message
    filters = {"q": search} if search else {}
    return page(
        request,
        "clients.html",
        clients=items,
        q=search,
        notice=notice,
        next_url=f"/clients?{urlencode(filters | {'cursor': next_cursor})}"
        if next_cursor
        else None,
        first_url=f"/clients?{urlencode(filters)}" if cursor else None,
    )


@router.get("/clients/{client_id}")
def client_page(
    request: Request,
    client_id: str,
    conn: Db,
    key: ReadKey,
    converted: Text = None,
    already: Text = None,
) -> Response:
    """A client: its details, contacts, the leads it was converted from, and history."""
    client = clients.get_client(conn, client_id)
    flashed = converted or already  # the lead that was just converted into this client
    just = leads.get_lead(conn, flashed) if flashed else None
    return page(
        request,
        "client.html",
        client=client,
        origin=reports.client_history(conn, client.id),
        contacts=contacts.list_contacts(conn, client_id=client.id, query=store.Query(limit=100)),
        **_timeline(conn, "clients", client.id, client.owner_id),
        just=just if just and just.converted_to_client_id == client.id else None,
        work=work.for_record(conn, "client", client.id, client.owner_id),
        was_already=already is not None,
    )


@router.get("/summary")
def summary_page(request: Request, conn: ReadDb, key: ReadKey) -> Response:
    """The conversion summary: totals, conversion by source, and the status funnel."""
    sources = reports.conversion_summary(conn)
    funnel = reports.status_funnel(conn)
    total = sum(s.total_leads for s in sources)
    converted = sum(s.converted_leads for s in sources)
    days = sum((s.avg_days_to_convert or 0) * s.converted_leads for s in sources)
    by_source = charts.hbars(
        "Conversion rate by source",
        [
            charts.Bar(s.source, s.conversion_rate * 100,
                       f"{s.conversion_rate:.0%} of {s.total_leads:,}")
            for s in sources
        ],
        top=100,
    )  # fmt: skip
    by_stage = charts.hbars(
        "Leads that reached each status",
        [
            charts.Bar(
                f.status,
                f.reached,
                f"{f.reached:,}" + (f" · −{f.drop_off:.0%}" if f.drop_off else ""),
            )
            for f in funnel
        ],
        color="#0ea5e9",
    )
    return page(
        request,
        "summary.html",
        sources=sources,
        total=total,
        converted=converted,
        rate=converted / total if total else 0.0,
        avg_days=days / converted if converted else None,
        by_source=by_source,
        by_stage=by_stage,
    )


router.include_router(tasks.router)  # "My tasks" (aicrm.web._tasks)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The dashboard's own stylesheet and icon (a fixed list: no paths from the URL)."""
    media = STATIC.get(name)
    if media is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body = files("aicrm.web").joinpath("static", name).read_bytes()
    return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
