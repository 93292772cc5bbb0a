//! `CREATE EXTENSION` statements of schema and migration files: which extensions a file creates, and
//! the same statements made idempotent.
//!
//! Schema files are replayed by an unprivileged role (see [`crate::shadow`]), which cannot create
//! untrusted extensions such as pgvector. pgfleet creates the extensions it is allowed to create
//! itself, as the administrator, before the files run; the files' own `CREATE EXTENSION x` must then
//! not fail on the extension that already exists, so they are run as `CREATE EXTENSION IF NOT
//! EXISTS x` ([`idempotent_sql`]). The same applies to migrations run by a role that is not a
//! superuser.
//!
//! ```
//! use pgfleet_pg::extensions::{created_extensions, idempotent_create_extension};
//!
//! let sql = "CREATE SCHEMA ext;\nCREATE EXTENSION vector WITH SCHEMA ext VERSION '0.8.0';";
//! let created = created_extensions(sql);
//! assert_eq!(created[0].name, "vector");
//! assert_eq!(created[0].schema.as_deref(), Some("ext"));
//! assert_eq!(created[0].line, 2);
//! assert_eq!(
//!     idempotent_create_extension("create extension vector"),
//!     "create extension IF NOT EXISTS vector"
//! );
//! ```
//!
//! Statements are found with the psql-style splitter of [`crate::split`]; a `CREATE EXTENSION` run
//! by dynamic SQL (`DO … EXECUTE`) is not seen.

use std::borrow::Cow;

use pgfleet_schema::quote;

use crate::lex::{self, Token};

/// A `CREATE EXTENSION` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateExtension {
    /// The extension (an unquoted name folded to lower case, as PostgreSQL does).
    pub name: String,
    /// `WITH SCHEMA s`, if given.
    pub schema: Option<String>,
    /// `VERSION v`, if given.
    pub version: Option<String>,
    /// `CASCADE` was given.
    pub cascade: bool,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// 1-based line of the statement in its file (1 for [`parse_create_extension`]).
    pub line: usize,
}

impl CreateExtension {
    /// The statement as pgfleet runs it: `CREATE EXTENSION IF NOT EXISTS name [WITH SCHEMA s]
    /// [VERSION 'v'] [CASCADE]`, every name quoted.
    pub fn to_sql(&self) -> String {
        let mut sql = format!(
            "CREATE EXTENSION IF NOT EXISTS {}",
            quote::ident(&self.name)
        );
        if let Some(s) = &self.schema {
            sql.push_str(&format!(" WITH SCHEMA {}", quote::ident(s)));
        }
        if let Some(v) = &self.version {
            sql.push_str(&format!(" VERSION {}", quote::literal(v)));
        }
        if self.cascade {
            sql.push_str(" CASCADE");
        }
        sql
    }
}

/// Every `CREATE EXTENSION` statement of `sql` that can be read, in order, with its line.
pub fn created_extensions(sql: &str) -> Vec<CreateExtension> {
    crate::split::statements(sql)
        .into_iter()
        .filter_map(|s| {
            parse_create_extension(s.text).map(|mut e| {
                e.line = s.line;
                e
            })
        })
        .collect()
}

/// Reads one statement: `Some` for `CREATE EXTENSION [IF NOT EXISTS] name [WITH] [SCHEMA s]
/// [VERSION v] [CASCADE]`, `None` for any other statement (or one that does not read like that).
pub fn parse_create_extension(stmt: &str) -> Option<CreateExtension> {
    let t = lex::tokens(stmt);
    if !(t.len() >= 3 && t[0].is("create") && t[1].is("extension")) {
        return None;
    }
    let if_not_exists = t.len() > 5 && t[2].is("if") && t[3].is("not") && t[4].is("exists");
    let mut rest = t[if if_not_exists { 5 } else { 2 }..].iter();
    let mut e = CreateExtension {
        name: rest.next()?.name()?,
        schema: None,
        version: None,
        cascade: false,
        if_not_exists,
        line: 1,
    };
    while let Some(tok) = rest.next() {
        if tok.is("with") {
        } else if tok.is("schema") {
            e.schema = Some(rest.next()?.name()?);
        } else if tok.is("version") {
            let v = rest.next()?;
            e.version = Some(v.string().or_else(|| v.name())?);
        } else if tok.is("cascade") {
            e.cascade = true;
        } else {
            return None;
        }
    }
    Some(e)
}

/// A `COMMENT ON EXTENSION name IS …` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentOnExtension {
    /// The extension.
    pub name: String,
    /// The comment; `None` for `IS NULL`.
    pub comment: Option<String>,
}

