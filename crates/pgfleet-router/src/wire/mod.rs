//! [`WireBackend`]: a connection kind that speaks the PostgreSQL protocol itself (on
//! `postgres-protocol`) and hands back PostgreSQL's own text output with full column
//! descriptions, which tokio-postgres hides (it asks for binary results). The SQL-over-HTTP front
//! door runs its requests on it; it is pooled, budgeted, capped and healed by the router like
//! [`PgBackend`](crate::PgBackend) connections, sharing their budget.
//!
//! ```no_run
//! # async fn run(router: pgfleet_router::Router<impl pgfleet_router::Directory>) -> Result<(), pgfleet_router::RouterError> {
//! use std::time::Duration;
//! use pgfleet_router::wire::{Limits, Statement, WireBackend};
//!
//! let backend = WireBackend::new("my-app", Some(Duration::from_secs(30)));
//! let limits = Limits { max_response: 10 << 20, timeout: Duration::from_secs(30) };
//! let stmt = Statement { sql: "SELECT $1::int + 1 AS n".into(), params: vec![Some("41".into())] };
//! let result = router
//!     .with_connection("user-42", &backend, |mut c| {
//!         let stmt = stmt.clone();
//!         async move { c.query(&stmt, &limits).await }
//!     })
//!     .await?;
//! assert_eq!(result.rows[0].get(0), Some("42"));
//! assert_eq!(result.fields[0].type_oid, 23);
//! # Ok(()) }
//! ```

mod conn;
mod error;
mod query;

use std::time::Duration;

pub use conn::WireConn;
pub use error::{ServerError, WireError};
pub use query::{Field, Isolation, Limits, Row, Statement, TextResult, Transaction};

use crate::backend::{Backend, ConnectError};
use crate::directory::Placement;
use crate::pool::BudgetPermit;

/// Connections that speak the protocol themselves ([`WireConn`]). Its settings become startup
/// options of every connection it opens, and connections of one backend type are pooled
/// together: use one value per process.
#[derive(Debug, Clone)]
pub struct WireBackend {
    application_name: String,
    /// `-c statement_timeout=…`, appended to the placement's startup options.
    extra_options: String,
}

impl WireBackend {
    /// Connections named `application_name` in `pg_stat_activity`, each with the server's
    /// `statement_timeout` set to `statement_timeout` (`None`: the role's or server's own).
    pub fn new(application_name: &str, statement_timeout: Option<Duration>) -> Self {
        let extra_options = statement_timeout
            .map(|t| format!("-c statement_timeout={}", t.as_millis().max(1)))
            .unwrap_or_default();
        Self {
            application_name: application_name.to_string(),
            extra_options,
        }
    }
}

impl Backend for WireBackend {
    type Conn = WireConn;
    type Error = WireError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<WireConn, ConnectError> {
        WireConn::open(
            &placement.config,
            &self.extra_options,
            &self.application_name,
            permit,
        )
        .await
    }

    fn is_closed(conn: &WireConn) -> bool {
        conn.is_closed()
    }

    fn sqlstate(error: &WireError) -> Option<&str> {
        error.sqlstate()
    }
}
