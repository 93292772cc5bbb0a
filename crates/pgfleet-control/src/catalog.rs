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

pub mod events;
pub(crate) mod operations;
pub(crate) mod rollouts;
pub(crate) mod sealed;
pub(crate) mod servers;
pub(crate) mod tenants;
pub(crate) mod tokens;

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
            (
                "20261204000001_validated_targets.sql".to_string(),
                include_str!("catalog/migrations/20261204000001_validated_targets.sql").to_string(),
            ),
            (
                "20261204000002_redact_display_urls.sql".to_string(),
                include_str!("catalog/migrations/20261204000002_redact_display_urls.sql")
                    .to_string(),
            ),
            (
                "20261204000003_tokens.sql".to_string(),
                include_str!("catalog/migrations/20261204000003_tokens.sql").to_string(),
            ),
            (
                "20261204000004_api.sql".to_string(),
                include_str!("catalog/migrations/20261204000004_api.sql").to_string(),
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
    /// Rights `PUBLIC` held on the catalog database and `init` took away (tenant roles live on
    /// the same servers: nobody but pgfleet's own role may connect to the catalog).
    pub revoked_from_public: Vec<String>,
    /// Why rights of `PUBLIC` on the catalog database could not be taken away (then `validate`
    /// reports them until someone who may revokes them).
    pub public_left: Option<String>,
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

/// Creates or upgrades the catalog and, when `target` is given, records it as the fleet's target
/// ([`record_target`]: validated on the catalog's server first, allowing only `vector` among the
/// untrusted extensions; [`init_with`] allows others).
///
/// # Errors
/// Connection and migration errors; a target directory that does not match its `pgfleet.sum`; a
/// target that does not run ([`ControlError::InvalidTarget`]).
pub async fn init(
    url: &PgConfig,
    target: Option<&MigrationDir>,
) -> Result<InitReport, ControlError> {
    init_with(url, target, &pgfleet_pg::shadow::ShadowOptions::default()).await
}

/// As [`init`], with the options of the target's validation replay (`Config::allowed_extensions`).
///
/// # Errors
/// As [`init`].
pub async fn init_with(
    url: &PgConfig,
    target: Option<&MigrationDir>,
    shadow: &pgfleet_pg::shadow::ShadowOptions,
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
    let mut out = InitReport {
        created_database,
        catalog_migrations: report.applied,
        ..InitReport::default()
    };
    // Tenant roles live on the same servers: nobody but the catalog's own role may connect to it
    // (a tenant that could would LISTEN to the fleet's announcements). A database created before
    // `init` keeps PostgreSQL's default `PUBLIC` CONNECT and TEMPORARY: taken away here too.
    out.revoked_from_public = public_rights(&client).await?;
    if !out.revoked_from_public.is_empty() {
        // A role that does not own the database gets a warning, not an error: read them again.
        let revoked = client
            .batch_execute("DO $$ BEGIN EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()); END $$")
            .await;
        let left = public_rights(&client).await?;
        if !left.is_empty() {
            out.public_left = Some(format!(
                "PUBLIC keeps {}{} (the catalog's role must own the database to revoke them; run `REVOKE ALL ON DATABASE … FROM PUBLIC` as its owner)",
                left.join(", "),
                revoked
                    .err()
                    .map(|e| format!(": {}", pgfleet_pg::describe(&e)))
                    .unwrap_or_default()
            ));
            out.revoked_from_public.retain(|r| !left.contains(r));
        }
    }
    if let Some(dir) = target {
        out.new_target = record_target(&client, dir, url, shadow).await?;
    }
    out.target = current_target(&client).await?.map(|t| t.version);
    Ok(out)
}

/// The rights `PUBLIC` holds on the catalog database (e.g. `CONNECT`, `TEMPORARY`): none, after
/// `init`.
///
/// # Errors
/// Query errors.
pub async fn public_rights(client: &Client) -> Result<Vec<String>, ControlError> {
    let rows = client
        .query(include_str!("catalog/sql/public_rights.sql"), &[])
        .await
        .map_err(|e| PgError::query("reading the catalog database's privileges", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
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

/// Records `dir` as the current target unless it already is, after validating it: its migrations
/// are replayed in a shadow database on the server of `dev` (so a migration that cannot run never
/// becomes the target; the model built there is kept for that server's PostgreSQL major). Returns
/// the new version when it changed.
///
/// A recorded migration may be changed or removed only while no tenant has applied it (a rollout
/// that failed everywhere can be fixed by recording the corrected directory); once a tenant ran it,
/// the fleet would split, so that is refused.
///
/// # Errors
/// Catalog errors; an empty directory; a migration that fails in the shadow database (with its
/// file and line); a change to a migration a tenant ran.
pub async fn record_target(
    client: &Client,
    dir: &MigrationDir,
    dev: &PgConfig,
    shadow: &pgfleet_pg::shadow::ShadowOptions,
) -> Result<Option<String>, ControlError> {
    let Some(version) = dir.latest() else {
        return Err(ControlError::EmptyTarget {
            dir: dir.path.display().to_string(),
        });
    };
    let hash = sum::directory_hash(dir)?;
    let current = current_target(client).await?;
    if let Some(current) = &current
        && current.dir_hash == hash
    {
        return Ok(None);
    }
    if let Some(current) = &current {
        // Tenants that ran a recorded migration ran its recorded text: it may change only while
        // none has (its version is newer than every tenant's).
        let newest_applied = tenants::newest_version(client).await?;
        let applied = |v: &str| newest_applied.as_deref().is_some_and(|n| n >= v);
        for old in &current.dir.migrations {
            match dir.get(&old.version) {
                None if applied(&old.version) => {
                    return Err(ControlError::RecordedMigrationChanged {
                        file: old.file_name.clone(),
                        change: format!("is missing from {}", dir.path.display()),
                        version: current.version.clone(),
                        what_to_do: "put it back: migrations are never removed, a new one undoes what it did",
                    });
                }
                Some(m) if m.checksum != old.checksum && applied(&old.version) => {
                    return Err(ControlError::RecordedMigrationChanged {
                        file: m.file_name.clone(),
                        change: format!(
                            "was changed (recorded {}, now {})",
                            old.checksum, m.checksum
                        ),
                        version: current.version.clone(),
                        what_to_do: "tenants ran the recorded text: restore the file and put the change in a new migration (`pgfleet gen NAME`)",
                    });
                }
                _ => {}
            }
        }
    }
    // Validated before it is recorded: replayed from nothing in a shadow database.
    let mut dev = dev.clone();
    dev.options("-c search_path=public");
    let source = pgfleet_migrate::generate::replay_source(dir);
    let invalid = |e| ControlError::InvalidTarget {
        version: version.to_string(),
        error: Box::new(e),
    };
    // Server-level statements are refused before anything runs (file:line); the sandbox of the
    // replay is the actual protection.
    pgfleet_pg::guard::check_source(&source).map_err(invalid)?;
    let model = pgfleet_pg::shadow::desired_model(&dev, &source, shadow)
        .await
        .map_err(invalid)?;
    let model_json = serde_json::to_string(&model).map_err(|e| ControlError::TaskFailed {
        what: "serializing the target model",
        reason: e.to_string(),
    })?;
    let files: Vec<serde_json::Value> = dir
        .migrations
        .iter()
        .map(
            |m| serde_json::json!({"file_name": m.file_name, "sql": m.sql, "checksum": m.checksum}),
        )
        .collect();
    let files = serde_json::Value::Array(files).to_string();
    // One multi-statement query is one transaction (on the shared catalog connection, where a
    // BEGIN of our own could interleave with other tasks' statements): the old target stops being
    // current and the new one starts in the same commit (the partial unique index allows one
    // current target). A version recorded before with other files (a corrected migration) loses
    // its stored models. The only catalog statement built as text: every value through `literal`.
    use pgfleet_schema::quote::literal;
    let sql = format!(
        "UPDATE pgfleet.targets SET is_current = false WHERE is_current AND version <> {v};
         DELETE FROM pgfleet.target_models m USING pgfleet.targets t
           WHERE m.version = t.version AND t.version = {v} AND t.dir_hash <> {h};
         INSERT INTO pgfleet.targets (version, dir_hash, files, is_current, validated) VALUES ({v}, {h}, {f}::jsonb, true, true)
           ON CONFLICT (version) DO UPDATE SET dir_hash = EXCLUDED.dir_hash, files = EXCLUDED.files, is_current = true, validated = true;
         INSERT INTO pgfleet.target_models (version, pg_major, model) VALUES ({v}, {major}, {m}::jsonb)
           ON CONFLICT (version, pg_major) DO NOTHING;
         INSERT INTO pgfleet.events (kind, detail) VALUES ('target.recorded', jsonb_build_object('version', {v}::text, 'dir_hash', {h}::text, 'replaced', {replaced}));",
        v = literal(version),
        h = literal(&hash),
        f = literal(&files),
        m = literal(&model_json),
        major = model.server_version / 10000,
        replaced = current
            .as_ref()
            .is_some_and(|c| c.dir.migrations.iter().any(|o| dir.get(&o.version).is_none_or(|m| m.checksum != o.checksum))),
    );
    client
        .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
        .await
        .map_err(|e| PgError::query("recording the fleet's target", e))?;
    Ok(Some(version.to_string()))
}

/// The target new tenants are provisioned to: the newest validated one (the current target, once
/// recorded by this pgfleet; a catalog from before validation may hold a current target that never
/// ran anywhere).
///
/// # Errors
/// Catalog errors.
pub async fn provisioning_target(client: &Client) -> Result<Option<Target>, ControlError> {
    let version: Option<String> = client
        .query_opt(include_str!("catalog/sql/target_provisioning.sql"), &[])
        .await
        .map_err(|e| PgError::query("reading the fleet's target", e))?
        .map(|r| r.get(0));
    match version {
        Some(v) => read_target(client, Some(&v)).await,
        None => Ok(None),
    }
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
        .query_opt(include_str!("catalog/sql/target_read.sql"), &[&version])
        .await
        .map_err(|e| PgError::query("reading the fleet's target", e))?;
    let Some(row) = row else { return Ok(None) };
    let files: Vec<serde_json::Value> =
        serde_json::from_str(row.get::<_, &str>(2)).map_err(|e| ControlError::CorruptRow {
            table: "targets",
            detail: e.to_string(),
        })?;
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

/// Whether a target has been recorded.
///
/// # Errors
/// Catalog errors.
pub(crate) async fn has_current_target(c: &Client) -> Result<bool, ControlError> {
    Ok(
        c.query_one(include_str!("catalog/sql/target_has_current.sql"), &[])
            .await
            .map_err(|e| PgError::query("reading the fleet's target", e))?
            .get(0),
    )
}

/// The stored model (JSON) of target `version` for PostgreSQL major `major`, if one was built.
///
/// # Errors
/// Catalog errors.
pub(crate) async fn target_model(
    c: &Client,
    version: &str,
    major: i32,
) -> Result<Option<String>, ControlError> {
    Ok(c.query_opt(
        include_str!("catalog/sql/target_model.sql"),
        &[&version, &major],
    )
    .await
    .map_err(|e| PgError::query("reading the target model", e))?
    .map(|r| r.get(0)))
}

/// Stores the model (JSON) of target `version` for PostgreSQL major `major`, unless another
/// process stored one first.
///
/// # Errors
/// Catalog errors.
pub(crate) async fn insert_target_model(
    c: &Client,
    version: &str,
    major: i32,
    json: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("catalog/sql/target_model_insert.sql"),
        &[&version, &major, &json],
    )
    .await
    .map_err(|e| PgError::query("storing the target model", e))?;
    Ok(())
}

/// The catalog channel on which the ids of changed tenants are announced (`*`: forget
/// everything). Ids, never keys: keys are the application's user ids, and anyone who may `LISTEN`
/// on the catalog database would read them (only pgfleet's own role may connect to it: `pgfleet
/// init` revokes `PUBLIC`'s rights, and `validate` reports a catalog database open to `PUBLIC`).
pub const CHANGES_CHANNEL: &str = "pgfleet_tenant_changes";

/// Tells running routers that tenant `id` changed (best effort: they also re-read after a TTL).
pub(crate) async fn announce(c: &Client, id: &str) {
    if let Err(e) = c
        .execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &id])
        .await
    {
        tracing::warn!(tenant_id = %id, "announcing a tenant change: {e}");
    }
}
