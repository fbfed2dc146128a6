"""JSONB attributes as users store them: numbers written as text ("1,200") are numbers,
read as such at training and at scoring."""

from __future__ import annotations

import math

from aicrm.ai._features import creation_frame, discover, scoring_frame
from tests.ai.data import AS_OF, L, insert
from tests.conftest import Database


def test_numbers_written_as_text_are_numbers(crm_db: Database) -> None:
    values = ["1,200", "15", " 3,400,000 ", "-2.5", "12e2", "n/a", None, 7]
    leads = [
        L("web", 200 + i, attributes={} if v is None else {"employees": v, "tier": "gold"})
        for i, v in enumerate(values)
    ]
    with crm_db.connect() as conn:
        insert(conn, leads)
        found = discover(conn, horizon=90, as_of=AS_OF, since=AS_OF.replace(year=2000),
                         n_leads=len(leads))  # fmt: skip
        spec = {f.name: f for f in found}
        assert spec["attr:employees"].kind == "numeric"
        frame = creation_frame(conn, [spec["attr:employees"]], horizon=90,
                               lead_ids=[str(x.id) for x in leads])  # fmt: skip
    by_id = dict(zip(frame.lead_ids, frame.values[:, 0].tolist(), strict=True))
    read = [by_id[str(x.id)] for x in leads]
    expected = [1200.0, 15.0, 3_400_000.0, -2.5, 1200.0, None, None, 7.0]
    for got, want in zip(read, expected, strict=True):
        assert math.isnan(got) if want is None else got == want, (read, expected)


def test_custom_statuses_count_as_their_category_and_place_in_the_funnel(
    crm_db: Database,
) -> None:
    leads = [
        L("web", 200, path=[(1, "contacted"), (3, "demo_booked")]),
        L("web", 200, path=[(2, "ghosted")]),
        L("web", 200, path=[(2, "inbound_call")]),
        L("web", 200, path=[(1, "contacted")]),
    ]
    with crm_db.connect() as conn:
        conn.execute(
            "INSERT INTO lead_statuses (name, category, position) VALUES "
            "('inbound_call', 'open', 5), ('demo_booked', 'open', 35), ('ghosted', 'lost', 70)"
        )
        insert(conn, leads)
        found = discover(conn, horizon=90, as_of=AS_OF, since=AS_OF.replace(year=2000),
                         n_leads=len(leads))  # fmt: skip
        spec = {f.name: f for f in found}
        assert spec["status"].categories == [
            "inbound_call", "new", "contacted", "qualified", "demo_booked", "unqualified", "lost",
            "ghosted",
        ]  # fmt: skip
        names = ["status", "reached_contacted", "reached_qualified", "was_disqualified"]
        # include_converted: the lost ('ghosted') lead is read too (a plain scoring
        # read takes open leads only)
        frame = scoring_frame(conn, [spec[n] for n in names], as_of=AS_OF,
                              lead_ids=[str(x.id) for x in leads],
                              include_converted=True)  # fmt: skip
    rows = dict(zip(frame.lead_ids, frame.values.tolist(), strict=True))
    status = spec["status"].categories
    got = [rows[str(x.id)] for x in leads]
    # demo_booked: an open status after 'qualified' counts as contacted and qualified
    assert got[0] == [status.index("demo_booked") + 1, 1, 1, 0]
    # ghosted: a lost status counts as disqualified, not as contacted
    assert got[1] == [status.index("ghosted") + 1, 0, 0, 1]
    # an open status before 'new' is not a step forward
    assert got[2] == [status.index("inbound_call") + 1, 0, 0, 0]
    assert got[3] == [status.index("contacted") + 1, 1, 0, 0]
