-- API tokens (`pgfleet token create NAME --scope sql|read|admin`). Only a SHA-256 digest of each
-- token is kept: the token itself is printed once and never stored. Revoked tokens stay as rows
-- (their name is not reused), so events that name a token keep meaning something.
CREATE TABLE pgfleet.tokens (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    scope        text NOT NULL CHECK (scope IN ('sql', 'read', 'admin')),
    digest       bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT current_user,
    revoked_at   timestamptz
);
