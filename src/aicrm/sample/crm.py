"""A generator of realistic CRM data at the newest schema, with a ground truth.

:func:`generate` adds ``leads`` leads to a database at the newest schema (002 or
later), and everything that goes with them: contacts (about 0.5 per lead, B2B),
clients for the leads that converted, the status history in ``crm_history``
that ``lead_status_periods`` reads, and the activities of the leads reps worked
(:mod:`aicrm.sample._crm_activities`: more of them, and more recent, on the leads that
go on to convert). The model (docs/synthetic-data.md):

* every lead has features in JSONB ``attributes``: ``industry``, ``employees``,
  ``company_size``, ``region``, ``country``, ``budget`` (absent when unknown),
  ``channel_touches``, ``demo_requested``, ``monthly_visits`` (a number on half the
  leads, text with thousands separators such as ``"1,200"`` on the others), for
  paid or social sources ``utm_campaign``, and ``purchase_timeline`` on the leads that
  answered the web-to-lead form's "When do you plan to buy?" (:data:`FORM_ANSWERED`:
  web, ads and LinkedIn leads, about 39 % of all; absent for the sources without a
  form and for those who skipped it); its ``source`` is one of :data:`SOURCES`;
* its **true probability of converting within 90 days** is a logistic function of
  those features plus a per-lead "intent" (N(0, :data:`INTENT_SD`) in log-odds). The
  form answer shows part of it, as real lead forms do: the answer is drawn first, and
  the intent is its effect (:data:`PURCHASE_TIMELINE`, mean 0) plus a hidden part,
  N(0, :data:`ANSWER_SD` ≈ 0.40) for a lead that answered, N(0, 0.60) for one that did
  not (the same total variance either way). The function has
  what real data has: a non-monotone effect (company size peaks in the middle), an
  interaction (a demo counts more at 200+ employees), rare categories with strong
  effects (two industries under 1 % of leads), and drift (ads leads convert better
  over the two years). It is stored in
  ``sample_truth(lead_id, p_convert_90d, p_columns_90d)``, a table of its own that a
  model under evaluation must not read; ``p_columns_90d`` is the best probability the
  columns alone give (the hidden part of the intent integrated out, with that lead's
  own sd): the ceiling of any model;
* the outcome is drawn from that probability. A converting lead goes new →
  contacted → qualified → converted within 90 days; the others stall, or end
  unqualified or lost, on their own clocks. Each lead's path is then cut at
  ``now``: what lies after it has not happened yet, so recent leads are still open.

Conversions are written as the application writes them (a client per converted
lead, named and filled as :mod:`aicrm.crm.conversion` does; the lead's
``converted_to_client_id``, ``conversion_date``, ``is_converted`` and status
``converted``; its contacts moved to the client), but dated in the past.

**History.** The database's history triggers would record every generated row as
inserted *now*, in its final state, which would make ``lead_status_periods``
wrong. The generator records the truth instead: one ``update`` row per status
change at the moment it happened (``{"status": [old, new]}``, plus the
conversion columns for a conversion; ``{"lead_id": …, "client_id": …}`` for a
contact moved to its client), actor ``generator``. Generated rows have no
``insert`` rows: they count as older than the history, which the view handles.
To keep the triggers out, the bulk inserts run with ``session_replication_role
= replica`` for the transaction when the role may set it (a superuser, or
``GRANT SET`` on 15+); otherwise the triggers fire and their rows for the
generated records (operation ``insert``, this transaction's timestamp) are
deleted before the commit. Both ways give the same data.

**Determinism.** Every random number is a hash of (seed, row number, stream):
``hashint8extended``, which does not depend on plan, row order or parallelism.
The same seed and ``now`` give the same rows, ids included (md5 of the seed and
the row number; only ``crm_history.id`` follows the database's own sequence). All
statements are set-based (``generate_series``, ``INSERT … SELECT``), a fixed
handful whatever the size, in one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from aicrm.db.errors import translated
from aicrm.errors import PrerequisiteFailed, UsageError
from aicrm.sample._crm_activities import (
    ANALYZE_ACTIVITIES,
    DROP_ACTIVITIES,
    HAS_ACTIVITIES,
    INSERT_ACTIVITIES,
    RATES,
    STAGE_ACTIVITIES,
)
from aicrm.sample._crm_sql import (
    ANALYZE,
    CURRENT_SETTING,
    DELETE_TRIGGER_HISTORY,
    DROP_RANDOM,
    DROP_STAGING,
    EXISTING_ROWS,
    FIND_REPEATED_EMAILS,
    INSERT_CLIENTS,
    INSERT_CONTACTS,
    INSERT_HISTORY,
    INSERT_LEADS,
    INSERT_TRUTH,
    RANDOM_FUNCTION,
    RENAME_CONTACT_EMAILS,
    RENAME_LEAD_EMAILS,
    REPLICATION_ROLE,
    SCHEMA_SHAPE,
    SEED_TAKEN,
    SERVER_NOW,
    SET_LOCAL,
    SET_REPLICATION_ROLE,
    STAGE_BASE,
    STAGE_CONTACTS,
    STAGE_LEADS,
    SUMMARY,
    TRUTH_COLUMNS,
    TRUTH_COMMENT,
    TRUTH_TABLE,
)

ACTOR = "generator"
MAX_LEADS = 10_000_000
MAX_SEED = 2**40
HistoryMethod = Literal["replica", "cleanup"]

# Sources: (name, share of leads, effect on the log-odds of converting, chance of a
# demo request, mean channel touches).
SOURCES: tuple[tuple[str, float, float, float, float], ...] = (
    ("web", 0.28, -0.30, 0.22, 3.0),
    ("referral", 0.11, 1.00, 0.35, 3.5),
    ("event", 0.10, 0.30, 0.30, 4.0),
    ("partner", 0.09, 0.60, 0.28, 4.0),
    ("ads", 0.17, -0.80, 0.12, 2.0),
    ("linkedin", 0.12, -0.20, 0.18, 3.0),
    ("cold_call", 0.13, -1.20, 0.08, 5.0),
)
# Industries: (name, share, effect, company-name endings separated by |).
INDUSTRIES: tuple[tuple[str, float, float, str], ...] = (
    ("software", 0.20, 0.40, "Software|Labs|Technologies|Systems|AI"),
    ("finance", 0.11, 0.20, "Capital|Financial|Partners|Bank"),
    ("healthcare", 0.12, 0.00, "Health|Medical|Clinics|Care"),
    ("manufacturing", 0.14, -0.10, "Manufacturing|Industries|Components|Works"),
    ("retail", 0.12, -0.30, "Retail|Stores|Goods|Market"),
    ("logistics", 0.08, 0.00, "Logistics|Freight|Transport"),
    ("education", 0.07, -0.50, "Academy|Learning|Education"),
    ("energy", 0.06, 0.10, "Energy|Power|Renewables"),
    ("media", 0.05, -0.20, "Media|Studios|Publishing"),
    ("public_sector", 0.05, -0.60, "Agency|Authority|Services"),
    # rare industries with strong effects: a top-N cut would drop them into "(other)"
    ("biotech", 0.006, 1.40, "Bio|Therapeutics|Genomics"),
    ("defense", 0.005, -1.50, "Defense|Aerospace"),
)
# Countries: (code, share, region, top-level domain); regions: (name, effect).
COUNTRIES: tuple[tuple[str, float, str, str], ...] = (
    ("US", 0.31, "NA", "com"), ("CA", 0.05, "NA", "ca"),
    ("GB", 0.09, "EMEA", "co.uk"), ("DE", 0.09, "EMEA", "de"), ("FR", 0.06, "EMEA", "fr"),
    ("NL", 0.04, "EMEA", "nl"), ("SE", 0.03, "EMEA", "se"), ("ES", 0.03, "EMEA", "es"),
    ("IT", 0.02, "EMEA", "it"), ("IN", 0.06, "APAC", "in"), ("JP", 0.05, "APAC", "jp"),
    ("AU", 0.04, "APAC", "com.au"), ("SG", 0.02, "APAC", "sg"),
    ("BR", 0.07, "LATAM", "com.br"), ("MX", 0.04, "LATAM", "mx"),
)  # fmt: skip
REGIONS: dict[str, float] = {"NA": 0.10, "EMEA": 0.00, "APAC": -0.10, "LATAM": -0.30}

INTERCEPT = -2.15
"""Log-odds of a baseline lead; gives about 15 % conversions within 90 days."""
DEMO_EFFECT = 0.90
TOUCH_EFFECT = 0.35  # per log(1 + channel touches)
UNKNOWN_BUDGET_EFFECT = -0.25
BUDGET_EFFECT = 0.50  # per decade of budget above 10^4.5
INTENT_SD = 0.60  # the per-lead intent, in log-odds (hidden unless the form shows part of it)
# A demo requested by a company of 200+ employees adds this on top of DEMO_EFFECT.
DEMO_LARGE_EFFECT = 0.60
# The custom attribute ``monthly_visits`` (a log-normal count, written as text with
# thousands separators on about half the leads, "1,200", as exports from other tools
# do): per unit of ln(1 + visits) above 5.
VISITS_EFFECT = 0.30
# Drift: ads leads convert better over time, by this much from the oldest lead to the
# newest (linear in the lead's creation within the history).
ADS_DRIFT = 0.60
# The web-to-lead form's question "When do you plan to buy?", the custom attribute
# ``purchase_timeline``. Only the sources with a form ask it: the share of their leads
# that answer (the question is optional; the others skip it). Referrals, events,
# partners and cold calls come without a form: never answered.
FORM_ANSWERED: dict[str, float] = {"web": 0.70, "ads": 0.60, "linkedin": 0.75}
# The answers: (value, share of the answers, its part of the intent in log-odds). The
# shares' mean effect is 0, so the intent keeps mean 0; the answers are drawn
# independently of every other column (the intent is), and a skipped question tells
# nothing. "This quarter" against "just researching": odds x3.2, a stated timeline
# being cheap to give and often optimistic.
PURCHASE_TIMELINE: tuple[tuple[str, float, float], ...] = (
    ("this quarter", 0.20, 0.75),
    ("this year", 0.25, 0.20),
    ("next year", 0.20, -0.30),
    ("just researching", 0.35, -0.40),
)
_TIMELINE_MEAN = sum(share * effect for _, share, effect in PURCHASE_TIMELINE)
_TIMELINE_VAR = sum(share * effect**2 for _, share, effect in PURCHASE_TIMELINE) - _TIMELINE_MEAN**2
ANSWER_SD = (INTENT_SD**2 - _TIMELINE_VAR) ** 0.5
"""The sd of the intent the answer does not show: the answer's effect plus N(0, ANSWER_SD)
has the same variance as the intent of a lead without an answer (INTENT_SD²); the answer
shows about 55 % of it (0.1965 of 0.36), ANSWER_SD ≈ 0.404 stays hidden."""
WINDOW_DAYS = 90
HISTORY_DAYS = 730

WORDS: dict[str, str] = {
    "first_names": (
        "Ada, Aiko, Alan, Amara, Amir, Ana, Anders, Anika, Ben, Bruno, Carla, Chen, Chloe, "
        "Dara, David, Diego, Elena, Emeka, Emma, Eva, Farid, Fatima, Felix, Grace, Hana, "
        "Hugo, Ines, Ivan, Jana, Javier, Jonas, Julia, Kai, Kenji, Laura, Leila, Liam, Lucas, "
        "Luis, Maya, Mei, Mila, Nadia, Nina, Noah, Olga, Omar, Oscar, Paula, Pedro, Priya, "
        "Rafael, Ravi, Rosa, Ruth, Sam, Sara, Sofia, Tariq, Theo, Tom, Uma, Victor, Wei, "
        "Yara, Yuki, Zara, Zoe"
    ),
    "last_names": (
        "Abe, Adeyemi, Alvarez, Berg, Brown, Chen, Costa, Dubois, Eriksen, Fischer, Garcia, "
        "Gupta, Haddad, Hansen, Ito, Jensen, Kim, Khan, Kowalski, Larsen, Lopez, Martin, "
        "Meyer, Moreau, Muller, Nakamura, Nguyen, Novak, Okafor, Olsen, Park, Patel, Perez, "
        "Petrov, Quinn, Rossi, Santos, Schmidt, Silva, Singh, Smith, Suzuki, Tanaka, Taylor, "
        "Ueda, Vargas, Wang, Weber, Wilson, Xu, Yilmaz, Young, Zhang"
    ),
    "prefixes": (
        "Blue, North, Silver, Bright, Iron, Green, Red, Clear, Swift, Deep, Star, Sun, Oak, "
        "Pine, Stone, Cloud, Quant, Nova, Terra, Vita, Aero, Hydro, Opti, Alpha, Cedar, "
        "Delta, Echo, Falcon, Harbor, Lumen, Maple, Orbit, Summit, Vertex, Zenith"
    ),
    "suffixes": (
        "peak, wind, field, stone, bridge, gate, path, line, point, loop, core, wave, forge, "
        "leaf, ridge, brook, crest, light, mark, scape, spring, view, way, works"
    ),
    "free_domains": "gmail.com, outlook.com, yahoo.com, proton.me, icloud.com",
    "titles": (
        "CEO, CTO, CFO, COO, VP Sales, Head of IT, Head of Operations, Procurement Manager, "
        "Operations Manager, IT Manager, Engineer, Product Manager, Buyer, Marketing Lead, "
        "Office Manager, Finance Manager, Founder, Analyst"
    ),
    "campaigns": (
        "spring_webinar, retargeting, free_trial, whitepaper, brand_search, competitor_search, "
        "newsletter, case_study"
    ),
}

SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
SIZE_BOUNDS = (11, 51, 201, 1001, 5001)

# Settings for the generator's transaction; the caller's are put back at the end (an
# outer transaction would otherwise keep them).
SETTINGS = {"TimeZone": "UTC", "work_mem": "128MB", "aicrm.actor": ACTOR}


@dataclass(frozen=True)
class GeneratedCRM:
    """What :func:`generate` added: rows per table, leads per status, and how."""

    seed: int
    now: datetime
    leads: int
    clients: int
    contacts: int
    history_rows: int
    truth_rows: int
    statuses: dict[str, int] = field(default_factory=dict)
    activities: int = 0  # calls, emails, meetings, notes, tasks (migration 012 on)
    history_method: HistoryMethod = "replica"
    seconds: float = 0.0

    @property
    def converted(self) -> int:
        """Leads that converted (one client each)."""
        return self.clients

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "now": self.now.isoformat(),
            "leads": self.leads,
            "clients": self.clients,
            "converted": self.converted,
            "contacts": self.contacts,
            "history_rows": self.history_rows,
            "truth_rows": self.truth_rows,
            "statuses": dict(self.statuses),
            "activities": self.activities,
            "history_method": self.history_method,
            "seconds": round(self.seconds, 3),
        }


def default_now() -> datetime:
    """Midnight UTC today: the default end of the generated history, so the same seed
    gives the same data all day."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def generate(
    conn: psycopg.Connection[Any],
    *,
    leads: int,
    seed: int = 1,
    now: datetime | None = None,
    history_method: HistoryMethod | None = None,
) -> GeneratedCRM:
    """Add ``leads`` generated leads, their contacts, clients and history, in one
    transaction, to a database at the newest schema; return what was added.

    The generated history ends at ``now`` (default: :func:`default_now`; a naive
    datetime is taken as UTC). The database may already hold data: the new rows are
    added to it (emails that exist get a suffix). ``history_method`` forces how the
    history triggers are kept out (``replica`` or ``cleanup``; by default
    ``replica`` when the role may set it).

    Raises :class:`UsageError` when the database is not at the newest schema, when
    ``leads`` or ``seed`` is out of range, when ``now`` lies in the server's future,
    or when this seed's leads exist already.
    """
    if not 1 <= leads <= MAX_LEADS:
        raise UsageError(f"Cannot generate {leads:,} leads; ask for 1 to {MAX_LEADS:,}.")
    if not 0 <= seed < MAX_SEED:
        raise UsageError(f"The seed must be between 0 and {MAX_SEED - 1}, not {seed}.")
    moment = now or default_now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    tag = f"aicrm-crm/{seed}"
    started = time.monotonic()
    with conn.transaction():
        _check(conn, tag, moment)
        saved = {name: _setting(conn, name) for name in SETTINGS}
        for name, value in SETTINGS.items():
            conn.execute(SET_LOCAL, (name, value))
        conn.execute(RANDOM_FUNCTION.format(seed=sql.Literal(seed * 1000)))
        conn.execute(TRUTH_TABLE)
        conn.execute(TRUTH_COLUMNS)
        conn.execute(TRUTH_COMMENT)
        params = _parameters(leads, tag, moment)
        for statement in (STAGE_BASE, STAGE_LEADS, STAGE_CONTACTS, FIND_REPEATED_EMAILS):
            conn.execute(statement, params)
        conn.execute(RENAME_LEAD_EMAILS)
        conn.execute(RENAME_CONTACT_EMAILS)
        method, previous_role = _quiet_history(conn, history_method)
        conn.execute(INSERT_CLIENTS)
        conn.execute(INSERT_LEADS)
        conn.execute(INSERT_CONTACTS)
        activities = _activities(conn, params)
        history = conn.execute(INSERT_HISTORY, params).rowcount
        truth = conn.execute(INSERT_TRUTH).rowcount
        if previous_role is not None:
            conn.execute(SET_REPLICATION_ROLE, (previous_role,))
        else:
            conn.execute(DELETE_TRIGGER_HISTORY, params)
        conn.execute(ANALYZE)
        row = conn.execute(SUMMARY).fetchone()
        conn.execute(DROP_STAGING)
        conn.execute(DROP_RANDOM)
        for name, value in saved.items():
            conn.execute(SET_LOCAL, (name, value))
    assert row is not None
    return GeneratedCRM(
        seed=seed, now=moment, leads=int(row[0]), clients=int(row[1]), contacts=int(row[2]),
        history_rows=history, truth_rows=truth, statuses=dict(row[3] or {}), activities=activities,
        history_method=method, seconds=time.monotonic() - started,
    )  # fmt: skip


