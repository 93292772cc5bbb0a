//! `pgfleet demo`: what pgfleet is for, end to end on the embedded PostgreSQL, in under a minute.
//!
//! 1. install PostgreSQL 18 with pgvector into the cache (first time only) and start the local
//!    cluster;
//! 2. a fleet catalog (`pgfleet_demo_catalog`) whose target is `examples/chat/schema.sql`;
//! 3. three tenants provisioned exactly once and verified: one with a database of its own, two with
//!    schemas of their own in a shared database;
//! 4. per tenant, through `Fleet::client`: documents with 384-dimensional embeddings stored, then a
//!    cosine similarity search through the HNSW index (each tenant sees only its own documents);
//! 5. a table dropped behind pgfleet's back: the next request fails, is repaired (and the
//!    correction recorded) and retried;
//! 6. a new migration rolled out to the fleet (`migrate --all`), then `check --all`;
//! 7. SQL over HTTP: `examples/node-drizzle` (the Neon serverless driver and Drizzle ORM,
//!    unchanged) against a `/sql` front door on the fleet, with an app token and a JWT, when Node.js
//!    20+ and the example's packages are present (`bash scripts/node.sh` installs them).
//!
//! The embeddings come from [`toy_embedding`], a deterministic hashed bag of words: it runs
//! anywhere without downloading a model, and texts sharing words land close together. A real
//! application stores the output of a sentence model (e.g. all-MiniLM-L6-v2, also 384 dimensions).
//!
//! Each run starts afresh: the previous demo's tenants are dropped through its catalog (the demo's
//! master key is kept in `$PGFLEET_HOME/demo-master.key`), and nothing else on the server is
//! touched.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::control::config::Config;
use pgfleet::control::fleet::FleetOptions;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet::control::{Control, catalog};
use pgfleet::embedded;
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::pg::connect;
use pgfleet::{Fleet, RouterOptions};

/// The bundled example schema.
pub const CHAT_SCHEMA: &str = include_str!("../../../examples/chat/schema.sql");
/// Dimensions of the example's embeddings.
pub const DIMENSIONS: usize = 384;

const DOCUMENTS: &[(&str, &str)] = &[
    (
        "Reset your password",
        "To reset your password open settings, choose security and click reset password; a reset link arrives by email.",
    ),
    (
        "Billing and invoices",
        "Invoices are sent monthly by email. Update the billing card or download an invoice from the billing page.",
    ),
    (
        "Export chat history",
        "Export every chat thread as JSON or Markdown from the thread menu; exports include messages and attachments.",
    ),
    (
        "Two-factor authentication",
        "Turn on two-factor authentication in security settings with an authenticator app to protect your account login.",
    ),
    (
        "Delete your account",
        "Deleting the account removes all chat threads, documents and embeddings after thirty days.",
    ),
    (
        "Keyboard shortcuts",
        "Press slash to focus the message box, and control enter to send a message in a chat thread.",
    ),
];

const QUERY: &str = "how do I reset my password from security settings?";

