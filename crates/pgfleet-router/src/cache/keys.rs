//! Row keys: which rows of its one table a statement reads or writes, when its text says so
//! plainly. A read `SELECT … FROM t WHERE thread_id = $1` depends only on the rows of `t` whose
//! `thread_id` is that value; an `INSERT INTO t (thread_id, …) VALUES ($1, …)`, an `UPDATE t SET
//! … WHERE thread_id = $1` that does not set `thread_id`, or a `DELETE FROM t WHERE thread_id =
//! $1` changes only rows with that value. A write then drops the cached reads of other values
//! of the same table no more. Anything less plain (joins, subqueries, `OR`, expressions, `ON
//! CONFLICT`) has no key, and the whole table is invalidated as before.
//!
//! Values are compared in a canonical text form per column type (`int2/4/8`, `uuid`, `bool`,
//! and `text`/`varchar` under a deterministic collation), so `'01'` and `1` are the same integer;
//! a value of another type, or one that does not parse, makes no key.

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, Insert, ObjectName, SetExpr, Statement, TableFactor,
    TableObject, TableWithJoins, Value,
};

/// A value in a statement: a parameter (`$n`, 0-based here) or a literal's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// `$n`, as index `n - 1`.
    Param(usize),
    /// A string or number literal, as written.
    Literal(String),
}

/// Rows whose `column` holds one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    /// The column, folded as PostgreSQL folds it.
    pub column: String,
    /// The values (one for a read).
    pub values: Vec<KeyValue>,
}

fn ident(o: &ObjectName) -> Option<String> {
    match o.0.as_slice() {
        [p] => p.as_ident().map(fold),
        _ => None,
    }
}

fn fold(i: &sqlparser::ast::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

fn value(e: &Expr) -> Option<KeyValue> {
    match e {
        Expr::Nested(inner) => value(inner),
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                Some(KeyValue::Param(n.checked_sub(1)?))
            }
            Value::SingleQuotedString(s) => Some(KeyValue::Literal(s.clone())),
            Value::Number(n, _) => Some(KeyValue::Literal(n.to_string())),
            _ => None,
        },
        _ => None,
    }
}

/// The `column = value` conjuncts of `e` (joined by `AND` only), the column unqualified or
/// qualified by `names` (the table's name or alias).
fn equalities(e: &Expr, names: &[String], out: &mut Vec<RowKey>) {
    match e {
        Expr::Nested(inner) => equalities(inner, names, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            equalities(left, names, out);
            equalities(right, names, out);
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let column = |e: &Expr| match e {
                Expr::Identifier(i) => Some(fold(i)),
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [q, c] if names.contains(&fold(q)) => Some(fold(c)),
                    _ => None,
                },
                _ => None,
            };
            let pair = match (column(left), value(right)) {
                (Some(c), Some(v)) => Some((c, v)),
                _ => column(right).zip(value(left)),
            };
            if let Some((column, v)) = pair {
                out.push(RowKey {
                    column,
                    values: vec![v],
                });
            }
        }
        _ => {}
    }
}

/// The one plain table of a `FROM`: its name and the names it may be qualified by.
fn single_table(from: &[TableWithJoins]) -> Option<Vec<String>> {
    let [t] = from else { return None };
    if !t.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &t.relation
    else {
        return None;
    };
    let last = name.0.last()?.as_ident().map(fold)?;
    let mut names = vec![last];
    if let Some(a) = alias {
        names = vec![fold(&a.name)];
    }
    Some(names)
}

/// The row keys of a statement that names exactly one relation (the caller checks that).
pub fn of(statement: &Statement) -> Vec<RowKey> {
    let mut out = Vec::new();
    match statement {
        Statement::Query(q) => {
            if q.with.is_some() {
                return out;
            }
            if let SetExpr::Select(s) = q.body.as_ref()
                && let (Some(names), Some(w)) = (single_table(&s.from), &s.selection)
            {
                equalities(w, &names, &mut out);
            }
        }
        Statement::Insert(i) => insert(i, &mut out),
        Statement::Update(u) => {
            if u.from.is_some() {
                return out;
            }
            if let (Some(names), Some(w)) =
                (single_table(std::slice::from_ref(&u.table)), &u.selection)
            {
                equalities(w, &names, &mut out);
                // A column the update sets moves its rows to values not in the statement.
                out.retain(|k| {
                    !u.assignments.iter().any(|a| match &a.target {
                        AssignmentTarget::ColumnName(c) => ident(c).is_none_or(|c| c == k.column),
                        AssignmentTarget::Tuple(_) => true,
                    })
                });
            }
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(f)
                | sqlparser::ast::FromTable::WithoutKeyword(f) => f,
            };
            if d.using.is_some() || !d.tables.is_empty() {
                return out;
            }
            if let (Some(names), Some(w)) = (single_table(from), &d.selection) {
                equalities(w, &names, &mut out);
            }
        }
        _ => {}
    }
    out
}

