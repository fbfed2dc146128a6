"""The dashboard's picture in the docs: ``AICRM_SCREENSHOT=docs/images/dashboard.png pytest
tests/web/test_screenshot.py`` redraws it (the leads list beside a lead's page)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Crm

TARGET = os.environ.get("AICRM_SCREENSHOT")

pytestmark = pytest.mark.skipif(not TARGET, reason="set AICRM_SCREENSHOT=PATH to redraw it")


def test_draw_the_dashboard_screenshot(browser: Any, live_url: str, crm: Crm) -> None:
    assert TARGET is not None
    context = browser.new_context(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
    page = context.new_page()
    page.goto(f"{live_url}/login")
    page.fill("#key", crm.data.write_token)
    page.click("button[type=submit]")
    page.wait_for_url("**/leads")
    shots = [page.screenshot()]
    page.goto(f"{live_url}/leads/{crm.data.leads['Lovelace'].id}")
    shots.append(page.screenshot())
    # Side by side, drawn by the browser itself: no image library needed.
    images = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(s).decode()}">' for s in shots
    )
    page.set_content(
        "<style>body{margin:0;background:#cbd5e1;display:flex;gap:24px;padding:24px}"
        "img{width:1280px;border-radius:10px;box-shadow:0 6px 24px rgba(15,23,42,.25)}</style>"
        + images
    )
    page.set_viewport_size({"width": 2 * 1280 + 3 * 24, "height": 860 + 2 * 24})
    Path(TARGET).parent.mkdir(parents=True, exist_ok=True)
    Path(TARGET).write_bytes(page.screenshot())
    context.close()
