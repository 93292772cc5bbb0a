//! Serving a front door's routes on a listener of its own, over plain TCP or TLS: one task per
//! connection (a slow TLS handshake or a slow client holds only its own), HTTP/1.1 with
//! keep-alive, a bound on the time a request's headers may take (slow-loris), a bound on the time
//! a write may wait for a client that does not read (its connection, and the answer it holds, are
//! dropped), at most [`ListenOptions::max_connections`] connections at once, and a graceful stop
//! that lets requests in flight finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a request's headers may take, and an idle keep-alive connection stays open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may wait for the client to read before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ListenOptions::max_connections`].
pub const MAX_CONNECTIONS: usize = 4096;

/// How to serve.
#[derive(Clone)]
pub struct ListenOptions {
    /// Time for a TLS handshake (headers get at least [`IDLE_TIMEOUT`]).
    pub read_timeout: Duration,
    /// TLS, when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How long a write may wait for the client to read ([`WRITE_TIMEOUT`] by default).
    pub write_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("read_timeout", &self.read_timeout)
            .field("tls", &self.tls.is_some())
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, asks every
/// connection to close after its request in flight, and waits for them (at most 30 s).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    opts: ListenOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("never closed"),
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, opts, stop) = (app.clone(), opts.clone(), stop.clone());
        conns.spawn(async move {
            let _slot = slot;
            let stream = WriteDeadline::new(stream, opts.write_timeout);
            let peer = Peer {
                addr: peer,
                tls: opts.tls.is_some(),
            };
            match &opts.tls {
                None => connection(stream, app, opts.read_timeout, stop, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(opts.read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, app, opts.read_timeout, stop, peer).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Who is on the other end of a request's connection: a request extension set by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
}

async fn connection<I>(
    io: I,
    app: axum::Router,
    read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    peer: Peer,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = Arc::new(app);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let app = (*app).clone();
        req.extensions_mut().insert(peer);
        async move {
            Ok::<_, Infallible>(
                app.oneshot(req.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper starts this timer when it waits for the next request, so it is also how long an
        // idle keep-alive connection stays open: longer than clients keep theirs (undici: 4 s).
        .header_read_timeout(read_timeout.max(IDLE_TIMEOUT))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        // `GET /v2` upgrades to a WebSocket (the wire protocol for the Neon driver's Pool).
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1),
/// with rustls' safe defaults (TLS 1.2 and 1.3) and HTTP/1.1 by ALPN.
///
/// # Errors
/// A file that cannot be read, or holds no certificate or key, or a key that does not match.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    tls_acceptor_for(cert, key, b"http/1.1")
}

/// As [`tls_acceptor`], for the protocol `alpn` (`http/1.1`, or `postgresql` for the wire front
/// door, as libpq 17 and later name it); clients that name no protocol are served too.
///
/// # Errors
/// As [`tls_acceptor`].
pub fn tls_acceptor_for(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[u8],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert_pem = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no PEM private key in it: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A stream whose writes fail with `TimedOut` once one has waited `limit` for the peer to read.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            waiting: None,
        }
    }

    /// After the inner write was `Pending`: arms the timer, or fails when it ran out.
    fn pending<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
        let limit = self.limit;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its answer in time",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => self.pending(cx),
            ready => {
                self.waiting = None;
                ready
            }
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Pending => self.pending(cx),
            ready => {
                self.waiting = None;
                ready
            }
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
