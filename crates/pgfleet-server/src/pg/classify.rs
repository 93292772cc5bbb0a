//! What a client's SQL means for pooling, read lexically (no parse, no catalog): statements that
//! leave state in the server session beyond their transaction **pin** the client to its server
//! session in transaction mode (so they work as on PostgreSQL itself), and statements that would
//! change who the session is are **refused**.
//!
//! Pinned: `SET` / `RESET` of a setting (not `SET LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`),
//! `LISTEN`, `PREPARE`, `DEALLOCATE`, `DECLARE … WITH HOLD`, `CREATE TEMP …`, `SELECT … INTO
//! TEMP`, `DISCARD` (but `ALL`), `LOAD`, and any call of `pg_advisory_lock`,
//! `pg_advisory_lock_shared`, `pg_try_advisory_lock`, `pg_try_advisory_lock_shared` or
//! `set_config`. Refused: `SET ROLE`, `RESET ROLE`, `SET SESSION AUTHORIZATION`, `RESET SESSION
//! AUTHORIZATION` (also `LOCAL`), and `DISCARD ALL` (pgfleet resets sessions between clients
//! itself, and it would also drop the statements pgfleet prepared).
//!
//! What a lexical reading cannot see (a `SET` run by a function, `EXECUTE` in a `DO` block) is
//! not pinned; see docs/pg-wire.md.

/// What a piece of SQL (one or several statements) asks of the pooler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing beyond its transaction.
    Plain,
    /// Leaves session state: the client keeps its server session (`reason` names the statement).
    Pin {
        /// What leaves state (`SET`, `LISTEN`, …).
        reason: &'static str,
        /// It deallocates every prepared statement of the session (`DEALLOCATE ALL`).
        forgets_prepared: bool,
    },
    /// Not allowed through the pooler (`reason` says which statement).
    Refuse(&'static str),
}

/// Functions whose effect outlives the transaction.
const SESSION_FUNCTIONS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "set_config",
];

/// Reads `sql`: the strongest verdict of its statements (refuse over pin over plain).
/// What the front door reads in a client's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Pinned, refused or neither.
    pub verdict: Verdict,
    /// Some statement may change rows or objects: not one that only reads, controls the
    /// transaction or changes settings (read by its first word; a `SELECT` that calls a function
    /// which writes is not seen).
    pub writes: bool,
}

/// Statements that start with these change no rows (`SELECT … INTO` and `EXPLAIN ANALYZE`
/// aside).
const READ_ONLY: &[&str] = &[
    "SELECT",
    "SHOW",
    "VALUES",
    "TABLE",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "RESET",
    "FETCH",
    "MOVE",
    "CLOSE",
    "DECLARE",
    "LISTEN",
    "UNLISTEN",
    "DEALLOCATE",
    "DISCARD",
    "PREPARE",
    "EXPLAIN",
];

/// Whether one statement (its words) may change rows or objects.
fn writes(words: &[&str]) -> bool {
    let Some(first) = words.first() else {
        return false;
    };
    if !READ_ONLY.iter().any(|k| first.eq_ignore_ascii_case(k)) {
        return true;
    }
    let has = |k: &str| words.iter().any(|w| w.eq_ignore_ascii_case(k));
    (first.eq_ignore_ascii_case("SELECT") && has("INTO"))
        || (first.eq_ignore_ascii_case("EXPLAIN") && has("ANALYZE"))
}

/// Reads `sql`: the strongest verdict of its statements (refuse over pin over plain).
pub fn classify(sql: &str) -> Verdict {
    read(sql).verdict
}

/// Reads `sql`: the strongest verdict of its statements, and whether one of them writes.
pub fn read(sql: &str) -> Reading {
    let mut verdict = Verdict::Plain;
    let mut wrote = false;
    each_statement(sql, |words| {
        wrote |= writes(words);
        let v = statement(words);
        verdict = match (verdict, v) {
            (Verdict::Refuse(_), _) | (Verdict::Pin { .. }, Verdict::Plain) => verdict,
            (_, Verdict::Refuse(_)) | (Verdict::Plain, _) => v,
            (
                Verdict::Pin {
                    reason,
                    forgets_prepared: a,
                },
                Verdict::Pin {
                    forgets_prepared: b,
                    ..
                },
            ) => Verdict::Pin {
                reason,
                forgets_prepared: a || b,
            },
        };
        !matches!(verdict, Verdict::Refuse(_))
    });
    Reading {
        verdict,
        writes: wrote,
    }
}

