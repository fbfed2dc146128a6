"""Webhook subscriptions: add, list, remove, and replay events to them.

A subscription is a URL, the event types it wants (``lead.converted``, ``lead.*`` for
every event of a kind, ``*`` for all) and the secret its requests are signed with.
The secret is generated (or given) once, returned by :func:`add_subscription` and
never again: :func:`list_subscriptions` does not read it. The database keeps the
event types honest (CHECK on the table); the checks here give friendlier messages.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, NotFound, UsageError
from aicrm.events._fanout import fan_out

KINDS = ("lead", "client", "contact", "activity")
ACTIONS: dict[str, tuple[str, ...]] = {
    "lead": ("created", "updated", "deleted", "converted", "merged"),
    "client": ("created", "updated", "deleted"),
    "contact": ("created", "updated", "deleted"),
    "activity": ("created", "updated", "deleted"),
}
EVENT_TYPES = tuple(f"{k}.{a}" for k in KINDS for a in ACTIONS[k])
PATTERNS = frozenset({*EVENT_TYPES, *(f"{k}.*" for k in KINDS), "*"})
SECRET = re.compile(r"^[\x21-\x7e]{16,200}$")

INSERT = """
INSERT INTO webhook_subscriptions (url, events, secret) VALUES (%s, %s, %s)
RETURNING id, created_at
"""
LIST = """
SELECT s.id, s.url, s.events, s.active, s.created_at,
       count(*) FILTER (WHERE d.state = 'pending'),
       count(*) FILTER (WHERE d.state = 'delivered'),
       count(*) FILTER (WHERE d.state = 'dead'),
       max(d.delivered_at),
       (array_agg(d.last_error ORDER BY d.updated_at DESC)
            FILTER (WHERE d.last_error IS NOT NULL))[1]
FROM webhook_subscriptions s
LEFT JOIN webhook_deliveries d ON d.subscription_id = s.id
GROUP BY s.id ORDER BY s.id
"""
DELETE = "DELETE FROM webhook_subscriptions WHERE id = %s"
EXISTS = "SELECT 1 FROM webhook_subscriptions WHERE id = %s"
EVENT_BY_UUID = "SELECT id FROM crm_events WHERE event_id = %s"
# Replay: every chosen event that each (chosen) subscription wants becomes pending
# again, due now, with its attempts reset: delivered and dead ones, and events from
# before the subscription existed. In event order, so per-record order holds.
REPLAY = """
INSERT INTO webhook_deliveries AS d (subscription_id, event_id, record_id)
SELECT s.id, e.id, e.record_id
FROM crm_events e
JOIN webhook_subscriptions s
  ON s.active AND (e.type = ANY (s.events) OR '*' = ANY (s.events)
                   OR e.record_kind || '.*' = ANY (s.events))
WHERE (%(event)s::bigint IS NULL OR e.id = %(event)s)
  AND (%(since)s::timestamptz IS NULL OR e.occurred_at >= %(since)s)
  AND (%(subscription)s::bigint IS NULL OR s.id = %(subscription)s)
ORDER BY e.id
ON CONFLICT (subscription_id, event_id) DO UPDATE
SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
    delivered_at = NULL, updated_at = now()
"""
NOTIFY = "SELECT pg_notify('aicrm_events', '')"


@dataclass(frozen=True)
class Subscription:
    """A subscription as listed: never its secret. The counts are its deliveries."""

    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    dead: int = 0
    last_delivered_at: datetime | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "url": shown_url(self.url),
            "events": self.events,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "pending": self.pending,
            "delivered": self.delivered,
            "dead": self.dead,
            "last_delivered_at": self.last_delivered_at.isoformat()
            if self.last_delivered_at
            else None,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class NewSubscription:
    """What :func:`add_subscription` returns: the only time the secret is shown."""

    subscription: Subscription
    secret: str = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return {**self.subscription.to_dict(), "secret": self.secret}


def parse_events(text: str | list[str]) -> list[str]:
    """Event types from ``lead.converted,client.*`` (or a list), each checked against
    :data:`PATTERNS`; raises :class:`InvalidInput` naming an unknown one."""
    items = text.split(",") if isinstance(text, str) else text
    found = [item.strip() for item in items if item.strip()]
    if not found:
        raise InvalidInput("Name at least one event type, e.g. --events lead.converted.")
    unknown = [e for e in found if e not in PATTERNS]
    if unknown:
        raise InvalidInput(
            f"'{unknown[0]}' is not an event type. Use one of {', '.join(EVENT_TYPES)}, "
            "KIND.* (e.g. lead.*) or *."
        )
    return list(dict.fromkeys(found))


def shown_url(url: str) -> str:
    """``url`` as aicrm shows it: a password in it and the values of its query string
    (where receivers often take a token) are replaced by ``***``; the stored URL, which
    the worker posts to, keeps them."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    except ValueError:
        return "(a URL that cannot be read)"
    return urlunsplit((parts.scheme, netloc, parts.path, query.replace("%2A", "*"), ""))


