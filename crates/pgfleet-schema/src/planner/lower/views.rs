//! Views and materialized views: dropped dependents first, created (or replaced) dependencies first,
//! after the tables.

use crate::change::Change;
use crate::diff::compare::columns_kept;
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render;

use Hazard::BreakingChange;

impl Ctx<'_> {
    /// The step of a view change.
    pub(super) fn lower_view(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddView { name, view } | Change::ReplaceView { name, view } => {
                let replace = matches!(change, Change::ReplaceView { .. });
                let kind = if view.materialized {
                    "materialized view"
                } else {
                    "view"
                };
                let desc = if replace {
                    format!("replace {kind} {name}")
                } else {
                    format!("create {kind} {name}")
                };
                out.push(
                    Phase::CreateViews,
                    self.view_create_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(desc, render::create_view(name, view, replace), &[]),
                );
            }
            Change::DropView { name, materialized } => {
                let recreated = self.created_views.contains(name);
                let breaking = match (self.cur.views.get(name), self.des.views.get(name)) {
                    (Some(c), Some(d)) if recreated => !columns_kept(c, d),
                    _ => true,
                };
                let kind = if *materialized {
                    "MATERIALIZED VIEW"
                } else {
                    "VIEW"
                };
                let why = if recreated {
                    " (created again below)"
                } else {
                    ""
                };
                out.push(
                    Phase::DropViews,
                    self.view_drop_rank.get(name).copied().unwrap_or(0),
                    0,
                    tx(
                        format!("drop {} {name}{why}", kind.to_lowercase()),
                        format!("DROP {kind} {name}"),
                        if breaking { &[BreakingChange] } else { &[] },
                    ),
                );
            }
            _ => unreachable!("not a view change: {change:?}"),
        }
    }
}
