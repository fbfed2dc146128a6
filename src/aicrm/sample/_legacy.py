"""A generator of legacy CRM databases: the 000 schema, filled like the real thing.

:func:`generate_legacy` fills an empty database at migration 000 with leads
(sources, statuses, companies, emails, two years of ``created_at``, JSONB
attributes), clients converted from about 30 % of them (``converted_from_lead_id``
set, and ``leads.client_id`` set back: the circular pair, the client created
after its lead), a few clients that never were leads, and about 0.5 contacts per
lead (B2B: on the lead while it is open, mostly on the client once converted).

Everything is set-based (``generate_series`` and ``INSERT … SELECT``, a handful
of statements whatever the size) and deterministic: ids are md5 hashes of the
seed and a row number, and every other value comes from ``random()`` after
``setseed()``, drawn in a fixed order (no parallel plans, no synchronised scans,
no ``random()`` over a join whose order the planner could change). The same seed
gives the same database, row for row (PostgreSQL 15 and 18 give the same one too).
1M leads take about 25 s on two cores. The circular pair is closed by an UPDATE, as
the legacy application did, so VACUUM afterwards for a steady-state database
(bench/generate_legacy.py does).

The anomalies migration 001 must handle are made on purpose, a known number of
each, on disjoint rows, and counted in the result (each key counts rows):

* resolvable (``anomalies=True``, :data:`RESOLVABLE_ROWS` each):

  ``lead_claimed_by_two_clients``
      leads that a second, later client also names in ``converted_from_lead_id``
      (the lead's ``client_id`` names the first one);
  ``lead_client_id_disagrees``
      leads claimed by one client whose ``client_id`` names another, existing one;
  ``lead_client_id_unclaimed``
      open leads whose ``client_id`` names an existing client that claims no lead;
  ``lead_client_id_missing``
      leads claimed by a client, with ``client_id`` empty (conversion recorded on
      the client's side only);
  ``contact_both_parents_same_client``
      contacts with both ``lead_id`` and ``client_id``, the client being the one
      converted from that lead (it claims it, the lead names it back);
  ``contact_both_parents_other_client``
      contacts with both, the client unrelated to the (open) lead;

* blocking (``orphans=True``, :data:`BLOCKING_ROWS` each): ``orphan_lead_client_id``,
  ``orphan_client_converted_from_lead_id``, ``orphan_contact_lead_id`` and
  ``orphan_contact_client_id`` (rows whose column names a row that does not exist;
  each such contact has no other parent), and ``contact_without_parent``. They are
  made the way they appear in the wild: parents deleted with the foreign keys off,
  by ``SET LOCAL session_replication_role = replica`` as a superuser, or else by
  dropping the foreign keys and adding them back ``NOT VALID``; contacts detached
  from their only parent by an ``UPDATE``.

The blocking keys are the names of migration 001's integrity checks and count the
same rows.

The filling statements and their vocabulary live in :mod:`aicrm.sample._legacy_fill`,
the anomalies' layout and statements in :mod:`aicrm.sample._legacy_anomalies`; this
module runs them in order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import psycopg

from aicrm.errors import UsageError
from aicrm.sample._legacy_anomalies import (
    BLOCKING,
    BLOCKING_LAYOUT,
    BLOCKING_ROWS,
    RESOLVABLE,
    RESOLVABLE_LAYOUT,
    RESOLVABLE_ROWS,
    OrphanMethod,
    make_anomalies,
)
from aicrm.sample._legacy_fill import (
    CLOSE_THE_CIRCLE,
    INSERT_CONVERTED_CLIENTS,
    INSERT_DIRECT_CLIENTS,
    INSERT_DIRECT_CONTACTS,
    INSERT_LEAD_CONTACTS,
    INSERT_LEADS,
    SENTENCES,
    STAGE_DIRECT,
    STAGE_LEADS,
    WORDS,
)

__all__ = [
    "BLOCKING",
    "BLOCKING_ROWS",
    "RESOLVABLE",
    "RESOLVABLE_ROWS",
    "UNTIL",
    "OrphanMethod",
    "generate_legacy",
]

UNTIL = datetime(2025, 1, 1, tzinfo=UTC)
"""The generated history ends here; ``created_at`` spreads over the two years before."""

CONVERSION_RATE = 0.30

LOCAL_SETTINGS = """
SELECT set_config('max_parallel_workers_per_gather', '0', true),
       set_config('synchronize_seqscans', 'off', true),
       set_config('work_mem', '64MB', true),
       setseed(%s)
