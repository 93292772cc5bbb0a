//! Functions and procedures: created early (bodies are not checked), or after what their signature or
//! SQL-standard body needs; dropped late, those with a SQL-standard body before their tables.

use crate::change::Change;
use crate::model::{Function, FunctionId, QualName};
use crate::plan::{Hazard, Step};
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, tx};
use crate::planner::render::function_ref;

use Hazard::BreakingChange;

impl Ctx<'_> {
    /// The steps of a function or procedure change.
    pub(super) fn lower_function(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddFunction { id, function } | Change::AlterFunction { id, function } => {
                let verb = if matches!(change, Change::AddFunction { .. }) {
                    "create"
                } else {
                    "replace"
                };
                out.push(
                    self.function_phase(id, function),
                    0,
                    0,
                    tx(
                        format!(
                            "{verb} {} {}",
                            routine_kind(function.procedure),
                            function_ref(id)
                        ),
                        function.definition.trim_end().to_string(),
                        &[],
                    ),
                );
            }
            Change::RecreateFunction {
                id,
                was_procedure,
                function,
            } => {
                let phase = self.function_phase(id, function);
                out.push(
                    phase,
                    0,
                    0,
                    drop_function(id, *was_procedure, "its result type changed"),
                );
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!(
                            "create {} {}",
                            routine_kind(function.procedure),
                            function_ref(id)
                        ),
                        function.definition.trim_end().to_string(),
                        &[],
                    ),
                );
            }
            Change::DropFunction { id, procedure } => {
                // A SQL-standard body depends on the tables it reads: drop it before them.
                let atomic = self
                    .cur
                    .functions
                    .get(id)
                    .is_some_and(|f| f.definition.contains("BEGIN ATOMIC"));
                let phase = if atomic {
                    Phase::DropAtomicFunctions
                } else {
                    Phase::DropFunctions
                };
                out.push(phase, 0, 0, drop_function(id, *procedure, ""))
            }
            _ => unreachable!("not a function change: {change:?}"),
        }
    }

    /// Functions go early, before domains (bodies are not checked, and domain checks may call
    /// them); after the domains when their signature names a domain the plan creates; after the
    /// tables when it names the row type of a table the plan creates, or when the body is
    /// SQL-standard (`BEGIN ATOMIC`, which PostgreSQL always checks).
    fn function_phase(&self, id: &FunctionId, f: &Function) -> Phase {
        let names = |set: &std::collections::BTreeSet<QualName>| {
            set.iter().any(|t| {
                let t = t.to_string();
                id.args.contains(&t) || f.returns.as_deref().is_some_and(|r| r.contains(&t))
            })
        };
        if names(&self.created_tables) || f.definition.contains("BEGIN ATOMIC") {
            Phase::LateFunctions
        } else if names(&self.created_domains) {
            Phase::DomainFunctions
        } else {
            Phase::CreateFunctions
        }
    }
}

fn routine_kind(procedure: bool) -> &'static str {
    if procedure { "procedure" } else { "function" }
}

fn drop_function(id: &FunctionId, procedure: bool, why: &str) -> Step {
    let keyword = if procedure { "PROCEDURE" } else { "FUNCTION" };
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    tx(
        format!("drop {} {}{why}", routine_kind(procedure), function_ref(id)),
        format!("DROP {keyword} {}", function_ref(id)),
        &[BreakingChange],
    )
}
