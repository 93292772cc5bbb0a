//! Indexes of tables and materialized views: created with their relation, or added, rebuilt
//! (definition changed, or invalid) and dropped on a relation that stays. An index that mentions a
//! column dropped and re-added, or whose type is swapped, is dropped and created again.

use std::collections::BTreeMap;

use super::compare::index_changed;
use super::differ::Differ;
use crate::change::{Change, CommentTarget};
use crate::model::{Index, QualName};

impl Differ<'_> {
    /// Every index of a created relation (table or materialized view).
    pub(super) fn add_indexes(&mut self, rel: &QualName, indexes: &BTreeMap<String, Index>) {
        for (iname, i) in indexes {
            self.push(Change::AddIndex {
                table: rel.clone(),
                name: iname.clone(),
                index: i.clone(),
            });
            self.comment_new(index_target(rel, iname), &i.comment);
        }
    }

    /// Indexes of a table or materialized view that stays.
    pub(super) fn alter_indexes(
        &mut self,
        rel: &QualName,
        cur: &BTreeMap<String, Index>,
        des: &BTreeMap<String, Index>,
    ) {
        for iname in cur.keys() {
            if !des.contains_key(iname) {
                self.push(Change::DropIndex {
                    table: rel.clone(),
                    name: iname.clone(),
                });
            }
        }
        for (iname, d) in des {
            let target = index_target(rel, iname);
            let Some(c) = cur.get(iname) else {
                self.push(Change::AddIndex {
                    table: rel.clone(),
                    name: iname.clone(),
                    index: d.clone(),
                });
                self.comment_new(target, &d.comment);
                continue;
            };
            if index_changed(c, d) {
                self.push(Change::ReplaceIndex {
                    table: rel.clone(),
                    name: iname.clone(),
                    index: d.clone(),
                });
                self.comment_new(target, &d.comment);
            } else if self.mentions_recreated(rel, &c.definition) {
                // Dropped with its column (or unusable after a type swap); the add rebuilds it.
                self.push(Change::DropIndex {
                    table: rel.clone(),
                    name: iname.clone(),
                });
                self.push(Change::AddIndex {
                    table: rel.clone(),
                    name: iname.clone(),
                    index: d.clone(),
                });
                self.comment_new(target, &d.comment);
            } else {
                self.comment_diff(target, &c.comment, &d.comment);
            }
        }
    }
}

fn index_target(table: &QualName, name: &str) -> CommentTarget {
    CommentTarget::Index {
        table: table.clone(),
        name: name.to_string(),
    }
}
