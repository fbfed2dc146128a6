"""The REST API: a thin FastAPI shell over the library (the dashboard, :mod:`aicrm.web`,
is mounted on it by :mod:`aicrm.server`)."""

from aicrm.api._app import Dashboard, create_app

__all__ = ["Dashboard", "create_app"]