impl CommentOnExtension {
    /// The statement as pgfleet runs it, every name quoted.
    pub fn to_sql(&self) -> String {
        format!(
            "COMMENT ON EXTENSION {} IS {}",
            quote::ident(&self.name),
            self.comment
                .as_deref()
                .map_or_else(|| "NULL".to_string(), quote::literal)
        )
    }
}

/// Reads one statement: `Some` for `COMMENT ON EXTENSION name IS 'text'` (or a dollar-quoted text,
/// or `NULL`). Only the extension's owner may run it: `gen` writes one after each `CREATE
/// EXTENSION` (the comment the extension ships), so a role that did not create the extension
/// cannot replay such a migration as it is.
pub fn parse_comment_on_extension(stmt: &str) -> Option<CommentOnExtension> {
    let t = lex::tokens(stmt);
    if !(t.len() == 6
        && t[0].is("comment")
        && t[1].is("on")
        && t[2].is("extension")
        && t[4].is("is"))
    {
        return None;
    }
    let comment = if t[5].is("null") {
        None
    } else {
        Some(t[5].string()?)
    };
    Some(CommentOnExtension {
        name: t[3].name()?,
        comment,
    })
}

/// `stmt` with `IF NOT EXISTS` after `CREATE EXTENSION` when it is a `CREATE EXTENSION` statement
/// without it; any other statement unchanged. Everything else (`WITH SCHEMA`, `VERSION`,
/// `CASCADE`, comments) is kept as written.
pub fn idempotent_create_extension(stmt: &str) -> Cow<'_, str> {
    match insert_if_not_exists_at(stmt, &["create", "extension"]) {
        Some(at) => Cow::Owned(format!("{} IF NOT EXISTS{}", &stmt[..at], &stmt[at..])),
        None => Cow::Borrowed(stmt),
    }
}

/// `sql` (a whole file) with every `CREATE EXTENSION` statement made idempotent
/// ([`idempotent_create_extension`]). Line numbers do not change: the words are inserted on the
/// statement's own line.
pub fn idempotent_sql(sql: &str) -> Cow<'_, str> {
    insert_if_not_exists(sql, |stmt| {
        insert_if_not_exists_at(stmt, &["create", "extension"])
    })
}

