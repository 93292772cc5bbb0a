//! Public keys from a JWKS URL (`PGFLEET_JWKS_URL`): fetched at start (a server that cannot read
//! them does not start), fetched again when a token names a `kid` they do not hold (at most once
//! every [`MIN_REFETCH`], so a stream of made-up `kid`s costs one fetch per interval), and every
//! [`REFRESH`] by the first request that notices (so a key removed from the set stops working).
//! HTTPS with the Mozilla root certificates; plain HTTP only to a loopback address. Answers are
//! read up to 1 MiB within 5 s.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::jwt::{Key, parse_jwks};

/// Least time between two fetches prompted by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again.
pub const REFRESH: Duration = Duration::from_secs(600);
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one JWKS URL.
pub(crate) struct RemoteJwks {
    url: String,
    keys: RwLock<HashMap<String, Arc<Key>>>,
    /// When the keys were last fetched (or a fetch was last tried).
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl RemoteJwks {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            keys: RwLock::new(HashMap::new()),
            fetched: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn lookup(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// Fetches the keys now.
    ///
    /// # Errors
    /// The URL cannot be read, or its JWKS cannot be used.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut fetched = self.fetched.lock().await;
        *fetched = Some(Instant::now());
        self.fetch_into().await
    }

    async fn fetch_into(&self) -> Result<usize, String> {
        let text = get(&self.url).await?;
        let keys = parse_jwks(&text, &self.url).map_err(|e| e.to_string())?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(n)
    }

    /// The key with `kid`, fetching the set again when it is unknown (or old) and the last fetch
    /// is not too recent.
    pub(crate) async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        if let Some(k) = self.lookup(kid) {
            // Old keys are fetched again by one request; the others go on with what is there.
            if let Ok(mut fetched) = self.fetched.try_lock()
                && fetched.is_none_or(|t| t.elapsed() > REFRESH)
            {
                *fetched = Some(Instant::now());
                if let Err(e) = self.fetch_into().await {
                    tracing::warn!("re-reading the JWKS at {}: {e}", self.url);
                }
                return self.lookup(kid);
            }
            return Some(k);
        }
        let mut fetched = self.fetched.lock().await;
        if let Some(k) = self.lookup(kid) {
            return Some(k); // fetched by another request meanwhile
        }
        if fetched.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return None;
        }
        *fetched = Some(Instant::now());
        if let Err(e) = self.fetch_into().await {
            tracing::warn!("re-reading the JWKS at {}: {e}", self.url);
        }
        self.lookup(kid)
    }
}

/// `GET url`: the body, within [`TIMEOUT`] and [`MAX_BODY`].
async fn get(url: &str) -> Result<String, String> {
    tokio::time::timeout(TIMEOUT, get_inner(url))
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

async fn get_inner(url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the URL must start with https://".into()),
    };
    let host = uri
        .host()
        .ok_or("the URL has no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    if !https && !stream.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
        return Err("plain http:// is accepted only for a loopback address; use https://".into());
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, &host)
        .header(hyper::header::USER_AGENT, "pgfleet")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if https {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(stream), req).await?
    };
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer (at most {MAX_BODY} bytes): {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".into())
}

async fn send<I>(
    io: I,
    req: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| e.to_string())
}