/// A deterministic 384-dimensional embedding of `text`: each lower-cased word (and each pair of
/// neighbouring words) is hashed to a dimension and a sign; the vector is then L2-normalized.
pub fn toy_embedding(text: &str) -> Vec<f32> {
    fn fnv1a(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect();
    let mut v = vec![0f32; DIMENSIONS];
    let mut add = |feature: &str, weight: f32| {
        let h = fnv1a(feature);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % DIMENSIONS as u64) as usize] += sign * weight;
    };
    for w in &words {
        add(w, 1.0);
    }
    for pair in words.windows(2) {
        add(&format!("{} {}", pair[0], pair[1]), 0.5);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The pgvector text form of a vector: `[0.1,0.2,…]`.
pub fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

/// Runs the demo against the cluster at `data_dir`.
///
/// # Errors
/// When any step fails; the message names the step.
pub fn run(data_dir: &Path, port: Option<u16>) -> anyhow::Result<()> {
    let started = Instant::now();
    if std::env::var_os(embedded::paths::PG_BIN_ENV).is_none() {
        eprintln!("[1/8] PostgreSQL 18 with pgvector, started locally");
        crate::local::ensure_postgres()?;
    } else {
        eprintln!("[1/8] PostgreSQL from PGFLEET_PG_BIN, started locally");
    }
    let up = embedded::up(&embedded::UpOptions {
        data_dir: data_dir.to_path_buf(),
        port,
    })?;
    crate::local::report_up(&up);
    up.cluster.binaries().require_pgvector()?;
    let admin_url = up.cluster.url();
    let catalog_url = up.cluster.url_for(DEMO_CATALOG);
    let work = embedded::paths::home_dir().join("demo");
    let migrations = work.join("migrations");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let key = demo_key()?;
        eprintln!("[2/8] A fleet catalog ({DEMO_CATALOG}) with examples/chat/schema.sql as the target");
        forget_previous_demo(&admin_url, &catalog_url, &key).await?;
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&migrations)?;
        std::fs::write(migrations.join("20260101000000_chat.sql"), CHAT_SCHEMA)?;
        sum::write(&MigrationDir::load(&migrations)?)?;
        catalog::init(&connect::parse_url(&catalog_url)?, Some(&MigrationDir::load(&migrations)?))
            .await
            .context("initializing the demo catalog")?;
        let fleet = Fleet::connect(Config::new(&catalog_url, key), RouterOptions::default()).await?;
        let control = fleet.control();
        control.add_server("local", &admin_url, 1000, 1).await?;

        eprintln!("[3/8] Provisioning {} tenants, exactly once each, verified against the target", TENANTS.len());
        println!();
        println!("  tenant  mode      lives in                              ready in");
        for (key, mode, _) in TENANTS {
            let t0 = Instant::now();
            let t = fleet
                .provision_with(key, &CreateOptions { mode: Some(*mode), server: None }, Duration::from_secs(120))
                .await
                .with_context(|| format!("provisioning tenant {key}"))?;
            let place = match t.mode {
                Mode::Database => format!("database {}", t.database),
                Mode::Schema => format!("schema {} of {}", t.schema, t.database),
            };
            println!("  {key:<6}  {:<8}  {place:<36}  {:>5} ms", t.mode.as_str(), t0.elapsed().as_millis());
        }

        println!();
        eprintln!("[4/8] Storing documents with embeddings and searching, per tenant, through Fleet::client");
        println!();
        for (key, _, docs) in TENANTS {
            store_documents(&fleet, key, docs).await?;
        }
        for (key, _, _) in TENANTS {
            let (hits, uses_index) = search(&fleet, key, QUERY).await?;
            let best = hits.first().map(|(t, d)| format!("{t:?} (cosine distance {d:.3})")).unwrap_or_else(|| "nothing".into());
            println!(
                "  {key:<6}  best match for {QUERY:?}: {best}{}",
                if uses_index { ", via the HNSW index" } else { "" }
            );
        }
        println!("  (each tenant's connection runs as its own role with its own search_path: it sees only its own documents)");

        println!();
        let victim = TENANTS[1].0;
        eprintln!("[5/8] Dropping {victim}'s documents table behind pgfleet's back, then searching again");
        let t = control.tenant(victim).await?;
        let admin = connect(&up.cluster.url_for(&t.database)).await?;
        admin
            .batch_execute(&format!("DROP TABLE {}.documents", t.schema))
            .await
            .context("dropping the table")?;
        let attempts = Arc::new(AtomicUsize::new(0));
        let (hits, _) = search_counting(&fleet, victim, QUERY, attempts.clone()).await?;
        println!();
        println!(
            "  {victim}: the first attempt failed with relation \"documents\" does not exist; pgfleet repaired the schema and ran the request again ({} attempts, {} rows: the table is back, its rows went with the DROP)",
            attempts.load(Ordering::SeqCst),
            hits.len()
        );
        let corrections: Vec<pgfleet::control::events::Event> =
            pgfleet::control::events::of_tenant(&control.catalog(), &t.id, 50)
                .await?
                .into_iter()
                .filter(|e| e.kind == "tenant.correction")
                .collect();
        println!(
            "  {} correction(s) recorded in the catalog (tenant.correction events, with the statement, the time and the error that caused them):",
            corrections.len()
        );
        for e in corrections.iter().rev() {
            println!("    - {}", e.detail["object"].as_str().unwrap_or("?"));
        }

        println!();
        eprintln!("[6/8] Rolling out a new migration to the whole fleet: migrate --all");
        std::fs::write(migrations.join("20260102000000_pinned_threads.sql"), ROLLOUT)?;
        sum::write(&MigrationDir::load(&migrations)?)?;
        let report = control
            .migrate_all(Some(&MigrationDir::load(&migrations)?), &FleetOptions::default(), Arc::new(|_| {}))
            .await?;
        println!();
        println!(
            "  target {}: {} tenant(s) migrated, {} already up to date, {} failed, in {:.0} ms",
            report.target, report.migrated, report.up_to_date, report.failed, report.elapsed_ms
        );
        anyhow::ensure!(report.failed == 0, "the rollout failed: {:?}", report.tenants);

        println!();
        eprintln!("[7/8] Checking the whole fleet for drift: check --all");
        let check = control.check_all(false, 4, Arc::new(|_| {})).await?;
        println!();
        println!(
            "  {} tenant(s) compared with target {}: {} clean, {} with drift",
            check.total, check.target, check.clean, check.drifted
        );
        anyhow::ensure!(check.drifted == 0 && check.failed == 0, "drift left after the demo: {:?}", check.tenants);

        println!();
        eprintln!("[8/8] SQL over HTTP: the Node example (Neon serverless driver + Drizzle ORM) against the fleet");
        crate::demo_http::node_example(control, "bob").await?;
        anyhow::Ok(())
    })?;
    println!();
    println!(
        "Shown in {:.1} s: tenants provisioned exactly once and verified (database and schema mode),",
        started.elapsed().as_secs_f64()
    );
    println!(
        "pooled connections as each tenant's own role, pgvector similarity search per tenant, a missing"
    );
    println!(
        "table healed on the next request (and recorded), a fleet-wide migration, a drift check, and"
    );
    println!("the same tenants over HTTP from Node.js (when Node is present).");
    println!();
    println!("Look around (the demo's fleet is a fleet like any other):");
    println!(
        "  export PGFLEET_CATALOG_URL='{catalog_url}' PGFLEET_MASTER_KEY_FILE='{}'",
        demo_key_file().display()
    );
    println!("  pgfleet tenant list; pgfleet check-user bob; pgfleet tenant show alice");
    println!(
        "  pgfleet token create me --scope admin; pgfleet serve   # then sign in at http://127.0.0.1:6480/ (the dashboard) with the token"
    );
    println!(
        "The server keeps running; stop it with: pgfleet down --data-dir {}",
        up.cluster.data_dir().display()
    );
    Ok(())
}

