"""The CRM generator (aicrm.sample.crm): determinism, shape, a truthful history, and a
ground truth that really drives the outcomes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from aicrm.crm import conversion
from aicrm.crm.store import Query
from aicrm.errors import UsageError
from aicrm.sample import crm
from tests.conftest import Database, Server, create_database, drop_database

NOW = datetime(2025, 6, 1, tzinfo=UTC)
LEADS = 3_000

# Every row the generator writes, in a stable order, without identity ids.
CONTENT = {
    "leads": "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM leads t",
    "clients": "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM clients t",
    "contacts": "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM contacts t",
    "truth": "SELECT md5(string_agg(t::text, ',' ORDER BY t.lead_id)) FROM sample_truth t",
    "activities": "SELECT md5(string_agg(t::text, ',' ORDER BY t.id)) FROM activities t",
    "history": """
        SELECT md5(string_agg(concat_ws('|', table_name, row_id, operation, changed_at, actor,
                                        changes), ',' ORDER BY row_id, changed_at, changes::text))
        FROM crm_history""",
}


def content(db: Database) -> dict[str, str]:
    return {name: str(db.scalar(query)) for name, query in CONTENT.items()}


def generate(db: Database, **kwargs: object) -> crm.GeneratedCRM:
    with db.connect() as conn:
        return crm.generate(conn, **{"leads": LEADS, "seed": 7, "now": NOW, **kwargs})  # type: ignore[arg-type]


@pytest.fixture
def other_crm_db(server: Server, head_template: str, tmp_path) -> Iterator[Database]:
    """A second fresh database at the newest version."""
    name = create_database(server, template=head_template)
    url = server.conninfo(name)
    yield Database(name, url, server, tmp_path, {"AICRM_HOME": str(tmp_path / "other")})
    drop_database(server, name)


@pytest.fixture
def generated(crm_db: Database) -> tuple[Database, crm.GeneratedCRM]:
    return crm_db, generate(crm_db)


@pytest.mark.slow
def test_same_seed_same_data_either_history_method(
    crm_db: Database, other_crm_db: Database
) -> None:
    first = generate(crm_db)
    second = generate(other_crm_db, history_method="cleanup")
    assert (first.history_method, second.history_method) == ("replica", "cleanup")
    assert first.to_dict() | {"seconds": 0, "history_method": ""} == second.to_dict() | {
        "seconds": 0,
        "history_method": "",
    }
    assert content(crm_db) == content(other_crm_db)
    # Neither way leaves the triggers' "inserted now" rows behind.
    for db in (crm_db, other_crm_db):
        assert db.scalar("SELECT count(*) FROM crm_history WHERE operation <> 'update'") == 0


def test_another_seed_other_data(crm_db: Database, other_crm_db: Database) -> None:
    generate(crm_db, leads=500)
    generate(other_crm_db, leads=500, seed=8)
    ours, theirs = content(crm_db), content(other_crm_db)
    assert all(ours[name] != theirs[name] for name in ("leads", "contacts", "truth", "activities"))


def test_counts_and_statuses_agree_with_the_tables(
    generated: tuple[Database, crm.GeneratedCRM],
) -> None:
    db, made = generated
    assert made.leads == LEADS == db.scalar("SELECT count(*) FROM leads")
    assert made.truth_rows == LEADS == db.scalar("SELECT count(*) FROM sample_truth")
    assert made.clients == db.scalar("SELECT count(*) FROM clients")
    assert made.clients == db.scalar("SELECT count(*) FROM leads WHERE is_converted")
    assert made.contacts == db.scalar("SELECT count(*) FROM contacts")
    assert 0.35 < made.contacts / LEADS < 0.65
    assert made.history_rows == db.scalar("SELECT count(*) FROM crm_history")
    assert made.statuses == dict(db.execute("SELECT status, count(*) FROM leads GROUP BY 1"))
    assert set(made.statuses) == {"new", "contacted", "qualified", "unqualified", "lost",
                                  "converted"}  # fmt: skip
    assert 0.08 < made.converted / LEADS < 0.25


def test_conversions_are_written_like_the_application_does(
    generated: tuple[Database, crm.GeneratedCRM],
) -> None:
    db, _ = generated
    # Every converted lead has exactly its own client, named and filled as conversion does.
    assert db.scalar(
        """SELECT count(*) FROM leads l LEFT JOIN clients c ON c.id = l.converted_to_client_id
           WHERE l.is_converted AND (c.id IS NULL OR c.created_at <> l.conversion_date
             OR c.name <> coalesce(l.company_name, concat_ws(' ', l.first_name, l.last_name))
             OR c.industry IS DISTINCT FROM l.attributes ->> 'industry'
             OR c.attributes <> l.attributes)"""
    ) == 0  # fmt: skip
    assert db.scalar("SELECT count(DISTINCT converted_to_client_id) FROM leads") == db.scalar(
        "SELECT count(*) FROM clients"
    )
    # Converted within the 90-day window, after creation, before now.
    span = db.execute(
        """SELECT min(conversion_date - created_at), max(conversion_date - created_at),
                  max(conversion_date) FROM leads WHERE is_converted"""
    )[0]
    assert timedelta(hours=12) < span[0] and span[1] < timedelta(days=90) and span[2] <= NOW
    # Contacts: on their lead while it is open, moved to the client once converted.
    assert db.scalar(
        """SELECT count(*) FROM contacts c JOIN leads l ON l.id = c.lead_id
           WHERE l.is_converted"""
    ) == 0  # fmt: skip
    assert db.scalar(
        """SELECT count(*) FROM contacts c
           WHERE c.client_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM leads l WHERE l.converted_to_client_id = c.client_id)"""
    ) == 0  # fmt: skip


def test_leads_look_real(generated: tuple[Database, crm.GeneratedCRM]) -> None:
    db, _ = generated
    keys = db.scalar(
        "SELECT array_agg(DISTINCT k ORDER BY k) FROM leads, jsonb_object_keys(attributes) k"
    )
    assert set(keys) >= {"industry", "employees", "company_size", "region", "country",
                         "budget", "channel_touches", "demo_requested",
                         "monthly_visits", "purchase_timeline"}  # fmt: skip
    assert set(dict(db.execute("SELECT source, count(*) FROM leads GROUP BY 1"))) == {
        name for name, *_ in crm.SOURCES
    }
    # Emails unique across leads and contacts, ignoring case.
    assert db.scalar(
        """SELECT count(*) - count(DISTINCT lower(email)) FROM (
               SELECT email FROM leads WHERE email IS NOT NULL
               UNION ALL SELECT email FROM contacts WHERE email IS NOT NULL) e"""
    ) == 0  # fmt: skip
    # Two years, growing: the second year has clearly more leads than the first.
    first, second, oldest = db.execute(
        """SELECT count(*) FILTER (WHERE created_at < %s), count(*) FILTER (WHERE created_at >= %s),
                  min(created_at) FROM leads""",
        (NOW - timedelta(days=365), NOW - timedelta(days=365)),
    )[0]
    assert oldest >= NOW - timedelta(days=731) and 1.3 < second / first < 2.2
    assert db.scalar("SELECT max(created_at) FROM leads") <= NOW
    # The newest leads are still open: nobody converts in a few hours.
    assert db.scalar(
        "SELECT count(*) FROM leads WHERE created_at > %s AND status <> 'new'",
        (NOW - timedelta(hours=3),),
    ) == 0  # fmt: skip


def test_the_varied_signals_are_there(generated: tuple[Database, crm.GeneratedCRM]) -> None:
    """Numbers written as text, rare industries, an interaction, and drift over time."""
    db, _ = generated
    as_text, as_number, with_comma = db.execute(
        """SELECT count(*) FILTER (WHERE jsonb_typeof(attributes -> 'monthly_visits') = 'string'),
                  count(*) FILTER (WHERE jsonb_typeof(attributes -> 'monthly_visits') = 'number'),
                  count(*) FILTER (WHERE attributes ->> 'monthly_visits' LIKE '%,%')
           FROM leads"""
    )[0]
    assert as_text + as_number == LEADS and 0.4 < as_text / LEADS < 0.6 and with_comma > 50
    rare = dict(db.execute(
        """SELECT l.attributes ->> 'industry', avg(t.p_convert_90d) FROM leads l
           JOIN sample_truth t ON t.lead_id = l.id
           WHERE l.attributes ->> 'industry' IN ('biotech', 'defense', 'software') GROUP BY 1"""
    ))  # fmt: skip
    assert rare["biotech"] > rare["software"] > rare["defense"]
    # Drift: the newest ads leads' truth is above the oldest's, other sources' not.
    drift = dict(db.execute(
        """SELECT l.source = 'ads',
                  avg(t.p_convert_90d) FILTER (WHERE l.created_at > %s - interval '180 days')
                  / avg(t.p_convert_90d) FILTER (WHERE l.created_at < %s - interval '540 days')
           FROM leads l JOIN sample_truth t ON t.lead_id = l.id GROUP BY 1""",
        (NOW, NOW),
    ))  # fmt: skip
    assert drift[True] > 1.3 and 0.8 < drift[False] < 1.2


def test_history_tells_each_leads_path(generated: tuple[Database, crm.GeneratedCRM]) -> None:
    db, _ = generated
    # The last recorded status change ends in the current status; no change: still new.
    assert db.scalar(
        """SELECT count(*) FROM leads l LEFT JOIN LATERAL (
               SELECT h.changes -> 'status' ->> 1 AS status FROM crm_history h
               WHERE h.table_name = 'leads' AND h.row_id = l.id
               ORDER BY h.changed_at DESC LIMIT 1) last ON true
           WHERE coalesce(last.status, 'new') <> l.status"""
    ) == 0  # fmt: skip
    # Changes come in order: each one leaves the status the previous one entered.
    assert db.scalar(
        """SELECT count(*) FROM (
               SELECT changes -> 'status' ->> 0 AS old,
                      lag(changes -> 'status' ->> 1, 1, 'new')
                          OVER (PARTITION BY row_id ORDER BY changed_at) AS before
               FROM crm_history WHERE table_name = 'leads') s
           WHERE old <> before"""
    ) == 0  # fmt: skip
    assert db.scalar(
        """SELECT count(*) FROM crm_history h JOIN leads l ON l.id = h.row_id
           WHERE h.changed_at <= l.created_at OR h.changed_at > %s OR h.actor <> 'generator'""",
        (NOW,),
    ) == 0  # fmt: skip
    # lead_status_periods: every lead starts new at its created_at; times are positive.
    assert db.scalar(
        """SELECT count(*) FROM (
               SELECT DISTINCT ON (p.lead_id) p.status, p.entered_at, l.created_at
               FROM lead_status_periods p JOIN leads l ON l.id = p.lead_id
               ORDER BY p.lead_id, p.entered_at) first
           WHERE status <> 'new' OR entered_at <> created_at"""
    ) == 0  # fmt: skip
    assert db.scalar("SELECT min(days_in_status) FROM lead_status_periods") > 0
    # Contacts moved at the conversion are recorded too.
    assert db.scalar(
        "SELECT count(*) FROM crm_history WHERE table_name = 'contacts'"
    ) == db.scalar("SELECT count(*) FROM contacts WHERE client_id IS NOT NULL")  # fmt: skip


def test_the_truth_drives_the_outcomes(generated: tuple[Database, crm.GeneratedCRM]) -> None:
    """Leads old enough to have an outcome converted as often as their truth says."""
    db, _ = generated
    low, high = db.execute("SELECT min(p_convert_90d), max(p_convert_90d) FROM sample_truth")[0]
    assert low > 0 and high < 1
    by_quintile = db.execute(
        """SELECT q, count(*), avg(p), avg(converted::int) FROM (
               SELECT ntile(5) OVER (ORDER BY t.p_convert_90d, t.lead_id) AS q,
                      t.p_convert_90d AS p, l.is_converted AS converted
               FROM sample_truth t JOIN leads l ON l.id = t.lead_id
               WHERE l.created_at <= %s) s
           GROUP BY q ORDER BY q""",
        (NOW - timedelta(days=90),),
    )
    rates = [float(row[3]) for row in by_quintile]
    assert rates == sorted(rates) and rates[4] > 4 * rates[0]
    # Calibrated: in each quintile the observed rate is near the mean truth.
    for _, count, mean_p, rate in by_quintile:
        assert abs(float(rate) - float(mean_p)) < 4 * (float(mean_p) / count) ** 0.5 + 0.01


def test_the_form_answer_shows_part_of_the_intent(
    generated: tuple[Database, crm.GeneratedCRM],
) -> None:
    """purchase_timeline: asked only by the sources with a form, answered by about the
    share FORM_ANSWERED says, the answers in their shares, the truth rising with them."""
    db, _ = generated
    by_source = dict(db.execute(
        """SELECT source, avg((attributes ? 'purchase_timeline')::int) FROM leads GROUP BY 1"""
    ))  # fmt: skip
    for name, *_ in crm.SOURCES:
        expected = crm.FORM_ANSWERED.get(name, 0.0)
        assert abs(float(by_source[name]) - expected) < (0.07 if expected else 1e-9), name
    answers = db.execute(
        """SELECT l.attributes ->> 'purchase_timeline', count(*), avg(t.p_convert_90d)
           FROM leads l JOIN sample_truth t ON t.lead_id = l.id
           WHERE l.attributes ? 'purchase_timeline' GROUP BY 1"""
    )
    total = sum(int(n) for _, n, _ in answers)
    share = {str(a): int(n) / total for a, n, _ in answers}
    truth = {str(a): float(p) for a, _, p in answers}
    assert set(share) == {name for name, _, _ in crm.PURCHASE_TIMELINE}
    for name, expected, _ in crm.PURCHASE_TIMELINE:
        assert abs(share[name] - expected) < 0.05, name
    assert truth["this quarter"] > truth["this year"] > truth["just researching"]
    # the answers' effects have mean 0 and leave the intent's variance to the hidden part
    mean = sum(s * e for _, s, e in crm.PURCHASE_TIMELINE)
    variance = sum(s * e**2 for _, s, e in crm.PURCHASE_TIMELINE) - mean**2
    assert abs(mean) < 1e-9 and 0 < crm.ANSWER_SD < crm.INTENT_SD
    assert abs(variance + crm.ANSWER_SD**2 - crm.INTENT_SD**2) < 1e-9


def test_the_truth_without_the_hidden_intent_is_the_columns_ceiling(
    generated: tuple[Database, crm.GeneratedCRM],
) -> None:
    """p_columns_90d leaves out only the hidden part of the intent: once the columns'
    part (the form answer included) is scaled back with the lead's own hidden sd, the
    two log-odds differ by that part, sd ANSWER_SD where the form was answered and
    INTENT_SD where not, mean 0; and the mean probability is kept."""
    db, _ = generated

    def shrink(sd: float) -> float:
        return math.sqrt(1 + math.pi * sd**2 / 8)

    rows = db.execute(
        """SELECT l.attributes ? 'purchase_timeline' AS answered, count(*),
                  stddev(g.gap), avg(g.gap)
           FROM sample_truth t JOIN leads l ON l.id = t.lead_id
           CROSS JOIN LATERAL (SELECT ln(t.p_convert_90d / (1 - t.p_convert_90d))
               - CASE WHEN l.attributes ? 'purchase_timeline' THEN %s ELSE %s END
                 * ln(t.p_columns_90d / (1 - t.p_columns_90d)) AS gap) AS g
           GROUP BY 1""",
        (shrink(crm.ANSWER_SD), shrink(crm.INTENT_SD)),
    )
    hidden = {bool(a): (int(n), float(sd), float(mean)) for a, n, sd, mean in rows}
    assert set(hidden) == {True, False}
    for answered, sd in ((True, crm.ANSWER_SD), (False, crm.INTENT_SD)):
        n, got_sd, got_mean = hidden[answered]
        assert n > 500 and abs(got_sd - sd) < 0.05 and abs(got_mean) < 4 * sd / n**0.5
    mean_gap, missing = db.execute(
        """SELECT avg(p_convert_90d) - avg(p_columns_90d),
                  count(*) FILTER (WHERE p_columns_90d IS NULL)
           FROM sample_truth"""
    )[0]
    assert missing == 0
    assert abs(float(mean_gap)) < 0.01


def test_generated_leads_convert_through_the_library(
    generated: tuple[Database, crm.GeneratedCRM],
) -> None:
    db, made = generated
    with db.connect() as conn:
        done = conversion.convert_leads(conn, query=Query(where={"status": "qualified"}))
    assert len(done.converted) == made.statuses["qualified"] > 0
    assert not done.duplicates and not done.already_converted


def test_top_up_adds_to_existing_data(crm_db: Database) -> None:
    generate(crm_db, leads=800)
    again = generate(crm_db, leads=700, seed=9)
    assert again.leads == 700
    assert crm_db.scalar("SELECT count(*) FROM leads") == 1_500
    assert crm_db.scalar("SELECT count(*) FROM sample_truth") == 1_500
    assert crm_db.scalar(
        """SELECT count(*) - count(DISTINCT lower(email)) FROM (
               SELECT email FROM leads WHERE email IS NOT NULL
               UNION ALL SELECT email FROM contacts WHERE email IS NOT NULL) e"""
    ) == 0  # fmt: skip


def test_a_database_not_at_the_newest_schema_is_refused(db: Database) -> None:
    with db.connect() as conn, pytest.raises(UsageError, match="aicrm db migrate"):
        crm.generate(conn, leads=10, now=NOW)
    with db.connect() as conn, pytest.raises(UsageError, match="newest schema"):
        crm.existing_rows(conn)


def test_refusals_are_clear_and_change_nothing(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        assert crm.existing_rows(conn) == 0
    generate(crm_db, leads=50)
    before = content(crm_db)
    with crm_db.connect() as conn:
        with pytest.raises(UsageError, match="seed 7 are in the database already"):
            crm.generate(conn, leads=10, seed=7, now=NOW)
        with pytest.raises(UsageError, match="future"):
            crm.generate(conn, leads=10, seed=1, now=datetime.now(UTC) + timedelta(days=2))
        with pytest.raises(UsageError, match="1 to"):
            crm.generate(conn, leads=0)
        with pytest.raises(UsageError, match="seed"):
            crm.generate(conn, leads=10, seed=-1)
    assert content(crm_db) == before
    with crm_db.connect() as conn:
        assert crm.existing_rows(conn) > 50


def test_default_now_is_midnight_utc_and_naive_means_utc(crm_db: Database) -> None:
    midnight = crm.default_now()
    assert midnight.tzinfo is UTC and midnight.time() == datetime.min.time()
    made = generate(crm_db, leads=20, now=NOW.replace(tzinfo=None))
    assert made.now == NOW


def test_inside_a_callers_transaction_settings_come_back(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        conn.execute("SET TimeZone = 'Europe/Berlin'")
        with conn.transaction():
            crm.generate(conn, leads=50, seed=1, now=NOW)
            crm.generate(conn, leads=50, seed=2, now=NOW)  # staging tables gone: no clash
            shown = conn.execute(
                "SELECT current_setting('TimeZone'), current_setting('session_replication_role')"
            ).fetchone()
        assert shown == ("Europe/Berlin", "origin")
    assert crm_db.scalar("SELECT count(*) FROM leads") == 100
