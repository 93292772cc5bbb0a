//! pgfleet gives every tenant of an application a PostgreSQL database (or schema) of its own and keeps
//! the fleet provisioned, migrated, verified, routed, healed and visible.
//!
//! This facade re-exports what applications use. Today that is the embedded PostgreSQL runtime;
//! the schema engine, migrations, control plane and router join it as they land.
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

/// The embedded PostgreSQL runtime (see [`pgfleet_embedded`]).
pub use pgfleet_embedded as embedded;
