//! A fleet for benchmarks: a catalog on a fresh embedded cluster whose target is the chat example,
//! with the cluster itself as server `local`.

use std::path::PathBuf;

use pgfleet::control::config::Config;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::{Control, catalog};
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::pg::connect;

/// The target: the chat example schema.
pub const TARGET: &str = include_str!("../../../examples/chat/schema.sql");

/// A benchmark's fleet.
#[derive(Debug)]
pub struct ChatFleet {
    /// The cluster (catalog and tenants).
    pub cluster: pgfleet_testkit::TestCluster,
    /// A multi-threaded runtime, as the CLI uses.
    pub rt: tokio::runtime::Runtime,
    /// The catalog's configuration.
    pub config: Config,
    /// The control plane.
    pub control: Control,
    /// The target's migrations directory (add files to roll them out).
    pub migrations: PathBuf,
}

impl ChatFleet {
    /// Starts a cluster and initializes the catalog `<name>_catalog` with the chat target.
    ///
    /// # Errors
    /// When the cluster, the catalog or the server cannot be set up.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let cluster = pgfleet_testkit::TestCluster::start();
        let migrations = cluster
            .root()
            .join(format!("bench-{name}"))
            .join("migrations");
        std::fs::create_dir_all(&migrations)?;
        std::fs::write(migrations.join("20260101000000_chat.sql"), TARGET)?;
        sum::write(&MigrationDir::load(&migrations)?)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let catalog_url = cluster.url_for(&format!("{name}_catalog"));
        let config = Config::new(&catalog_url, MasterKey::generate()?);
        let control = rt.block_on(async {
            catalog::init(
                &connect::parse_url(&catalog_url)?,
                Some(&MigrationDir::load(&migrations)?),
            )
            .await?;
            let control = Control::connect(config.clone()).await?;
            control
                .add_server("local", &cluster.url(), 1_000_000, 1)
                .await?;
            anyhow::Ok(control)
        })?;
        Ok(Self {
            cluster,
            rt,
            config,
            control,
            migrations,
        })
    }
}
