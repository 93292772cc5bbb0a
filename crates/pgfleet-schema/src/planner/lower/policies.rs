//! Row-level security policies: dropped before the tables change, created after row-level security
//! is enabled.

use crate::change::Change;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render;
use crate::quote::ident;

impl Ctx<'_> {
    /// The step of a policy change.
    pub(super) fn lower_policy(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddPolicy {
                table,
                name,
                policy,
            } => out.push(
                Phase::CreatePolicies,
                0,
                0,
                tx(
                    format!("create policy {} on {table}", ident(name)),
                    render::create_policy(table, name, policy),
                    &[],
                ),
            ),
            Change::DropPolicy { table, name } => out.push(
                Phase::DropPolicies,
                0,
                0,
                tx(
                    format!("drop policy {} on {table}", ident(name)),
                    format!("DROP POLICY {} ON {table}", ident(name)),
                    &[],
                ),
            ),
            _ => unreachable!("not a policy change: {change:?}"),
        }
    }
}
