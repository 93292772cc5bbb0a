//! A local PostgreSQL cluster: initialize, start, stop, describe.
//!
//! The data directory holds, besides PostgreSQL's own files, `pgfleet.json` (what pgfleet created:
//! version, port, superuser and its password, the binaries used) and `pgfleet.conf` (listen address,
//! port and socket directory, rewritten before every start and included from `postgresql.conf`).
//! A directory without `pgfleet.json` is never initialized over, started, stopped or deleted.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binaries::{BinSource, PgBinaries};
use crate::error::{EmbeddedError, Result};
use crate::osuser::{self, OsUser};
use crate::paths;
use crate::process;

/// Name of the file that marks a data directory as created by pgfleet.
pub const MARKER_FILE: &str = "pgfleet.json";
/// Name of the configuration file pgfleet writes before each start.
pub const CONF_FILE: &str = "pgfleet.conf";
/// Name of the server log inside the data directory.
pub const LOG_FILE: &str = "server.log";
/// The superuser pgfleet creates.
pub const SUPERUSER: &str = "postgres";

const START_TIMEOUT_SECS: u32 = 60;
/// Longest unix socket path PostgreSQL accepts (sun_path is 108 bytes on Linux).
const MAX_SOCKET_PATH: usize = 100;

/// What pgfleet records about a cluster it created (`pgfleet.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    created_by: String,
    pg_version: String,
    pg_major: u32,
    port: u16,
    superuser: String,
    password: String,
    bin_dir: PathBuf,
    #[serde(default)]
    socket_dir: Option<PathBuf>,
}

/// What a directory holds, as far as `up` is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirState {
    /// Does not exist.
    Missing,
    /// Exists and is empty.
    Empty,
    /// A PostgreSQL data directory created by pgfleet, of the given major version.
    Managed {
        /// Content of `PG_VERSION`.
        major: String,
    },
    /// A PostgreSQL data directory pgfleet did not create.
    Foreign {
        /// Content of `PG_VERSION`.
        major: String,
    },
    /// Something else, not empty.
    Other,
}

/// Inspects `dir` without changing anything.
///
/// # Errors
/// [`EmbeddedError::Io`] when the directory cannot be read.
pub fn dir_state(dir: &Path) -> Result<DirState> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(DirState::Other),
        Err(e) => return Err(EmbeddedError::io("could not read", dir, e)),
    };
    if entries.next().is_none() {
        return Ok(DirState::Empty);
    }
    match std::fs::read_to_string(dir.join("PG_VERSION")) {
        Ok(v) => {
            let major = v.trim().to_string();
            Ok(if dir.join(MARKER_FILE).is_file() {
                DirState::Managed { major }
            } else {
                DirState::Foreign { major }
            })
        }
        Err(_) => Ok(DirState::Other),
    }
}

/// Whether the server of a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// The postmaster runs with this pid.
    Running {
        /// Postmaster pid.
        pid: u32,
    },
    /// Not running (any `postmaster.pid` left behind is stale).
    Stopped,
}

/// Settings for a new cluster.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Extra `postgresql.conf` settings (name, value), e.g. `fsync = off` for throwaway test clusters.
    pub settings: Vec<(String, String)>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            port: paths::DEFAULT_PORT,
            settings: Vec::new(),
        }
    }
}

/// What [`Cluster::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartOutcome {
    /// The server was started.
    Started {
        /// True when a stale `postmaster.pid` of a killed server was cleaned up first.
        recovered: bool,
    },
    /// It was running already.
    AlreadyRunning,
}

/// A local cluster created by pgfleet.
#[derive(Debug, Clone)]
pub struct Cluster {
    binaries: PgBinaries,
    data_dir: PathBuf,
    marker: Marker,
    user: Option<OsUser>,
    granted: Vec<PathBuf>,
}

