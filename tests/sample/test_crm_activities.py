"""The CRM generator's activities (aicrm.sample._crm_activities): where they sit, that
nothing is dated after now, and that engagement tells converting leads apart."""

from __future__ import annotations

from datetime import UTC, datetime

from aicrm.sample import crm
from tests.conftest import Database

NOW = datetime(2025, 6, 1, tzinfo=UTC)
LEADS = 3_000


def test_activities_sit_where_the_application_puts_them_and_carry_signal(
    crm_db: Database,
) -> None:
    with crm_db.connect() as conn:
        made = crm.generate(conn, leads=LEADS, seed=7, now=NOW)
    assert made.activities == crm_db.scalar("SELECT count(*) FROM activities")
    assert 1.5 < made.activities / LEADS < 6
    kinds = dict(crm_db.execute("SELECT kind, count(*) FROM activities GROUP BY 1"))
    assert set(kinds) == {"call", "email", "meeting", "note", "task"}
    # Nothing after now; a task done only after it was set, others never "done".
    assert crm_db.scalar(
        """SELECT count(*) FROM activities
           WHERE created_at > %s OR done_at > %s OR updated_at > %s OR done_at < created_at
              OR (kind <> 'task' AND (done_at IS NOT NULL OR due_at IS NOT NULL))""",
        (NOW, NOW, NOW),
    ) == 0  # fmt: skip
    # A converted lead keeps none: they moved to its client, as 012's trigger moves them.
    assert crm_db.scalar(
        "SELECT count(*) FROM activities a JOIN leads l ON l.id = a.lead_id WHERE l.is_converted"
    ) == 0  # fmt: skip
    assert crm_db.scalar(
        """SELECT count(*) FROM activities a WHERE a.client_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM leads l WHERE l.converted_to_client_id = a.client_id
                 AND a.created_at >= l.created_at)"""
    ) == 0  # fmt: skip
    # After a conversion only the client's own (the onboarding meeting): one per client.
    after = crm_db.execute(
        """SELECT count(*), count(DISTINCT a.client_id) FROM activities a
           JOIN leads l ON l.converted_to_client_id = a.client_id
           WHERE a.created_at >= l.conversion_date"""
    )[0]
    assert after[0] == after[1] > 0
    # Signal: leads that converted were called and met more, before converting, than
    # the leads of the same age that ended unconverted.
    rates = dict(
        crm_db.execute(
            """SELECT l.is_converted, avg(n.calls + n.meetings)::float8 FROM leads l
               CROSS JOIN LATERAL (
                   SELECT count(*) FILTER (WHERE a.kind = 'call') AS calls,
                          count(*) FILTER (WHERE a.kind = 'meeting') AS meetings
                   FROM activities a
                   WHERE (a.lead_id = l.id OR a.client_id = l.converted_to_client_id)
                     AND a.created_at < coalesce(l.conversion_date, 'infinity')) n
               WHERE l.status IN ('converted', 'lost', 'unqualified')
               GROUP BY 1"""
        )
    )
    assert rates[True] > 1.5 * rates[False] > 0