def check_url(url: str) -> str:
    """An http(s) URL with a host; raises :class:`InvalidInput` otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidInput(
            f"'{shown_url(url)}' is not an http:// or https:// URL with a host; give the "
            "receiver's full URL."
        )
    return url.strip()


@translated()
def add_subscription(
    conn: Connection, url: str, events: str | list[str], secret: str | None = None
) -> NewSubscription:
    """Subscribe ``url`` to ``events`` with ``secret`` (default: a new one from
    :func:`aicrm.events._signing.new_secret`). Raises :class:`InvalidInput` for a bad
    URL, event type or secret (16 to 200 printable characters, no spaces)."""
    from aicrm.events._signing import new_secret

    target = check_url(url)
    wanted = parse_events(events)
    key = new_secret() if secret is None else secret
    if not SECRET.match(key):
        raise InvalidInput(
            "A webhook secret is 16 to 200 printable characters without spaces; give another, "
            "or leave it out to have one generated."
        )
    with conn.transaction():
        row = conn.execute(INSERT, (target, wanted, key)).fetchone()
    assert row is not None
    return NewSubscription(Subscription(row[0], target, wanted, True, row[1]), key)


@translated()
def list_subscriptions(conn: Connection) -> list[Subscription]:
    """Every subscription with its delivery counts, by id (without secrets). What was
    committed since the worker's last fan-out is fanned out first, so that the pending
    counts include it (unless a worker is fanning out at this very moment)."""
    fan_out(conn)
    with conn.transaction():
        rows = conn.execute(LIST).fetchall()
    return [Subscription(*row) for row in rows]


@translated()
def remove_subscription(conn: Connection, subscription_id: int) -> None:
    """Delete a subscription and its deliveries; :class:`NotFound` if there is none."""
    with conn.transaction():
        if conn.execute(DELETE, (subscription_id,)).rowcount == 0:
            raise NotFound(
                f"No webhook subscription has id {subscription_id}; see 'aicrm webhooks list'."
            )


@translated()
def replay(
    conn: Connection,
    *,
    event_id: str | uuid.UUID | None = None,
    since: datetime | None = None,
    subscription_id: int | None = None,
) -> int:
    """Deliver again: one event (by its id) or every event since a moment, to every
    subscription that wants it (or to ``subscription_id``), whatever its state
    (delivered, dead) and whether or not it was ever delivered. Returns the number of
    deliveries made pending; wakes the worker. Raises :class:`UsageError` unless
    exactly one of ``event_id`` and ``since`` is given, :class:`NotFound` for an
    unknown event or subscription."""
    if (event_id is None) == (since is None):
        raise UsageError("Replay one event (--event ID) or every event since a time (--since).")
    with conn.transaction():
        if subscription_id is not None and not conn.execute(EXISTS, (subscription_id,)).fetchone():
            raise NotFound(
                f"No webhook subscription has id {subscription_id}; see 'aicrm webhooks list'."
            )
        number = None
        if event_id is not None:
            try:
                key = uuid.UUID(str(event_id))
            except ValueError:
                raise InvalidInput(f"'{event_id}' is not an event id (a UUID).") from None
            row = conn.execute(EVENT_BY_UUID, (key,)).fetchone()
            if row is None:
                raise NotFound(f"No event has id {key}.")
            number = row[0]
        params = {"event": number, "since": since, "subscription": subscription_id}
        count = conn.execute(REPLAY, params).rowcount
        if count:
            conn.execute(NOTIFY)
    return count


__all__ = [
    "EVENT_TYPES",
    "PATTERNS",
    "NewSubscription",
    "Subscription",
    "add_subscription",
    "check_url",
    "list_subscriptions",
    "parse_events",
    "remove_subscription",
    "replay",
    "shown_url",
]