impl Cluster {
    /// Opens the cluster at `data_dir` (which must have been created by pgfleet), using the binaries
    /// it was created with when they are still there, else `binaries`.
    ///
    /// # Errors
    /// [`EmbeddedError::NoCluster`], [`EmbeddedError::NotManaged`], [`EmbeddedError::DataDirNotEmpty`],
    /// [`EmbeddedError::VersionMismatch`], [`EmbeddedError::BadMarker`].
    pub fn open(data_dir: &Path, binaries: Option<PgBinaries>) -> Result<Self> {
        let data_dir = paths::absolute(data_dir);
        let major = match dir_state(&data_dir)? {
            DirState::Missing | DirState::Empty => {
                return Err(EmbeddedError::NoCluster { dir: data_dir });
            }
            DirState::Other => return Err(EmbeddedError::DataDirNotEmpty { dir: data_dir }),
            DirState::Foreign { .. } => return Err(EmbeddedError::NotManaged { dir: data_dir }),
            DirState::Managed { major } => major,
        };
        let marker = read_marker(&data_dir);
        let binaries = match (binaries, &marker) {
            (Some(b), _) => b,
            (None, Ok(m)) => match PgBinaries::at(&m.bin_dir, BinSource::Explicit) {
                Ok(b) => b,
                Err(_) => PgBinaries::discover()?,
            },
            (None, Err(_)) => PgBinaries::discover()?,
        };
        // The version check comes first: it is the most useful thing to say about a foreign directory.
        if major != binaries.major().to_string() {
            return Err(EmbeddedError::VersionMismatch {
                dir: data_dir,
                found: major,
                expected: binaries.major(),
                bin_dir: binaries.bin_dir().to_path_buf(),
            });
        }
        let marker = marker?;
        let user = osuser::server_user()?;
        Ok(Self {
            binaries,
            data_dir,
            marker,
            user,
            granted: Vec::new(),
        })
    }

