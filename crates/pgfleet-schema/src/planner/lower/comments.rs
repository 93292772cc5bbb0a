//! Comments: set after everything is created; those of indexes built after the transaction follow
//! them there.

use crate::change::{Change, CommentTarget};
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render;

impl Ctx<'_> {
    /// The step of a comment change.
    pub(super) fn lower_comment(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AlterComment { target, comment } => {
                let phase = match target {
                    CommentTarget::Index { table, name }
                        if self.post_built.contains(&(table.clone(), name.clone())) =>
                    {
                        Phase::PostComments
                    }
                    _ => Phase::Comments,
                };
                let what = if comment.is_some() { "set" } else { "remove" };
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!("{what} comment on {}", render::comment_description(target)),
                        render::comment(target, comment),
                        &[],
                    ),
                );
            }
            _ => unreachable!("not a comment change: {change:?}"),
        }
    }
}
