//! One client's session after login: its messages relayed to a server session of its tenant and
//! the answers back, with the server session lent per transaction (transaction mode) or for the
//! whole session (session mode, or a client pinned by a session feature).
//!
//! The relay keeps a queue of the answers it waits for, one per message sent that gets one
//! (`Parse`, `Bind`, `Describe`, `Execute`, `Close`, `Sync`, `Query`, `FunctionCall`), in order,
//! with the answers it writes itself in between (a `ParseComplete` for a statement already
//! prepared on that server session, a `CloseComplete` for a named statement it keeps). A server
//! session goes back to the pool when the queue is empty and the last `ReadyForQuery` said idle.
//!
//! Named statements: a client's statement `s1` is prepared on the server as `pgf_<hash>` (of its
//! text and parameter types, and of the tenant on a shared session), on whichever server session
//! the client holds when it binds it: prepared there again when missing, and never closed there
//! (other clients may use it); the server keeps at most
//! [`MAX_PREPARED`](pgfleet::router::wire::MAX_PREPARED) of them.
//!
//! Healing: a request that begins an autocommit cycle (the first thing sent while idle, up to and
//! including its `Sync` or `Query`, nothing sent after it) and whose first answer is "no such
//! table, column or schema" is held back, the tenant repaired, and the cycle sent again (once). A
//! server session that ended before such a cycle reached it (a `FATAL` first answer) has the cycle
//! sent again on another session when it relied on nothing prepared. Anything else passes through,
//! and a repair for the next attempt starts in the background.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use pgfleet::router::RouterError;
use pgfleet::router::wire::{HealTicket, LIBRARY_LIMITS, ProxyLease, Statement, Work};
use pgfleet::schema::quote::literal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::classify::Verdict;
use super::message::{self, Parse};
use super::{CancelSlot, PgService, PoolMode};
use crate::sql::auth::{Caller, Via};

/// Largest client message (PostgreSQL's own limit is 1 GiB); a larger one ends the session.
pub const MAX_CLIENT_MESSAGE: usize = 256 << 20;
/// Bytes waiting for one side beyond which the other side is not read.
const HIGH_WATER: usize = 1 << 20;
/// Server messages larger than this are relayed as they arrive, not held whole.
const STREAM_FROM: usize = HIGH_WATER;
/// Named statements one client connection may hold (their `Parse` messages are kept, to prepare
/// them on whichever server session runs them).
const MAX_STATEMENTS: usize = 10_000;
/// Bytes of those `Parse` messages one client connection may hold.
const MAX_STATEMENT_BYTES: usize = 64 << 20;
/// Room made for each read from a socket.
const READ_CHUNK: usize = 16 << 10;
/// Most bytes of a cycle kept to send again after a repair.
const MAX_CYCLE: usize = 1 << 20;

/// What a message sent to the server is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parse,
    Bind,
    Close,
    Describe,
    Execute,
    Sync,
    Query,
    Call,
}

impl Kind {
    /// Whether a server message with `tag` is this message's last answer.
    fn ends_with(self, tag: u8) -> bool {
        match self {
            Kind::Parse => tag == b'1',
            Kind::Bind => tag == b'2',
            Kind::Close => tag == b'3',
            Kind::Describe => matches!(tag, b'T' | b'n'),
            Kind::Execute => matches!(tag, b'C' | b'I' | b's'),
            Kind::Sync | Kind::Query => tag == b'Z',
            Kind::Call => tag == b'V',
        }
    }

    fn syncs(self) -> bool {
        matches!(self, Kind::Sync | Kind::Query)
    }
}

/// An entry of the queue of answers.
#[derive(Debug, Clone)]
enum Expect {
    /// The server's answer to a message sent; `swallow`: one the front door sent on its own (a
    /// statement prepared again), not passed to the client; `prepared`: the server name a
    /// `Parse` prepares.
    Answer {
        kind: Kind,
        swallow: bool,
        prepared: Option<Arc<str>>,
    },
    /// An answer the front door writes itself, in its place.
    Own(Bytes),
}

/// A client's named statement.
#[derive(Debug, Clone)]
struct Prepared {
    server: Arc<str>,
    /// The whole `Parse` message under the server name.
    parse: Bytes,
    /// It may write (each run drops the tenant's cached results when its transaction ends).
    writes: bool,
}

/// What was sent since the session was last idle, kept to send again.
#[derive(Debug)]
struct Cycle {
    bytes: BytesMut,
    entries: Vec<Expect>,
    /// Its `Sync` or `Query` was sent.
    closed: bool,
    /// More was sent after it, or it grew too large: not sent again.
    spoiled: bool,
    /// Server names of the statements it used that were prepared before it (prepared first when
    /// it is sent to another session).
    relies: Vec<Arc<str>>,
    /// It was sent again once already.
    retried: bool,
    ticket: Option<HealTicket>,
}

impl Cycle {
    /// Whether it may be sent again: whole, alone, and not sent again before. (Answers of the
    /// front door's own at its start may have reached the client; they are not written again.)
    fn replayable(&self) -> bool {
        self.closed && !self.spoiled && !self.retried
    }

    fn new(ticket: Option<HealTicket>, retried: bool) -> Self {
        Self {
            bytes: BytesMut::new(),
            entries: Vec::new(),
            closed: false,
            spoiled: false,
            relies: Vec::new(),
            retried,
            ticket,
        }
    }
}

