//! What a statement is to the cache, from a real SQL parser (`sqlparser`, PostgreSQL dialect):
//! a read that may be cached, a write that invalidates, a statement that changes nothing cached,
//! or something else (DDL, `CALL`, `DO`, what the parser does not know), after which nothing
//! cached for the tenant is trusted. No string matching decides any of it: the only text looked
//! at outside the parser is the leading `/* pgfleet:cache … */` comment, which is not SQL.

use std::ops::ControlFlow;
use std::time::Duration;

use sqlparser::ast::{
    Expr, ObjectName, Query, Select, SetExpr, Statement, TableFactor, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// A relation or function name as PostgreSQL folds it: unquoted parts in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// The schema, when the name is qualified.
    pub schema: Option<String>,
    /// The object's name.
    pub name: String,
}

impl Name {
    fn from_object(o: &ObjectName) -> Option<Name> {
        let parts: Vec<String> =
            o.0.iter()
                .map(|p| {
                    p.as_ident().map(|i| match i.quote_style {
                        Some(_) => i.value.clone(),
                        None => i.value.to_ascii_lowercase(),
                    })
                })
                .collect::<Option<_>>()?;
        match parts.as_slice() {
            [name] => Some(Name {
                schema: None,
                name: name.clone(),
            }),
            [schema, name] => Some(Name {
                schema: Some(schema.clone()),
                name: name.clone(),
            }),
            // database.schema.name: PostgreSQL accepts only the current database; the server
            // says so when it runs. Taken as schema.name here.
            [_, schema, name] => Some(Name {
                schema: Some(schema.clone()),
                name: name.clone(),
            }),
            _ => None,
        }
    }

    /// The name as SQL text, each part quoted (what `to_regclass` reads).
    pub fn quoted(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        match &self.schema {
            Some(s) => format!("{}.{}", q(s), q(&self.name)),
            None => q(&self.name),
        }
    }
}

/// What a statement does, as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A query that only reads (`SELECT`, `VALUES`, `TABLE`, set operations, CTEs that read).
    Read,
    /// `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, `COPY … FROM`, or a query with one of
    /// them in a CTE.
    Write,
    /// Changes nothing a cached read depends on: transaction control, `SET`, `SHOW`, `RESET`,
    /// `DISCARD`, `EXPLAIN` without `ANALYZE`, `LISTEN`/`NOTIFY`/`UNLISTEN`.
    Neutral,
    /// Anything else, or SQL the parser does not understand: after it, nothing cached for the
    /// tenant is trusted.
    Other,
}

/// A statement's shape: its kind, the relations and functions it names, and what rules it out of
/// the cache.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Its kind.
    pub kind: Kind,
    /// Relations named (tables, views; for a write also its targets), without CTE names.
    pub relations: Vec<Name>,
    /// Functions called, including table functions in `FROM`.
    pub functions: Vec<Name>,
    /// What it does to the rows of its targets, which decides the triggers and referential
    /// actions that follow (`read`, `insert`, `update`, `delete`, `truncate`, or `any`).
    pub action: &'static str,
    /// Why a read may not be cached, when it may not (a locking clause, `SELECT INTO`, a date/time
    /// literal that is not constant such as `'now'`).
    pub uncacheable: Option<&'static str>,
    /// The leading `/* pgfleet:cache … */` comment.
    pub hint: Hint,
    /// Which rows of its one relation it reads or writes, when it says so plainly
    /// ([`keys`](super::keys)).
    pub keys: Vec<super::keys::RowKey>,
    /// Names of its CTEs: a name among `relations` that is one of these and no relation of the
    /// tenant is the CTE.
    pub ctes: Vec<String>,
}

/// The per-query opt-in: a leading `/* pgfleet:cache max-age=30 */` (or `-- pgfleet:cache …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hint {
    /// No comment: the configured tables decide.
    #[default]
    None,
    /// Cache for this long.
    MaxAge(Duration),
    /// `/* pgfleet:cache off */`: never cache this query.
    Off,
}

/// Longest statement the cache parses (16 KiB); longer ones count as [`Kind::Other`].
pub const MAX_PARSED: usize = 16 << 10;

/// Date/time input strings whose value depends on when they are read.
const MOVING_LITERALS: [&str; 4] = ["now", "today", "tomorrow", "yesterday"];

