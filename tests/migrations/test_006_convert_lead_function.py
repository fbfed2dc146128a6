"""Migration 006: aicrm_convert_lead() comes with 006, goes with its down file, and is
the conversion itself (the behaviour is tested through convert_lead in
tests/crm/test_conversion.py; here, the function as psql would call it)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from aicrm import config
from aicrm.db import target
from aicrm.migrate import Options, downgrade, loader, migrate, verify
from tests.conftest import Database, head_migrations

FUNCTION = "aicrm_convert_lead(uuid, uuid, boolean, boolean, text)"
CALL = "SELECT * FROM aicrm_convert_lead(%s, %s, %s, %s, %s)"


def _exists(db: Database) -> bool:
    return bool(db.scalar("SELECT to_regprocedure(%s) IS NOT NULL", (FUNCTION,)))


@pytest.mark.slow
def test_006_adds_the_function_and_its_down_file_drops_it(db: Database, tmp_path: Path) -> None:
    versions = [m.version for m in loader.load(head_migrations())]
    assert 6 in versions
    where = target(config.resolve({"DATABASE_URL": db.url, "AICRM_HOME": db.env["AICRM_HOME"]}))
    options = Options(backup_dir=tmp_path / "backups", migrations_dir=head_migrations())

    migrate(dataclasses.replace(options, target_version=5), where)
    assert not _exists(db)
    migrate(options, where)
    assert _exists(db)
    results = verify(where, head_migrations())
    assert [r.check for r in results if not r.ok] == []
    assert "convert_lead_function_present" in {r.check for r in results}

    downgrade(5, options, where)
    assert not _exists(db)
    migrate(options, where)
    assert _exists(db)


def test_the_function_converts_and_refuses_with_its_own_sqlstates(crm_db: Database) -> None:
    lead = crm_db.scalar(
        "INSERT INTO leads (first_name, email) VALUES ('Ada', 'ada@x.org') RETURNING id"
    )
    other = crm_db.scalar("INSERT INTO clients (name) VALUES ('Other') RETURNING id")
    with crm_db.connect(autocommit=True) as conn:
        for args, code in (
            ((uuid.uuid4(), None, False, False, "psql"), "AC002"),  # unknown lead
            ((lead, uuid.uuid4(), False, False, "psql"), "AC002"),  # unknown client
        ):
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(CALL, args)
            assert caught.value.sqlstate == code
        assert crm_db.scalar("SELECT count(*) FROM crm_history WHERE actor = 'psql'") == 0

        done = conn.execute(CALL, (lead, None, False, False, "psql")).fetchone()
        assert done is not None and done[2:] == (True, False, 0)
        again = conn.execute(CALL, (lead, done[0], False, False, "psql")).fetchone()
        assert again == (done[0], done[1], False, True, 0)

        with pytest.raises(psycopg.Error) as caught:
            conn.execute(CALL, (lead, other, False, False, "psql"))
        assert caught.value.sqlstate == "AC003"
        assert "cannot be redone into another client" in str(caught.value)
        assert json.loads(caught.value.diag.message_detail or "")["conflicting"]["id"] == str(lead)

        twin = crm_db.scalar("INSERT INTO leads (email) VALUES ('TWIN@x.org') RETURNING id")
        crm_db.execute("INSERT INTO leads (email) VALUES ('twin@X.org')")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(CALL, (twin, None, False, False, "psql"))
        assert caught.value.sqlstate == "AC004"
        found = json.loads(caught.value.diag.message_detail or "")["conflicting"]
        assert [m["kind"] for m in found] == ["lead"] and found[0]["email"] == "twin@X.org"
    assert crm_db.scalar("SELECT count(*) FROM clients") == 2  # Other and Ada's
    assert (
        crm_db.scalar(
            "SELECT actor FROM crm_history WHERE table_name = 'clients' "
            "AND operation = 'insert' AND row_id = %s",
            (done[0],),
        )
        == "psql"
    )
