"""Dashboard pages (first cut: the landing page; the dashboard issue fills this in)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index() -> str:
    return (
        "<!doctype html><title>aicrm</title><h1>aicrm</h1><p>API docs: <a href=/docs>/docs</a></p>"
    )