/// The demo's catalog database.
pub const DEMO_CATALOG: &str = "pgfleet_demo_catalog";

/// A tenant of the demo: key, mode, its documents (title, body).
type DemoTenant = (&'static str, Mode, &'static [(&'static str, &'static str)]);

const TENANTS: &[DemoTenant] = &[
    ("alice", Mode::Database, DOCUMENTS),
    ("bob", Mode::Schema, DOCUMENTS.split_at(1).1),
    ("carol", Mode::Schema, DOCUMENTS.split_at(4).1),
];

/// The migration the demo rolls out.
const ROLLOUT: &str = "ALTER TABLE chat_threads ADD COLUMN pinned boolean NOT NULL DEFAULT false;
CREATE INDEX chat_threads_pinned_idx ON chat_threads (user_id) WHERE pinned;
";

fn demo_key_file() -> std::path::PathBuf {
    embedded::paths::home_dir().join("demo-master.key")
}

/// The demo's master key: kept between runs so the next run can drop this run's tenants.
fn demo_key() -> anyhow::Result<MasterKey> {
    let path = demo_key_file();
    if path.exists() {
        // As PGFLEET_MASTER_KEY_FILE reads it (the demo tells the user to export it): private only.
        return Ok(MasterKey::from_file(&path)?);
    }
    let key = MasterKey::generate()?;
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    // Created 0600 at once: never readable by others, not even for a moment.
    crate::control_cmds::write_private(&path, key.to_base64().expose())?;
    Ok(key)
}

