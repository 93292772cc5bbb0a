//! Statements on a [`WireConn`]: untyped text parameters, PostgreSQL's own text output, and a
//! session left as it was found, all in one round trip.
//!
//! A request is written as one pipeline and read back while it is written (so a large request
//! and a large answer cannot block each other):
//!
//! ```text
//! [Query BEGIN …]                         batches only
//! Parse, Bind (text), Describe, Execute   per statement (unnamed statement and portal)
//! Sync
//! [Query COMMIT]                          batches only; a failed transaction rolls back
//! Query DISCARD ALL                       settings, temporary tables, prepared statements,
//!                                         cursors, advisory locks, LISTEN: all gone
//! ```
//!
//! A statement that leaves a transaction open (a lone `BEGIN`) makes `DISCARD ALL` fail; then a
//! second round trip (`ROLLBACK`, `DISCARD ALL`) cleans up, and a connection that still is not
//! idle is closed instead of reused. Parse takes one statement per string, so a request cannot
//! smuggle a second statement.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::{self, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{WireConn, unexpected};
use super::error::{ServerError, WireError};

/// One statement and its parameters, PostgreSQL text or NULL, bound untyped (the server infers
/// their types, as for a literal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// The SQL: one statement.
    pub sql: String,
    /// `$1`, `$2`, …
    pub params: Vec<Option<String>>,
}

/// A transaction's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `READ UNCOMMITTED` (PostgreSQL runs it as read committed).
    ReadUncommitted,
    /// `READ COMMITTED`
    ReadCommitted,
    /// `REPEATABLE READ`
    RepeatableRead,
    /// `SERIALIZABLE`
    Serializable,
}

impl Isolation {
    fn sql(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "READ UNCOMMITTED",
            Self::ReadCommitted => "READ COMMITTED",
            Self::RepeatableRead => "REPEATABLE READ",
            Self::Serializable => "SERIALIZABLE",
        }
    }
}

/// How a batch's transaction starts; unset parts take the session's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transaction {
    /// `ISOLATION LEVEL …`
    pub isolation: Option<Isolation>,
    /// `READ ONLY` / `READ WRITE`
    pub read_only: Option<bool>,
    /// `DEFERRABLE` / `NOT DEFERRABLE`
    pub deferrable: Option<bool>,
}

impl Transaction {
    fn begin_sql(&self) -> String {
        let mut sql = String::from("BEGIN");
        if let Some(i) = self.isolation {
            sql.push_str(" ISOLATION LEVEL ");
            sql.push_str(i.sql());
        }
        match self.read_only {
            Some(true) => sql.push_str(" READ ONLY"),
            Some(false) => sql.push_str(" READ WRITE"),
            None => {}
        }
        match self.deferrable {
            Some(true) => sql.push_str(" DEFERRABLE"),
            Some(false) => sql.push_str(" NOT DEFERRABLE"),
            None => {}
        }
        sql
    }
}

/// Bounds of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of rows (PostgreSQL's text output, plus a few bytes per value) an answer may
    /// hold; beyond it the statement is cancelled and [`WireError::TooLarge`] returned.
    pub max_response: usize,
    /// Most time for a request, one statement or a whole batch (the server's `statement_timeout`
    /// acts first when set; one second after this the request is cancelled whatever the session
    /// did to that setting, and [`WireError::Timeout`] returned).
    pub timeout: Duration,
}

/// A column of a result, as `RowDescription` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The column's name.
    pub name: String,
    /// The table's OID when the column is a table's column, else 0.
    pub table_oid: u32,
    /// The column's attribute number when it is a table's column, else 0.
    pub column_id: i16,
    /// The type's OID.
    pub type_oid: u32,
    /// `pg_type.typlen` (negative: variable width).
    pub type_size: i16,
    /// `pg_attribute.atttypmod` (-1: none).
    pub type_modifier: i32,
    /// 0: text.
    pub format: i16,
}

/// A row: each value as PostgreSQL's text output, or NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    text: String,
    ranges: Vec<Option<(u32, u32)>>,
}

