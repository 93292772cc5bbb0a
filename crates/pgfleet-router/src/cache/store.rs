//! The cache's memory: results by key, per-tenant indexes and epochs, analyses, and the byte
//! budget with least-recently-used eviction.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Analysis;
use crate::wire::{Statement, TextResult};

/// Sizes and counts of a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Results kept.
    pub entries: usize,
    /// Their bytes (approximate: text, names and bookkeeping).
    pub bytes: usize,
    /// Tenants with results or analyses kept.
    pub tenants: usize,
    /// Results evicted for room since the start.
    pub evictions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant: String,
    trusted: bool,
    sql: String,
    params: Vec<Option<String>>,
}

/// What a result read: relations, and the rows of some of them by a column's values.
pub(super) struct Read<'a> {
    /// Relations it depends on.
    pub(super) tables: &'a [u32],
    /// (relation, column, value): of that relation it read only rows with that value.
    pub(super) keys: Vec<(u32, String, String)>,
}

struct Entry {
    value: Arc<TextResult>,
    reads: Vec<u32>,
    keys: Vec<(u32, String, String)>,
    expires: Instant,
    bytes: usize,
    tick: u64,
}

#[derive(Default)]
struct Tenant {
    /// Changes at every invalidation of the tenant.
    epoch: u64,
    /// The latest invalidations (epoch, tables; `None`: everything), so that a fill that began
    /// before some of them is refused only when one touched what it read.
    log: VecDeque<(u64, Option<Vec<u32>>)>,
    /// Invalidations up to this epoch are no longer in `log`: a fill begun before it is refused.
    log_floor: u64,
    /// Changes when the tenant's schema may have changed (analyses are dropped).
    schema: u64,
    keys: HashSet<Arc<Key>>,
    analyses: HashMap<String, Arc<Analysis>>,
}

/// Invalidations remembered per tenant for fills in progress.
const LOG: usize = 32;

/// Analyses kept per tenant; beyond it that memory starts over.
const MAX_ANALYSES: usize = 512;

/// Tenants kept with analyses but no results; beyond it those are forgotten.
const MAX_TENANTS: usize = 20_000;

/// Bytes of analyses kept for all tenants together; beyond it that memory starts over (an
/// analysis costs one round trip to make again).
const MAX_ANALYSIS_BYTES: usize = 32 << 20;

fn analysis_size(sql: &str, a: &Analysis) -> usize {
    let keys: usize = a
        .key_types
        .iter()
        .map(|k| k.as_ref().map_or(8, |t| t.len() + 24))
        .sum();
    sql.len() + 4 * (a.reads.len() + a.writes.len()) + keys + 96
}

fn analyses_size(t: &Tenant) -> usize {
    t.analyses
        .iter()
        .map(|(sql, a)| analysis_size(sql, a))
        .sum()
}

pub(super) struct Store {
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<Arc<Key>, Entry>,
    lru: BTreeMap<u64, Arc<Key>>,
    tenants: HashMap<String, Tenant>,
    /// Tenant ids to the keys placed on them (other processes name tenants by id).
    ids: HashMap<String, HashSet<String>>,
    /// Bytes of the tenants' analyses.
    analysis_bytes: usize,
    /// Increases at every change of any tenant's epoch, so an epoch is never seen twice.
    clock: u64,
    evictions: u64,
}

