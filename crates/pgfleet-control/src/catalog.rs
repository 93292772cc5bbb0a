//! The catalog: pgfleet's own state in a PostgreSQL database, schema `pgfleet`.
//!
//! Its tables are created and upgraded by pgfleet's own migrator from the migrations compiled into
//! this crate (`src/catalog/migrations/`), so `pgfleet init` is safe to run again and by several
//! processes at once. The fleet's target (the migrations directory every tenant is brought to) is
//! stored in `pgfleet.targets`, content and checksums, so no other process needs the files.

use std::path::Path;

use pgfleet_migrate::{MigrateOptions, MigrationDir, migrator, sum};
use pgfleet_pg::{PgError, connect};
use tokio_postgres::{Client, Config as PgConfig};

use crate::ControlError;

/// The catalog's own migrations.
pub fn catalog_migrations() -> MigrationDir {
    MigrationDir::from_files(
        Path::new("pgfleet-control/src/catalog/migrations"),
        vec![
            (
                "20261125000000_catalog.sql".to_string(),
                include_str!("catalog/migrations/20261125000000_catalog.sql").to_string(),
            ),
            (
                "20261125000001_target_models.sql".to_string(),
                include_str!("catalog/migrations/20261125000001_target_models.sql").to_string(),
            ),
            (
                "20261126000000_fleet.sql".to_string(),
                include_str!("catalog/migrations/20261126000000_fleet.sql").to_string(),
            ),
            (
                "20261126000001_rollout_abandoned.sql".to_string(),
                include_str!("catalog/migrations/20261126000001_rollout_abandoned.sql").to_string(),
            ),
            (
                "20261204000000_owner_roles.sql".to_string(),
                include_str!("catalog/migrations/20261204000000_owner_roles.sql").to_string(),
            ),
        ],
    )
    .expect("the catalog migrations compiled into pgfleet are valid")
}

/// What `init` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// The catalog database was created.
    pub created_database: bool,
    /// Catalog migrations applied.
    pub catalog_migrations: Vec<String>,
    /// The target version recorded, when it changed.
    pub new_target: Option<String>,
    /// The current target version.
    pub target: Option<String>,
}

