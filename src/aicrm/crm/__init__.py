"""The CRM domain: leads, clients, contacts, conversion, merge, history, users (owners),
activities and the timeline.

Functions take a psycopg connection; writes that span several statements run in
their own transaction (``session.transaction``) so they are all-or-nothing.
"""

from aicrm.crm.activities import (
    Activity,
    add_activity,
    complete_task,
    get_activity,
    list_activities,
    open_tasks,
)
from aicrm.crm.clients import (
    create_client,
    delete_client,
    get_client,
    list_clients,
    update_client,
)
from aicrm.crm.contacts import (
    create_contact,
    delete_contact,
    get_contact,
    list_contacts,
    update_contact,
)
from aicrm.crm.conversion import BulkResult, Conversion, convert_lead, convert_leads
from aicrm.crm.leads import create_lead, delete_lead, get_lead, list_leads, update_lead
from aicrm.crm.merge import Merge, merge_leads
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client, Contact, Lead
from aicrm.crm.session import transaction
from aicrm.crm.statuses import Status, add_status, list_statuses, remove_status
from aicrm.crm.store import Query
from aicrm.crm.users import (
    Rule,
    User,
    add_user,
    assign,
    deactivate_user,
    get_user,
    list_rules,
    list_users,
    next_owner,
    remove_rule,
    set_rule,
)

__all__ = [
    "Activity",
    "BulkResult",
    "Client",
    "Contact",
    "Conversion",
    "Lead",
    "Merge",
    "Page",
    "Query",
    "Rule",
    "Status",
    "User",
    "add_activity",
    "add_status",
    "add_user",
    "assign",
    "complete_task",
    "convert_lead",
    "convert_leads",
    "create_client",
    "create_contact",
    "create_lead",
    "deactivate_user",
    "delete_client",
    "delete_contact",
    "delete_lead",
    "get_activity",
    "get_client",
    "get_contact",
    "get_lead",
    "get_user",
    "list_activities",
    "list_clients",
    "list_contacts",
    "list_leads",
    "list_rules",
    "list_statuses",
    "list_users",
    "merge_leads",
    "next_owner",
    "open_tasks",
    "remove_rule",
    "remove_status",
    "set_rule",
    "transaction",
    "update_client",
    "update_contact",
    "update_lead",
]
