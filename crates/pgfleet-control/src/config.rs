//! Configuration: flags, then `PGFLEET_*` environment variables, then `pgfleet.toml`.
//!
//! ```toml
//! # pgfleet.toml
//! catalog_url = "postgres://pgfleet_admin@db.internal:5432/pgfleet"   # a password here is allowed but better in PGFLEET_CATALOG_URL
//! migrations = "migrations"
//! master_key_file = "/run/secrets/pgfleet-master-key"                # base64 of 32 bytes
//! default_mode = "database"                                           # or "schema"
//!
//! [sql]                         # the SQL front door of `pgfleet serve` (flags and PGFLEET_SQL_* win)
//! listen = "0.0.0.0:6481"
//! max_body = "10MiB"
//! max_response = "10MiB"
//! statement_timeout = "30s"
//! max_concurrent_per_tenant = 16
//! cors_origins = ["https://app.example.com"]
//! provision_on_first_use = false
//! provision_timeout = "30s"
//! tls_cert = "/etc/pgfleet/tls.crt"
//! tls_key = "/etc/pgfleet/tls.key"
//! read_timeout = "10s"
//! budget_per_server = 20
//! connections_per_tenant = 5
//!
//! [cache]                       # the result cache of the router (`/sql`, `Fleet::query_cached`)
//! max_bytes = "64MiB"           # "0" turns it off
//! tables = ["chat_threads", "documents"]   # reads of only these are cached without a comment
//! max_age = "30s"               # for reads of those tables
//! ```
//!
//! The master key itself is taken only from `PGFLEET_MASTER_KEY` or a file (`--master-key-file`,
//! `PGFLEET_MASTER_KEY_FILE`, `master_key_file`), never from the TOML file or a flag value, so it does
//! not end up in shell history or version control.

use std::path::{Path, PathBuf};

use crate::secrets::{MasterKey, SecretError};
use crate::tenant::Mode;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file cannot be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value is invalid.
    #[error("{name}: {reason}")]
    Invalid {
        /// The setting (flag, variable or key).
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// No catalog configured.
    #[error(
        "no catalog configured: pass --catalog-url, set PGFLEET_CATALOG_URL, or put catalog_url in pgfleet.toml (or start the local PostgreSQL with `pgfleet up`)"
    )]
    NoCatalog,
    /// No master key configured.
    #[error(
        "no master key configured: set PGFLEET_MASTER_KEY (base64 of 32 bytes) or PGFLEET_MASTER_KEY_FILE, or master_key_file in pgfleet.toml; `pgfleet keys generate` prints a new key"
    )]
    NoMasterKey,
    /// The master key is malformed.
    #[error("master key from {source_name}")]
    MasterKey {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        #[source]
        source: SecretError,
    },
}

/// Settings from one source; `None` = not set there.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The catalog database URL.
    pub catalog_url: Option<String>,
    /// The migrations directory of the fleet's target.
    pub migrations: Option<PathBuf>,
    /// A file holding the master key (base64).
    pub master_key_file: Option<PathBuf>,
    /// Default tenant mode.
    pub default_mode: Option<Mode>,
    /// `[sql]`: the SQL front door (files only; flags and the environment are read by the CLI).
    #[serde(default)]
    pub sql: SqlSettings,
    /// `[cache]`: the router's result cache (files only; flags and the environment are read by
    /// the CLI).
    #[serde(default)]
    pub cache: CacheSettings,
    /// Refused in files (see module docs); present only to give a clear error.
    #[serde(default)]
    master_key: Option<toml::Value>,
}

impl Settings {
    /// Settings from command-line flags.
    pub fn flags(
        catalog_url: Option<String>,
        migrations: Option<PathBuf>,
        master_key_file: Option<PathBuf>,
    ) -> Self {
        Self {
            catalog_url,
            migrations,
            master_key_file,
            ..Self::default()
        }
    }

