//! The batched migration of a chunk of schema tenants of one shared database: their locks and
//! histories in two round trips, every batchable tenant's migrations as one batch of transactions.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::runner::Runner;
use crate::tenant::Tenant;

impl Runner {
    /// The batched part of [`Runner::chunk`]: the tenants it brought to the target (by id, with
    /// the versions applied). Tenants left out are migrated one by one by the caller.
    pub(super) async fn batch(
        &self,
        conn: &Client,
        database: &str,
        tenants: &[Tenant],
    ) -> Result<HashMap<String, Vec<String>>, String> {
        use pgfleet_migrate::lock;
        use pgfleet_schema::quote::literal;
        use tokio_postgres::SimpleQueryMessage;
        let keys: Vec<i64> = tenants
            .iter()
            .map(|t| lock::key(database, &t.schema))
            .collect();
        let describe = |e: tokio_postgres::Error| pgfleet_pg::describe(&e);
        // 1: the history table, the schemas that exist, and a try-lock per tenant.
        let names = tenants
            .iter()
            .map(|t| literal(&t.schema))
            .collect::<Vec<_>>()
            .join(", ");
        let locks = keys
            .iter()
            .map(|k| format!("pg_catalog.pg_try_advisory_lock({k})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT pg_catalog.to_regclass('pgfleet_migrate.history') IS NOT NULL, \
                    ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname IN ({names})), {locks}"
        );
        let messages = conn.simple_query(&sql).await.map_err(describe)?;
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or("no answer to the lock query")?;
        let has_history = row.get(0) == Some("t");
        let existing = row.get(1).unwrap_or("{}").to_string();
        let locked: Vec<bool> = (0..tenants.len())
            .map(|i| row.get(i + 2) == Some("t"))
            .collect();
        let unlock = async {
            let held: Vec<String> = keys
                .iter()
                .zip(&locked)
                .filter(|(_, l)| **l)
                .map(|(k, _)| format!("pg_catalog.pg_advisory_unlock({k})"))
                .collect();
            if !held.is_empty() {
                let _ = conn
                    .simple_query(&format!("SELECT {}", held.join(", ")))
                    .await;
            }
        };
        if !has_history {
            unlock.await;
            return Ok(HashMap::new());
        }
        // The schema list comes back as a PostgreSQL array literal; schema names are pgfleet's
        // own (`t` + hex), so no quoting appears in it.
        let existing: Vec<&str> = existing
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .collect();
        let candidates: Vec<&Tenant> = tenants
            .iter()
            .zip(&locked)
            .filter(|(t, l)| **l && existing.contains(&t.schema.as_str()))
            .map(|(t, _)| t)
            .collect();
        // 2: their histories.
        let scopes: Vec<&str> = candidates.iter().map(|t| t.schema.as_str()).collect();
        let histories = match pgfleet_migrate::history::read_many(conn, &scopes).await {
            Ok(h) => h,
            Err(e) => {
                unlock.await;
                return Err(e.to_string());
            }
        };
        let mut done = HashMap::new();
        let mut sql = String::new();
        let mut in_batch = Vec::new();
        for t in candidates {
            let rows = histories.get(&t.schema).map(Vec::as_slice).unwrap_or(&[]);
            let Some(pending) = pgfleet_migrate::migrator::batchable(&self.target.dir, rows) else {
                continue;
            };
            if pending.is_empty() {
                done.insert(t.id.clone(), Vec::new());
                continue;
            }
            for m in &pending {
                sql.push_str(&pgfleet_migrate::migrator::transaction_sql(
                    &t.schema, m, true,
                ));
            }
            in_batch.push((
                t,
                pending
                    .iter()
                    .map(|m| m.version.clone())
                    .collect::<Vec<_>>(),
            ));
        }
        // 3: every batchable tenant's migrations; each commits on its own, the first failure
        // stops the rest of the batch.
        let failed = !sql.is_empty() && conn.batch_execute(&sql).await.is_err();
        if failed {
            let _ = conn.batch_execute("ROLLBACK").await;
        }
        let after = if failed {
            let scopes: Vec<&str> = in_batch.iter().map(|(t, _)| t.schema.as_str()).collect();
            pgfleet_migrate::history::read_many(conn, &scopes)
                .await
                .ok()
        } else {
            None
        };
        for (t, versions) in in_batch {
            let complete = match &after {
                None if !failed => true,
                None => false,
                Some(h) => versions.iter().all(|v| {
                    h.get(&t.schema)
                        .is_some_and(|rows| rows.iter().any(|r| &r.version == v))
                }),
            };
            if complete {
                done.insert(t.id.clone(), versions);
            }
        }
        // 4: the locks.
        unlock.await;
        Ok(done)
    }
}
