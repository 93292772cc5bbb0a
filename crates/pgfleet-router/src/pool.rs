//! One server's connections: its budget (every open connection holds one [`BudgetPermit`],
//! whichever tenant and connection kind it serves), its idle connections by kind and tenant,
//! eviction by recent use and frequency (each tenant's uses, decayed with a half-life of
//! [`USE_HALF_LIFE`]: the idle connection of the coldest other tenant goes first, the longest-idle
//! among equals), hits and misses, reaping, and the "down" mark that makes its tenants fail fast.
//!
//! This module knows neither tenants' placements nor how connections are opened: a connection
//! kind is a type (`K`, the [`Backend`](crate::Backend)) and its connections are values of another
//! (`C`), kept as they are, without a box per connection.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How fast a tenant's use count fades: it halves every this long without use.
pub(crate) const USE_HALF_LIFE: Duration = Duration::from_secs(30);

/// A tenant's recent use: a count decayed with [`USE_HALF_LIFE`], as of `at`.
#[derive(Clone, Copy)]
struct Use {
    score: f64,
    at: Instant,
}

impl Use {
    fn now(self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.at).as_secs_f64();
        self.score * 0.5f64.powf(age / USE_HALF_LIFE.as_secs_f64())
    }
}

/// Which idle connection [`ServerPool::take_idle`] takes when none is ready for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Other {
    /// None (the caller would rather open one).
    None,
    /// The most recently returned (a tenant's own list: the others grow idle and are reaped).
    MostRecent,
    /// The least recently returned (a shared list: the connection switched to the tenant served
    /// longest ago, likely a cold one, so the hot tenants' connections stay switched to them).
    LeastRecent,
}

/// One server's connections: its budget, and its tenants' idle connections of every kind.
pub(crate) struct ServerPool {
    pub(crate) name: String,
    budget: Arc<Semaphore>,
    /// Connections being opened at once ([`RouterOptions::opens_per_server`](crate::RouterOptions::opens_per_server)).
    opening: Arc<Semaphore>,
    idle: Mutex<Idle>,
    /// Signalled when a connection goes back to idle or closes.
    changed: Notify,
    /// Until when the server is considered down, and why.
    down: Mutex<Option<(Instant, String)>>,
    /// Budget permits out: connections open or being opened.
    open: AtomicUsize,
    /// Each tenant's (idle list's) recent use, for eviction.
    uses: Mutex<HashMap<String, Use>>,
    /// Acquires served by an idle connection.
    pub(crate) hits: std::sync::atomic::AtomicU64,
    /// Acquires that opened a connection.
    pub(crate) misses: std::sync::atomic::AtomicU64,
    /// Acquires of a shared connection that switched it to another tenant.
    pub(crate) switches: std::sync::atomic::AtomicU64,
    /// Tasks waiting for a permit of the budget.
    waiting: AtomicUsize,
    /// When each connection closed for a waiter was closed, until a waiter took a permit.
    closes: Mutex<std::collections::VecDeque<Instant>>,
}

/// How long a connection closed for a waiter counts as on its way back to the budget (the server
/// closes it in milliseconds).
const CLOSE_SETTLES: Duration = Duration::from_secs(1);

/// One connection's share of its server's budget. The router takes it before it opens a
/// connection and hands it to [`Backend::connect`](crate::Backend::connect), which keeps it for as
/// long as the server may count the connection: until the server has closed it (for a TCP
/// connection, its end of file after `Terminate`; PostgreSQL removes the backend from
/// `pg_stat_activity` before it closes the socket), not merely until the connection value is
/// dropped. Dropping it gives the permit back and wakes tasks waiting for one.
pub struct BudgetPermit {
    permit: Option<OwnedSemaphorePermit>,
    pool: Weak<ServerPool>,
}

impl std::fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = self.pool.upgrade().map(|p| p.name.clone());
        f.debug_struct("BudgetPermit")
            .field("server", &server)
            .finish()
    }
}