/// Whether a parameter value is one of the date/time inputs whose value depends on when it is
/// read (`'now'`, `'today'`…): a read with one is not cached.
pub fn is_moving_literal(value: &str) -> bool {
    let v = value.trim();
    MOVING_LITERALS.iter().any(|m| v.eq_ignore_ascii_case(m))
}

/// The shape of `sql` (one statement).
pub fn shape(sql: &str) -> Shape {
    let hint = hint(sql);
    let other = |why| Shape {
        kind: Kind::Other,
        relations: Vec::new(),
        functions: Vec::new(),
        action: "any",
        uncacheable: Some(why),
        hint,
        keys: Vec::new(),
        ctes: Vec::new(),
    };
    // A long statement can nest deep enough (a chain of thousands of ANDs) to overflow a
    // stack when walked: it is not looked at, and counts as one that may change anything.
    if sql.len() > MAX_PARSED {
        return other("longer than the cache parses");
    }
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) => return other("the parser does not understand it"),
    };
    let [statement] = statements.as_slice() else {
        return other("not exactly one statement");
    };
    let kind = match statement {
        Statement::Query(_) => Kind::Read,
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => Kind::Write,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Discard { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. } => Kind::Neutral,
        _ => return other("not a query or a write"),
    };
    let mut v = Collect::default();
    let _ = statement.visit(&mut v);
    let kind = match kind {
        // Creates a table, or changes the session's settings (search_path, role): after it,
        // names may mean other objects.
        _ if v.schema_changes => Kind::Other,
        Kind::Read if v.writes => Kind::Write,
        k => k,
    };
    v.nested_writes = v.writes;
    // CTE names stay among the relations: without RECURSIVE a CTE's own body (and any write)
    // names the real table by the same name. Those that are not relations are left out of the
    // server's verdict only (`Shape::ctes`).
    let ctes = v.ctes;
    let mut relations = v.relations;
    relations.sort();
    // A read keyed on its one table must name it once (no subquery on it).
    let named_once = relations.len() == 1;
    relations.dedup();
    let mut functions = v.functions;
    functions.sort();
    functions.dedup();
    let keys = if named_once && ctes.is_empty() && !v.nested_writes {
        super::keys::of(statement)
    } else {
        Vec::new()
    };
    Shape {
        kind,
        relations,
        functions,
        action: match statement {
            _ if v.nested_writes => "any",
            // ON CONFLICT DO UPDATE may update.
            Statement::Insert(i) if i.on.is_some() => "any",
            Statement::Insert(_) => "insert",
            Statement::Update(_) => "update",
            Statement::Delete(_) => "delete",
            Statement::Truncate(_) => "truncate",
            Statement::Copy { .. } => "insert",
            // A read fires no trigger and no referential action.
            Statement::Query(_) => "read",
            _ => "any",
        },
        uncacheable: v.uncacheable,
        hint,
        keys,
        ctes,
    }
}

/// Walks a statement and collects what [`Shape`] holds.
#[derive(Default)]
struct Collect {
    relations: Vec<Name>,
    functions: Vec<Name>,
    ctes: Vec<String>,
    /// A data-modifying statement inside a query (a CTE with `INSERT`, …).
    writes: bool,
    /// Set from `writes` once the walk is done.
    nested_writes: bool,
    /// `SELECT INTO`, `set_config()`.
    schema_changes: bool,
    uncacheable: Option<&'static str>,
    /// The next relation visited is the name of a table function, not a relation.
    function_table: Option<ObjectName>,
    depth: usize,
}

