//! Triggers: dropped before the tables change, created (and enabled or disabled) after them.

use crate::change::Change;
use crate::model::QualName;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render;
use crate::quote::ident;

impl Ctx<'_> {
    /// The steps of a trigger change.
    pub(super) fn lower_trigger(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddTrigger {
                table,
                name,
                trigger,
            } => {
                out.push(
                    Phase::CreateTriggers,
                    0,
                    0,
                    tx(
                        format!("create trigger {} on {table}", ident(name)),
                        trigger.definition.trim_end().to_string(),
                        &[],
                    ),
                );
                if trigger.enabled != "O" {
                    self.trigger_enabled(out, table, name, &trigger.enabled);
                }
            }
            Change::AlterTriggerEnabled {
                table,
                name,
                enabled,
            } => self.trigger_enabled(out, table, name, enabled),
            Change::DropTrigger { table, name } => out.push(
                Phase::DropTriggers,
                0,
                0,
                tx(
                    format!("drop trigger {} on {table}", ident(name)),
                    format!("DROP TRIGGER {} ON {table}", ident(name)),
                    &[],
                ),
            ),
            _ => unreachable!("not a trigger change: {change:?}"),
        }
    }

    fn trigger_enabled(&self, out: &mut Staged, table: &QualName, name: &str, enabled: &str) {
        out.push(
            Phase::CreateTriggers,
            0,
            1,
            tx(
                format!(
                    "set trigger {} on {table} to {}",
                    ident(name),
                    match enabled {
                        "D" => "disabled",
                        "R" => "replica only",
                        "A" => "always",
                        _ => "enabled",
                    }
                ),
                render::trigger_enabled(table, name, enabled),
                &[],
            ),
        );
    }
}
