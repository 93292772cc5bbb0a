//! A throwaway PgBouncer in front of a test server, for benchmarks that compare pgfleet's proxy
//! with it.
//!
//! ```no_run
//! use pgfleet_testkit::pgbouncer::{PgBouncer, PgBouncerOptions};
//!
//! let cluster = pgfleet_testkit::shared();
//! let bouncer = PgBouncer::start(&PgBouncerOptions::for_cluster(cluster, "postgres", 10))?;
//! println!("connect to {}", bouncer.url()); // stopped and removed when `bouncer` is dropped
//! # Ok::<(), String>(())
//! ```
//!
//! The binary is Debian's `/usr/sbin/pgbouncer` (`scripts/bootstrap.sh --with-pgbouncer`), else
//! `pgbouncer` on `PATH`. PgBouncer refuses to run as root: when the tests run as root it runs as
//! the unprivileged user that runs PostgreSQL ([`pgfleet_embedded::osuser`]), from a directory
//! under [`crate::root_dir`] owned by that user, with the clean environment of
//! [`pgfleet_embedded::server_env`]. It runs in the foreground as a child of the test process; a
//! watchdog kills it and removes its directory when the test process exits, however it exits.
//!
//! It listens on 127.0.0.1 only (no unix socket) and authenticates clients with SCRAM against a
//! `userlist.txt` holding the one user's password in plain text, which it also uses to log in to
//! the server. PgBouncer 1.18 does not track prepared statements: in transaction mode a client must
//! not use named statements (tokio-postgres `query`/`prepare`, pgbench `-M prepared`); the unnamed
//! statement (tokio-postgres `query_typed`, `simple_query`; pgbench `-M simple` or `-M extended`)
//! works.

use std::fmt;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgfleet_embedded::osuser::{self, OsUser};
use pgfleet_embedded::server_env;

use crate::{OWNER_FILE, TestCluster, free_port, random_suffix, root_dir};

/// Where Debian's package puts the binary.
pub const DEBIAN_BINARY: &str = "/usr/sbin/pgbouncer";
/// What to run when the binary is missing.
const INSTALL_HINT: &str = "run `bash scripts/bootstrap.sh --with-pgbouncer` (as root; on Debian it apt-installs pgbouncer)";
/// How long PgBouncer may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the chosen one was taken before PgBouncer bound it.
const PORT_TRIES: usize = 5;
/// Lines of PgBouncer's output quoted in errors.
const LOG_TAIL_LINES: usize = 20;
/// File receiving PgBouncer's stderr: everything the log file gets, plus configuration errors,
/// which are reported before the log file is opened.
const STDERR_FILE: &str = "stderr.log";

/// What PgBouncer forwards, and how it pools.
#[derive(Clone)]
pub struct PgBouncerOptions {
    /// Host of the PostgreSQL server (an address or a host name, no spaces or quotes).
    pub server_host: String,
    /// Port of the PostgreSQL server.
    pub server_port: u16,
    /// The database clients connect to; PgBouncer forwards it to the database of the same name
    /// (and any other name too, through its `*` fallback). Letters, digits, `_`, `-` and `.` only.
    pub database: String,
    /// The one user, the same for clients and for the server.
    pub user: String,
    /// That user's password on the server; clients log in with it too.
    pub password: String,
    /// Server connections per database and user pair (`default_pool_size`).
    pub pool_size: usize,
    /// `session`, `transaction` or `statement`.
    pub pool_mode: &'static str,
}

impl PgBouncerOptions {
    /// Transaction pooling of `database` on a test cluster, as its superuser, with `pool_size`
    /// server connections.
    pub fn for_cluster(cluster: &TestCluster, database: &str, pool_size: usize) -> Self {
        Self {
            server_host: "127.0.0.1".into(),
            server_port: cluster.port(),
            database: database.into(),
            user: cluster.cluster().superuser().into(),
            password: cluster.cluster().password().into(),
            pool_size,
            pool_mode: "transaction",
        }
    }

