"""aicrm: an AI-centric CRM on PostgreSQL, usable as a Python library.

The packages, in layers from the bottom up; a package imports only from layers below
it (and from the shared modules ``aicrm.errors``, ``aicrm.config``, ``aicrm.apikeys``):

1. ``aicrm.db``: settings to connections, the embedded server, client tools, read
   routing, and the one place text becomes SQL (:mod:`aicrm.db.script`).
2. ``aicrm.migrations`` (the numbered ``.sql`` files, their checks and online forms)
   and ``aicrm.migrate`` (the engine that applies them).
3. ``aicrm.crm``: the CRM domain (leads, clients, contacts, conversion, history,
   users and owners, activities, the timeline); ``aicrm.events``: the event outbox
   and the webhook delivery worker.
4. ``aicrm.ai``: annotations, lead scoring and conversion analysis on the CRM.
5. ``aicrm.sample``: synthetic databases for tests, demos and benchmarks.
6. The interfaces: ``aicrm.api`` (REST, FastAPI), ``aicrm.web`` (the dashboard, built
   on the API's dependencies), ``aicrm.mcp`` (tools for AI assistants) and ``aicrm.cli``
   (the ``aicrm`` command); ``aicrm.server`` composes the API, the dashboard and the
   MCP server's HTTP endpoint into one app, and ``aicrm.asgi`` is the entry point servers load.

No two packages import each other (tests/test_layout.py checks it, for modules and
for packages).
"""

from aicrm.errors import AicrmError

__version__ = "0.1.0"

__all__ = ["AicrmError", "__version__"]