/// Connects to the catalog database, creating it (on the same server, through its `postgres`
/// database) when it does not exist and `create` is set.
///
/// # Errors
/// Unreachable server, missing database (without `create`), insufficient rights.
pub async fn connect_catalog(url: &PgConfig, create: bool) -> Result<(Client, bool), ControlError> {
    match connect::connect(url).await {
        Ok(c) => Ok((c, false)),
        Err(PgError::Connect { reason, .. }) if reason.contains("does not exist") && create => {
            let name = url.get_dbname().unwrap_or("pgfleet").to_string();
            let mut admin = url.clone();
            admin.dbname("postgres");
            let a = connect::connect(&admin).await?;
            let sql = format!("CREATE DATABASE {}", pgfleet_schema::quote::ident(&name));
            if let Err(e) = a.batch_execute(&sql).await {
                // Another `init` created it meanwhile.
                if e.as_db_error().is_none_or(|d| d.code().code() != "42P04") {
                    return Err(
                        PgError::query(format!("creating the catalog database {name}"), e).into(),
                    );
                }
            }
            Ok((connect::connect(url).await?, true))
        }
        Err(PgError::Connect { target, reason }) if reason.contains("does not exist") => {
            Err(ControlError::NotInitialized(format!("{target}: {reason}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates or upgrades the catalog and, when `target` is given, records it as the fleet's target.
///
/// # Errors
/// Connection and migration errors; a target directory that does not match its `pgfleet.sum`.
pub async fn init(
    url: &PgConfig,
    target: Option<&MigrationDir>,
) -> Result<InitReport, ControlError> {
    if let Some(dir) = target {
        sum::verify(dir)?;
    }
    let (client, created_database) = connect_catalog(url, true).await?;
    let report = migrator::migrate(
        url,
        &catalog_migrations(),
        &MigrateOptions::default(),
        |_| {},
    )
    .await?;
    // Tenant roles live on the same servers: nobody but the catalog's own role connects to it.
    if created_database
        && let Err(e) = client
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {} FROM PUBLIC",
                pgfleet_schema::quote::ident(url.get_dbname().unwrap_or("pgfleet"))
            ))
            .await
    {
        tracing::warn!(
            "could not revoke CONNECT on the catalog database from PUBLIC: {}",
            pgfleet_pg::describe(&e)
        );
    }
    let mut out = InitReport {
        created_database,
        catalog_migrations: report.applied,
        ..InitReport::default()
    };
    if let Some(dir) = target {
        out.new_target = record_target(&client, dir).await?;
    }
    out.target = current_target(&client).await?.map(|t| t.version);
    Ok(out)
}

/// Checks that the catalog exists and is at this build's version.
///
/// # Errors
/// [`ControlError::NotInitialized`] with what to run.
pub async fn check(client: &Client) -> Result<(), ControlError> {
    let rows = pgfleet_migrate::history::read(client, "").await?;
    let want = catalog_migrations();
    let missing: Vec<&str> = want
        .migrations
        .iter()
        .filter(|m| {
            !rows
                .iter()
                .any(|r| r.version == m.version && r.state.is_done())
        })
        .map(|m| m.version.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ControlError::NotInitialized(format!(
            "the catalog lacks version(s) {}",
            missing.join(", ")
        )))
    }
}

/// The fleet's target as stored.
#[derive(Debug, Clone)]
pub struct Target {
    /// The newest migration's version.
    pub version: String,
    /// The `dir` hash of its `pgfleet.sum`.
    pub dir_hash: String,
    /// The migrations.
    pub dir: MigrationDir,
}

/// Records `dir` as the current target unless it already is. Returns the new version when it changed.
///
/// # Errors
/// Catalog errors; an empty directory.
pub async fn record_target(
    client: &Client,
    dir: &MigrationDir,
) -> Result<Option<String>, ControlError> {
    let Some(version) = dir.latest() else {
        return Err(ControlError::Invalid(format!(
            "{} has no migrations; write the first one with `pgfleet gen init`",
            dir.path.display()
        )));
    };
    let hash = sum::directory_hash(dir)?;
    if let Some(current) = current_target(client).await? {
        if current.dir_hash == hash {
            return Ok(None);
        }
        // Tenants already ran the recorded migrations: a new target may only add files.
        for old in &current.dir.migrations {
            match dir.get(&old.version) {
                None => {
                    return Err(ControlError::Invalid(format!(
                        "{} is missing from {}, but it is part of the fleet's target {} (tenants ran it); put it back: migrations are never removed, a new one undoes what it did",
                        old.file_name,
                        dir.path.display(),
                        current.version
                    )));
                }
                Some(m) if m.checksum != old.checksum => {
                    return Err(ControlError::Invalid(format!(
                        "{} was changed after it was recorded in the fleet's target {} (recorded {}, now {}): tenants ran the recorded text, so the fleet would split. Restore the file and put the change in a new migration (`pgfleet gen NAME`)",
                        m.file_name, current.version, old.checksum, m.checksum
                    )));
                }
                Some(_) => {}
            }
        }
    }
    let files: Vec<serde_json::Value> = dir
        .migrations
        .iter()
        .map(
            |m| serde_json::json!({"file_name": m.file_name, "sql": m.sql, "checksum": m.checksum}),
        )
        .collect();
    let files = serde_json::Value::Array(files).to_string();
    // One multi-statement query is one transaction: the old target stops being current and the
    // new one starts in the same commit (the partial unique index allows one current target).
    use pgfleet_schema::quote::literal;
    let sql = format!(
        "UPDATE pgfleet.targets SET is_current = false WHERE is_current AND version <> {v};
         INSERT INTO pgfleet.targets (version, dir_hash, files, is_current) VALUES ({v}, {h}, {f}::jsonb, true)
           ON CONFLICT (version) DO UPDATE SET dir_hash = EXCLUDED.dir_hash, files = EXCLUDED.files, is_current = true;
         INSERT INTO pgfleet.events (kind, detail) VALUES ('target.recorded', jsonb_build_object('version', {v}::text, 'dir_hash', {h}::text));",
        v = literal(version),
        h = literal(&hash),
        f = literal(&files),
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| PgError::query("recording the fleet's target", e))?;
    Ok(Some(version.to_string()))
}

/// The current target, if one was recorded.
///
/// # Errors
/// Catalog errors, or stored files that are not valid migrations.
pub async fn current_target(client: &Client) -> Result<Option<Target>, ControlError> {
    read_target(client, None).await
}

/// A target recorded earlier (or the current one), by version.
///
/// # Errors
/// Catalog errors, a stored target that does not parse.
pub async fn target_at(client: &Client, version: &str) -> Result<Option<Target>, ControlError> {
    read_target(client, Some(version)).await
}

async fn read_target(
    client: &Client,
    version: Option<&str>,
) -> Result<Option<Target>, ControlError> {
    let row = client
        .query_opt(
            "SELECT version, dir_hash, files::text FROM pgfleet.targets
             WHERE CASE WHEN $1::text IS NULL THEN is_current ELSE version = $1 END",
            &[&version],
        )
        .await
        .map_err(|e| PgError::query("reading the fleet's target", e))?;
    let Some(row) = row else { return Ok(None) };
    let files: Vec<serde_json::Value> = serde_json::from_str(row.get::<_, &str>(2))
        .map_err(|e| ControlError::Invalid(format!("stored target: {e}")))?;
    let files = files
        .into_iter()
        .map(|f| {
            (
                f["file_name"].as_str().unwrap_or_default().to_string(),
                f["sql"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let version: String = row.get(0);
    let dir = MigrationDir::from_files(Path::new(&format!("target {version}")), files)?;
    Ok(Some(Target {
        version,
        dir_hash: row.get(1),
        dir,
    }))
}