/// Drops the previous demo run's tenants (through its catalog) and the catalog itself.
async fn forget_previous_demo(
    admin_url: &str,
    catalog_url: &str,
    key: &MasterKey,
) -> anyhow::Result<()> {
    let admin = connect(admin_url).await?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&DEMO_CATALOG],
        )
        .await?
        .is_some();
    if exists {
        match Control::connect(Config::new(catalog_url, key.clone())).await {
            Ok(old) => {
                for t in old.tenants(None).await? {
                    old.drop_tenant(&t.key).await.with_context(|| {
                        format!("dropping the previous demo's tenant {}", t.key)
                    })?;
                }
            }
            Err(e) => eprintln!(
                "  (the previous demo catalog could not be opened, its tenants stay: {e})"
            ),
        }
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {DEMO_CATALOG} WITH (FORCE)"
            ))
            .await
            .context("dropping the previous demo catalog")?;
    }
    Ok(())
}

async fn store_documents(fleet: &Fleet, key: &str, docs: &[(&str, &str)]) -> anyhow::Result<()> {
    let c = fleet.client(key).await?;
    let user_id: i64 = c
        .query_one(
            "INSERT INTO users (external_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
            &[&format!("{key}-1"), &format!("{key}@example.com"), &key],
        )
        .await
        .map_err(|e| anyhow::anyhow!(pgfleet::pg::describe(&e)))
        .context("inserting the tenant's user")?
        .get(0);
    for (title, body) in docs {
        let embedding = vector_literal(&toy_embedding(&format!("{title} {body}")));
        c.execute(
            "INSERT INTO documents (user_id, title, body, embedding) VALUES ($1, $2, $3, $4::text::vector)",
            &[&user_id, title, body, &embedding],
        )
        .await
        .map_err(|e| anyhow::anyhow!(pgfleet::pg::describe(&e)))
        .context("inserting a document")?;
    }
    Ok(())
}

/// The 3 nearest documents of tenant `key` (title, cosine distance), and whether the plan uses
/// the HNSW index.
async fn search(
    fleet: &Fleet,
    key: &str,
    query: &str,
) -> anyhow::Result<(Vec<(String, f64)>, bool)> {
    search_counting(fleet, key, query, Arc::new(AtomicUsize::new(0))).await
}

async fn search_counting(
    fleet: &Fleet,
    key: &str,
    query: &str,
    attempts: Arc<AtomicUsize>,
) -> anyhow::Result<(Vec<(String, f64)>, bool)> {
    let q = vector_literal(&toy_embedding(query));
    let found = fleet
        .with_tenant(key, |c| {
            let (q, attempts) = (q.clone(), attempts.clone());
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                // Force the HNSW index, as on a real-sized table, so the demo exercises it.
                c.batch_execute("SET enable_seqscan = off").await?;
                let plan: Vec<String> = c
                    .query(
                        "EXPLAIN SELECT id FROM documents ORDER BY embedding <=> $1::text::vector LIMIT 3",
                        &[&q],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let rows = c
                    .query(
                        "SELECT title, (embedding <=> $1::text::vector)::float8 FROM documents ORDER BY embedding <=> $1::text::vector LIMIT 3",
                        &[&q],
                    )
                    .await?;
                c.batch_execute("RESET enable_seqscan").await?;
                Ok((
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect::<Vec<_>>(),
                    plan.iter().any(|l| l.contains("_embedding_idx")),
                ))
            }
        })
        .await?;
    Ok(found)
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", pgfleet::pg::connect::redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_normalized_and_similar_texts_are_closer() {
        let a = toy_embedding("reset my password");
        let b = toy_embedding("how to reset the password");
        let c = toy_embedding("download an invoice from billing");
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert_eq!(a.len(), DIMENSIONS);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert!(
            dot(&a, &b) > dot(&a, &c) + 0.2,
            "{} vs {}",
            dot(&a, &b),
            dot(&a, &c)
        );
    }
}
