//! Statements on a [`WireConn`]: untyped text parameters, PostgreSQL's own text output, and a
//! session left as it was found, all in one round trip.
//!
//! A request is written as one pipeline and read back while it is written (so a large request
//! and a large answer cannot block each other):
//!
//! ```text
//! [Query BEGIN …]                         batches only
//! [Parse, Bind, Execute: SET ROLE …,      shared connections only: the switch to the tenant;
//!  SET search_path = …]                   an error skips everything up to Sync (fail-closed)
//! Parse, Bind (text), Describe, Execute   per statement (unnamed statement and portal)
//! Sync
//! Query DISCARD ALL                       single statements; settings, temporary tables,
//!                                         prepared statements, cursors, advisory locks,
//!                                         LISTEN: all gone
//! ```
//!
//! A batch ends in a second round trip, once its answers are in: `COMMIT` (or `ROLLBACK` after
//! an error, or nothing when the answer was too large and the connection is closed instead),
//! then `DISCARD ALL`. So a batch whose answer is over the limit never commits. A single
//! statement whose answer is over the limit is cancelled, but it may have finished before the
//! cancel arrived, as with any cancel; send writes with large `RETURNING` lists as a batch to make
//! them all-or-nothing.
//!
//! A connection counts as broken from the moment a request is written until its last answer is
//! read and the session is idle, so one whose request was abandoned half-way (the caller went
//! away) is closed, never reused.
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
    /// Bytes it holds (its text and the bounds of its values).
    pub fn bytes(&self) -> usize {
        self.text.len() + self.ranges.len() * 12
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
        // A shared connection runs as the pool role until it switches: never without a switch.
        // Every request of a lease switches again (the one before ended with DISCARD ALL).
        let switch = self.switch.clone();
        if self.shared && switch.is_none() {
            return Err(unexpected(
                "a shared connection that was not switched to a tenant",
            ));
        }
        let out = encode(tx, switch.as_ref(), statements)?;
        // Broken until its last answer is read and the session is idle: a request dropped
        // half-way (the client went away) leaves answers in flight, and such a connection must
        // never serve another request.
        self.broken = true;
        // The whole request (one statement or a batch) gets the timeout, plus a moment for the
        // server's own `statement_timeout` error to arrive first; a session that turned that off
        // (`SET LOCAL statement_timeout = 0` in a batch) is cancelled here.
        let budget = limits.timeout + Duration::from_secs(1);
        let switches = if switch.is_some() {
            SWITCH_STATEMENTS
        } else {
            0
        };
        let outcome =
            tokio::time::timeout(budget, self.converse(out, tx.is_some(), switches, limits)).await;
        let outcome = match outcome {
            Err(_) => {
                self.cancel();
                return Err(WireError::Timeout(budget));
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(o)) => o,
        };
        if outcome.too_large {
            // Cancelled: the cancel may land on anything still queued, so the connection stays
            // broken and closes.
            return Err(WireError::TooLarge {
                limit: limits.max_response,
            });
        }
        if outcome.clean {
            self.broken = false;
        } else {
            self.reset().await;
        }
        if let Some(e) = outcome.switch_error {
            // Nothing ran (the server skipped the statements after the failed switch); the
            // connection is not used again.
            self.broken = true;
            return Err(WireError::Switch(e.message));
        }
        match outcome.error {
            Some(e) => Err(e.into()),
            None if outcome.results.len() == statements.len() => Ok(outcome.results),
            None => Err(unexpected("fewer results than statements")),
        }
    }

    /// A single statement: one round trip (statement, `DISCARD ALL`). A batch: `BEGIN` and the
    /// statements, then — only once their answers are in and within the limit — `COMMIT` (else
    /// `ROLLBACK`) and `DISCARD ALL`, so a batch whose answer is too large never commits.
    async fn converse(
        &mut self,
        out: BytesMut,
        in_tx: bool,
        switches: usize,
        limits: &Limits,
    ) -> Result<Outcome, WireError> {
        if !in_tx {
            let phases = [Phase::Statements, Phase::Discard];
            return self.exchange(&out, &phases, switches, limits, true).await;
        }
        let phases = [Phase::Begin, Phase::Statements];
        let mut first = self.exchange(&out, &phases, switches, limits, true).await?;
        if first.too_large {
            return Ok(first);
        }
        let mut end = BytesMut::new();
        let finish = if first.error.is_some() {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        frontend::query(finish, &mut end)?;
        frontend::query("DISCARD ALL", &mut end)?;
        // A FATAL first here may follow a COMMIT that was carried out: not `Closed`.
        let second = self
            .exchange(&end, &[Phase::Commit, Phase::Discard], 0, limits, false)
            .await?;
        if first.error.is_none() {
            first.error = second.error;
        }
        first.clean = second.clean;
        Ok(first)
    }

    /// Writes `out` while reading the answers, one `ReadyForQuery` per phase. When `opening` (the
    /// request's first exchange), a `FATAL` error as the very first answer is
    /// [`WireError::Closed`]: the server ends the session with it before it reads what follows,
    /// and anything it had processed of the request would have been answered first (the answers
    /// are sent in order).
    async fn exchange(
        &mut self,
        out: &[u8],
        phases: &[Phase],
        switches: usize,
        limits: &Limits,
        opening: bool,
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
            let mut answers = Answers::new(phases, switches, limits.max_response);
            let mut cancelled = false;
            let mut first = opening;
            loop {
                let msg = loop {
                    match guard(buf, &mut answers)? {
                        Guarded::Skip(mut n) => {
                            // A message too large to hold: dropped as it streams by.
                            while n > 0 {
                                if buf.is_empty() && rd.read_buf(buf).await? == 0 {
                                    return Err(WireError::Io(
                                        std::io::ErrorKind::UnexpectedEof.into(),
                                    ));
                                }
                                let k = n.min(buf.len());
                                let _ = buf.split_to(k);
                                n -= k;
                            }
                            continue;
                        }
                        Guarded::Parse => {}
                    }
                    if let Some(m) = Message::parse(buf)? {
                        break m;
                    }
                    if rd.read_buf(buf).await? == 0 {
                        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                };
                if std::mem::take(&mut first)
                    && let Message::ErrorResponse(body) = &msg
                {
                    let e = ServerError::parse(body);
                    if e.severity == "FATAL" {
                        return Err(WireError::Closed(Box::new(e)));
                    }
                }
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
        // Both to the end: a server that ended the session may refuse the write after its
        // `FATAL` is already in the socket, and that answer is the one that tells.
        match tokio::join!(write, read) {
            (_, Err(e @ WireError::Closed(_))) => Err(e),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(outcome)) => Ok(outcome),
        }
    }

    /// The second round trip after a request left the session in a transaction: `ROLLBACK`,
    /// `DISCARD ALL`. The connection is usable again only when both worked and it is idle.
    pub(super) async fn reset(&mut self) {
        self.broken = true;
        let mut out = BytesMut::new();
        let ok = frontend::query("ROLLBACK", &mut out).is_ok()
            && frontend::query("DISCARD ALL", &mut out).is_ok();
        if !ok || self.send(&out).await.is_err() {
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
        if matches!(finished, Ok(true)) && !failed {
            self.broken = false;
        }
    }
}

/// Largest message other than a row that is read into memory (a `RowDescription` of 1,600
/// columns is about 100 kB); a larger notice is skipped, a larger error reported without its text.
const MAX_MESSAGE: usize = 1 << 20;
/// What a row costs besides its values (the `Row`, the JSON array), so zero-column rows count.
const ROW_OVERHEAD: usize = 16;

enum Guarded {
    /// Parse the next message normally.
    Parse,
    /// Drop this many bytes (a whole message) without holding them.
    Skip(usize),
}

/// Looks at the next message's header before it is buffered whole: a row that would pass the
/// response limit, or any other message over [`MAX_MESSAGE`], is skipped as it streams (and
/// accounted for in `answers`) instead of being held in memory.
fn guard(buf: &BytesMut, answers: &mut Answers) -> Result<Guarded, WireError> {
    if buf.len() < 5 {
        return Ok(Guarded::Parse);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let total = len + 1;
    match tag {
        b'D' if answers.size + total > answers.max => {
            answers.size += total;
            answers.too_large = true;
            Ok(Guarded::Skip(total))
        }
        b'D' => Ok(Guarded::Parse),
        _ if total > MAX_MESSAGE => {
            if tag == b'E' {
                answers.record_error(ServerError {
                    severity: "ERROR".into(),
                    code: "54000".into(),
                    message: format!(
                        "the server's error message is {total} bytes, more than pgfleet passes on ({MAX_MESSAGE}); it was dropped"
                    ),
                    ..ServerError::default()
                });
            }
            Ok(Guarded::Skip(total))
        }
        _ => Ok(Guarded::Parse),
    }
}

/// Statements of a switch (`SET ROLE`, `SET search_path`).
const SWITCH_STATEMENTS: usize = 2;

/// The pipeline of a request (see the module documentation); `switch` is the tenant (role,
/// `search_path`) a shared connection switches to first.
fn encode(
    tx: Option<&Transaction>,
    switch: Option<&(String, String)>,
    statements: &[Statement],
) -> Result<BytesMut, WireError> {
    let invalid = |what: String| WireError::InvalidRequest(what);
    let mut out = BytesMut::new();
    if let Some(tx) = tx {
        frontend::query(&tx.begin_sql(), &mut out)?;
    }
    if let Some((role, search_path)) = switch {
        let sets = [
            format!("SET ROLE {}", pgfleet_schema::quote::ident(role)),
            format!(
                "SET search_path = {}",
                crate::shared::search_path_sql(search_path)
            ),
        ];
        debug_assert_eq!(sets.len(), SWITCH_STATEMENTS);
        for sql in sets {
            frontend::parse("", &sql, std::iter::empty::<u32>(), &mut out)
                .map_err(|_| invalid("the tenant's role name contains a NUL character".into()))?;
            frontend::bind(
                "",
                "",
                std::iter::empty::<i16>(),
                std::iter::empty::<Option<&str>>(),
                |_, _: &mut BytesMut| Ok(IsNull::Yes),
                std::iter::empty::<i16>(),
                &mut out,
            )
            .map_err(|_| invalid("the switch cannot be sent".into()))?;
            frontend::execute("", 0, &mut out)?;
        }
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
    if tx.is_none() {
        frontend::query("DISCARD ALL", &mut out)?;
    }
    Ok(out)
}

/// What a request's answers came to.
struct Outcome {
    results: Vec<TextResult>,
    /// The first error of the statements (or of `COMMIT`).
    error: Option<ServerError>,
    /// The rows went over the limit (the rest were dropped unread).
    too_large: bool,
    /// The switch of a shared connection failed (so nothing else ran).
    switch_error: Option<ServerError>,
    /// The last phase left the session idle without an error in `DISCARD ALL`.
    clean: bool,
}

/// What the answers between two `ReadyForQuery` messages belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `BEGIN …` (simple query).
    Begin,
    /// The statements (extended protocol, one `Sync`).
    Statements,
    /// `COMMIT` or `ROLLBACK` (simple query).
    Commit,
    /// `DISCARD ALL` (simple query).
    Discard,
}

/// Reads the answers of a pipeline, message by message; one `ReadyForQuery` ends each phase.
struct Answers<'p> {
    phases: &'p [Phase],
    /// Switch statements whose answers come before the statements'.
    switches_left: usize,
    switch_error: Option<ServerError>,
    ready: usize,
    results: Vec<TextResult>,
    current: Option<TextResult>,
    error: Option<ServerError>,
    size: usize,
    max: usize,
    too_large: bool,
    discard_failed: bool,
    last_status: u8,
}

impl<'p> Answers<'p> {
    fn new(phases: &'p [Phase], switches: usize, max: usize) -> Self {
        Self {
            phases,
            switches_left: switches,
            switch_error: None,
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

    fn phase(&self) -> Option<Phase> {
        self.phases.get(self.ready).copied()
    }

    fn record_error(&mut self, e: ServerError) {
        if self.phase() == Some(Phase::Discard) {
            self.discard_failed = true;
        } else if self.phase() == Some(Phase::Statements) && self.switches_left > 0 {
            // The switch failed: the server skips the rest up to Sync. Also the request's error,
            // so a batch rolls back.
            self.switches_left = 0;
            self.error.get_or_insert(e.clone());
            self.switch_error = Some(e);
        } else if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Takes one message; `true` after the last phase's `ReadyForQuery`.
    fn take(&mut self, msg: Message) -> Result<bool, WireError> {
        let statements = self.phase() == Some(Phase::Statements);
        match msg {
            Message::RowDescription(body) if statements => {
                self.current.get_or_insert_default().fields = fields(&body)?;
            }
            Message::DataRow(row) if statements => {
                self.size += row.buffer().len() + ROW_OVERHEAD;
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
            Message::CommandComplete(_) if statements && self.switches_left > 0 => {
                self.switches_left -= 1;
            }
            Message::CommandComplete(body) if statements => {
                let mut r = self.current.take().unwrap_or_default();
                r.tag = body.tag()?.to_string();
                self.results.push(r);
            }
            Message::EmptyQueryResponse if statements => {
                self.results.push(self.current.take().unwrap_or_default());
            }
            Message::ErrorResponse(body) => self.record_error(ServerError::parse(&body)),
            Message::ReadyForQuery(body) => {
                self.ready += 1;
                self.last_status = body.status();
                return Ok(self.ready == self.phases.len());
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
            switch_error: self.switch_error,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pool::BudgetPermit;

    #[tokio::test]
    async fn a_session_the_server_ended_before_a_request_is_closed_and_nothing_ran() {
        let cluster = pgfleet_testkit::shared();
        let config = pgfleet_pg::connect::parse_url(&cluster.url()).unwrap();
        let permit = BudgetPermit::detached();
        let mut conn = WireConn::open(&config, "", "pgfleet-closed-test", permit)
            .await
            .unwrap();
        let limits = Limits {
            max_response: 1 << 20,
            timeout: Duration::from_secs(10),
        };
        let pid = Statement {
            sql: "SELECT pg_backend_pid()".into(),
            params: vec![],
        };
        let pid: i32 = conn.query(&pid, &limits).await.unwrap().rows[0]
            .get(0)
            .unwrap()
            .parse()
            .unwrap();
        let admin = pgfleet_testkit::connect(&cluster.url()).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        while admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let create = Statement {
            sql: "CREATE TABLE never_created_by_a_closed_session (a int)".into(),
            params: vec![],
        };
        match conn.query(&create, &limits).await {
            Err(WireError::Closed(e)) => assert_eq!(e.code, "57P01", "{e}"),
            other => panic!("expected Closed, got {other:?}"),
        }
        assert!(conn.is_closed());
        let exists: Option<String> = admin
            .query_one(
                "SELECT to_regclass('never_created_by_a_closed_session')::text",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(exists, None);
    }
}
