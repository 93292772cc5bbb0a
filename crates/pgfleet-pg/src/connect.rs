//! Connecting: URL parsing with clear errors, a connect timeout, and password redaction for messages.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::PgError;
use crate::error::describe;

/// Default connect timeout when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a PostgreSQL URL (`postgres://user:password@host:port/db?…`) or key-value string.
///
/// # Errors
/// [`PgError::BadUrl`] with the parser's reason; the password never appears in the message.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    let mut config = Config::from_str(url).map_err(|e| PgError::BadUrl {
        url: redact(url),
        reason: format!(
            "{e}; expected postgres://user:password@host:port/database (or key=value pairs)"
        ),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connects without TLS and drives the connection on the current runtime.
///
/// # Errors
/// [`PgError::Connect`] naming the server, database and user, with the cause.
pub async fn connect(config: &Config) -> Result<Client, PgError> {
    // The driver's connect_timeout covers opening the socket only; a server that accepts and never
    // answers would hang the startup handshake forever, so the whole connect is bounded.
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let (client, conn) = tokio::time::timeout(limit, config.connect(NoTls))
        .await
        .map_err(|_| PgError::Connect {
            target: describe_target(config),
            reason: format!(
                "no answer within {}s (connect_timeout); is this a PostgreSQL server?",
                limit.as_secs()
            ),
        })?
        .map_err(|e| PgError::Connect {
            target: describe_target(config),
            reason: describe(&e),
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
    });
    Ok(client)
}

/// `user@host:port/db` of a config, for messages.
pub fn describe_target(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    if let Some(scheme) = url.find("://") {
        let rest = &url[scheme + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let creds = &rest[..at];
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{}{user}:***{}", &url[..scheme + 3], &rest[at..]);
            }
        }
        return url.to_string();
    }
    // key=value form: hide password=…
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn bad_urls_are_explained_without_the_password() {
        let err = parse_url("postgres://u:secret@h:notaport/db").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("invalid"), "{msg}");
    }
}