"""

SCHEMA_SHAPE = """
SELECT count(*) FILTER (WHERE table_name = 'leads' AND column_name = 'client_id')
     + count(*) FILTER (WHERE table_name = 'clients' AND column_name = 'converted_from_lead_id')
     + count(*) FILTER (WHERE table_name = 'contacts' AND column_name IN ('lead_id', 'client_id')),
       count(*) FILTER (WHERE table_name = 'leads' AND column_name = 'converted_to_client_id')
FROM information_schema.columns
WHERE table_schema = current_schema()
"""

HAS_ROWS = """
SELECT EXISTS (SELECT 1 FROM leads) OR EXISTS (SELECT 1 FROM clients)
    OR EXISTS (SELECT 1 FROM contacts)
"""

ANALYZE = "ANALYZE leads, clients, contacts"

COUNTS = """
SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM clients),
       (SELECT count(*) FROM contacts)
"""


def generate_legacy(
    conn: psycopg.Connection[Any],
    *,
    leads: int,
    seed: int = 1,
    anomalies: bool = True,
    orphans: bool = False,
    orphan_method: OrphanMethod | None = None,
    until: datetime = UNTIL,
) -> dict[str, int]:
    """Fill an empty database at migration 000 with ``leads`` legacy leads and the
    clients and contacts that go with them, in one transaction; return the counts.

    The result holds ``leads``, ``clients`` and ``contacts`` (rows in the tables at
    the end), and every key of :data:`RESOLVABLE` and :data:`BLOCKING`: how many
    rows of that anomaly were made (0 unless ``anomalies`` or ``orphans`` asked
    for them). ``orphan_method`` chooses how the blocking ones are made: ``replica``
    (needs a superuser) or ``not_valid``; by default ``replica`` for a superuser.

    Raises :class:`UsageError` when the database is not an empty 000 schema, when
    ``leads`` is not positive, or when there are too few leads to place every
    anomaly asked for (use at least about 500).
    """
    if leads < 1:
        raise UsageError(f"Cannot generate {leads} leads; ask for at least one.")
    layout = (RESOLVABLE_LAYOUT if anomalies else ()) + (BLOCKING_LAYOUT if orphans else ())
    with conn.transaction():
        _check_empty_000(conn)
        params: dict[str, Any] = {
            "seed": str(seed),
            "until": until,
            "leads": leads,
            "direct": leads // 100 + 50,
            "conversion": CONVERSION_RATE,
            **{name: [w.strip() for w in words.split(",")] for name, words in WORDS.items()},
            **{name: list(sentences) for name, sentences in SENTENCES.items()},
        }
        conn.execute(LOCAL_SETTINGS, (random.Random(seed).uniform(-1.0, 1.0),))
        for statement in (
            STAGE_LEADS,
            STAGE_DIRECT,
            INSERT_LEADS,
            INSERT_CONVERTED_CLIENTS,
            INSERT_DIRECT_CLIENTS,
            CLOSE_THE_CIRCLE,
            INSERT_LEAD_CONTACTS,
            INSERT_DIRECT_CONTACTS,
        ):
            conn.execute(statement, params)
        made = {name: 0 for name in (*RESOLVABLE, *BLOCKING)}
        if layout:
            made.update(make_anomalies(conn, params, layout, anomalies, orphans, orphan_method))
        conn.execute(ANALYZE)
        row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return {"leads": int(row[0]), "clients": int(row[1]), "contacts": int(row[2]), **made}


def _check_empty_000(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(SCHEMA_SHAPE).fetchone()
    if row is None or int(row[0]) != 4 or int(row[1]) != 0:
        raise UsageError(
            "The database is not at migration 000 (the original leads, clients and contacts "
            "with their circular references). Run 'aicrm db migrate --target 000' on an empty "
            "database first."
        )
    has_rows = conn.execute(HAS_ROWS).fetchone()
    if has_rows and has_rows[0]:
        raise UsageError(
            "The database already holds leads, clients or contacts; generate into an empty "
            "000 database."
        )
