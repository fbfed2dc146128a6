-- Closing the compatibility window of version 000 (aicrm db compat close). The engine
-- has checked that nothing outside the schema uses it; RESTRICT makes PostgreSQL
-- refuse if something started to meanwhile. Design: docs/compat-window.md.

-- step: drop the compatibility views and their functions
DROP VIEW aicrm_compat_000.contacts, aicrm_compat_000.clients, aicrm_compat_000.leads;
DROP FUNCTION aicrm_compat_000.leads_write(), aicrm_compat_000.clients_write(),
    aicrm_compat_000.contacts_write(), aicrm_compat_000.convert_lead(uuid, uuid);
DROP VIEW aicrm_compat_000_definer.contacts, aicrm_compat_000_definer.clients,
    aicrm_compat_000_definer.leads;
DROP SCHEMA aicrm_compat_000_definer;
DROP SCHEMA aicrm_compat_000;