    /// Opens the cluster at `data_dir`, or initializes a new one there when the directory is missing
    /// or empty. Returns the cluster and whether it was created now.
    ///
    /// A directory that is not empty and not a pgfleet cluster is refused and left as it is; when
    /// `initdb` fails, only what this call created is removed.
    ///
    /// # Errors
    /// As [`Cluster::open`], plus [`EmbeddedError::Tool`] when `initdb` fails and
    /// [`EmbeddedError::NoServerUser`] / [`EmbeddedError::Unreachable`] when running as root.
    pub fn init_or_open(
        data_dir: &Path,
        binaries: PgBinaries,
        opts: &InitOptions,
    ) -> Result<(Self, bool)> {
        let data_dir = paths::absolute(data_dir);
        let state = dir_state(&data_dir)?;
        match state {
            DirState::Missing | DirState::Empty => {}
            _ => return Self::open(&data_dir, Some(binaries)).map(|c| (c, false)),
        }
        let user = osuser::server_user()?;
        let mut granted = Vec::new();
        if let Some(u) = &user {
            granted.extend(osuser::grant_traverse(binaries.bin_dir(), u)?);
        }
        let created_dir = state == DirState::Missing;
        let result = init_dir(&data_dir, &binaries, user.as_ref(), opts, &mut granted);
        match result {
            Ok(marker) => Ok((
                Self {
                    binaries,
                    data_dir,
                    marker,
                    user,
                    granted,
                },
                true,
            )),
            Err(e) => {
                // Remove only what this call made: the directory if it did not exist, else its content
                // (it was empty before).
                if created_dir {
                    let _ = std::fs::remove_dir_all(&data_dir);
                } else if let Ok(entries) = std::fs::read_dir(&data_dir) {
                    for entry in entries.flatten() {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
                Err(e)
            }
        }
    }

    /// Starts the server (on `port` when given, else the recorded port) and waits until it accepts
    /// connections. Cleans up after a killed server (stale `postmaster.pid`, orphaned children).
    ///
    /// # Errors
    /// [`EmbeddedError::PortInUse`], [`EmbeddedError::RunningOnOtherPort`], [`EmbeddedError::Tool`]
    /// with the tail of the server log.
    pub fn start(&mut self, port: Option<u16>) -> Result<StartOutcome> {
        let port = port.unwrap_or(self.marker.port);
        if let ServerState::Running { .. } = self.state() {
            let running = self.running_port().unwrap_or(self.marker.port);
            if running != port {
                return Err(EmbeddedError::RunningOnOtherPort {
                    dir: self.data_dir.clone(),
                    running,
                    asked: port,
                });
            }
            return Ok(StartOutcome::AlreadyRunning);
        }
        let recovered = self.clean_stale()?;
        if let Err(e) = TcpListener::bind(("127.0.0.1", port))
            && e.kind() == std::io::ErrorKind::AddrInUse
        {
            return Err(EmbeddedError::PortInUse { port });
        }
        let socket_dir = socket_dir_for(&self.data_dir, port);
        if let Some(u) = &self.user {
            self.granted
                .extend(osuser::grant_traverse(&self.data_dir, u)?);
        }
        self.write_conf(port, &socket_dir)?;
        let log = self.log_file();
        let out = crate::server_env::command_as(&self.binaries.tool("pg_ctl"), self.user.as_ref())
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-s", "-t", &START_TIMEOUT_SECS.to_string()])
            .output()
            .map_err(|e| EmbeddedError::io("could not run pg_ctl for", &self.data_dir, e))?;
        if !out.status.success() {
            let tail = tail_lines(&log, 15);
            if tail.contains("Address already in use") {
                return Err(EmbeddedError::PortInUse { port });
            }
            return Err(EmbeddedError::Tool {
                tool: "pg_ctl start".into(),
                dir: self.data_dir.clone(),
                detail: format!(
                    "{}\n--- last lines of {} ---\n{tail}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log.display()
                ),
            });
        }
        if self.marker.port != port || self.marker.socket_dir.as_ref() != Some(&socket_dir) {
            self.marker.port = port;
            self.marker.socket_dir = Some(socket_dir);
            write_marker(&self.data_dir, &self.marker, self.user.as_ref())?;
        }
        Ok(StartOutcome::Started { recovered })
    }

    /// Stops the server (fast shutdown: sessions are disconnected, data is flushed). Returns whether
    /// it was running.
    ///
    /// # Errors
    /// [`EmbeddedError::Tool`] when `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<bool> {
        if self.state() == ServerState::Stopped {
            return Ok(false);
        }
        let out = crate::server_env::command_as(&self.binaries.tool("pg_ctl"), self.user.as_ref())
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-s", "-t", "60"])
            .output()
            .map_err(|e| EmbeddedError::io("could not run pg_ctl for", &self.data_dir, e))?;
        if !out.status.success() {
            return Err(EmbeddedError::Tool {
                tool: "pg_ctl stop".into(),
                dir: self.data_dir.clone(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(true)
    }

    /// Stops the server at once (immediate shutdown, crash recovery at next start): for throwaway
    /// clusters.
    pub fn kill(&self) {
        if let ServerState::Running { pid } = self.state() {
            process::signal(pid, "QUIT");
            process::wait_until(Duration::from_secs(10), || !process::alive(pid));
        }
    }

    /// Whether the server runs, judged by `postmaster.pid` and the process it names (which must be a
    /// live process working in this data directory: a recycled pid does not count).
    pub fn state(&self) -> ServerState {
        match self.pid_file_pid() {
            Some(pid)
                if process::alive(pid)
                    && process::cwd(pid).as_deref() == Some(&*self.canonical_dir()) =>
            {
                ServerState::Running { pid }
            }
            _ => ServerState::Stopped,
        }
    }

    fn canonical_dir(&self) -> PathBuf {
        std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone())
    }

    fn pid_file_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn running_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().nth(3)?.trim().parse().ok()
    }

    /// After a crash or `kill -9`: waits for orphaned server processes to exit (killing them after
    /// ten seconds), then removes the stale `postmaster.pid` and the socket lock file of the dead
    /// postmaster. PostgreSQL would otherwise refuse to start while the dead pid lingers as a zombie
    /// (an init that does not reap) or was recycled by another process. Returns whether there was
    /// anything to clean.
    fn clean_stale(&self) -> Result<bool> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return Ok(false);
        };
        let lines: Vec<&str> = text.lines().collect();
        let stale_pid = lines.first().and_then(|l| l.trim().parse::<u32>().ok());
        let dir = self.canonical_dir();
        tracing::warn!(data_dir = %self.data_dir.display(), "found a stale postmaster.pid: the server was killed; recovering");
        if !process::wait_until(Duration::from_secs(10), || {
            process::working_in(&dir).is_empty()
        }) {
            for pid in process::working_in(&dir) {
                tracing::warn!(
                    pid,
                    "killing an orphaned server process of the killed postmaster"
                );
                process::signal(pid, "KILL");
            }
            process::wait_until(Duration::from_secs(5), || {
                process::working_in(&dir).is_empty()
            });
        }
        if let (Some(pid), Some(port), Some(sockets)) = (
            stale_pid,
            lines.get(3).map(|l| l.trim()),
            lines.get(4).map(|l| l.trim()),
        ) {
            for socket_dir in sockets.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let lock = Path::new(socket_dir).join(format!(".s.PGSQL.{port}.lock"));
                let owner = std::fs::read_to_string(&lock)
                    .ok()
                    .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok());
                if owner == Some(pid) {
                    let _ = std::fs::remove_file(&lock);
                    let _ = std::fs::remove_file(
                        Path::new(socket_dir).join(format!(".s.PGSQL.{port}")),
                    );
                }
            }
        }
        match std::fs::remove_file(&pid_file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(EmbeddedError::io("could not remove stale", pid_file, e)),
        }
    }

    fn write_conf(&self, port: u16, socket_dir: &Path) -> Result<()> {
        let text = format!(
            "# Written by pgfleet before each start; put your own settings in postgresql.conf.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n",
            conf_quote(&socket_dir.to_string_lossy())
        );
        write_file(&self.data_dir.join(CONF_FILE), &text, self.user.as_ref())
    }

    /// Connection URL of a database on this cluster as the superuser, over TCP on 127.0.0.1.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            self.marker.superuser,
            self.marker.password,
            self.port(),
            database
        )
    }

    /// Connection URL of the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// TCP port (the running server's, else the recorded one).
    pub fn port(&self) -> u16 {
        match self.state() {
            ServerState::Running { .. } => self.running_port().unwrap_or(self.marker.port),
            ServerState::Stopped => self.marker.port,
        }
    }

    /// Directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> PathBuf {
        self.marker
            .socket_dir
            .clone()
            .unwrap_or_else(|| socket_dir_for(&self.data_dir, self.marker.port))
    }

    /// The data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        &self.marker.superuser
    }

    /// The superuser's password (generated at init, kept in `pgfleet.json` inside the data directory,
    /// which only the server user can read).
    pub fn password(&self) -> &str {
        &self.marker.password
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// The binaries this cluster runs with.
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// The OS user the server runs as, when pgfleet runs as root.
    pub fn server_user(&self) -> Option<&OsUser> {
        self.user.as_ref()
    }

    /// Directories that were given the traverse bit so the server user can reach its files.
    pub fn granted_traverse(&self) -> &[PathBuf] {
        &self.granted
    }
}

