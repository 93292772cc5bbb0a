//! pgfleet's versioned migrations: the `migrations/` directory and its `pgfleet.sum` ([`dir`],
//! [`sum`]), the per-database history ([`history`]), the lock ([`lock`]), the migrator that applies
//! pending migrations at most once and resumes after crashes ([`migrator`]), the generator that
//! writes the next migration from `schema.sql` ([`generate`]), and importers from sqlx, Drizzle and
//! golang-migrate ([`import`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pgfleet_migrate::{dir::MigrationDir, migrator, sum};
//!
//! let dir = MigrationDir::load("migrations".as_ref())?;
//! sum::verify(&dir)?; // refuse an edited, added or removed file before touching the database
//! let db = pgfleet_pg::connect::parse_url("postgres://postgres:secret@127.0.0.1:54320/app")?;
//! let report = migrator::migrate(&db, &dir, &migrator::MigrateOptions::default(), |event| {
//!     eprintln!("{event:?}");
//! })
//! .await?;
//! println!("applied {} migration(s)", report.applied.len());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod dir;
pub mod generate;
pub mod history;
pub mod import;
pub mod lock;
pub mod migrator;
pub mod sum;

pub use dir::{Migration, MigrationDir};
pub use migrator::{MigrateError, MigrateEvent, MigrateOptions, MigrateReport, migrate};
