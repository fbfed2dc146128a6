"""Historical CSV import of leads: past leads from another CRM, with their dates.

In historical mode (``aicrm leads import FILE --historical``; the API's admin scope) a
lead file may also hold the dates of its history, and the history is written as it
happened instead of "inserted now":

* ``created_at``: the lead's creation, where its history begins (status ``new``);
* ``contacted_at``, ``qualified_at``: when it reached those statuses;
* ``status_at``: when it took its final status (``unqualified`` or ``lost``; for a final
  ``contacted`` or ``qualified`` it stands in for the date above when that is empty);
* ``conversion_date``: when it converted, to the client named by
  ``converted_to_client_id`` (an existing client) or to a new client created at that
  moment, named ``client_name`` (else the company, the person, the email).

A status must come with its date: a final status other than ``new`` without one is
refused (lead scoring reads a status only where the history dates it). The dates must
follow each other, lie between ``created_at`` and now, and a conversion must have
status ``converted`` (or none). The rest of the import is the ordinary one (staging,
set-based checks, one INSERT, all or nothing unless rows are skipped); after it, the
history rows the triggers wrote for the new leads and clients are moved to their real
moments, and one ``update`` row per dated status change is written, with the actor of
the import.
"""

from __future__ import annotations

from aicrm.crm import _import_kinds as import_kinds
from aicrm.crm._import_spec import LEADS, Column, Spec

DATED = ("contacted_at", "qualified_at", "status_at")

# Per-row reasons of a historical lead file ({...} are the staging row's typed values,
# composed by aicrm.crm._import_checks; NULL when the row is fine).
HISTORY_CHECK = """
CASE
    WHEN {conv} IS NOT NULL AND {status} IS NOT NULL AND {status} <> 'converted'
        THEN format('conversion_date is set but status is %s: a converted lead has status '
                    'converted', quote_literal({status}))
    WHEN {conv} IS NULL AND {status} = 'converted'
        THEN 'status converted needs its conversion_date'
    WHEN {status} IN ('unqualified', 'lost') AND {status_at} IS NULL
        THEN format('status %s needs its date (status_at) in a historical import',
                    quote_literal({status}))
    WHEN {status} = 'contacted' AND coalesce({contacted}, {status_at}) IS NULL
        THEN 'status contacted needs its date (contacted_at or status_at) in a historical import'
    WHEN {status} = 'qualified' AND coalesce({qualified}, {status_at}) IS NULL
        THEN 'status qualified needs its date (qualified_at or status_at) in a historical import'
    WHEN greatest({contacted}, {qualified}, {status_at}, {conv}) > now()
        THEN 'a date of its history lies in the future'
    WHEN least({contacted}, {qualified}, {status_at}) < coalesce({created}, now())
        OR {raw_conv} < date_trunc('day', coalesce({created}, now()))
        THEN 'a date of its history lies before its created_at'
    WHEN {qualified} < {contacted} THEN 'qualified_at lies before contacted_at'
    WHEN greatest({contacted}, {qualified}) > coalesce({status_at}, {conv})
        THEN 'contacted_at or qualified_at lies after its final status'
    WHEN {client} IS NOT NULL AND {conv} IS NULL
        THEN 'converted_to_client_id is set without a conversion_date'
    WHEN {client_name} IS NOT NULL AND ({conv} IS NULL OR {client} IS NOT NULL)
        THEN 'client_name names the new client of a conversion: it needs a conversion_date '
             'and no converted_to_client_id'
    WHEN {client} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.id = {client})
        THEN format('no client has id %s', {client})
END
"""

