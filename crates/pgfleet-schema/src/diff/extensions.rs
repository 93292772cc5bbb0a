//! Extensions: created, dropped, moved to another schema, commented.

use super::differ::Differ;
use crate::change::{Change, CommentTarget};

impl Differ<'_> {
    pub(super) fn extensions(&mut self) {
        for name in self.cur.extensions.keys() {
            if !self.des.extensions.contains_key(name) {
                self.push(Change::DropExtension { name: name.clone() });
            }
        }
        for (name, de) in &self.des.extensions {
            let target = CommentTarget::Extension(name.clone());
            match self.cur.extensions.get(name) {
                None => {
                    self.push(Change::AddExtension {
                        name: name.clone(),
                        schema: de.schema.clone(),
                    });
                    self.comment_new(target, &de.comment);
                }
                Some(ce) => {
                    if ce.schema != de.schema {
                        self.push(Change::AlterExtensionSchema {
                            name: name.clone(),
                            schema: de.schema.clone(),
                        });
                    }
                    self.comment_diff(target, &ce.comment, &de.comment);
                }
            }
        }
    }
}
