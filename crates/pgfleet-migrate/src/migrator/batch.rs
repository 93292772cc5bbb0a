//! A transactional migration as one SQL text (`BEGIN`, its statements, its history row, `COMMIT`),
//! which the migrator sends in one round trip and the fleet batches for many tenants, and which
//! migrations may go into such a batch. The texts are sent with the simple protocol (no prepare
//! round trip), so the scope is quoted into them by [`ident`], and the history row
//! ([`history::applied_sql`]) holds its values as literals.

use std::borrow::Cow;

use pgfleet_schema::quote::ident;

use crate::dir::{Migration, MigrationDir};
use crate::history::{self, HistoryRow, RowState};

/// `SET LOCAL search_path` to `scope`, then `public` (nothing for the whole database).
pub(super) fn search_path_sql(scope: &str) -> String {
    if scope.is_empty() {
        String::new()
    } else {
        format!("SET LOCAL search_path = {}, public;", ident(scope))
    }
}

/// The text a statement of a migration runs as. Statements run as written, except when the
/// extensions were created beforehand by a role that may
/// ([`MigrateOptions::extensions_created`](super::MigrateOptions::extensions_created): pgfleet's
/// fleet migrations run as a role that may not create untrusted extensions): then
/// `CREATE EXTENSION name` runs as `CREATE EXTENSION IF NOT EXISTS name` and `COMMENT ON EXTENSION`
/// (only an extension's owner may run it; whoever created the extensions ran those comments too)
/// as `SELECT NULL`. The file and its checksum stay as written.
pub fn executable(statement: &str, extensions_created: bool) -> Cow<'_, str> {
    if !extensions_created {
        return statement.into();
    }
    if pgfleet_pg::extensions::parse_comment_on_extension(statement).is_some() {
        return "SELECT NULL".into();
    }
    pgfleet_pg::extensions::idempotent_create_extension(statement)
}

/// The history row of `m`, then `COMMIT`: the end of its transaction.
pub(super) fn record_sql(scope: &str, m: &Migration) -> String {
    format!("{}; COMMIT;", history::applied_sql(scope, m))
}

/// A transactional migration of `scope` as one SQL text: `BEGIN`, the fixed `search_path`, its
/// statements, its history row, `COMMIT`. Several of them (of several scopes) can be sent as one
/// batch: each commits on its own, and the first failure stops the batch.
pub fn transaction_sql(scope: &str, m: &Migration, extensions_created: bool) -> String {
    let mut batch = format!("BEGIN;{}\n", search_path_sql(scope));
    for stmt in m.statements() {
        batch.push_str(&executable(stmt.text, extensions_created));
        batch.push_str(";\n");
    }
    batch.push_str(&record_sql(scope, m));
    batch
}