impl Collect {
    fn refuse(&mut self, why: &'static str) {
        self.uncacheable.get_or_insert(why);
    }
}

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > 1 && !matches!(s, Statement::Query(_)) {
            self.writes = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _s: &Statement) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.refuse("a locking clause (FOR UPDATE/SHARE)");
        }
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let a = &cte.alias.name;
                self.ctes.push(match a.quote_style {
                    Some(_) => a.value.clone(),
                    None => a.value.to_ascii_lowercase(),
                });
            }
        }
        if matches!(
            *q.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            self.writes = true;
        }
        if names_a_table(&q.body) {
            // `TABLE t` names its table outside the visitor's relations.
            self.refuse("TABLE t");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            self.schema_changes = true;
            self.refuse("SELECT INTO creates a table");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                if let Some(n) = Name::from_object(name) {
                    self.functions.push(n);
                } else {
                    self.refuse("a name the cache cannot read");
                }
                self.function_table = Some(name.clone());
            }
            TableFactor::Function { name, .. } => match Name::from_object(name) {
                Some(n) => self.functions.push(n),
                None => self.refuse("a name the cache cannot read"),
            },
            TableFactor::TableFunction { .. } => self.refuse("a table function"),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        if self.function_table.as_ref() == Some(r) {
            self.function_table = None;
            return ControlFlow::Continue(());
        }
        match Name::from_object(r) {
            Some(n) => self.relations.push(n),
            None => self.refuse("a name the cache cannot read"),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => match Name::from_object(&f.name) {
                Some(n) => {
                    if n.name == "set_config" {
                        self.schema_changes = true;
                    }
                    self.functions.push(n);
                }
                None => self.refuse("a name the cache cannot read"),
            },
            Expr::Cast { expr, .. } if matches!(expr.as_ref(), Expr::Value(v) if moving(&v.value)) =>
            {
                self.refuse("a date/time literal that is not constant ('now', 'today', …)");
            }
            Expr::TypedString(t) if moving(&t.value.value) => {
                self.refuse("a date/time literal that is not constant ('now', 'today', …)");
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether a query body is, or combines, `TABLE t`.
fn names_a_table(e: &SetExpr) -> bool {
    match e {
        SetExpr::Table(_) => true,
        SetExpr::SetOperation { left, right, .. } => names_a_table(left) || names_a_table(right),
        _ => false,
    }
}

fn moving(v: &Value) -> bool {
    match v {
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => is_moving_literal(s),
        _ => false,
    }
}

/// Reads the leading `/* pgfleet:cache … */` or `-- pgfleet:cache …` comment.
fn hint(sql: &str) -> Hint {
    let s = sql.trim_start();
    let body = if let Some(rest) = s.strip_prefix("/*") {
        match rest.find("*/") {
            Some(end) => &rest[..end],
            None => return Hint::None,
        }
    } else if let Some(rest) = s.strip_prefix("--") {
        rest.lines().next().unwrap_or_default()
    } else {
        return Hint::None;
    };
    let Some(opts) = body.trim().strip_prefix("pgfleet:cache") else {
        return Hint::None;
    };
    let mut hint = Hint::MaxAge(DEFAULT_HINT_AGE);
    for word in opts.split_whitespace() {
        if word.eq_ignore_ascii_case("off") || word.eq_ignore_ascii_case("no") {
            return Hint::Off;
        }
        if let Some(v) = word.strip_prefix("max-age=") {
            let v = v.trim_end_matches('s');
            match v.parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs > 0.0 => {
                    hint = Hint::MaxAge(Duration::from_secs_f64(secs.min(MAX_HINT_AGE)));
                }
                _ => return Hint::Off,
            }
        }
    }
    hint
}

/// The max age of `/* pgfleet:cache */` without `max-age=`.
pub const DEFAULT_HINT_AGE: Duration = Duration::from_secs(30);

/// The longest max age a comment may ask for (one day), seconds.
const MAX_HINT_AGE: f64 = 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Name]) -> Vec<String> {
        v.iter()
            .map(|n| match &n.schema {
                Some(s) => format!("{s}.{}", n.name),
                None => n.name.clone(),
            })
            .collect()
    }

    #[test]
    fn a_drizzle_style_read_names_its_tables_and_functions() {
        let s = shape(
            r#"select "chat_threads"."id", (select "body" from "chat_messages" m where m.thread_id = "chat_threads"."id" order by m.created_at desc limit 1) from "chat_threads" where "chat_threads"."user_id" = $1 and lower(title) like $2 order by "updated_at" desc"#,
        );
        assert_eq!(s.kind, Kind::Read);
        assert_eq!(names(&s.relations), ["chat_messages", "chat_threads"]);
        assert_eq!(names(&s.functions), ["lower"]);
        assert_eq!(s.uncacheable, None);
        assert_eq!(s.hint, Hint::None);
    }

    #[test]
    fn writes_are_found_wherever_they_hide() {
        assert_eq!(shape("insert into t (a) values ($1)").kind, Kind::Write);
        assert_eq!(shape("update t set a = 1 where b = 2").kind, Kind::Write);
        assert_eq!(
            shape("delete from t using u where t.id = u.id").kind,
            Kind::Write
        );
        let cte =
            shape("with gone as (delete from t where id = $1 returning *) select * from gone");
        assert_eq!(cte.kind, Kind::Write);
        assert_eq!(names(&cte.relations), ["gone", "t"]);
        let truncate = shape("truncate a, b cascade");
        assert_eq!(truncate.kind, Kind::Write);
        assert_eq!(truncate.action, "truncate");
        assert_eq!(shape("update t set a = 1").action, "update");
        assert_eq!(shape("insert into t values (1)").action, "insert");
        assert_eq!(shape("select * from t").action, "read");
        assert_eq!(
            shape("insert into t values (1) on conflict (a) do update set b = 2").action,
            "any"
        );
        assert_eq!(
            shape("with x as (insert into t values (1) returning *) delete from u").action,
            "any"
        );
        assert_eq!(shape("select * into t2 from t").kind, Kind::Other);
        assert_eq!(shape("explain (analyze) delete from t").kind, Kind::Other);
        assert_eq!(shape("copy t from '/tmp/x'").kind, Kind::Other);
        assert_eq!(shape("set search_path = x").kind, Kind::Other);
        assert_eq!(
            shape("select set_config('search_path', 'x', true)").kind,
            Kind::Other
        );
        assert!(shape("table t union table u").uncacheable.is_some());
        let long = format!("select 1 where {}", vec!["1 = 1"; 5000].join(" and "));
        assert_eq!(shape(&long).kind, Kind::Other);
    }

    #[test]
    fn names_fold_like_postgresql_and_ctes_are_told_to_the_server() {
        let s =
            shape(r#"with Recent as (select * from Public."Notes") select * from recent, other.T"#);
        assert_eq!(names(&s.relations), ["recent", "other.t", "public.Notes"]);
        assert_eq!(s.relations[2].quoted(), r#""public"."Notes""#);
        assert_eq!(s.ctes, ["recent"]);
        // A CTE named like a table: its body reads the table.
        let s =
            shape("with messages as (select * from messages where t = $1) select * from messages");
        assert_eq!(names(&s.relations), ["messages"]);
        assert!(s.keys.is_empty());
        // Only A-Z fold, as PostgreSQL folds in UTF8.
        assert_eq!(names(&shape("select * from ÄrgeR").relations), ["Ärger"]);
    }

    #[test]
    fn what_rules_a_read_out() {
        assert!(shape("select * from t for update").uncacheable.is_some());
        assert!(
            shape("select * from t where d > 'now'::timestamptz")
                .uncacheable
                .is_some()
        );
        assert!(
            shape("select * from t where d > timestamp 'today'")
                .uncacheable
                .is_some()
        );
        let f = shape("select * from generate_series(1, 3) g, t");
        assert_eq!(names(&f.relations), ["t"]);
        assert_eq!(names(&f.functions), ["generate_series"]);
        assert_eq!(shape("select 1; select 2").kind, Kind::Other);
        assert_eq!(shape("create table x (a int)").kind, Kind::Other);
        assert_eq!(shape("this is not sql").kind, Kind::Other);
        assert_eq!(shape("begin").kind, Kind::Neutral);
        assert!(is_moving_literal(" Now "));
    }

    #[test]
    fn the_opt_in_comment() {
        let at = |s: &str| shape(s).hint;
        assert_eq!(
            at("/* pgfleet:cache max-age=5 */ select 1"),
            Hint::MaxAge(Duration::from_secs(5))
        );
        assert_eq!(
            at("  -- pgfleet:cache\nselect 1"),
            Hint::MaxAge(DEFAULT_HINT_AGE)
        );
        assert_eq!(at("/* pgfleet:cache off */ select 1"), Hint::Off);
        assert_eq!(at("/* pgfleet:cache max-age=x */ select 1"), Hint::Off);
        assert_eq!(at("/* other */ select 1"), Hint::None);
        assert_eq!(at("select 1 /* pgfleet:cache */"), Hint::None);
    }
}
