//! Refuses server-level statements in schema and migration files, with file and line, before
//! anything runs.
//!
//! A schema file describes the schema of one database. Statements that act on the server — on
//! databases, roles and their memberships, tablespaces, the server's configuration, its files and
//! programs, subscriptions, event triggers, the session's role, owners — belong to operators, not
//! to schema files, so [`check_source`] refuses them with a clear error instead of letting them run.
//!
//! **This filter is for clear errors, not the protection.** It reads the statements of the
//! psql-style splitter ([`crate::split`]) and matches key words (case-insensitive, comments and
//! whitespace skipped); it cannot see inside dynamic SQL (`DO $$ … EXECUTE 'DROP DATABASE …' $$`),
//! function bodies, or statements PostgreSQL splits differently than the splitter does. What
//! protects the server is that [`crate::shadow`] replays the files logged in as a throwaway role
//! that is not a superuser, owns only the shadow database and holds no other privilege: whatever
//! the filter misses fails there with PostgreSQL's permission error.
//!
//! ```
//! use pgfleet_pg::guard::{check_source, check_statement};
//! use pgfleet_pg::source::SchemaSource;
//!
//! assert!(check_statement("COPY t FROM STDIN").is_none());
//! assert_eq!(check_statement("copy t from program 'id'").unwrap().statement_kind, "COPY … PROGRAM");
//! let err = check_source(&SchemaSource::from_sql("e.sql", "CREATE TABLE t (id int);\nDROP DATABASE victim;"))
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("e.sql:2: DROP DATABASE is refused"));
//! ```

use std::path::Path;

use crate::lex::{self, Kind, Token};
use crate::shadow::error::ShadowError;
use crate::source::SchemaSource;

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the statement is, e.g. `DROP DATABASE`, `COPY … PROGRAM`, `GRANT role TO role`.
    pub statement_kind: String,
    /// Why it does not belong in a schema file.
    pub why: &'static str,
}

const DATABASE: &str = "databases are server-level objects, not part of a schema";
const ROLE: &str = "roles, their passwords and attributes are server-level, not part of a schema";
const MEMBERSHIP: &str = "role membership is server-level, not part of a schema";
const SYSTEM: &str = "it changes the server's configuration";
const TABLESPACE: &str = "tablespaces are server-level storage";
const PROGRAM: &str = "it runs a program on the database server";
const SERVER_FILE: &str = "it reads or writes a file on the database server (COPY … FROM STDIN and COPY … TO STDOUT are allowed)";
const LOAD: &str = "it loads a library into the server";
const SUBSCRIPTION: &str =
    "subscriptions connect the server to another server (logical replication)";
const SESSION_ROLE: &str = "it switches the session to another role";
const EVENT_TRIGGER: &str =
    "event triggers fire on every DDL statement of the database and need a superuser";
const OWNER: &str =
    "pgfleet does not manage owners: objects belong to the role that applies the schema";
const OWNED: &str = "it acts on everything a role owns";
const SHARED: &str = "databases, roles and tablespaces are server-level objects";

