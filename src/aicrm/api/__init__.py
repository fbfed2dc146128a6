"""The REST API and the web dashboard: a thin FastAPI shell over the library."""

from aicrm.api.app import create_app

__all__ = ["create_app"]
