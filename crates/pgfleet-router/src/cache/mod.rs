//! The result cache: reads of one tenant, kept in memory and never served to another tenant,
//! dropped by the writes that pgfleet sees.
//!
//! - **What is cached** is chosen, never guessed: a read with a leading
//!   `/* pgfleet:cache max-age=30 */` comment, or one that reads only the tables listed in
//!   [`CacheOptions::tables`]. A read calling a function that is not `IMMUTABLE` (`now()` is
//!   `STABLE`), with a locking clause, reading a foreign table, or inside an explicit transaction is
//!   never cached ([`shape`] parses the statement; the tenant's own server resolves its names and
//!   functions once per statement text, `sql/analyze.sql`).
//! - **Keyed** by tenant, caller kind (trusted or end user), statement text and parameters.
//! - **Invalidation**: a write through pgfleet drops, after it ran, the results that read a table
//!   it may have changed: its targets, the base tables of views written through, partitions and
//!   parents, and the tables its foreign keys' `ON DELETE/UPDATE` actions reach. A trigger or rule
//!   on any of them, a function of the tenant's own that is `VOLATILE`, DDL, a repair, or SQL the
//!   parser does not know drops everything of the tenant. A fill that started before an
//!   invalidation of its tenant is not stored. Other processes learn of invalidations through
//!   [`Cache::subscribe`] (the control plane forwards them with `NOTIFY`).
//! - **Bounded**: [`CacheOptions::max_bytes`], least recently used results evicted first.

mod keys;
pub mod shape;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

pub use keys::{KeyValue, RowKey};
pub use shape::{Hint, Kind, Name, Shape};
pub use store::Stats;

use crate::wire::{Limits, Statement, TextResult, WireConn, WireError};
use store::Store;

/// How the cache behaves ([`RouterOptions::cache`](crate::RouterOptions::cache)).
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Most bytes of results kept (0: no cache, and no invalidation work on writes). Default 64 MiB.
    pub max_bytes: usize,
    /// Tables whose reads are cached without a comment: a read is cached when every relation it
    /// names is listed (by name, as written in the query, without schema), or when the list holds
    /// `*`. Default: none (only commented queries are cached).
    pub tables: Vec<String>,
    /// How long results of reads of [`CacheOptions::tables`] are served. Default 30 s.
    pub max_age: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            tables: Vec::new(),
            max_age: Duration::from_secs(30),
        }
    }
}

/// What the cache did for a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// A cacheable read that ran on the server (and was stored when it could be).
    Miss,
    /// Not a cacheable read.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// What an invalidation drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Results that read any of these relations (OIDs in the tenant's database).
    Tables(Vec<u32>),
    /// Results that read any of `tables`, and those that read `table` unless they read only
    /// rows whose `column` holds a value not in `values` (canonical text, see
    /// [`RowKey`]).
    Rows {
        /// Relations changed as a whole.
        tables: Vec<u32>,
        /// The relation whose changed rows are known.
        table: u32,
        /// The column that tells them.
        column: String,
        /// Its values in the changed rows.
        values: Vec<String>,
    },
    /// Every result of the tenant; `schema`: its schema may have changed too (names are resolved
    /// again).
    All {
        /// The tenant's schema may have changed.
        schema: bool,
    },
}

/// An invalidation made in this process, for other processes ([`Cache::subscribe`]). It names
/// the tenant by id, never by key (keys are the application's user ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// The tenant's id (`*`: every tenant).
    pub tenant_id: String,
    /// What was dropped.
    pub scope: Scope,
}

/// What the tenant's server said about a statement (`sql/analyze.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// A read of it may be cached: every name resolved to a relation that is not a foreign table,
    /// every function (also those of the views it reads) is `IMMUTABLE`.
    pub cacheable: bool,
    /// The relations a read of it depends on.
    pub reads: Vec<u32>,
    /// The relations it may change when it writes.
    pub writes: Vec<u32>,
    /// It may change anything (a trigger, a rule, a `VOLATILE` function of the tenant's own).
    pub everything: bool,
    /// Its first relation.
    pub target: Option<u32>,
    /// For each of the shape's row keys, the type its values compare in (`None`: they cannot).
    pub key_types: Vec<Option<String>>,
    /// Every name it uses resolved (else it is not remembered: the name may mean something
    /// later, and a write naming it may change anything).
    pub resolved: bool,
}

