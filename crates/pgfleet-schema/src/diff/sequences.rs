//! Sequences: created, altered, dropped, and their ownership (a change of owner is also listed,
//! unchanged, when the owning table or column is dropped: the planner releases the sequence first so
//! it is not dropped with it).

use super::compare::same_sequence_options;
use super::differ::Differ;
use crate::change::{Change, CommentTarget};
use crate::model::QualName;

impl Differ<'_> {
    /// True when the table or column that owns a sequence now is dropped with its table or column.
    fn owner_goes_away(&self, owner: &(QualName, String)) -> bool {
        let (table, column) = owner;
        self.replaced_tables.contains(table)
            || !self.des.tables.contains_key(table)
            || self
                .columns
                .get(table)
                .is_some_and(|cc| cc.dropped.contains(column) || cc.replaced.contains(column))
    }

    pub(super) fn sequences(&mut self) {
        for name in self.cur.sequences.keys() {
            if !self.des.sequences.contains_key(name) {
                self.push(Change::DropSequence { name: name.clone() });
            }
        }
        for (name, ds) in &self.des.sequences {
            let target = CommentTarget::Sequence(name.clone());
            let Some(cs) = self.cur.sequences.get(name) else {
                self.push(Change::AddSequence {
                    name: name.clone(),
                    sequence: ds.clone(),
                });
                if ds.owned_by.is_some() {
                    self.push(Change::AlterSequenceOwner {
                        name: name.clone(),
                        owned_by: ds.owned_by.clone(),
                    });
                }
                self.comment_new(target, &ds.comment);
                continue;
            };
            if !same_sequence_options(cs, ds) {
                self.push(Change::AlterSequence {
                    name: name.clone(),
                    sequence: ds.clone(),
                });
            }
            if cs.owned_by != ds.owned_by
                || cs
                    .owned_by
                    .as_ref()
                    .is_some_and(|o| self.owner_goes_away(o))
            {
                self.push(Change::AlterSequenceOwner {
                    name: name.clone(),
                    owned_by: ds.owned_by.clone(),
                });
            }
            self.comment_diff(target, &cs.comment, &ds.comment);
        }
    }
}
