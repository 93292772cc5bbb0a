//! Schemas: `CREATE SCHEMA` first, `DROP SCHEMA` last, after what was in it (never `CASCADE`).

use crate::change::Change;
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::quote::ident;

use Hazard::DataLoss;

impl Ctx<'_> {
    /// The step of a schema change.
    pub(super) fn lower_schema(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddSchema { name } => out.push(
                Phase::CreateSchemas,
                0,
                0,
                tx(
                    format!("create schema {}", ident(name)),
                    format!("CREATE SCHEMA {}", ident(name)),
                    &[],
                ),
            ),
            Change::DropSchema { name } => out.push(
                Phase::DropSchemas,
                0,
                0,
                tx(
                    format!("drop schema {}", ident(name)),
                    format!("DROP SCHEMA {}", ident(name)),
                    &[DataLoss],
                ),
            ),
            _ => unreachable!("not a schema change: {change:?}"),
        }
    }
}
