//! The PostgreSQL wire-protocol front door (`pgfleet serve --pg-listen`): psql, pgbench, every
//! driver and ORM reach their tenant through it, pooled under the same per-server budget as the
//! library and `/sql`. See `docs/pg-wire.md`.
//!
//! - **Login**: the tenant key is the user name (the database name is ignored); the password,
//!   asked for in clear (`AuthenticationCleartextPassword`, since the method must be chosen before
//!   the password is seen), is an app token (`pgf_…`, scope `sql`: a trusted caller) or an
//!   end-user JWT whose tenant claim is the user name. Passwords are taken only over TLS
//!   (`SSLRequest`, with `--tls-cert`/`--tls-key`) or from loopback. Protocol 3.2 is answered with
//!   `NegotiateProtocolVersion` (3.0 served); GSS encryption is declined.
//! - **Pooling** ([`session`]): transaction mode (a server session lent per transaction) by
//!   default, or session mode; named prepared statements work in transaction mode; a client that
//!   uses a session feature is pinned to its server session ([`classify`]); `SET ROLE` and its
//!   kin are refused. Trusted callers of schema tenants get shared sessions of the pool role,
//!   end users sessions logged in as their tenant's role.
//! - **Cancel**: each client gets a random key; a `CancelRequest` with it reaches the server
//!   session the client holds at that moment (which is then not reused).
//! - **Heal**: an autocommit request that failed on a missing table, column or schema is
//!   repaired and sent again, invisibly.

pub mod classify;
pub mod message;
mod session;
pub mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgfleet::control::Control;
use pgfleet::router::Router;
use pgfleet::router::wire::{Canceller, ProxyBackend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::sql::auth::Auth;

/// How server sessions are lent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// For one transaction at a time (a client that uses a session feature keeps its session).
    #[default]
    Transaction,
    /// For the client's whole session.
    Session,
}

impl std::str::FromStr for PoolMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "transaction" => Ok(Self::Transaction),
            "session" => Ok(Self::Session),
            other => Err(format!(
                "unknown pool mode {other:?}: expected transaction or session"
            )),
        }
    }
}