impl Row {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    /// No values.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Value `i`: `None` for NULL.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.ranges[i].map(|(a, b)| &self.text[a as usize..b as usize])
    }
    /// The values in order.
    pub fn values(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn parse(body: &backend::DataRowBody) -> Result<Row, WireError> {
        let buf = body.buffer();
        let mut text = String::with_capacity(buf.len());
        let mut ranges = Vec::new();
        let mut it = body.ranges();
        while let Some(r) = it.next()? {
            let Some(r) = r else {
                ranges.push(None);
                continue;
            };
            let value = std::str::from_utf8(&buf[r])
                .map_err(|_| unexpected("a value that is not UTF-8 (client_encoding is UTF8)"))?;
            let start = text.len() as u32;
            text.push_str(value);
            ranges.push(Some((start, text.len() as u32)));
        }
        Ok(Row { text, ranges })
    }
}

/// What one statement returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextResult {
    /// Its columns (none for a statement that returns no rows).
    pub fields: Vec<Field>,
    /// Its rows.
    pub rows: Vec<Row>,
    /// The command tag (`SELECT 2`, `INSERT 0 1`, `CREATE TABLE`; empty for an empty statement).
    pub tag: String,
}

impl TextResult {
    /// The tag's command word (`SELECT`, `INSERT`, `CREATE`).
    pub fn command(&self) -> &str {
        self.tag.split(' ').next().unwrap_or_default()
    }

    /// Rows the command returned or affected, when the tag says (`INSERT 0 n` counts `n`).
    pub fn row_count(&self) -> Option<u64> {
        let mut words = self.tag.split(' ');
        let count = if words.next() == Some("INSERT") {
            words.nth(1)
        } else {
            words.next()
        };
        count.and_then(|n| n.parse().ok())
    }
}

impl WireConn {
    /// Runs one statement in its own implicit transaction; the session is reset afterwards.
    ///
    /// # Errors
    /// [`WireError::Server`] (the statement failed), [`WireError::TooLarge`],
    /// [`WireError::Timeout`], [`WireError::InvalidRequest`], [`WireError::Unsupported`],
    /// [`WireError::Io`]. After any but a server error the connection is not reused.
    pub async fn query(
        &mut self,
        statement: &Statement,
        limits: &Limits,
    ) -> Result<TextResult, WireError> {
        let mut results = self
            .run(None, std::slice::from_ref(statement), limits)
            .await?;
        results
            .pop()
            .ok_or_else(|| unexpected("no result for the statement"))
    }

    /// Runs `statements` in one transaction started as `tx`: all commit, or none (the first error
    /// rolls the transaction back and is returned). The session is reset afterwards.
    ///
    /// # Errors
    /// As [`WireConn::query`].
    pub async fn batch(
        &mut self,
        statements: &[Statement],
        tx: &Transaction,
        limits: &Limits,
    ) -> Result<Vec<TextResult>, WireError> {
        self.run(Some(tx), statements, limits).await
    }

    async fn run(
        &mut self,
        tx: Option<&Transaction>,
        statements: &[Statement],
        limits: &Limits,
    ) -> Result<Vec<TextResult>, WireError> {
        if self.broken {
            return Err(unexpected("a connection that was closed"));
        }
        let out = encode(tx, statements)?;
        // The whole request (one statement or a batch) gets the timeout, plus a moment for the
        // server's own `statement_timeout` error to arrive first; a session that turned that off
        // (`SET LOCAL statement_timeout = 0` in a batch) is cancelled here.
        let budget = limits.timeout + Duration::from_secs(1);
        let outcome = tokio::time::timeout(budget, self.exchange(&out, tx.is_some(), limits)).await;
        let outcome = match outcome {
            Err(_) => {
                self.cancel();
                return Err(WireError::Timeout(budget));
            }
            Ok(Err(e)) => {
                self.broken = true;
                return Err(e);
            }
            Ok(Ok(o)) => o,
        };
        if outcome.too_large {
            self.broken = true; // cancelled: the cancel may land on anything still queued
        } else if !outcome.clean {
            self.reset().await;
        }
        if outcome.too_large {
            return Err(WireError::TooLarge {
                limit: limits.max_response,
            });
        }
        match outcome.error {
            Some(e) => Err(e.into()),
            None if outcome.results.len() == statements.len() => Ok(outcome.results),
            None => Err(unexpected("fewer results than statements")),
        }
    }

