"""CSV import (leads, contacts) and export (leads, clients, contacts).

An import streams the request body to a temporary file as it arrives, refusing it
(413) as soon as it passes the size limit (``AICRM_API_IMPORT_LIMIT`` bytes, default
100 MiB; a larger Content-Length is refused before reading), then hands the file to
:mod:`aicrm.crm.importer`: all or nothing, or with ``skip_invalid`` the valid rows and
a list of the rejected ones. An export runs :mod:`aicrm.crm.exporter` into a spooled
temporary file (memory, then disk), then streams it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from aicrm import apikeys
from aicrm.api import _schemas as schemas
from aicrm.api.deps import Db, ReadDb, ReadKey, WriteKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import (
    Attr,
    CreatedFrom,
    CreatedTo,
    Search,
    attribute_filters,
    invalid,
    json_response,
    utc,
)
from aicrm.crm import exporter, importer, store
from aicrm.crm.records import Client, Contact, Lead, Record
from aicrm.db import Connection
from aicrm.errors import InvalidInput

router = APIRouter()

CSV = "text/csv"
DEFAULT_LIMIT = 100 << 20
CHUNK = 1 << 16


def import_limit() -> int:
    """Bytes an import may have (``AICRM_API_IMPORT_LIMIT``, default 100 MiB)."""
    try:
        return max(1, int(os.environ.get("AICRM_API_IMPORT_LIMIT", DEFAULT_LIMIT)))
    except ValueError:
        return DEFAULT_LIMIT


def too_large(limit: int) -> StarletteHTTPException:
    return StarletteHTTPException(
        413, f"The file is larger than the import limit of {limit:,} bytes; split it."
    )


async def receive_file(request: Request, target: Path, limit: int) -> int:
    """Stream the request body into ``target``; 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    size = 0
    with target.open("wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            handle.write(chunk)
    return size


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The CSV file (UTF-8, a header line naming the columns).",
        "content": {CSV: {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def run_import(
    request: Request,
    conn: Connection,
    actor: str,
    spec: importer.Spec,
    skip_invalid: bool,
    allow_duplicates: bool,
    mapping: str | None = None,
) -> Response:
    limit: int = getattr(request.app.state, "import_limit", None) or import_limit()
    with tempfile.TemporaryDirectory(prefix="aicrm-import-") as folder:
        path = Path(folder) / f"{spec.table}.csv"
        mapped = Path(folder) / "mapping.json"
        if mapping is not None:
            mapped.write_text(mapping, encoding="utf-8")
        await receive_file(request, path, limit)
        try:
            result = await run_in_threadpool(
                importer.import_csv, conn, spec, path, skip_invalid=skip_invalid,
                allow_duplicates=allow_duplicates, actor=actor,
                mapping=mapped if mapping is not None else None,
            )  # fmt: skip
        except InvalidInput as exc:
            message = (
                exc.message.replace(f" {mapped}", "")  # "The mapping is not valid JSON"
                .replace(str(path), "the uploaded file")
                .replace("(--skip-invalid --rejects FILE)", "(skip_invalid=true)")
                .replace("add --historical", "add historical=true")
            )
            raise InvalidInput(message, details=exc.details) from None
    body = result.to_dict()
    body.pop("rejects_path", None)
    return json_response(body)


SkipInvalid = Annotated[
    bool,
    Query(description="Import the valid rows and list the rejected ones (first 100), "
          "instead of refusing the whole file."),
]  # fmt: skip
AllowDuplicates = Annotated[
    bool, Query(description="Accept emails that other leads or contacts already have.")
]
MappingText = Annotated[
    str | None,
    Query(
        # 4,000 characters: percent-encoded (up to 12 bytes each) the request line stays
        # under the 64 KiB the HTTP server reads; a longer one would get its bare 400.
        max_length=4_000,
        description="A mapping of another CRM's export columns and values onto aicrm's: "
        'JSON, {"columns": {export column: aicrm column}, "values": {…}}, as the files in '
        "docs/import-mappings/ (Salesforce, HubSpot) and the CLI's --mapping FILE; up to "
        "4,000 characters (a longer mapping: the CLI's --mapping FILE).",
    ),
]


@router.post(
    "/leads/import",
    tags=["leads"],
    response_model=schemas.ImportResult,
    responses=responses(401, 403, 413, 422),
    openapi_extra=IMPORT_BODY,
)
async def import_leads(
    request: Request,
    conn: Db,
    key: WriteKey,
    skip_invalid: SkipInvalid = False,
    allow_duplicates: AllowDuplicates = False,
    mapping: MappingText = None,
    historical: Annotated[
        bool,
        Query(
            description="Past leads with their dated history (created_at, contacted_at, "
            "qualified_at, status_at, conversion_date, converted_to_client_id or "
            "client_name), written as it happened; admin scope only."
        ),
    ] = False,
) -> Response:
    """Import leads from CSV, streamed (the body is the file). All or nothing unless
    `skip_invalid`: an invalid row refuses the file (422, the rows named)."""
    if historical:
        apikeys.require(key, "admin")  # rewriting the past is an administrator's act
    spec = importer.LEADS_HISTORY if historical else importer.LEADS
    return await run_import(request, conn, key.name, spec, skip_invalid,
                            allow_duplicates, mapping)  # fmt: skip


@router.post(
    "/contacts/import",
    tags=["contacts"],
    response_model=schemas.ImportResult,
    responses=responses(401, 403, 413, 422),
    openapi_extra=IMPORT_BODY,
)
async def import_contacts(
    request: Request,
    conn: Db,
    key: WriteKey,
    skip_invalid: SkipInvalid = False,
    allow_duplicates: AllowDuplicates = False,
    mapping: MappingText = None,
) -> Response:
    """Import contacts from CSV, streamed; each row names one existing lead
    (`lead_id`) or client (`client_id`)."""
    return await run_import(request, conn, key.name, importer.CONTACTS, skip_invalid,
                            allow_duplicates, mapping)  # fmt: skip


# --- export -----------------------------------------------------------------------


def export_response(
    conn: Connection, cls: type[Record], query: store.Query, raw: bool = False
) -> Response:
    """Export into a spooled file (the connection is free again before sending), then
    stream the file. Formulas are neutralised unless ``raw``."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
    try:
        exporter.export_csv(conn, cls, spool, query, raw=raw)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def chunks() -> Iterator[bytes]:
        with spool:
            while data := spool.read(CHUNK):
                yield data

    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    headers = {"Content-Disposition": f'attachment; filename="{cls.TABLE}_{stamp}.csv"'}
    return StreamingResponse(chunks(), media_type=f"{CSV}; charset=utf-8", headers=headers)


def export_query(
    q: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    attr: list[str] | None,
    where: dict[str, Any],
) -> store.Query:
    if q is not None and not store.WORD.findall(q.lower()):
        invalid("q", "query", "The search text has no words to look for.")
    return store.Query(
        where={k: v for k, v in where.items() if v is not None},
        attributes=attribute_filters(attr),
        search=q,
        created_from=utc(created_from),
        created_to=utc(created_to),
    )


Raw = Annotated[
    bool,
    Query(
        description="Write values exactly. By default a value that a spreadsheet would run "
        "as a formula (starting with =, +, -, @, |, %, tab or CR) gets a leading `'`."
    ),
]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The records as CSV, oldest first, with a header line.",
          "content": {CSV: {"schema": {"type": "string"}}}},
}  # fmt: skip


@router.get(
    "/leads/export",
    tags=["leads"],
    response_class=Response,
    responses={**CSV_RESPONSE, **responses(401, 403, 422)},
)
def export_leads(
    conn: ReadDb,
    key: ReadKey,
    status: Annotated[schemas.Status | None, Query()] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
    converted: bool | None = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    raw: Raw = False,
) -> Response:
    """Leads as CSV (the columns the import reads back), with the list's filters."""
    where = {"status": status, "source": source, "is_converted": converted}
    query = export_query(q, created_from, created_to, attr, where)
    return export_response(conn, Lead, query, raw)


@router.get(
    "/clients/export",
    tags=["clients"],
    response_class=Response,
    responses={**CSV_RESPONSE, **responses(401, 403, 422)},
)
def export_clients(
    conn: ReadDb,
    key: ReadKey,
    industry: Annotated[str | None, Query(max_length=200)] = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    raw: Raw = False,
) -> Response:
    """Clients as CSV, with the list's filters."""
    where = {"industry": industry}
    query = export_query(q, created_from, created_to, attr, where)
    return export_response(conn, Client, query, raw)


@router.get(
    "/contacts/export",
    tags=["contacts"],
    response_class=Response,
    responses={**CSV_RESPONSE, **responses(401, 403, 422)},
)
def export_contacts(
    conn: ReadDb,
    key: ReadKey,
    lead_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    raw: Raw = False,
) -> Response:
    """Contacts as CSV, with the list's filters."""
    where = {"lead_id": lead_id, "client_id": client_id}
    query = export_query(q, created_from, created_to, attr, where)
    return export_response(conn, Contact, query, raw)
