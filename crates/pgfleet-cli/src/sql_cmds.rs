//! `pgfleet serve --sql-listen …` (the SQL-over-HTTP front door's flags) and `pgfleet token …`
//! (the token store). Every setting: flag, then `PGFLEET_*` environment, then `[sql]` in
//! `pgfleet.toml`, then the default.

use std::path::PathBuf;
use std::time::Duration;

use pgfleet::control::config::SqlSettings;
use pgfleet::control::tokens::Scope;
use pgfleet::{RouterOptions, UnknownPolicy};
use pgfleet_server::sql::SqlOptions;
use pgfleet_server::sql::jwt::JwtSettings;

use crate::control_cmds::ControlArgs;
use crate::schema_cmds::parse_duration;

/// The SQL front door of `pgfleet serve` (off unless `--sql-listen` is given).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SqlArgs {
    /// Serve `POST /sql` (the Neon serverless driver's protocol) on HOST:PORT; public, so it has a
    /// listener of its own (port 0 picks a free one, printed on stderr)
    #[arg(long, value_name = "HOST:PORT", env = "PGFLEET_SQL_LISTEN")]
    pub sql_listen: Option<String>,
    /// Serve the PostgreSQL wire protocol on HOST:PORT (psql, pgbench, any driver or ORM): the
    /// tenant key is the user name, an app token (pgf_…) or an end-user JWT the password, asked
    /// in clear and taken only over TLS or from loopback (port 0 picks a free one, printed on
    /// stderr)
    #[arg(long, value_name = "HOST:PORT", env = "PGFLEET_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// How --pg-listen lends server connections: `transaction` (one per transaction; a client
    /// that uses a session feature such as LISTEN or a session SET keeps its own) or `session`
    /// [default: transaction]
    #[arg(long, value_name = "MODE", env = "PGFLEET_PG_POOL_MODE", value_parser = ["transaction", "session"])]
    pub pg_pool_mode: Option<String>,
    /// Largest request body, e.g. 10MiB [default: 10MiB]
    #[arg(long, value_name = "SIZE", env = "PGFLEET_SQL_MAX_BODY", value_parser = parse_size)]
    pub sql_max_body: Option<usize>,
    /// Largest response (rows as PostgreSQL text), e.g. 10MiB; beyond it the query fails with
    /// SQLSTATE 54000 [default: 10MiB]
    #[arg(long, value_name = "SIZE", env = "PGFLEET_SQL_MAX_RESPONSE", value_parser = parse_size)]
    pub sql_max_response: Option<usize>,
    /// Longest statement, e.g. 30s; beyond it the query fails with SQLSTATE 57014 [default: 30s]
    #[arg(long, value_name = "DURATION", env = "PGFLEET_SQL_STATEMENT_TIMEOUT", value_parser = parse_duration)]
    pub sql_statement_timeout: Option<Duration>,
    /// Requests one tenant may have in flight; more get 429 with Retry-After [default: 16]
    #[arg(long, value_name = "N", env = "PGFLEET_SQL_MAX_CONCURRENT_PER_TENANT")]
    pub sql_max_concurrent_per_tenant: Option<usize>,
    /// Time a request's body (and a TLS handshake) may take to arrive; slow clients get 408.
    /// Headers get 30s, as idle keep-alive connections do [default: 10s]
    #[arg(long, value_name = "DURATION", env = "PGFLEET_SQL_READ_TIMEOUT", value_parser = parse_duration)]
    pub sql_read_timeout: Option<Duration>,
    /// Allow browser calls from this origin (repeat for several; `*` for any)
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "PGFLEET_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,
    /// Serve the SQL front doors (--sql-listen and --pg-listen) over TLS with this PEM
    /// certificate chain (with --tls-key)
    #[arg(
        long,
        value_name = "FILE",
        env = "PGFLEET_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(
        long,
        value_name = "FILE",
        env = "PGFLEET_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Create a tenant the first time a verified caller names it (exactly once, however many
    /// requests race), instead of answering 404; `--provision-on-first-use=false` turns off a
    /// `true` in pgfleet.toml
    #[arg(
        long,
        env = "PGFLEET_PROVISION_ON_FIRST_USE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub provision_on_first_use: Option<bool>,
    /// How long a request waits for its tenant to be provisioned [default: 30s]
    #[arg(long, value_name = "DURATION", env = "PGFLEET_PROVISION_TIMEOUT", value_parser = parse_duration)]
    pub provision_timeout: Option<Duration>,
    /// Connections per server, for all its tenants together [default: 20]
    #[arg(long, value_name = "N", env = "PGFLEET_BUDGET_PER_SERVER")]
    pub budget_per_server: Option<usize>,
    /// Connections one tenant may hold at once [default: 5]
    #[arg(long, value_name = "N", env = "PGFLEET_CONNECTIONS_PER_TENANT")]
    pub connections_per_tenant: Option<usize>,
    /// Memory for cached query results, e.g. 256MiB; 0 turns the cache (and its invalidation
    /// work on writes) off [default: 64MiB]
    #[arg(long, value_name = "SIZE", env = "PGFLEET_CACHE_MAX_BYTES", value_parser = parse_cache_size)]
    pub cache_max_bytes: Option<usize>,
    /// Tables whose reads are cached without a `/* pgfleet:cache */` comment: a read naming only
    /// these (`*`: any) [default: none]
    #[arg(
        long,
        value_name = "TABLE",
        env = "PGFLEET_CACHE_TABLES",
        value_delimiter = ','
    )]
    pub cache_tables: Vec<String>,
    /// How long reads of --cache-tables are served from the cache [default: 30s]
    #[arg(long, value_name = "DURATION", env = "PGFLEET_CACHE_MAX_AGE", value_parser = parse_duration)]
    pub cache_max_age: Option<Duration>,
}