def _activities(conn: psycopg.Connection[Any], params: dict[str, Any]) -> int:
    """Write the leads' activities (:mod:`aicrm.sample._crm_activities`) when the
    database has the table; how many."""
    row = conn.execute(HAS_ACTIVITIES).fetchone()
    if not (row and row[0]):
        return 0
    conn.execute(STAGE_ACTIVITIES, params)
    written = conn.execute(INSERT_ACTIVITIES, params).rowcount
    conn.execute(DROP_ACTIVITIES)
    conn.execute(ANALYZE_ACTIVITIES)
    return written


def existing_rows(conn: psycopg.Connection[Any]) -> int:
    """How many leads, clients and contacts the database holds; :class:`UsageError`
    when it is not at the newest schema."""
    with conn.transaction():
        _check_schema(conn)
        row = conn.execute(EXISTING_ROWS).fetchone()
    return int(row[0]) if row else 0


def _check_schema(conn: psycopg.Connection[Any]) -> None:
    shape = conn.execute(SCHEMA_SHAPE).fetchone()
    if not (shape and shape[0]):
        raise UsageError(
            "The database is not at the newest schema (no crm_history, lead_status_periods "
            "or leads.converted_to_client_id). Run 'aicrm db migrate' first."
        )


def _check(conn: psycopg.Connection[Any], tag: str, moment: datetime) -> None:
    _check_schema(conn)
    taken = conn.execute(SEED_TAKEN, (tag,)).fetchone()
    if taken and taken[0]:
        raise UsageError(
            f"Leads generated with seed {tag.rsplit('/', 1)[1]} are in the database already; "
            "add more with another seed."
        )
    server_now = conn.execute(SERVER_NOW).fetchone()
    assert server_now is not None
    if (moment - server_now[0]).total_seconds() > 300:
        raise UsageError(
            f"'now' ({moment.isoformat()}) lies in the future of the database server's clock "
            f"({server_now[0].isoformat()}); generate a history that ends in the past."
        )


