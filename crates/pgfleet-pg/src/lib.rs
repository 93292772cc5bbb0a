//! pgfleet's PostgreSQL driver: reads a live schema into a [`pgfleet_schema::Model`]
//! ([`introspect`]), loads a desired schema into a scratch shadow database ([`shadow`]), and applies
//! plans safely ([`apply`]). Catalog queries live in `src/sql/*.sql`, loaded with `include_str!`, so
//! they can be read and run by hand.
#![deny(missing_docs)]

mod error;
pub mod introspect;

pub use error::{PgError, Result};
