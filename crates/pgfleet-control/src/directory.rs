//! The router's view of the catalog ([`pgfleet_router::Directory`]): placements with the tenant's
//! credentials, provisioning on first use, run-time repairs, and change announcements
//! (`LISTEN/NOTIFY` on [`CHANGES_CHANNEL`]: a tenant dropped or its password rotated reaches
//! every running router at once).

use std::time::{Duration, SystemTime};

use pgfleet_router::{Placement, Repair};
use tokio_postgres::AsyncMessage;

use crate::provision::CreateOptions;
use crate::tenant::{Mode, State};
use crate::{Control, ControlError, q};

pub use crate::catalog::CHANGES_CHANNEL;

impl Control {
    /// Where a ready tenant lives and how to log in as it (its own role, password, database, and
    /// `search_path` as a startup option), and for a schema tenant the shared login of its server's
    /// pool role. `None` when no ready tenant has this key.
    ///
    /// # Errors
    /// Catalog errors, a master key that does not open the password.
    pub async fn placement(&self, key: &str) -> Result<Option<Placement>, ControlError> {
        let Some(t) = self.find(key).await? else {
            return Ok(None);
        };
        if t.state != State::Ready {
            return Ok(None);
        }
        let sealed = crate::catalog::tenants::password(&*self.catalog(), &t.id).await?;
        let mut logins = Logins::default();
        self.placement_of(t, sealed.as_ref(), &mut logins).await
    }

    /// The placements of up to `limit` ready tenants, newest first, read with one catalog query
    /// (plus one per server): what a router preloads
    /// ([`Router::preload`](pgfleet_router::Router::preload)).
    ///
    /// # Errors
    /// Catalog errors, a master key that does not open a password.
    pub async fn placements(&self, limit: usize) -> Result<Vec<Placement>, ControlError> {
        let rows = crate::catalog::tenants::ready_with_passwords(
            &*self.catalog(),
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await?;
        let mut logins = Logins::default();
        let mut out = Vec::with_capacity(rows.len());
        for (t, sealed) in rows {
            if let Some(p) = self.placement_of(t, sealed.as_ref(), &mut logins).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The placement of ready tenant `t` whose sealed password is `sealed`; `None` without one.
    /// `logins` keeps each server's admin settings and shared login for the next tenant.
    async fn placement_of(
        &self,
        t: crate::tenant::Tenant,
        sealed: Option<&crate::secrets::Sealed>,
        logins: &mut Logins,
    ) -> Result<Option<Placement>, ControlError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let password = self.open_sealed(&format!("tenant:{}", t.id), sealed)?;
        let server = t.server.clone().unwrap_or_default();
        let admin = match logins.admin.get(&server) {
            Some(c) => c.clone(),
            None => {
                let c = self.server_admin_config(&server).await?;
                logins.admin.insert(server.clone(), c.clone());
                c
            }
        };
        let mut config = admin.clone();
        config
            .user(&t.role)
            .password(password.expose())
            .dbname(&t.database)
            .application_name("pgfleet router");
        match t.mode {
            Mode::Schema => config.options(format!("-c search_path={},public", t.schema)),
            Mode::Database => config.options("-c search_path=public"),
        };
        // Trusted callers of schema tenants share the pool role's connections (best effort: a
        // server whose pool role cannot be set up serves them with the tenant's own logins).
        let shared = match t.mode {
            Mode::Database => None,
            Mode::Schema => {
                if !logins.shared.contains_key(&server) {
                    let login = match self.shared_login_with(&server, &admin).await {
                        Ok(config) => Some(config),
                        Err(e) => {
                            tracing::warn!(
                                "server {server}: no shared connections for its schema tenants (the pool role could not be set up): {}",
                                crate::chain(&e)
                            );
                            None
                        }
                    };
                    logins.shared.insert(server.clone(), login);
                }
                logins.shared[&server]
                    .clone()
                    .map(|config| pgfleet_router::SharedLogin {
                        config,
                        role: t.role.clone(),
                        search_path: format!("{},public", t.schema),
                        switch_function: Some(crate::pool_role::SWITCH_FUNCTION.into()),
                    })
            }
        };
        Ok(Some(Placement {
            key: t.key.clone(),
            tenant_id: t.id.clone(),
            server,
            mode: t.mode.as_str().to_string(),
            database: t.database.clone(),
            schema: t.schema.clone(),
            config,
            version: t.schema_version.clone(),
            shared,
        }))
    }

    /// Repairs tenant `key` after `error` (seen at `seen_at`): additive steps only, each recorded as
    /// a `tenant.correction` event with the error as its reason. Processes take turns through an
    /// advisory lock on the catalog; a repair that finds nothing to do says whether another
    /// process repaired the tenant since the error was seen.
    ///
    /// # Errors
    /// Unknown tenant, unreachable server, a repair statement that fails.
    pub async fn heal(
        &self,
        key: &str,
        error: &str,
        seen_at: SystemTime,
    ) -> Result<Repair, ControlError> {
        let t = self.tenant(key).await?;
        let lock = self.catalog_connection().await?;
        let k = pgfleet_migrate::lock::key("pgfleet-heal", &t.id);
        lock.execute("SELECT pg_advisory_lock($1)", &[&k])
            .await
            .map_err(q("locking the tenant for a repair"))?;
        let result = async {
            let r = self
                .fix(key, &format!("run-time repair after: {error}"))
                .await?;
            let repaired_elsewhere = if r.applied.is_empty() {
                crate::catalog::events::corrected_since(&*self.catalog(), &t.id, seen_at).await?
            } else {
                false
            };
            Ok(Repair {
                applied: r.applied,
                repaired_elsewhere,
            })
        }
        .await;
        let _ = lock.execute("SELECT pg_advisory_unlock($1)", &[&k]).await;
        result
    }
}

/// A control-plane error as the router's: an unreachable catalog or server (or a catalog
/// connection that closed) is `Unavailable`; any other is `Other`, with the control plane's error
/// as its source.
fn directory_error(e: ControlError, key: &str) -> pgfleet_router::DirectoryError {
    use pgfleet_router::DirectoryError as E;
    match e {
        e if e.is_not_found() => E::UnknownTenant(key.into()),
        ControlError::Pg(pgfleet_pg::PgError::Connect { .. }) => E::Unavailable(e.into()),
        ControlError::Pg(pgfleet_pg::PgError::Query { ref cause, .. })
            if cause.is_closed()
                || std::error::Error::source(cause).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            E::Unavailable(e.into())
        }
        e => E::Other(e.into()),
    }
}

/// Each server's admin settings and shared login, read once for several placements.
#[derive(Default)]
struct Logins {
    admin: std::collections::HashMap<String, tokio_postgres::Config>,
    shared: std::collections::HashMap<String, Option<tokio_postgres::Config>>,
}

impl pgfleet_router::Directory for Control {
    /// Errors: an unreachable catalog or server (or a catalog connection that closed) is
    /// `Unavailable`; any other error is `Other`, with the control plane's error as its source.
    async fn lookup(&self, key: &str) -> Result<Option<Placement>, pgfleet_router::DirectoryError> {
        self.placement(key)
            .await
            .map_err(|e| directory_error(e, key))
    }

