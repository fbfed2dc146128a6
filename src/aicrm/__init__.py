"""aicrm: an AI-centric CRM on PostgreSQL, usable as a Python library.

The layers, bottom up: ``aicrm.db`` (settings, connections, the embedded server),
``aicrm.migrate`` (the migration engine), and the interfaces on top (``aicrm.cli``).
"""

from aicrm.errors import AicrmError

__version__ = "0.1.0"

__all__ = ["AicrmError", "__version__"]
