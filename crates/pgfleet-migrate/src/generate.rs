//! `pgfleet gen`: the next migration, computed from `schema.sql`.
//!
//! The existing migrations are replayed in a shadow database, `schema.sql` is loaded into another,
//! both are introspected, and the schema engine plans the difference. Consecutive transactional steps
//! become one migration; steps that cannot run in a transaction (concurrent index builds) go into a
//! file of their own marked `-- pgfleet:no-transaction`. Before anything is kept, the directory with
//! the new files is replayed once more and must produce exactly the schema of `schema.sql`.
//!
//! References to the user's objects in `public` are written unqualified ([`unqualify_public`]), so
//! one migrations directory serves database-per-tenant (run with `search_path = public`) and
//! schema-per-tenant (run with `search_path = <tenant schema>, public`) alike.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use pgfleet_pg::shadow::{self, ShadowError, ShadowOptions};
use pgfleet_pg::source::{SchemaSource, SourceFile};
use pgfleet_schema::planner::{self, PlanOptions};
use pgfleet_schema::{Hazard, Plan};
use tokio_postgres::Config;

use crate::dir::{self, MigrationDir, NO_TRANSACTION};
use crate::sum::{self, SumError};

/// Why `gen` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// The migrations directory is not usable.
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    /// The directory does not match its `pgfleet.sum`.
    #[error(transparent)]
    Sum(#[from] SumError),
    /// Replaying the migrations failed.
    #[error("replaying the migrations")]
    Replay(#[source] ShadowError),
    /// Loading the desired schema failed.
    #[error("loading the desired schema")]
    Desired(#[source] ShadowError),
    /// The name is not usable in a file name.
    #[error("migration name {0:?}: use lowercase letters, digits, `_` and `-`, e.g. add_tags")]
    BadName(String),
    /// The plan has hazards that were not allowed.
    #[error("the next migration would have hazards you did not allow: {}\n{steps}\nnothing was written; review the steps and pass --allow-hazards {} to write it", names(.refused), names(.refused).replace(", ", ","))]
    Refused {
        /// The hazards.
        refused: Vec<Hazard>,
        /// The steps that carry them.
        steps: String,
    },
    /// The generated files do not reproduce the schema (a pgfleet bug: please report it).
    #[error("the generated migration does not reproduce the desired schema; nothing was kept. Remaining difference:\n{}", .0.to_sql())]
    NotConverged(Plan),
    /// Writing a file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_objects_in_public_lose_their_schema() {
        let names: BTreeSet<String> = ["notes", "Mixed Case", "notes_id_seq"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            unqualify_public(
                "CREATE INDEX i ON public.notes USING hnsw (embedding public.vector_cosine_ops)",
                &names
            ),
            "CREATE INDEX i ON notes USING hnsw (embedding public.vector_cosine_ops)"
        );
        assert_eq!(
            unqualify_public(
                "ALTER TABLE public.\"Mixed Case\" ADD COLUMN v public.vector(3) DEFAULT nextval('public.notes_id_seq'::regclass)",
                &names
            ),
            "ALTER TABLE \"Mixed Case\" ADD COLUMN v public.vector(3) DEFAULT nextval('notes_id_seq'::regclass)"
        );
        assert_eq!(
            unqualify_public("SELECT mypublic.notes, public.notesx", &names),
            "SELECT mypublic.notes, public.notesx"
        );
        assert_eq!(
            unqualify_public("CREATE SCHEMA public", &names),
            "CREATE SCHEMA public"
        );
    }
}

fn names<'a>(h: impl IntoIterator<Item = &'a Hazard>) -> String {
    h.into_iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Plan online DDL (`CREATE INDEX CONCURRENTLY`, `NOT VALID` + `VALIDATE`).
    pub online: bool,
    /// Hazards accepted; `data_loss` and `breaking_change` are refused unless listed here.
    pub allow_hazards: BTreeSet<Hazard>,
    /// The time that names the new version.
    pub now: SystemTime,
    /// How the shadow databases are built (which extensions pgfleet may create for the files).
    pub shadow: ShadowOptions,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            online: true,
            allow_hazards: BTreeSet::new(),
            now: SystemTime::now(),
            shadow: ShadowOptions::default(),
        }
    }
}

/// Hazards `gen` refuses to write without consent. Others (index builds, rewrites, long locks,
/// conversions that may fail) are written as comments for review: a `may_fail` step loses nothing,
/// the migration fails and rolls back on a database holding a value that does not fit.
pub const NEEDS_CONSENT: [Hazard; 2] = [Hazard::DataLoss, Hazard::BreakingChange];

