-- Migration 003: API keys for the REST API and the MCP server.
-- Keys are random 256-bit tokens shown once; only their SHA-256 is stored (a fast
-- hash suffices for high-entropy secrets; nothing here can be guessed offline).

-- step: the api_keys table
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    prefix text NOT NULL UNIQUE,
    key_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NULL,
    revoked_at timestamptz NULL
);