    /// Writes `out` while reading the answers, until the last `ReadyForQuery`.
    async fn exchange(
        &mut self,
        out: &[u8],
        in_tx: bool,
        limits: &Limits,
    ) -> Result<Outcome, WireError> {
        let canceller = self.canceller();
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| unexpected("use after close"))?;
        let (mut rd, mut wr) = stream.split();
        let buf = &mut self.buf;
        let write = async {
            wr.write_all(out).await?;
            Ok::<_, WireError>(())
        };
        let read = async {
            let mut answers = Answers::new(in_tx, limits.max_response);
            let mut cancelled = false;
            loop {
                let msg = loop {
                    if let Some(m) = Message::parse(buf)? {
                        break m;
                    }
                    if rd.read_buf(buf).await? == 0 {
                        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                };
                if answers.take(msg)? {
                    return Ok(answers.finish());
                }
                if answers.too_large && !cancelled {
                    // Stop the server producing rows nobody will read.
                    canceller.send();
                    cancelled = true;
                }
            }
        };
        let ((), outcome) = tokio::try_join!(write, read)?;
        Ok(outcome)
    }

    /// The second round trip after a request left the session in a transaction: `ROLLBACK`,
    /// `DISCARD ALL`. A session still not clean (or any failure) closes the connection.
    async fn reset(&mut self) {
        let mut out = BytesMut::new();
        let ok = frontend::query("ROLLBACK", &mut out).is_ok()
            && frontend::query("DISCARD ALL", &mut out).is_ok();
        if !ok || self.send(&out).await.is_err() {
            self.broken = true;
            return;
        }
        let (mut ready, mut failed) = (0, false);
        let done = async {
            while ready < 2 {
                match self.read().await {
                    Ok(Message::ReadyForQuery(b)) => {
                        ready += 1;
                        failed |= ready == 2 && b.status() != b'I';
                    }
                    Ok(Message::ErrorResponse(_)) => failed = true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
            true
        };
        let finished = tokio::time::timeout(Duration::from_secs(5), done).await;
        if !matches!(finished, Ok(true)) || failed {
            self.broken = true;
        }
    }
}

/// The pipeline of a request (see the module documentation).
fn encode(tx: Option<&Transaction>, statements: &[Statement]) -> Result<BytesMut, WireError> {
    let invalid = |what: String| WireError::InvalidRequest(what);
    let mut out = BytesMut::new();
    if let Some(tx) = tx {
        frontend::query(&tx.begin_sql(), &mut out)?;
    }
    for (i, s) in statements.iter().enumerate() {
        if s.params.len() > usize::from(u16::MAX) {
            return Err(invalid(format!(
                "statement {}: {} parameters; PostgreSQL takes at most 65535",
                i + 1,
                s.params.len()
            )));
        }
        frontend::parse("", &s.sql, std::iter::empty::<u32>(), &mut out).map_err(|_| {
            invalid(format!(
                "statement {}: the SQL contains a NUL character",
                i + 1
            ))
        })?;
        frontend::bind(
            "",
            "",
            std::iter::once(0i16), // every parameter in text format
            s.params.iter(),
            |p, buf: &mut BytesMut| match p {
                Some(v) => {
                    buf.put_slice(v.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::once(0i16), // every column in text format
            &mut out,
        )
        .map_err(|_| {
            invalid(format!(
                "statement {}: its parameters cannot be sent",
                i + 1
            ))
        })?;
        frontend::describe(b'P', "", &mut out)?;
        frontend::execute("", 0, &mut out)?;
    }
    frontend::sync(&mut out);
    if tx.is_some() {
        frontend::query("COMMIT", &mut out)?;
    }
    frontend::query("DISCARD ALL", &mut out)?;
    Ok(out)
}

/// What a request's answers came to.
struct Outcome {
    results: Vec<TextResult>,
    /// The first error of the statements (or of `COMMIT`).
    error: Option<ServerError>,
    /// The rows went over the limit (the rest were dropped unread).
    too_large: bool,
    /// `DISCARD ALL` succeeded and the session is idle.
    clean: bool,
}

/// Reads the answers of a pipeline, message by message. Phases are counted by `ReadyForQuery`:
/// batches have four (BEGIN, statements, COMMIT, DISCARD ALL), single statements two.
struct Answers {
    in_tx: bool,
    ready: u8,
    results: Vec<TextResult>,
    current: Option<TextResult>,
    error: Option<ServerError>,
    size: usize,
    max: usize,
    too_large: bool,
    discard_failed: bool,
    last_status: u8,
}

impl Answers {
    fn new(in_tx: bool, max: usize) -> Self {
        Self {
            in_tx,
            ready: 0,
            results: Vec::new(),
            current: None,
            error: None,
            size: 0,
            max,
            too_large: false,
            discard_failed: false,
            last_status: b'I',
        }
    }

    fn statements_phase(&self) -> bool {
        self.ready == u8::from(self.in_tx)
    }

    fn discard_phase(&self) -> bool {
        self.ready == if self.in_tx { 3 } else { 1 }
    }

    /// Takes one message; `true` after the last `ReadyForQuery`.
    fn take(&mut self, msg: Message) -> Result<bool, WireError> {
        match msg {
            Message::RowDescription(body) if self.statements_phase() => {
                self.current.get_or_insert_default().fields = fields(&body)?;
            }
            Message::DataRow(row) if self.statements_phase() => {
                self.size += row.buffer().len();
                if !self.too_large {
                    let row = Row::parse(&row)?;
                    // JSON adds a few bytes per value (quotes, commas).
                    self.size += 4 * row.len();
                    self.current.get_or_insert_default().rows.push(row);
                }
                if self.size > self.max {
                    self.too_large = true;
                }
            }
            Message::CommandComplete(body) if self.statements_phase() => {
                let mut r = self.current.take().unwrap_or_default();
                r.tag = body.tag()?.to_string();
                self.results.push(r);
            }
            Message::EmptyQueryResponse if self.statements_phase() => {
                self.results.push(self.current.take().unwrap_or_default());
            }
            Message::ErrorResponse(body) => {
                if self.discard_phase() {
                    self.discard_failed = true;
                } else if self.error.is_none() {
                    self.error = Some(ServerError::parse(&body));
                }
            }
            Message::ReadyForQuery(body) => {
                self.ready += 1;
                self.last_status = body.status();
                return Ok(self.ready == if self.in_tx { 4 } else { 2 });
            }
            Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                return Err(WireError::Unsupported(
                    "COPY is not supported here: use INSERT … VALUES, or COPY through a direct connection".into(),
                ));
            }
            // ParseComplete, BindComplete, NoData, notices, parameter status, notifications,
            // the tags of BEGIN, COMMIT and DISCARD ALL.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Outcome {
        Outcome {
            clean: !self.discard_failed && self.last_status == b'I',
            results: self.results,
            error: self.error,
            too_large: self.too_large,
        }
    }
}

fn fields(body: &backend::RowDescriptionBody) -> Result<Vec<Field>, WireError> {
    let mut out = Vec::new();
    let mut it = body.fields();
    while let Some(f) = it.next()? {
        out.push(Field {
            name: f.name().to_string(),
            table_oid: f.table_oid(),
            column_id: f.column_id(),
            type_oid: f.type_oid(),
            type_size: f.type_size(),
            type_modifier: f.type_modifier(),
            format: f.format(),
        });
    }
    Ok(out)
}
