//! A `/sql` request as the Neon serverless driver sends it: `{"query", "params"}` or
//! `{"queries": [{"query", "params"}, …]}` (one transaction), plus the `Neon-*` headers.

use axum::http::HeaderMap;
use pgfleet::router::wire::{Isolation, Statement, Transaction};
use serde_json::Value;

/// Most parameters of one statement (PostgreSQL's protocol limit).
pub const MAX_PARAMS: usize = 65_535;

pub use pgfleet::router::wire::Work;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlRequest {
    /// What to run.
    pub work: Work,
    /// Rows as arrays (`Neon-Array-Mode: true`) rather than objects keyed by column name.
    pub array_mode: bool,
}

/// Reads a request; the error says what is wrong with it (a 400 `08P01`).
pub fn parse(body: &[u8], headers: &HeaderMap) -> Result<SqlRequest, String> {
    let array_mode = flag(headers, "neon-array-mode")?.unwrap_or(false);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(mut o) = value else {
        return Err("the body must be a JSON object: {\"query\": \"…\", \"params\": […]} or {\"queries\": […]}".into());
    };
    let work = match (o.remove("query"), o.remove("queries")) {
        (Some(_), Some(_)) => return Err("send either \"query\" or \"queries\", not both".into()),
        (Some(q), None) => Work::Single(statement(q, o.remove("params"), None)?),
        (None, Some(Value::Array(list))) => {
            if list.is_empty() {
                return Err("\"queries\" is empty".into());
            }
            let statements = list
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(mut q) => {
                        let query = q.remove("query").unwrap_or(Value::Null);
                        statement(query, q.remove("params"), Some(i))
                    }
                    _ => Err(format!(
                        "queries[{i}] must be an object {{\"query\", \"params\"}}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Work::Batch {
                statements,
                tx: transaction(headers)?,
            }
        }
        (None, Some(_)) => return Err("\"queries\" must be an array".into()),
        (None, None) => return Err("the body has no \"query\" (or \"queries\")".into()),
    };
    Ok(SqlRequest { work, array_mode })
}

fn statement(query: Value, params: Option<Value>, at: Option<usize>) -> Result<Statement, String> {
    let whose = |what: &str| match at {
        Some(i) => format!("queries[{i}].{what}"),
        None => what.to_string(),
    };
    let Value::String(sql) = query else {
        return Err(format!("{} must be a string", whose("query")));
    };
    let params = match params {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ps)) if ps.len() > MAX_PARAMS => {
            return Err(format!(
                "{} has {} parameters; PostgreSQL takes at most {MAX_PARAMS}",
                whose("params"),
                ps.len()
            ));
        }
        Some(Value::Array(ps)) => ps.iter().map(param).collect(),
        Some(_) => return Err(format!("{} must be an array", whose("params"))),
    };
    Ok(Statement { sql, params })
}

/// A parameter as PostgreSQL text. The Neon driver sends strings and nulls only; other JSON
/// values are taken the way PostgreSQL would read their text: numbers and booleans as written,
/// arrays as array literals, objects as JSON.
fn param(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => Some(v.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match param(i) {
                    None => "NULL".to_string(),
                    Some(t) if matches!(i, Value::Array(_)) => t,
                    Some(t) => format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")),
                })
                .collect();
            Some(format!("{{{}}}", parts.join(",")))
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| format!("header {name} is not ASCII")),
    }
}

fn flag(headers: &HeaderMap, name: &str) -> Result<Option<bool>, String> {
    match header(headers, name)? {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(format!("header {name}: expected true or false, got {v:?}")),
    }
}

fn transaction(headers: &HeaderMap) -> Result<Transaction, String> {
    let isolation = match header(headers, "neon-batch-isolation-level")? {
        None => None,
        Some("ReadUncommitted") => Some(Isolation::ReadUncommitted),
        Some("ReadCommitted") => Some(Isolation::ReadCommitted),
        Some("RepeatableRead") => Some(Isolation::RepeatableRead),
        Some("Serializable") => Some(Isolation::Serializable),
        Some(other) => {
            return Err(format!(
                "header Neon-Batch-Isolation-Level: {other:?} is not one of ReadUncommitted, ReadCommitted, RepeatableRead, Serializable"
            ));
        }
    };
    Ok(Transaction {
        isolation,
        read_only: flag(headers, "neon-batch-read-only")?,
        deferrable: flag(headers, "neon-batch-deferrable")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn single_and_batch() {
        let r = parse(
            br#"{"query":"select $1, $2","params":["a",null]}"#,
            &h(&[("neon-array-mode", "true")]),
        )
        .unwrap();
        assert!(r.array_mode);
        assert_eq!(
            r.work,
            Work::Single(Statement {
                sql: "select $1, $2".into(),
                params: vec![Some("a".into()), None]
            })
        );
        let r = parse(
            br#"{"queries":[{"query":"select 1","params":[]},{"query":"select $1","params":[1,true,[1,null,"a\"b"],{"k":1}]}]}"#,
            &h(&[("neon-batch-isolation-level", "Serializable"), ("neon-batch-read-only", "true")]),
        )
        .unwrap();
        let Work::Batch { statements, tx } = r.work else {
            panic!()
        };
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[1].params,
            vec![
                Some("1".into()),
                Some("true".into()),
                Some(r#"{"1",NULL,"a\"b"}"#.into()),
                Some(r#"{"k":1}"#.into())
            ]
        );
        assert_eq!(tx.isolation, Some(Isolation::Serializable));
        assert_eq!(tx.read_only, Some(true));
        assert_eq!(tx.deferrable, None);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let none = h(&[]);
        assert!(parse(b"{", &none).unwrap_err().contains("not JSON"));
        assert!(parse(b"[]", &none).unwrap_err().contains("JSON object"));
        assert!(
            parse(br#"{"query":1}"#, &none)
                .unwrap_err()
                .contains("query must be a string")
        );
        assert!(
            parse(br#"{"queries":"x"}"#, &none)
                .unwrap_err()
                .contains("must be an array")
        );
        assert!(
            parse(br#"{"queries":[]}"#, &none)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            parse(br#"{"queries":[1]}"#, &none)
                .unwrap_err()
                .contains("queries[0]")
        );
        assert!(
            parse(br#"{"query":"x","params":"y"}"#, &none)
                .unwrap_err()
                .contains("params must be an array")
        );
        assert!(
            parse(
                br#"{"queries":[{"query":"x"}]}"#,
                &h(&[("neon-batch-isolation-level", "Snapshot")])
            )
            .unwrap_err()
            .contains("Snapshot")
        );
        assert!(
            parse(br#"{"query":"x"}"#, &h(&[("neon-array-mode", "yes")]))
                .unwrap_err()
                .contains("true or false")
        );
    }
}
