-- Target schema of the real-client tests (tests/node): the chat example's schema
-- (examples/chat/schema.sql, copied verbatim below; keep the two in step) plus an enum, a domain
-- and a small table that uses them, so that enums and domains can be round-tripped through POST /sql.
-- The Rust harness provisions the test tenants with this file.

-- pgfleet example: a multi-tenant AI chat app. Every tenant (one user or one organisation) gets this
-- schema in a database (or schema) of its own. pgfleet brings every tenant to it and keeps it there.
--
-- Embeddings are 384-dimensional (the size of all-MiniLM-L6-v2 and similar sentence models) and are
-- searched by cosine distance through pgvector HNSW indexes.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TYPE message_role AS ENUM ('system', 'user', 'assistant', 'tool');

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id   text NOT NULL UNIQUE,            -- the application's user id
    email         text NOT NULL,
    display_name  text,
    settings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE chat_threads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       text NOT NULL DEFAULT 'New chat',
    model       text NOT NULL DEFAULT 'default',
    archived    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_threads_user_recent_idx ON chat_threads (user_id, updated_at DESC) WHERE NOT archived;

CREATE TABLE chat_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id    uuid NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    role         message_role NOT NULL,
    content      text NOT NULL,
    token_count  integer CHECK (token_count >= 0),
    embedding    vector(384),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_thread_idx ON chat_messages (thread_id, created_at);
CREATE INDEX chat_messages_embedding_idx ON chat_messages
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE documents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    thread_id   uuid REFERENCES chat_threads (id) ON DELETE SET NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding   vector(384) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_user_idx ON documents (user_id);
CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX documents_embedding_idx ON documents
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- What pgfleet (or a person) repaired in this tenant's schema at run time, and why.
CREATE TABLE schema_corrections (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    object_kind  text NOT NULL CHECK (object_kind IN ('table', 'column', 'index', 'constraint', 'extension', 'type')),
    object_name  text NOT NULL,
    action       text NOT NULL,
    reason       text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    applied_by   text NOT NULL DEFAULT current_user
);
CREATE INDEX schema_corrections_recent_idx ON schema_corrections (occurred_at DESC);

COMMENT ON TABLE chat_threads IS 'One conversation of a user with the assistant.';
COMMENT ON TABLE documents IS 'User documents with their embeddings, for retrieval-augmented answers.';
COMMENT ON TABLE schema_corrections IS 'Audit log of run-time schema repairs.';

-- ---------------------------------------------------------------------------------------------
-- Test-only additions: an enum, a domain over integer with a CHECK, and a table using both.
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);

CREATE TABLE type_samples (
    id  bigserial PRIMARY KEY,
    m   mood,
    p   positive_int
);
