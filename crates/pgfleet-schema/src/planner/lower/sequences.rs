//! Sequences: created and altered before the tables, owned by their column once the tables exist
//! (released first from an owner that is dropped, so they are not dropped with it), dropped after
//! the tables.

use crate::change::Change;
use crate::model::QualName;
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render::{self, column_name};

use Hazard::{DataLoss, MayFail};

impl Ctx<'_> {
    /// The steps of a sequence change.
    pub(super) fn lower_sequence(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddSequence { name, sequence } => out.push(
                Phase::CreateSequences,
                0,
                0,
                tx(
                    format!("create sequence {name}"),
                    format!(
                        "CREATE SEQUENCE {name} {}",
                        render::sequence_options(sequence)
                    ),
                    &[],
                ),
            ),
            Change::AlterSequence { name, sequence } => {
                // A narrower range (a smaller type, a lower MAXVALUE, a higher MINVALUE) fails when
                // the sequence's current value is outside it; it never changes the value.
                let narrower = self.cur.sequences.get(name).is_none_or(|c| {
                    sequence.min_value > c.min_value || sequence.max_value < c.max_value
                });
                out.push(
                    Phase::CreateSequences,
                    0,
                    0,
                    tx(
                        format!("alter sequence {name}"),
                        format!(
                            "ALTER SEQUENCE {name} {}",
                            render::sequence_options(sequence)
                        ),
                        if narrower { &[MayFail] } else { &[] },
                    ),
                )
            }
            Change::AlterSequenceOwner { name, owned_by } => {
                self.sequence_owner(out, name, owned_by.as_ref())
            }
            Change::DropSequence { name } => {
                let gone_with_owner = self
                    .cur
                    .sequences
                    .get(name)
                    .and_then(|s| s.owned_by.as_ref())
                    .is_some_and(|o| self.owner_goes_away(o));
                let if_exists = if gone_with_owner { "IF EXISTS " } else { "" };
                out.push(
                    Phase::DropSequences,
                    0,
                    0,
                    tx(
                        format!("drop sequence {name}"),
                        format!("DROP SEQUENCE {if_exists}{name}"),
                        &[DataLoss],
                    ),
                );
            }
            _ => unreachable!("not a sequence change: {change:?}"),
        }
    }

    fn sequence_owner(
        &self,
        out: &mut Staged,
        name: &QualName,
        owned_by: Option<&(QualName, String)>,
    ) {
        let released_early = self
            .cur
            .sequences
            .get(name)
            .and_then(|s| s.owned_by.as_ref())
            .is_some_and(|o| self.owner_goes_away(o));
        if released_early {
            out.push(
                Phase::CreateSequences,
                0,
                1,
                tx(
                    format!("release sequence {name} from its owning column"),
                    format!("ALTER SEQUENCE {name} OWNED BY NONE"),
                    &[],
                ),
            );
        }
        match owned_by {
            Some((table, column)) => out.push(
                Phase::SequenceOwners,
                0,
                0,
                tx(
                    format!(
                        "make sequence {name} owned by {}",
                        column_name(table, column)
                    ),
                    format!(
                        "ALTER SEQUENCE {name} OWNED BY {}",
                        column_name(table, column)
                    ),
                    &[],
                ),
            ),
            None if !released_early => out.push(
                Phase::SequenceOwners,
                0,
                0,
                tx(
                    format!("release sequence {name} from its owning column"),
                    format!("ALTER SEQUENCE {name} OWNED BY NONE"),
                    &[],
                ),
            ),
            None => {}
        }
    }
}
