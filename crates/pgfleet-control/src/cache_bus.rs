//! The result caches of a fleet's processes, kept in step through the catalog database: each
//! process sends the invalidations its writes make (`NOTIFY` on [`CACHE_CHANNEL`]) and applies the
//! others'. Migrations, repairs, resets and drops announce a whole tenant. Tenants are named by
//! id, never by key. Asynchronous: another process may serve a stale result for the
//! notification's delay (measured by `pgfleet-bench cache`). A process whose channel broke drops
//! its whole cache when it listens again, since it may have missed notices, and tells the others
//! to drop theirs, since a batch of its own may not have gone out.
//!
//! Payload: `<origin>\t<tenant id or *>\t<scope>`, scope `*` (everything of the tenant), `!`
//! (everything, and its schema may have changed), OIDs separated by commas, or `=` and a JSON
//! object `{"tables": [oid…], "table": oid, "column": "…", "values": ["…"]}` (changed rows of one
//! table by a column's values). A process sends what gathered since its last notice in one
//! round trip.

use std::sync::Arc;
use std::time::Duration;

use pgfleet_router::cache::{Cache, Invalidation, Scope};
use tokio::sync::broadcast::error::RecvError;
use tokio_postgres::Client;

/// The catalog channel of cache invalidations.
pub const CACHE_CHANNEL: &str = "pgfleet_cache";

/// Notices sent in one round trip at most.
const BATCH: usize = 256;

/// PostgreSQL's limit on a payload is 8000 bytes; a list of OIDs longer than this becomes `*`.
const MAX_PAYLOAD: usize = 7000;

fn payload(origin: &str, inv: &Invalidation) -> String {
    let scope = match &inv.scope {
        Scope::All { schema: true } => "!".to_string(),
        Scope::All { schema: false } => "*".to_string(),
        Scope::Rows {
            tables,
            table,
            column,
            values,
        } => {
            let json = serde_json::json!({
                "tables": tables, "table": table, "column": column, "values": values
            })
            .to_string();
            if json.len() > MAX_PAYLOAD {
                // Too many values to name: the whole table.
                let inv = Invalidation {
                    tenant_id: inv.tenant_id.clone(),
                    scope: Scope::Tables(tables.iter().copied().chain([*table]).collect()),
                };
                return payload(origin, &inv);
            }
            format!("={json}")
        }
        Scope::Tables(oids) => {
            let list: Vec<String> = oids.iter().map(u32::to_string).collect();
            let list = list.join(",");
            if list.len() > MAX_PAYLOAD {
                "*".to_string()
            } else {
                list
            }
        }
    };
    format!("{origin}\t{}\t{scope}", inv.tenant_id)
}

fn parse(payload: &str) -> Option<(&str, Invalidation)> {
    let mut parts = payload.splitn(3, '\t');
    let (origin, id, scope) = (parts.next()?, parts.next()?, parts.next()?);
    let scope = match scope {
        "!" => Scope::All { schema: true },
        "*" => Scope::All { schema: false },
        rows if rows.starts_with('=') => {
            let v: serde_json::Value = serde_json::from_str(&rows[1..]).ok()?;
            let oid = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
            Scope::Rows {
                tables: v["tables"]
                    .as_array()?
                    .iter()
                    .map(oid)
                    .collect::<Option<_>>()?,
                table: oid(&v["table"])?,
                column: v["column"].as_str()?.to_string(),
                values: v["values"]
                    .as_array()?
                    .iter()
                    .map(|s| s.as_str().map(str::to_string))
                    .collect::<Option<_>>()?,
            }
        }
        list => Scope::Tables(
            list.split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        ),
    };
    Some((
        origin,
        Invalidation {
            tenant_id: id.to_string(),
            scope,
        },
    ))
}

/// Tells every process that tenant `id`'s schema changed (a migration, a repair, a reset, a drop):
/// their caches drop all its results. Best effort: logged when it fails.
pub(crate) async fn schema_changed(c: &Client, id: &str) {
    let inv = Invalidation {
        tenant_id: id.to_string(),
        scope: Scope::All { schema: true },
    };
    if let Err(e) = c
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CACHE_CHANNEL, &payload("control", &inv)],
        )
        .await
    {
        tracing::warn!(tenant_id = %id, "announcing a schema change to the caches: {e}");
    }
}

