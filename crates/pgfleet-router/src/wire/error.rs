//! [`WireError`]: what an operation on a [`WireConn`](super::WireConn) fails with, and
//! [`ServerError`], PostgreSQL's own `ErrorResponse` with every field it sent.

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorResponseBody;

/// Why an operation on a [`WireConn`](super::WireConn) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The socket failed or closed.
    #[error("error communicating with the server")]
    Io(#[from] std::io::Error),
    /// The server answered with an error (the statement failed, or the login was refused).
    #[error(transparent)]
    Server(Box<ServerError>),
    /// The rows exceeded the response limit; the statement was cancelled.
    #[error("the response is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes of PostgreSQL's text output.
        limit: usize,
    },
    /// The server did not finish within the time limit; the statement was cancelled.
    #[error("canceling statement due to statement timeout (no answer within {0:?})")]
    Timeout(Duration),
    /// The request cannot be sent as it is (a NUL in the SQL, too many parameters).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The statement needs something this connection does not do (`COPY`).
    #[error("{0}")]
    Unsupported(String),
    /// The server sent something this client does not expect here.
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    /// The server had ended the session before the request reached it: its first answer was a
    /// `FATAL` error (a terminated backend `57P01`, a shutting-down server `57P02`/`57P03`), so
    /// nothing of the request ran and it may run again on another connection. The connection is
    /// closed.
    #[error("the server had closed the session before the request: {0}")]
    Closed(Box<ServerError>),
    /// A shared connection did not switch to its tenant (the server's message): nothing of the
    /// request ran, and the connection is closed.
    #[error("the shared connection did not switch to the tenant's role: {0}")]
    Switch(String),
}

impl WireError {
    /// The SQLSTATE: the server's for [`WireError::Server`], `54000` (program_limit_exceeded) for
    /// [`WireError::TooLarge`], `57014` (query_canceled) for [`WireError::Timeout`].
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Server(e) | Self::Closed(e) => Some(&e.code),
            Self::TooLarge { .. } => Some("54000"),
            Self::Timeout(_) => Some("57014"),
            Self::InvalidRequest(_) => Some("08P01"),
            Self::Unsupported(_) => Some("0A000"),
            Self::Io(_) | Self::Protocol(_) | Self::Switch(_) => None,
        }
    }

    /// The server's error, when it sent one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Self::Server(e) | Self::Closed(e) => Some(e),
            _ => None,
        }
    }
}

/// PostgreSQL's `ErrorResponse`, every field as the server sent it (see "Error and Notice Message
/// Fields" in the PostgreSQL documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerError {
    /// `S`: `ERROR`, `FATAL` or `PANIC` (localized).
    pub severity: String,
    /// `C`: the SQLSTATE.
    pub code: String,
    /// `M`: the message.
    pub message: String,
    /// `D`
    pub detail: Option<String>,
    /// `H`
    pub hint: Option<String>,
    /// `P`: 1-based character position in the statement.
    pub position: Option<String>,
    /// `p`
    pub internal_position: Option<String>,
    /// `q`
    pub internal_query: Option<String>,
    /// `W`
    pub where_: Option<String>,
    /// `s`
    pub schema: Option<String>,
    /// `t`
    pub table: Option<String>,
    /// `c`
    pub column: Option<String>,
    /// `d`
    pub data_type: Option<String>,
    /// `n`
    pub constraint: Option<String>,
    /// `F`
    pub file: Option<String>,
    /// `L`
    pub line: Option<String>,
    /// `R`
    pub routine: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.severity, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// Reads the fields of an `ErrorResponse`.
    pub(crate) fn parse(body: &ErrorResponseBody) -> Self {
        let mut e = ServerError::default();
        let mut fields = body.fields();
        while let Ok(Some(f)) = fields.next() {
            let value = String::from_utf8_lossy(f.value_bytes()).into_owned();
            let slot = match f.type_() {
                // `V` is the non-localized severity (PostgreSQL 9.6+): preferred.
                b'V' => {
                    e.severity = value;
                    continue;
                }
                b'S' => {
                    if e.severity.is_empty() {
                        e.severity = value;
                    }
                    continue;
                }
                b'C' => {
                    e.code = value;
                    continue;
                }
                b'M' => {
                    e.message = value;
                    continue;
                }
                b'D' => &mut e.detail,
                b'H' => &mut e.hint,
                b'P' => &mut e.position,
                b'p' => &mut e.internal_position,
                b'q' => &mut e.internal_query,
                b'W' => &mut e.where_,
                b's' => &mut e.schema,
                b't' => &mut e.table,
                b'c' => &mut e.column,
                b'd' => &mut e.data_type,
                b'n' => &mut e.constraint,
                b'F' => &mut e.file,
                b'L' => &mut e.line,
                b'R' => &mut e.routine,
                _ => continue,
            };
            *slot = Some(value);
        }
        e
    }
}

impl From<ServerError> for WireError {
    fn from(e: ServerError) -> Self {
        Self::Server(Box::new(e))
    }
}
