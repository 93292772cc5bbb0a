//! Splitting SQL text into statements, the way psql does: semicolons end statements except inside
//! quotes, dollar quotes, comments, parentheses and `BEGIN ATOMIC … END` bodies.
//!
//! pgfleet runs schema files as one batch (PostgreSQL parses them). The splitter says *where* an
//! error happened when PostgreSQL reports no position (e.g. "relation already exists"), and gives
//! [`crate::guard`] and [`crate::extensions`] the statements they look at. A statement it splits
//! wrongly makes a location less precise, or lets a server-level statement past the guard's clear
//! error: the unprivileged role that replays schema files still stops it (see [`crate::shadow`]).

/// A statement of a SQL text: its text and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement, without the terminating semicolon.
    pub text: &'a str,
    /// Line of its first non-blank character.
    pub line: usize,
}

/// Splits `sql` into statements (empty ones — blank or comment-only — are left out).
pub fn statements(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut paren = 0i32;
    let mut begin_depth = 0i32;
    let mut words: Vec<String> = Vec::new(); // the statement's first words, for CREATE FUNCTION … BEGIN ATOMIC
    while i < bytes.len() {
        if let Some(end) = skip_quoted(sql, i) {
            i = end;
            continue;
        }
        let c = bytes[i];
        match c {
            b'(' => paren += 1,
            b')' => paren -= 1,
            b';' if paren <= 0 && begin_depth <= 0 => {
                push(sql, start, i, &mut out);
                start = i + 1;
                words.clear();
                begin_depth = 0;
                paren = 0;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = sql[i..]
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '$'))
                    .map_or(bytes.len(), |n| i + n);
                let word = sql[i..end].to_ascii_lowercase();
                let in_routine = words.first().is_some_and(|w| w == "create")
                    && words.iter().any(|w| w == "function" || w == "procedure");
                match word.as_str() {
                    "begin" | "case" if in_routine => begin_depth += 1,
                    "end" if begin_depth > 0 => begin_depth -= 1,
                    _ => {}
                }
                if words.len() < 8 {
                    words.push(word);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push(sql, start, bytes.len(), &mut out);
    out
}

/// Where the comment, string literal, quoted identifier or dollar-quoted string that starts at
/// byte `i` of `sql` ends: the byte after it (`sql.len()` when it is not closed), or `None` when
/// none starts there (a `$1` parameter, a lone `-`). A string that follows an `E` (or `e`) is read
/// with backslash escapes. Shared by [`statements`] and the wire front door's reading of client
/// SQL, so both see quotes the same way.
pub fn skip_quoted(sql: &str, i: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    let mut j = i;
    match bytes.get(i)? {
        b'-' if bytes.get(i + 1) == Some(&b'-') => {
            Some(sql[i..].find('\n').map_or(bytes.len(), |n| i + n))
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            let mut depth = 0;
            while j < bytes.len() {
                if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            Some(j.min(bytes.len()))
        }
        b'\'' => {
            let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E');
            j += 1;
            while j < bytes.len() {
                if escapes && bytes[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if bytes[j] == b'\'' {
                    if bytes.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            Some((j + 1).min(bytes.len()))
        }
        b'"' => {
            j += 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += 1;
            }
            Some((j + 1).min(bytes.len()))
        }
        b'$' => {
            // $tag$ … $tag$ (a tag is empty or an identifier not starting with a digit).
            let rest = &sql[i + 1..];
            let end = rest.find('$')?;
            let tag = &rest[..end];
            let is_tag = tag.chars().all(|ch| ch.is_alphanumeric() || ch == '_')
                && !tag.starts_with(|ch: char| ch.is_ascii_digit());
            if !is_tag {
                return None;
            }
            let delim = &sql[i..i + end + 2];
            let body = i + delim.len();
            Some(match sql[body..].find(delim) {
                Some(close) => body + close + delim.len(),
                None => bytes.len(),
            })
        }
        _ => None,
    }
}

fn push<'a>(sql: &'a str, start: usize, end: usize, out: &mut Vec<Statement<'a>>) {
    let text = &sql[start..end.min(sql.len())];
    let code = skip_blanks_and_comments(text);
    if !code.trim().is_empty() {
        let offset = start + (text.len() - code.len());
        let line = sql[..offset].matches('\n').count() + 1;
        out.push(Statement {
            text: code.trim_end(),
            line,
        });
    }
}

/// `text` from its first character that is neither blank nor in a leading comment.
fn skip_blanks_and_comments(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |n| &r[n..]).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |n| &r[n + 2..]).trim_start();
        } else {
            return rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<(usize, String)> {
        statements(sql)
            .into_iter()
            .map(|s| (s.line, s.text.to_string()))
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let sql = "CREATE TABLE a (x text DEFAULT ';');\n-- comment; with semicolon\n\nCREATE TABLE \"b;\" (y int); /* c; */ SELECT E'\\';'";
        assert_eq!(
            texts(sql),
            vec![
                (1, "CREATE TABLE a (x text DEFAULT ';')".into()),
                (4, "CREATE TABLE \"b;\" (y int)".into()),
                (4, "SELECT E'\\';'".into()),
            ]
        );
    }

    #[test]
    fn keeps_function_bodies_whole() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$;\n\
                   CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;\n\
                   CREATE TABLE t (a int);\n";
        let s = texts(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].1.ends_with("$body$"));
        assert!(s[1].1.ends_with("SELECT 2; END"), "{s:?}");
        assert_eq!(s[2], (3, "CREATE TABLE t (a int)".into()));
    }

    #[test]
    fn comment_only_and_blank_statements_are_dropped() {
        assert!(texts("  ;\n-- nothing\n;").is_empty());
        assert_eq!(texts("SELECT 1").len(), 1);
    }
}