    /// Reads the `PGFLEET_*` variables through `var`.
    ///
    /// # Errors
    /// An unknown `PGFLEET_DEFAULT_MODE`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let default_mode = match var("PGFLEET_DEFAULT_MODE") {
            Some(m) => Some(m.parse().map_err(|reason| ConfigError::Invalid {
                name: "PGFLEET_DEFAULT_MODE".into(),
                reason,
            })?),
            None => None,
        };
        Ok(Self {
            catalog_url: var("PGFLEET_CATALOG_URL"),
            migrations: var("PGFLEET_MIGRATIONS").map(PathBuf::from),
            master_key_file: var("PGFLEET_MASTER_KEY_FILE").map(PathBuf::from),
            default_mode,
            sql: SqlSettings::default(),
            cache: CacheSettings::default(),
            master_key: None,
        })
    }

    /// Reads a `pgfleet.toml`.
    ///
    /// # Errors
    /// [`ConfigError::File`] for unreadable files, bad TOML, unknown keys or a `master_key` key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let s: Self = toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.into(),
            reason: e.to_string().trim().to_string(),
        })?;
        if s.master_key.is_some() {
            return Err(ConfigError::File {
                path: path.into(),
                reason: "master_key may not be written in the configuration file; put the key in a file of its own (master_key_file) or in PGFLEET_MASTER_KEY".into(),
            });
        }
        Ok(s)
    }

    /// `self`, with unset values taken from `lower`.
    pub fn or(self, lower: Settings) -> Settings {
        Settings {
            catalog_url: self.catalog_url.or(lower.catalog_url),
            migrations: self.migrations.or(lower.migrations),
            master_key_file: self.master_key_file.or(lower.master_key_file),
            default_mode: self.default_mode.or(lower.default_mode),
            sql: self.sql.or(lower.sql),
            cache: CacheSettings {
                max_bytes: self.cache.max_bytes.or(lower.cache.max_bytes),
                tables: self.cache.tables.or(lower.cache.tables),
                max_age: self.cache.max_age.or(lower.cache.max_age),
            },
            master_key: None,
        }
    }
}

/// `[cache]` of `pgfleet.toml`: the router's result cache (see `docs/cache.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// `--cache-max-bytes` (`"0"`: no cache).
    pub max_bytes: Option<String>,
    /// `--cache-tables`: tables whose reads are cached without a comment (`"*"`: all).
    pub tables: Option<Vec<String>>,
    /// `--cache-max-age`: how long those reads are served.
    pub max_age: Option<String>,
}

