//! [`WireConn`]: one TCP connection that speaks the protocol itself: startup as the tenant's role
//! (SCRAM-SHA-256, MD5 or cleartext), message I/O, `CancelRequest`, and `Terminate` on drop with
//! the budget permit held until the server has closed the socket.

use std::net::SocketAddr;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ServerError, WireError};
use crate::backend::ConnectError;
use crate::pool::BudgetPermit;

/// A connection to one tenant that speaks the PostgreSQL protocol itself and hands back
/// PostgreSQL's own text output ([`WireConn::query`], [`WireConn::batch`]). Pooled by the router
/// like any connection kind ([`WireBackend`](super::WireBackend)).
pub struct WireConn {
    pub(super) stream: Option<TcpStream>,
    pub(super) buf: BytesMut,
    permit: Option<BudgetPermit>,
    /// Failed, cancelled, or left in a state the next user must not inherit.
    pub(super) broken: bool,
    /// Where `CancelRequest` goes, and the key that names this session.
    peer: SocketAddr,
    pub(super) cancel_key: Option<(i32, i32)>,
    /// Logged in as the pool role ([`SharedWireBackend`](super::SharedWireBackend)): every
    /// request must switch to a tenant first.
    pub(super) shared: bool,
    /// The tenant the next request switches to (role, `search_path`), set at checkout.
    pub(super) switch: Option<(String, String)>,
    /// The server's `ParameterStatus` values at login (`server_version`, `TimeZone`, …).
    pub(super) parameters: Vec<(String, String)>,
}

impl std::fmt::Debug for WireConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireConn")
            .field("peer", &self.peer)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl WireConn {
    /// Opens a connection as `config`'s user, database and options, plus `extra_options`
    /// (appended to the startup `options`).
    pub(super) async fn open(
        config: &tokio_postgres::Config,
        extra_options: &str,
        application_name: &str,
        permit: BudgetPermit,
    ) -> Result<WireConn, ConnectError> {
        let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() else {
            return Err(ConnectError::Unreachable(
                "this connection kind reaches servers over TCP only, and the placement names a Unix socket".into(),
            ));
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Unreachable(e.into()))?;
        let _ = stream.set_nodelay(true);
        let peer = stream
            .peer_addr()
            .map_err(|e| ConnectError::Unreachable(e.into()))?;
        let mut conn = WireConn {
            stream: Some(stream),
            buf: BytesMut::with_capacity(8192),
            permit: Some(permit),
            broken: true,
            peer,
            cancel_key: None,
            shared: false,
            switch: None,
            parameters: Vec::new(),
        };
        match conn.startup(config, extra_options, application_name).await {
            Ok(()) => {
                conn.broken = false;
                Ok(conn)
            }
            Err(e) => {
                let code = e.sqlstate().map(str::to_string);
                Err(ConnectError::from_sqlstate(code.as_deref(), e))
            }
        }
    }

    async fn startup(
        &mut self,
        config: &tokio_postgres::Config,
        extra_options: &str,
        application_name: &str,
    ) -> Result<(), WireError> {
        let user = config.get_user().unwrap_or("postgres");
        let options = match (config.get_options(), extra_options) {
            (Some(o), "") => o.to_string(),
            (Some(o), x) => format!("{o} {x}"),
            (None, x) => x.to_string(),
        };
        let mut params = vec![
            ("user", user),
            ("database", config.get_dbname().unwrap_or(user)),
            ("client_encoding", "UTF8"),
            ("application_name", application_name),
        ];
        if !options.is_empty() {
            params.push(("options", options.as_str()));
        }
        let password = config.get_password().unwrap_or_default();
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out)?;
        self.send(&out).await?;
        let mut scram = None;
        loop {
            let mut out = BytesMut::new();
            match self.read().await? {
                backend::Message::AuthenticationOk | backend::Message::NoticeResponse(_) => {
                    continue;
                }
                backend::Message::ParameterStatus(p) => {
                    if let (Ok(name), Ok(value)) = (p.name(), p.value()) {
                        self.parameters.push((name.to_string(), value.to_string()));
                    }
                    continue;
                }
                backend::Message::BackendKeyData(k) => {
                    self.cancel_key = Some((k.process_id(), k.secret_key()));
                    continue;
                }
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password, &mut out)?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                backend::Message::AuthenticationSasl(_) => {
                    let s = ScramSha256::new(password, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                    scram = Some(s);
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| unexpected("SASL continue before SASL start"))?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut out)?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| unexpected("SASL final before SASL start"))?;
                    s.finish(body.data())?;
                    continue;
                }
                backend::Message::ErrorResponse(body) => {
                    return Err(ServerError::parse(&body).into());
                }
                backend::Message::ReadyForQuery(_) => return Ok(()),
                _ => return Err(unexpected("message during startup")),
            }
            self.send(&out).await?;
        }
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| unexpected("use after close"))?;
        stream.write_all(bytes).await?;
        Ok(())
    }

    pub(super) async fn read(&mut self) -> Result<backend::Message, WireError> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| unexpected("use after close"))?;
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Asks the server to cancel what this session runs (a `CancelRequest` on a new socket, in
    /// the background). The connection is not reused afterwards: the cancel may land on any
    /// statement still queued on it.
    pub(super) fn cancel(&mut self) {
        self.broken = true;
        self.canceller().send();
    }

    /// What cancels this session's work, usable while the connection is borrowed.
    pub(super) fn canceller(&self) -> Canceller {
        Canceller {
            peer: self.peer,
            key: self.cancel_key,
        }
    }

    /// Whether the connection is known not to be usable again (marked broken, closed, or holding
    /// bytes nobody asked for), without asking the socket.
    pub(super) fn is_marked_closed(&self) -> bool {
        self.broken || !self.buf.is_empty() || self.stream.is_none()
    }

    /// Whether the connection cannot be used again: marked broken, or the server closed it (or
    /// sent something unasked, such as a `FATAL` on shutdown) while it was idle. One
    /// non-blocking read, no round trip.
    pub fn is_closed(&self) -> bool {
        // Broken, or holding bytes nobody asked for.
        if self.broken || !self.buf.is_empty() {
            return true;
        }
        let Some(stream) = &self.stream else {
            return true;
        };
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            // End of file, bytes nobody asked for, or an error: not to be reused.
            _ => true,
        }
    }
}

/// Sends a `CancelRequest` for one session, in the background.
#[derive(Debug, Clone, Copy)]
pub struct Canceller {
    peer: SocketAddr,
    key: Option<(i32, i32)>,
}

impl Canceller {
    /// Asks the server to cancel what the session runs now (a `CancelRequest` on a new socket,
    /// in the background; nothing happens when the session runs nothing).
    pub fn send(self) {
        let Some((pid, secret)) = self.key else {
            return;
        };
        let peer = self.peer;
        tokio::spawn(async move {
            let mut out = BytesMut::new();
            frontend::cancel_request(pid, secret, &mut out);
            if let Ok(mut s) = TcpStream::connect(peer).await {
                let _ = s.write_all(&out).await;
                let mut scratch = [0u8; 16];
                let _ = s.read(&mut scratch).await; // the server closes it when done
            }
        });
    }
}

pub(super) fn unexpected(what: &str) -> WireError {
    WireError::Protocol(what.to_string())
}

impl Drop for WireConn {
    /// `Terminate`, then the budget permit goes back once the server has closed the socket.
    fn drop(&mut self) {
        if let (Some(stream), Some(permit)) = (self.stream.take(), self.permit.take()) {
            permit.release_after_close(stream);
        }
    }
}
