//! The control plane against real PostgreSQL clusters.

mod diagnose;
mod fleet;
mod provision;
mod security;
mod servers;
mod spares;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use pgfleet_control::config::Config;
use pgfleet_control::secrets::MasterKey;
use pgfleet_control::{Control, catalog};
use pgfleet_migrate::{MigrationDir, sum};
use pgfleet_testkit::TestDb;

/// The target every test tenant is brought to: a table with an enum, a vector column with an HNSW
/// index, a function and a view.
pub const TARGET: &[(&str, &str)] = &[
    (
        "20260101000000_init.sql",
        "CREATE EXTENSION IF NOT EXISTS vector;
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body text NOT NULL,
    mood mood NOT NULL DEFAULT 'happy',
    embedding vector(3)
);
CREATE INDEX notes_embedding ON notes USING hnsw (embedding vector_cosine_ops);
",
    ),
    (
        "20260102000000_more.sql",
        "CREATE TABLE tags (id serial PRIMARY KEY, note_id bigint REFERENCES notes ON DELETE CASCADE, name text NOT NULL);
CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM notes $$;
CREATE VIEW happy_notes AS SELECT id, body FROM notes WHERE mood = 'happy';
",
    ),
];

/// A target directory on disk, removed on drop.
#[derive(Debug)]
pub struct TargetDir(pub PathBuf);

impl TargetDir {
    /// Writes `files` and their pgfleet.sum.
    pub fn new(files: &[(&str, &str)]) -> Self {
        let p = std::env::temp_dir().join(format!(
            "pgfleet-control-target-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        for (n, s) in files {
            std::fs::write(p.join(n), s).unwrap();
        }
        sum::write(&MigrationDir::load(&p).unwrap()).unwrap();
        Self(p)
    }

    /// The directory.
    pub fn load(&self) -> MigrationDir {
        MigrationDir::load(&self.0).unwrap()
    }
}

impl Drop for TargetDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A control plane whose catalog is a fresh test database, with the shared cluster as server
/// `main`, initialized with [`TARGET`].
#[derive(Debug)]
pub struct Fleet {
    /// The catalog database.
    pub catalog: TestDb,
    /// The control plane.
    pub control: Control,
    /// The master key.
    pub key: MasterKey,
    _target: TargetDir,
}

impl Fleet {
    /// A fleet named after the test.
    pub async fn new() -> Self {
        let catalog = TestDb::new().await;
        let key = MasterKey::generate().unwrap();
        let target = TargetDir::new(TARGET);
        let url = pgfleet_pg::connect::parse_url(catalog.url()).unwrap();
        catalog::init(&url, Some(&target.load())).await.unwrap();
        let mut config = Config::new(catalog.url(), key.clone());
        config.retry_backoff = Duration::from_millis(100);
        config.provision_attempts = 3;
        let control = Control::connect(config).await.unwrap();
        control
            .add_server("main", catalog.admin_url(), 1000, 1)
            .await
            .unwrap();
        Self {
            catalog,
            control,
            key,
            _target: target,
        }
    }

    /// Records `dir` as the fleet's target (validated on the test cluster).
    pub async fn record(
        &self,
        dir: &MigrationDir,
    ) -> Result<Option<String>, pgfleet_control::ControlError> {
        let dev = pgfleet_pg::connect::parse_url(self.catalog.admin_url()).unwrap();
        catalog::record_target(
            &self.control.catalog(),
            dir,
            &dev,
            &pgfleet_pg::shadow::ShadowOptions::default(),
        )
        .await
    }

    /// Drops every tenant (their databases and roles live on shared clusters).
    pub async fn cleanup(&self) {
        for t in self.control.tenants(None).await.unwrap() {
            self.control.drop_tenant(&t.key).await.unwrap();
        }
    }
}

/// Connects with a URL, returning the error text on failure.
pub async fn try_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let config = pgfleet_pg::connect::parse_url(url).map_err(|e| e.to_string())?;
    pgfleet_pg::connect::connect(&config)
        .await
        .map_err(|e| e.to_string())
}
