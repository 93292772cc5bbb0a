//! Creating a tenant (or finding it: the key is unique, so racing callers find the same row),
//! queueing its provisioning, and waiting until it is `ready`.

use std::time::{Duration, Instant};

use crate::catalog::{operations, tenants};
use crate::tenant::{self, Mode, State, Tenant};
use crate::{Control, ControlError, events, q, server};

/// Options of `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Isolation mode [default: the configured default mode].
    pub mode: Option<Mode>,
    /// Put the tenant on this server instead of choosing one.
    pub server: Option<String>,
}

impl Control {
    /// Creates the tenant `key` (or finds it) and queues its provisioning. Idempotent: the same key
    /// always yields the same tenant; a failed tenant is queued again.
    ///
    /// # Errors
    /// Invalid key, no target, no server with room (nothing is created), the key exists with other
    /// options ([`ControlError::Conflict`]).
    pub async fn create_tenant(
        &self,
        key: &str,
        opts: &CreateOptions,
    ) -> Result<Tenant, ControlError> {
        Ok(self.create_or_find_tenant(key, opts).await?.0)
    }

    /// As [`Control::create_tenant`], and says whether this call created the tenant (of callers
    /// racing on one new key, exactly one is told it did).
    ///
    /// # Errors
    /// As [`Control::create_tenant`].
    pub async fn create_or_find_tenant(
        &self,
        key: &str,
        opts: &CreateOptions,
    ) -> Result<(Tenant, bool), ControlError> {
        if key.is_empty() || key.len() > 256 || key.contains('\0') {
            return Err(ControlError::InvalidKey { len: key.len() });
        }
        let c = self.catalog();
        let mode = opts.mode.unwrap_or(self.config().default_mode);
        let existing = self.find(key).await?;
        if let Some(t) = &existing
            && t.state == State::Ready
        {
            // The common call (an app provisioning on every login): one catalog read.
            self.check_same_options(t, opts).await?;
            return Ok((t.clone(), false));
        }
        // Past this point secrets may be sealed: only with the key the catalog uses.
        self.check_master_key().await?;
        let mut created = false;
        let tenant = match existing {
            Some(t) => t,
            None => {
                if !crate::catalog::has_current_target(&c).await? {
                    return Err(ControlError::NoTarget);
                }
                self.precheck_capacity(opts.server.as_deref()).await?;
                let id = tenant::new_id()?;
                let (db, schema, role) = tenant::names(&id, mode);
                let new = tenants::NewTenant {
                    id: &id,
                    key,
                    mode,
                    requested_server: opts.server.as_deref(),
                    database: &db,
                    schema: &schema,
                    role: &role,
                };
                match tenants::insert(&*c, new).await? {
                    Some(t) => {
                        created = true;
                        events::record(
                            &c,
                            Some(&t.id),
                            Some(key),
                            "tenant.created",
                            serde_json::json!({"mode": mode.as_str(), "server": opts.server}),
                        )
                        .await?;
                        t
                    }
                    // Another caller inserted it between our lookup and insert.
                    None => self
                        .find(key)
                        .await?
                        .ok_or_else(|| ControlError::UnknownTenant(key.into()))?,
                }
            }
        };
        self.check_same_options(&tenant, opts).await?;
        if tenant.state == State::Dropping {
            return Err(ControlError::Dropping {
                key: key.into(),
                error: tenant.last_error.clone(),
            });
        }
        if tenant.state == State::Failed {
            operations::requeue_failed_provision(&*c, &tenant.id).await?;
            tenants::retry(&*c, &tenant.id).await?;
            events::record(
                &c,
                Some(&tenant.id),
                Some(key),
                "tenant.retry",
                serde_json::json!({"step": tenant.step, "last_error": tenant.last_error}),
            )
            .await?;
        }
        if tenant.state != State::Ready {
            operations::enqueue_provision(&*c, &tenant.id).await?;
        }
        let t = self
            .find(key)
            .await?
            .ok_or_else(|| ControlError::UnknownTenant(key.into()))?;
        Ok((t, created))
    }

