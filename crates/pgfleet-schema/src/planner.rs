//! The planner: orders the changes of a diff into a [`Plan`] of SQL steps tagged with hazards.
//! Placeholder: the full planner is being written.

use crate::model::Model;
use crate::plan::Plan;

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Build indexes on existing tables `CONCURRENTLY` and add constraints `NOT VALID` + `VALIDATE`.
    pub online: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self { online: true }
    }
}

/// The plan that turns `current` into `desired`.
pub fn plan(current: &Model, desired: &Model, _opts: &PlanOptions) -> Plan {
    let _ = crate::diff::diff(current, desired);
    Plan::default()
}
