//! pgfleet gives every tenant of an application a PostgreSQL database (or schema) of its own and keeps
//! the fleet provisioned, migrated, verified, routed, healed and visible.
//!
//! This facade re-exports what applications use: the embedded PostgreSQL runtime ([`embedded`]),
//! the schema core ([`schema`]: model, differ, planner, hazards) and the PostgreSQL driver ([`pg`]:
//! introspection, shadow databases, applying plans) and versioned migrations ([`migrate`]: the
//! migrations directory, the migrator, `gen`, importers). The control plane and the router join them
//! as they land.
//!
//! ```no_run
//! let cluster = pgfleet::embedded::up(&pgfleet::embedded::UpOptions {
//!     data_dir: ".pgfleet/data".into(),
//!     port: None,
//! })?
//! .cluster;
//! println!("{}", cluster.url());
//! # Ok::<(), pgfleet::embedded::EmbeddedError>(())
//! ```
#![deny(missing_docs)]

/// The control plane (see [`pgfleet_control`]).
pub use pgfleet_control as control;
/// The embedded PostgreSQL runtime (see [`pgfleet_embedded`]).
pub use pgfleet_embedded as embedded;
/// Versioned migrations (see [`pgfleet_migrate`]).
pub use pgfleet_migrate as migrate;
/// The PostgreSQL driver (see [`pgfleet_pg`]).
pub use pgfleet_pg as pg;
/// The schema core (see [`pgfleet_schema`]).
pub use pgfleet_schema as schema;