impl Store {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            tenants: HashMap::new(),
            ids: HashMap::new(),
            analysis_bytes: 0,
            clock: 1,
            evictions: 0,
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.len(),
            bytes: self.bytes,
            tenants: self.tenants.len(),
            evictions: self.evictions,
        }
    }

    fn key(tenant: &str, trusted: bool, s: &Statement) -> Key {
        Key {
            tenant: tenant.to_string(),
            trusted,
            sql: s.sql.clone(),
            params: s.params.clone(),
        }
    }

    pub(super) fn get(
        &mut self,
        tenant: &str,
        trusted: bool,
        s: &Statement,
    ) -> Option<Arc<TextResult>> {
        let key = Self::key(tenant, trusted, s);
        let e = self.entries.get_mut(&key)?;
        if e.expires <= Instant::now() {
            self.remove(&key);
            return None;
        }
        self.clock += 1;
        let k = self.lru.remove(&e.tick)?;
        e.tick = self.clock;
        self.lru.insert(self.clock, k);
        Some(e.value.clone())
    }

    fn tenant(&mut self, tenant: &str) -> &mut Tenant {
        if !self.tenants.contains_key(tenant) && self.tenants.len() >= MAX_TENANTS {
            let freed: usize = self
                .tenants
                .values()
                .filter(|t| t.keys.is_empty())
                .map(analyses_size)
                .sum();
            self.analysis_bytes -= freed;
            self.tenants.retain(|_, t| !t.keys.is_empty());
        }
        let clock = &mut self.clock;
        self.tenants.entry(tenant.to_string()).or_insert_with(|| {
            *clock += 1;
            Tenant {
                epoch: *clock,
                schema: *clock,
                log_floor: *clock,
                ..Tenant::default()
            }
        })
    }

    /// Remembers that key `tenant` is placed on tenant id `id`.
    pub(super) fn register(&mut self, tenant: &str, id: &str) {
        if self.ids.get(id).is_some_and(|keys| keys.contains(tenant)) {
            return;
        }
        if self.ids.len() >= MAX_TENANTS {
            let tenants = &self.tenants;
            self.ids
                .retain(|_, keys| keys.iter().any(|k| tenants.contains_key(k)));
        }
        self.ids
            .entry(id.to_string())
            .or_default()
            .insert(tenant.to_string());
    }

    /// The keys placed on tenant id `id`.
    pub(super) fn keys_of(&self, id: &str) -> Vec<String> {
        self.ids
            .get(id)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn epoch(&mut self, tenant: &str) -> u64 {
        self.tenant(tenant).epoch
    }

    pub(super) fn schema_epoch(&mut self, tenant: &str) -> u64 {
        self.tenant(tenant).schema
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
        &mut self,
        tenant: &str,
        trusted: bool,
        s: &Statement,
        value: Arc<TextResult>,
        read: Read<'_>,
        max_age: Duration,
        epoch: u64,
    ) {
        let reads = read.tables;
        if !self.tenant(tenant).still_good(epoch, reads) {
            return;
        }
        let keys: usize = read
            .keys
            .iter()
            .map(|(_, c, v)| c.len() + v.len() + 52)
            .sum();
        let bytes = size_of(s, &value) + reads.len() * 4 + keys + tenant.len() + 160;
        // One result may take at most an eighth of the budget.
        if bytes > self.max_bytes / 8 {
            return;
        }
        let key = Arc::new(Self::key(tenant, trusted, s));
        self.remove(&key);
        while self.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            self.remove(&oldest);
            self.evictions += 1;
            metrics::counter!("pgfleet_cache_evictions_total").increment(1);
        }
        self.clock += 1;
        self.lru.insert(self.clock, key.clone());
        self.bytes += bytes;
        self.entries.insert(
            key.clone(),
            Entry {
                value,
                reads: reads.to_vec(),
                keys: read.keys,
                expires: Instant::now() + max_age,
                bytes,
                tick: self.clock,
            },
        );
        self.tenant(tenant).keys.insert(key);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.bytes;
            self.lru.remove(&e.tick);
            if let Some(t) = self.tenants.get_mut(&key.tenant) {
                t.keys.remove(key);
            }
        }
    }

    fn bump(&mut self, tenant: &str, tables: Option<&[u32]>) {
        self.clock += 1;
        let clock = self.clock;
        let t = self.tenant(tenant);
        t.epoch = clock;
        if t.log.len() == LOG
            && let Some((e, _)) = t.log.pop_front()
        {
            t.log_floor = e;
        }
        t.log.push_back((clock, tables.map(<[u32]>::to_vec)));
    }

    pub(super) fn drop_tables(&mut self, tenant: &str, oids: &[u32]) {
        self.bump(tenant, Some(oids));
        let stale: Vec<Arc<Key>> = self.tenants[tenant]
            .keys
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| e.reads.iter().any(|r| oids.contains(r)))
            })
            .cloned()
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// Drops results that read `tables`, and those that read `table` unless they read only rows
    /// whose `column` holds a value other than `values`.
    pub(super) fn drop_rows(
        &mut self,
        tenant: &str,
        tables: &[u32],
        (table, column, values): (u32, &str, &[String]),
    ) {
        let mut all = tables.to_vec();
        all.push(table);
        // Fills in progress are refused for the whole table: they have no keys yet.
        self.bump(tenant, Some(&all));
        let stale: Vec<Arc<Key>> = self.tenants[tenant]
            .keys
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    e.reads.iter().any(|r| tables.contains(r))
                        || (e.reads.contains(&table)
                            && !e
                                .keys
                                .iter()
                                .any(|(t, c, v)| *t == table && c == column && !values.contains(v)))
                })
            })
            .cloned()
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    pub(super) fn drop_tenant(&mut self, tenant: &str, schema: bool) {
        self.bump(tenant, None);
        let keys: Vec<Arc<Key>> = self.tenants[tenant].keys.iter().cloned().collect();
        for k in keys {
            self.remove(&k);
        }
        if schema {
            self.clock += 1;
            let clock = self.clock;
            let t = self.tenant(tenant);
            let freed = analyses_size(t);
            t.analyses.clear();
            t.schema = clock;
            self.analysis_bytes -= freed;
        }
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.lru.clear();
        self.bytes = 0;
        self.clock += 1;
        // Every epoch changes: fills in progress are not stored.
        self.tenants.clear();
        self.analysis_bytes = 0;
    }

    pub(super) fn analysis(&mut self, tenant: &str, sql: &str) -> Option<Arc<Analysis>> {
        self.tenants.get(tenant)?.analyses.get(sql).cloned()
    }

    /// Keeps an analysis begun when the tenant's schema epoch was `schema` (not when its schema
    /// may have changed meanwhile: the analysis may describe the old one).
    pub(super) fn remember(&mut self, tenant: &str, sql: &str, a: Arc<Analysis>, schema: u64) {
        let size = analysis_size(sql, &a);
        if self.analysis_bytes + size > MAX_ANALYSIS_BYTES {
            for t in self.tenants.values_mut() {
                t.analyses.clear();
            }
            self.analysis_bytes = 0;
        }
        let t = self.tenant(tenant);
        if t.schema != schema {
            return;
        }
        let mut freed = 0;
        if t.analyses.len() >= MAX_ANALYSES {
            freed = analyses_size(t);
            t.analyses.clear();
        }
        if let Some(old) = t.analyses.insert(sql.to_string(), a) {
            freed += analysis_size(sql, &old);
        }
        self.analysis_bytes = self.analysis_bytes + size - freed;
    }

    /// Bytes of the analyses kept.
    #[cfg(test)]
    pub(super) fn analysis_bytes(&self) -> usize {
        self.analysis_bytes
    }
}

