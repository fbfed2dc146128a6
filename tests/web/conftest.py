"""Fixtures for the dashboard: a seeded CRM, the app in-process, a live server, a browser.

The browser is Debian's Chromium driven by Playwright (never a downloaded build).
Browser tests skip, saying why, only when no Chromium can be found.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from aicrm.server import create_app
from tests.conftest import Database
from tests.support import wait_for
from tests.web.seed import Seeded, seed

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Crm:
    db: Database
    data: Seeded


@pytest.fixture
def crm(crm_db: Database) -> Crm:
    """A CRM database with sample leads, contacts, conversions and two API keys."""
    with crm_db.connect() as conn:
        return Crm(crm_db, seed(conn))


@pytest.fixture
def client(crm: Crm) -> Iterator[TestClient]:
    """The app in-process (no login yet); follows no redirects, so tests see them."""
    with TestClient(create_app(crm.db.target(), pool_size=2), follow_redirects=False) as test:
        yield test


def sign_in(client: TestClient, token: str) -> None:
    answer = client.post("/login", data={"key": token, "next": "/leads"})
    assert answer.status_code == 303, answer.text


def chromium() -> str | None:
    """Debian's Chromium (or AICRM_CHROMIUM), if this machine has one."""
    named = os.environ.get("AICRM_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module (Playwright's sync API keeps an event loop running
    in this thread while it is open, which other modules' async code must not meet)."""
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium found: install it with 'apt-get install -y chromium'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live_url(crm: Crm) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 and a free port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        create_app(crm.db.target(), pool_size=4), log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "the dashboard server to start")
    assert server.started, "the dashboard server did not start (see its log above)"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
