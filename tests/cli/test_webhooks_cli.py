"""``aicrm webhooks prune`` as a real process: counts, --dry-run, --include-dead, and a
horizon below one day refused in one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Database
from tests.migrate.test_failures import assert_one_line_error

SEED = """
INSERT INTO webhook_subscriptions (url, events, secret)
VALUES ('http://127.0.0.1:9/hook', '{lead.created}', 'whsec_0123456789abcdef')
"""
DELIVERED_LONG_AGO = """
UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now() - interval '40 days',
    updated_at = now() - interval '40 days'
WHERE record_id = (SELECT id FROM leads WHERE email = %s)
"""
DEAD_LONG_AGO = """
UPDATE webhook_deliveries SET state = 'dead', updated_at = now() - interval '40 days'
WHERE record_id = (SELECT id FROM leads WHERE email = %s)
"""
COUNTS = "SELECT (SELECT count(*) FROM crm_events), (SELECT count(*) FROM webhook_deliveries)"


def _prune(db: Database, *args: str) -> dict[str, object]:
    result = db.cli("webhooks", "prune", *args, "--json")
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


@pytest.mark.slow
def test_prune_counts_dry_run_and_dead_ones(crm_db: Database) -> None:
    crm_db.execute(SEED)
    for email in ("a@x.org", "b@x.org", "c@x.org"):
        made = crm_db.cli("leads", "create", "--email", email)
        assert made.returncode == 0, made.stderr
    # the worker's fan-out (migration 015), which listing runs first
    listed = crm_db.cli("webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["pending"] == 3
    crm_db.execute("UPDATE crm_events SET occurred_at = occurred_at - interval '40 days'")
    crm_db.execute(DELIVERED_LONG_AGO, ("a@x.org",))
    crm_db.execute(DEAD_LONG_AGO, ("b@x.org",))  # c@x.org's stays pending
    before = crm_db.execute(COUNTS)
    dry = _prune(crm_db, "--older-than", "30", "--dry-run")
    assert (dry["deliveries"], dry["events"], dry["dry_run"]) == (1, 1, True)
    assert crm_db.execute(COUNTS) == before == [(3, 3)]
    said = crm_db.cli("webhooks", "prune", "--older-than", "30")
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("removed 1 deliveries and 1 events from before ")
    assert crm_db.execute(COUNTS) == [(2, 2)]
    dead = _prune(crm_db, "--older-than", "30", "--include-dead")
    assert (dead["deliveries"], dead["events"]) == (1, 1)
    assert crm_db.execute(COUNTS) == [(1, 1)]  # the pending one and its event
    assert _prune(crm_db, "--older-than", "1", "--include-dead")["events"] == 0


@pytest.mark.slow
def test_days_below_one_are_refused_in_one_line(crm_db: Database) -> None:
    for days in ("0", "-1"):
        line = assert_one_line_error(crm_db.cli("webhooks", "prune", "--older-than", days), 2)
        assert "--older-than" in line and "from 1" in line and days in line
