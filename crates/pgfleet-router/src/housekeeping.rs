//! The router's background tasks: the reaper (closes connections idle for longer than the idle
//! timeout, of every kind) and the change listener (forgets the keys of tenants the directory
//! announces as changed). Both hold the snapshot weakly and end when the last router is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::directory::Directory;
use crate::snapshot::Snapshot;

/// Spawns the reaper, and the change listener when the directory announces changes.
pub(crate) fn spawn<D: Directory>(
    snapshot: &Arc<Snapshot<D>>,
    changes: Option<UnboundedReceiver<String>>,
) {
    let weak = Arc::downgrade(snapshot);
    tokio::spawn(reaper(weak.clone()));
    if let Some(rx) = changes {
        tokio::spawn(listen(weak, rx));
    }
}

async fn reaper<D: Directory>(snapshot: Weak<Snapshot<D>>) {
    loop {
        let every = match snapshot.upgrade() {
            Some(s) => {
                (s.opts.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
            }
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(snapshot) = snapshot.upgrade() else {
            return;
        };
        for s in snapshot.servers() {
            let n = s.reap(snapshot.opts.idle_timeout);
            if n > 0 {
                tracing::debug!(server = %s.name, closed = n, "closed idle connections");
            }
        }
    }
}

async fn listen<D: Directory>(snapshot: Weak<Snapshot<D>>, mut rx: UnboundedReceiver<String>) {
    while let Some(id) = rx.recv().await {
        let Some(snapshot) = snapshot.upgrade() else {
            return;
        };
        // Announcements name tenant ids (never keys): forget the keys placed there.
        snapshot.forget_tenant(&id);
    }
}
