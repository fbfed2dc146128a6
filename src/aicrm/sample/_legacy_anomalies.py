"""The anomalies of a generated legacy database (:mod:`aicrm.sample._legacy`): which
rows each takes, and the statements that make them.

Each anomaly is made on a known number of rows, picked from disjoint classes of the
generated rows (:data:`RESOLVABLE_LAYOUT`, :data:`BLOCKING_LAYOUT`), so the counts in
the generator's result are exact; see :mod:`aicrm.sample._legacy` for what each means.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg

from aicrm.errors import UsageError

RESOLVABLE_ROWS = 5
"""How many rows of each resolvable anomaly ``anomalies=True`` makes."""
BLOCKING_ROWS = 3
"""How many rows of each blocking anomaly ``orphans=True`` makes."""

RESOLVABLE = (
    "lead_claimed_by_two_clients",
    "lead_client_id_disagrees",
    "lead_client_id_unclaimed",
    "lead_client_id_missing",
    "contact_both_parents_same_client",
    "contact_both_parents_other_client",
)
"""Anomalies migration 001 resolves by itself, as keys of the result."""

BLOCKING = (
    "orphan_lead_client_id",
    "orphan_client_converted_from_lead_id",
    "orphan_contact_lead_id",
    "orphan_contact_client_id",
    "contact_without_parent",
)
"""Anomalies migration 001 refuses (or archives with --archive-orphans), as keys."""

OrphanMethod = Literal["replica", "not_valid"]

# Which rows each anomaly takes: (category, class of candidate rows). Classes are
# disjoint sets of rows; categories of one class take consecutive slices of it.
# A '_target' category names the other end (a client) of its anomaly's rows.
RESOLVABLE_LAYOUT = (
    ("lead_claimed_by_two_clients", "converted_bare"),
    ("lead_client_id_disagrees", "converted_bare"),
    ("lead_client_id_disagrees_target", "direct_bare"),
    ("lead_client_id_unclaimed", "open_bare"),
    ("lead_client_id_unclaimed_target", "direct_bare"),
    ("lead_client_id_missing", "converted_bare"),
    ("contact_both_parents_same_client", "converted_bare"),
    ("contact_both_parents_other_client", "open_bare"),
    ("contact_both_parents_other_client_target", "converted_bare"),
)
BLOCKING_LAYOUT = (
    ("orphan_lead_client_id", "converted_bare"),
    ("orphan_client_converted_from_lead_id", "converted_bare"),
    ("orphan_contact_lead_id", "open_one"),
    ("orphan_contact_client_id", "direct_one"),
    ("contact_without_parent", "open_one"),
)

IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"

# Candidate rows by class, numbered in row order; each category takes its slice.
# ``client_id`` is the client a row stands for: a converted lead's client, or the
# direct client itself.
PICK = """
CREATE TEMP TABLE sample_pick ON COMMIT DROP AS
SELECT w.category, c.no, c.id, c.client_id, (c.rank - w.first)::int AS slot
FROM (
    SELECT classed.*, row_number() OVER (PARTITION BY class ORDER BY no) AS rank
    FROM (
        SELECT no, id,
               CASE WHEN converted THEN md5(%(seed)s || '/client/' || no)::uuid END AS client_id,
               CASE WHEN converted AND contacts = 0 THEN 'converted_bare'
                    WHEN NOT converted AND contacts = 0 THEN 'open_bare'
                    WHEN NOT converted AND contacts = 1 THEN 'open_one' END AS class
        FROM sample_lead
        UNION ALL
        SELECT no, id, id,
               CASE contacts WHEN 0 THEN 'direct_bare' WHEN 1 THEN 'direct_one' END
        FROM sample_direct
    ) AS classed
    WHERE class IS NOT NULL
) AS c
JOIN unnest(%(categories)s::text[], %(classes)s::text[], %(firsts)s::int[], %(counts)s::int[])
     AS w (category, class, first, count)
  ON c.class = w.class AND c.rank >= w.first AND c.rank < w.first + w.count