    async fn check_same_options(
        &self,
        t: &Tenant,
        opts: &CreateOptions,
    ) -> Result<(), ControlError> {
        if let Some(mode) = opts.mode
            && mode != t.mode
        {
            return Err(ControlError::Conflict {
                key: t.key.clone(),
                existing: format!("mode {}", t.mode),
                requested: format!("mode {mode}"),
            });
        }
        if let Some(s) = &opts.server {
            let requested = tenants::requested_server(&*self.catalog(), &t.id).await?;
            if requested.as_deref() != Some(s.as_str()) && t.server.as_deref() != Some(s.as_str()) {
                return Err(ControlError::Conflict {
                    key: t.key.clone(),
                    existing: format!(
                        "server {}",
                        t.server
                            .clone()
                            .or(requested)
                            .unwrap_or_else(|| "(chosen by placement)".into())
                    ),
                    requested: format!("server {s}"),
                });
            }
        }
        Ok(())
    }

    async fn precheck_capacity(&self, requested: Option<&str>) -> Result<(), ControlError> {
        let mut conn = self.catalog_for_tx().await?;
        let tx = conn.transaction().await.map_err(q("checking capacity"))?;
        let r = server::place(&tx, requested).await.map(|_| ());
        tx.rollback().await.map_err(q("checking capacity"))?;
        self.put_idle("catalog", conn);
        r
    }

    /// The tenant with `key`, if any.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn find(&self, key: &str) -> Result<Option<Tenant>, ControlError> {
        tenants::by_key(&*self.catalog(), key).await
    }

    /// The tenant with `key`.
    ///
    /// # Errors
    /// [`ControlError::UnknownTenant`].
    pub async fn tenant(&self, key: &str) -> Result<Tenant, ControlError> {
        self.find(key)
            .await?
            .ok_or_else(|| ControlError::UnknownTenant(key.into()))
    }

    /// All tenants, optionally only those in `state`, oldest first.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn tenants(&self, state: Option<State>) -> Result<Vec<Tenant>, ControlError> {
        tenants::list(&*self.catalog(), state).await
    }

    /// Creates `key` if needed and waits until it is `ready` (verified), running the provisioning
    /// itself unless another worker already does. Concurrent callers with one key share one
    /// operation and all return the same tenant.
    ///
    /// # Errors
    /// As [`Control::create_tenant`], plus [`ControlError::Failed`] and [`ControlError::Timeout`].
    pub async fn provision(
        &self,
        key: &str,
        opts: &CreateOptions,
        timeout: Duration,
    ) -> Result<Tenant, ControlError> {
        let t = self.create_tenant(key, opts).await?;
        if t.state == State::Ready {
            return Ok(t);
        }
        self.wait_ready(key, timeout).await
    }

    /// Waits until `key` is ready, working on its operation when nobody else is.
    ///
    /// # Errors
    /// [`ControlError::Failed`], [`ControlError::Timeout`], [`ControlError::UnknownTenant`].
    pub async fn wait_ready(&self, key: &str, timeout: Duration) -> Result<Tenant, ControlError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let t = self.tenant(key).await?;
            match t.state {
                State::Ready => return Ok(t),
                State::Dropping => {
                    return Err(ControlError::Dropping {
                        key: key.into(),
                        error: t.last_error,
                    });
                }
                State::Failed => {
                    return Err(ControlError::Failed {
                        key: key.into(),
                        step: t.step,
                        error: t.last_error.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= timeout {
                return Err(ControlError::Timeout {
                    key: key.into(),
                    seconds: timeout.as_secs(),
                    step: t.step,
                    last_error: t.last_error,
                });
            }
            if self.run_queued(Some(&t.id)).await? == 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}