/// Whether `stmt` (one statement, as the splitter returns it) is refused, and why.
pub fn check_statement(stmt: &str) -> Option<Refusal> {
    let t = lex::tokens(stmt);
    let word = |i: usize| -> String {
        t.get(i)
            .filter(|tok| tok.kind == Kind::Word)
            .map(|tok| tok.text.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let refuse = |kind: String, why: &'static str| {
        Some(Refusal {
            statement_kind: kind,
            why,
        })
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let verb = w0.to_uppercase();
    match w0.as_str() {
        "create" | "alter" | "drop" => match w1.as_str() {
            "database" => refuse(format!("{verb} DATABASE"), DATABASE),
            "role" | "group" => refuse(format!("{verb} {}", w1.to_uppercase()), ROLE),
            "user" if w2 != "mapping" => refuse(format!("{verb} USER"), ROLE),
            "tablespace" => refuse(format!("{verb} TABLESPACE"), TABLESPACE),
            "subscription" => refuse(format!("{verb} SUBSCRIPTION"), SUBSCRIPTION),
            "event" if w2 == "trigger" => refuse(format!("{verb} EVENT TRIGGER"), EVENT_TRIGGER),
            "system" if w0 == "alter" => refuse("ALTER SYSTEM".into(), SYSTEM),
            "owned" if w0 == "drop" => refuse("DROP OWNED".into(), OWNED),
            "schema" if w0 == "create" && top(&t).any(|tok| tok.is("authorization")) => {
                refuse("CREATE SCHEMA … AUTHORIZATION".into(), OWNER)
            }
            _ if w0 == "alter" && owner_to(&t) => refuse("ALTER … OWNER TO".into(), OWNER),
            _ => None,
        },
        "grant" | "revoke" => {
            let until = if w0 == "grant" { "to" } else { "from" };
            let head: Vec<&Token<'_>> = top(&t).take_while(|tok| !tok.is(until)).collect();
            match head.iter().position(|tok| tok.is("on")) {
                None => refuse(
                    if w0 == "grant" {
                        "GRANT role TO role".into()
                    } else {
                        "REVOKE role FROM role".into()
                    },
                    MEMBERSHIP,
                ),
                Some(on) => {
                    let object = head.get(on + 1).map(|tok| tok.text.to_ascii_lowercase());
                    match object.as_deref() {
                        Some(o @ ("database" | "tablespace")) => {
                            refuse(format!("{verb} … ON {}", o.to_uppercase()), SHARED)
                        }
                        Some("parameter") => refuse(format!("{verb} … ON PARAMETER"), SYSTEM),
                        _ => None,
                    }
                }
            }
        }
        "copy" => {
            let mut rest = top(&t)
                .skip(1)
                .skip_while(|tok| !(tok.is("from") || tok.is("to")));
            rest.next()?;
            match rest.next() {
                Some(tok) if tok.is("stdin") || tok.is("stdout") => None,
                Some(tok) if tok.is("program") => refuse("COPY … PROGRAM".into(), PROGRAM),
                _ => refuse("COPY to or from a server file".into(), SERVER_FILE),
            }
        }
        "load" => refuse("LOAD".into(), LOAD),
        "set" | "reset" => {
            let scope = matches!(w1.as_str(), "session" | "local")
                && !(w1 == "session" && w2 == "authorization");
            let i = usize::from(w0 == "set" && scope) + 1;
            let name = t.get(i).and_then(Token::name).unwrap_or_default();
            let next = word(i + 1);
            if name == "role" {
                refuse(format!("{verb} ROLE"), SESSION_ROLE)
            } else if name == "session_authorization"
                || (name == "session" && next == "authorization")
            {
                refuse(format!("{verb} SESSION AUTHORIZATION"), SESSION_ROLE)
            } else {
                None
            }
        }
        "reassign" => refuse("REASSIGN OWNED".into(), OWNED),
        "comment" if w1 == "on" && matches!(w2.as_str(), "database" | "role" | "tablespace") => {
            refuse(format!("COMMENT ON {}", w2.to_uppercase()), SHARED)
        }
        _ => None,
    }
}

/// Tokens outside parentheses.
fn top<'t, 'a>(t: &'t [Token<'a>]) -> impl Iterator<Item = &'t Token<'a>> {
    t.iter().filter(|tok| tok.depth == 0)
}

/// `… OWNER TO …` outside parentheses, not a rename (`RENAME [COLUMN] owner TO x`).
fn owner_to(t: &[Token<'_>]) -> bool {
    let top: Vec<&Token<'_>> = top(t).collect();
    top.windows(2).enumerate().any(|(i, w)| {
        w[0].is("owner")
            && w[1].is("to")
            && !(i > 0
                && ["rename", "column", "constraint", "attribute"]
                    .iter()
                    .any(|kw| top[i - 1].is(kw)))
    })
}

/// Checks every statement of `sql` (a file at `path`).
///
/// # Errors
/// [`ShadowError::Refused`] for the first refused statement, with its line.
pub fn check_sql(path: &Path, sql: &str) -> Result<(), ShadowError> {
    for stmt in crate::split::statements(sql) {
        if let Some(r) = check_statement(stmt.text) {
            return Err(ShadowError::Refused {
                file: path.to_path_buf(),
                line: stmt.line,
                statement_kind: r.statement_kind,
                why: r.why.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks every file of `source` in order, before any of it runs: call it wherever schema or
/// migration files are accepted (`plan`, `apply`, `gen`, recording a fleet target).
///
/// # Errors
/// [`ShadowError::Refused`] naming the file, line and kind of the first refused statement.
pub fn check_source(source: &SchemaSource) -> Result<(), ShadowError> {
    source
        .files
        .iter()
        .try_for_each(|f| check_sql(&f.path, &f.sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(stmt: &str) -> Option<String> {
        check_statement(stmt).map(|r| r.statement_kind)
    }

    #[test]
    fn refuses_server_level_statements() {
        let refused = [
            ("DROP DATABASE victim", "DROP DATABASE"),
            ("create database x template template0", "CREATE DATABASE"),
            ("ALTER DATABASE app SET work_mem = '1GB'", "ALTER DATABASE"),
            ("ALTER ROLE postgres PASSWORD $$changed$$", "ALTER ROLE"),
            ("Alter /* sneaky */ Role\n postgres SUPERUSER", "ALTER ROLE"),
            ("CREATE ROLE app LOGIN", "CREATE ROLE"),
            ("CREATE USER app", "CREATE USER"),
            ("ALTER USER app PASSWORD 'x'", "ALTER USER"),
            ("DROP GROUP g", "DROP GROUP"),
            (
                "GRANT pg_execute_server_program TO app",
                "GRANT role TO role",
            ),
            (
                "GRANT admins, readers TO app WITH ADMIN OPTION",
                "GRANT role TO role",
            ),
            ("REVOKE admins FROM app", "REVOKE role FROM role"),
            (
                "REVOKE ADMIN OPTION FOR admins FROM app",
                "REVOKE role FROM role",
            ),
            ("GRANT CONNECT ON DATABASE app TO x", "GRANT … ON DATABASE"),
            (
                "GRANT SET ON PARAMETER work_mem TO x",
                "GRANT … ON PARAMETER",
            ),
            (
                "REVOKE CREATE ON TABLESPACE t FROM x",
                "REVOKE … ON TABLESPACE",
            ),
            ("ALTER SYSTEM SET shared_buffers = '1GB'", "ALTER SYSTEM"),
            ("CREATE TABLESPACE t LOCATION '/tmp'", "CREATE TABLESPACE"),
            ("DROP TABLESPACE t", "DROP TABLESPACE"),
            ("COPY t FROM PROGRAM $$touch /tmp/x$$", "COPY … PROGRAM"),
            ("copy (select 1) to program 'sh'", "COPY … PROGRAM"),
            ("COPY t FROM '/etc/passwd'", "COPY to or from a server file"),
            ("COPY t TO E'/tmp/out'", "COPY to or from a server file"),
            (
                "COPY t (a, b) FROM $f$/tmp/in$f$ WITH (FORMAT csv)",
                "COPY to or from a server file",
            ),
            ("LOAD 'plugin'", "LOAD"),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
                "CREATE SUBSCRIPTION",
            ),
            ("ALTER SUBSCRIPTION s DISABLE", "ALTER SUBSCRIPTION"),
            ("SET ROLE postgres", "SET ROLE"),
            ("set local role postgres", "SET ROLE"),
            ("SET role = 'postgres'", "SET ROLE"),
            ("SET \"role\" TO postgres", "SET ROLE"),
            (
                "SET SESSION AUTHORIZATION postgres",
                "SET SESSION AUTHORIZATION",
            ),
            (
                "SET LOCAL SESSION AUTHORIZATION postgres",
                "SET SESSION AUTHORIZATION",
            ),
            (
                "SET session_authorization = postgres",
                "SET SESSION AUTHORIZATION",
            ),
            ("RESET ROLE", "RESET ROLE"),
            ("RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION"),
            (
                "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
                "CREATE EVENT TRIGGER",
            ),
            ("DROP EVENT TRIGGER e", "DROP EVENT TRIGGER"),
            ("ALTER TABLE t OWNER TO postgres", "ALTER … OWNER TO"),
            ("ALTER SCHEMA s OWNER TO CURRENT_USER", "ALTER … OWNER TO"),
            (
                "CREATE SCHEMA s AUTHORIZATION postgres",
                "CREATE SCHEMA … AUTHORIZATION",
            ),
            ("REASSIGN OWNED BY app TO postgres", "REASSIGN OWNED"),
            ("DROP OWNED BY app", "DROP OWNED"),
            ("COMMENT ON DATABASE app IS 'x'", "COMMENT ON DATABASE"),
            ("COMMENT ON ROLE app IS 'x'", "COMMENT ON ROLE"),
        ];
        for (stmt, want) in refused {
            assert_eq!(kind(stmt).as_deref(), Some(want), "{stmt}");
        }
    }

    #[test]
    fn allows_schema_and_data_statements() {
        let allowed = [
            "CREATE TABLE t (id int, owner text)",
            "CREATE TABLE database (role text, \"user\" text)",
            "ALTER TABLE t RENAME COLUMN owner TO owner_id",
            "ALTER TABLE t RENAME owner TO owner_id",
            "ALTER TABLE t ADD COLUMN owner_to text",
            "GRANT SELECT ON t TO app",
            "GRANT SELECT (id, owner) ON TABLE t TO app",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
            "GRANT USAGE ON SCHEMA s TO app",
            "REVOKE GRANT OPTION FOR SELECT ON t FROM app",
            "REVOKE ALL ON FUNCTION f() FROM PUBLIC",
            "COPY t FROM STDIN",
            "copy t (a, b) from stdin with (format csv)",
            "COPY (SELECT * FROM t WHERE x = 'PROGRAM') TO STDOUT",
            "COPY t TO STDOUT",
            "SET search_path = public",
            "SET LOCAL statement_timeout = 0",
            "SET SESSION check_function_bodies = off",
            "RESET search_path",
            "RESET ALL",
            "UPDATE t SET owner = 'x' WHERE owner IS NULL",
            "INSERT INTO t (id) SELECT g FROM generate_series(1, 10) g",
            "CREATE USER MAPPING FOR CURRENT_USER SERVER s",
            "CREATE EXTENSION vector",
            "CREATE SCHEMA app",
            "COMMENT ON SCHEMA app IS 'the app'",
            "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch()",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO app",
            "DO $$ BEGIN EXECUTE 'DROP DATABASE victim'; END $$",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE x SUPERUSER'",
            "SELECT 'DROP DATABASE x'",
            "-- DROP DATABASE x\nCREATE TABLE t (id int)",
        ];
        for stmt in allowed {
            assert_eq!(kind(stmt), None, "{stmt}");
        }
    }

    #[test]
    fn the_error_names_file_line_and_what_to_do() {
        let sql = "CREATE TABLE t (id int);\n\n-- the attack\nDROP DATABASE victim;\nCOPY t FROM PROGRAM $$touch /tmp/x$$;\n";
        let err = check_sql(Path::new("e.sql"), sql).unwrap_err();
        assert!(
            matches!(&err, ShadowError::Refused { line: 4, statement_kind, .. } if statement_kind == "DROP DATABASE"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("e.sql:4: DROP DATABASE is refused"),
            "{msg}"
        );
        assert!(msg.contains("operators, not"), "{msg}");
        assert!(check_sql(Path::new("ok.sql"), "CREATE TABLE t (id int);").is_ok());
    }
}