/// The migrations to apply to a scope whose history is `rows`, when they can go into a batch with
/// [`transaction_sql`]: every recorded migration applied (none partial), unchanged and still in
/// `dir`, every pending one transactional and newer than the newest applied, and no imported
/// history to consult. `None` when anything else holds: [`migrate_on`](super::migrate_on) handles (or reports) it.
pub fn batchable<'a>(dir: &'a MigrationDir, rows: &[HistoryRow]) -> Option<Vec<&'a Migration>> {
    if dir.import.is_some() {
        return None;
    }
    for r in rows {
        let m = dir.get(&r.version)?;
        if r.state != RowState::Applied || m.checksum != r.checksum {
            return None;
        }
    }
    let latest = rows.iter().map(|r| r.version.as_str()).max();
    let pending: Vec<&Migration> = dir
        .migrations
        .iter()
        .filter(|m| !rows.iter().any(|r| r.version == m.version))
        .collect();
    if pending
        .iter()
        .any(|m| m.no_transaction || latest.is_some_and(|l| m.version.as_str() < l))
    {
        return None;
    }
    Some(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryRow;

    fn dir(files: &[(&str, &str)]) -> MigrationDir {
        MigrationDir::from_files(
            std::path::Path::new("m"),
            files
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn applied(m: &Migration) -> HistoryRow {
        HistoryRow {
            version: m.version.clone(),
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            state: RowState::Applied,
            statements_done: 0,
            statements_total: None,
            done_hash: None,
            started_at: String::new(),
            finished_at: None,
            duration_ms: None,
            last_error: None,
        }
    }

    #[test]
    fn only_clean_histories_with_transactional_newer_files_are_batchable() {
        let d = dir(&[
            ("20260101000000_a.sql", "CREATE TABLE a (id int);"),
            ("20260102000000_b.sql", "CREATE TABLE b (id int);"),
            ("20260103000000_c.sql", "CREATE TABLE c (id int);"),
        ]);
        let a = applied(&d.migrations[0]);
        let pending = |rows: &[HistoryRow]| {
            batchable(&d, rows).map(|p| p.iter().map(|m| m.version.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            pending(std::slice::from_ref(&a)),
            Some(vec!["20260102000000".into(), "20260103000000".into()])
        );
        assert_eq!(pending(&[]).map(|p| p.len()), Some(3));
        let all: Vec<HistoryRow> = d.migrations.iter().map(applied).collect();
        assert_eq!(pending(&all), Some(vec![]));
        // A partial row, an edited file, a file gone, an older pending file: the migrator decides.
        let mut partial = a.clone();
        partial.state = RowState::Partial;
        assert_eq!(pending(&[partial]), None);
        let mut edited = a.clone();
        edited.checksum = "sha256:other".into();
        assert_eq!(pending(&[edited]), None);
        let mut gone = a.clone();
        gone.version = "20250101000000".into();
        assert_eq!(pending(&[gone]), None);
        let b = applied(&d.migrations[1]);
        assert_eq!(pending(&[b]), None, "20260101000000 would run out of order");
        // A no-transaction file pending: the migrator runs it statement by statement.
        let d2 = dir(&[
            ("20260101000000_a.sql", "CREATE TABLE a (id int);"),
            (
                "20260102000000_i.sql",
                "-- pgfleet:no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);",
            ),
        ]);
        assert!(batchable(&d2, &[applied(&d2.migrations[0])]).is_none());
    }

    #[test]
    fn extension_statements_change_only_when_the_extensions_were_created_beforehand() {
        assert_eq!(
            executable("CREATE EXTENSION vector", false),
            "CREATE EXTENSION vector"
        );
        assert_eq!(
            executable("CREATE EXTENSION vector", true),
            "CREATE EXTENSION IF NOT EXISTS vector"
        );
        assert_eq!(
            executable("COMMENT ON EXTENSION vector IS 'v'", true),
            "SELECT NULL"
        );
        for same in [
            "CREATE EXTENSION IF NOT EXISTS vector",
            "CREATE TABLE extension (id int)",
            "COMMENT ON TABLE t IS 'x'",
        ] {
            assert_eq!(executable(same, true), same);
        }
    }

    #[test]
    fn a_transaction_text_holds_the_path_the_statements_and_the_history_row() {
        let d = dir(&[(
            "20260101000000_a.sql",
            "CREATE TABLE a (id int);\nCREATE INDEX a_i ON a (id);",
        )]);
        let sql = transaction_sql("t1'x", &d.migrations[0], false);
        assert!(
            sql.starts_with("BEGIN;SET LOCAL search_path = \"t1'x\", public;"),
            "{sql}"
        );
        assert!(
            sql.contains("CREATE TABLE a (id int);") && sql.contains("CREATE INDEX a_i ON a (id);")
        );
        assert!(sql.contains("VALUES ('t1''x', '20260101000000'"), "{sql}");
        assert!(sql.trim_end().ends_with("COMMIT;"));
        assert_eq!(
            transaction_sql("", &d.migrations[0], false).lines().next(),
            Some("BEGIN;")
        );
    }
}