impl Analysis {
    /// The row keys of `shape` with `params`, in canonical form: (relation, column, value) per key
    /// and value. `None` for a key none of whose values can be compared.
    pub fn keys(
        &self,
        shape: &Shape,
        params: &[Option<String>],
    ) -> Vec<Option<(String, Vec<String>)>> {
        shape
            .keys
            .iter()
            .zip(&self.key_types)
            .map(|(k, ty)| {
                let ty = ty.as_deref()?;
                let values = k
                    .values
                    .iter()
                    .map(|v| {
                        let text = match v {
                            KeyValue::Param(i) => params.get(*i)?.as_deref()?,
                            KeyValue::Literal(l) => l,
                        };
                        keys::canonical(ty, text)
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some((k.column.clone(), values))
            })
            .collect()
    }
}

const ANALYZE: &str = include_str!("sql/analyze.sql");

/// The result cache of a router. Cheap to share (`Arc`).
pub struct Cache {
    opts: CacheOptions,
    store: Mutex<Store>,
    shapes: Mutex<HashMap<String, Arc<Shape>>>,
    local: broadcast::Sender<Invalidation>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Statement texts whose shape is remembered; beyond it the memory starts over.
const MAX_SHAPES: usize = 10_000;

/// Longest statement text whose shape and analyses are remembered (longer ones are parsed, and
/// asked about, each time), so that those memories stay within a few tens of MiB whatever
/// callers send.
const MAX_REMEMBERED_SQL: usize = 4096;

/// A fill in progress: whose, and what [`Cache::store`] needs to know the result is still good.
#[derive(Debug, Clone)]
pub struct Ticket {
    key: String,
    tenant_id: String,
    trusted: bool,
    epoch: u64,
}

impl Ticket {
    /// The tenant's id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
}

impl Cache {
    /// A cache with `opts`.
    pub fn new(opts: CacheOptions) -> Self {
        let (local, _) = broadcast::channel(4096);
        Self {
            store: Mutex::new(Store::new(opts.max_bytes)),
            opts,
            shapes: Mutex::new(HashMap::new()),
            local,
        }
    }

    /// Whether it caches (and invalidates) at all.
    pub fn enabled(&self) -> bool {
        self.opts.max_bytes > 0
    }

    /// The options.
    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    /// Sizes and counts now.
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shape of `sql`, parsed once per text.
    pub fn shape(&self, sql: &str) -> Arc<Shape> {
        if let Some(s) = self
            .shapes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
        {
            return s.clone();
        }
        let s = Arc::new(shape::shape(sql));
        if sql.len() > MAX_REMEMBERED_SQL {
            return s;
        }
        let mut m = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SHAPES {
            m.clear();
        }
        m.insert(sql.to_string(), s.clone());
        s
    }

    /// How long a read of `shape` with `params` may be served from the cache, when it may be at
    /// all (before the server's analysis, which can still rule it out).
    pub fn max_age(&self, shape: &Shape, params: &[Option<String>]) -> Option<Duration> {
        if !self.enabled() || shape.kind != Kind::Read || shape.uncacheable.is_some() {
            return None;
        }
        if params
            .iter()
            .flatten()
            .any(|p| p.len() <= 12 && shape::is_moving_literal(p))
        {
            return None;
        }
        match shape.hint {
            Hint::Off => None,
            Hint::MaxAge(age) => Some(age),
            Hint::None => {
                let all = self.opts.tables.iter().any(|t| t == "*");
                let listed = |n: &Name| self.opts.tables.contains(&n.name);
                (!shape.relations.is_empty() && (all || shape.relations.iter().all(listed)))
                    .then_some(self.opts.max_age)
            }
        }
    }

    /// A cached result, still fresh, of `sql` with `params` for tenant `key`.
    pub fn get(&self, key: &str, trusted: bool, statement: &Statement) -> Option<Arc<TextResult>> {
        let hit = self.lock().get(key, trusted, statement);
        match hit {
            Some(_) => metrics::counter!("pgfleet_cache_hits_total").increment(1),
            None => metrics::counter!("pgfleet_cache_misses_total").increment(1),
        }
        hit
    }

    /// Starts a fill of tenant `key` (whose id is `tenant_id`): call before the statement runs,
    /// so that an invalidation while it runs, made here or in another process, keeps its (maybe
    /// stale) result out.
    pub fn ticket(&self, key: &str, tenant_id: &str, trusted: bool) -> Ticket {
        let mut s = self.lock();
        s.register(key, tenant_id);
        Ticket {
            key: key.to_string(),
            tenant_id: tenant_id.to_string(),
            trusted,
            epoch: s.epoch(key),
        }
    }

    /// Stores `result` of `statement` for the ticket's tenant and caller, with what it read:
    /// relations, and (relation, column, value) row keys (of that relation it read only rows
    /// with that value). Not stored when an invalidation since the ticket touched what it read,
    /// or when it is too large to be worth it (an eighth of the budget).
    pub fn store(
        &self,
        ticket: &Ticket,
        statement: &Statement,
        result: Arc<TextResult>,
        (reads, keys): (&[u32], Vec<(u32, String, String)>),
        max_age: Duration,
    ) {
        let mut s = self.lock();
        let t = ticket;
        let read = store::Read {
            tables: reads,
            keys,
        };
        s.insert(&t.key, t.trusted, statement, result, read, max_age, t.epoch);
        metrics::gauge!("pgfleet_cache_bytes").set(s.bytes() as f64);
    }

    /// Drops what `scope` names of tenant `key` (whose id is `tenant_id`), here and (through
    /// [`Cache::subscribe`]) in the fleet's other processes.
    pub fn invalidate(&self, key: &str, tenant_id: &str, scope: Scope) {
        if !self.enabled() {
            return;
        }
        self.apply(key, &scope);
        let _ = self.local.send(Invalidation {
            tenant_id: tenant_id.to_string(),
            scope,
        });
    }

    /// Applies an invalidation made by another process (`*`: drops everything).
    pub fn apply_remote(&self, inv: &Invalidation) {
        if inv.tenant_id == "*" {
            self.clear();
            return;
        }
        let keys = self.lock().keys_of(&inv.tenant_id);
        for key in keys {
            self.apply(&key, &inv.scope);
        }
    }

    /// Drops everything of key `key` here only (the router forgot it: the tenant was dropped,
    /// moved or changed).
    pub fn forget(&self, key: &str) {
        if self.enabled() {
            self.apply(key, &Scope::All { schema: true });
        }
    }

    /// Drops everything (a process that may have missed invalidations, for example while its
    /// notification channel reconnected).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.clear();
        metrics::counter!("pgfleet_cache_invalidations_total", "scope" => "everything")
            .increment(1);
        metrics::gauge!("pgfleet_cache_bytes").set(s.bytes() as f64);
    }

    fn apply(&self, key: &str, scope: &Scope) {
        let mut s = self.lock();
        let label = match scope {
            Scope::Tables(oids) => {
                s.drop_tables(key, oids);
                "tables"
            }
            Scope::Rows {
                tables,
                table,
                column,
                values,
            } => {
                s.drop_rows(key, tables, (*table, column, values));
                "rows"
            }
            Scope::All { schema } => {
                s.drop_tenant(key, *schema);
                "tenant"
            }
        };
        metrics::counter!("pgfleet_cache_invalidations_total", "scope" => label).increment(1);
        metrics::gauge!("pgfleet_cache_bytes").set(s.bytes() as f64);
    }

    /// The invalidations this process makes from now on, for forwarding to other processes.
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.local.subscribe()
    }

    /// What the tenant's server says about `shape` (asked once per statement text and tenant, on
    /// `conn`, the tenant's session). `Ok(None)` when the server refused the question: the
    /// statement is then treated as one that may change anything, and its result is not cached.
    ///
    /// # Errors
    /// The connection's failures (it broke, a shared connection did not switch, the time ran
    /// out): the request fails as its statement would have, and the router handles it so.
    pub async fn analysis(
        &self,
        key: &str,
        sql: &str,
        shape: &Shape,
        conn: &mut WireConn,
        limits: &Limits,
    ) -> Result<Option<Arc<Analysis>>, WireError> {
        if let Some(a) = self.lock().analysis(key, sql) {
            return Ok(Some(a));
        }
        let schema = self.lock().schema_epoch(key);
        let a = match analyze(shape, conn, limits).await {
            Ok(a) => Arc::new(a),
            Err(e @ WireError::Server(_)) => {
                tracing::debug!(tenant = %key, "the cache could not analyse a statement: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if sql.len() <= MAX_REMEMBERED_SQL && a.resolved {
            self.lock().remember(key, sql, a.clone(), schema);
        }
        Ok(Some(a))
    }
}

/// Asks the server about `shape`'s names and functions (and those of the views it reads).
async fn analyze(
    shape: &Shape,
    conn: &mut WireConn,
    limits: &Limits,
) -> Result<Analysis, WireError> {
    let columns: Vec<String> = shape.keys.iter().map(|k| k.column.clone()).collect();
    let first = ask(
        conn,
        limits,
        (&shape.relations, &shape.functions),
        shape.action,
        &columns,
    )
    .await?;
    let ctes: Vec<String> = shape
        .ctes
        .iter()
        .map(|c| {
            Name {
                schema: None,
                name: c.clone(),
            }
            .quoted()
        })
        .collect();
    let resolved = first.unresolved.iter().all(|u| ctes.contains(u));
    let mut cacheable = resolved && first.read_ok && first.immutable;
    if cacheable && !first.views.is_empty() {
        let mut functions = Vec::new();
        for v in &first.views {
            let s = shape::shape(v);
            if s.kind != Kind::Read || s.uncacheable.is_some() {
                cacheable = false;
            }
            functions.extend(s.functions);
        }
        functions.sort();
        functions.dedup();
        if cacheable && !functions.is_empty() {
            cacheable = ask(conn, limits, (&[], &functions), "any", &[])
                .await?
                .immutable;
        }
    }
    Ok(Analysis {
        cacheable,
        reads: first.reads,
        writes: first.writes,
        everything: first.everything || !resolved,
        target: first.target,
        key_types: first.key_types,
        resolved,
    })
}

struct Answer {
    unresolved: Vec<String>,
    reads: Vec<u32>,
    read_ok: bool,
    views: Vec<String>,
    immutable: bool,
    writes: Vec<u32>,
    everything: bool,
    target: Option<u32>,
    key_types: Vec<Option<String>>,
}

async fn ask(
    conn: &mut WireConn,
    limits: &Limits,
    (relations, functions): (&[Name], &[Name]),
    action: &str,
    key_columns: &[String],
) -> Result<Answer, WireError> {
    let array = |items: Vec<Option<String>>| {
        let parts: Vec<String> = items
            .into_iter()
            .map(|i| match i {
                None => "NULL".to_string(),
                Some(t) => format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")),
            })
            .collect();
        Some(format!("{{{}}}", parts.join(",")))
    };
    let statement = Statement {
        sql: ANALYZE.to_string(),
        params: vec![
            array(relations.iter().map(|n| Some(n.quoted())).collect()),
            array(functions.iter().map(|n| n.schema.clone()).collect()),
            array(functions.iter().map(|n| Some(n.name.clone())).collect()),
            Some(action.to_string()),
            array(key_columns.iter().cloned().map(Some).collect()),
        ],
    };
    let r = conn.query(&statement, limits).await?;
    let row = r
        .rows
        .first()
        .ok_or_else(|| WireError::Protocol("the cache's analysis returned no row".into()))?;
    let text = |i: usize| row.get(i).unwrap_or_default();
    let oids = |i: usize| -> Vec<u32> {
        parse_array(text(i))
            .into_iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    Ok(Answer {
        unresolved: parse_array(text(0)),
        reads: oids(1),
        read_ok: text(2) == "t",
        views: parse_array(text(3)),
        immutable: text(4) == "t",
        writes: oids(5),
        everything: text(6) == "t",
        target: row.get(7).and_then(|t| t.parse().ok()),
        key_types: parse_array(text(8))
            .into_iter()
            .map(|t| (!t.is_empty()).then_some(t))
            .collect(),
    })
}

/// The elements of a one-dimensional array in PostgreSQL's text output (`{a,"b c",NULL}`).
fn parse_array(text: &str) -> Vec<String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.extend(chars.next()),
                    '"' => break,
                    c => item.push(c),
                }
            }
            chars.next(); // the comma
        } else {
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
                item.push(c);
            }
        }
        out.push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_in_text_output_are_read_back() {
        assert_eq!(parse_array("{}"), Vec::<String>::new());
        assert_eq!(parse_array("{1,2,3}"), ["1", "2", "3"]);
        assert_eq!(parse_array(r#"{"\"a\"","b c",x}"#), [r#""a""#, "b c", "x"]);
        assert_eq!(parse_array(r#"{" SELECT 1,\n 2"}"#), [" SELECT 1,n 2"]);
    }

    #[test]
    fn the_table_policy_and_the_comment_decide_what_is_cached() {
        let cache = Cache::new(CacheOptions {
            tables: vec!["threads".into()],
            ..CacheOptions::default()
        });
        let age = |sql: &str, params: &[Option<String>]| cache.max_age(&cache.shape(sql), params);
        assert_eq!(
            age("select * from threads where id = $1", &[Some("1".into())]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(age("select * from threads, messages", &[]), None);
        assert_eq!(
            age("/* pgfleet:cache max-age=3 */ select * from messages", &[]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            age("/* pgfleet:cache off */ select * from threads", &[]),
            None
        );
        assert_eq!(
            age(
                "select * from threads where d > $1::date",
                &[Some("today".into())]
            ),
            None
        );
        assert_eq!(age("select * from threads for update", &[]), None);
        assert_eq!(age("delete from threads", &[]), None);
        let off = Cache::new(CacheOptions {
            max_bytes: 0,
            ..CacheOptions::default()
        });
        assert_eq!(
            off.max_age(&off.shape("/* pgfleet:cache */ select 1"), &[]),
            None
        );
    }
}