fn insert(i: &Insert, out: &mut Vec<RowKey>) {
    if i.on.is_some() || !matches!(i.table, TableObject::TableName(_)) {
        return;
    }
    let Some(source) = &i.source else { return };
    let SetExpr::Values(v) = source.body.as_ref() else {
        return;
    };
    for (n, c) in i.columns.iter().enumerate() {
        let Some(column) = ident(c) else { continue };
        let values: Option<Vec<KeyValue>> = v
            .rows
            .iter()
            .map(|row| row.content.get(n).and_then(value))
            .collect();
        if let Some(values) = values {
            out.push(RowKey { column, values });
        }
    }
}

/// `text` in the canonical form of PostgreSQL type `ty` (as the analysis names it), or `None`
/// when `ty` has no canonical form here or `text` is not a value of it.
pub fn canonical(ty: &str, text: &str) -> Option<String> {
    match ty {
        "int2" | "int4" | "int8" => {
            let t = text.trim();
            let t = t.strip_prefix('+').unwrap_or(t);
            t.parse::<i64>().ok().map(|n| n.to_string())
        }
        "uuid" => {
            let hex: String = text
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .chars()
                .filter(|c| *c != '-')
                .collect();
            (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| {
                let h = hex.to_ascii_lowercase();
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            })
        }
        "bool" => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" | "y" => Some("t".into()),
            "f" | "false" | "no" | "off" | "0" | "n" => Some("f".into()),
            _ => None,
        },
        "text" => Some(text.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn keys(sql: &str) -> Vec<(String, Vec<KeyValue>)> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        of(&s[0])
            .into_iter()
            .map(|k| (k.column, k.values))
            .collect()
    }

    fn p(n: usize) -> KeyValue {
        KeyValue::Param(n)
    }

    #[test]
    fn plain_statements_have_keys() {
        assert_eq!(
            keys(
                "select id from chat_messages m where m.thread_id = $1 and (role = 'user') order by id"
            ),
            [
                ("thread_id".into(), vec![p(0)]),
                ("role".into(), vec![KeyValue::Literal("user".into())])
            ]
        );
        assert_eq!(
            keys("insert into t (a, B, c) values ($1, 2, now()), ($2, 3, now())"),
            [
                ("a".into(), vec![p(0), p(1)]),
                (
                    "b".into(),
                    vec![KeyValue::Literal("2".into()), KeyValue::Literal("3".into())]
                )
            ]
        );
        assert_eq!(
            keys("update t set x = 1 where a = $2"),
            [("a".into(), vec![p(1)])]
        );
        assert_eq!(
            keys("delete from t where $1 = a"),
            [("a".into(), vec![p(0)])]
        );
    }

    #[test]
    fn anything_less_plain_has_none() {
        assert!(keys("select * from t join u on u.id = t.u where t.a = $1").is_empty());
        assert!(keys("select * from t where a = $1 or b = $2").is_empty());
        assert!(keys("select * from t where a + 0 = $1").is_empty());
        assert!(keys("select * from t where other.a = $1").is_empty());
        assert!(
            keys("update t set a = $1 where a = $2").is_empty(),
            "it moves rows to $1"
        );
        assert!(keys("update t set (a, b) = ($1, $2) where a = $3").is_empty());
        assert!(keys("delete from t using u where t.a = $1").is_empty());
        assert!(keys("insert into t (a) values ($1) on conflict (a) do nothing").is_empty());
        assert!(keys("insert into t (a) select $1").is_empty());
        assert!(keys("with x as (select 1) select * from t where a = $1").is_empty());
    }

    #[test]
    fn values_compare_in_a_canonical_form() {
        assert_eq!(canonical("int4", " +01"), Some("1".into()));
        assert_eq!(canonical("int8", "1.0"), None);
        assert_eq!(
            canonical("uuid", "{A0EEBC99-9C0B4EF8-BB6D-6BB9BD380A11}"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        assert_eq!(canonical("uuid", "nope"), None);
        assert_eq!(canonical("bool", "Yes"), Some("t".into()));
        assert_eq!(canonical("numeric", "1"), None);
    }
}