/// The settings of the wire front door.
#[derive(Clone)]
pub struct PgOptions {
    /// Transaction (default) or session pooling (`--pg-pool-mode`).
    pub pool_mode: PoolMode,
    /// TLS for clients that ask with `SSLRequest` (`--tls-cert`, `--tls-key`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Time from connect to login done (default 10 s).
    pub startup_timeout: Duration,
    /// Clients served at once; more wait in the listen backlog (default 4096).
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_mode: PoolMode::Transaction,
            tls: None,
            startup_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("pool_mode", &self.pool_mode)
            .field("tls", &self.tls.is_some())
            .field("startup_timeout", &self.startup_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Largest startup packet taken (PostgreSQL takes 10,000 bytes).
pub const MAX_STARTUP: usize = 10_000;
/// Largest password message taken (a JWT with many claims fits).
pub const MAX_PASSWORD: usize = 64 << 10;

/// The wire front door's state.
pub struct PgService {
    router: Router<Control>,
    auth: Arc<Auth>,
    backend: ProxyBackend,
    /// Connections of `/sql`'s kind, for reads served through the result cache.
    wire: pgfleet::router::wire::WireBackend,
    opts: PgOptions,
    cancels: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

impl std::fmt::Debug for PgService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgService")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Where a client's `CancelRequest` goes: the server session it holds now, if any.
#[derive(Debug, Default)]
pub struct CancelSlot {
    current: Mutex<Option<Canceller>>,
    used: AtomicBool,
}

/// Why a login or a startup packet was refused: a `FATAL` to send.
struct Fatal {
    code: &'static str,
    text: String,
    hint: Option<&'static str>,
    label: &'static str,
}

impl Fatal {
    fn new(label: &'static str, code: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
            hint: None,
            label,
        }
    }
}

/// The first packet of a connection.
enum Startup {
    Ssl,
    Gss,
    Cancel(i32, i32),
    Params {
        minor: i32,
        params: Vec<(String, String)>,
    },
}

impl PgService {
    /// The front door over `router` (shared with `/sql`, so one budget), checking callers with
    /// `auth`.
    pub fn new(router: Router<Control>, auth: Arc<Auth>, opts: PgOptions) -> Self {
        Self {
            router,
            auth,
            backend: ProxyBackend::new("pgfleet-pg"),
            wire: pgfleet::router::wire::WireBackend::new("pgfleet-pg-cache", None),
            opts,
            cancels: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `listener` until `stop` turns true; then stops accepting and gives sessions in
    /// flight 10 s to end before closing them.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut conns = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.opts.max_connections.max(1),
        ));
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.expect("never closed"),
                _ = stop.wait_for(|s| *s) => break,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let svc = self.clone();
            conns.spawn(async move {
                let _slot = slot;
                Box::pin(svc.tcp(stream, peer)).await;
            });
            while conns.try_join_next().is_some() {}
        }
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            conns.abort_all();
        }
    }

    /// A TCP client: TLS when it asks and TLS is configured, then the login and its session.
    async fn tcp(self: Arc<Self>, mut tcp: TcpStream, peer: SocketAddr) {
        let loopback = peer.ip().is_loopback();
        let mut buf = BytesMut::with_capacity(1024);
        let deadline = tokio::time::Instant::now() + self.opts.startup_timeout;
        for _ in 0..3 {
            let first = tokio::time::timeout_at(deadline, read_startup(&mut tcp, &mut buf)).await;
            let first = match first {
                Err(_) => return,
                Ok(Err(f)) => return refuse(&mut tcp, &f).await,
                Ok(Ok(s)) => s,
            };
            match first {
                Startup::Ssl => {
                    let Some(acceptor) = self.opts.tls.clone() else {
                        if tcp.write_all(b"N").await.is_err() {
                            return;
                        }
                        continue;
                    };
                    if !buf.is_empty() {
                        // Bytes after SSLRequest, before the handshake: never trusted.
                        return;
                    }
                    if tcp.write_all(b"S").await.is_err() {
                        return;
                    }
                    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        _ => return,
                    };
                    return Box::pin(self.startup(tls, BytesMut::new(), true, loopback)).await;
                }
                Startup::Gss => {
                    if tcp.write_all(b"N").await.is_err() {
                        return;
                    }
                }
                Startup::Cancel(pid, secret) => return self.cancel(pid, secret),
                Startup::Params { minor, params } => {
                    let deadline_left = deadline;
                    return self
                        .login(tcp, buf, minor, params, false, loopback, deadline_left)
                        .await;
                }
            }
        }
    }

    /// A client on a stream that is already secure or cannot be upgraded (after TLS, or a
    /// WebSocket): its startup packet, then the login.
    pub async fn startup<S>(
        self: Arc<Self>,
        mut stream: S,
        mut buf: BytesMut,
        secure: bool,
        loopback: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let deadline = tokio::time::Instant::now() + self.opts.startup_timeout;
        for _ in 0..3 {
            let first =
                tokio::time::timeout_at(deadline, read_startup(&mut stream, &mut buf)).await;
            match first {
                Err(_) => return,
                Ok(Err(f)) => return refuse(&mut stream, &f).await,
                Ok(Ok(Startup::Ssl | Startup::Gss)) => {
                    if stream.write_all(b"N").await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
                Ok(Ok(Startup::Cancel(pid, secret))) => return self.cancel(pid, secret),
                Ok(Ok(Startup::Params { minor, params })) => {
                    return self
                        .login(stream, buf, minor, params, secure, loopback, deadline)
                        .await;
                }
            }
        }
    }

    fn cancel(&self, pid: i32, secret: i32) {
        let slot = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pid, secret))
            .cloned();
        metrics::counter!("pgfleet_pg_cancel_requests_total", "found" => if slot.is_some() { "yes" } else { "no" }).increment(1);
        if let Some(slot) = slot {
            let current = *slot.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = current {
                slot.used.store(true, std::sync::atomic::Ordering::Release);
                c.send();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn login<S>(
        self: Arc<Self>,
        mut stream: S,
        mut buf: BytesMut,
        minor: i32,
        params: Vec<(String, String)>,
        secure: bool,
        loopback: bool,
        deadline: tokio::time::Instant,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut out = BytesMut::new();
        // Protocol 3.2 (libpq 18) and `_pq_.` options: say what is served.
        let unknown: Vec<String> = params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.clone())
            .collect();
        if minor > 0 || !unknown.is_empty() {
            message::negotiate_version(&mut out, 0, &unknown);
        }
        let login = tokio::time::timeout_at(
            deadline,
            self.authenticate(&mut stream, &mut buf, &mut out, &params, secure, loopback),
        )
        .await;
        let (caller, lease) = match login {
            Err(_) => return,
            Ok(Err(f)) => {
                metrics::counter!("pgfleet_pg_logins_total", "outcome" => f.label).increment(1);
                out.clear();
                message::error(&mut out, "FATAL", f.code, &f.text, f.hint);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return;
            }
            Ok(Ok(l)) => l,
        };
        metrics::counter!("pgfleet_pg_logins_total", "outcome" => "ok").increment(1);
        message::authentication(&mut out, 0);
        let app_name = params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        for (name, value) in lease.parameters() {
            match name.as_str() {
                // Who the server session is logged in as is pgfleet's business.
                "session_authorization" | "is_superuser" | "application_name" => {}
                _ => message::parameter_status(&mut out, name, value),
            }
        }
        message::parameter_status(&mut out, "is_superuser", "off");
        message::parameter_status(&mut out, "application_name", app_name);
        let (pid, secret, slot) = self.register_cancel();
        message::backend_key(&mut out, pid, secret);
        message::ready(&mut out, b'I');
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            self.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(pid, secret));
            return;
        }
        let lease = match self.opts.pool_mode {
            PoolMode::Session => Some(lease),
            PoolMode::Transaction => {
                drop(lease);
                None
            }
        };
        metrics::gauge!("pgfleet_pg_clients").increment(1.0);
        tracing::debug!(tenant = %caller.key.escape_debug(), "pg front door: a client logged in");
        session::Session::new(&self, caller, lease, slot)
            .run(stream, buf)
            .await;
        metrics::gauge!("pgfleet_pg_clients").decrement(1.0);
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(pid, secret));
    }

    /// The password exchange and the caller's first server session (which says the tenant can
    /// be reached, and gives the parameters to report).
    async fn authenticate<S>(
        &self,
        stream: &mut S,
        buf: &mut BytesMut,
        out: &mut BytesMut,
        params: &[(String, String)],
        secure: bool,
        loopback: bool,
    ) -> Result<(crate::sql::auth::Caller, pgfleet::router::wire::ProxyLease), Fatal>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let user = get("user").filter(|u| !u.is_empty()).ok_or_else(|| {
            Fatal::new(
                "no_user",
                "28000",
                "no user name: connect with the tenant key as the user name",
            )
        })?;
        if let Some(enc) = get("client_encoding") {
            let e = enc.to_ascii_uppercase().replace(['-', '_'], "");
            if !matches!(e.as_str(), "UTF8" | "UNICODE" | "AUTO") {
                return Err(Fatal::new(
                    "encoding",
                    "22023",
                    format!(
                        "client_encoding {enc:?} is not served: pgfleet speaks UTF8 only (set PGCLIENTENCODING=UTF8)"
                    ),
                ));
            }
        }
        if !secure && !loopback {
            let mut f = Fatal::new(
                "no_tls",
                "28000",
                "pgfleet takes passwords only over TLS (or from this host): connect with sslmode=require",
            );
            if self.opts.tls.is_none() {
                f.hint =
                    Some("This server has no certificate: start it with --tls-cert and --tls-key.");
            }
            return Err(f);
        }
        message::authentication(out, 3);
        let gone = |_| Fatal::new("gone", "08006", "the client went away");
        stream.write_all(out).await.map_err(gone)?;
        stream.flush().await.map_err(gone)?;
        out.clear();
        let password = read_password(stream, buf).await?;
        let caller = match self.auth.login(user, &password).await {
            Ok(Ok(c)) => c,
            Ok(Err(r)) => {
                metrics::counter!("pgfleet_pg_auth_failures_total", "reason" => r.label)
                    .increment(1);
                let code = if r.label == "jwt_other_tenant" {
                    "28000"
                } else {
                    "28P01"
                };
                return Err(Fatal::new(
                    "unauthorized",
                    code,
                    format!(
                        "password authentication failed for user \"{}\": {}",
                        user.escape_debug(),
                        r.reason
                    ),
                ));
            }
            Err(e) => {
                tracing::warn!("pg front door: cannot check credentials: {}", e.0);
                return Err(Fatal::new(
                    "unavailable",
                    "57P03",
                    "cannot check credentials now; retry shortly",
                ));
            }
        };
        let trusted = caller.via != crate::sql::auth::Via::Jwt;
        match self.router.proxy(&caller.key, &self.backend, trusted).await {
            Ok(lease) => Ok((caller, lease)),
            Err(e) => {
                let (label, code, text) = session::refusal(&caller.key, &e);
                Err(Fatal::new(label, code, text))
            }
        }
    }

    fn register_cancel(&self) -> (i32, i32, Arc<CancelSlot>) {
        let slot = Arc::new(CancelSlot::default());
        let mut map = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let r = pgfleet::control::secrets::random_bytes::<8>().unwrap_or_else(|_| {
                // No OS randomness: a key nobody else has, though guessable.
                let n = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64;
                n.to_le_bytes()
            });
            let pid = i32::from_le_bytes([r[0], r[1], r[2], r[3]]) & i32::MAX;
            let secret = i32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry((pid, secret)) {
                v.insert(slot.clone());
                return (pid, secret, slot);
            }
        }
    }
}

