"""Schemathesis over the whole OpenAPI document, against the real server and database,
with a real admin key: no input may produce a 500, every status must be documented,
every body must match its schema and its documented media type.

The number of examples per operation is bounded (``AICRM_SCHEMATHESIS_EXAMPLES``,
default 20) and derandomized, so the run is repeatable and the API suite stays
short; raise it locally to search harder.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aicrm.db import Target
from aicrm.server import create_app
from tests.api.conftest import Live

EXAMPLES = int(os.environ.get("AICRM_SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# The document the server serves, built without a database (the app's routes make it;
# the target is never connected to here). Tests below check it is the one served.
OFFLINE = Target("dbname=unused", "test", "localhost", "5432", "unused", "unused", ())
DOCUMENT = create_app(OFFLINE).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_the_one_tested(live: Live) -> None:
    assert live.client(None).get("/openapi.json").json() == DOCUMENT


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: Any, live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.tokens['admin']}"}
    case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=60)
