"""CSV import and export: COPY into staging, checks in SQL, all or nothing, round trip."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from aicrm.crm import (
    _import_file as import_file,
    clients,
    contacts,
    conversion,
    exporter,
    importer,
    leads,
    session,
)
from aicrm.crm.records import Contact, Lead
from aicrm.crm.store import Query
from aicrm.errors import InvalidInput
from tests.conftest import Database, Server, create_database, drop_database

LEAD_HEADER = "first_name,last_name,email,company_name,source,status,ai_score,attributes"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _counts(db: Database) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM contacts), "
        "(SELECT count(*) FROM crm_history)"
    )[0]
    return int(row[0]), int(row[1]), int(row[2])


@pytest.fixture
def other_db(server: Server, head_template: str) -> Iterator[Database]:
    """A second fresh CRM database, for round trips."""
    name = create_database(server, template=head_template)
    yield Database(name, server.conninfo(name), server, Path("."), {})
    drop_database(server, name)


def test_import_writes_rows_values_and_history(crm_db: Database, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "leads.csv",
        "\ufeff"  # a byte order mark, as spreadsheets write it
        + LEAD_HEADER
        + "\n"
        + 'Zoë,Ng,zoe@acme.io,"Acme, Inc.",web,qualified,0.75,"{""seats"": 40}"\n'
        + "Bo,,  bo@beta.io ,,,,,\n"
        + ',,,"Solo Corp",fair,new,,{}\n\n\n',  # blank lines at the end are ignored
    )
    seen: list[tuple[int, int]] = []
    stages: list[str] = []
    with crm_db.connect() as conn:
        result = importer.import_leads(
            conn, source, actor="importer", progress=lambda d, t: seen.append((d, t)),
            stage=stages.append,
        )  # fmt: skip
    assert (result.rows, result.imported, result.rejected, result.rejects_path) == (3, 3, 0, None)
    rows = crm_db.execute(
        "SELECT first_name, last_name, email, company_name, source, status, ai_score, "
        "attributes, ai_annotations, is_converted FROM leads ORDER BY email NULLS LAST"
    )
    assert rows == [
        ("Bo", None, "bo@beta.io", None, None, "new", None, {}, {}, False),
        ("Zoë", "Ng", "zoe@acme.io", "Acme, Inc.", "web", "qualified", 0.75, {"seats": 40}, {},
         False),
        (None, None, None, "Solo Corp", "fair", "new", None, {}, {}, False),
    ]  # fmt: skip
    history = crm_db.execute(
        "SELECT operation, actor, changes ->> 'email' FROM crm_history "
        "WHERE table_name = 'leads' ORDER BY changes ->> 'email' NULLS LAST"
    )
    assert history == [
        ("insert", "importer", "bo@beta.io"),
        ("insert", "importer", "zoe@acme.io"),
        ("insert", "importer", None),
    ]
    size = source.stat().st_size
    assert seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert any(s.startswith("checking") for s in stages)
    assert any(s.startswith("inserting") for s in stages)


def test_ids_and_times_from_the_file_are_kept(crm_db: Database, tmp_path: Path) -> None:
    given = uuid.uuid4()
    source = _write(
        tmp_path / "leads.csv",
        "id,email,created_at,updated_at\n"
        f"{given},kept@x.io,2020-01-02T03:04:05Z,2021-01-02 00:00:00+00\n"
        ",fresh@x.io,,\n",
    )
    with crm_db.connect() as conn:
        assert importer.import_leads(conn, source).imported == 2
    kept = crm_db.execute(
        "SELECT id, created_at::text, updated_at::text FROM leads WHERE email = 'kept@x.io'"
    )
    assert kept[0][0] == given
    assert kept[0][1].startswith("2020-01-02") and kept[0][2].startswith("2021-01-02")
    assert crm_db.scalar("SELECT count(*) FROM leads WHERE email = 'fresh@x.io' AND id IS NOT NULL")


def test_a_quoted_field_may_span_lines(crm_db: Database, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "leads.csv",
        'first_name,email\n"Multi\nLine",multi@x.io\nBad,nope\n',
    )
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source)
    # "line" counts CSV records (the header is line 1), like a spreadsheet's rows.
    assert "line 3: email 'nope' is not a valid email address" in caught.value.message
    with crm_db.connect() as conn:
        _write(source, 'first_name,email\n"Multi\nLine",multi@x.io\n')
        importer.import_leads(conn, source)
    assert crm_db.scalar("SELECT first_name FROM leads") == "Multi\nLine"


BAD_FILES = {
    "unknown column": (
        "first_name,emial\nAnn,ann@x.io\n",
        "Unknown column 'emial' in the header of",
        "did you mean 'email'",
    ),
    "repeated column": ("email,Email\na@x.io,b@x.io\n", "appears twice", "'email'"),
    "unnamed column": ("email,,source\na@x.io,,web\n", "Column 2 of the header", "no name"),
    "no identifying column": (
        "source,status\nweb,new\n",
        "has none of the columns email, first_name, last_name, company_name",
        "",
    ),
    "another delimiter": ("first_name;email\nAnn;ann@x.io\n", "another delimiter", ""),
    "ragged row, too many fields": (
        "first_name,email\nAnn,ann@x.io\nBob,bob@x.io,extra\n",
        "line 3 has more fields than the header's 2",
        "nothing was imported",
    ),
    "ragged row, too few fields": (
        "first_name,email,source\nAnn,ann@x.io,web\nBob,bob@x.io,web\nCy\n",
        "line 4 has fewer fields than the header's 3",
        "",
    ),
    "unclosed quote": (
        'first_name,email\nAnn,ann@x.io\n"Bob,bob@x.io\n',
        "line 3 opens a quoted field that is never closed",
        "",
    ),
    "mixed line breaks": (
        "first_name,email\r\nAnn,ann@x.io\r\nBob,bob@x.io\nCy,cy@x.io\r\n",
        "line 3 ends its line differently from the first line",
        "",
    ),
    "empty file": ("", "is empty", "header line"),
    "blank file": ("\n\r\n  \n", "is empty", ""),
    "byte order mark only": ("\ufeff", "is empty", ""),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_whole(crm_db: Database, tmp_path: Path, case: str) -> None:
    text, expected, also = BAD_FILES[case]
    source = _write(tmp_path / "bad.csv", text)
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source)
    message = caught.value.message
    assert expected in message and also in message
    assert "\n" not in message
    assert _counts(crm_db) == (0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (b"first_name,email\nAnn,ann@x.io\nJos\xe9,jose@x.io\n", 3),  # Latin-1
        (b"first_name,email\nAnn,ann@x.io\nBob,bob@x.io\nCy\x00,cy@x.io\n", 4),
        (b"first_n\xe4me,email\nAnn,ann@x.io\n", 1),
        (b"first_name,email\nAnn,ann@x.io\nJos\xc3", 3),  # cut inside a character
    ],
)
def test_a_file_that_is_not_utf8_is_refused(
    crm_db: Database, tmp_path: Path, raw: bytes, line: int
) -> None:
    source = tmp_path / "latin.csv"
    source.write_bytes(raw)
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source)
    message = caught.value.message
    assert "UTF-8" in message or "NUL" in message
    if "last line" not in message:
        assert f"line {line} " in message
    assert _counts(crm_db) == (0, 0, 0)


def test_the_encoding_is_checked_across_chunks(
    crm_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_file, "CHUNK", 7)  # characters split between chunks
    source = _write(tmp_path / "leads.csv", "first_name,email\nZoë,zoe@x.io\nÅsa,asa@x.io\n")
    with crm_db.connect() as conn:
        assert importer.import_leads(conn, source).imported == 2
    source.write_bytes(b"first_name,email\nZo\xc3\xab,zoe@x.io\n\xff,bad@x.io\n")
    with crm_db.connect() as conn, pytest.raises(InvalidInput, match="line 3 has the byte 0xff"):
        importer.import_leads(conn, source)


def test_windows_line_breaks(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "leads.csv", 'email,company_name\r\na@x.io,"A\r\nB"\r\nb@x.io,B\r\n')
    with crm_db.connect() as conn:
        assert importer.import_leads(conn, source).imported == 2
    assert crm_db.scalar("SELECT company_name FROM leads WHERE email = 'a@x.io'") == "A\r\nB"


def test_a_missing_file_is_invalid_input(crm_db: Database, tmp_path: Path) -> None:
    with crm_db.connect() as conn, pytest.raises(InvalidInput, match="Cannot read"):
        importer.import_leads(conn, tmp_path / "nope.csv")


def test_a_header_without_rows_imports_nothing(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "leads.csv", LEAD_HEADER + "\n")
    with crm_db.connect() as conn:
        result = importer.import_leads(conn, source)
    assert (result.rows, result.imported) == (0, 0)


INVALID_ROWS = (
    "id,first_name,email,status,ai_score,attributes,ai_annotations,created_at,"
    "converted_to_client_id,is_converted\n"
    ",Ann,ann@x.io,new,0.5,{},,,,f\n"  # 2: fine
    ",,,,,,,,,\n"  # 3: nothing to identify it
    ",Bob,bob@,,,,,,,\n"  # 4: bad email
    ",Cy,cy@x.io,hot,,,,,,\n"  # 5: unknown status
    ",Di,di@x.io,converted,,,,,,\n"  # 6: status converted
    ",Ed,ed@x.io,,high,,,,,\n"  # 7: not a number
    ',Fa,fa@x.io,,,"{oops",,,,\n'  # 8: not JSON
    ",Gu,gu@x.io,,,[1],,,,\n"  # 9: not an object
    "not-a-uuid,Ha,ha@x.io,,,,,,,\n"  # 10: bad id
    ",Io,io@x.io,,,,,someday,,\n"  # 11: bad time
    f",Jo,jo@x.io,,,,,,{uuid.uuid4()},\n"  # 12: converted
    ",Ka,ka@x.io,,,,,,,t\n"  # 13: converted
    ',La,la@x.io,,,,"""x""",,,\n'  # 14: ai_annotations not an object
)

EXPECTED_REASONS = {
    3: "a lead needs an email, a name or a company",
    4: "email 'bob@' is not a valid email address",
    5: "status 'hot' is not a lead status",
    6: "status 'converted' is set only by converting a lead",
    7: "ai_score 'high' is not a number",
    8: "attributes is not valid JSON",
    9: "attributes must be a JSON object",
    10: "id 'not-a-uuid' is not a UUID",
    11: "created_at 'someday' is not a date and time",
    12: "converted_to_client_id is set: a converted lead cannot be imported",
    13: "is_converted is true: a converted lead cannot be imported",
    14: "ai_annotations must be a JSON object",
}


def test_invalid_rows_refuse_the_whole_file(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "leads.csv", INVALID_ROWS)
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source)
    message = caught.value.message
    assert message.startswith(f"12 of the 13 rows of {source} are invalid, so no lead was imported")
    assert "line 3: a lead needs" in message and "line 7: ai_score 'high'" in message
    assert "line 8" not in message and "and 7 more" in message and "--skip-invalid" in message
    errors = {e["line"]: e["reason"] for e in caught.value.details["errors"]}
    assert sorted(errors) == sorted(EXPECTED_REASONS)
    for line, reason in EXPECTED_REASONS.items():
        assert reason in errors[line], (line, errors[line])
    assert _counts(crm_db) == (0, 0, 0)


def test_skip_invalid_imports_the_rest_and_writes_the_rejects(
    crm_db: Database, tmp_path: Path
) -> None:
    source = _write(tmp_path / "leads.csv", INVALID_ROWS)
    rejects = tmp_path / "out" / "rejects.csv"
    rejects.parent.mkdir()
    with crm_db.connect() as conn:
        result = importer.import_leads(conn, source, skip_invalid=True, rejects_path=rejects)
    assert (result.rows, result.imported, result.rejected) == (13, 1, 12)
    assert result.rejects_path == rejects
    assert crm_db.execute("SELECT first_name FROM leads") == [("Ann",)]
    with rejects.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["line", "reason", *INVALID_ROWS.splitlines()[0].split(",")]
    assert [int(row[0]) for row in table[1:]] == sorted(EXPECTED_REASONS)
    for row in table[1:]:
        assert EXPECTED_REASONS[int(row[0])] in row[1]
    assert table[2][2:] == ["", "Bob", "bob@", "", "", "", "", "", "", ""]
    assert table[6][2:8] == ["", "Fa", "fa@x.io", "", "", "{oops"]
    assert [p.name for p in rejects.parent.iterdir()] == ["rejects.csv"]  # no temp file left


def test_rejects_need_skip_invalid_and_another_file(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "leads.csv", "email\na@x.io\n")
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match="goes with skipping"):
            importer.import_leads(conn, source, rejects_path=tmp_path / "r.csv")
        with pytest.raises(InvalidInput, match="is the file being imported"):
            importer.import_leads(conn, source, skip_invalid=True, rejects_path=source)
    assert _counts(crm_db) == (0, 0, 0)


def test_the_rejects_file_is_written_even_when_empty(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "leads.csv", "email,first_name\na@x.io,Ann\n")
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("stale rejects of an earlier run\n")
    with crm_db.connect() as conn:
        result = importer.import_leads(conn, source, skip_invalid=True, rejects_path=rejects)
    assert (result.imported, result.rejected, result.rejects_path) == (1, 0, rejects)
    assert rejects.read_text() == "line,reason,email,first_name\n"
    with crm_db.connect() as conn, pytest.raises(InvalidInput, match="there is no folder"):
        importer.import_leads(
            conn, source, skip_invalid=True, rejects_path=tmp_path / "nowhere" / "r.csv"
        )


def _seed(db: Database) -> tuple[Lead, Contact]:
    with db.connect() as conn, session.transaction(conn):
        lead = leads.create_lead(conn, first_name="Old", email="Taken@Corp.io")
        client = clients.create_client(conn, name="Corp")
        person = contacts.create_contact(conn, client_id=client.id, email="person@corp.io")
    return lead, person


def test_duplicates_in_the_file_and_in_the_database(crm_db: Database, tmp_path: Path) -> None:
    lead, person = _seed(crm_db)
    before = _counts(crm_db)
    source = _write(
        tmp_path / "leads.csv",
        "first_name,email\n"
        "A,new@x.io\n"  # 2
        "B,NEW@x.io\n"  # 3: same email as line 2, another case
        "C,taken@corp.io\n"  # 4: a lead has it
        "D,Person@Corp.io\n"  # 5: a contact has it
        "E,other@x.io\n",  # 6
    )
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source)
    errors = {e["line"]: e["reason"] for e in caught.value.details["errors"]}
    assert errors == {
        3: "email NEW@x.io is also on line 2",
        4: f"email taken@corp.io already belongs to lead {lead.id}",
        5: f"email Person@Corp.io already belongs to contact {person.id}",
    }
    assert _counts(crm_db) == before
    with crm_db.connect() as conn:
        result = importer.import_leads(conn, source, skip_invalid=True)
    assert (result.imported, result.rejected, result.rejects_path) == (2, 3, None)
    assert [e.line for e in result.errors] == [3, 4, 5]
    assert crm_db.scalar("SELECT count(*) FROM leads WHERE lower(email) = 'new@x.io'") == 1


def test_allow_duplicates(crm_db: Database, tmp_path: Path) -> None:
    _seed(crm_db)
    source = _write(tmp_path / "leads.csv", "email\nnew@x.io\nNew@x.io\ntaken@corp.io\n")
    with crm_db.connect() as conn:
        assert importer.import_leads(conn, source, allow_duplicates=True).imported == 3
    assert crm_db.scalar("SELECT count(*) FROM leads WHERE lower(email) = 'taken@corp.io'") == 2


def test_small_imports_take_the_email_locks_of_single_creations(
    crm_db: Database, tmp_path: Path
) -> None:
    source = _write(tmp_path / "leads.csv", "email\na@x.io\nA@x.io\nb@x.io\n")
    held: list[object] = []
    with crm_db.connect() as conn, crm_db.connect(autocommit=True) as observer:
        pid = conn.info.backend_pid

        def stage(text: str) -> None:
            if text.startswith("inserting"):
                row = observer.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s "
                    "AND granted AND objid::bigint IN ("
                    "  SELECT hashtext('aicrm:email:' || e)::bigint & 4294967295 "
                    "  FROM unnest(ARRAY['a@x.io', 'b@x.io']) e)",
                    (pid,),
                ).fetchone()
                assert row is not None
                held.append(row[0])

        importer.import_leads(conn, source, skip_invalid=True, stage=stage)
    assert held == [2]


def test_contacts_import(crm_db: Database, tmp_path: Path) -> None:
    with crm_db.connect() as conn, session.transaction(conn):
        lead = leads.create_lead(conn, first_name="Lead", email="lead@x.io")
        client = clients.create_client(conn, name="Client Co")
        other = leads.create_lead(conn, first_name="Other", email="other@x.io")
    missing = uuid.uuid4()
    source = _write(
        tmp_path / "contacts.csv",
        "lead_id,client_id,first_name,email,title\n"
        f"{lead.id},,Pat,pat@x.io,CTO\n"  # 2
        f",{client.id},Sam,sam@x.io,\n"  # 3
        f"{lead.id},,Same,lead@x.io,\n"  # 4: may share its own lead's email
        f"{lead.id},,Twin,LEAD@x.io,\n"  # 5: and its fellow contacts'
        f",{client.id},Dup,other@x.io,\n"  # 6: another lead's email
        f"{missing},,Nobody,nobody@x.io,\n"  # 7: no such lead
        f"{lead.id},{client.id},Both,both@x.io,\n"  # 8: both parents
        ",,Orphan,orphan@x.io,\n"  # 9: no parent
        f",{client.id},,,Boss\n"  # 10: no email nor name
        f",{client.id},Pat2,pat@x.io,\n",  # 11: line 2 has it
    )
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_contacts(conn, source)
    errors = {e["line"]: e["reason"] for e in caught.value.details["errors"]}
    assert errors == {
        6: f"email other@x.io already belongs to lead {other.id}",
        7: f"no lead has id {missing}",
        8: "a contact belongs to one lead or one client, not both",
        9: "a contact needs a lead_id or a client_id",
        10: "a contact needs an email or a name",
        11: "email pat@x.io is also on line 2",
    }
    assert crm_db.scalar("SELECT count(*) FROM contacts") == 0
    with crm_db.connect() as conn:
        result = importer.import_contacts(conn, source, skip_invalid=True, actor="ops")
    assert (result.imported, result.rejected) == (4, 6)
    assert crm_db.execute(
        "SELECT first_name, lead_id IS NOT NULL, client_id IS NOT NULL, title FROM contacts "
        'ORDER BY first_name COLLATE "C"'
    ) == [("Pat", True, False, "CTO"), ("Sam", False, True, None), ("Same", True, False, None),
          ("Twin", True, False, None)]  # fmt: skip
    assert (
        crm_db.scalar(
            "SELECT count(*) FROM crm_history WHERE table_name = 'contacts' AND actor = 'ops'"
        )
        == 4
    )


def test_a_contact_file_needs_a_parent_column(crm_db: Database, tmp_path: Path) -> None:
    source = _write(tmp_path / "contacts.csv", "first_name,email\nPat,pat@x.io\n")
    with crm_db.connect() as conn, pytest.raises(InvalidInput, match="neither lead_id nor"):
        importer.import_contacts(conn, source)


def test_repeated_and_taken_ids(crm_db: Database, tmp_path: Path) -> None:
    lead, _ = _seed(crm_db)
    repeated = uuid.uuid4()
    source = _write(
        tmp_path / "leads.csv",
        f"id,email\n{repeated},a@x.io\n{repeated},b@x.io\n{lead.id},c@x.io\n",
    )
    with crm_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, source, allow_duplicates=True)
    errors = {e["line"]: e["reason"] for e in caught.value.details["errors"]}
    assert errors == {
        3: f"id {repeated} is also on line 2",
        4: f"id {lead.id} is already taken by a lead",
    }


# --- export ---------------------------------------------------------------------


def _leads_for_export(db: Database) -> list[Lead]:
    made = []
    with db.connect() as conn:
        for values in (
            {"first_name": "Ann", "email": "ann@x.io", "source": "web", "status": "qualified",
             "attributes": {"plan": "pro", "seats": 3}, "ai_score": 0.8125},
            {"first_name": "Bob", "last_name": "", "email": "bob@y.io", "source": "fair",
             "ai_summary": 'says "hi",\nthen leaves', "ai_annotations": {"tags": ["a", "b"]}},
            {"company_name": "Zürich AG", "source": "web", "attributes": {"plan": "free"}},
        ):  # fmt: skip
            with session.transaction(conn):  # one each: created_at grows
                made.append(leads.create_lead(conn, **values))
    return made


def _export(db: Database, cls: type[Lead] | type[Contact], query: Query | None = None) -> bytes:
    out = io.BytesIO()
    with db.connect() as conn:
        exporter.export_csv(conn, cls, out, query)
    return out.getvalue()


def _rows(db: Database, table: str) -> list[tuple[object, ...]]:
    return db.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table)))


def test_export_round_trip(crm_db: Database, other_db: Database, tmp_path: Path) -> None:
    made = _leads_for_export(crm_db)
    with crm_db.connect() as conn, session.transaction(conn):
        contacts.create_contact(conn, lead_id=made[0].id, first_name="Aide", email="aide@x.io",
                                attributes={"k": [1, 2]})  # fmt: skip
    lead_file = tmp_path / "leads.csv"
    contact_file = tmp_path / "contacts.csv"
    with crm_db.connect() as conn:
        assert exporter.export_to_path(conn, Lead, lead_file) == 3
        assert exporter.export_to_path(conn, Contact, contact_file) == 1
    assert lead_file.stat().st_mode & 0o777 == 0o600
    with other_db.connect() as conn:
        assert importer.import_leads(conn, lead_file).imported == 3
        assert importer.import_contacts(conn, contact_file).imported == 1
    assert _rows(other_db, "leads") == _rows(crm_db, "leads")
    assert _rows(other_db, "contacts") == _rows(crm_db, "contacts")
    assert other_db.scalar("SELECT last_name FROM leads WHERE first_name = 'Bob'") == ""


def test_export_columns_and_format(crm_db: Database) -> None:
    _leads_for_export(crm_db)
    text = _export(crm_db, Lead).decode("utf-8")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == list(Lead.COLUMNS)
    assert [row[3] for row in table[1:]] == ["ann@x.io", "bob@y.io", ""]  # oldest first
    assert table[1][Lead.COLUMNS.index("created_at")].endswith("+00")  # UTC
    assert "Zürich AG" in text


def test_export_with_filters(crm_db: Database) -> None:
    ann, bob, zurich = _leads_for_export(crm_db)
    with crm_db.connect() as conn:
        conversion.convert_lead(conn, zurich.id)

    def ids(query: Query) -> list[str]:
        table = list(csv.reader(io.StringIO(_export(crm_db, Lead, query).decode())))
        assert table[0] == list(Lead.COLUMNS)
        return [row[0] for row in table[1:]]

    assert ids(Query(where={"source": "web"})) == [str(ann.id), str(zurich.id)]
    assert ids(Query(where={"status": "qualified"})) == [str(ann.id)]
    assert ids(Query(attributes={"plan": "pro"})) == [str(ann.id)]
    assert ids(Query(search="bob")) == [str(bob.id)]
    assert ids(Query(where={"is_converted": True})) == [str(zurich.id)]
    assert ids(Query(where={"source": "web"}, attributes={"plan": "free"})) == [str(zurich.id)]
    assert ids(Query(where={"source": "none"})) == []
    second = crm_db.scalar("SELECT created_at FROM leads WHERE id = %s", (bob.id,))
    assert ids(Query(created_from=second)) == [str(bob.id), str(zurich.id)]
    assert ids(Query(created_to=second)) == [str(ann.id)]


def test_a_converted_lead_does_not_import_back(
    crm_db: Database, other_db: Database, tmp_path: Path
) -> None:
    ann, _, _ = _leads_for_export(crm_db)
    with crm_db.connect() as conn:
        conversion.convert_lead(conn, ann.id)
        exporter.export_to_path(conn, Lead, tmp_path / "leads.csv")
    with other_db.connect() as conn, pytest.raises(InvalidInput) as caught:
        importer.import_leads(conn, tmp_path / "leads.csv")
    assert "1 of the 3 rows" in caught.value.message
    assert "a converted lead cannot be imported" in caught.value.message


def test_a_failed_export_leaves_the_old_file(crm_db: Database, tmp_path: Path) -> None:
    target = tmp_path / "leads.csv"
    target.write_text("old\n")
    with crm_db.connect() as conn, pytest.raises(InvalidInput):
        exporter.export_to_path(conn, Lead, target, Query(search="!!!"))
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["leads.csv"]
