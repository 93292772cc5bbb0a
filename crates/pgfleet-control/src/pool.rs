//! A pool of idle connections by key (`catalog`, `server/database`, `owner:server/database`):
//! work that ends cleanly (never inside a transaction) hands its connection back, the next work
//! with the same key takes it instead of logging in again. Closed connections are dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::Client;

/// Idle connections by key, at most `per_key` each and `total` in all.
pub(crate) struct IdlePool {
    idle: Mutex<HashMap<String, Vec<Client>>>,
    per_key: usize,
    total: usize,
}

impl std::fmt::Debug for IdlePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdlePool")
            .field("per_key", &self.per_key)
            .field("total", &self.total)
            .finish()
    }
}

impl IdlePool {
    /// An empty pool keeping at most `per_key` connections per key and `total` in all.
    pub(crate) fn new(per_key: usize, total: usize) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            per_key,
            total,
        }
    }

    /// An open idle connection for `key`, if there is one.
    pub(crate) fn take(&self, key: &str) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Hands a connection back (only when it is not inside a transaction); dropped when closed or
    /// when the pool is full.
    pub(crate) fn put(&self, key: &str, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < self.per_key && total < self.total {
            list.push(client);
        }
    }
}
