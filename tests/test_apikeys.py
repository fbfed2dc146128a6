"""API keys: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import json

import pytest

from aicrm import apikeys
from aicrm.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from tests.conftest import Database
from tests.migrate.test_failures import assert_one_line_error


def test_keys_are_hashed_scoped_and_revocable(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        key, token = apikeys.create_key(conn, "sales-bot", "write")
        conn.commit()
        assert token.startswith(f"aicrm_{key.prefix}_")
        stored = crm_db.scalar("SELECT key_hash FROM api_keys WHERE name = 'sales-bot'")
        assert token not in str(stored) and len(str(stored)) == 64
        found = apikeys.authenticate(conn, token)
        assert found.name == "sales-bot" and found.allows("read") and found.allows("write")
        apikeys.require(found, "write")
        with pytest.raises(Forbidden, match="needs 'admin'"):
            apikeys.require(found, "admin")
        for bad in (
            None,
            "",
            "Bearer x",
            token[:-1] + ("A" if token[-1] != "A" else "B"),
            "aicrm_0000000000_" + "x" * 43,
        ):
            with pytest.raises(Unauthorized):
                apikeys.authenticate(conn, bad)
        apikeys.revoke_key(conn, "sales-bot")
        with pytest.raises(Unauthorized):
            apikeys.authenticate(conn, token)
        with pytest.raises(NotFound):
            apikeys.revoke_key(conn, "sales-bot")
        with pytest.raises(InvalidInput):
            apikeys.create_key(conn, "x", "root")
        with pytest.raises(InvalidInput):
            apikeys.create_key(conn, "bad name!", "read")
        with pytest.raises(Conflict):
            apikeys.create_key(conn, "sales-bot", "read")


@pytest.mark.slow
def test_apikey_cli_shows_the_token_once(crm_db: Database) -> None:
    made = crm_db.cli("apikey", "create", "reader", "--scope", "read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("aicrm_") and "not shown again" in made.stderr
    listed = crm_db.cli("apikey", "list", "--json")
    keys = json.loads(listed.stdout)
    assert [k["name"] for k in keys] == ["reader"] and token not in listed.stdout
    assert_one_line_error(crm_db.cli("apikey", "create", "x", "--scope", "god"), 2)
    assert crm_db.cli("apikey", "revoke", "reader").returncode == 0
    assert_one_line_error(crm_db.cli("apikey", "revoke", "reader"), 4)