/// `[sql]` of `pgfleet.toml`: the SQL front door of `pgfleet serve`. Sizes and durations as
/// strings with units (`"10MiB"`, `"30s"`); the JWT keys are never read from here (environment or
/// files only).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSettings {
    /// `--sql-listen`.
    pub listen: Option<String>,
    /// `--sql-max-body`.
    pub max_body: Option<String>,
    /// `--sql-max-response`.
    pub max_response: Option<String>,
    /// `--sql-statement-timeout`.
    pub statement_timeout: Option<String>,
    /// `--sql-max-concurrent-per-tenant`.
    pub max_concurrent_per_tenant: Option<usize>,
    /// `--cors-origin`.
    pub cors_origins: Option<Vec<String>>,
    /// `--provision-on-first-use`.
    pub provision_on_first_use: Option<bool>,
    /// `--provision-timeout`.
    pub provision_timeout: Option<String>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--sql-read-timeout`.
    pub read_timeout: Option<String>,
    /// `--budget-per-server`.
    pub budget_per_server: Option<usize>,
    /// `--connections-per-tenant`.
    pub connections_per_tenant: Option<usize>,
    /// `--pg-listen`: the PostgreSQL wire-protocol front door.
    pub pg_listen: Option<String>,
    /// `--pg-pool-mode`: `transaction` or `session` (also for `/v2`).
    pub pg_pool_mode: Option<String>,
}

impl SqlSettings {
    /// `self`, with unset values taken from `lower`.
    pub fn or(self, lower: SqlSettings) -> SqlSettings {
        SqlSettings {
            listen: self.listen.or(lower.listen),
            max_body: self.max_body.or(lower.max_body),
            max_response: self.max_response.or(lower.max_response),
            statement_timeout: self.statement_timeout.or(lower.statement_timeout),
            max_concurrent_per_tenant: self
                .max_concurrent_per_tenant
                .or(lower.max_concurrent_per_tenant),
            cors_origins: self.cors_origins.or(lower.cors_origins),
            provision_on_first_use: self.provision_on_first_use.or(lower.provision_on_first_use),
            provision_timeout: self.provision_timeout.or(lower.provision_timeout),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            read_timeout: self.read_timeout.or(lower.read_timeout),
            budget_per_server: self.budget_per_server.or(lower.budget_per_server),
            connections_per_tenant: self.connections_per_tenant.or(lower.connections_per_tenant),
            pg_listen: self.pg_listen.or(lower.pg_listen),
            pg_pool_mode: self.pg_pool_mode.or(lower.pg_pool_mode),
        }
    }
}

/// Spare schemas kept per server by default.
pub const DEFAULT_SPARE_SCHEMAS: usize = 4;

/// Spare databases kept per server by default.
pub const DEFAULT_SPARE_DATABASES: usize = 2;

/// The resolved configuration.
#[derive(Clone)]
pub struct Config {
    /// The catalog database URL.
    pub catalog_url: String,
    /// The migrations directory of the fleet's target.
    pub migrations: PathBuf,
    /// Default tenant mode.
    pub default_mode: Mode,
    /// Attempts of a provisioning operation before the tenant is marked failed.
    pub provision_attempts: i32,
    /// First retry delay of a failed provisioning step (doubled each time, at most 60 s).
    pub retry_backoff: std::time::Duration,
    /// Create database-mode tenants from a per-server template database kept at the target
    /// (`CREATE DATABASE … TEMPLATE`), instead of from `template0` followed by the migrations.
    /// On by default: `pgfleet-bench provision` measured it 11 % faster at p50 (see
    /// docs/benchmarks.md); `PGFLEET_USE_TEMPLATES=0` turns it off.
    pub use_templates: bool,
    /// Spare schemas kept per server for schema-mode tenants by processes that keep them
    /// (`PGFLEET_SPARE_SCHEMAS`, default 4; 0 turns building them off). See [`crate::spares`].
    pub spare_schemas: usize,
    /// Spare databases kept per server for database-mode tenants by processes that keep spares
    /// (`PGFLEET_SPARE_DATABASES`, default 2; 0 turns building them off). Copies of the server's
    /// template, so none are built when templates are off. See [`crate::spares::databases`].
    pub spare_databases: usize,
    /// Untrusted extensions the fleet's target may create (`PGFLEET_ALLOWED_EXTENSIONS`,
    /// comma-separated, besides `vector`, which is always allowed): pgfleet creates them itself, as
    /// the admin, when it replays the target in a shadow database and before tenants' migrations.
    /// Trusted extensions need no allowance.
    pub allowed_extensions: Vec<String>,
    /// `[sql]` of `pgfleet.toml` (the CLI lays flags and `PGFLEET_SQL_*` over it).
    pub sql: SqlSettings,
    /// `[cache]` of `pgfleet.toml` (the CLI lays flags and `PGFLEET_CACHE_*` over it).
    pub cache: CacheSettings,
    /// The key secrets were sealed with before a rotation (`PGFLEET_PREVIOUS_MASTER_KEY` or
    /// `PGFLEET_PREVIOUS_MASTER_KEY_FILE`): still opens rows `pgfleet keys rotate` has not re-wrapped.
    pub previous_master_key: Option<MasterKey>,
    master_key: Result<MasterKey, String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "catalog_url",
                &pgfleet_pg::connect::redact(&self.catalog_url),
            )
            .field("migrations", &self.migrations)
            .field("default_mode", &self.default_mode)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|k| k.id().to_string()),
            )
            .finish()
    }
}

impl Config {
    /// Resolves `flags` over the environment (`var`) over the file (`PGFLEET_CONFIG`, else
    /// `./pgfleet.toml` when it exists). `fallback_catalog` is used when no source sets a catalog.
    ///
    /// # Errors
    /// See [`ConfigError`]. A missing or malformed master key is reported only when it is needed
    /// ([`Config::master_key`]).
    pub fn resolve(
        flags: Settings,
        var: impl Fn(&str) -> Option<String>,
        fallback_catalog: Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Settings::from_env(&var)?;
        let file = match var("PGFLEET_CONFIG") {
            Some(p) => Settings::from_file(Path::new(&p))?,
            None if Path::new("pgfleet.toml").exists() => {
                Settings::from_file(Path::new("pgfleet.toml"))?
            }
            None => Settings::default(),
        };
        let s = flags.or(env).or(file);
        let catalog_url = s
            .catalog_url
            .or(fallback_catalog)
            .ok_or(ConfigError::NoCatalog)?;
        let master_key = match (var("PGFLEET_MASTER_KEY"), &s.master_key_file) {
            (Some(k), _) => {
                MasterKey::from_base64(&k).map_err(|e| format!("PGFLEET_MASTER_KEY: {e}"))
            }
            (None, Some(path)) => MasterKey::from_file(path).map_err(|e| crate::chain(&e)),
            (None, None) => Err(String::new()),
        };
        Ok(Self {
            catalog_url,
            migrations: s.migrations.unwrap_or_else(|| PathBuf::from("migrations")),
            default_mode: s.default_mode.unwrap_or(Mode::Database),
            sql: s.sql,
            cache: s.cache,
            provision_attempts: 5,
            retry_backoff: std::time::Duration::from_secs(1),
            previous_master_key: previous_key(&var)?,
            use_templates: var("PGFLEET_USE_TEMPLATES").is_none_or(|v| v != "0" && v != "false"),
            spare_schemas: match var("PGFLEET_SPARE_SCHEMAS") {
                None => DEFAULT_SPARE_SCHEMAS,
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: "PGFLEET_SPARE_SCHEMAS".into(),
                    reason: format!("expected a number of schemas (0 or more), got {v:?}"),
                })?,
            },
            spare_databases: match var("PGFLEET_SPARE_DATABASES") {
                None => DEFAULT_SPARE_DATABASES,
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: "PGFLEET_SPARE_DATABASES".into(),
                    reason: format!("expected a number of databases (0 or more), got {v:?}"),
                })?,
            },
            allowed_extensions: var("PGFLEET_ALLOWED_EXTENSIONS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            master_key,
        })
    }

    /// A configuration with explicit values (tests, embedding programs).
    pub fn new(catalog_url: impl Into<String>, master_key: MasterKey) -> Self {
        Self {
            catalog_url: catalog_url.into(),
            migrations: PathBuf::from("migrations"),
            default_mode: Mode::Database,
            sql: SqlSettings::default(),
            cache: CacheSettings::default(),
            provision_attempts: 5,
            retry_backoff: std::time::Duration::from_secs(1),
            previous_master_key: None,
            use_templates: true,
            spare_schemas: DEFAULT_SPARE_SCHEMAS,
            spare_databases: DEFAULT_SPARE_DATABASES,
            allowed_extensions: Vec::new(),
            master_key: Ok(master_key),
        }
    }

    /// The master key.
    ///
    /// # Errors
    /// [`ConfigError::NoMasterKey`], or [`ConfigError::Invalid`] naming where the bad key came from.
    pub fn master_key(&self) -> Result<&MasterKey, ConfigError> {
        match &self.master_key {
            Ok(k) => Ok(k),
            Err(e) if e.is_empty() => Err(ConfigError::NoMasterKey),
            Err(e) => Err(ConfigError::Invalid {
                name: "master key".into(),
                reason: e.clone(),
            }),
        }
    }

    /// Replaces the master key (embedding programs, tests).
    pub fn set_master_key(&mut self, key: MasterKey) {
        self.master_key = Ok(key);
    }

    /// Whether a master key is configured (valid or not).
    pub fn has_master_key(&self) -> bool {
        !matches!(&self.master_key, Err(e) if e.is_empty())
    }
}

fn previous_key(var: &impl Fn(&str) -> Option<String>) -> Result<Option<MasterKey>, ConfigError> {
    let bad = |name: &str, source| ConfigError::MasterKey {
        source_name: name.to_string(),
        source,
    };
    if let Some(k) = var("PGFLEET_PREVIOUS_MASTER_KEY") {
        return MasterKey::from_base64(&k)
            .map(Some)
            .map_err(|e| bad("PGFLEET_PREVIOUS_MASTER_KEY", e));
    }
    if let Some(path) = var("PGFLEET_PREVIOUS_MASTER_KEY_FILE") {
        return MasterKey::from_file(Path::new(&path))
            .map(Some)
            .map_err(|e| bad("PGFLEET_PREVIOUS_MASTER_KEY_FILE", e));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let dir = std::env::temp_dir().join(format!("pgfleet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgfleet.toml");
        let key = MasterKey::generate().unwrap();
        let key_file = dir.join("master.key");
        std::fs::write(&key_file, key.to_base64().expose()).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(
            &file,
            format!(
                "catalog_url = \"postgres://file/db\"\nmigrations = \"from-file\"\ndefault_mode = \"schema\"\nmaster_key_file = \"{}\"\n",
                key_file.display()
            ),
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Config::resolve(Settings::default(), env(&[("PGFLEET_CONFIG", f)]), None).unwrap();
        assert_eq!(c.catalog_url, "postgres://file/db");
        assert_eq!(c.default_mode, Mode::Schema);
        assert_eq!(c.master_key().unwrap().id(), key.id());
        let c = Config::resolve(
            Settings::default(),
            env(&[
                ("PGFLEET_CONFIG", f),
                ("PGFLEET_CATALOG_URL", "postgres://env/db"),
                ("PGFLEET_DEFAULT_MODE", "database"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.catalog_url, "postgres://env/db");
        assert_eq!(c.default_mode, Mode::Database);
        assert_eq!(c.migrations, PathBuf::from("from-file"));
        let flags = Settings::flags(Some("postgres://flag/db".into()), None, None);
        let c = Config::resolve(
            flags,
            env(&[
                ("PGFLEET_CONFIG", f),
                ("PGFLEET_CATALOG_URL", "postgres://env/db"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.catalog_url, "postgres://flag/db");

        std::fs::write(&file, "master_key = \"abc\"\n").unwrap();
        let err =
            Config::resolve(Settings::default(), env(&[("PGFLEET_CONFIG", f)]), None).unwrap_err();
        assert!(err.to_string().contains("master_key_file"), "{err}");
        std::fs::write(&file, "catalog = \"x\"\n").unwrap();
        let err =
            Config::resolve(Settings::default(), env(&[("PGFLEET_CONFIG", f)]), None).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Key files from every source are refused when group or others may read them, with the
    /// mode found and the `chmod` to run; a key of the wrong length says so.
    #[test]
    fn key_files_open_to_others_are_refused_and_lengths_are_explained() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgfleet-config-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("master.key");
        let key = MasterKey::generate().unwrap();
        std::fs::write(&key_file, key.to_base64().expose()).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k = key_file.to_str().unwrap();
        let url = Some("postgres://x/y".to_string());
        let flags = Settings::flags(None, None, Some(key_file.clone()));
        let c = Config::resolve(flags, env(&[]), url.clone()).unwrap();
        let err = c.master_key().unwrap_err().to_string();
        assert!(
            err.contains("(mode 0644)") && err.contains(&format!("chmod 600 {k}")),
            "{err}"
        );
        let c = Config::resolve(
            Settings::default(),
            env(&[("PGFLEET_MASTER_KEY_FILE", k)]),
            url.clone(),
        )
        .unwrap();
        assert!(
            c.master_key()
                .unwrap_err()
                .to_string()
                .contains("(mode 0644)")
        );
        let err = Config::resolve(
            Settings::default(),
            env(&[
                ("PGFLEET_MASTER_KEY", key.to_base64().expose()),
                ("PGFLEET_PREVIOUS_MASTER_KEY_FILE", k),
            ]),
            url.clone(),
        )
        .unwrap_err();
        let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            msg.contains("PGFLEET_PREVIOUS_MASTER_KEY_FILE")
                && msg.contains("(mode 0644)")
                && msg.contains(&format!("chmod 600 {k}")),
            "{msg}"
        );
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::resolve(
            Settings::default(),
            env(&[
                ("PGFLEET_MASTER_KEY_FILE", k),
                ("PGFLEET_PREVIOUS_MASTER_KEY_FILE", k),
            ]),
            url.clone(),
        )
        .unwrap();
        assert_eq!(c.master_key().unwrap().id(), key.id());
        assert_eq!(c.previous_master_key.unwrap().id(), key.id());

        // 64 bytes, wrapped at 76 columns as `head -c 64 /dev/urandom | base64` prints them.
        use base64::Engine;
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 64]);
        std::fs::write(&key_file, format!("{}\n{}\n", &long[..76], &long[76..])).unwrap();
        let c = Config::resolve(
            Settings::default(),
            env(&[("PGFLEET_MASTER_KEY_FILE", k)]),
            url.clone(),
        )
        .unwrap();
        let err = c.master_key().unwrap_err().to_string();
        assert!(
            err.contains(k) && err.contains("64 bytes") && err.contains("32 bytes are needed"),
            "{err}"
        );
        let c = Config::resolve(
            Settings::default(),
            env(&[("PGFLEET_MASTER_KEY", &long)]),
            url,
        )
        .unwrap();
        let err = c.master_key().unwrap_err().to_string();
        assert!(
            err.contains("PGFLEET_MASTER_KEY")
                && err.contains("wrong length")
                && !err.contains(&long),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_pieces_say_what_to_set() {
        let err = Config::resolve(Settings::default(), env(&[]), None).unwrap_err();
        assert!(err.to_string().contains("PGFLEET_CATALOG_URL"), "{err}");
        let c = Config::resolve(
            Settings::default(),
            env(&[]),
            Some("postgres://local/pgfleet".into()),
        )
        .unwrap();
        assert!(
            c.master_key()
                .unwrap_err()
                .to_string()
                .contains("pgfleet keys generate")
        );
        let c = Config::resolve(
            Settings::default(),
            env(&[("PGFLEET_MASTER_KEY", "short")]),
            Some("postgres://x/y".into()),
        )
        .unwrap();
        let err = c.master_key().unwrap_err().to_string();
        assert!(
            err.contains("PGFLEET_MASTER_KEY") && !err.contains("short"),
            "{err}"
        );
        assert!(!format!("{c:?}").contains("short"));
    }
}
