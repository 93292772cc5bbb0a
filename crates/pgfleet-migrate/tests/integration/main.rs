//! pgfleet-migrate against a real PostgreSQL (the testkit's throwaway cluster).

mod generate;
mod import;
mod migrate;

use std::path::{Path, PathBuf};

use pgfleet_migrate::{MigrateOptions, MigrationDir, migrator, sum};
use pgfleet_testkit::TestDb;

/// A temporary migrations directory, removed on drop.
#[derive(Debug)]
pub struct Dir(pub PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Dir {
    /// A new empty directory named after `hint`.
    pub fn new(hint: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "pgfleet-migrate-test-{hint}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// Writes files and `pgfleet.sum`.
    pub fn with(hint: &str, files: &[(&str, &str)]) -> Self {
        let d = Self::new(hint);
        d.write(files);
        d
    }

    /// Adds or replaces files, then rewrites `pgfleet.sum`.
    pub fn write(&self, files: &[(&str, &str)]) {
        for (name, sql) in files {
            std::fs::write(self.0.join(name), sql).unwrap();
        }
        sum::write(&self.load()).unwrap();
    }

    /// Reads the directory.
    pub fn load(&self) -> MigrationDir {
        MigrationDir::load(&self.0).unwrap()
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Runs the migrator with `opts` and collects its events.
pub async fn run(
    db: &TestDb,
    dir: &Dir,
    opts: &MigrateOptions,
) -> (
    Result<migrator::MigrateReport, migrator::MigrateError>,
    Vec<migrator::MigrateEvent>,
) {
    let config = pgfleet_pg::connect::parse_url(db.url()).unwrap();
    let mut events = Vec::new();
    let r = migrator::migrate(&config, &dir.load(), opts, |e| events.push(e)).await;
    (r, events)
}

/// Runs the migrator with default options and expects success.
pub async fn migrate_ok(db: &TestDb, dir: &Dir) -> migrator::MigrateReport {
    run(db, dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_or_else(|e| panic!("migrate failed: {e}"))
}

/// A single-value query.
pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(db: &TestDb, sql: &str) -> T {
    db.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}
