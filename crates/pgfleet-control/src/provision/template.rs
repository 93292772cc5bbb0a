//! Per-server template databases at the target: database-mode tenants are copied from them
//! (`CREATE DATABASE … TEMPLATE`) instead of running the migrations each time.

use pgfleet_pg::connect;
use pgfleet_schema::quote::ident;
use tokio_postgres::Client;

use crate::catalog::Target;
use crate::ddl::{lock_down_public, retry_in_use};
use crate::tenant::Tenant;
use crate::{Control, ControlError, events, q};

impl Control {
    /// The server's template database at the current target (`pgfleet_tpl_<version>_<hash>`): built
    /// once per server and target from `template0` by the migrator, then marked `IS_TEMPLATE` with
    /// connections disallowed, so no session ever holds it open. Templates of older targets are
    /// dropped when a new one is built.
    pub(crate) async fn ensure_template(
        &self,
        t: &Tenant,
        admin: &Client,
    ) -> Result<String, ControlError> {
        let target = self.provisioning_target().await?;
        let fleet = self.fleet_id();
        let server = t.server.clone().unwrap_or_default();
        let owner = self.owner(&server).await?.role;
        let name = self.template_name(&server, &target).await?;
        let ready: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1 AND datistemplate AND NOT datallowconn)",
                &[&name],
            )
            .await
            .map_err(q("looking for the template"))?
            .get(0);
        if ready {
            return Ok(name);
        }
        let suffix: String = crate::secrets::random_bytes::<3>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let building = format!("{name}_b{suffix}");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                ident(&building)
            ))
            .await
            .map_err(q("creating the template database"))?;
        let built = async {
            admin
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {b} FROM PUBLIC; GRANT CONNECT, CREATE ON DATABASE {b} TO {o}",
                    b = ident(&building),
                    o = ident(&owner)
                ))
                .await
                .map_err(q("preparing the template database"))?;
            {
                let config = self.admin_config(t, Some(&building)).await?;
                let in_tpl = pgfleet_migrate::migrator::connect_dedicated(&config).await?;
                lock_down_public(&in_tpl, None, &owner, &target).await?;
            }
            {
                // The target's SQL runs as the fleet's owner role: the copies' objects are its.
                let config = self.owner_config(&server, &building).await?;
                let client = pgfleet_migrate::migrator::connect_dedicated(&config).await?;
                let opts = pgfleet_migrate::MigrateOptions {
                    extensions_created: true,
                    ..Default::default()
                };
                pgfleet_migrate::migrator::migrate_on(&client, &target.dir, &opts, |_| {})
                    .await?;
            }
            retry_in_use(
                admin,
                &format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(&building),
                    ident(&name)
                ),
            )
            .await
            .map_err(q("naming the template database"))?;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                    ident(&name)
                ))
                .await
                .map_err(q("marking the template database"))?;
            Ok::<(), ControlError>(())
        }
        .await;
        if let Err(e) = built {
            let _ = retry_in_use(
                admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&building)),
            )
            .await;
            // Another worker built it meanwhile: use theirs.
            let exists: bool = admin
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
                    &[&name],
                )
                .await
                .map_err(q("looking for the template"))?
                .get(0);
            return if exists { Ok(name) } else { Err(e) };
        }
        // Templates of older targets go.
        let stale = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE $2 AND datname <> $1 AND datname NOT LIKE '%\\_b______'",
                &[&name, &format!("pgfleet\\_tpl\\_{fleet}\\_%")],
            )
            .await
            .map_err(q("listing old templates"))?;
        for r in stale {
            let old: String = r.get(0);
            // Two statements: DROP DATABASE refuses to run in the implicit transaction of one.
            let unmark = format!("ALTER DATABASE {} WITH IS_TEMPLATE false", ident(&old));
            if admin.batch_execute(&unmark).await.is_ok() {
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&old)
                    ))
                    .await;
            }
        }
        events::record(
            &self.catalog(),
            None,
            None,
            "template.built",
            serde_json::json!({"server": t.server, "template": name, "version": target.version}),
        )
        .await?;
        Ok(name)
    }

    /// The name of `server`'s template database at `target`: `pgfleet_tpl_<fleet>_<version>_<hash>`,
    /// the hash covering the target's files and the fleet's owner role on the server.
    pub(crate) async fn template_name(
        &self,
        server: &str,
        target: &Target,
    ) -> Result<String, ControlError> {
        let hash: String = target
            .dir_hash
            .trim_start_matches("sha256:")
            .chars()
            .take(8)
            .collect();
        // Named after this catalog too: fleets that share a server keep their own templates.
        let fleet = self.fleet_id();
        let owner = self.owner(server).await?.role;
        // The owner role is part of the name: templates whose objects the admin owns (built by
        // pgfleet before the owner role existed) are not used, and are dropped by the next build.
        let hash: String = pgfleet_migrate::dir::checksum(format!("{hash}:{owner}").as_bytes())
            .trim_start_matches("sha256:")
            .chars()
            .take(6)
            .collect();
        Ok(format!("pgfleet_tpl_{fleet}_{}_{hash}", target.version))
    }

    /// A short id of this fleet (its catalog's location), for names on shared servers.
    pub(crate) fn fleet_id(&self) -> String {
        let url = connect::parse_url(&self.config().catalog_url)
            .map(|c| connect::describe_target(&c))
            .unwrap_or_default();
        let key = pgfleet_migrate::lock::key("pgfleet-fleet", &url);
        format!("{:06x}", (key as u64) & 0xff_ffff)
    }
}