fn pin(reason: &'static str) -> Verdict {
    Verdict::Pin {
        reason,
        forgets_prepared: false,
    }
}

/// The verdict of one statement, given its words (keywords and identifiers in order, as
/// written; quoted identifiers with their opening quote, so `"set"` is not the keyword; string
/// literals, numbers and comments left out).
fn statement(words: &[&str]) -> Verdict {
    let is = |i: usize, k: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(k));
    let is_temp = |i: usize| is(i, "TEMP") || is(i, "TEMPORARY");
    let pair = |a: &str, b: &[&str]| {
        words
            .windows(2)
            .any(|p| p[0].eq_ignore_ascii_case(a) && b.iter().any(|b| p[1].eq_ignore_ascii_case(b)))
    };
    let v = if is(0, "SET") {
        let (local, at) = if is(1, "LOCAL") {
            (true, 2)
        } else if is(1, "SESSION") {
            (false, 2)
        } else {
            (false, 1)
        };
        if is(at, "ROLE") {
            Verdict::Refuse("SET ROLE")
        } else if (at == 2 && is(at, "AUTHORIZATION"))
            || (is(at, "SESSION") && is(at + 1, "AUTHORIZATION"))
        {
            Verdict::Refuse("SET SESSION AUTHORIZATION")
        } else if at == 1 && (is(1, "TRANSACTION") || is(1, "CONSTRAINTS")) {
            Verdict::Plain
        } else if is(at, "CHARACTERISTICS") {
            pin("SET SESSION CHARACTERISTICS")
        } else if local {
            Verdict::Plain
        } else {
            pin("SET")
        }
    } else if is(0, "RESET") {
        if is(1, "ROLE") {
            Verdict::Refuse("RESET ROLE")
        } else if is(1, "SESSION") && is(2, "AUTHORIZATION") {
            Verdict::Refuse("RESET SESSION AUTHORIZATION")
        } else {
            pin("RESET")
        }
    } else if is(0, "DISCARD") {
        if is(1, "ALL") {
            Verdict::Refuse("DISCARD ALL")
        } else {
            pin("DISCARD")
        }
    } else if is(0, "LISTEN") {
        pin("LISTEN")
    } else if is(0, "PREPARE") && !is(1, "TRANSACTION") {
        pin("PREPARE")
    } else if is(0, "DEALLOCATE") {
        Verdict::Pin {
            reason: "DEALLOCATE",
            forgets_prepared: is(1, "ALL") || (is(1, "PREPARE") && is(2, "ALL")),
        }
    } else if is(0, "LOAD") {
        pin("LOAD")
    } else if is(0, "DECLARE") && pair("WITH", &["HOLD"]) {
        pin("DECLARE … WITH HOLD")
    } else if is(0, "CREATE")
        && (is_temp(1)
            || ((is(1, "GLOBAL") || is(1, "LOCAL")) && is_temp(2))
            || (is(1, "OR") && is(2, "REPLACE") && is_temp(3)))
    {
        pin("CREATE TEMP")
    } else if pair("INTO", &["TEMP", "TEMPORARY"]) {
        pin("SELECT INTO TEMP")
    } else {
        Verdict::Plain
    };
    let calls_session_function = || {
        words.iter().any(|t| {
            let name = t.rsplit('.').next().unwrap_or(t);
            SESSION_FUNCTIONS
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
        })
    };
    if v == Verdict::Plain && calls_session_function() {
        return pin("a session-level function (advisory lock, set_config)");
    }
    v
}