impl BudgetPermit {
    /// A permit of no pool (tests of a connection kind on its own).
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Self {
            permit: None,
            pool: Weak::new(),
        }
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some(pool) = self.pool.upgrade() {
            pool.open.fetch_sub(1, Ordering::Relaxed);
            pool.changed.notify_waiters();
        }
    }
}

/// Idle connections of every kind; a server has one or two kinds, so a list beats a map.
#[derive(Default)]
struct Idle {
    kinds: Vec<(TypeId, Box<dyn IdleKind>)>,
}

impl Idle {
    fn of<K: 'static, C: Send + 'static>(&mut self) -> Option<&mut IdleOf<C>> {
        let kind = TypeId::of::<K>();
        let (_, list) = self.kinds.iter_mut().find(|(k, _)| *k == kind)?;
        list.as_any().downcast_mut::<IdleOf<C>>()
    }

    fn of_or_insert<K: 'static, C: Send + 'static>(&mut self) -> &mut IdleOf<C> {
        let kind = TypeId::of::<K>();
        let at = match self.kinds.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                self.kinds
                    .push((kind, Box::new(IdleOf::<C>(HashMap::new()))));
                self.kinds.len() - 1
            }
        };
        self.kinds[at]
            .1
            .as_any()
            .downcast_mut::<IdleOf<C>>()
            .expect("one connection type per kind")
    }
}

/// Idle connections of one kind by tenant key, oldest first.
struct IdleOf<C>(HashMap<String, Vec<(Instant, C)>>);

/// What the pool does with idle connections whatever their type: find and close the oldest,
/// reap, drop a tenant's. Closed connections are handed back boxed, to be dropped outside the lock.
trait IdleKind: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    /// Each tenant's longest-idle connection, except tenant `except`'s: since when, and the tenant.
    fn oldest_each(&self, except: Option<&str>) -> Vec<(Instant, &str)>;
    /// Takes tenant `key`'s longest-idle connection out.
    fn take_oldest_of(&mut self, key: &str) -> Option<Box<dyn Send>>;
    /// Takes connections idle for longer than `max` out.
    fn reap(&mut self, max: Duration, closed: &mut Vec<Box<dyn Send>>);
    /// Takes all of tenant `key`'s connections out.
    fn take_all_of(&mut self, key: &str) -> Option<Box<dyn Send>>;
    /// Whether tenant `key` has an idle connection.
    fn has(&self, key: &str) -> bool;
}

impl<C: Send + 'static> IdleKind for IdleOf<C> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn oldest_each(&self, except: Option<&str>) -> Vec<(Instant, &str)> {
        self.0
            .iter()
            .filter(|(k, v)| Some(k.as_str()) != except && !v.is_empty())
            .map(|(k, v)| (v[0].0, k.as_str()))
            .collect()
    }

    fn take_oldest_of(&mut self, key: &str) -> Option<Box<dyn Send>> {
        let list = self.0.get_mut(key)?;
        if list.is_empty() {
            return None;
        }
        let (_, c) = list.remove(0);
        if list.is_empty() {
            self.0.remove(key);
        }
        Some(Box::new(c))
    }

    fn reap(&mut self, max: Duration, closed: &mut Vec<Box<dyn Send>>) {
        for list in self.0.values_mut() {
            while list.first().is_some_and(|(t, _)| t.elapsed() > max) {
                closed.push(Box::new(list.remove(0).1));
            }
        }
        self.0.retain(|_, v| !v.is_empty());
    }

    fn take_all_of(&mut self, key: &str) -> Option<Box<dyn Send>> {
        self.0
            .remove(key)
            .map(|list| Box::new(list) as Box<dyn Send>)
    }

    fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|l| !l.is_empty())
    }
}

