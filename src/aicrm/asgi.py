"""The ASGI entry point for servers (``uvicorn aicrm.asgi:app``): the API and the
dashboard (:func:`aicrm.server.create_app`) on the configured database."""

from aicrm.server import create_app

app = create_app()
