"""The web dashboard: server-rendered pages for sales teams, served by the API app.

It builds on the API (its dependencies and key checks), never the other way round:
:data:`router` holds the forms (:mod:`aicrm.web._forms`) and the pages
(:mod:`aicrm.web._pages`), mounted on the API's app by
:func:`aicrm.server.create_app`; :func:`page` renders a template and :func:`error_page`
turns any error into a friendly page (:mod:`aicrm.web._render`); :mod:`~aicrm.web._display`
and :mod:`~aicrm.web._charts` format values and draw the summary's bars.
"""

from fastapi import APIRouter

from aicrm.web import _charts as charts, _display as display, _forms as forms, _pages as pages
from aicrm.web._render import PageRoute, error_page, page

router = APIRouter(include_in_schema=False)
router.include_router(forms.router)  # first: /leads/new before the pages' /leads/{lead_id}
router.include_router(pages.router)

__all__ = ["PageRoute", "charts", "display", "error_page", "page", "router"]
