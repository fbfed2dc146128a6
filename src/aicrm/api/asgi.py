"""The ASGI entry point for servers (``uvicorn aicrm.api.asgi:app``): the configured database."""

from aicrm.api.app import create_app

app = create_app()
