-- Migration 000: the CRM's original schema, exactly as it was first deployed,
-- circular foreign keys included (clients.converted_from_lead_id -> leads.id and
-- leads.client_id -> clients.id). Databases that already hold this schema are
-- recognised by their tables and key columns and recorded as baseline 000.

-- step: create leads
CREATE TABLE leads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id uuid NULL,
    first_name text NULL,
    last_name text NULL,
    email text NULL,
    company_name text NULL,
    source text NULL,
    status text NOT NULL DEFAULT 'new',
    ai_score real NULL,
    ai_summary text NULL,
    ai_annotations jsonb NOT NULL DEFAULT '{}',
    attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- step: create clients
CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    converted_from_lead_id uuid NULL REFERENCES leads (id),
    name text NOT NULL,
    industry text NULL,
    ai_score real NULL,
    ai_summary text NULL,
    ai_annotations jsonb NOT NULL DEFAULT '{}',
    attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- step: close the circle: leads.client_id -> clients
ALTER TABLE leads
    ADD CONSTRAINT leads_client_id_fkey FOREIGN KEY (client_id) REFERENCES clients (id);

-- step: create contacts
CREATE TABLE contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lead_id uuid NULL REFERENCES leads (id),
    client_id uuid NULL REFERENCES clients (id),
    first_name text NULL,
    last_name text NULL,
    email text NULL,
    title text NULL,
    ai_annotations jsonb NOT NULL DEFAULT '{}',
    attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