/// The migrations of `dir` as a schema source, in version order. Pass it to
/// [`shadow::desired_model`], which refuses server-level statements in it
/// ([`pgfleet_pg::guard`]) and replays it as an unprivileged role.
pub fn replay_source(dir: &MigrationDir) -> SchemaSource {
    SchemaSource {
        files: dir
            .migrations
            .iter()
            .map(|m| SourceFile {
                path: m.path.clone(),
                sql: m.sql.clone(),
            })
            .collect(),
    }
}

/// The plan from the replayed migrations of `dir` to `schema`, built on the dev server `dev`.
///
/// # Errors
/// [`GenError::Replay`], [`GenError::Desired`] (with file:line of the SQL error, or of a refused
/// server-level statement).
pub async fn diff(
    dev: &Config,
    dir: &MigrationDir,
    schema: &SchemaSource,
    online: bool,
    shadow: &ShadowOptions,
) -> Result<Plan, GenError> {
    Ok(diff_models(dev, dir, schema, online, shadow).await?.0)
}

/// The plan, and the names of the user objects in schema `public` on either side.
async fn diff_models(
    dev: &Config,
    dir: &MigrationDir,
    schema: &SchemaSource,
    online: bool,
    opts: &ShadowOptions,
) -> Result<(Plan, BTreeSet<String>), GenError> {
    let current = shadow::desired_model(dev, &replay_source(dir), opts)
        .await
        .map_err(GenError::Replay)?;
    let desired = shadow::desired_model(dev, schema, opts)
        .await
        .map_err(GenError::Desired)?;
    let plan = planner::plan(
        &current,
        &desired,
        &PlanOptions {
            online,
            ..PlanOptions::default()
        },
    );
    let mut names = public_object_names(&current);
    names.extend(public_object_names(&desired));
    Ok((plan, names))
}

/// Names of the user objects in `public`: tables, views, sequences, types, functions, indexes.
pub fn public_object_names(m: &pgfleet_schema::Model) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let public = |q: &pgfleet_schema::QualName| q.schema == "public";
    for (q, t) in &m.tables {
        if public(q) {
            out.insert(q.name.clone());
            out.extend(t.indexes.keys().cloned());
        }
    }
    for (q, v) in &m.views {
        if public(q) {
            out.insert(q.name.clone());
            out.extend(v.indexes.keys().cloned());
        }
    }
    out.extend(
        m.sequences
            .keys()
            .filter(|q| public(q))
            .map(|q| q.name.clone()),
    );
    out.extend(m.enums.keys().filter(|q| public(q)).map(|q| q.name.clone()));
    out.extend(
        m.domains
            .keys()
            .filter(|q| public(q))
            .map(|q| q.name.clone()),
    );
    out.extend(
        m.functions
            .keys()
            .filter(|f| public(&f.name))
            .map(|f| f.name.name.clone()),
    );
    out
}

