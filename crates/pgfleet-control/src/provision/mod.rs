//! Exactly-once tenant provisioning: a resumable state machine run by workers from the operations
//! queue.
//!
//! `create` inserts the tenant row (the key is unique, so racing callers find the same row) and one
//! `provision` operation (unique idempotency key). Any pgfleet process then claims the operation
//! (with a lease) and, holding a session advisory lock on the tenant in the catalog, runs the
//! [`Step`]s from where the tenant is:
//!
//! | step | does (every step can run again after a crash) |
//! |---|---|
//! | `place` | chooses a server under a placement lock (capacity, weight, drain) |
//! | `role` | seals a random password in the catalog first, then creates (or re-sets) the login role with a SCRAM verifier: the password never reaches the server in clear. Database mode, when the server has a verified spare database of the current target: claims it instead (its role renamed to the tenant's and given the verifier, the database renamed and opened, one transaction, no connection to the database; next step `claimed`) |
//! | `database` | database mode: `CREATE DATABASE` (from the server's template at the target), closed to `PUBLIC`, `CONNECT` for the role, `public` locked down. Schema mode: the server's shared database, then a verified spare schema claimed (next step `claimed`) or `CREATE SCHEMA` owned by the fleet's owner role, `USAGE` for the role only |
//! | `claimed` | a spare was claimed (migrated, granted and verified when it was built): schema mode, the grants, then `ready`; database mode, `ready` |
//! | `migrate` | the target's migrations, as the fleet's owner role (nothing to run for a copy of the template) |
//! | `grant` | DML on the tenant's tables, sequences and functions to the role (never ownership, DDL or `TRIGGER`) |
//! | `verify` | introspects the tenant and diffs it against the target model: the difference must be empty |
//! | `ready` | only now is the tenant handed out |
//!
//! A failing step records its error and is retried with backoff (1 s, 2 s, 4 s, …, configurable)
//! up to `provision_attempts` (5) times; then the tenant is `failed` until `create` is called again.
//!
//! Failpoints for crash tests: `PGFLEET_FAILPOINT=provision:after:<step>` makes the process stop
//! (print `failpoint … reached` and sleep) right after that step is recorded, so a test can `kill -9` it.
//!
//! Modules: [`create`](self) (the tenant row, waiting), `queue` (claiming and running operations,
//! recording failures), `steps` (the state machine), `template` (per-server template databases),
//! `credentials` (the sealed password), `drop`.

mod create;
mod credentials;
mod drop;
mod queue;
mod steps;
mod template;

pub use steps::Step;

pub use create::CreateOptions;
pub use queue::LEASE;