/// Sends a `FATAL` for a bad startup packet and closes.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, f: &Fatal) {
    metrics::counter!("pgfleet_pg_logins_total", "outcome" => f.label).increment(1);
    let mut out = BytesMut::new();
    message::error(&mut out, "FATAL", f.code, &f.text, f.hint);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// Reads until `buf` holds `n` bytes.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    n: usize,
) -> Result<(), Fatal> {
    while buf.len() < n {
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => {
                return Err(Fatal::new("gone", "08006", "the client went away"));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The first packet: length, code, and for a startup message its parameters.
async fn read_startup<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Startup, Fatal> {
    fill(stream, buf, 8).await?;
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP as i32).contains(&len) {
        return Err(Fatal::new(
            "bad_startup",
            "08P01",
            format!("invalid startup packet length {len}"),
        ));
    }
    let len = len as usize;
    fill(stream, buf, len).await?;
    let packet = buf.split_to(len);
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        80_877_103 => return Ok(Startup::Ssl),
        80_877_104 => return Ok(Startup::Gss),
        80_877_102 => {
            if len != 16 {
                return Err(Fatal::new("bad_startup", "08P01", "invalid cancel request"));
            }
            let mut p = &packet[8..];
            return Ok(Startup::Cancel(p.get_i32(), p.get_i32()));
        }
        _ => {}
    }
    let (major, minor) = (code >> 16, code & 0xffff);
    if major != 3 {
        return Err(Fatal::new(
            "bad_startup",
            "0A000",
            format!("unsupported frontend protocol {major}.{minor}: pgfleet serves protocol 3.0"),
        ));
    }
    let mut params = Vec::new();
    let mut rest = &packet[8..];
    loop {
        match rest.first() {
            Some(0) if rest.len() == 1 => break,
            None => {
                return Err(Fatal::new(
                    "bad_startup",
                    "08P01",
                    "invalid startup packet layout: expected terminator as last byte",
                ));
            }
            _ => {}
        }
        let bad = || Fatal::new("bad_startup", "08P01", "invalid startup packet layout");
        let (k, r) = message::take_cstr(rest).ok_or_else(bad)?;
        let (v, r) = message::take_cstr(r).ok_or_else(bad)?;
        params.push((k.to_string(), v.to_string()));
        rest = r;
    }
    Ok(Startup::Params { minor, params })
}

/// The client's `PasswordMessage`.
async fn read_password<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<String, Fatal> {
    fill(stream, buf, 5).await?;
    let bad = |t: &str| Fatal::new("bad_password_message", "08P01", t.to_string());
    if buf[0] != b'p' {
        return Err(bad("expected a password message"));
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if !(5..=MAX_PASSWORD as i32).contains(&len) {
        return Err(bad("invalid password message length"));
    }
    fill(stream, buf, len as usize + 1).await?;
    let msg = buf.split_to(len as usize + 1);
    let (password, _) =
        message::take_cstr(&msg[5..]).ok_or_else(|| bad("the password is not a string"))?;
    Ok(password.to_string())
}