/// The task that keeps a cache in step with the fleet; dropping it stops the task.
#[derive(Debug)]
pub struct Bus(tokio::task::JoinHandle<()>);

impl Drop for Bus {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps `cache` in step with the other processes of the fleet whose catalog is at `url`, until
/// the returned [`Bus`] is dropped. Reconnects after a second when the catalog goes away.
pub fn spawn(url: String, cache: Arc<Cache>) -> Bus {
    Bus(tokio::spawn(async move {
        let origin = origin();
        let mut local = cache.subscribe();
        let mut first = true;
        loop {
            if let Err(e) = run(&url, &cache, &origin, &mut local, first).await {
                tracing::warn!("the cache's notification channel: {e}; listening again in 1 s");
            }
            first = false;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

/// A name for this process's notices, so that it skips its own.
fn origin() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap_or_default();
    format!("{}-{}", std::process::id(), u64::from_le_bytes(b))
}

async fn run(
    url: &str,
    cache: &Cache,
    origin: &str,
    local: &mut tokio::sync::broadcast::Receiver<Invalidation>,
    first: bool,
) -> Result<(), String> {
    let (client, mut nrx, driver) = crate::directory::listening(url, CACHE_CHANNEL).await?;
    let result = async {
        if !first {
            // Notices sent while the channel was down are lost, both ways: this process drops
            // everything, and tells the others to (a batch it was sending may not have gone).
            cache.clear();
            let all = payload(
                origin,
                &Invalidation {
                    tenant_id: "*".into(),
                    scope: Scope::All { schema: true },
                },
            );
            client
                .execute("SELECT pg_catalog.pg_notify($1, $2)", &[&CACHE_CHANNEL, &all])
                .await
                .map_err(|e| e.to_string())?;
        }
        loop {
            tokio::select! {
                n = nrx.recv() => {
                    let Some(n) = n else { return Err("the catalog connection closed".to_string()) };
                    match parse(&n) {
                        Some((from, _)) if from == origin => {}
                        Some((_, inv)) => cache.apply_remote(&inv),
                        None => tracing::debug!("a cache notice that is not pgfleet's: {n:?}"),
                    }
                }
                inv = local.recv() => {
                    let mut texts = Vec::new();
                    let mut next = inv;
                    loop {
                        match next {
                            Ok(inv) => texts.push(payload(origin, &inv)),
                            // Notices this process could not forward: everything, everywhere.
                            Err(RecvError::Lagged(_)) => texts.push(payload(origin, &Invalidation { tenant_id: "*".into(), scope: Scope::All { schema: true } })),
                            Err(RecvError::Closed) => return Ok(()),
                        }
                        if texts.len() >= BATCH {
                            break;
                        }
                        next = match local.try_recv() {
                            Ok(inv) => Ok(inv),
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                            Err(_) => break,
                        };
                    }
                    // One round trip for what gathered while the last one was on its way.
                    client
                        .execute(
                            "SELECT pg_notify($1, n) FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i",
                            &[&CACHE_CHANNEL, &texts],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_as_sent() {
        for scope in [
            Scope::All { schema: true },
            Scope::All { schema: false },
            Scope::Tables(vec![16384, 16390]),
            Scope::Rows {
                tables: vec![1],
                table: 2,
                column: "thread_id".into(),
                values: vec!["a\tb".into(), "\"q\"".into()],
            },
        ] {
            let inv = Invalidation {
                tenant_id: "0b6f".into(),
                scope,
            };
            let text = payload("p1", &inv);
            assert_eq!(parse(&text), Some(("p1", inv)));
        }
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("a\tb\t1,x"), None);
        let many = Invalidation {
            tenant_id: "t".into(),
            scope: Scope::Tables((0..5000).collect()),
        };
        assert!(payload("p", &many).ends_with("\t*"));
    }
}
