"""The dashboard in a real headless Chromium, as a sales manager uses it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aicrm.crm import leads, session
from tests.web.conftest import Crm


@pytest.mark.slow
def test_find_convert_and_see_the_lead_under_its_client(
    browser: Any, live_url: str, crm: Crm
) -> None:
    hopper = crm.data.leads["Hopper"]
    with crm.db.connect() as conn, session.transaction(conn, "test"):
        leads.create_lead(  # a duplicate, so the dashboard has to ask
            conn, first_name="G.", last_name="Hopper", email=hopper.email, allow_duplicate=True
        )
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/leads")
        assert page.url.endswith("/login?next=/leads")  # sent to sign in first

        page.fill("#key", crm.data.write_token)
        page.click("button[type=submit]")
        page.wait_for_url("**/leads")
        cookie = next(c for c in context.cookies() if c["name"] == "aicrm_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # invisible to scripts

        page.fill("input[name=q]", "grace")
        page.click("form[role=search] button[type=submit]")
        page.wait_for_url(re.compile(r"/leads\?q=grace"))
        rows = page.locator("table.records tbody tr")
        assert rows.count() == 2  # the lead, and its duplicate (same email)
        page.get_by_role("link", name="Grace Hopper").click()
        page.wait_for_url(f"**/leads/{hopper.id}")
        assert page.locator("h1").inner_text().startswith("Grace Hopper")
        assert "84" in page.locator(".big-score").inner_text()

        page.get_by_role("button", name="Convert to client").click()
        warning = page.locator("#duplicates")
        warning.wait_for()
        assert "G. Hopper" in warning.inner_text()
        assert not crm.db.scalar("SELECT is_converted FROM leads WHERE id = %s", (hopper.id,))

        page.get_by_role("button", name="Convert anyway").click()
        page.wait_for_url(re.compile(r"/clients/[0-9a-f-]+\?converted="))
        assert "Grace Hopper is now a client" in page.locator(".alert-ok").inner_text()
        assert page.locator("h1").inner_text() == "Compiler Works"
        history = page.locator("#lead-history")
        assert str(hopper.email) in history.inner_text()

        page.locator("header nav").get_by_role("link", name="Clients").click()
        page.wait_for_url("**/clients")
        assert page.get_by_role("link", name="Compiler Works").count() == 1

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")
        page.goto(f"{live_url}/clients")
        assert "/login" in page.url
    finally:
        context.close()
    assert crm.db.scalar("SELECT is_converted FROM leads WHERE id = %s", (hopper.id,))


# Records every Content-Security-Policy violation of a page (Playwright's init script
# is injected by the browser itself, so the policy does not block it).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


def offline_context(browser: Any, live_url: str) -> Any:
    """A browser context that reaches the dashboard and nothing else (no internet)."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    context.add_init_script(WATCH_CSP)
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(live_url) else route.abort()
        ),
    )
    return context


@pytest.mark.slow
def test_the_pages_work_under_their_content_security_policy(
    browser: Any, live_url: str, crm: Crm
) -> None:
    lead = crm.data.leads["Lovelace"]
    crm.db.execute(  # a score trend, as two scorings write it (migration 011)
        "INSERT INTO lead_score_history (lead_id, model_version, score, scored_at) VALUES "
        "(%s, 'ls-1', 0.62, now() - interval '20 days'), (%s, 'ls-1', 0.91, now())",
        (lead.id, lead.id),
    )
    context = offline_context(browser, live_url)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/login")
        page.fill("#key", crm.data.read_token)
        page.click("button[type=submit]")
        page.wait_for_url("**/leads")
        for path in ("/leads", f"/leads/{lead.id}", "/clients", "/summary"):
            answer = page.goto(f"{live_url}{path}")
            assert answer is not None and answer.status == 200, path
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert page.evaluate("window.__csp") == [], path
        # The score meter still draws (an SVG, not an inline style).
        page.goto(f"{live_url}/leads/{lead.id}")
        assert page.locator(".ai .meter-fill").get_attribute("width") == "91"
        assert page.locator(".ai .meter").bounding_box()["width"] > 100
        # The score trend: an SVG sparkline (no script, no inline style) and its table.
        line = page.locator(".ai svg.sparkline polyline")
        assert line.get_attribute("points") == "0.0,12.4 160.0,3.7"  # 62 % then 91 %
        assert page.locator(".ai svg.sparkline").bounding_box()["width"] > 100
        assert "62 → 91" in (page.locator(".ai svg.sparkline").get_attribute("aria-label") or "")
        cells = page.locator(".ai table.trend tbody tr td:nth-child(2)").all_inner_texts()
        assert cells == ["91", "62"]  # newest first
    finally:
        context.close()


@pytest.mark.slow
def test_api_docs_render_without_internet(browser: Any, live_url: str) -> None:
    context = offline_context(browser, live_url)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/docs")
        operations = page.locator(".opblock-summary-path")
        operations.first.wait_for(timeout=90_000)  # 1.4 MB of script on a busy machine
        paths = set(operations.all_inner_texts())
        assert "/api/leads" in {p.replace("\u200b", "") for p in paths}
        assert operations.count() > 20
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()


@pytest.mark.slow
def test_a_salesperson_sees_the_timeline_and_their_tasks(
    browser: Any, live_url: str, crm: Crm
) -> None:
    context = offline_context(browser, live_url)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/login")
        page.fill("#key", crm.data.write_token)  # maria.sales's key: it belongs to Maria
        page.click("button[type=submit]")
        page.wait_for_url("**/leads")
        page.select_option("select[name=owner]", "maria@example.com")
        page.click("form[role=search] button[type=submit]")
        page.wait_for_url(re.compile(r"owner=maria%40example.com"))
        names = page.locator("table.records tbody tr td:first-child").all_inner_texts()
        assert "Ada Lovelace" in names and "Alan Turing" not in names
        page.get_by_role("link", name="Ada Lovelace").click()
        page.wait_for_url("**/leads/*")
        assert "Maria Sales" in page.locator("dd.owner").inner_text()
        feed = page.locator("#timeline li")
        kinds = [feed.nth(i).get_attribute("class") for i in range(feed.count())]
        assert {"entry-activity", "entry-history"} <= set(kinds)
        assert page.locator("#timeline").get_by_text("Discovery call").count() == 1
        page.locator("header nav").get_by_role("link", name="My tasks").click()
        page.wait_for_url("**/tasks")
        rows = page.locator("#tasks tbody tr").all_inner_texts()
        assert [("Book demo" in r, "Send pricing" in r) for r in rows] == [
            (True, False),
            (False, True),
        ]
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()
