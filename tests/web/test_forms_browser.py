"""The dashboard's write forms in a real headless Chromium, under the CSP: create a lead
past the duplicate prompt, edit it, log a task, complete it, reassign the lead."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aicrm.crm import session, users
from tests.web.conftest import Crm
from tests.web.test_browser import offline_context

ODD = 'Zoë "Z" O\'Neil <b>&amp;</b> ‮rtl  two  spaces 🙂'


@pytest.mark.slow
def test_a_salesperson_works_on_a_lead_in_the_browser(
    browser: Any, live_url: str, crm: Crm
) -> None:
    with crm.db.connect() as conn, session.transaction(conn, "setup"):
        ada = users.add_user(conn, "Ada Seller", "ada@example.com")
        users.add_user(conn, "Bob Seller", "bob@example.com")
    hopper = crm.data.leads["Hopper"]
    context = offline_context(browser, live_url)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/login")
        page.fill("#key", crm.data.write_token)
        page.click("button[type=submit]")
        page.wait_for_url("**/leads")

        page.click("#new-lead")
        page.wait_for_url("**/leads/new")
        page.fill("#first_name", ODD)
        page.fill("#last_name", "Hopper")
        page.fill("#email", str(hopper.email).upper())
        page.fill("#company_name", ODD)
        page.select_option("#owner", str(ada.id))
        page.click("#save")
        warning = page.locator("#duplicates")
        warning.wait_for()
        assert "Grace Hopper" in warning.inner_text()
        assert page.input_value("#first_name") == ODD  # what was typed is kept
        page.get_by_role("button", name="Save anyway").click()
        page.wait_for_url(re.compile(r"/leads/[0-9a-f-]{36}$"))
        lead_id = page.url.rsplit("/", 1)[-1]
        assert (page.locator("h1").text_content() or "").startswith(ODD)  # exact in the DOM
        assert page.locator("#owner-name").inner_text() == "Ada Seller"
        stored = crm.db.execute(
            "SELECT first_name, company_name, owner_id FROM leads WHERE id = %s", (lead_id,)
        )
        assert stored == [(ODD, ODD, ada.id)]

        page.click("#edit")
        page.wait_for_url(f"**/leads/{lead_id}/edit")
        assert page.input_value("#company_name") == ODD
        page.fill("#company_name", "Compiler Works 2")
        page.select_option("#status", "qualified")
        page.click("#save")
        page.wait_for_url(f"**/leads/{lead_id}")
        assert "Compiler Works 2" in page.locator(".heading").inner_text()

        page.select_option("#kind", "task")
        page.fill("#subject", "Call back about the quote")
        page.fill("#body", "Ask for:\n- the budget\n- the deadline")
        page.fill("#due_at", "2026-12-24T09:30")
        page.select_option("#assignee", str(ada.id))
        page.click("#log")
        page.wait_for_url(f"**/leads/{lead_id}#work")
        task = page.locator("li.task", has_text="Call back about the quote")
        task.wait_for()
        body = crm.db.scalar("SELECT body FROM activities WHERE lead_id = %s", (lead_id,))
        assert body == "Ask for:\n- the budget\n- the deadline"
        task.get_by_role("button", name="Done").click()
        page.wait_for_url(f"**/leads/{lead_id}#work")
        assert page.locator("li.task").count() == 0
        assert crm.db.scalar("SELECT done_at IS NOT NULL FROM activities WHERE lead_id = %s",
                             (lead_id,))  # fmt: skip

        page.select_option("#new-owner", label="Bob Seller (bob@example.com)")
        page.click("#reassign")
        page.wait_for_url(f"**/leads/{lead_id}#work")
        assert page.locator("#owner-name").inner_text() == "Bob Seller"
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()
    owners = crm.db.execute(
        "SELECT actor FROM crm_history WHERE row_id = %s AND operation = 'update' "
        "AND changes ? 'owner_id'",
        (lead_id,),
    )
    assert owners == [("maria.sales",)]