/// Calls `f` with the words of each statement of `sql` (see [`statement`]) until it returns
/// `false`; statements end at a `;` outside quotes. One allocation, whatever the SQL.
fn each_statement<'a>(sql: &'a str, mut f: impl FnMut(&[&'a str]) -> bool) {
    let b = sql.as_bytes();
    let mut cur: Vec<&'a str> = Vec::with_capacity(16);
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = pgfleet::pg::split::skip_quoted(sql, i) {
            match b[i] {
                // A quoted identifier is a word, never a keyword (it keeps its quote).
                b'"' => cur.push(&sql[i..end]),
                // `E'…'`: the `E` was read as a word; it is part of the string.
                b'\''
                    if i > 0
                        && matches!(b[i - 1], b'e' | b'E')
                        && cur.last().is_some_and(|w| w.eq_ignore_ascii_case("E")) =>
                {
                    cur.pop();
                }
                _ => {}
            }
            i = end;
            continue;
        }
        match b[i] {
            b';' => {
                if !cur.is_empty() && !f(&cur) {
                    return;
                }
                cur.clear();
                i += 1;
            }
            b'$' => {
                // A `$1` parameter: skipped as a number.
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || matches!(b[i], b'_' | b'$' | b'.')
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                cur.push(&sql[start..i]);
            }
            // Numbers (so `1e5` is not a word), operators, punctuation.
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    if !cur.is_empty() {
        f(&cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(sql: &str) -> bool {
        matches!(classify(sql), Verdict::Pin { .. })
    }
    fn refused(sql: &str) -> bool {
        matches!(classify(sql), Verdict::Refuse(_))
    }

    #[test]
    fn plain_statements_stay_plain() {
        for sql in [
            "SELECT 1",
            "select * from notes where body = 'SET ROLE x; LISTEN y'",
            "BEGIN; SET LOCAL statement_timeout = 5; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; COMMIT",
            "SET CONSTRAINTS ALL DEFERRED",
            "/* SET ROLE postgres */ SELECT $1::int -- LISTEN x",
            "SELECT $$ SET ROLE x $$, $tag$ ; LISTEN y $tag$",
            "SELECT \"set\" FROM t",
            "DECLARE c CURSOR FOR SELECT 1",
            "SELECT pg_advisory_xact_lock(1)",
            "INSERT INTO notes (body) VALUES (E'it\\'s; SET ROLE x')",
            "UNLISTEN *",
            "EXECUTE q(1)",
            "PREPARE TRANSACTION 'x'",
        ] {
            assert_eq!(classify(sql), Verdict::Plain, "{sql}");
        }
    }

    #[test]
    fn session_state_pins() {
        for sql in [
            "SET statement_timeout = 1000",
            "set search_path to other",
            "SET SESSION work_mem = '64MB'",
            "RESET work_mem",
            "RESET ALL",
            "LISTEN chan",
            "PREPARE q AS SELECT 1",
            "DEALLOCATE q",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "CREATE TEMP TABLE t (a int)",
            "create global temporary table t (a int)",
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "SELECT 1 INTO TEMP t",
            "SELECT pg_advisory_lock(42)",
            "SELECT pg_catalog.pg_try_advisory_lock(1, 2)",
            "SELECT set_config('x.y', 'z', false)",
            "DISCARD TEMP",
            "SELECT 1; SET datestyle = ISO",
        ] {
            assert!(pinned(sql), "{sql}: {:?}", classify(sql));
        }
        assert_eq!(
            classify("DEALLOCATE ALL"),
            Verdict::Pin {
                reason: "DEALLOCATE",
                forgets_prepared: true
            }
        );
    }

    #[test]
    fn who_the_session_is_cannot_change() {
        for sql in [
            "SET ROLE postgres",
            "set local role other",
            "SET SESSION AUTHORIZATION postgres",
            "SET LOCAL SESSION AUTHORIZATION x",
            "RESET ROLE",
            "reset session authorization",
            "DISCARD ALL",
            "SELECT 1; SET ROLE x",
            "SET x = 1; SET ROLE y",
            "BEGIN; /* */ SeT RoLe \"postgres\"; COMMIT",
        ] {
            assert!(refused(sql), "{sql}: {:?}", classify(sql));
        }
    }

    #[test]
    fn writes_are_told_from_reads() {
        for sql in [
            "SELECT 1",
            "begin; select * from t where a = 'INSERT'; commit",
            "SHOW work_mem",
            "EXPLAIN SELECT 1",
            "/* INSERT */ VALUES (1)",
        ] {
            assert!(!read(sql).writes, "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "select 1; update t set a = 2",
            "SELECT * INTO t2 FROM t",
            "EXPLAIN ANALYZE DELETE FROM t",
            "CALL p()",
            "TRUNCATE t",
        ] {
            assert!(read(sql).writes, "{sql}");
        }
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in [
            "'",
            "\"",
            "$a$",
            "/* /*",
            "E'\\",
            "$",
            "--",
            "SET \"",
            "\u{e9}\u{301}",
        ] {
            let _ = classify(sql);
        }
    }
}
