//! Functions and procedures: created, replaced in place (`CREATE OR REPLACE`), or dropped and created
//! again when the result type or the kind (function or procedure) changes.

use super::differ::Differ;
use crate::change::{Change, CommentTarget};

impl Differ<'_> {
    pub(super) fn functions(&mut self) {
        for (id, cf) in &self.cur.functions {
            if !self.des.functions.contains_key(id) {
                self.push(Change::DropFunction {
                    id: id.clone(),
                    procedure: cf.procedure,
                });
            }
        }
        for (id, df) in &self.des.functions {
            let target = if df.procedure {
                CommentTarget::Procedure(id.clone())
            } else {
                CommentTarget::Function(id.clone())
            };
            match self.cur.functions.get(id) {
                None => {
                    self.push(Change::AddFunction {
                        id: id.clone(),
                        function: df.clone(),
                    });
                    self.comment_new(target, &df.comment);
                }
                Some(cf) if cf.procedure != df.procedure || cf.returns != df.returns => {
                    self.push(Change::RecreateFunction {
                        id: id.clone(),
                        was_procedure: cf.procedure,
                        function: df.clone(),
                    });
                    self.comment_new(target, &df.comment);
                }
                Some(cf) => {
                    if cf.definition != df.definition {
                        self.push(Change::AlterFunction {
                            id: id.clone(),
                            function: df.clone(),
                        });
                    }
                    self.comment_diff(target, &cf.comment, &df.comment);
                }
            }
        }
    }
}