impl Tenant {
    /// Whether a result read since epoch `since`, from `reads`, was not made stale by an
    /// invalidation after it.
    fn still_good(&self, since: u64, reads: &[u32]) -> bool {
        if since == self.epoch {
            return true;
        }
        if since < self.log_floor {
            return false;
        }
        self.log
            .iter()
            .filter(|(e, _)| *e > since)
            .all(|(_, tables)| {
                tables
                    .as_ref()
                    .is_some_and(|t| !t.iter().any(|o| reads.contains(o)))
            })
    }
}

fn size_of(s: &Statement, r: &TextResult) -> usize {
    let params: usize = s
        .params
        .iter()
        .map(|p| p.as_ref().map_or(8, |p| p.len() + 24))
        .sum();
    let fields: usize = r.fields.iter().map(|f| f.name.len() + 48).sum();
    let rows: usize = r.rows.iter().map(|row| row.bytes()).sum();
    s.sql.len() + params + fields + rows + r.tag.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str) -> Statement {
        Statement {
            sql: sql.into(),
            params: vec![],
        }
    }

    fn read(tables: &[u32]) -> Read<'_> {
        Read {
            tables,
            keys: Vec::new(),
        }
    }

    fn result() -> Arc<TextResult> {
        Arc::new(TextResult {
            tag: "SELECT 0".into(),
            ..TextResult::default()
        })
    }

    #[test]
    fn tenants_callers_and_tables_are_kept_apart() {
        let mut s = Store::new(1 << 20);
        let age = Duration::from_secs(60);
        let e = s.epoch("a");
        s.insert("a", true, &stmt("q1"), result(), read(&[1]), age, e);
        s.insert("a", true, &stmt("q2"), result(), read(&[2]), age, e);
        let eb = s.epoch("b");
        s.insert("b", true, &stmt("q1"), result(), read(&[1]), age, eb);
        assert!(s.get("a", true, &stmt("q1")).is_some());
        assert!(
            s.get("a", false, &stmt("q1")).is_none(),
            "end users do not get a trusted caller's result"
        );
        s.drop_tables("a", &[1]);
        assert!(s.get("a", true, &stmt("q1")).is_none());
        assert!(s.get("a", true, &stmt("q2")).is_some());
        assert!(
            s.get("b", true, &stmt("q1")).is_some(),
            "another tenant's table 1 is not touched"
        );
        // A fill that started before an invalidation of what it read is not stored; one that
        // read other tables is.
        s.insert("a", true, &stmt("q1"), result(), read(&[1]), age, e);
        assert!(s.get("a", true, &stmt("q1")).is_none());
        s.insert("a", true, &stmt("q3"), result(), read(&[3]), age, e);
        assert!(s.get("a", true, &stmt("q3")).is_some());
        s.drop_tenant("a", false);
        s.insert("a", true, &stmt("q4"), result(), read(&[4]), age, e);
        assert!(
            s.get("a", true, &stmt("q4")).is_none(),
            "everything was dropped since"
        );
        // Beyond the log, a fill that began earlier is refused.
        let old = s.epoch("a");
        for i in 0..=LOG as u32 {
            s.drop_tables("a", &[100 + i]);
        }
        s.insert("a", true, &stmt("q5"), result(), read(&[5]), age, old);
        assert!(s.get("a", true, &stmt("q5")).is_none());
        s.drop_tenant("b", false);
        assert!(s.get("b", true, &stmt("q1")).is_none());
    }

    #[test]
    fn a_write_with_row_keys_drops_only_the_reads_of_its_values() {
        let mut s = Store::new(1 << 20);
        let age = Duration::from_secs(60);
        let e = s.epoch("a");
        let keyed = |v: &str| Read {
            tables: &[7],
            keys: vec![(7, "thread_id".into(), v.into())],
        };
        s.insert("a", true, &stmt("t1"), result(), keyed("1"), age, e);
        s.insert("a", true, &stmt("t2"), result(), keyed("2"), age, e);
        s.insert("a", true, &stmt("all"), result(), read(&[7]), age, e);
        s.insert("a", true, &stmt("other"), result(), read(&[8]), age, e);
        s.drop_rows("a", &[], (7, "thread_id", &["1".to_string()]));
        assert!(s.get("a", true, &stmt("t1")).is_none());
        assert!(s.get("a", true, &stmt("t2")).is_some(), "another value");
        assert!(
            s.get("a", true, &stmt("all")).is_none(),
            "no key: the whole table"
        );
        assert!(s.get("a", true, &stmt("other")).is_some());
        // A key on another column does not tell.
        s.drop_rows("a", &[], (7, "role", &["user".to_string()]));
        assert!(s.get("a", true, &stmt("t2")).is_none());
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used() {
        let mut s = Store::new(8 * 400);
        let age = Duration::from_secs(60);
        let e = s.epoch("a");
        for i in 0..20 {
            s.insert(
                "a",
                true,
                &stmt(&format!("q{i:03}")),
                result(),
                read(&[1]),
                age,
                e,
            );
            assert!(
                s.get("a", true, &stmt("q000")).is_some(),
                "the one in use stays"
            );
        }
        assert!(s.bytes() <= 8 * 400);
        assert!(s.stats().evictions > 0);
        assert!(s.get("a", true, &stmt("q001")).is_none());
        assert!(s.get("a", true, &stmt("q019")).is_some());
    }

    #[test]
    fn analyses_stay_within_their_memory() {
        let mut s = Store::new(1 << 20);
        let a = Arc::new(Analysis {
            cacheable: true,
            reads: vec![1],
            writes: vec![1],
            everything: false,
            target: Some(1),
            key_types: vec![],
            resolved: true,
        });
        let big = "x".repeat(4000);
        let schema = s.schema_epoch("a");
        for i in 0..10_000 {
            let tenant = format!("t{}", i % 50);
            let schema = s.schema_epoch(&tenant);
            s.remember(&tenant, &format!("{big}{i}"), a.clone(), schema);
            assert!(s.analysis_bytes() <= MAX_ANALYSIS_BYTES);
        }
        s.remember("a", "select 1", a.clone(), schema);
        assert!(s.analysis("a", "select 1").is_some());
        let before = s.analysis_bytes();
        s.drop_tenant("a", true);
        assert!(s.analysis("a", "select 1").is_none());
        assert!(s.analysis_bytes() < before);
    }

    #[test]
    fn expired_results_are_not_served() {
        let mut s = Store::new(1 << 20);
        let e = s.epoch("a");
        s.insert(
            "a",
            true,
            &stmt("q"),
            result(),
            read(&[]),
            Duration::ZERO,
            e,
        );
        assert!(s.get("a", true, &stmt("q")).is_none());
        assert_eq!(s.stats().entries, 0);
    }
}