/// Writes references to the user's own objects in `public` without the schema (`public.notes` →
/// `notes`), so a migration runs in whatever schema `search_path` names first: `public` for a
/// database, the tenant's schema for a schema-per-tenant tenant. References to extension objects
/// (`public.vector(3)`, `public.vector_cosine_ops`) stay qualified: extensions live in `public`
/// for every tenant.
pub fn unqualify_public(sql: &str, names: &BTreeSet<String>) -> String {
    const PREFIX: &str = "public.";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find(PREFIX) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + PREFIX.len()..];
        let boundary = before
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '"' || c == '.' || c == '$'));
        let name = if let Some(quoted) = after.strip_prefix('"') {
            quoted.find('"').map(|end| quoted[..end].to_string())
        } else {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(after.len());
            Some(after[..end].to_string())
        };
        out.push_str(&rest[..i]);
        if boundary && name.is_some_and(|n| names.contains(&n)) {
            // Drop the prefix.
        } else {
            out.push_str(PREFIX);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// What `gen` did.
#[derive(Debug, Clone)]
pub enum GenOutcome {
    /// The migrations already produce the schema; nothing was written.
    UpToDate,
    /// New migration files were written (and `pgfleet.sum` updated).
    Written {
        /// The files, in order.
        files: Vec<PathBuf>,
        /// The plan they hold.
        plan: Plan,
    },
}

/// Writes the next migration(s) named `name` into `dir` to bring it to `schema`.
///
/// # Errors
/// See [`GenError`]. The directory must match its `pgfleet.sum` first.
pub async fn generate(
    dev: &Config,
    dir: &MigrationDir,
    schema: &SchemaSource,
    name: &str,
    opts: &GenOptions,
) -> Result<GenOutcome, GenError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(GenError::BadName(name.to_string()));
    }
    sum::verify(dir)?;
    let (plan, names) = diff_models(dev, dir, schema, opts.online, &opts.shadow).await?;
    if plan.is_empty() {
        return Ok(GenOutcome::UpToDate);
    }
    let consent: BTreeSet<Hazard> = NEEDS_CONSENT
        .iter()
        .filter(|h| !opts.allow_hazards.contains(h))
        .copied()
        .collect();
    let refused: Vec<Hazard> = plan
        .hazards()
        .into_iter()
        .filter(|h| consent.contains(h))
        .collect();
    if !refused.is_empty() {
        let steps = plan
            .steps
            .iter()
            .filter(|s| s.hazards.iter().any(|h| refused.contains(h)))
            .map(|s| {
                let hs: Vec<&str> = s.hazards.iter().map(|h| h.name()).collect();
                format!("  - {} [{}]", s.description, hs.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n");
        return Err(GenError::Refused { refused, steps });
    }
    let mut plan = plan;
    for step in &mut plan.steps {
        step.sql = unqualify_public(&step.sql, &names);
    }
    let files = render_files(dir, &plan, name, schema, opts.now);
    let mut written = Vec::new();
    for (file_name, text) in &files {
        let path = dir.path.join(file_name);
        let io = |source| GenError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir.path).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    let check = async {
        let new_dir = MigrationDir::load(&dir.path)?;
        let remaining = diff(dev, &new_dir, schema, opts.online, &opts.shadow).await?;
        if !remaining.is_empty() {
            return Err(GenError::NotConverged(remaining));
        }
        sum::write(&new_dir)?;
        Ok(())
    };
    if let Err(e) = check.await {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(GenOutcome::Written {
        files: written,
        plan,
    })
}

/// `(file name, text)` of each new file: runs of transactional steps, and runs of steps that cannot
/// run in a transaction, each in a file of its own.
fn render_files(
    dir: &MigrationDir,
    plan: &Plan,
    name: &str,
    schema: &SchemaSource,
    now: SystemTime,
) -> Vec<(String, String)> {
    let mut groups: Vec<Plan> = Vec::new();
    for step in &plan.steps {
        match groups.last_mut() {
            Some(g) if g.steps[0].transactional == step.transactional => g.steps.push(step.clone()),
            _ => groups.push(Plan {
                steps: vec![step.clone()],
            }),
        }
    }
    let source: Vec<String> = schema
        .files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    let mut latest = dir.latest().map(str::to_string);
    let count = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let version = dir::next_version(now, latest.as_deref());
            latest = Some(version.clone());
            let file_name = if count == 1 {
                format!("{version}_{name}.sql")
            } else {
                format!("{version}_{name}_{}.sql", i + 1)
            };
            let mut text = String::new();
            if !group.steps[0].transactional {
                text.push_str(NO_TRANSACTION);
                text.push('\n');
            }
            // The planner creates functions before the tables their bodies use; SQL-language
            // bodies are checked at creation unless this is off (for this migration only).
            let has_function = group.steps[0].transactional
                && group.steps.iter().any(|st| {
                    let l = st.sql.trim_start().to_ascii_lowercase();
                    l.starts_with("create function")
                        || l.starts_with("create or replace function")
                        || l.starts_with("create procedure")
                        || l.starts_with("create or replace procedure")
                });
            text.push_str(&format!(
                "-- Generated by `pgfleet gen {name}` from {}.\n",
                source.join(", ")
            ));
            let hazards = group.hazards();
            if !hazards.is_empty() {
                text.push_str(&format!("-- Hazards: {}.\n", names(&hazards)));
            }
            if count > 1 {
                text.push_str(&format!(
                    "-- Part {} of {count}: {}.\n",
                    i + 1,
                    if group.steps[0].transactional {
                        "runs in one transaction"
                    } else {
                        "runs statement by statement, outside a transaction"
                    }
                ));
            }
            text.push('\n');
            if has_function {
                text.push_str("SET LOCAL check_function_bodies = off;\n\n");
            }
            text.push_str(group.to_sql().trim_end());
            text.push('\n');
            (file_name, text)
        })
        .collect()
}
