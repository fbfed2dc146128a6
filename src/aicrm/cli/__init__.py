"""The command line: a thin shell over the library (``aicrm.migrate``, ``aicrm.db``,
``aicrm.crm``, ``aicrm.ai``), one module per command group.

:data:`app` is the Typer application and :func:`run` the ``aicrm`` entry point
(:mod:`aicrm.cli.main`); :mod:`~aicrm.cli._output` is how every command speaks.
"""

from aicrm.cli import _output as output
from aicrm.cli.main import app, run

__all__ = ["app", "output", "run"]