/// A cache size: as [`parse_size`], or `0`/`off`.
fn parse_cache_size(s: &str) -> Result<usize, String> {
    match s.trim() {
        "0" | "off" => Ok(0),
        t => parse_size(t),
    }
}

/// The result cache as configured: flags and `PGFLEET_CACHE_*` over `[cache]` of pgfleet.toml.
///
/// # Errors
/// A size or duration in the file that does not parse.
pub fn cache_options(
    a: &SqlArgs,
    file: &pgfleet::control::config::CacheSettings,
) -> anyhow::Result<pgfleet::router::cache::CacheOptions> {
    let defaults = pgfleet::router::cache::CacheOptions::default();
    let wrong = |name: &str, e: String| anyhow::anyhow!("pgfleet.toml [cache] {name}: {e}");
    let max_bytes = match (a.cache_max_bytes, &file.max_bytes) {
        (Some(n), _) => n,
        (None, Some(v)) => parse_cache_size(v).map_err(|e| wrong("max_bytes", e))?,
        (None, None) => defaults.max_bytes,
    };
    let max_age = match (a.cache_max_age, &file.max_age) {
        (Some(d), _) => d,
        (None, Some(v)) => parse_duration(v).map_err(|e| wrong("max_age", e))?,
        (None, None) => defaults.max_age,
    };
    let tables = if a.cache_tables.is_empty() {
        file.tables.clone().unwrap_or_default()
    } else {
        a.cache_tables.clone()
    };
    Ok(pgfleet::router::cache::CacheOptions {
        max_bytes,
        tables,
        max_age,
    })
}

/// A size: bytes, or with a unit (`kB`, `KiB`, `MB`, `MiB`, `GiB`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 1048576, 512KiB, 10MiB)"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (use B, KiB, MiB, GiB, kB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is not a usable size"))
}

fn from_file<T>(
    value: Option<&String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    value
        .map(|v| parse(v).map_err(|e| anyhow::anyhow!("pgfleet.toml [sql] {name}: {e}")))
        .transpose()
}

