"""``python -m aicrm.mcp``: the same as ``aicrm mcp``, with the CLI's error handling."""

import sys

from aicrm.cli import main
from aicrm.cli.mcp import mcp

if not any(c.callback is mcp for c in main.app.registered_commands):
    main.app.command()(mcp)
sys.exit(main.run(["mcp", *sys.argv[1:]]))
