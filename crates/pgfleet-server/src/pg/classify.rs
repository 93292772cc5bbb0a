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
pub fn classify(sql: &str) -> Verdict {
    let mut verdict = Verdict::Plain;
    for words in statements(sql) {
        let v = statement(&words);
        verdict = match (verdict, v) {
            (Verdict::Refuse(_), _) => verdict,
            (_, Verdict::Refuse(_)) => v,
            (Verdict::Pin { .. }, Verdict::Plain) => verdict,
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
            (Verdict::Plain, v) => v,
        };
        if matches!(verdict, Verdict::Refuse(_)) {
            break;
        }
    }
    verdict
}

fn pin(reason: &'static str) -> Verdict {
    Verdict::Pin {
        reason,
        forgets_prepared: false,
    }
}

/// The verdict of one statement, given its words (upper-cased keywords and identifiers, in
/// order; string literals and comments left out).
fn statement(words: &[String]) -> Verdict {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let calls_session_function = words.iter().any(|t| {
        let name = t.rsplit('.').next().unwrap_or(t).to_ascii_lowercase();
        SESSION_FUNCTIONS.contains(&name.as_str())
    });
    let v = match w(0) {
        "SET" => {
            let (local, at) = match w(1) {
                "LOCAL" => (true, 2),
                "SESSION" => (false, 2),
                _ => (false, 1),
            };
            match (w(at), w(at + 1)) {
                ("ROLE", _) => Verdict::Refuse("SET ROLE"),
                ("AUTHORIZATION", _) if at == 2 => Verdict::Refuse("SET SESSION AUTHORIZATION"),
                ("SESSION", "AUTHORIZATION") => Verdict::Refuse("SET SESSION AUTHORIZATION"),
                ("TRANSACTION" | "CONSTRAINTS", _) if at == 1 => Verdict::Plain,
                ("CHARACTERISTICS", _) => pin("SET SESSION CHARACTERISTICS"),
                _ if local => Verdict::Plain,
                _ => pin("SET"),
            }
        }
        "RESET" => match (w(1), w(2)) {
            ("ROLE", _) => Verdict::Refuse("RESET ROLE"),
            ("SESSION", "AUTHORIZATION") => Verdict::Refuse("RESET SESSION AUTHORIZATION"),
            _ => pin("RESET"),
        },
        "DISCARD" => match w(1) {
            "ALL" => Verdict::Refuse("DISCARD ALL"),
            _ => pin("DISCARD"),
        },
        "LISTEN" => pin("LISTEN"),
        "PREPARE" if w(1) != "TRANSACTION" => pin("PREPARE"),
        "DEALLOCATE" => Verdict::Pin {
            reason: "DEALLOCATE",
            forgets_prepared: w(1) == "ALL" || (w(1) == "PREPARE" && w(2) == "ALL"),
        },
        "LOAD" => pin("LOAD"),
        "DECLARE" if has_pair(words, "WITH", "HOLD") => pin("DECLARE … WITH HOLD"),
        "CREATE" if is_temp(w(1)) || (matches!(w(1), "GLOBAL" | "LOCAL") && is_temp(w(2))) => {
            pin("CREATE TEMP")
        }
        "CREATE" if w(1) == "OR" && w(2) == "REPLACE" && is_temp(w(3)) => pin("CREATE TEMP"),
        _ if has_into_temp(words) => pin("SELECT INTO TEMP"),
        _ => Verdict::Plain,
    };
    if v == Verdict::Plain && calls_session_function {
        return pin("a session-level function (advisory lock, set_config)");
    }
    v
}

fn is_temp(w: &str) -> bool {
    matches!(w, "TEMP" | "TEMPORARY")
}

fn has_pair(words: &[String], a: &str, b: &str) -> bool {
    words.windows(2).any(|p| p[0] == a && p[1] == b)
}

fn has_into_temp(words: &[String]) -> bool {
    words.windows(2).any(|p| p[0] == "INTO" && is_temp(&p[1]))
}

/// The statements of `sql` as lists of words: identifiers and keywords upper-cased (quoted
/// identifiers kept as written, so `"set"` is not the keyword), strings, comments, numbers and
/// punctuation left out; statements end at a `;` outside quotes.
fn statements(sql: &str) -> Vec<Vec<String>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // E'…' strings allow backslash escapes; the E was read as a word already.
                let escapes = cur.last().is_some_and(|w| w == "E")
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E');
                if escapes {
                    cur.pop();
                }
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                let end = i.min(b.len());
                cur.push(format!("\"{}", &sql[start..end]));
                i += 1;
            }
            b'$' => {
                // $tag$ … $tag$ (or $$ … $$); a $1 parameter is skipped as a number.
                let rest = &sql[i + 1..];
                let tag_len = rest
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                let tag_ok = rest[tag_len..].starts_with('$')
                    && !rest[..tag_len].starts_with(|ch: char| ch.is_ascii_digit());
                if tag_ok {
                    let delim = &sql[i..i + tag_len + 2];
                    let body = i + delim.len();
                    i = match sql[body..].find(delim) {
                        Some(k) => body + k + delim.len(),
                        None => b.len(),
                    };
                } else {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
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
                cur.push(sql[start..i].to_ascii_uppercase());
            }
            _ => i += 1,
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
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