/// The SQL front doors as configured, bound; `None` when no listen address (`--sql-listen`,
/// `--pg-listen`) is set anywhere.
///
/// # Errors
/// Invalid settings, an address that cannot be bound, unusable TLS files or JWT keys.
pub async fn front_door(
    a: &SqlArgs,
    file: &SqlSettings,
) -> anyhow::Result<Option<pgfleet_server::SqlFrontDoor>> {
    let listen = a.sql_listen.clone().or_else(|| file.listen.clone());
    let pg_listen = a.pg_listen.clone().or_else(|| file.pg_listen.clone());
    if listen.is_none() && pg_listen.is_none() {
        return Ok(None);
    }
    let pool_mode: pgfleet_server::pg::PoolMode = a
        .pg_pool_mode
        .clone()
        .or_else(|| file.pg_pool_mode.clone())
        .unwrap_or_else(|| "transaction".into())
        .parse()
        .map_err(|e| anyhow::anyhow!("pgfleet.toml [sql] pg_pool_mode: {e}"))?;
    let defaults = SqlOptions::default();
    let options = SqlOptions {
        max_body: a
            .sql_max_body
            .or(from_file(file.max_body.as_ref(), "max_body", parse_size)?)
            .unwrap_or(defaults.max_body),
        max_response: a
            .sql_max_response
            .or(from_file(
                file.max_response.as_ref(),
                "max_response",
                parse_size,
            )?)
            .unwrap_or(defaults.max_response),
        statement_timeout: a
            .sql_statement_timeout
            .or(from_file(
                file.statement_timeout.as_ref(),
                "statement_timeout",
                parse_duration,
            )?)
            .unwrap_or(defaults.statement_timeout),
        max_concurrent_per_tenant: a
            .sql_max_concurrent_per_tenant
            .or(file.max_concurrent_per_tenant)
            .unwrap_or(defaults.max_concurrent_per_tenant)
            .max(1),
        read_timeout: a
            .sql_read_timeout
            .or(from_file(
                file.read_timeout.as_ref(),
                "read_timeout",
                parse_duration,
            )?)
            .unwrap_or(defaults.read_timeout),
        cors_origins: if a.cors_origin.is_empty() {
            file.cors_origins.clone().unwrap_or_default()
        } else {
            a.cors_origin.clone()
        },
        write_timeout: defaults.write_timeout,
    };
    let provision_timeout = a
        .provision_timeout
        .or(from_file(
            file.provision_timeout.as_ref(),
            "provision_timeout",
            parse_duration,
        )?)
        .unwrap_or(Duration::from_secs(30));
    let first_use = a
        .provision_on_first_use
        .or(file.provision_on_first_use)
        .unwrap_or(false);
    let router = RouterOptions {
        budget_per_server: a
            .budget_per_server
            .or(file.budget_per_server)
            .unwrap_or(20)
            .max(1),
        per_tenant: a
            .connections_per_tenant
            .or(file.connections_per_tenant)
            .unwrap_or(5)
            .max(1),
        unknown: if first_use {
            UnknownPolicy::Provision(provision_timeout)
        } else {
            UnknownPolicy::Reject
        },
        ..RouterOptions::default()
    };
    let (cert, key) = (
        a.tls_cert.clone().or_else(|| file.tls_cert.clone()),
        a.tls_key.clone().or_else(|| file.tls_key.clone()),
    );
    let (tls, pg_tls) = match (cert, key) {
        (Some(c), Some(k)) => {
            let tls = |alpn: &[u8]| {
                pgfleet_server::sql::listener::tls_acceptor_for(&c, &k, alpn)
                    .map_err(|e| anyhow::anyhow!(e))
            };
            (Some(tls(b"http/1.1")?), Some(tls(b"postgresql")?))
        }
        (None, None) => (None, None),
        _ => anyhow::bail!("TLS needs both a certificate and a key (--tls-cert and --tls-key)"),
    };
    let jwt = JwtSettings::from_env(|k| std::env::var(k).ok())?;
    // Fail at start, not at the first request, when the keys are unusable.
    if let Some(v) = pgfleet_server::sql::jwt::JwtVerifier::new(&jwt)? {
        v.fetch_remote_keys().await?;
    }
    let listener = match &listen {
        Some(l) => Some(bind(l, "--sql-listen").await?),
        None => None,
    };
    let pg = match &pg_listen {
        Some(l) => Some(bind(l, "--pg-listen").await?),
        None => None,
    };
    let pg_options = pgfleet_server::pg::PgOptions {
        pool_mode,
        tls: pg_tls,
        ..pgfleet_server::pg::PgOptions::default()
    };
    Ok(Some(pgfleet_server::SqlFrontDoor {
        listener,
        pg,
        pg_options,
        options,
        jwt,
        tls,
        router,
    }))
}

/// Binds `listen` (the value of `flag`).
async fn bind(listen: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = tokio::net::lookup_host(listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} {listen:?} is not an address: expected HOST:PORT, e.g. 0.0.0.0:6481 or localhost:0"
            )
        })?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} ({flag}): {e}; pass another address, or stop what uses it"
        )
    })
}

/// `pgfleet token …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (the catalog keeps only its SHA-256 digest).
    ///
    /// Scope `sql` opens the SQL front door for the app's trusted server code: it names the
    /// tenant as the connection string's user, with the token as password:
    /// postgresql://USER-KEY:TOKEN@pgfleet.internal/app
    Create {
        /// A name to list and revoke it by (letters, digits, '.', '_', '-').
        name: String,
        /// What it opens: sql (the SQL front door), read or admin (the management API).
        #[arg(long, value_parser = ["sql", "read", "admin"])]
        scope: String,
    },
    /// List tokens (names, scopes, dates; never the tokens).
    List {
        /// Output format.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        format: String,
    },
    /// Revoke a token: servers refuse it within 2 seconds.
    Revoke {
        /// Its name.
        name: String,
    },
}