/// Why a cycle is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Again {
    /// Its first answer said a table, column or schema was missing: repaired, then sent again on
    /// the same session.
    Repair,
    /// The server rolled it back for a serialization failure or a deadlock: sent again on the
    /// same session.
    RolledBack,
    /// The session ended before the server read it: sent on another.
    Elsewhere,
}

/// A cycle held back until it is sent again, or its error passed on.
struct Held {
    /// What to pass on when it is not sent again (`None`: the session closed without a word).
    error: Option<BytesMut>,
    cycle: Cycle,
    /// The server's `ReadyForQuery` after the error (set at once for a session that ended).
    ready: Option<u8>,
    again: Again,
}

/// Why the session ends.
enum End {
    /// The client left or sent `Terminate`.
    Client,
    /// Told the client why (a `FATAL` was queued).
    Fatal,
}

pub(super) struct Session<'s> {
    svc: &'s PgService,
    caller: Caller,
    lease: Option<ProxyLease>,
    /// Bytes for the server, not yet written.
    sout: BytesMut,
    /// Bytes for the client, not yet written.
    cout: BytesMut,
    queue: VecDeque<Expect>,
    /// The last transaction status the server reported.
    status: u8,
    pinned: Option<&'static str>,
    statements: HashMap<String, Prepared>,
    /// After an error the front door wrote itself in an extended-protocol cycle: the client's
    /// messages are dropped up to its `Sync`, as the server would.
    skipping: bool,
    cycle: Option<Cycle>,
    held: Option<Held>,
    cancel: Arc<CancelSlot>,
    end: Option<End>,
    /// A statement that may write was sent since the session was last idle: the tenant's cached
    /// results go when it is idle again.
    wrote: bool,
    /// The tenant's id, once a server session was lent (for the result cache).
    tenant_id: Option<String>,
    /// Bytes of a large server message still to relay as they arrive.
    passing: usize,
    /// Bytes of the `Parse` messages in `statements`.
    statement_bytes: usize,
}

impl<'s> Session<'s> {
    pub(super) fn new(
        svc: &'s PgService,
        caller: Caller,
        lease: Option<ProxyLease>,
        cancel: Arc<CancelSlot>,
    ) -> Self {
        let tenant_id = lease.as_ref().map(|l| l.tenant_id().to_string());
        if let Some(l) = &lease {
            cancel.lend(l.canceller());
        }
        Self {
            svc,
            caller,
            lease,
            sout: BytesMut::new(),
            cout: BytesMut::new(),
            queue: VecDeque::new(),
            status: b'I',
            pinned: None,
            statements: HashMap::new(),
            skipping: false,
            cycle: None,
            held: None,
            cancel,
            end: None,
            wrote: false,
            tenant_id,
            passing: 0,
            statement_bytes: 0,
        }
    }

    fn trusted(&self) -> bool {
        self.caller.via != Via::Jwt
    }

