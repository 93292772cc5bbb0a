//! Extensions: created (`IF NOT EXISTS`) and moved right after the schemas, dropped after
//! everything that may use them.

use crate::change::Change;
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::quote::ident;

use Hazard::DataLoss;

impl Ctx<'_> {
    /// The step of an extension change.
    pub(super) fn lower_extension(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddExtension { name, schema } => out.push(
                Phase::CreateExtensions,
                0,
                0,
                tx(
                    format!(
                        "create extension {} in schema {}",
                        ident(name),
                        ident(schema)
                    ),
                    format!(
                        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}",
                        ident(name),
                        ident(schema)
                    ),
                    &[],
                ),
            ),
            Change::AlterExtensionSchema { name, schema } => out.push(
                Phase::CreateExtensions,
                0,
                1,
                tx(
                    format!("move extension {} to schema {}", ident(name), ident(schema)),
                    format!(
                        "ALTER EXTENSION {} SET SCHEMA {}",
                        ident(name),
                        ident(schema)
                    ),
                    &[],
                ),
            ),
            Change::DropExtension { name } => out.push(
                Phase::DropExtensions,
                0,
                0,
                tx(
                    format!("drop extension {}", ident(name)),
                    format!("DROP EXTENSION {}", ident(name)),
                    &[DataLoss],
                ),
            ),
            _ => unreachable!("not an extension change: {change:?}"),
        }
    }
}
