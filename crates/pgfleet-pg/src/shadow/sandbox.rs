//! The sandbox of one run: a throwaway role and a database of the same name that it owns, created
//! and dropped by the admin (the dev URL's role), and the login as that role.

use pgfleet_schema::quote;
use tokio_postgres::{Client, Config};

use super::error::ShadowError;
use crate::connect::{connect, describe_target};
use crate::error::{PgError, describe};

/// Prefix of the names of shadow databases and roles.
pub(super) const PREFIX: &str = "pgfleet_shadow_";

/// What pgfleet needs to know about the dev server and its role.
pub(super) struct ServerFacts {
    /// `server_version_num`.
    pub(super) version_num: i32,
    /// Whether the dev URL's role is a superuser.
    pub(super) superuser: bool,
    /// One hour from now on the server's clock, as a timestamp literal.
    valid_until: String,
}

impl ServerFacts {
    pub(super) async fn read(admin: &Client) -> Result<Self, PgError> {
        let row = admin
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false), \
                        to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
                &[],
            )
            .await
            .map_err(|e| PgError::query("reading the dev server's version and role", e))?;
        Ok(Self {
            version_num: row.get(0),
            superuser: row.get(1),
            valid_until: row.get(2),
        })
    }
}

/// The throwaway role and database of one run (they share the name).
pub(super) struct Sandbox {
    /// The name of the role and of its database.
    pub(super) name: String,
    /// The role's password (only its SCRAM verifier reaches the server).
    password: String,
}

impl Sandbox {
    pub(super) fn new() -> Result<Self, PgError> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| {
            PgError::Catalog(format!(
                "the system's random source failed ({e}); cannot make a password for the shadow role"
            ))
        })?;
        Ok(Self {
            name: format!("{PREFIX}{}_{}", unix_now(), random_hex()),
            password: hex(&secret),
        })
    }

    /// Creates the role and its database as the admin.
    pub(super) async fn create(&self, admin: &Client, server: &ServerFacts) -> Result<(), PgError> {
        let role = quote::ident(&self.name);
        let verifier = postgres_protocol::password::scram_sha_256(self.password.as_bytes());
        let q = |context: &'static str| move |e: tokio_postgres::Error| PgError::query(context, e);
        // On 15 the owner of a database gets the rights of pg_database_owner (owner of public)
        // only by inheriting them; from 16 on without.
        let inherit = if (150000..160000).contains(&server.version_num) {
            "INHERIT"
        } else {
            "NOINHERIT"
        };
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                 {inherit} CONNECTION LIMIT 1 VALID UNTIL {} PASSWORD {}",
                quote::literal(&server.valid_until),
                quote::literal(&verifier)
            ))
            .await
            .map_err(q("creating the shadow role (the dev URL's role needs CREATEROLE, or to be a superuser)"))?;
        if !server.superuser {
            // CREATE DATABASE … OWNER needs the admin to be able to SET ROLE to the owner.
            admin
                .batch_execute(&format!("GRANT {role} TO CURRENT_USER"))
                .await
                .map_err(q("letting the dev URL's role act as the shadow role"))?;
        }
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {role} OWNER {role} TEMPLATE template0"
            ))
            .await
            .map_err(q(
                "creating the shadow database (the dev URL's role needs CREATEDB)",
            ))?;
        admin
            .batch_execute(&format!("REVOKE ALL ON DATABASE {role} FROM PUBLIC"))
            .await
            .map_err(q("restricting the shadow database to its role"))?;
        Ok(())
    }

    /// Settings to log in as the role to its database.
    fn login(&self, dev: &Config) -> Config {
        let mut config = dev.clone();
        config
            .user(&self.name)
            .password(self.password.as_str())
            .dbname(&self.name);
        config
    }
}

/// Drops the sandbox when dropped while still holding it (the future was dropped before cleanup).
pub(super) struct CleanupOnDrop(pub(super) Option<(Config, String)>);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let Some((dev, name)) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Ok(admin) = connect(&dev).await {
                        drop_sandbox(&admin, &name).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(role = %name, "no runtime to drop the shadow database and role: the next run drops them after 15 minutes");
            }
        }
    }
}

/// Drops the shadow database and role (their sessions first). Failures are logged: the next run's
/// sweep retries.
pub(super) async fn drop_sandbox(admin: &Client, name: &str) {
    let q = quote::ident(name);
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"))
        .await
    {
        tracing::warn!(database = %name, "could not drop the shadow database: {}", describe(&e));
    }
    // A session of the role elsewhere (it may only log in to databases PUBLIC may connect to).
    let _ = admin
        .execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
            &[&name],
        )
        .await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {q}"))
        .await
    {
        tracing::warn!(role = %name, "could not drop the shadow role: {}", describe(&e));
    }
}

/// The creation time in a shadow database's or role's name (`pgfleet_shadow_<secs>_<hex>`).
pub(super) fn created_at(name: &str) -> Option<u64> {
    let (secs, random) = name.strip_prefix(PREFIX)?.split_once('_')?;
    let hexdigits = !random.is_empty() && random.chars().all(|c| c.is_ascii_hexdigit());
    hexdigits.then(|| secs.parse().ok()).flatten()
}

/// Logs in as the sandbox role to its database.
pub(super) async fn log_in(sandbox: &Sandbox, dev: &Config) -> Result<Client, ShadowError> {
    let login = sandbox.login(dev);
    connect(&login).await.map_err(|e| match e {
        PgError::Connect { reason, .. } => ShadowError::Server(PgError::Connect {
            target: describe_target(&login),
            reason: format!(
                "{reason}; pgfleet replays schema files logged in as a throwaway role with a password, over the dev URL's host and port: the server's pg_hba.conf must accept password logins (scram-sha-256 or md5) there for any role"
            ),
        }),
        other => ShadowError::Server(other),
    })
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> String {
    let mut buf = [0u8; 6];
    if getrandom::fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        buf[..4].copy_from_slice(&nanos.to_le_bytes());
        buf[4..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
    }
    hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_creation_time() {
        assert_eq!(
            created_at("pgfleet_shadow_1700000000_0a1b2c3d4e5f"),
            Some(1_700_000_000)
        );
        assert_eq!(created_at("pgfleet_shadow_reader"), None);
        assert_eq!(created_at("pgfleet_shadow_1700000000_x"), None);
        assert_eq!(created_at("pgfleet_shadow_1700000000_"), None);
        assert_eq!(created_at("other_1700000000_ab"), None);
        let s = Sandbox::new().unwrap();
        assert!(
            created_at(&s.name).is_some_and(|t| t + 5 >= unix_now()),
            "{}",
            s.name
        );
        assert_eq!(s.password.len(), 48);
        assert_ne!(s.password, Sandbox::new().unwrap().password);
    }
}
