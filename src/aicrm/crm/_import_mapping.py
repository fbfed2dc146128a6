"""Mapping another CRM's export onto aicrm's import columns.

A mapping file is JSON::

    {"columns": {"Lead Source": "source", "Created Date": "created_at",
                 "Industry": "attributes.industry", "Lead ID": "ignore"},
     "values": {"status": {"Closed - Converted": "converted", "Working - Contacted": "contacted"}}}

``columns`` names, for every column of the export, the aicrm column it fills, an
attribute (``attributes.KEY``: the value, trimmed, goes into the lead's attributes
under KEY) or ``ignore``. A column the mapping does not name is refused, so nothing
is dropped silently. ``values`` translates values of a column (after mapping), e.g.
another CRM's statuses into aicrm's; values it does not list are kept as they are
(and checked as usual). Documented examples: docs/import-mappings/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aicrm.errors import InvalidInput

IGNORE = "ignore"
ATTRIBUTE = "attributes."


@dataclass(frozen=True)
class Mapping:
    """Export column -> aicrm column (or ``attributes.KEY``, ``ignore``); value maps."""

    columns: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def target(self, raw: str, path: Path) -> str:
        """What the export column ``raw`` fills; refuses a column the mapping omits."""
        found = self.columns.get(raw.strip())
        if found is None:
            raise InvalidInput(
                f"The column '{raw.strip()}' of {path} is not in the mapping: map it to an "
                f"aicrm column, to 'attributes.NAME' or to '{IGNORE}'."
            )
        return found


def load(path: Path) -> Mapping:
    """The mapping in the JSON file at ``path``; :class:`InvalidInput` when unreadable
    or not of the documented shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"Cannot read the mapping {path}: {exc.strerror or exc}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"The mapping {path} is not valid JSON ({exc}).") from None
    columns = data.get("columns") if isinstance(data, dict) else None
    values = data.get("values", {}) if isinstance(data, dict) else None
    if (
        not isinstance(columns, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
        or not isinstance(values, dict)
        or not all(
            isinstance(m, dict)
            and all(isinstance(a, str) and isinstance(b, str) for a, b in m.items())
            for m in values.values()
        )
    ):
        raise InvalidInput(
            f'The mapping {path} must be a JSON object with "columns" (export column -> '
            'aicrm column) and optionally "values" (aicrm column -> {value: value}); see '
            "docs/import-mappings/."
        )
    for target in columns.values():
        if target.startswith(ATTRIBUTE) and not target[len(ATTRIBUTE) :].strip():
            raise InvalidInput(f"The mapping {path} maps a column to 'attributes.' without a name.")
    return Mapping({k.strip(): v.strip() for k, v in columns.items()}, values)
