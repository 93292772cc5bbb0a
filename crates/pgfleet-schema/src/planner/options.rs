//! [`PlanOptions`]: how to plan (online or offline, everything or only what is missing).

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Build indexes on existing tables `CONCURRENTLY` after the transaction, and add `CHECK` and
    /// foreign-key constraints to existing tables `NOT VALID` with a separate `VALIDATE CONSTRAINT`.
    /// When false, everything runs inside the one transaction, under stronger locks. Default: true.
    pub online: bool,
    /// Only create what is missing: new schemas, extensions, types, enum labels, sequences,
    /// functions, tables, columns, constraints, indexes, triggers, policies and views (plus row-level
    /// security on created tables). Nothing is dropped, altered or recreated, so the plan does not
    /// converge when other changes exist; used to repair a tenant at run time. Default: false.
    pub additive_only: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            online: true,
            additive_only: false,
        }
    }
}