/// `sql` with `IF NOT EXISTS` inserted in each statement where `at` (given the statement's text)
/// returns an offset.
pub(crate) fn insert_if_not_exists(sql: &str, at: impl Fn(&str) -> Option<usize>) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    for stmt in crate::split::statements(sql) {
        if let Some(offset) = at(stmt.text) {
            let start = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
            out.push_str(&sql[copied..start + offset]);
            out.push_str(" IF NOT EXISTS");
            copied = start + offset;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// Where `IF NOT EXISTS` goes in `stmt` (the end of its leading `words`), when the statement
/// starts with those words and has no `IF NOT EXISTS` yet.
pub(crate) fn insert_if_not_exists_at(stmt: &str, words: &[&str]) -> Option<usize> {
    let t = lex::tokens(stmt);
    let starts = t.len() > words.len() && words.iter().zip(&t).all(|(w, tok)| tok.is(w));
    if !starts || t[words.len()].is("if") {
        return None;
    }
    Some(t[words.len() - 1].end)
}

/// Where `IF NOT EXISTS` goes in a `CREATE SCHEMA name …` statement creating one of `schemas`.
pub(crate) fn create_schema_at(stmt: &str, schemas: &[String]) -> Option<usize> {
    let at = insert_if_not_exists_at(stmt, &["create", "schema"])?;
    let t: Vec<Token<'_>> = lex::tokens(stmt);
    let name = t.get(2).filter(|tok| !tok.is("authorization"))?.name()?;
    // `CREATE SCHEMA s CREATE TABLE …` cannot be IF NOT EXISTS; leave it as written.
    let elements = t
        .iter()
        .skip(3)
        .any(|tok| tok.is("create") || tok.is("grant"));
    (schemas.contains(&name) && !elements).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_create_extension_statements() {
        let sql = "-- setup\nCREATE EXTENSION IF NOT EXISTS pg_trgm;\n\
                   create extension \"Vector\" with schema \"Ext\" version '0.8.0' cascade;\n\
                   CREATE TABLE t (id int);\n\
                   CREATE /* c */ EXTENSION\n  vector SCHEMA public VERSION v1;\n\
                   DO $$ BEGIN EXECUTE 'CREATE EXTENSION dblink'; END $$;";
        let e = created_extensions(sql);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            (e[0].name.as_str(), e[0].if_not_exists, e[0].line),
            ("pg_trgm", true, 2)
        );
        assert_eq!(
            e[1],
            CreateExtension {
                name: "Vector".into(),
                schema: Some("Ext".into()),
                version: Some("0.8.0".into()),
                cascade: true,
                if_not_exists: false,
                line: 3,
            }
        );
        assert_eq!(
            (e[2].schema.as_deref(), e[2].version.as_deref(), e[2].line),
            (Some("public"), Some("v1"), 5)
        );
        assert_eq!(
            e[1].to_sql(),
            "CREATE EXTENSION IF NOT EXISTS \"Vector\" WITH SCHEMA \"Ext\" VERSION '0.8.0' CASCADE"
        );
        assert_eq!(parse_create_extension("CREATE EXTENSION"), None);
        assert_eq!(parse_create_extension("CREATE EXTENSION x FOO"), None);
        assert_eq!(
            parse_create_extension("CREATE TABLE extension (x int)"),
            None
        );
    }

    #[test]
    fn reads_comments_on_extensions() {
        let c = parse_comment_on_extension(
            "COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods'",
        )
        .unwrap();
        assert_eq!(c.name, "vector");
        assert_eq!(
            c.to_sql(),
            "COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods'"
        );
        let c = parse_comment_on_extension("comment on extension \"X\" is $$it's$$").unwrap();
        assert_eq!((c.name.as_str(), c.comment.as_deref()), ("X", Some("it's")));
        assert_eq!(c.to_sql(), "COMMENT ON EXTENSION \"X\" IS 'it''s'");
        let c = parse_comment_on_extension("COMMENT ON EXTENSION vector IS NULL").unwrap();
        assert_eq!(c.to_sql(), "COMMENT ON EXTENSION vector IS NULL");
        assert_eq!(
            parse_comment_on_extension("COMMENT ON EXTENSION v IS E'x'"),
            None
        );
        assert_eq!(
            parse_comment_on_extension("COMMENT ON TABLE v IS 'x'"),
            None
        );
        assert_eq!(
            parse_comment_on_extension("COMMENT ON EXTENSION v IS 'x' || 'y'"),
            None
        );
    }

    #[test]
    fn makes_create_extension_idempotent_keeping_its_clauses() {
        assert_eq!(
            idempotent_create_extension("CREATE EXTENSION vector WITH SCHEMA ext VERSION '0.8.0'"),
            "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA ext VERSION '0.8.0'"
        );
        assert_eq!(
            idempotent_create_extension("Create /* x */ Extension \"vector\" CASCADE"),
            "Create /* x */ Extension IF NOT EXISTS \"vector\" CASCADE"
        );
        let already = "CREATE EXTENSION IF NOT EXISTS vector";
        assert!(matches!(
            idempotent_create_extension(already),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            idempotent_create_extension("CREATE TABLE t (x int)"),
            Cow::Borrowed(_)
        ));

        let file = "CREATE EXTENSION vector;\n-- CREATE EXTENSION x;\nCREATE TABLE t (e vector(3));\n\
                    SELECT 'CREATE EXTENSION y';\ncreate extension pg_trgm\n  with schema public;\n";
        assert_eq!(
            idempotent_sql(file),
            "CREATE EXTENSION IF NOT EXISTS vector;\n-- CREATE EXTENSION x;\nCREATE TABLE t (e vector(3));\n\
             SELECT 'CREATE EXTENSION y';\ncreate extension IF NOT EXISTS pg_trgm\n  with schema public;\n"
        );
        assert_eq!(
            idempotent_sql(file).lines().count(),
            file.lines().count(),
            "lines stay where they were"
        );
        assert!(matches!(
            idempotent_sql("CREATE TABLE t (id int);"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn finds_create_schema_of_given_schemas() {
        let ext = vec!["ext".to_string()];
        assert_eq!(create_schema_at("CREATE SCHEMA ext", &ext), Some(13));
        assert_eq!(create_schema_at("create schema \"ext\"", &ext), Some(13));
        assert_eq!(create_schema_at("CREATE SCHEMA other", &ext), None);
        assert_eq!(
            create_schema_at("CREATE SCHEMA IF NOT EXISTS ext", &ext),
            None
        );
        assert_eq!(
            create_schema_at("CREATE SCHEMA ext CREATE TABLE t (id int)", &ext),
            None
        );
        assert_eq!(
            create_schema_at("CREATE SCHEMA AUTHORIZATION ext", &ext),
            None
        );
    }
}