    /// Refuses what the configuration files cannot carry, saying which field is wrong.
    fn validate(&self) -> Result<(), String> {
        if !matches!(self.pool_mode, "session" | "transaction" | "statement") {
            return Err(format!(
                "PgBouncer pool_mode {:?} is not one of session, transaction, statement",
                self.pool_mode
            ));
        }
        if self.pool_size == 0 {
            return Err("PgBouncer pool_size must be at least 1".into());
        }
        if self.database.is_empty()
            || !self
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "database {:?} cannot be named in pgbouncer.ini: use letters, digits, `_`, `-` and `.` only",
                self.database
            ));
        }
        if self.server_host.is_empty()
            || self
                .server_host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '\\' | '"'))
        {
            return Err(format!(
                "server host {:?} cannot be written into pgbouncer.ini: give an address or host name without spaces or quotes",
                self.server_host
            ));
        }
        if self.user.is_empty() || has_line_break(&self.user) || has_line_break(&self.password) {
            return Err(format!(
                "user {:?} or its password cannot be written into userlist.txt: it must be non-empty and on one line",
                self.user
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for PgBouncerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncerOptions")
            .field("server_host", &self.server_host)
            .field("server_port", &self.server_port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("pool_mode", &self.pool_mode)
            .finish()
    }
}

/// A running PgBouncer on 127.0.0.1, killed and its directory removed when dropped.
pub struct PgBouncer {
    /// The TCP port it listens on.
    pub port: u16,
    child: Child,
    dir: PathBuf,
    url: String,
}

/// Why one attempt to start failed.
enum Attempt {
    /// Another process took the port first: try another.
    PortTaken(String),
    /// Anything else: give up.
    Failed(String),
}

impl PgBouncer {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PgBouncer binary: [`DEBIAN_BINARY`], else `pgbouncer` on `PATH`.
    ///
    /// # Errors
    /// When neither exists; the message says how to install it.
    pub fn binary() -> Result<PathBuf, String> {
        let debian = PathBuf::from(DEBIAN_BINARY);
        if is_executable(&debian) {
            return Ok(debian);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("pgbouncer"))
            .find(|p| is_executable(p))
            .ok_or_else(|| {
                format!("PgBouncer is not installed (no {DEBIAN_BINARY}, no pgbouncer on PATH): {INSTALL_HINT}")
            })
    }

    /// Starts PgBouncer on a free port of 127.0.0.1 and waits (up to 10 s) until it listens. When
    /// this process runs as root, PgBouncer runs as the unprivileged server user.
    ///
    /// # Errors
    /// When the binary is missing, an option cannot be written into the configuration, no
    /// unprivileged user can be found or created, files cannot be written, or PgBouncer exits or
    /// does not listen in time (the message then ends with the tail of its log).
    pub fn start(opts: &PgBouncerOptions) -> Result<PgBouncer, String> {
        let binary = Self::binary()?;
        opts.validate()?;
        let user = osuser::server_user()
            .map_err(|e| format!("cannot choose the OS user to run PgBouncer as: {e}"))?;
        let mut taken = Vec::new();
        for _ in 0..PORT_TRIES {
            match Self::try_start(&binary, opts, user.as_ref(), free_port()) {
                Ok(bouncer) => return Ok(bouncer),
                Err(Attempt::PortTaken(log)) => taken.push(log),
                Err(Attempt::Failed(message)) => return Err(message),
            }
        }
        Err(format!(
            "PgBouncer found its port taken {PORT_TRIES} times in a row; last log:\n{}",
            taken.pop().unwrap_or_default()
        ))
    }

    /// One attempt on `port`, in a fresh directory (removed by `Drop` when the attempt fails).
    fn try_start(
        binary: &Path,
        opts: &PgBouncerOptions,
        user: Option<&OsUser>,
        port: u16,
    ) -> Result<PgBouncer, Attempt> {
        let dir = make_dir(user).map_err(Attempt::Failed)?;
        // Until the child runs, a failure must remove the directory itself.
        let written = write_files(&dir, opts, user, port);
        let child = written.and_then(|()| spawn(binary, &dir, user));
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(Attempt::Failed(e));
            }
        };
        spawn_watchdog(&dir, child.id());
        let mut bouncer = PgBouncer {
            port,
            child,
            url: format!(
                "postgresql://{}:{}@127.0.0.1:{port}/{}",
                encode(&opts.user),
                encode(&opts.password),
                encode(&opts.database)
            ),
            dir,
        };
        bouncer.wait_listening()?;
        Ok(bouncer)
    }

    /// Waits until PgBouncer says it listens on our port and accepts a TCP connection there (the
    /// log line tells it apart from another process that took the port).
    fn wait_listening(&mut self) -> Result<(), Attempt> {
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_tail();
                return Err(if log.contains("Address already in use") {
                    Attempt::PortTaken(log)
                } else {
                    Attempt::Failed(format!(
                        "PgBouncer exited at start ({status}); its log:\n{log}"
                    ))
                });
            }
            if self.log().contains(&listening)
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Attempt::Failed(format!(
                    "PgBouncer did not listen on 127.0.0.1:{} within {} s; its log:\n{}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgresql://user:password@127.0.0.1:port/database`, user, password and database
    /// percent-encoded.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The directory holding `pgbouncer.ini`, `userlist.txt`, `pgbouncer.log` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything PgBouncer wrote so far (its stderr, which includes its configuration errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join(STDERR_FILE)).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail
        }
    }
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it carries the password.
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory `pgbouncer-<pid>-<random>` under [`root_dir`], owned by `user` (mode 0700)
/// and reachable by it. Its `owner.pid` lets [`crate::sweep`] remove it once this process is gone.
fn make_dir(user: Option<&OsUser>) -> Result<PathBuf, String> {
    let root = root_dir();
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let dir = root.join(format!(
        "pgbouncer-{}-{}",
        std::process::id(),
        random_suffix()
    ));
    let made = fs::create_dir(&dir)
        .and_then(|()| fs::write(dir.join(OWNER_FILE), std::process::id().to_string()))
        .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
        .map_err(|e| {
            format!(
                "cannot prepare PgBouncer's directory {}: {e}",
                dir.display()
            )
        });
    let owned = made.and_then(|()| match user {
        Some(u) => osuser::chown(&dir, u)
            .and_then(|()| osuser::grant_traverse(&dir, u))
            .map(|_granted| ())
            .map_err(|e| format!("cannot hand {} to user {}: {e}", dir.display(), u.name)),
        None => Ok(()),
    });
    match owned {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Writes `userlist.txt` and `pgbouncer.ini` (mode 0600, owned by `user`).
fn write_files(
    dir: &Path,
    opts: &PgBouncerOptions,
    user: Option<&OsUser>,
    port: u16,
) -> Result<(), String> {
    let userlist = dir.join("userlist.txt");
    write_private(
        &userlist,
        &format!(
            "{} {}\n",
            userlist_quote(&opts.user),
            userlist_quote(&opts.password)
        ),
        user,
    )?;
    write_private(&dir.join("pgbouncer.ini"), &config(dir, opts, port), user)
}

/// `pgbouncer.ini`. Besides the pooling settings: no unix socket (the default `/tmp` socket would
/// clash between parallel runs), no TLS to the server (the test servers have none; `prefer` would
/// cost a round trip per server connection), no log line per connection (benchmarks open
/// thousands), the listen backlog of a tokio listener like pgfleet's (1024; PgBouncer's default of
/// 128 drops connections in a storm of new clients), and the startup parameters pgjdbc and psql's
/// `PGOPTIONS` send accepted instead of refused.
fn config(dir: &Path, opts: &PgBouncerOptions, port: u16) -> String {
    let server = format!("host='{}' port={}", opts.server_host, opts.server_port);
    format!(
        "[databases]
{database} = {server} dbname='{database}'
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
listen_backlog = 1024
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 1000
server_tls_sslmode = disable
logfile = {logfile}
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits,options
",
        database = opts.database,
        pool_mode = opts.pool_mode,
        pool_size = opts.pool_size,
        userlist = dir.join("userlist.txt").display(),
        logfile = dir.join("pgbouncer.log").display(),
    )
}

/// Starts PgBouncer in the foreground as `user`, its stderr into [`STDERR_FILE`].
fn spawn(binary: &Path, dir: &Path, user: Option<&OsUser>) -> Result<Child, String> {
    let stderr_path = dir.join(STDERR_FILE);
    let stderr = File::create(&stderr_path)
        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
    let mut cmd: Command = server_env::command_as(binary, user);
    cmd.arg(dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    cmd.spawn()
        .map_err(|e| format!("cannot run {}: {e}; {INSTALL_HINT}", binary.display()))
}

/// Starts a process that waits for this test process to exit, then kills PgBouncer (when `pid`
/// still runs PgBouncer with our configuration, not a process that reused the pid) and removes
/// `dir`. It ignores Ctrl-C so an interrupted run still cleans up.
fn spawn_watchdog(dir: &Path, pid: u32) {
    const SCRIPT: &str = r#"
trap '' INT HUP TERM
while kill -0 "$1" 2>/dev/null; do sleep 0.3; done
if tr '\0' '\n' < "/proc/$3/cmdline" 2>/dev/null | grep -qxF -- "$2/pgbouncer.ini"; then
  kill -KILL "$3" 2>/dev/null
fi
rm -rf "$2"
"#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgfleet-testkit-pgbouncer-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "pgfleet-testkit: could not start PgBouncer's cleanup watchdog ({e}); if this process is killed, kill pgbouncer {pid} by hand"
        );
    }
}

/// Writes `text` to `path` readable only by its owner, `user` (or this process's user).
fn write_private(path: &Path, text: &str, user: Option<&OsUser>) -> Result<(), String> {
    fs::write(path, text)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o600)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    match user {
        Some(u) => osuser::chown(path, u).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// A `userlist.txt` field: in double quotes, a double quote doubled.
fn userlist_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\n', '\r', '\0'])
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a URL's user info and path.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PgBouncerOptions {
        PgBouncerOptions {
            server_host: "127.0.0.1".into(),
            server_port: 5432,
            database: "bench_db".into(),
            user: "bench".into(),
            password: "se\"c ret@".into(),
            pool_size: 10,
            pool_mode: "transaction",
        }
    }

    #[test]
    fn config_forwards_the_database_and_pools_by_transaction() {
        let text = config(Path::new("/d"), &opts(), 20001);
        assert!(
            text.contains("bench_db = host='127.0.0.1' port=5432 dbname='bench_db'\n"),
            "{text}"
        );
        assert!(text.contains("listen_port = 20001\n"), "{text}");
        assert!(text.contains("pool_mode = transaction\n"), "{text}");
        assert!(text.contains("default_pool_size = 10\n"), "{text}");
        assert!(text.contains("unix_socket_dir =\n"), "{text}");
        assert!(text.contains("auth_file = /d/userlist.txt\n"), "{text}");
        assert!(
            !text.contains("se\"c"),
            "the password stays out of pgbouncer.ini: {text}"
        );
    }

    #[test]
    fn userlist_and_url_escape_the_password() {
        assert_eq!(userlist_quote("se\"c ret@"), "\"se\"\"c ret@\"");
        assert_eq!(encode("se\"c ret@"), "se%22c%20ret%40");
    }

    #[test]
    fn options_that_cannot_be_written_are_refused() {
        assert!(opts().validate().is_ok());
        let bad = [
            PgBouncerOptions {
                pool_mode: "txn",
                ..opts()
            },
            PgBouncerOptions {
                pool_size: 0,
                ..opts()
            },
            PgBouncerOptions {
                database: "a b".into(),
                ..opts()
            },
            PgBouncerOptions {
                server_host: "h'".into(),
                ..opts()
            },
            PgBouncerOptions {
                password: "a\nb".into(),
                ..opts()
            },
        ];
        for o in bad {
            assert!(o.validate().is_err(), "{o:?}");
        }
        assert!(
            !format!("{:?}", opts()).contains("ret@"),
            "Debug hides the password"
        );
    }
}