"""

PICKED = "SELECT category, count(*) FROM sample_pick GROUP BY category"

# The resolvable anomalies. No random() here: values derive from the slot.
CLAIM_AGAIN = """
INSERT INTO clients (id, converted_from_lead_id, name, industry, attributes, created_at,
                     updated_at)
SELECT md5(%(seed)s || '/client-again/' || p.no)::uuid, c.converted_from_lead_id, c.name,
       c.industry, c.attributes,
       c.created_at + (%(until)s - c.created_at) / 2,
       c.created_at + (%(until)s - c.created_at) / 2
FROM sample_pick AS p JOIN clients AS c ON c.id = p.client_id
WHERE p.category = 'lead_claimed_by_two_clients'
"""

POINT_LEAD_AT_TARGET = """
UPDATE leads AS l
SET client_id = t.client_id
FROM sample_pick AS p
JOIN sample_pick AS t ON t.category = p.category || '_target' AND t.slot = p.slot
WHERE p.category = %(category)s AND l.id = p.id
"""

# The conversion recorded on the client's side only.
FORGET_CLIENT = """
UPDATE leads AS l SET client_id = NULL
FROM sample_pick AS p
WHERE p.category = 'lead_client_id_missing' AND l.id = p.id
"""

CONTACT_ON_BOTH = """
INSERT INTO contacts (id, lead_id, client_id, first_name, last_name, title, created_at,
                      updated_at)
SELECT md5(%(seed)s || '/contact-on-both/' || p.category || '/' || p.no)::uuid,
       p.id,
       coalesce(t.client_id, p.client_id),
       w.first_names[1 + p.slot %% cardinality(w.first_names)],
       w.last_names[1 + p.slot %% cardinality(w.last_names)],
       w.titles[1 + p.slot %% cardinality(w.titles)],
       %(until)s - interval '1 day', %(until)s - interval '1 day'
FROM sample_pick AS p
LEFT JOIN sample_pick AS t ON t.category = p.category || '_target' AND t.slot = p.slot
CROSS JOIN (
    SELECT %(first_names)s::text[] AS first_names,
           %(last_names)s::text[] AS last_names,
           %(titles)s::text[] AS titles
) AS w
WHERE p.category = %(category)s
"""

# The blocking anomalies: parents deleted behind the foreign keys' back.
DELETE_CLIENTS = """
DELETE FROM clients AS c USING sample_pick AS p
WHERE p.category IN ('orphan_lead_client_id', 'orphan_contact_client_id')
  AND c.id = p.client_id
"""

DELETE_LEADS = """
DELETE FROM leads AS l USING sample_pick AS p
WHERE p.category IN ('orphan_client_converted_from_lead_id', 'orphan_contact_lead_id')
  AND l.id = p.id
"""

DETACH_CONTACTS = """
UPDATE contacts AS c SET lead_id = NULL
FROM sample_pick AS p
WHERE p.category = 'contact_without_parent' AND c.lead_id = p.id
"""

# The references left dangling by the deletions, per category.
DANGLING = """
SELECT (SELECT count(*) FROM leads AS l JOIN sample_pick AS p
          ON p.category = 'orphan_lead_client_id' AND l.client_id = p.client_id),
       (SELECT count(*) FROM clients AS c JOIN sample_pick AS p
          ON p.category = 'orphan_client_converted_from_lead_id'
         AND c.converted_from_lead_id = p.id),
       (SELECT count(*) FROM contacts AS c JOIN sample_pick AS p
          ON p.category = 'orphan_contact_lead_id' AND c.lead_id = p.id),
       (SELECT count(*) FROM contacts AS c JOIN sample_pick AS p
          ON p.category = 'orphan_contact_client_id' AND c.client_id = p.client_id)
"""

REPLICATION_ROLE = "SELECT current_setting('session_replication_role')"
SET_REPLICATION_ROLE = "SELECT set_config('session_replication_role', %s, true)"

DROP_FOREIGN_KEYS = """
ALTER TABLE leads DROP CONSTRAINT leads_client_id_fkey;
ALTER TABLE clients DROP CONSTRAINT clients_converted_from_lead_id_fkey;
ALTER TABLE contacts DROP CONSTRAINT contacts_lead_id_fkey,
                     DROP CONSTRAINT contacts_client_id_fkey