fn init_dir(
    data_dir: &Path,
    binaries: &PgBinaries,
    user: Option<&OsUser>,
    opts: &InitOptions,
    granted: &mut Vec<PathBuf>,
) -> Result<Marker> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| EmbeddedError::io("could not create", data_dir, e))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| EmbeddedError::io("could not set permissions on", data_dir, e))?;
    if let Some(u) = user {
        osuser::chown(data_dir, u)?;
        granted.extend(osuser::grant_traverse(data_dir, u)?);
    }
    let password = random_hex(16)?;
    // initdb wants an empty data directory, so the password file lives beside it for a moment.
    let pwfile = std::env::temp_dir().join(format!(
        "pgfleet-pw-{}-{}",
        std::process::id(),
        random_hex(4)?
    ));
    write_file(&pwfile, &format!("{password}\n"), user)?;
    let out = crate::server_env::command_as(&binaries.tool("initdb"), user)
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output();
    let _ = std::fs::remove_file(&pwfile);
    let out = out.map_err(|e| EmbeddedError::io("could not run initdb for", data_dir, e))?;
    if !out.status.success() {
        return Err(EmbeddedError::Tool {
            tool: "initdb".into(),
            dir: data_dir.to_path_buf(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let mut conf = String::from("\n# Added by pgfleet\nmax_connections = 200\n");
    for (name, value) in &opts.settings {
        conf.push_str(&format!("{name} = '{}'\n", conf_quote(value)));
    }
    conf.push_str(&format!("include_if_exists = '{CONF_FILE}'\n"));
    let conf_path = data_dir.join("postgresql.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&conf_path)
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .map_err(|e| EmbeddedError::io("could not write", &conf_path, e))?;
    let marker = Marker {
        created_by: "pgfleet".into(),
        pg_version: binaries.version().to_string(),
        pg_major: binaries.major(),
        port: opts.port,
        superuser: SUPERUSER.into(),
        password,
        bin_dir: binaries.bin_dir().to_path_buf(),
        socket_dir: None,
    };
    write_marker(data_dir, &marker, user)?;
    Ok(marker)
}

fn read_marker(data_dir: &Path) -> Result<Marker> {
    let path = data_dir.join(MARKER_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| EmbeddedError::io("could not read", &path, e))?;
    serde_json::from_str(&text).map_err(|e| EmbeddedError::BadMarker {
        path,
        reason: e.to_string(),
    })
}

fn write_marker(data_dir: &Path, marker: &Marker, user: Option<&OsUser>) -> Result<()> {
    let text = serde_json::to_string_pretty(marker).map_err(|e| EmbeddedError::BadMarker {
        path: data_dir.join(MARKER_FILE),
        reason: e.to_string(),
    })?;
    let tmp = data_dir.join(format!("{MARKER_FILE}.tmp"));
    write_file(&tmp, &text, user)?;
    let path = data_dir.join(MARKER_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| EmbeddedError::io("could not write", path, e))
}

/// Writes a private (0600) file, owned by `user` when given.
fn write_file(path: &Path, text: &str, user: Option<&OsUser>) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EmbeddedError::io("could not write", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| EmbeddedError::io("could not write", path, e))?;
    if let Some(u) = user {
        osuser::chown(path, u)?;
    }
    Ok(())
}

/// The socket goes into the data directory unless that path is too long for a unix socket.
fn socket_dir_for(data_dir: &Path, port: u16) -> PathBuf {
    let in_data = data_dir.join(format!(".s.PGSQL.{port}"));
    if in_data.as_os_str().len() <= MAX_SOCKET_PATH {
        data_dir.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn conf_quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `n` random bytes from the kernel, hex-encoded.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| EmbeddedError::io("could not read", "/dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_directories_without_touching_them() {
        let base =
            std::env::temp_dir().join(format!("pgfleet-dirstate-{}", random_hex(6).unwrap()));
        assert_eq!(dir_state(&base).unwrap(), DirState::Missing);
        std::fs::create_dir_all(&base).unwrap();
        assert_eq!(dir_state(&base).unwrap(), DirState::Empty);
        std::fs::write(base.join("notes.txt"), "keep me").unwrap();
        assert_eq!(dir_state(&base).unwrap(), DirState::Other);
        std::fs::write(base.join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(
            dir_state(&base).unwrap(),
            DirState::Foreign { major: "15".into() }
        );
        std::fs::write(base.join(MARKER_FILE), "{}").unwrap();
        assert_eq!(
            dir_state(&base).unwrap(),
            DirState::Managed { major: "15".into() }
        );
        assert_eq!(
            std::fs::read_to_string(base.join("notes.txt")).unwrap(),
            "keep me"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn long_paths_put_the_socket_elsewhere() {
        let short = Path::new("/tmp/d");
        assert_eq!(socket_dir_for(short, 5432), short);
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert_eq!(socket_dir_for(&long, 5432), std::env::temp_dir());
    }

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(conf_quote("it's"), "it''s");
        assert_eq!(conf_quote(r"a\b"), r"a\\b");
    }
}
