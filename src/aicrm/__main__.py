"""``python -m aicrm``: the same as the ``aicrm`` command."""

from aicrm.cli.main import run

run()
