//! Schemas: created, dropped, commented.

use super::differ::Differ;
use crate::change::{Change, CommentTarget};

impl Differ<'_> {
    pub(super) fn schemas(&mut self) {
        for name in self.cur.schemas.keys() {
            if !self.des.schemas.contains_key(name) {
                self.push(Change::DropSchema { name: name.clone() });
            }
        }
        for (name, ds) in &self.des.schemas {
            match self.cur.schemas.get(name) {
                None => {
                    self.push(Change::AddSchema { name: name.clone() });
                    self.comment_new(CommentTarget::Schema(name.clone()), &ds.comment);
                }
                Some(cs) => self.comment_diff(
                    CommentTarget::Schema(name.clone()),
                    &cs.comment,
                    &ds.comment,
                ),
            }
        }
    }
}
