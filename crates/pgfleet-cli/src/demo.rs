//! `pgfleet demo`: the main job, end to end on the embedded PostgreSQL.
//!
//! 1. install PostgreSQL 18 with pgvector into the cache (first time only);
//! 2. start the local cluster (initialize it the first time);
//! 3. create the database `pgfleet_demo` afresh from `examples/chat/schema.sql`;
//! 4. store a user's documents with 384-dimensional embeddings;
//! 5. run a cosine similarity search through the HNSW index and print the ranking.
//!
//! The embeddings come from [`toy_embedding`], a deterministic hashed bag of words: it runs
//! anywhere without downloading a model, and texts sharing words land close together. A real
//! application stores the output of a sentence model (e.g. all-MiniLM-L6-v2, also 384 dimensions).

use std::path::Path;

use anyhow::Context;
use pgfleet::embedded;

/// The bundled example schema.
pub const CHAT_SCHEMA: &str = include_str!("../../../examples/chat/schema.sql");
/// The database the demo (re)creates.
pub const DEMO_DATABASE: &str = "pgfleet_demo";
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
pub fn run(data_dir: &Path, port: Option<u16>, schema: Option<&Path>) -> anyhow::Result<()> {
    let schema_sql = match schema {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading schema {}", p.display()))?
        }
        None => CHAT_SCHEMA.to_string(),
    };
    if std::env::var_os(embedded::paths::PG_BIN_ENV).is_none() {
        eprintln!("[1/5] PostgreSQL 18 with pgvector");
        crate::local::ensure_postgres()?;
    } else {
        eprintln!("[1/5] PostgreSQL from PGFLEET_PG_BIN");
    }
    eprintln!("[2/5] Starting the local cluster in {}", data_dir.display());
    let up = embedded::up(&embedded::UpOptions {
        data_dir: data_dir.to_path_buf(),
        port,
    })?;
    crate::local::report_up(&up);
    up.cluster.binaries().require_pgvector()?;
    let admin_url = up.cluster.url();
    let demo_url = up.cluster.url_for(DEMO_DATABASE);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ranking = rt.block_on(async {
        eprintln!("[3/5] Creating database {DEMO_DATABASE} from the chat schema");
        let admin = connect(&admin_url).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"))
            .await
            .context("dropping the previous demo database")?;
        admin
            .batch_execute(&format!("CREATE DATABASE {DEMO_DATABASE}"))
            .await
            .context("creating the demo database")?;
        let db = connect(&demo_url).await?;
        db.batch_execute(&schema_sql)
            .await
            .map_err(|e| anyhow::anyhow!(pgfleet::pg::describe(&e)))
            .context("loading the schema")?;

        eprintln!("[4/5] Storing {} documents with {DIMENSIONS}-dimensional embeddings", DOCUMENTS.len());
        let user_id: i64 = db
            .query_one(
                "INSERT INTO users (external_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
                &[&"user-42", &"ada@example.com", &"Ada"],
            )
            .await
            .context("inserting the demo user")?
            .get(0);
        for (title, body) in DOCUMENTS {
            let embedding = vector_literal(&toy_embedding(&format!("{title} {body}")));
            db.execute(
                "INSERT INTO documents (user_id, title, body, embedding) VALUES ($1, $2, $3, $4::text::vector)",
                &[&user_id, title, body, &embedding],
            )
            .await
            .context("inserting a document")?;
        }

        eprintln!("[5/5] Similarity search: {QUERY:?}");
        let query = vector_literal(&toy_embedding(QUERY));
        // Force the HNSW index, as on a real-sized table, so the demo exercises it.
        db.batch_execute("SET enable_seqscan = off").await?;
        let plan: Vec<String> = db
            .query(
                "EXPLAIN SELECT id FROM documents ORDER BY embedding <=> $1::text::vector LIMIT 3",
                &[&query],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let rows = db
            .query(
                "SELECT title, (embedding <=> $1::text::vector)::float8 AS distance \
                 FROM documents WHERE user_id = $2 ORDER BY embedding <=> $1::text::vector LIMIT 3",
                &[&query, &user_id],
            )
            .await
            .context("running the similarity search")?;
        let ranking: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let uses_index = plan.iter().any(|l| l.contains("documents_embedding_idx"));
        anyhow::Ok((ranking, uses_index))
    })?;

    let (ranking, uses_index) = ranking;
    println!();
    println!("Top {} documents for {QUERY:?}:", ranking.len());
    println!("  rank  cosine distance  title");
    for (i, (title, distance)) in ranking.iter().enumerate() {
        println!("  {:>4}  {distance:>15.4}  {title}", i + 1);
    }
    println!(
        "  (search {} the HNSW index documents_embedding_idx)",
        if uses_index { "used" } else { "did not use" }
    );
    println!();
    println!("Database: {demo_url}");
    println!(
        "The server keeps running; stop it with: pgfleet down --data-dir {}",
        up.cluster.data_dir().display()
    );
    Ok(())
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
