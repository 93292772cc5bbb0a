-- The target model of each version, per PostgreSQL major version (catalog definitions print
-- slightly differently across majors), so processes need no shadow database once one has built it.
CREATE TABLE pgfleet.target_models (
    version     text NOT NULL REFERENCES pgfleet.targets ON DELETE CASCADE,
    pg_major    integer NOT NULL,
    model       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, pg_major)
);
