"""The scale-out settings: AICRM_POOL_MODE, AICRM_READ_URL, AICRM_READ_MAX_LAG."""

from __future__ import annotations

import pytest

from aicrm.config import detect_pool_mode, resolve
from aicrm.db import connect_read, replication_lag, target, wait_for_replicas
from aicrm.errors import UsageError
from tests.conftest import Database


def test_defaults_no_pooler_no_replica() -> None:
    settings = resolve({"DATABASE_URL": "postgresql://u@h/d"})
    assert settings.pool_mode == "auto" and settings.read_conninfo == ""
    assert settings.read_max_lag == 5.0
    where = target(settings)
    assert where.pool_mode == "session" and where.read is None
    assert where.connect_kwargs() == {}


def test_transaction_mode_switches_off_prepared_statements() -> None:
    where = target(
        resolve({"DATABASE_URL": "postgresql://u@h/d", "AICRM_POOL_MODE": "Transaction"})
    )
    assert where.pooled and where.connect_kwargs() == {"prepare_threshold": None}


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        ("postgresql://u@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", "transaction"),
        ("postgresql://u@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", "session"),
        ("postgresql://u@crm.proxy-abc123.eu-west-1.rds.amazonaws.com/crm", "transaction"),
        ("postgresql://u@crm.abc123.eu-west-1.rds.amazonaws.com/crm", "session"),
        ("postgresql://u@127.0.0.1:6432/crm", "session"),  # a PgBouncer of your own: say so
    ],
)
def test_auto_detects_only_the_poolers_known_by_name(url: str, mode: str) -> None:
    assert detect_pool_mode("auto", url) == mode
    assert detect_pool_mode("session", url) == "session"


def test_the_replica_and_its_bound_are_read_and_its_password_is_a_secret() -> None:
    settings = resolve(
        {
            "DATABASE_URL": "postgresql://u:pw1@primary/d",
            "AICRM_READ_URL": "postgresql://u:pw2@replica:5433/d",
            "AICRM_READ_MAX_LAG": "2.5",
        }
    )
    assert set(settings.secrets) == {"pw1", "pw2"}
    where = target(settings)
    assert where.read is not None and where.read_max_lag == 2.5
    assert where.read.describe() == "u@replica:5433/d (AICRM_READ_URL)"
    assert "pw2" not in where.read.describe()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"AICRM_POOL_MODE": "statement"}, "AICRM_POOL_MODE must be one of"),
        ({"AICRM_READ_MAX_LAG": "-1"}, "AICRM_READ_MAX_LAG must be a number of seconds"),
        ({"AICRM_READ_MAX_LAG": "soon"}, "AICRM_READ_MAX_LAG must be a number of seconds"),
        ({"AICRM_READ_URL": "password=s3cret host"}, "AICRM_READ_URL is not valid"),
    ],
)
def test_bad_values_are_refused_in_one_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve({"DATABASE_URL": "postgresql://u@h/d", **env})
    assert words in str(caught.value).replace("is not a valid", "is not valid")
    assert "s3cret" not in str(caught.value)


@pytest.mark.slow
def test_the_cli_refuses_a_bad_pool_mode_with_exit_2_and_following_the_advice_works(
    db: Database,
) -> None:
    bad = db.cli("db", "status", env={"AICRM_POOL_MODE": "statement"})
    assert bad.returncode == 2, bad.stderr
    assert "AICRM_POOL_MODE must be one of" in bad.stderr and "Traceback" not in bad.stderr
    good = db.cli("db", "status", env={"AICRM_POOL_MODE": "session"})
    assert good.returncode == 0, good.stderr


def test_without_a_replica_reads_and_bulk_writers_use_the_primary_silently(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    where = db.target()
    assert where.read is None
    with connect_read(where) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (db.name,)
    with db.connect(autocommit=True) as conn:
        assert replication_lag(conn) is None
        assert wait_for_replicas(conn, 0.1, timeout=0) is None
    assert not [r for r in caplog.records if r.name == "aicrm.db._routing"]