    /// Errors: as `lookup`'s.
    async fn preload(
        &self,
        limit: usize,
    ) -> Result<Vec<Placement>, pgfleet_router::DirectoryError> {
        self.placements(limit)
            .await
            .map_err(|e| directory_error(e, "*"))
    }

    /// Errors: not ready in time is `NotReady` (provisioning goes on); a failed or refused
    /// provisioning is `ProvisionFailed`; reading the placement then, as `lookup`.
    async fn provision(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<Placement, pgfleet_router::DirectoryError> {
        use pgfleet_router::DirectoryError as E;
        Control::provision(self, key, &CreateOptions::default(), timeout)
            .await
            .map_err(|e| match e {
                ControlError::Timeout { .. } => E::NotReady {
                    key: key.into(),
                    source: Some(e.into()),
                },
                ControlError::Pg(pgfleet_pg::PgError::Connect { .. }) => E::Unavailable(e.into()),
                e => E::ProvisionFailed {
                    key: key.into(),
                    source: e.into(),
                },
            })?;
        pgfleet_router::Directory::lookup(self, key)
            .await?
            .ok_or_else(|| E::NotReady {
                key: key.into(),
                source: None,
            })
    }

    /// Errors: a tenant dropped meanwhile is `UnknownTenant`; an unreachable catalog or server is
    /// `Unavailable`; any other error is `RepairFailed`.
    async fn repair(
        &self,
        key: &str,
        error: &str,
        seen_at: SystemTime,
    ) -> Result<Repair, pgfleet_router::DirectoryError> {
        use pgfleet_router::DirectoryError as E;
        self.heal(key, error, seen_at).await.map_err(|e| match e {
            e if e.is_not_found() => E::UnknownTenant(key.into()),
            ControlError::Pg(pgfleet_pg::PgError::Connect { .. }) => E::Unavailable(e.into()),
            e => E::RepairFailed {
                key: key.into(),
                source: e.into(),
            },
        })
    }

    fn changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let url = self.config().catalog_url.clone();
        tokio::spawn(async move {
            let mut first = true;
            while !tx.is_closed() {
                match listen(&url, &tx, first).await {
                    Ok(()) => {}
                    Err(e) => tracing::warn!("listening for tenant changes: {e}"),
                }
                first = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Some(rx)
    }
}

/// A catalog session that listens on `channel`: its client (for sending), the payloads of the
/// notifications it receives (the channel closes when the connection ends) and the task that
/// drives the connection (abort it when done).
pub(crate) async fn listening(
    url: &str,
    channel: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let config = pgfleet_pg::connect::parse_url(url).map_err(|e| e.to_string())?;
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let (ntx, nrx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = ntx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
        driver.abort();
        return Err(e.to_string());
    }
    Ok((client, nrx, driver))
}

/// One listening session: until the connection ends. After a reconnect, announcements may have
/// been missed, so `*` (forget everything) goes first.
async fn listen(
    url: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<String>,
    first: bool,
) -> Result<(), String> {
    let (_client, mut nrx, driver) = listening(url, CHANGES_CHANNEL).await?;
    if !first {
        let _ = tx.send("*".into());
    }
    while let Some(key) = nrx.recv().await {
        if tx.send(key).is_err() {
            break;
        }
    }
    driver.abort();
    Ok(())
}
