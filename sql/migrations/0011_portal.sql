-- The subscriber's web page (portal/): its sessions and its log-in failures live here, so every
-- uvicorn worker (and a restart) sees the same ones. The page never stores a password: a log-in
-- is checked against subscriber.ha1.

-- A session: the cookie holds a random token, the table only its SHA-256, so a copy of the table
-- opens no session. Each session has its own CSRF token, which every form of the page carries.
CREATE TABLE portal_session (
    token_hash text PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    subscriber_id integer NOT NULL REFERENCES subscriber (id) ON DELETE CASCADE,
    csrf_token text NOT NULL CHECK (length(csrf_token) >= 32),
    client text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL              -- idle expiry, pushed on by each request
);
CREATE INDEX portal_session_subscriber_idx ON portal_session (subscriber_id);
CREATE INDEX portal_session_expires_idx ON portal_session (expires_at);

-- Wrong passwords (or unknown extensions), by extension and by client address: the lock-out
-- rules count them over a sliding window.
CREATE TABLE portal_login_failure (
    id bigserial PRIMARY KEY,
    extension text NOT NULL,
    client text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_login_failure_extension_idx ON portal_login_failure (extension, at);
CREATE INDEX portal_login_failure_client_idx ON portal_login_failure (client, at);

-- A lock-out in force: kind 'extension' or 'address', until when.
CREATE TABLE portal_lockout (
    kind text NOT NULL CHECK (kind IN ('extension', 'address')),
    key text NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
