"""CSV import (streamed, with a size limit) and export over real HTTP."""

from __future__ import annotations

import csv
import io
import json

import httpx

from tests.api.conftest import Live, assert_problem, unique


def test_import_then_export_leads(live: Live, api: httpx.Client) -> None:
    source = unique("csv")
    rows = "\n".join(f"First{n},Last{n},{source}{n}@example.com,{source}" for n in range(5))
    body = f"first_name,last_name,email,source\n{rows}\n".encode()
    done = api.post("/api/leads/import", content=body, headers={"Content-Type": "text/csv"})
    assert done.status_code == 200, done.text
    assert done.json() | {"errors": []} == {"table": "leads", "rows": 5, "imported": 5,
                                            "rejected": 0, "errors": []}  # fmt: skip
    listed = api.get("/api/leads", params={"source": source}).json()["items"]
    assert len(listed) == 5
    history = api.get(f"/api/leads/{listed[0]['id']}/history").json()
    assert history[0]["actor"] == live.names["write"]

    exported = live.client("read").get("/api/leads/export", params={"source": source})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["email"] for r in table) == sorted(r["email"] for r in listed)
    assert api.get("/api/clients/export").status_code == 200
    assert api.get("/api/contacts/export", params={"q": "nobody"}).text.startswith("id,")


def test_invalid_rows_refuse_the_file_or_are_skipped(api: httpx.Client) -> None:
    source = unique("bad")
    body = (f"email,source,status\nok@{source}.com,{source},new\nnot-an-email,{source},new\n"
            f"other@{source}.com,{source},bogus\n").encode()  # fmt: skip
    refused = api.post("/api/leads/import", content=body)
    problem = assert_problem(refused, 422)
    assert [r["line"] for r in problem["rows_rejected"]] == [3, 4]
    assert "the uploaded file" in problem["detail"] and "/tmp" not in problem["detail"]
    assert api.get("/api/leads", params={"source": source}).json()["items"] == []
    skipped = api.post("/api/leads/import", params={"skip_invalid": "true"}, content=body)
    assert skipped.status_code == 200, skipped.text
    assert (skipped.json()["imported"], skipped.json()["rejected"]) == (1, 2)
    assert [e["line"] for e in skipped.json()["errors"]] == [3, 4]
    unknown = assert_problem(api.post("/api/leads/import", content=b"e-mail\nx@y.z\n"), 422)
    assert "e-mail" in unknown["detail"]


def test_import_contacts(api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"first_name": "Imported parent"}).json()
    body = f"lead_id,first_name,email\n{lead['id']},Ann,{unique()}@example.com\n".encode()
    done = api.post("/api/contacts/import", content=body)
    assert done.status_code == 200 and done.json()["imported"] == 1, done.text
    assert len(api.get("/api/contacts", params={"lead_id": lead["id"]}).json()["items"]) == 1


def test_an_oversized_import_is_413(live: Live, api: httpx.Client) -> None:
    live.app.state.import_limit = 1000
    try:
        big = b"first_name\n" + b"x\n" * 1000
        declared = api.post("/api/leads/import", content=big)
        assert_problem(declared, 413)

        def chunks():  # no Content-Length: refused while streaming
            for _ in range(100):
                yield b"x\n" * 10

        streamed = api.post("/api/leads/import", content=chunks())
        assert_problem(streamed, 413)
        small = api.post("/api/leads/import", content=b"first_name\nSmall\n")
        assert small.status_code == 200, small.text
    finally:
        live.app.state.import_limit = None


def test_a_historical_import_needs_an_admin_key(live: Live, api: httpx.Client) -> None:
    email = f"{unique()}@example.com"
    body = (
        "email,status,created_at,status_at\n"
        f"{email},lost,2024-01-10T09:00:00Z,2024-02-01T09:00:00Z\n"
    ).encode()
    refused = api.post("/api/leads/import", params={"historical": "true"}, content=body)
    assert_problem(refused, 403)
    done = live.client("admin").post(
        "/api/leads/import", params={"historical": "true"}, content=body
    )
    assert done.status_code == 200 and done.json()["imported"] == 1, done.text
    changes = live.db.execute(
        "SELECT h.changed_at::text, h.changes -> 'status' FROM crm_history h "
        "JOIN leads l ON l.id = h.row_id WHERE l.email = %s ORDER BY h.changed_at",
        (email,),
    )
    assert [c for _t, c in changes] == ["new", ["new", "lost"]]


def test_an_import_maps_another_crms_columns(live: Live, api: httpx.Client) -> None:
    email = f"{unique()}@example.com"
    mapping = json.dumps({
        "columns": {"E-mail": "email", "Lead Source": "source", "Stage": "status",
                    "Headcount": "attributes.employees", "Owner": "ignore"},
        "values": {"status": {"Working": "contacted"}},
    })  # fmt: skip
    body = f"E-mail,Lead Source,Stage,Headcount,Owner\n{email},Web,Working,40,Ann\n".encode()
    done = api.post("/api/leads/import", params={"mapping": mapping}, content=body)
    assert done.status_code == 200 and done.json()["imported"] == 1, done.text
    row = live.db.execute("SELECT source, status, attributes FROM leads WHERE email = %s", (email,))
    assert row == [("Web", "contacted", {"employees": 40})] or row == [
        ("Web", "contacted", {"employees": "40"})
    ]
    # without the mapping the same file is refused; a bad mapping is a 422 naming it
    assert_problem(api.post("/api/leads/import", content=body), 422)
    bad = api.post("/api/leads/import", params={"mapping": "{nope"}, content=body)
    assert_problem(bad, 422)
    assert "The mapping is not valid JSON" in bad.json()["detail"]
    assert "/tmp" not in bad.text and "aicrm-import-" not in bad.text
