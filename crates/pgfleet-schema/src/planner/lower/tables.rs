//! Tables: created parents first, dropped referencing ones (and partitions) first, with the foreign
//! keys of reference cycles dropped before any of them; partitions detached and attached around a
//! bound change; `SET LOGGED`/`UNLOGGED` and row-level security flags.

use crate::change::Change;
use crate::model::QualName;
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render;
use crate::quote::ident;

use Hazard::{DataLoss, LongLock, TableRewrite, ValidationScan};

impl Ctx<'_> {
    /// Drops the foreign keys that tie tables to be dropped into cycles.
    pub(super) fn stage_cycle_breaks(&self, out: &mut Staged) {
        for (order, phase) in [
            (&self.early_drops, Phase::DropReplacedTables),
            (&self.late_drops, Phase::DropTables),
        ] {
            for (table, name) in &order.cycle_fks {
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!(
                            "drop foreign key {} on {table} (reference cycle)",
                            ident(name)
                        ),
                        format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(name)),
                        &[],
                    ),
                );
            }
        }
    }

    /// The steps of a change to a table itself.
    pub(super) fn lower_table(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddTable { name, table } => out.push(
                Phase::CreateTables,
                self.create_rank.get(name).copied().unwrap_or(0),
                0,
                tx(
                    format!("create table {name}"),
                    render::create_table(name, table),
                    &[],
                ),
            ),
            Change::ReplaceTable { name, table } => {
                self.drop_table(out, name, "it is recreated");
                out.push(
                    Phase::CreateTables,
                    self.create_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(
                        format!("create table {name} again"),
                        render::create_table(name, table),
                        &[],
                    ),
                );
            }
            Change::DropTable { name } => self.drop_table(out, name, ""),
            Change::AlterTableLogged { name, unlogged } => {
                let what = if *unlogged { "UNLOGGED" } else { "LOGGED" };
                out.push(
                    Phase::AlterTables,
                    self.table_rank(name),
                    0,
                    tx(
                        format!("make table {name} {}", what.to_lowercase()),
                        format!("ALTER TABLE {name} SET {what}"),
                        &[TableRewrite, LongLock],
                    ),
                );
            }
            Change::AlterPartitionBound { name, from, to } => {
                let rank = self.table_rank(name);
                out.push(
                    Phase::DetachPartitions,
                    rank,
                    0,
                    tx(
                        format!("detach partition {name} from {}", from.parent),
                        format!("ALTER TABLE {} DETACH PARTITION {name}", from.parent),
                        &[],
                    ),
                );
                out.push(
                    Phase::AttachPartitions,
                    rank,
                    0,
                    tx(
                        format!("attach partition {name} to {} {}", to.parent, to.bound),
                        format!(
                            "ALTER TABLE {} ATTACH PARTITION {name} {}",
                            to.parent, to.bound
                        ),
                        &[LongLock, ValidationScan],
                    ),
                );
            }
            Change::AlterTableRls { name, enabled } => {
                let what = if *enabled { "ENABLE" } else { "DISABLE" };
                out.push(
                    Phase::RowSecurity,
                    self.table_rank(name),
                    0,
                    tx(
                        format!("{} row level security on {name}", what.to_lowercase()),
                        format!("ALTER TABLE {name} {what} ROW LEVEL SECURITY"),
                        &[],
                    ),
                );
            }
            Change::AlterTableForceRls { name, forced } => {
                let what = if *forced { "FORCE" } else { "NO FORCE" };
                out.push(
                    Phase::RowSecurity,
                    self.table_rank(name),
                    1,
                    tx(
                        format!("{} row level security on {name}", what.to_lowercase()),
                        format!("ALTER TABLE {name} {what} ROW LEVEL SECURITY"),
                        &[],
                    ),
                );
            }
            _ => unreachable!("not a table change: {change:?}"),
        }
    }

    fn drop_table(&self, out: &mut Staged, name: &QualName, why: &str) {
        let (phase, rank) = match self.early_drops.rank.get(name) {
            Some(r) => (Phase::DropReplacedTables, *r),
            None => (
                Phase::DropTables,
                self.late_drops.rank.get(name).copied().unwrap_or(0),
            ),
        };
        // A partition of a table that stays, and that a foreign key references, is detached first:
        // the foreign key depends on every partition of the table it references.
        if let Some(p) = self
            .cur
            .tables
            .get(name)
            .and_then(|t| t.partition_of.as_ref())
            && !self.dropped_tables.contains(&p.parent)
            && !self.replaced_tables.contains(&p.parent)
            && self.referenced_with_ancestors(&p.parent)
        {
            out.push(
                Phase::DetachPartitions,
                self.table_rank(name),
                0,
                tx(
                    format!("detach partition {name} from {} to drop it", p.parent),
                    format!("ALTER TABLE {} DETACH PARTITION {name}", p.parent),
                    &[],
                ),
            );
        }
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        };
        out.push(
            phase,
            rank,
            1,
            tx(
                format!("drop table {name}{why}"),
                format!("DROP TABLE {name}"),
                &[DataLoss],
            ),
        );
    }
}
