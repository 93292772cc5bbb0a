//! Errors of the PostgreSQL driver.

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// A query failed.
    #[error("{context}: {}", describe(.cause))]
    Query {
        /// What pgfleet was doing.
        context: String,
        /// The driver error (its text is already in the message, so it is not a `source`).
        cause: tokio_postgres::Error,
    },
    /// A connection URL could not be parsed.
    #[error("invalid database URL {url}: {reason}")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// The cause (refused, timeout, authentication, unknown database …).
        reason: String,
    },
    /// The catalog held something pgfleet does not understand.
    #[error("unexpected catalog content: {0}")]
    Catalog(String),
}

impl PgError {
    /// Wraps a driver error with what pgfleet was doing.
    pub fn query(context: impl Into<String>, cause: tokio_postgres::Error) -> Self {
        Self::Query {
            context: context.into(),
            cause,
        }
    }

    /// The SQLSTATE of a database error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Query { cause, .. } => cause.as_db_error().map(|e| e.code().code()),
            _ => None,
        }
    }

    /// True for `lock_not_available` (a `lock_timeout` expired): worth retrying.
    pub fn is_lock_timeout(&self) -> bool {
        self.sqlstate() == Some("55P03")
    }

    /// True when no session could be opened ([`PgError::Connect`]): the server is unreachable or
    /// refused the login (wrong password, unknown database or role, no `CONNECT` right, too many
    /// connections). [`PgError::sqlstate`] is `None` for these: the server's reason is in the
    /// message only.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

/// PostgreSQL's message with detail and hint, instead of the driver's bare "db error".
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => chain(e),
    }
}

/// An error and its causes on one line, each cause once (`a: b: c`), as `{:#}` prints an `anyhow`
/// chain: a cause whose text the message already holds is skipped. The one formatter of error
/// chains in pgfleet's libraries.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// Result alias of this crate.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_say_so_and_have_no_sqlstate() {
        let e = PgError::Connect {
            target: "u@h:5432/db".into(),
            reason: "FATAL: database \"db\" does not exist".into(),
        };
        assert!(e.is_connect() && !e.is_lock_timeout());
        assert_eq!(e.sqlstate(), None);
        assert!(std::error::Error::source(&e).is_none());
        assert!(!PgError::Catalog("x".into()).is_connect());
    }
}