# Each valid row gets its lead id (the file's, or a new one) and, for a conversion to a
# new client, that client's id, before the insert: the history is written by them.
ADD_KEYS = """
ALTER TABLE {staging} ADD COLUMN aicrm_lead uuid, ADD COLUMN aicrm_client uuid
"""
SET_KEYS = """
UPDATE {staging} s SET aicrm_lead = coalesce({id}, gen_random_uuid()),
       aicrm_client = CASE WHEN {conv} IS NOT NULL AND {client} IS NULL
                           THEN gen_random_uuid() END
"""
NEW_CLIENTS = """
INSERT INTO clients (id, name, created_at, updated_at)
SELECT s.aicrm_client,
       coalesce({client_name}, {company},
                nullif(btrim(concat_ws(' ', {first_name}, {last_name})), ''), {email}),
       {conv}, {conv}
FROM {staging} s
WHERE s.aicrm_client IS NOT NULL {valid}
ORDER BY 1
"""
# The triggers recorded the new rows as inserted now, in their final state; the lead
# was created at created_at, new, not converted, and its client at the conversion.
MOVE_LEAD_CREATION = """
UPDATE crm_history h
SET changed_at = l.created_at,
    changes = h.changes || jsonb_build_object(
        'status', 'new', 'is_converted', false, 'conversion_date', NULL,
        'converted_to_client_id', NULL)
FROM {staging} s JOIN leads l ON l.id = s.aicrm_lead
WHERE h.table_name = 'leads' AND h.operation = 'insert' AND h.row_id = s.aicrm_lead
  AND h.changed_at = now()
"""
MOVE_CLIENT_CREATION = """
UPDATE crm_history h SET changed_at = c.created_at
FROM {staging} s JOIN clients c ON c.id = s.aicrm_client
WHERE h.table_name = 'clients' AND h.operation = 'insert' AND h.row_id = s.aicrm_client
  AND h.changed_at = now()
"""
# One update row per dated status change, in order, each from the status before it.
STATUS_CHANGES = """
INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes)
SELECT 'leads', p.lead_id, 'update', p.at, aicrm_actor(),
       CASE WHEN p.status = 'converted' THEN jsonb_build_object(
                'status', jsonb_build_array(p.before, 'converted'),
                'is_converted', jsonb_build_array(false, true),
                'conversion_date', jsonb_build_array(NULL, to_jsonb(p.at)),
                'converted_to_client_id', jsonb_build_array(NULL, p.client_id))
            ELSE jsonb_build_object('status', jsonb_build_array(p.before, p.status)) END
FROM (
    SELECT d.lead_id, d.at, d.status, d.client_id,
           lag(d.status, 1, 'new') OVER (PARTITION BY d.lead_id ORDER BY d.at, d.step)
               AS before
    FROM (
        SELECT l.id AS lead_id, e.at, e.status, e.step, l.converted_to_client_id AS client_id
        FROM {staging} s JOIN leads l ON l.id = s.aicrm_lead
        CROSS JOIN LATERAL (VALUES
            (coalesce({contacted}, CASE WHEN l.status = 'contacted' THEN {status_at} END),
             'contacted', 1),
            (coalesce({qualified}, CASE WHEN l.status = 'qualified' THEN {status_at} END),
             'qualified', 2),
            (CASE WHEN l.status IN ('unqualified', 'lost') THEN {status_at} END, l.status, 3),
            (l.conversion_date, 'converted', 4)
        ) AS e (at, status, step)
        WHERE e.at IS NOT NULL
    ) AS d
) AS p
ORDER BY p.lead_id, p.at
"""

HISTORY_COLUMNS = (
    Column("contacted_at", import_kinds.DATED),
    Column("qualified_at", import_kinds.DATED),
    Column("status_at", import_kinds.DATED),
    Column("client_name", import_kinds.NOTE),
)


def historical(spec: Spec) -> Spec:
    """The lead spec of a historical import: conversions and status dates allowed."""
    kinds = {
        "status": import_kinds.ANY_STATUS,
        "conversion_date": import_kinds.DATED_COLUMN,
        "converted_to_client_id": import_kinds.CLIENT_COLUMN,
        "is_converted": import_kinds.DERIVED,
    }
    columns = tuple(Column(c.name, kinds.get(c.name, c.kind)) for c in spec.columns)
    return Spec(
        spec.cls,
        columns + HISTORY_COLUMNS,
        spec.needs_one_of,
        spec.needs_text,
        spec.parents,
        history=True,
    )


LEADS_HISTORY = historical(LEADS)
"""A historical import's lead file."""
