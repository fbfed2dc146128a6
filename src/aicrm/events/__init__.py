"""The event stream and webhooks (docs/events-and-webhooks.md).

Events are written by the database, in the transaction of each change (migration
013's triggers on leads, clients, contacts, activities and lead merges, into ``crm_events``);
the delivery worker fans them out into deliveries (:mod:`~aicrm.events._fanout`,
migration 015); this package manages the subscriptions (:mod:`~aicrm.events.subscriptions`), signs
the requests (:mod:`~aicrm.events._signing`), delivers them
(:mod:`~aicrm.events.worker`, over :mod:`~aicrm.events._client`) and prunes what is
old (:mod:`~aicrm.events.retention`).
"""

from aicrm.events._client import DeliveryFailed, Poster
from aicrm.events._fanout import fan_out
from aicrm.events._signing import HEADER, new_secret, sign, verify
from aicrm.events.retention import Pruned, prune
from aicrm.events.subscriptions import (
    EVENT_TYPES,
    NewSubscription,
    Subscription,
    add_subscription,
    list_subscriptions,
    parse_events,
    remove_subscription,
    replay,
)
from aicrm.events.worker import Settings, Worker

__all__ = [
    "EVENT_TYPES",
    "HEADER",
    "DeliveryFailed",
    "NewSubscription",
    "Poster",
    "Pruned",
    "Settings",
    "Subscription",
    "Worker",
    "add_subscription",
    "fan_out",
    "list_subscriptions",
    "new_secret",
    "parse_events",
    "prune",
    "remove_subscription",
    "replay",
    "sign",
    "verify",
]