def _setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(CURRENT_SETTING, (name,)).fetchone()
    return str(row[0]) if row else ""


def _quiet_history(
    conn: psycopg.Connection[Any], forced: HistoryMethod | None
) -> tuple[HistoryMethod, str | None]:
    """Replica mode for this transaction when allowed (returns the role to restore),
    else ``cleanup`` (the triggers' rows are deleted afterwards)."""
    if forced == "cleanup":
        return "cleanup", None
    row = conn.execute(REPLICATION_ROLE).fetchone()
    previous = str(row[0]) if row else "origin"
    try:
        with translated(), conn.transaction():
            conn.execute(SET_REPLICATION_ROLE, ("replica",))
    except PrerequisiteFailed:  # the database's "permission denied", translated
        if forced == "replica":
            raise UsageError(
                "This role may not set session_replication_role (superusers may); "
                "generate with the cleanup method instead."
            ) from None
        return "cleanup", None
    return "replica", previous


def _cumulative(weights: list[float]) -> list[float]:
    """Thresholds for ``width_bucket``: the running sums but the last."""
    total = sum(weights)
    running, out = 0.0, []
    for weight in weights[:-1]:
        running += weight / total
        out.append(running)
    return out


def _parameters(leads: int, tag: str, moment: datetime) -> dict[str, Any]:
    words = {name: [w.strip() for w in text.split(",")] for name, text in WORDS.items()}
    return {
        "leads": leads,
        "tag": tag,
        "now": moment,
        "actor": ACTOR,
        "history_days": HISTORY_DAYS,
        "window": WINDOW_DAYS,
        "src_names": [s[0] for s in SOURCES],
        "src_cum": _cumulative([s[1] for s in SOURCES]),
        "src_eff": [s[2] for s in SOURCES],
        "src_demo": [s[3] for s in SOURCES],
        "src_touch": [s[4] for s in SOURCES],
        "ind_names": [i[0] for i in INDUSTRIES],
        "ind_cum": _cumulative([i[1] for i in INDUSTRIES]),
        "ind_eff": [i[2] for i in INDUSTRIES],
        "ind_kinds": [i[3] for i in INDUSTRIES],
        "ctry_names": [c[0] for c in COUNTRIES],
        "ctry_cum": _cumulative([c[1] for c in COUNTRIES]),
        "ctry_region": [c[2] for c in COUNTRIES],
        "ctry_tld": [c[3] for c in COUNTRIES],
        "ctry_eff": [REGIONS[c[2]] for c in COUNTRIES],
        "sizes": list(SIZES),
        "size_bounds": list(SIZE_BOUNDS),
        "intercept": INTERCEPT,
        "unknown_budget": UNKNOWN_BUDGET_EFFECT,
        "budget_effect": BUDGET_EFFECT,
        "demo_effect": DEMO_EFFECT,
        "touch_effect": TOUCH_EFFECT,
        "demo_large": DEMO_LARGE_EFFECT,
        "visits_effect": VISITS_EFFECT,
        "ads_drift": ADS_DRIFT,
        "intent_sd": INTENT_SD,
        "answer_sd": ANSWER_SD,
        "src_form": [FORM_ANSWERED.get(s[0], 0.0) for s in SOURCES],
        "tl_names": [t[0] for t in PURCHASE_TIMELINE],
        "tl_cum": _cumulative([t[1] for t in PURCHASE_TIMELINE]),
        "tl_eff": [t[2] for t in PURCHASE_TIMELINE],
        "act_kinds": [r[0] for r in RATES],
        "act_streams": [r[1] for r in RATES],
        "act_yes": [r[2] for r in RATES],
        "act_no": [r[3] for r in RATES],
        **words,
    }