    /// Relays until the client leaves; `cin` holds what the client sent after its password.
    pub(super) async fn run<C>(mut self, client: C, mut cin: BytesMut)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut crd, mut cwr) = tokio::io::split(client);
        loop {
            if self.held.is_none() {
                self.take_client_messages(&mut cin).await;
            }
            if let Some(h) = &self.held
                && h.ready.is_some()
            {
                self.finish_held().await;
                continue;
            }
            // What is ready to go is written now, not after another round of the loop (most
            // writes complete at once); what does not fit waits for the loop.
            if !self.sout.is_empty()
                && let Some((_, w, _)) = self.lease.as_mut().and_then(|l| l.io())
            {
                match w.try_write(&self.sout) {
                    Ok(n) => self.sout.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.server_gone();
                        continue;
                    }
                }
            }
            if !self.cout.is_empty()
                && let Some(Err(_)) = write_flush(&mut cwr, &mut self.cout).now_or_never()
            {
                break;
            }
            self.release_if_done();
            if self.end.is_some() && self.cout.is_empty() {
                break;
            }
            let read_client = self.end.is_none()
                && self.held.is_none()
                && self.cout.len() < HIGH_WATER
                && self.sout.len() < HIGH_WATER;
            let read_server = self.cout.len() < HIGH_WATER;
            let step = {
                let server = self.lease.as_mut().and_then(|l| l.io());
                io_step(
                    &mut crd,
                    &mut cwr,
                    &mut cin,
                    &mut self.cout,
                    server,
                    &mut self.sout,
                    read_client,
                    read_server,
                )
                .await
            };
            match step {
                Ok(Step::ClientRead(0)) | Err(Side::Client) => {
                    self.end.get_or_insert(End::Client);
                    if !self.cout.is_empty() {
                        // Nobody reads it any more.
                        self.cout.clear();
                    }
                }
                Ok(Step::ServerRead(0)) | Err(Side::Server) => {
                    self.server_gone();
                }
                Ok(Step::ServerRead(_)) => self.take_server_messages(),
                Ok(_) => {}
            }
            if matches!(self.end, Some(End::Client)) {
                break;
            }
        }
        let _ = cwr.flush().await;
        let _ = cwr.shutdown().await;
        self.close().await;
    }

    /// Gives the server session back, or closes it, when the client is gone.
    async fn close(&mut self) {
        if self.wrote {
            self.invalidate();
        }
        self.cancel.lend_none();
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let idle = self.status == b'I'
            && self.queue.is_empty()
            && self.held.is_none()
            && self.passing == 0;
        if !idle || self.cancel.was_used() {
            lease.mark_broken();
        } else if self.pinned.is_some() || self.svc.opts.pool_mode == PoolMode::Session {
            lease.reset_session().await;
        }
    }

    fn release_if_done(&mut self) {
        let done = self.lease.is_some()
            && self.queue.is_empty()
            && self.status == b'I'
            && self.held.is_none()
            && self.passing == 0
            && self.sout.is_empty()
            && self.pinned.is_none()
            && self.svc.opts.pool_mode == PoolMode::Transaction;
        if !done {
            return;
        }
        self.cancel.lend_none();
        if let Some(mut lease) = self.lease.take()
            && self.cancel.was_used()
        {
            lease.mark_broken();
        }
    }

    /// Drops the tenant's cached results, here and in the fleet's other processes, after a
    /// transaction that may have written.
    fn invalidate(&mut self) {
        self.wrote = false;
        if let Some(id) = &self.tenant_id {
            self.svc.router.cache().invalidate(
                &self.caller.key,
                id,
                pgfleet::router::cache::Scope::All { schema: false },
            );
        }
    }

    /// A read that opts in to the result cache, answered through it (from memory while fresh):
    /// the whole answer of a simple `Query`, or `None` to relay it as any other.
    async fn cached_read(&self, sql: &str) -> Option<Bytes> {
        let cache = self.svc.router.cache();
        // The parser runs only for a query that may opt in.
        if !cache.enabled() || (cache.options().tables.is_empty() && !sql.contains("pgfleet:cache"))
        {
            return None;
        }
        let shape = cache.shape(sql);
        if shape.kind != pgfleet::router::cache::Kind::Read || cache.max_age(&shape, &[]).is_none()
        {
            return None;
        }
        let work = Work::Single(Statement {
            sql: sql.to_string(),
            params: Vec::new(),
        });
        // An error is not answered from here: relayed, the query gives the server's own answer.
        let ran = self
            .svc
            .router
            .run(
                &self.caller.key,
                &self.svc.wire,
                self.trusted(),
                &work,
                LIBRARY_LIMITS,
            )
            .await
            .ok()?;
        metrics::counter!("pgfleet_pg_cache_total", "status" => ran.cache.as_str()).increment(1);
        let mut out = BytesMut::new();
        for r in &ran.results {
            message::text_result(&mut out, r);
        }
        message::ready(&mut out, b'I');
        Some(out.freeze())
    }

    /// The server session closed under the client.
    fn server_gone(&mut self) {
        if self.wrote {
            self.invalidate(); // what was sent may have committed
        }
        if let Some(mut l) = self.lease.take() {
            l.mark_broken();
        }
        self.cancel.lend_none();
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.again == Again::Elsewhere)
        {
            return; // sent again on another session next
        }
        if let Some(c) = self.cycle.take_if(|c| c.replayable()) {
            // Nothing of it was answered: it never ran.
            self.queue.clear();
            self.held = Some(Held {
                error: None,
                cycle: c,
                ready: Some(b'I'),
                again: Again::Elsewhere,
            });
            return;
        }
        let idle = self.queue.is_empty() && self.status == b'I' && self.pinned.is_none();
        self.queue.clear();
        self.held = None;
        self.cycle = None;
        if idle {
            return; // nothing was lost; the next transaction gets another session
        }
        self.session_lost();
    }

    /// Tells the client its server session is gone, and ends.
    fn session_lost(&mut self) {
        metrics::counter!("pgfleet_pg_errors_total", "kind" => "server_closed").increment(1);
        message::error(
            &mut self.cout,
            "FATAL",
            "08006",
            "the tenant's database server closed the connection",
            Some("Reconnect: a new connection gets another server session."),
        );
        self.end = Some(End::Fatal);
    }

    // ---------------------------------------------------------------------------------------
    // Client messages

    async fn take_client_messages(&mut self, cin: &mut BytesMut) {
        while self.end.is_none() && self.sout.len() < HIGH_WATER && self.held.is_none() {
            if cin.len() < 5 {
                return;
            }
            let len = i32::from_be_bytes([cin[1], cin[2], cin[3], cin[4]]);
            if !(4..=MAX_CLIENT_MESSAGE as i32).contains(&len) {
                self.fatal(
                    "08P01",
                    &format!("invalid message length {len} (the most pgfleet takes is {MAX_CLIENT_MESSAGE} bytes)"),
                );
                return;
            }
            let total = len as usize + 1;
            if cin.len() < total {
                cin.reserve(total - cin.len());
                return;
            }
            let msg = cin.split_to(total).freeze();
            self.client_message(msg).await;
        }
    }

    fn fatal(&mut self, code: &str, text: &str) {
        metrics::counter!("pgfleet_pg_errors_total", "kind" => "protocol").increment(1);
        message::error(&mut self.cout, "FATAL", code, text, None);
        self.end = Some(End::Fatal);
    }

    async fn client_message(&mut self, msg: Bytes) {
        let tag = msg[0];
        if self.skipping {
            match tag {
                b'S' => {
                    self.skipping = false;
                    let mut out = BytesMut::new();
                    message::ready(&mut out, self.status);
                    self.push(Expect::Own(out.freeze()));
                }
                b'X' => self.end = Some(End::Client),
                _ => {}
            }
            return;
        }
        let body = &msg[5..];
        match tag {
            b'X' => self.end = Some(End::Client),
            b'Q' => {
                let Some((sql, _)) = message::take_cstr(body) else {
                    return self.fatal("08P01", "a Query message without its SQL");
                };
                if self.lease.is_none()
                    && self.pinned.is_none()
                    && self.queue.is_empty()
                    && self.status == b'I'
                    && let Some(answer) = self.cached_read(sql).await
                {
                    self.push(Expect::Own(answer));
                    return;
                }
                let msg = match self.verdict(sql).0 {
                    Some(refused) => refused.query(),
                    None => msg,
                };
                if self.lend(true).await {
                    self.forward(msg, Some(Kind::Query), None);
                }
            }
            b'P' => {
                let Some(parse) = Parse::read(body) else {
                    return self.fatal("08P01", "a malformed Parse message");
                };
                let (refused, writes) = self.verdict(parse.query);
                if !parse.name.is_empty()
                    && refused.is_none()
                    && self.lease.is_none()
                    && self.pinned.is_none()
                    && self.queue.is_empty()
                {
                    // Outside a transaction a named statement needs no server session yet: it is
                    // prepared on the session that first runs it (a client that prepares
                    // statements one by one while others hold every session must not wait for
                    // one, nor block those that do). The server checks it at that first use.
                    let server = self.server_name(parse.query, parse.types);
                    let full = parse.write(&server, parse.query);
                    if self.remember(parse.name, server, full, writes) {
                        self.push(Expect::Own(message::parse_complete()));
                    }
                    return;
                }
                if !self.lend(false).await {
                    return;
                }
                let query = refused
                    .as_ref()
                    .map_or(parse.query.to_string(), Refused::sql);
                if parse.name.is_empty() {
                    let out = match &refused {
                        Some(_) => parse.write("", &query),
                        None => msg.clone(),
                    };
                    self.forward(out, Some(Kind::Parse), None);
                    return;
                }
                let server = self.server_name(&query, parse.types);
                let full = parse.write(&server, &query);
                if !self.remember(parse.name, server.clone(), full.clone(), writes) {
                    return;
                }
                self.begin_cycle();
                let lease = self.lease.as_mut().expect("lent");
                if lease.prepared.contains(&*server) {
                    if let Some(c) = &mut self.cycle {
                        c.relies.push(server.clone());
                    }
                    self.push(Expect::Own(message::parse_complete()));
                } else {
                    lease.prepared.insert(server.to_string());
                    self.forward(full, Some(Kind::Parse), Some(server));
                }
            }
            b'B' => {
                if !self.lend(false).await {
                    return;
                }
                let named = message::bind_statement(body)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| self.statements.get(s).cloned());
                let out = match named {
                    Some(p) => {
                        self.wrote |= p.writes;
                        self.ensure_prepared(&p);
                        match message::rename_bind(body, &p.server) {
                            Some(b) => b,
                            None => return self.fatal("08P01", "a malformed Bind message"),
                        }
                    }
                    None => msg,
                };
                self.forward(out, Some(Kind::Bind), None);
            }
            b'D' | b'C' => {
                let target = body.first().copied();
                let name = message::take_cstr(body.get(1..).unwrap_or_default())
                    .map(|(n, _)| n)
                    .filter(|n| !n.is_empty());
                if target == Some(b'S')
                    && let Some(name) = name
                {
                    if tag == b'C' {
                        // Kept prepared on the server for the next client that needs it.
                        if let Some(p) = self.statements.remove(name) {
                            self.statement_bytes -= p.parse.len();
                        }
                        self.push(Expect::Own(message::close_complete()));
                        return;
                    }
                    if let Some(p) = self.statements.get(name).cloned() {
                        if !self.lend(false).await {
                            return;
                        }
                        self.ensure_prepared(&p);
                        let out = message::rename_target(b'D', &p.server);
                        self.forward(out, Some(Kind::Describe), None);
                        return;
                    }
                }
                if !self.lend(false).await {
                    return;
                }
                let kind = if tag == b'D' {
                    Kind::Describe
                } else {
                    Kind::Close
                };
                self.forward(msg, Some(kind), None);
            }
            b'E' => {
                if self.lend(false).await {
                    self.forward(msg, Some(Kind::Execute), None);
                }
            }
            b'S' => {
                if self.lease.is_none() && self.queue.is_empty() {
                    // Nothing to synchronize with: answered here.
                    let mut out = BytesMut::new();
                    message::ready(&mut out, self.status);
                    self.push(Expect::Own(out.freeze()));
                } else if self.lend(false).await {
                    self.forward(msg, Some(Kind::Sync), None);
                }
            }
            b'F' => {
                if self.lend(false).await {
                    self.forward(msg, Some(Kind::Call), None);
                }
            }
            b'H' | b'd' | b'c' | b'f' => {
                if self.lease.is_some() {
                    self.forward(msg, None, None);
                }
            }
            other => self.fatal(
                "08P01",
                &format!("unexpected message type {:?}", char::from(other)),
            ),
        }
    }

    /// Keeps a client's named statement (replacing one of the same name). A client that holds
    /// more than [`MAX_STATEMENTS`] (or [`MAX_STATEMENT_BYTES`] of them) without closing any is
    /// told so and its connection ends: their `Parse` messages are held here. Whether it was kept.
    fn remember(&mut self, name: &str, server: Arc<str>, parse: Bytes, writes: bool) -> bool {
        let replaced = self.statements.get(name).map_or(0, |p| p.parse.len());
        let count = self.statements.len() + usize::from(replaced == 0);
        if count > MAX_STATEMENTS
            || self.statement_bytes - replaced + parse.len() > MAX_STATEMENT_BYTES
        {
            self.fatal(
                "54000",
                &format!(
                    "this connection holds more than {MAX_STATEMENTS} prepared statements (or {} MiB of them) without closing any; close those it no longer uses",
                    MAX_STATEMENT_BYTES >> 20
                ),
            );
            return false;
        }
        self.statement_bytes = self.statement_bytes - replaced + parse.len();
        self.statements.insert(
            name.to_string(),
            Prepared {
                server,
                parse,
                writes,
            },
        );
        true
    }

    /// Reads the SQL for pinning and refusals: `Some` when it must not run.
    /// Also whether the SQL may write; a write sent now is noted for the cache.
    fn verdict(&mut self, sql: &str) -> (Option<Refused>, bool) {
        let reading = super::classify::read(sql);
        self.wrote |= reading.writes;
        let refused = match reading.verdict {
            Verdict::Plain => None,
            Verdict::Pin {
                reason,
                forgets_prepared,
            } => {
                if self.svc.opts.pool_mode == PoolMode::Transaction && self.pinned.is_none() {
                    metrics::counter!("pgfleet_pg_pinned_total", "reason" => reason).increment(1);
                    tracing::debug!(tenant = %self.caller.key.escape_debug(), "{reason}: the client keeps its server session");
                }
                self.pinned.get_or_insert(reason);
                if forgets_prepared && let Some(l) = self.lease.as_mut() {
                    l.prepared.clear();
                }
                None
            }
            Verdict::Refuse(what) => {
                metrics::counter!("pgfleet_pg_errors_total", "kind" => "refused").increment(1);
                Some(Refused(what))
            }
        };
        (refused, reading.writes)
    }

    /// The server name of a statement: its text and parameter types, and the tenant (a shared
    /// session serves several tenants, who may prepare the same text).
    fn server_name(&self, query: &str, types: &[u8]) -> Arc<str> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        query.hash(&mut h);
        types.hash(&mut h);
        self.caller.key.hash(&mut h);
        format!("pgf_{:016x}_{}", h.finish(), query.len()).into()
    }

    /// Prepares `p` on the lent session first when it is not there yet.
    fn ensure_prepared(&mut self, p: &Prepared) {
        self.begin_cycle();
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        if lease.prepared.contains(&*p.server) {
            if let Some(c) = &mut self.cycle {
                c.relies.push(p.server.clone());
            }
            return;
        }
        lease.prepared.insert(p.server.to_string());
        self.send(
            p.parse.clone(),
            Some((Kind::Parse, true)),
            Some(p.server.clone()),
        );
    }

    /// Makes sure a server session is lent; when none can be, answers with the error (and a
    /// `ReadyForQuery` after a `Query`; after an extended-protocol message the client's messages
    /// are dropped up to its `Sync`). Whether one is.
    async fn lend(&mut self, query: bool) -> bool {
        if self.lease.is_some() {
            return true;
        }
        let started = Instant::now();
        let r = self
            .svc
            .router
            .proxy(&self.caller.key, &self.svc.backend, self.trusted())
            .await;
        metrics::histogram!("pgfleet_pg_wait_seconds").record(started.elapsed().as_secs_f64());
        match r {
            Ok(lease) => {
                self.cancel.lend(lease.canceller());
                if self.tenant_id.is_none() {
                    self.tenant_id = Some(lease.tenant_id().to_string());
                }
                self.lease = Some(lease);
                true
            }
            Err(e) => {
                let (kind, code, text) = refusal(&self.caller.key, &e);
                metrics::counter!("pgfleet_pg_errors_total", "kind" => kind).increment(1);
                let mut out = BytesMut::new();
                message::error(&mut out, "ERROR", code, &text, None);
                if query {
                    message::ready(&mut out, self.status);
                } else {
                    self.skipping = true;
                }
                self.push(Expect::Own(out.freeze()));
                false
            }
        }
    }

    /// Sends a client's message (`kind`: what answers it).
    fn forward(&mut self, msg: Bytes, kind: Option<Kind>, prepared: Option<Arc<str>>) {
        self.send(msg, kind.map(|k| (k, false)), prepared);
    }

    /// A cycle starts with the first message sent (or prepared for) while the session is idle.
    fn begin_cycle(&mut self) {
        if self.cycle.is_none() && self.queue.is_empty() && self.status == b'I' {
            let ticket = self.lease.as_ref().map(ProxyLease::heal_ticket);
            self.cycle = Some(Cycle::new(ticket, false));
        }
    }

    fn send(&mut self, msg: Bytes, answer: Option<(Kind, bool)>, prepared: Option<Arc<str>>) {
        self.begin_cycle();
        let entry = answer.map(|(kind, swallow)| Expect::Answer {
            kind,
            swallow,
            prepared,
        });
        if let Some(c) = &mut self.cycle {
            if c.closed || c.bytes.len() + msg.len() > MAX_CYCLE {
                c.spoiled = true;
            } else {
                c.bytes.extend_from_slice(&msg);
                if let Some(e) = &entry {
                    c.entries.push(e.clone());
                }
                c.closed = answer.is_some_and(|(k, _)| k.syncs());
            }
        }
        self.sout.extend_from_slice(&msg);
        if let Some(e) = entry {
            self.queue.push_back(e);
        }
    }

    /// Queues an entry; answers of the front door's own at the head go out at once.
    fn push(&mut self, e: Expect) {
        if let Expect::Own(_) = &e
            && let Some(c) = &mut self.cycle
        {
            c.entries.push(e.clone());
        }
        self.queue.push_back(e);
        self.emit_own();
    }

    fn emit_own(&mut self) {
        while let Some(Expect::Own(b)) = self.queue.front() {
            self.cout.extend_from_slice(b);
            self.queue.pop_front();
        }
    }

    // ---------------------------------------------------------------------------------------
    // Server messages

    fn take_server_messages(&mut self) {
        loop {
            let Some(lease) = self.lease.as_mut() else {
                return;
            };
            let Some((_, _, buf)) = lease.io() else {
                return;
            };
            if self.passing > 0 {
                // The rest of a large message, relayed as it arrives.
                let n = self.passing.min(buf.len());
                if n == 0 {
                    return;
                }
                let chunk = buf.split_to(n);
                self.passing -= n;
                if self.held.is_none() {
                    self.cout.extend_from_slice(&chunk);
                }
                if self.passing == 0 {
                    self.emit_own();
                }
                continue;
            }
            if buf.len() < 5 {
                return;
            }
            let tag = buf[0];
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len + 1 > STREAM_FROM && matches!(tag, b'D' | b'd' | b'N' | b'E' | b'V') {
                // A large row, copy chunk, notice, error or function result (tenant SQL can make
                // one of up to 1 GiB) streams through instead of being held whole.
                self.stream(tag, len + 1);
                continue;
            }
            if buf.len() < len + 1 {
                buf.reserve(len + 1 - buf.len());
                return;
            }
            let msg = buf.split_to(len + 1);
            self.server_message(msg);
        }
    }

    /// Starts relaying a message of `total` bytes as it arrives; what it means for the queue is
    /// taken from its tag alone (an error's fields are not read: it is neither healed nor
    /// retried).
    fn stream(&mut self, tag: u8, total: usize) {
        // An answer reaches the client: the cycle is not sent again.
        self.cycle = None;
        match tag {
            b'E' => self.error_skips(),
            b'D' | b'd' | b'N' => {}
            _ => {
                if let Some(Expect::Answer { kind, .. }) = self.queue.front()
                    && kind.ends_with(tag)
                {
                    self.queue.pop_front();
                }
            }
        }
        self.passing = total;
    }

    fn server_message(&mut self, msg: BytesMut) {
        let tag = msg[0];
        if let Some(h) = &mut self.held {
            if tag == b'Z' {
                h.ready = Some(msg[5]);
            }
            return;
        }
        if !matches!(tag, b'N' | b'A' | b'S')
            && let Some(cycle) = self.cycle.take()
        {
            // The first answer of a cycle: nothing the server did for it reached the client.
            if tag == b'E'
                && let Some(again) = self.may_replay(&cycle, &msg)
            {
                self.queue.clear();
                self.held = Some(Held {
                    error: Some(msg),
                    cycle,
                    ready: (again == Again::Elsewhere).then_some(b'I'),
                    again,
                });
                return;
            }
        }
        match tag {
            b'E' => {
                let f = message::error_fields(&msg[5..]);
                if pgfleet::router::is_healable_sqlstate(Some(&f.code)) {
                    self.repair_later(&f.message, &f.code);
                }
                self.error_skips();
                self.cout.extend_from_slice(&msg);
            }
            b'Z' => {
                self.status = msg.get(5).copied().unwrap_or(b'I');
                if self.status == b'I' {
                    metrics::counter!("pgfleet_pg_transactions_total").increment(1);
                    if self.wrote {
                        self.invalidate();
                    }
                }
                if let Some(Expect::Answer { kind, .. }) = self.queue.front()
                    && kind.syncs()
                {
                    self.queue.pop_front();
                }
                self.cout.extend_from_slice(&msg);
            }
            b'N' | b'A' | b'S' => self.cout.extend_from_slice(&msg),
            _ => {
                let mut swallowed = false;
                if let Some(Expect::Answer { kind, swallow, .. }) = self.queue.front()
                    && kind.ends_with(tag)
                {
                    swallowed = *swallow;
                    self.queue.pop_front();
                }
                if !swallowed {
                    self.cout.extend_from_slice(&msg);
                }
            }
        }
        self.emit_own();
    }

    /// After an error in the extended protocol the server skips everything up to the `Sync`:
    /// those entries go (statements they prepared were not prepared).
    fn error_skips(&mut self) {
        if matches!(self.queue.front(), Some(Expect::Answer { kind, .. }) if kind.syncs()) {
            return;
        }
        while let Some(e) = self.queue.front() {
            if matches!(e, Expect::Answer { kind, .. } if kind.syncs()) {
                break;
            }
            if let Expect::Answer {
                prepared: Some(name),
                ..
            } = e
                && let Some(l) = self.lease.as_mut()
            {
                l.prepared.remove(&**name);
            }
            self.queue.pop_front();
        }
    }

    /// Whether a cycle whose first answer is the error `msg` is sent again, and why. Nothing of
    /// it took effect: it began in autocommit, and its first answer is the error (a `FATAL`: the
    /// server ended the session before it read the cycle).
    fn may_replay(&self, cycle: &Cycle, msg: &[u8]) -> Option<Again> {
        if !cycle.replayable() {
            return None;
        }
        let f = message::error_fields(&msg[5..]);
        if f.severity == "FATAL" {
            return Some(Again::Elsewhere);
        }
        if matches!(f.code.as_str(), "40001" | "40P01") {
            return Some(Again::RolledBack);
        }
        (cycle.ticket.is_some() && pgfleet::router::is_healable_sqlstate(Some(&f.code)))
            .then_some(Again::Repair)
    }

    /// Starts a repair in the background after an error that names a missing object, for the
    /// client's next attempt.
    fn repair_later(&self, text: &str, code: &str) {
        let Some(ticket) = self.lease.as_ref().map(ProxyLease::heal_ticket) else {
            return;
        };
        let router = self.svc.router.clone();
        let key = self.caller.key.clone();
        let reason = format!("{text} ({code})");
        tokio::spawn(async move {
            if let Err(e) = router.repair_after(&key, &ticket, &reason).await {
                tracing::warn!(tenant = %key.escape_debug(), "repairing the tenant after a query error failed: {}", pgfleet::control::error::chain(&e));
            }
        });
    }

    /// A held cycle's answers are in: repair and send it again on this session, or send it on
    /// another; else pass the error on.
    async fn finish_held(&mut self) {
        let Some(h) = self.held.take() else {
            return;
        };
        let again = match h.again {
            Again::Elsewhere => return self.finish_elsewhere(h).await,
            Again::RolledBack => true,
            Again::Repair => {
                let f = message::error_fields(&h.error.as_deref().unwrap_or_default()[5..]);
                let reason = format!("{} ({})", f.message, f.code);
                let ticket = h.cycle.ticket.expect("checked");
                match self
                    .svc
                    .router
                    .repair_after(&self.caller.key, &ticket, &reason)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(tenant = %self.caller.key.escape_debug(), "repairing the tenant after a query error failed: {}", pgfleet::control::error::chain(&e));
                        false
                    }
                }
            }
        };
        if let Some(status) = h.ready {
            self.status = status;
        }
        if again && self.resend(&h.cycle, false) {
            let reason = match h.again {
                Again::Repair => "repaired",
                _ => "rolled_back",
            };
            metrics::counter!("pgfleet_pg_replayed_total", "reason" => reason).increment(1);
            return;
        }
        // Statements the cycle would have prepared were not.
        if let Some(lease) = self.lease.as_mut() {
            for e in &h.cycle.entries {
                if let Expect::Answer {
                    prepared: Some(n), ..
                } = e
                {
                    lease.prepared.remove(&**n);
                }
            }
        }
        if let Some(e) = &h.error {
            self.cout.extend_from_slice(e);
        }
        message::ready(&mut self.cout, self.status);
    }

    /// A cycle the server never read (its session ended first): sent on another session. When
    /// none can be had, or the cycle cannot be sent again, the client gets an error for it and
    /// goes on (its session held nothing on the server), unless it was pinned (then what its
    /// session held is lost, and it ends).
    async fn finish_elsewhere(&mut self, h: Held) {
        let (code, text) = match self.lend_again().await {
            Ok(()) if self.resend(&h.cycle, true) => {
                metrics::counter!("pgfleet_pg_replayed_total", "reason" => "session_ended")
                    .increment(1);
                return;
            }
            Ok(()) => (
                "08006",
                "the tenant's server session ended before the request reached it; send it again"
                    .to_string(),
            ),
            Err(e) => {
                let (kind, code, text) = refusal(&self.caller.key, &e);
                metrics::counter!("pgfleet_pg_errors_total", "kind" => kind).increment(1);
                (code, text)
            }
        };
        if self.pinned.is_some() {
            if let Some(mut l) = self.lease.take() {
                l.mark_broken();
            }
            self.session_lost();
            return;
        }
        self.status = b'I';
        message::error(&mut self.cout, "ERROR", code, &text, None);
        message::ready(&mut self.cout, b'I');
    }

    /// Sends `cycle` again on the lent session (after the statements it relied on, on another
    /// session); its answers of the front door's own that went out already are not repeated.
    /// Whether it was sent.
    fn resend(&mut self, cycle: &Cycle, elsewhere: bool) -> bool {
        let Some(lease) = self.lease.as_mut() else {
            return false;
        };
        let mut bytes = BytesMut::new();
        let mut entries = Vec::new();
        if elsewhere {
            for name in &cycle.relies {
                let Some(p) = self.statements.values().find(|p| p.server == *name) else {
                    return false;
                };
                if lease.prepared.insert(name.to_string()) {
                    bytes.extend_from_slice(&p.parse);
                    entries.push(Expect::Answer {
                        kind: Kind::Parse,
                        swallow: true,
                        prepared: Some(name.clone()),
                    });
                }
            }
        }
        bytes.extend_from_slice(&cycle.bytes);
        let sent = cycle
            .entries
            .iter()
            .skip_while(|e| matches!(e, Expect::Own(_)))
            .cloned();
        entries.extend(sent);
        for e in &entries {
            if let Expect::Answer {
                prepared: Some(n), ..
            } = e
            {
                lease.prepared.insert(n.to_string());
            }
        }
        let ticket = Some(lease.heal_ticket());
        let mut again = Cycle::new(ticket, true);
        again.bytes = bytes.clone();
        again.entries = entries.clone();
        again.closed = true;
        self.cycle = Some(again);
        self.sout.extend_from_slice(&bytes);
        self.queue.extend(entries);
        true
    }

    /// After the server session ended before the cycle: another one.
    async fn lend_again(&mut self) -> Result<(), RouterError> {
        if let Some(mut l) = self.lease.take() {
            l.mark_broken();
        }
        self.cancel.lend_none();
        self.status = b'I';
        match self
            .svc
            .router
            .proxy(&self.caller.key, &self.svc.backend, self.trusted())
            .await
        {
            Ok(lease) => {
                self.cancel.lend(lease.canceller());
                self.lease = Some(lease);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// A statement the front door does not let through: sent instead as one that fails with the
/// reason (so the server's transaction state follows, as if the statement itself had failed).
struct Refused(&'static str);

impl Refused {
    fn sql(&self) -> String {
        let text = format!(
            "{} is not allowed through pgfleet: a session's role is fixed by its login",
            self.0
        );
        format!(
            "DO $pgfleet$ BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = {}, HINT = {}; END $pgfleet$",
            literal(&text),
            literal(
                "Connect as the tenant you want; pgfleet resets sessions between clients itself."
            )
        )
    }

    fn query(&self) -> Bytes {
        let mut out = BytesMut::new();
        let sql = self.sql();
        out.extend_from_slice(b"Q");
        out.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        out.extend_from_slice(sql.as_bytes());
        out.extend_from_slice(&[0]);
        out.freeze()
    }
}

/// What the client is told when no server session can be lent: a metric label, a SQLSTATE and
/// a message (the cause stays in the log).
pub(super) fn refusal(key: &str, e: &RouterError) -> (&'static str, &'static str, String) {
    let shown = key.escape_debug();
    if e.is_not_found() {
        return (
            "unknown_tenant",
            "3D000",
            format!("tenant \"{shown}\" does not exist"),
        );
    }
    tracing::warn!(tenant = %shown, "pg front door: {}", pgfleet::control::error::chain(e));
    match e {
        RouterError::Timeout { .. } => (
            "timeout",
            "53300",
            "no connection to the tenant's database server was free in time; retry shortly".into(),
        ),
        RouterError::Unavailable { .. } => (
            "unavailable",
            "08006",
            "the tenant's database server is unavailable; retry shortly".into(),
        ),
        RouterError::Directory { source, .. } if source.is_retryable() => (
            "unavailable",
            "57P03",
            "the tenant is not available yet (being provisioned, or the catalog is unreachable); retry shortly".into(),
        ),
        _ => (
            "internal",
            "58000",
            "the tenant could not be reached; the server's log says why".into(),
        ),
    }
}

/// What an I/O step did.
enum Step {
    ClientRead(usize),
    ServerRead(usize),
    Wrote,
}

/// Which side failed.
enum Side {
    Client,
    Server,
}

/// Waits for the first of: client readable, client writable (when there is something for it),
/// server readable, server writable.
#[allow(clippy::too_many_arguments)]
async fn io_step<R, W>(
    crd: &mut R,
    cwr: &mut W,
    cin: &mut BytesMut,
    cout: &mut BytesMut,
    server: Option<(
        tokio::net::tcp::ReadHalf<'_>,
        tokio::net::tcp::WriteHalf<'_>,
        &mut BytesMut,
    )>,
    sout: &mut BytesMut,
    read_client: bool,
    read_server: bool,
) -> Result<Step, Side>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let write_client = !cout.is_empty();
    // Reads of whatever has arrived, not 64 bytes at a time.
    if cin.capacity() - cin.len() < READ_CHUNK / 4 {
        cin.reserve(READ_CHUNK);
    }
    match server {
        Some((mut srd, mut swr, sbuf)) => {
            if sbuf.capacity() - sbuf.len() < READ_CHUNK / 4 {
                sbuf.reserve(READ_CHUNK);
            }
            let write_server = !sout.is_empty();
            // Answers first, then what is to be written, then the client's next messages.
            tokio::select! {
                biased;
                r = srd.read_buf(sbuf), if read_server => r.map(Step::ServerRead).map_err(|_| Side::Server),
                r = write_flush(cwr, cout), if write_client => r.map(|_| Step::Wrote).map_err(|_| Side::Client),
                r = crd.read_buf(cin), if read_client => r.map(Step::ClientRead).map_err(|_| Side::Client),
                r = swr.write_buf(sout), if write_server => r.map(|_| Step::Wrote).map_err(|_| Side::Server),
            }
        }
        None => {
            sout.clear();
            tokio::select! {
                biased;
                r = write_flush(cwr, cout), if write_client => r.map(|_| Step::Wrote).map_err(|_| Side::Client),
                r = crd.read_buf(cin), if read_client => r.map(Step::ClientRead).map_err(|_| Side::Client),
                else => Err(Side::Client),
            }
        }
    }
}

/// Writes what it can of `out`; once all is written, flushes (a TLS or WebSocket stream holds
/// bytes until then).
async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, out: &mut BytesMut) -> std::io::Result<()> {
    w.write_buf(out).await?;
    if out.is_empty() {
        w.flush().await?;
    }
    Ok(())
}

impl CancelSlot {
    fn lend(&self, c: pgfleet::router::wire::Canceller) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    fn lend_none(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a cancel was sent for the session lent since it was last asked (then that session
    /// is not reused: the cancel may land on whatever it runs next).
    fn was_used(&self) -> bool {
        self.used.swap(false, Ordering::AcqRel)
    }
}
