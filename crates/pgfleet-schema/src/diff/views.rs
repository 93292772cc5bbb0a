//! Views and materialized views: which are created, replaced in place, or dropped and recreated.
//!
//! A view is dropped and created again when its definition, columns or options changed (unless
//! `CREATE OR REPLACE VIEW` can do it: the current columns are a prefix of the desired ones), when
//! one of its columns has a swapped type, or when it depends (transitively) on a relation that is
//! dropped, replaced, or has columns dropped, retyped or re-added, or on a view that is dropped or
//! recreated.

use std::collections::BTreeSet;

use super::compare::{or_replaceable, view_changed};
use super::differ::Differ;
use crate::change::{Change, CommentTarget};
use crate::model::{QualName, View};

impl Differ<'_> {
    pub(super) fn views(&mut self) {
        let (cur, des) = (self.cur, self.des);
        let mut gone: BTreeSet<QualName> = self.reshaped.clone();
        let mut recreate: BTreeSet<QualName> = BTreeSet::new();
        let mut replace: BTreeSet<QualName> = BTreeSet::new();
        for (name, cv) in &cur.views {
            let Some(dv) = des.views.get(name) else {
                gone.insert(name.clone());
                continue;
            };
            let uses_swapped = cv
                .columns
                .iter()
                .any(|(_, t)| self.swapped_type_of(t).is_some());
            let changed = view_changed(cv, dv);
            if uses_swapped || (changed && !or_replaceable(cv, dv)) {
                recreate.insert(name.clone());
                gone.insert(name.clone());
            } else if changed {
                replace.insert(name.clone());
            }
        }
        loop {
            let more: Vec<QualName> = cur
                .views
                .iter()
                .filter(|(name, v)| {
                    des.views.contains_key(*name)
                        && !recreate.contains(*name)
                        && v.depends_on.iter().any(|d| gone.contains(d))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            for name in more {
                replace.remove(&name);
                recreate.insert(name.clone());
                gone.insert(name);
            }
        }

        for (name, cv) in &cur.views {
            if !des.views.contains_key(name) {
                self.push(Change::DropView {
                    name: name.clone(),
                    materialized: cv.materialized,
                });
            }
        }
        for (name, dv) in &des.views {
            let target = view_target(name, dv);
            match cur.views.get(name) {
                Some(cv) if !recreate.contains(name) => {
                    if replace.contains(name) {
                        self.push(Change::ReplaceView {
                            name: name.clone(),
                            view: dv.clone(),
                        });
                    }
                    self.comment_diff(target, &cv.comment, &dv.comment);
                    self.alter_indexes(name, &cv.indexes, &dv.indexes);
                }
                existing => {
                    if let Some(cv) = existing {
                        self.push(Change::DropView {
                            name: name.clone(),
                            materialized: cv.materialized,
                        });
                    }
                    self.push(Change::AddView {
                        name: name.clone(),
                        view: dv.clone(),
                    });
                    self.comment_new(target, &dv.comment);
                    self.add_indexes(name, &dv.indexes);
                }
            }
        }
    }
}

fn view_target(name: &QualName, v: &View) -> CommentTarget {
    if v.materialized {
        CommentTarget::MaterializedView(name.clone())
    } else {
        CommentTarget::View(name.clone())
    }
}
