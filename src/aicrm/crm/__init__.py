"""The CRM domain: leads, clients, contacts, conversion, merge, history.

Functions take a psycopg connection; writes that span several statements run in
their own transaction (``session.transaction``) so they are all-or-nothing.
"""

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

__all__ = [
    "BulkResult",
    "Client",
    "Contact",
    "Conversion",
    "Lead",
    "Merge",
    "Page",
    "Query",
    "Status",
    "add_status",
    "convert_lead",
    "convert_leads",
    "create_client",
    "create_contact",
    "create_lead",
    "delete_client",
    "delete_contact",
    "delete_lead",
    "get_client",
    "get_contact",
    "get_lead",
    "list_clients",
    "list_contacts",
    "list_leads",
    "list_statuses",
    "merge_leads",
    "remove_status",
    "transaction",
    "update_client",
    "update_contact",
    "update_lead",
]
