import pytest

from tests.conftest import Database
from tests.support import migration_count


@pytest.mark.slow
def test_migrate_empty_database_to_head(db: Database) -> None:
    result = db.cli("db", "migrate")
    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == migration_count() - 1
