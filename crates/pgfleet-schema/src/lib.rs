//! pgfleet's schema core: the [`model`] of a database schema, the [`diff`]er that compares two
//! models into a list of [`Change`]s, and the [`planner`] that turns the changes into an ordered,
//! hazard-tagged [`Plan`]. Pure: no I/O, no runtime, no database — introspection and applying plans
//! live in `pgfleet-pg`.
//!
//! ```
//! use pgfleet_schema::{Model, planner};
//!
//! let current = Model::default();
//! let desired = Model::default();
//! let p = planner::plan(&current, &desired, &planner::PlanOptions::default());
//! assert!(p.is_empty());
//! ```
#![deny(missing_docs)]

pub mod change;
pub mod diff;
pub mod model;
pub mod plan;
pub mod planner;
pub mod quote;
#[cfg(test)]
mod testing;

pub use change::Change;
pub use model::{Model, QualName};
pub use plan::{Hazard, Plan, Step};