/// `pgfleet token …`.
///
/// # Errors
/// Catalog errors, a taken or invalid name, an unknown token.
pub fn token(control: &ControlArgs, cmd: &TokenCommand) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async {
        let c = crate::control_cmds::control(control).await?;
        match cmd {
            TokenCommand::Create { name, scope } => {
                let scope: Scope = scope.parse()?;
                let t = c.create_token(name, scope).await?;
                eprintln!(
                    "Created token {} (scope {}). It is shown once; store it as a secret:",
                    t.name, t.scope
                );
                println!("{}", t.secret);
            }
            TokenCommand::List { format } => {
                let tokens = c.tokens().await?;
                if format == "json" {
                    println!("{}", serde_json::to_string_pretty(&tokens)?);
                } else if tokens.is_empty() {
                    eprintln!("No tokens: `pgfleet token create NAME --scope sql` creates one");
                } else {
                    println!("{:<24} {:<6} {:<21} revoked", "name", "scope", "created");
                    for t in tokens {
                        println!(
                            "{:<24} {:<6} {:<21} {}",
                            t.name,
                            t.scope,
                            t.created_at,
                            t.revoked_at.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            TokenCommand::Revoke { name } => {
                if c.revoke_token(name).await? {
                    eprintln!("Revoked token {name}: servers refuse it within 2 seconds");
                } else {
                    eprintln!("Token {name} was already revoked");
                }
            }
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_takes_flags_over_the_file_and_says_which_setting_is_wrong() {
        use pgfleet::control::config::CacheSettings;
        let file = CacheSettings {
            max_bytes: Some("1MiB".into()),
            tables: Some(vec!["chat_threads".into()]),
            max_age: Some("5s".into()),
        };
        let c = cache_options(&SqlArgs::default(), &file).unwrap();
        assert_eq!((c.max_bytes, c.max_age), (1 << 20, Duration::from_secs(5)));
        assert_eq!(c.tables, ["chat_threads"]);
        let flags = SqlArgs {
            cache_max_bytes: Some(0),
            cache_tables: vec!["*".into()],
            ..SqlArgs::default()
        };
        let c = cache_options(&flags, &file).unwrap();
        assert_eq!(
            (c.max_bytes, c.tables.as_slice()),
            (0, ["*".to_string()].as_slice())
        );
        assert_eq!(parse_cache_size("off"), Ok(0));
        let defaults = cache_options(&SqlArgs::default(), &CacheSettings::default()).unwrap();
        assert_eq!(defaults.max_bytes, 64 << 20);
        let bad = CacheSettings {
            max_bytes: Some("lots".into()),
            ..CacheSettings::default()
        };
        let err = format!(
            "{:#}",
            cache_options(&SqlArgs::default(), &bad).unwrap_err()
        );
        assert!(
            err.contains("[cache] max_bytes") && err.contains("lots"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = SqlSettings {
            listen: Some("127.0.0.1:0".into()),
            max_body: Some("1MiB".into()),
            read_timeout: Some("3s".into()),
            budget_per_server: Some(7),
            provision_on_first_use: Some(true),
            ..SqlSettings::default()
        };
        let from_file = front_door(&SqlArgs::default(), &file)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from_file.options.max_body, 1 << 20);
        assert_eq!(from_file.options.read_timeout, Duration::from_secs(3));
        assert_eq!(from_file.router.budget_per_server, 7);
        assert_eq!(from_file.router.per_tenant, 5, "the default");
        assert!(matches!(
            from_file.router.unknown,
            UnknownPolicy::Provision(_)
        ));
        let flags = SqlArgs {
            sql_max_body: Some(2 << 20),
            budget_per_server: Some(9),
            provision_on_first_use: Some(false),
            ..SqlArgs::default()
        };
        let door = front_door(&flags, &file).await.unwrap().unwrap();
        assert_eq!(door.options.max_body, 2 << 20);
        assert_eq!(door.router.budget_per_server, 9);
        assert_eq!(
            door.router.unknown,
            UnknownPolicy::Reject,
            "a flag turns the file's true off"
        );
        let bad = SqlSettings {
            statement_timeout: Some("soon".into()),
            ..file
        };
        let err = front_door(&SqlArgs::default(), &bad)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("[sql] statement_timeout"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10XB").unwrap_err().contains("unknown unit"));
    }
}