impl ServerPool {
    pub(crate) fn new(name: &str, budget: usize, opens: usize) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            budget: Arc::new(Semaphore::new(budget.max(1))),
            opening: Arc::new(Semaphore::new(opens.max(1))),
            idle: Mutex::new(Idle::default()),
            changed: Notify::new(),
            down: Mutex::new(None),
            open: AtomicUsize::new(0),
            uses: Mutex::new(HashMap::new()),
            hits: std::sync::atomic::AtomicU64::new(0),
            misses: std::sync::atomic::AtomicU64::new(0),
            switches: std::sync::atomic::AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            closes: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Counts one use of idle list `key` (a tenant, or a shared list).
    pub(crate) fn touch(&self, key: &str) {
        let now = Instant::now();
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        match uses.get_mut(key) {
            Some(u) => {
                *u = Use {
                    score: u.now(now) + 1.0,
                    at: now,
                };
            }
            None => {
                uses.insert(
                    key.to_string(),
                    Use {
                        score: 1.0,
                        at: now,
                    },
                );
            }
        }
    }

    /// Idle list `key`'s recent use, now.
    fn heat(&self, key: &str, now: Instant) -> f64 {
        self.uses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(0.0, |u| u.now(now))
    }

    /// Connections open or being opened (budget permits out).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// An idle connection of kind `K` of list `key` that is not closed: first one that `prefer`
    /// says is ready for the caller (a shared connection already switched to the caller's
    /// tenant), the most recently returned of them; else as `other` says.
    pub(crate) fn take_idle<K: 'static, C: Send + 'static>(
        &self,
        key: &str,
        is_closed: fn(&C) -> bool,
        prefer: impl Fn(&C) -> bool,
        other: Other,
    ) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.of::<K, C>()?.0.get_mut(key)?;
        while let Some(i) = list.iter().rposition(|(_, c)| prefer(c)) {
            let (_, c) = list.remove(i);
            if !is_closed(&c) {
                return Some(c);
            }
        }
        loop {
            let (_, c) = match other {
                Other::None => return None,
                Other::MostRecent => list.pop()?,
                Other::LeastRecent if list.is_empty() => return None,
                Other::LeastRecent => list.remove(0),
            };
            if !is_closed(&c) {
                return Some(c);
            }
        }
    }

    /// Whether the budget has a permit free now.
    pub(crate) fn has_room(&self) -> bool {
        self.budget.available_permits() > 0
    }

    /// Keeps `conn` (of kind `K`) idle for tenant `key`, and wakes tasks waiting for one.
    pub(crate) fn put_idle<K: 'static, C: Send + 'static>(&self, key: &str, conn: C) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let of = idle.of_or_insert::<K, C>();
            match of.0.get_mut(key) {
                Some(list) => list.push((Instant::now(), conn)),
                None => {
                    of.0.insert(key.to_string(), vec![(Instant::now(), conn)]);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Closes an idle connection that is not tenant `key`'s of kind `kind` (another tenant's of
    /// any kind, or this tenant's of another kind): the one of the least recently and frequently
    /// used tenant, the longest-idle among equals; whether one was closed.
    fn evict_other(&self, kind: TypeId, key: &str) -> bool {
        let now = Instant::now();
        let victim = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut coldest: Option<(f64, Instant, usize, String)> = None;
            for (at, (k, list)) in idle.kinds.iter().enumerate() {
                let except = (*k == kind).then_some(key);
                for (since, victim) in list.oldest_each(except) {
                    let heat = self.heat(victim, now);
                    let colder = coldest.as_ref().is_none_or(|c| {
                        heat < c.0 - 1e-9 || ((heat - c.0).abs() <= 1e-9 && since < c.1)
                    });
                    if colder {
                        coldest = Some((heat, since, at, victim.to_string()));
                    }
                }
            }
            coldest.and_then(|(_, _, at, victim)| idle.kinds[at].1.take_oldest_of(&victim))
        };
        victim.is_some()
    }

    /// Closes idle connections older than `max`; how many.
    pub(crate) fn reap(&self, max: Duration) -> usize {
        let mut closed = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            for (_, list) in &mut idle.kinds {
                list.reap(max, &mut closed);
            }
        }
        let n = closed.len();
        drop(closed);
        // Forget tenants whose use has faded out (about 10 half-lives without use).
        let now = Instant::now();
        self.uses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, u| u.now(now) > 0.001);
        n
    }

    /// Closes tenant `key`'s idle connections of every kind.
    pub(crate) fn drop_idle_of(&self, key: &str) {
        let gone: Vec<Box<dyn Send>> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.kinds
                .iter_mut()
                .filter_map(|(_, list)| list.take_all_of(key))
                .collect()
        };
        drop(gone);
    }

    pub(crate) fn down_reason(&self) -> Option<String> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &*down {
            Some((until, why)) if Instant::now() < *until => Some(why.clone()),
            Some(_) => {
                *down = None;
                None
            }
            None => None,
        }
    }

    pub(crate) fn mark_down(&self, why: String, for_: Duration) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now() + for_, why));
    }

    /// A permit of the budget for a connection of kind `kind` to tenant `key`: free, or freed by
    /// closing the longest-idle connection of another tenant or kind (the permit comes back once
    /// the server has closed it, so `pg_stat_activity` never shows more than the budget), or
    /// waited for until `deadline`. `Err` on timeout.
    ///
    /// Waiters queue on the semaphore, first come first served: a freed permit goes to the
    /// longest waiter, so no tenant loses every race to the others (a CI run saw a hot tenant time
    /// out after 10 s when every waiter was woken to race for each permit). A waiter closes
    /// an idle connection of another tenant or kind when it starts waiting and at each change of
    /// the pool, while fewer connections closed for waiters are on their way back than there are
    /// waiters.
    ///
    /// `Ok(None)` when, while it waited, a connection of kind `kind` came back to `key`'s own idle
    /// list (which it never evicts): take that one instead.
    pub(crate) async fn permit(
        self: &Arc<Self>,
        kind: TypeId,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<BudgetPermit>, ()> {
        let permit = match self.budget.clone().try_acquire_owned() {
            Ok(p) => {
                // Perhaps the permit of a connection closed for a waiter: it is back.
                self.closes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                p
            }
            Err(_) => match self.wait_for_permit(kind, key, deadline).await? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Some(BudgetPermit {
            permit: Some(permit),
            pool: Arc::downgrade(self),
        }))
    }

    /// A turn to open a connection of kind `kind` for list `key` (held until it is open), waited
    /// for until `deadline`; `Err` on timeout. `Ok(None)` when, while it waited, list `key` got an
    /// idle connection of kind `kind`: take that one instead.
    pub(crate) async fn opening(
        &self,
        kind: TypeId,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
        if let Ok(p) = self.opening.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        self.wait_for(&self.opening, kind, key, deadline, || {})
            .await
    }

    /// Whether `key` has an idle connection of kind `kind`.
    fn has_idle(&self, kind: TypeId, key: &str) -> bool {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.kinds
            .iter()
            .any(|(k, list)| *k == kind && list.has(key))
    }

    async fn wait_for_permit(
        &self,
        kind: TypeId,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
        // As many closes on their way as there are waiters, no more: each closed connection gives
        // one permit back (to the longest waiter), while closing one more at each change, as
        // every waiter is woken, would empty the idle lists of the tenants eviction means to
        // keep. A close not matched by a permit taken within `CLOSE_SETTLES` no longer counts.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let r = self
            .wait_for(&self.budget, kind, key, deadline, || {
                let on_their_way = {
                    let mut q = self.closes.lock().unwrap_or_else(|e| e.into_inner());
                    while q.front().is_some_and(|t| t.elapsed() > CLOSE_SETTLES) {
                        q.pop_front();
                    }
                    q.len()
                };
                if on_their_way < self.waiting.load(Ordering::SeqCst) && self.evict_other(kind, key)
                {
                    self.closes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(Instant::now());
                }
            })
            .await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if matches!(r, Ok(Some(_))) {
            self.closes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
        }
        r
    }

    /// A permit of `semaphore` (first come first served), waited for until `deadline` (`Err`
    /// then); `Ok(None)` as soon as list `key` has an idle connection of kind `kind`. Runs
    /// `meanwhile` when it starts waiting and at each change of the pool.
    async fn wait_for(
        &self,
        semaphore: &Arc<Semaphore>,
        kind: TypeId,
        key: &str,
        deadline: tokio::time::Instant,
        mut meanwhile: impl FnMut(),
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let acquire = semaphore.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.has_idle(kind, key) {
                return Ok(None);
            }
            meanwhile();
            tokio::select! {
                biased;
                p = &mut acquire => return Ok(Some(p.expect("never closed"))),
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => return Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    /// A connection that counts its drops (closing).
    struct Conn(&'static str, Arc<AtomicUsize>);
    impl Drop for Conn {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn open(_: &Conn) -> bool {
        false
    }

    #[tokio::test]
    async fn eviction_takes_the_longest_idle_of_another_tenant_or_kind() {
        let pool = ServerPool::new("s", 3, 3);
        let closed = Arc::new(AtomicUsize::new(0));
        let deadline = || tokio::time::Instant::now() + Duration::from_millis(50);
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(
                pool.permit(TypeId::of::<A>(), "t", deadline())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(pool.open(), 3);
        // Budget spent, nothing idle: a timeout.
        assert!(
            pool.permit(TypeId::of::<A>(), "u", deadline())
                .await
                .is_err()
        );
        // Idle, oldest first: t's A, u's B, t's B (each holding its permit as a connection does).
        pool.put_idle::<A, Conn>("t", Conn("t/A", closed.clone()));
        std::thread::sleep(Duration::from_millis(2));
        pool.put_idle::<B, Conn>("u", Conn("u/B", closed.clone()));
        std::thread::sleep(Duration::from_millis(2));
        pool.put_idle::<B, Conn>("t", Conn("t/B", closed.clone()));
        // Tenant t wants an A: its own A is not a victim, u's B (older than t's B) is.
        assert!(pool.evict_other(TypeId::of::<A>(), "t"));
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert!(
            pool.take_idle::<B, Conn>("u", open, |_| false, Other::MostRecent)
                .is_none()
        );
        assert_eq!(
            pool.take_idle::<B, Conn>("t", open, |_| false, Other::MostRecent)
                .unwrap()
                .0,
            "t/B"
        );
        assert_eq!(
            pool.take_idle::<A, Conn>("t", open, |_| false, Other::MostRecent)
                .unwrap()
                .0,
            "t/A"
        );
        // A kind's connections are never handed out as another's.
        assert!(
            pool.take_idle::<A, Conn>("u", open, |_| false, Other::MostRecent)
                .is_none()
        );
        // A permit dropped gives the budget back.
        permits.pop();
        assert_eq!(pool.open(), 2);
        assert!(
            pool.permit(TypeId::of::<B>(), "u", deadline())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn eviction_keeps_the_hot_tenants_connection() {
        let pool = ServerPool::new("s", 2, 2);
        let closed = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            pool.touch("hot");
        }
        pool.touch("cold");
        // The hot tenant's connection has been idle longer, yet the cold one's goes.
        pool.put_idle::<A, Conn>("hot", Conn("hot", closed.clone()));
        std::thread::sleep(Duration::from_millis(2));
        pool.put_idle::<A, Conn>("cold", Conn("cold", closed.clone()));
        assert!(pool.evict_other(TypeId::of::<A>(), "new"));
        assert!(
            pool.take_idle::<A, Conn>("cold", open, |_| false, Other::MostRecent)
                .is_none()
        );
        assert_eq!(
            pool.take_idle::<A, Conn>("hot", open, |_| false, Other::MostRecent)
                .unwrap()
                .0,
            "hot"
        );
        // Use fades: a half-life later a count of 10 is 5.
        let u = Use {
            score: 10.0,
            at: Instant::now() - USE_HALF_LIFE,
        };
        assert!((u.now(Instant::now()) - 5.0).abs() < 0.01);
    }

    #[test]
    fn a_connection_ready_for_the_caller_goes_first_then_the_most_recent() {
        let pool = ServerPool::new("s", 4, 4);
        let closed = Arc::new(AtomicUsize::new(0));
        for name in ["x", "y", "z"] {
            pool.put_idle::<A, Conn>("shared", Conn(name, closed.clone()));
        }
        let take = |want: &'static str| {
            pool.take_idle::<A, Conn>("shared", open, move |c| c.0 == want, Other::MostRecent)
                .unwrap()
                .0
        };
        assert_eq!(take("y"), "y");
        assert_eq!(take("nobody"), "z");
        assert_eq!(take("nobody"), "x");
        assert!(
            pool.take_idle::<A, Conn>("shared", open, |_| true, Other::MostRecent)
                .is_none()
        );
    }

    #[test]
    fn a_shared_list_switches_its_longest_idle_or_none() {
        let pool = ServerPool::new("s", 4, 4);
        let closed = Arc::new(AtomicUsize::new(0));
        for name in ["x", "y", "z"] {
            pool.put_idle::<A, Conn>("shared", Conn(name, closed.clone()));
        }
        let take = |other| {
            pool.take_idle::<A, Conn>("shared", open, |c| c.0 == "y", other)
                .map(|c| c.0)
        };
        assert_eq!(take(Other::None), Some("y"));
        assert_eq!(take(Other::None), None);
        assert_eq!(take(Other::LeastRecent), Some("x"));
        assert_eq!(take(Other::LeastRecent), Some("z"));
        assert_eq!(take(Other::LeastRecent), None);
    }

    /// A connection that holds its budget permit, as a real one does until the server closed it
    /// (10 ms after it is dropped).
    struct Held(Option<BudgetPermit>, Arc<AtomicUsize>);
    impl Drop for Held {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
            let permit = self.0.take();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(permit);
            });
        }
    }

    #[tokio::test]
    async fn each_waiter_closes_one_idle_connection_and_no_more() {
        let pool = ServerPool::new("s", 6, 6);
        let closed = Arc::new(AtomicUsize::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for t in ["a", "b", "c", "d", "e", "f"] {
            let p = pool
                .permit(TypeId::of::<A>(), t, deadline)
                .await
                .unwrap()
                .unwrap();
            pool.put_idle::<A, Held>(t, Held(Some(p), closed.clone()));
        }
        // Three tenants wait at once for the spent budget: three connections close, three stay.
        let waiters: Vec<_> = ["x", "y", "z"]
            .into_iter()
            .map(|k| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.permit(TypeId::of::<A>(), k, deadline)
                        .await
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        // Meanwhile the pool changes (other tenants' connections come and go): no more closes.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            pool.changed.notify_waiters();
        }
        let mut permits = Vec::new();
        for w in waiters {
            permits.push(w.await.unwrap());
        }
        assert_eq!(closed.load(Ordering::SeqCst), 3);
        assert_eq!(pool.open(), 6);
    }

    #[tokio::test]
    async fn openings_take_turns_and_a_returned_connection_ends_the_wait() {
        let pool = ServerPool::new("s", 4, 1);
        let closed = Arc::new(AtomicUsize::new(0));
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let turn = pool.opening(TypeId::of::<A>(), "t", soon()).await.unwrap();
        assert!(turn.is_some());
        // The one turn is taken: the next waits, and times out.
        assert!(pool.opening(TypeId::of::<A>(), "t", soon()).await.is_err());
        // A connection back to the list ends the wait: take it instead.
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.opening(
                    TypeId::of::<A>(),
                    "t",
                    tokio::time::Instant::now() + Duration::from_secs(5),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.put_idle::<A, Conn>("t", Conn("t", closed.clone()));
        assert!(matches!(waiting.await.unwrap(), Ok(None)));
        // The turn given back goes to the next.
        drop(turn);
        assert!(
            pool.opening(TypeId::of::<A>(), "u", soon())
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn reap_and_drop_cover_every_kind() {
        let pool = ServerPool::new("s", 4, 4);
        let closed = Arc::new(AtomicUsize::new(0));
        pool.put_idle::<A, Conn>("t", Conn("t/A", closed.clone()));
        pool.put_idle::<B, Conn>("t", Conn("t/B", closed.clone()));
        pool.put_idle::<B, Conn>("u", Conn("u/B", closed.clone()));
        pool.drop_idle_of("t");
        assert_eq!(closed.load(Ordering::SeqCst), 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(pool.reap(Duration::from_millis(1)), 1);
        assert_eq!(closed.load(Ordering::SeqCst), 3);
    }
}
