//! pgfleet's PostgreSQL driver: reads a live schema into a [`pgfleet_schema::Model`]
//! ([`introspect`]), loads a desired schema into a scratch shadow database ([`shadow`]), and applies
//! plans safely ([`apply`]), dropping what interrupted concurrent index builds left
//! ([`invalid_indexes`]). Schema files are replayed by a throwaway unprivileged role, after
//! [`guard`] refused server-level statements. Catalog queries live in `src/sql/*.sql`, loaded with `include_str!`
//! behind a scope from `src/sql/scope/`, so they can be read and run by hand.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pgfleet_pg::{apply, connect, introspect, shadow, source::SchemaSource};
//! use pgfleet_schema::planner;
//!
//! let target = connect::parse_url("postgres://postgres:secret@127.0.0.1:54320/app")?;
//! let source = SchemaSource::load("schema.sql".as_ref())?;
//! let desired = shadow::desired_model(&target, &source, &shadow::ShadowOptions::default()).await?;
//! let client = connect::connect(&target).await?;
//! let current = introspect::introspect(&client).await?;
//! let plan = planner::plan(&current, &desired, &planner::PlanOptions::default());
//! print!("{}", plan.to_sql());
//! apply::apply_and_verify(&client, &plan, &desired, &apply::ApplyOptions::default(), |_| {}).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod apply;
pub mod connect;
mod error;
pub mod extensions;
pub mod guard;
pub mod introspect;
pub mod invalid_indexes;
mod lex;
pub mod shadow;
pub mod source;
pub mod split;

pub use error::{PgError, Result, chain, describe};