"""

ADD_FOREIGN_KEYS_NOT_VALID = """
ALTER TABLE leads ADD CONSTRAINT leads_client_id_fkey
    FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID;
ALTER TABLE clients ADD CONSTRAINT clients_converted_from_lead_id_fkey
    FOREIGN KEY (converted_from_lead_id) REFERENCES leads (id) NOT VALID;
ALTER TABLE contacts
    ADD CONSTRAINT contacts_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id) NOT VALID,
    ADD CONSTRAINT contacts_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID
"""


def make_anomalies(
    conn: psycopg.Connection[Any],
    params: dict[str, Any],
    layout: tuple[tuple[str, str], ...],
    anomalies: bool,
    orphans: bool,
    orphan_method: OrphanMethod | None,
) -> dict[str, int]:
    """Make the anomalies of ``layout`` on rows picked from the generated ones: the
    resolvable ones if ``anomalies``, the blocking ones if ``orphans``; how many rows of
    each were made. :class:`UsageError` when there are too few rows to place them."""
    wanted = {
        category: BLOCKING_ROWS if category in BLOCKING else RESOLVABLE_ROWS
        for category, _ in layout
    }
    firsts: list[int] = []
    taken: dict[str, int] = {}
    for category, kind in layout:
        firsts.append(taken.get(kind, 0) + 1)
        taken[kind] = taken.get(kind, 0) + wanted[category]
    conn.execute(
        PICK,
        {
            **params,
            "categories": [category for category, _ in layout],
            "classes": [kind for _, kind in layout],
            "firsts": firsts,
            "counts": [wanted[category] for category, _ in layout],
        },
    )
    picked = dict(conn.execute(PICKED).fetchall())
    short = [c for c in wanted if picked.get(c, 0) < wanted[c]]
    if short:
        raise UsageError(
            f"{params['leads']} leads are too few to place every anomaly asked for "
            f"({', '.join(short)}); generate at least about 500 leads."
        )
    made: dict[str, int] = {}
    if anomalies:
        made["lead_claimed_by_two_clients"] = conn.execute(CLAIM_AGAIN, params).rowcount
        for category in ("lead_client_id_disagrees", "lead_client_id_unclaimed"):
            made[category] = conn.execute(
                POINT_LEAD_AT_TARGET, {**params, "category": category}
            ).rowcount
        made["lead_client_id_missing"] = conn.execute(FORGET_CLIENT).rowcount
        for category in ("contact_both_parents_same_client", "contact_both_parents_other_client"):
            made[category] = conn.execute(
                CONTACT_ON_BOTH, {**params, "category": category}
            ).rowcount
    if orphans:
        made.update(make_orphans(conn, orphan_method))
    return made


def make_orphans(
    conn: psycopg.Connection[Any], orphan_method: OrphanMethod | None
) -> dict[str, int]:
    """Delete the parents of the picked rows with the foreign keys off (``replica``
    role, or dropped and added back ``NOT VALID``) and detach contacts; the counts."""
    if orphan_method is None:
        superuser = conn.execute(IS_SUPERUSER).fetchone()
        orphan_method = "replica" if superuser and superuser[0] else "not_valid"
    if orphan_method == "replica":
        role = conn.execute(REPLICATION_ROLE).fetchone()
        conn.execute(SET_REPLICATION_ROLE, ("replica",))
    else:
        role = None
        conn.execute(DROP_FOREIGN_KEYS)
    conn.execute(DELETE_CLIENTS)
    conn.execute(DELETE_LEADS)
    detached = conn.execute(DETACH_CONTACTS).rowcount
    if role is not None:
        conn.execute(SET_REPLICATION_ROLE, (str(role[0]),))
    else:
        conn.execute(ADD_FOREIGN_KEYS_NOT_VALID)
    row = conn.execute(DANGLING).fetchone()
    assert row is not None
    return {
        "orphan_lead_client_id": int(row[0]),
        "orphan_client_converted_from_lead_id": int(row[1]),
        "orphan_contact_lead_id": int(row[2]),
        "orphan_contact_client_id": int(row[3]),
        "contact_without_parent": detached,
    }
