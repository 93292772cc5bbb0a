//! Indexes of tables and materialized views: built in the transaction on new relations, and
//! `CONCURRENTLY` after it on existing ones when planning online (a changed index under a temporary
//! name, then swapped in), except on partitioned tables and for a unique index that a new foreign key
//! needs.

use crate::change::Change;
use crate::model::{Index, QualName};
use crate::plan::{Hazard, Step};
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, solo, tx};
use crate::planner::render::{self, NEW_INDEX_SUFFIX, sibling, temp_name};
use crate::quote::ident;

use Hazard::{IndexBuild, LongLock};

impl Ctx<'_> {
    /// The steps of an index change.
    pub(super) fn lower_index(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddIndex { table, name, index } => {
                if self.build_post(table, &index.definition) {
                    out.push(
                        Phase::PostCreateIndexes,
                        0,
                        0,
                        build_concurrently(table, name, index, None),
                    );
                } else {
                    self.index_in_tx(out, table, name, index);
                }
            }
            Change::ReplaceIndex { table, name, index } => {
                self.replace_index(out, table, name, index)
            }
            Change::DropIndex { table, name } => {
                let qn = sibling(table, name);
                if self.drop_post(table, name) {
                    out.push(Phase::PostDropIndexes, 0, 0, drop_concurrently(&qn, ""));
                } else {
                    out.push(
                        Phase::DropIndexes,
                        0,
                        0,
                        tx(format!("drop index {qn}"), format!("DROP INDEX {qn}"), &[]),
                    );
                }
            }
            _ => unreachable!("not an index change: {change:?}"),
        }
    }

    /// `CREATE INDEX` inside the transaction: right after a created materialized view, or with the
    /// other indexes after the constraints.
    fn index_in_tx(&self, out: &mut Staged, table: &QualName, name: &str, index: &Index) {
        let hazards: &[Hazard] = if self.existing_relation(table) {
            &[IndexBuild, LongLock]
        } else {
            &[]
        };
        let (phase, a, b) = match self.view_create_rank.get(table) {
            Some(r) if self.created_views.contains(table) => (Phase::CreateViews, *r, 1),
            _ => (Phase::CreateIndexes, 0, 0),
        };
        out.push(
            phase,
            a,
            b,
            tx(
                format!("create index {} on {table}", sibling(table, name)),
                render::index_sql(&index.definition, false, None),
                hazards,
            ),
        );
    }

    fn replace_index(&self, out: &mut Staged, table: &QualName, name: &str, index: &Index) {
        let qn = sibling(table, name);
        let current_valid = self.cur.index(table, name).is_none_or(|i| i.valid);
        let build_post = self.build_post(table, &index.definition);
        let drop_post = build_post && self.drop_post(table, name);
        if drop_post && current_valid {
            let tmp = temp_name(name, NEW_INDEX_SUFFIX);
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                build_concurrently(table, name, index, Some(&tmp)),
            );
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                drop_concurrently(&qn, " (replaced by its new version)"),
            );
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                tx(
                    format!("rename index {} to {}", sibling(table, &tmp), ident(name)),
                    format!(
                        "ALTER INDEX {} RENAME TO {}",
                        sibling(table, &tmp),
                        ident(name)
                    ),
                    &[],
                ),
            );
            return;
        }
        if drop_post {
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                drop_concurrently(&qn, " (invalid, rebuilt below)"),
            );
        } else {
            out.push(
                Phase::DropIndexes,
                0,
                0,
                tx(
                    format!("drop index {qn} (rebuilt below)"),
                    format!("DROP INDEX {qn}"),
                    &[],
                ),
            );
        }
        if build_post {
            out.push(
                Phase::PostCreateIndexes,
                0,
                0,
                build_concurrently(table, name, index, None),
            );
        } else {
            self.index_in_tx(out, table, name, index);
        }
    }
}

fn build_concurrently(table: &QualName, name: &str, index: &Index, tmp: Option<&str>) -> Step {
    let desc = match tmp {
        Some(t) => format!(
            "build new version of index {} on {table} concurrently as {}",
            sibling(table, name),
            ident(t)
        ),
        None => format!(
            "build index {} on {table} concurrently",
            sibling(table, name)
        ),
    };
    solo(
        desc,
        render::index_sql(&index.definition, true, tmp),
        &[IndexBuild],
    )
}

fn drop_concurrently(qn: &QualName, why: &str) -> Step {
    solo(
        format!("drop index {qn} concurrently{why}"),
        format!("DROP INDEX CONCURRENTLY IF EXISTS {qn}"),
        &[],
    )
}
