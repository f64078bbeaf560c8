//! One replayed session: one real connection, commands re-issued in recorded order.
//!
//! A session that began before the recording is restored first from its backfill (statements
//! prepared under their recorded ids, session variables set: see [`crate::backfill`]), and
//! again after every reconnect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myrr_recording::{
    Backfill, Command, EndReason, Event, Exchange, Login, MissingReason, OrderLabel, Response,
    SampleReason, SessionEnd, SessionStart, SkipReason,
};
use myrr_wire::command;
use myrr_wire::conn::KeptRows;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::backfill;
use crate::dispatch::{Handed, Recorded, Work};
use crate::footprint::Rows;
use crate::pacer::PreciseTimer;
use crate::readonly::{calls_rand, calls_time_function, is_read_only, takes_locks};
use crate::spare::{Carried, Spare};
use crate::sync::{Class, CommitKey, Keys, Order, Waited};
use crate::waiting::Waiting;
use crate::wire::{Answer, LoginOpts, Lost, WireConn};
use crate::{Batch, Shared, Tally};

/// A server that accepts the connection but never finishes the login does not hold a session
/// forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--sync-deadlocks`: statements of an open transaction kept to send again; a longer one is
/// not retried.
const TXN_KEPT: usize = 1024;

/// `--sync-deadlocks`: times a transaction the target lost to a deadlock is sent again.
const DEADLOCK_RETRIES: usize = 3;

use crate::divergence::ER_LOCK_DEADLOCK;
use crate::sync::SERVER_STATUS_IN_TRANS;

/// Whether a transaction is open on the target after this answer: as its status says; not
/// after a deadlock (the whole transaction was rolled back) or a lost connection; `None`
/// for another failure (a failed statement leaves the transaction as it was).
fn in_transaction(response: &Response) -> Option<bool> {
    match response {
        Response::Ok(ok) => Some(ok.status & SERVER_STATUS_IN_TRANS != 0),
        Response::Rows(rs) => Some(rs.status & SERVER_STATUS_IN_TRANS != 0),
        Response::Err(e) if e.code == ER_LOCK_DEADLOCK => Some(false),
        Response::Missing(_) => Some(false),
        _ => None,
    }
}

/// A statement prepared on the target, under its recorded id.
pub(crate) struct Stmt {
    target_id: u32,
    sql: Vec<u8>,
    /// Its shape, for sampling rows (`myrr_wire::sql::shape_key`).
    key: u64,
    /// What pins its EXECUTEs may need (read from its text once).
    pins: PinTraits,
    /// Parameters, as the target counts them.
    params: u16,
    /// The parameter types last sent with an EXECUTE of this statement (2 bytes each), empty
    /// until the first. The server keeps them, so like client libraries an EXECUTE sends types
    /// only when they changed.
    types: Vec<u8>,
    /// The target holds parameter types for it: an EXECUTE sent some (a reset or a refused
    /// EXECUTE clears `types`, not what the server holds).
    bound: bool,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    start: SessionStart,
    /// This task's clone of the session, and its number in the run (a ramp's steps number
    /// their clones on from the previous step's: `ReplayConfig::clone_base`).
    clone: u32,
    out_clone: u32,
    /// The recorded user (credentials on the target come from the target's settings).
    user: Option<String>,
    conn: Option<WireConn>,
    /// Recorded statement id → statement on the target (re-prepared after a reconnect).
    stmts: FxHashMap<u32, Stmt>,
    /// Recorded statement id → SQL of statements whose PREPARE was seen but not sent
    /// (filtered) or failed on the target.
    stmt_sql: FxHashMap<u32, Vec<u8>>,
    current_db: Option<String>,
    /// Session variables a backfill set: set again after a reconnect.
    variables: Vec<(Vec<u8>, Vec<u8>)>,
    /// A backfill met while the session had no connection: restored once it has one.
    deferred: Option<Box<Backfill>>,
    /// `--pin`: the target refused a pin; the session goes on without.
    pins_off: bool,
    /// `--pin`: a pin of this session was accepted by a `SET` of its own (so the target takes
    /// such values), and the target is MariaDB: later text statements carry theirs as a
    /// `SET STATEMENT … FOR` prefix. Turned off when a prefixed statement fails to parse
    /// where production's did not (it is then sent again, pinned the slow way).
    pins_batch: bool,
    /// A prefixed statement failed to parse: no more prefixes in this session.
    prefix_broke: bool,
    /// The prefix the next statement is sent with.
    pin_prefix: Option<String>,
    /// The `SET` sent right before the next statement, without waiting for its answer (a
    /// prepared statement, or more than one statement, which a prefix cannot carry).
    pin_pipe: Option<String>,
    /// The target refused the last pipelined `SET` (read after the statement was sent).
    pipe_refused: bool,
    /// `--sync`: the labels of the current transaction's view point, and its seq (the
    /// transaction's later reads read from its view: they share them).
    view_labels: u8,
    view_seq: u64,
    /// The current view point overlapped other sessions' commits in the recording.
    view_ambiguous: bool,
    /// `--sync`: this session's part in telling which rows the replay left different.
    divergence: crate::divergence::SessionDivergence,
    /// `--sync-deadlocks`: the statements of the transaction open on the target, from the
    /// one that opened it (sent again when the target loses it to a deadlock production did
    /// not have); `None`: none open, or more than [`TXN_KEPT`] statements.
    txn: Option<Vec<Arc<Recorded>>>,
    /// A transaction is open on the target (its last answer said so).
    in_txn: bool,
    /// `--sync-reread`: the commits the current view point overlapped (recorded end and
    /// start), by end (empty: none).
    view_overlapped: Vec<crate::sync::Overlap>,
    /// `--sync-rows`: the rows of its transaction's view point (see `txn_rows`).
    view_rows: Arc<Rows>,
    /// `--sync-reread`: the answered reads of an order-ambiguous view, held back until its
    /// transaction stops reading (see [`Worker::settle`]); and whether they are in a
    /// transaction (else: an autocommit read).
    held: Vec<Answered>,
    held_txn: bool,
    /// `--sync-reread`: the held view's point in `Order::held`, while the commits that
    /// started after it ended wait for it (see [`Worker::hold_view`]).
    hold_key: Option<CommitKey>,
    /// `--sync-spare`: the session's second connection (see [`Worker::snapshot_early`]).
    spare: Option<Spare>,
    /// What the spare connection must be given of the session's state, and whether it is
    /// not used (it failed, or the session keeps state on its connection that a second one
    /// would not have).
    carried: Carried,
    last_reconnect: Option<Instant>,
    /// Reused for every command's bytes.
    buf: Vec<u8>,
    tally: Tally,
    /// The last answered exchange, not yet counted nor written: its bookkeeping is done
    /// after the next command has been sent, while the server works on that one, so the
    /// next command leaves as soon as an answer is in.
    answered: Option<Answered>,
    /// Statement shapes whose budget of kept rows is spent (see `Shared::samples`): known
    /// here, the shared budget is not asked again.
    samples_spent: rustc_hash::FxHashSet<u64>,
}

struct Answered {
    x: Handed,
    response: Response,
    more: Vec<Response>,
    /// The answer's first rows, undecoded (`row_samples`), and the statement's shape.
    kept: Option<(KeptRows, u64)>,
    scheduled_us: u64,
    sent_us: u64,
    end_us: u64,
    /// `OrderLabel` bits (`--sync`), 0: none.
    labels: u8,
    /// A view point (`--sync`): a commit may have gone ahead of it while it was answered.
    view: bool,
}

/// An answered exchange's events: its order label, the exchange, its kept rows.
type Handing = (Option<Event>, Event, Option<Event>);

/// `--sync-deadlocks`: how a transaction lost to a deadlock on one side only was made to end
/// as production's did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    No,
    /// Production lost it: rolled back here too.
    Undone,
    /// The target lost it: sent again, and taken this time.
    Retried,
}

/// Whether `--pin` pinned a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pinned {
    /// It needs no pin (or pins are off for the replay).
    No,
    /// Pinned by a `SET` sent before it.
    Sent,
    /// Pinned in the statement itself (`SET STATEMENT … FOR`): no round trip of its own.
    Batched,
    /// It needed one, but the target had refused a pin in this session.
    Refused,
}

/// What a statement needs pinned (see [`Worker::pin_need`]).
#[derive(Debug, Clone, Copy)]
struct PinNeed {
    /// `timestamp = <recorded start>`: it may read the session's time.
    time: bool,
    /// `insert_id = <recorded id>`: a write that generated one.
    id: bool,
    /// `rand_seed1`, `rand_seed2` from the statement's place in the recording: it calls
    /// `RAND()`. Production's seeds are not on the wire, so its values are not reproduced,
    /// but every replay of it draws the same ones (what a baseline and a candidate write and
    /// then read agrees).
    rand: bool,
}

/// What a statement's text says about the pins it may need (see [`Worker::pin_need`]).
#[derive(Debug, Clone, Copy)]
struct PinTraits {
    write: bool,
    /// The text calls a time function.
    time_call: bool,
    rand: bool,
    /// `None`: the target's time tables are not known.
    time_read: Option<crate::schema::TimeRead>,
}

impl PinTraits {
    fn of(sql: &[u8], tables: Option<&crate::schema::TimeTables>) -> Self {
        let write = !is_read_only(sql);
        Self {
            write,
            time_call: calls_time_function(sql),
            rand: calls_rand(sql),
            time_read: tables.filter(|_| write).map(|t| t.time_read(sql)),
        }
    }
}

/// The pins of `x`, comma-separated.
fn pin_values(x: &Recorded, need: PinNeed, session: u64) -> String {
    let mut values = Vec::with_capacity(3);
    if need.time {
        values.push(format!(
            "timestamp = {}.{:06}",
            x.start_us / 1_000_000,
            x.start_us % 1_000_000
        ));
    }
    if need.id {
        values.push(format!("insert_id = {}", x.insert_id));
    }
    if need.rand {
        // The server takes both modulo 2^30 - 1.
        const MAX: u64 = 0x3FFF_FFFF;
        let one = session.wrapping_mul(1_000_003).wrapping_add(x.seq) % MAX;
        let two = one.wrapping_mul(65_599).wrapping_add(x.seq) % MAX;
        values.push(format!("rand_seed1 = {one}, rand_seed2 = {two}"));
    }
    values.join(", ")
}

/// MySQL's and MariaDB's "You have an error in your SQL syntax".
const ER_PARSE_ERROR: u16 = 1064;

/// One text statement: a prefix reaches all of it (a multi-statement's later statements
/// would go unpinned).
fn one_statement(cmd: &Command) -> bool {
    match cmd {
        Command::Query { sql, .. } => {
            let end = sql
                .iter()
                .rposition(|b| !b.is_ascii_whitespace() && *b != b';')
                .map_or(0, |i| i + 1);
            !sql[..end].contains(&b';')
        }
        _ => false,
    }
}

/// The text of a statement or prepared statement (see [`Worker::sql_of`]).
fn sql_of<'a>(
    stmts: &'a FxHashMap<u32, Stmt>,
    stmt_sql: &'a FxHashMap<u32, Vec<u8>>,
    cmd: &'a Command,
) -> Option<&'a [u8]> {
    match cmd {
        Command::Query { sql, .. } | Command::Prepare { sql } => Some(sql),
        Command::Execute { stmt_id, .. } => stmts
            .get(stmt_id)
            .map(|s| s.sql.as_slice())
            .or_else(|| stmt_sql.get(stmt_id).map(Vec::as_slice)),
        _ => None,
    }
}

/// A session task cancelled after a stop's drain timeout still hands over what it had: its
/// last answered exchange (if the output queue has room) and its counts.
/// So does one that panicked: its held reads too, answered as they are.
impl Drop for Worker {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        let last = self.answered.take();
        for a in held.into_iter().chain(last) {
            self.answered = Some(a);
            if let Some((label, e, rows)) = self.take_answered() {
                for e in label.into_iter().chain([e]).chain(rows) {
                    self.shared.events.try_send(e);
                }
            }
        }
        self.shared.flush(&mut self.tally);
    }
}

/// `--sync-spare`: a session waiting this long for its next exchange ends the transaction
/// of its spare connection.
const SPARE_IDLE: Duration = Duration::from_millis(100);

/// Answers of reads sent again, by seq: the answer, what followed it, when it was sent and
/// answered.
type Rereads = FxHashMap<u64, (Response, Vec<Response>, u64, u64)>;

/// How many of the held reads differ from production's, with the answers `again` has for
/// them in place of theirs.
fn differing(held: &[Answered], again: &Rereads) -> usize {
    held.iter()
        .filter(|a| {
            let r = again.get(&a.x.seq).map_or(&a.response, |(r, ..)| r);
            differs_from_recorded(&a.x, r)
        })
        .count()
}

/// Puts the answers `again` has for the held reads in place of theirs.
fn take_rereads(held: &mut [Answered], again: &mut Rereads) {
    for a in held {
        if let Some((r, m, sent, end)) = again.remove(&a.x.seq) {
            (a.response, a.more, a.sent_us, a.end_us) = (r, m, sent, end);
            a.kept = None;
        }
    }
}

/// Whether `sql` opens a transaction (`BEGIN`, `START TRANSACTION`).
fn opens_transaction(sql: &[u8]) -> bool {
    starts_with_word(sql, b"BEGIN") || starts_with_word(sql, b"START")
}

/// Whether `sql`'s first word is `word` (upper case), past blanks and comments' absence.
pub(crate) fn starts_with_word(sql: &[u8], word: &[u8]) -> bool {
    let sql = sql.trim_ascii_start();
    sql.len() >= word.len()
        && sql[..word.len()].eq_ignore_ascii_case(word)
        && sql
            .get(word.len())
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_')
}

/// What [`supervised`] knows of its session's task when the task panicked.
pub(crate) struct Task {
    /// The rest of the batch being worked through.
    inbox: smallvec::IntoIter<[Work; 1]>,
    /// An exchange was taken from the inbox and is not answered yet.
    in_flight: bool,
    /// Counted as open in the progress (`Progress::sessions_active`).
    active: bool,
    /// Exchanges answered.
    exchanges: u64,
}

impl Task {
    pub(crate) fn new() -> Self {
        Self {
            inbox: Batch::new().into_iter(),
            in_flight: false,
            active: false,
            exchanges: 0,
        }
    }
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, start: SessionStart, clone: u32) -> Self {
        let user = start
            .user
            .as_deref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        let db = start
            .db
            .as_deref()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .or_else(|| shared.config.default_db.clone())
            .or_else(|| shared.config.target.default_db());
        let out_clone = shared.config.clone_base + clone;
        Self {
            current_db: db,
            shared,
            start,
            clone,
            out_clone,
            user,
            conn: None,
            stmts: FxHashMap::default(),
            stmt_sql: FxHashMap::default(),
            variables: Vec::new(),
            deferred: None,
            pins_off: false,
            pins_batch: false,
            prefix_broke: false,
            pin_prefix: None,
            pin_pipe: None,
            pipe_refused: false,
            view_labels: 0,
            view_seq: 0,
            view_ambiguous: false,
            divergence: Default::default(),
            txn: None,
            in_txn: false,
            view_overlapped: Vec::new(),
            view_rows: Arc::new(Rows::everything()),
            held: Vec::new(),
            held_txn: false,
            hold_key: None,
            spare: None,
            carried: Carried::default(),
            last_reconnect: None,
            buf: Vec::with_capacity(256),
            tally: Tally::default(),
            answered: None,
            samples_spent: Default::default(),
        }
    }

    /// Counts and writes the last answered exchange (see `answered`).
    async fn hand_over(&mut self) {
        if let Some((label, e, rows)) = self.take_answered() {
            if let Some(l) = label {
                self.emit(l).await;
            }
            self.emit(e).await;
            if let Some(r) = rows {
                self.emit(r).await;
            }
        }
    }

    /// The last answered exchange as an output event, counted; and its first rows, when they
    /// differ from the recorded answer's (a row sample, right after it).
    fn take_answered(&mut self) -> Option<Handing> {
        let a = self.answered.take()?;
        let rows = match (&a.response, &a.kept) {
            (Response::Rows(rs), Some((k, key))) if a.x.rows_digest != Some(rs.digest) => {
                let mut sample = k.sample(
                    self.start.session,
                    a.x.seq,
                    a.sent_us,
                    SampleReason::DiffersFromRecorded,
                );
                sample.clone = self.out_clone;
                // Rows that do not parse against their columns leave nothing to show.
                (!sample.rows.is_empty() && self.take_sample(*key)).then(|| {
                    self.shared
                        .progress
                        .row_samples
                        .fetch_add(1, Ordering::Relaxed);
                    Event::Rows(sample)
                })
            }
            _ => None,
        };
        self.tally.count(
            &a.response,
            a.x.recorded_err,
            a.x.start_us,
            a.sent_us.saturating_sub(a.scheduled_us),
            a.end_us.saturating_sub(a.sent_us),
            a.end_us,
        );
        if self.tally.full() {
            self.shared.flush(&mut self.tally);
        }
        let seq = a.x.seq;
        let mut labels = a.labels;
        if a.view
            && labels & OrderLabel::OUT_OF_ORDER == 0
            && self
                .shared
                .order
                .as_ref()
                .is_some_and(|o| o.displaced(self.start.session, seq, self.clone))
        {
            labels |= OrderLabel::OUT_OF_ORDER;
            self.shared
                .progress
                .out_of_order
                .fetch_add(1, Ordering::Relaxed);
        }
        let label = (labels != 0).then_some(Event::Label(OrderLabel {
            session: self.start.session,
            seq,
            clone: self.out_clone,
            at_us: a.sent_us,
            labels,
        }));
        let command = a.x.into_command();
        let exchange = Event::Exchange(Exchange {
            session: self.start.session,
            seq,
            clone: self.out_clone,
            scheduled_us: Some(a.scheduled_us),
            start_us: a.sent_us,
            end_us: a.end_us,
            command,
            response: a.response,
            more: a.more,
        });
        Some((label, exchange, rows))
    }

    /// The shape by which `command`'s rows are sampled, when they may be kept: row samples
    /// are on and the shape's budget is not known to be spent.
    fn sample_key(&self, command: &Command) -> Option<u64> {
        if !self.shared.config.row_samples {
            return None;
        }
        let key = match command {
            Command::Query { sql, .. } => myrr_wire::sql::shape_key(sql),
            Command::Execute { stmt_id, .. } => self.stmts.get(stmt_id)?.key,
            _ => return None,
        };
        (!self.samples_spent.contains(&key)).then_some(key)
    }

    /// Takes a place in the shared budget for a differing answer of shape `key`.
    fn take_sample(&mut self, key: u64) -> bool {
        let mut budget = self
            .shared
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let taken = budget.take(key);
        if !budget.has_room(key) {
            self.samples_spent.insert(key);
        }
        taken
    }

    async fn emit(&self, e: Event) {
        self.shared.events.send(e).await;
    }

    async fn connect(&mut self) -> Result<(), String> {
        let target = &self.shared.config.target;
        let (user, pass) = target.credentials_for(self.user.as_deref());
        let login = LoginOpts {
            user: user.as_deref().unwrap_or(""),
            pass: pass.as_deref(),
            db: self.current_db.as_deref(),
            recorded_caps: self.start.capabilities,
        };
        let (host, port) = target.host_port();
        // A bounded number of logins at once (see `Shared::logins`).
        let _slot = self.shared.logins.acquire().await;
        let connect = WireConn::connect(&host, port, &self.shared.config.tls, &login);
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(c) => c.map_err(|e| e.to_string())?,
            Err(_) => return Err(format!("no login within {CONNECT_TIMEOUT:?}")),
        };
        let pair = self.shared.policy == crate::sched::Policy::Pair;
        conn.wait_with(Waiting::new(self.shared.abandon.clone(), pair));
        if let Some(l) = self
            .shared
            .order
            .as_ref()
            .and_then(|o| o.lock_waits.as_ref())
        {
            l.connected(conn.connection_id, (self.start.session, self.clone));
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// After the server went away: connect again, restore the database and re-prepare.
    async fn reconnect(&mut self) -> bool {
        let shared = self.shared.clone();
        if self
            .last_reconnect
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return false;
        }
        let deadline = Instant::now() + shared.config.reconnect_wait;
        let mut wait = Duration::from_millis(50);
        loop {
            if shared.stopping() {
                return false;
            }
            if self.connect().await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                self.last_reconnect = Some(Instant::now());
                return false;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        self.last_reconnect = Some(Instant::now());
        shared.progress.reconnects.fetch_add(1, Ordering::Relaxed);
        // Variables first: how statements parse may depend on them (sql_mode).
        let variables = std::mem::take(&mut self.variables);
        let set = self.set_variables(&variables, false).await;
        self.variables = variables;
        if set.is_err() {
            return false;
        }
        let old: Vec<(u32, Vec<u8>)> = self.stmts.drain().map(|(id, s)| (id, s.sql)).collect();
        for (id, sql) in old {
            match self.prepare(Some(id), &sql).await {
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        if let Some(b) = self.deferred.take() {
            if self.apply(&b).await.is_err() {
                self.deferred = Some(b);
                return false;
            }
        }
        true
    }

    /// Restores what the session held before the recording began, before the exchange the
    /// backfill came with (and outside its timing): its database, session variables and
    /// prepared statements under their recorded ids. What the target refuses is counted and
    /// noted; a session without a connection is restored when it gets one.
    async fn restore(&mut self, b: &Backfill) {
        let shared = self.shared.clone();
        if self.clone == 0 {
            // The replay run keeps it too (a replay of the run restores the same), after
            // the exchange before it.
            self.hand_over().await;
            let at_us = self.now_us();
            self.emit(Event::Backfill(Backfill {
                session: self.start.session,
                at_us,
                ..b.clone()
            }))
            .await;
        }
        shared.progress.backfills.fetch_add(1, Ordering::Relaxed);
        if self.conn.is_some() {
            match self.apply(b).await {
                Ok(()) => return,
                Err(lost) => self.lose(lost),
            }
        }
        match &mut self.deferred {
            Some(d) => crate::dispatch::merge_backfill(d, b.clone()),
            None => self.deferred = Some(Box::new(b.clone())),
        }
    }

    /// [`Worker::restore`] on a connection; counts what it restored.
    async fn apply(&mut self, b: &Backfill) -> Result<(), Lost> {
        let shared = self.shared.clone();
        let progress = &shared.progress;
        let session = self.start.session;
        if let Some(db) = &b.db {
            let name = String::from_utf8_lossy(db).into_owned();
            if self.current_db.as_deref() != Some(name.as_str()) {
                let conn = self.conn.as_mut().ok_or(Lost::NotConnected)?;
                self.buf.clear();
                self.buf.push(command::Code::InitDb.byte());
                self.buf.extend_from_slice(db);
                match conn.command(&self.buf).await?.0 {
                    Response::Err(e) => shared.note_error(format!(
                        "session {session}: the backfilled database {name} was refused: \
                         error {}",
                        e.code
                    )),
                    _ => self.current_db = Some(name),
                }
            }
        }
        let rejected = self.set_variables(&b.variables, true).await?;
        progress
            .backfill_variables
            .fetch_add(b.variables.len() as u64 - rejected, Ordering::Relaxed);
        progress
            .backfill_variables_rejected
            .fetch_add(rejected, Ordering::Relaxed);
        for st in &b.statements {
            let counter = match self.prepare(Some(st.id), &st.sql).await?.0 {
                Response::Prepared(_) => &progress.backfill_statements,
                first => {
                    let why = match first {
                        Response::Err(e) => format!("error {}", e.code),
                        r => format!("answer {}", r.kind_name()),
                    };
                    shared.note_error(format!(
                        "session {session}: backfilled statement {} not prepared: {why}",
                        st.id
                    ));
                    &progress.backfill_statements_failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.variables.extend(b.variables.iter().cloned());
        Ok(())
    }

    /// Sets backfilled session variables; the number the target refused (noted when `note`).
    /// All go in one SET; when the target refuses that one (none is then set), one SET each,
    /// so that only the refused ones are missing.
    async fn set_variables(
        &mut self,
        vars: &[(Vec<u8>, Vec<u8>)],
        note: bool,
    ) -> Result<u64, Lost> {
        let shared = self.shared.clone();
        let session = self.start.session;
        if vars.is_empty() {
            return Ok(0);
        }
        let conn = self.conn.as_mut().ok_or(Lost::NotConnected)?;
        let mut rejected = 0;
        let mut sendable = Vec::with_capacity(vars.len());
        for (name, value) in vars {
            if backfill::is_variable_name(name) {
                sendable.push((name, value));
            } else {
                rejected += 1;
                if note {
                    shared.note_error(format!(
                        "session {session}: backfilled variable {:?} not set: not a name",
                        String::from_utf8_lossy(name)
                    ));
                }
            }
        }
        if sendable.is_empty() {
            return Ok(rejected);
        }
        let set = |vars: &[(&Vec<u8>, &Vec<u8>)], b: &mut Vec<u8>| {
            b.clear();
            b.push(command::Code::Query.byte());
            b.extend_from_slice(b"SET ");
            for (i, (name, value)) in vars.iter().enumerate() {
                if i > 0 {
                    b.extend_from_slice(b", ");
                }
                backfill::assignment(name, value, b);
            }
        };
        set(&sendable, &mut self.buf);
        if !matches!(conn.command(&self.buf).await?.0, Response::Err(_)) {
            return Ok(rejected);
        }
        for one in &sendable {
            set(std::slice::from_ref(one), &mut self.buf);
            if let Response::Err(e) = conn.command(&self.buf).await?.0 {
                rejected += 1;
                if note {
                    shared.note_error(format!(
                        "session {session}: backfilled variable {} not set: error {} {}",
                        String::from_utf8_lossy(one.0),
                        e.code,
                        String::from_utf8_lossy(&e.message)
                    ));
                }
            }
        }
        Ok(rejected)
    }

    /// Prepares `sql` on the target under recorded id `id`.
    async fn prepare(&mut self, id: Option<u32>, sql: &[u8]) -> Result<Answer, Lost> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Lost::NotConnected);
        };
        self.buf.clear();
        self.buf.push(command::Code::StmtPrepare.byte());
        self.buf.extend_from_slice(sql);
        let (mut first, more) = conn.command(&self.buf).await?;
        match (&mut first, id) {
            (Response::Prepared(p), Some(id)) => {
                self.stmts.insert(
                    id,
                    Stmt {
                        target_id: p.stmt_id,
                        key: myrr_wire::sql::shape_key(sql),
                        pins: PinTraits::of(sql, self.shared.time_tables.as_ref()),
                        sql: sql.to_vec(),
                        params: p.params,
                        types: Vec::new(),
                        bound: false,
                    },
                );
                self.stmt_sql.remove(&id);
                // Within a run, EXECUTEs name statements by the recorded id (the commands
                // are the recorded ones), so the answer carries that id too.
                p.stmt_id = id;
            }
            (_, Some(id)) => {
                self.stmt_sql.insert(id, sql.to_vec());
            }
            _ => {}
        }
        Ok((first, more))
    }

    /// `--pin`: before a statement whose result depends on them (a write, or a read calling a
    /// time function), what production's statement saw: its recorded start as `timestamp`,
    /// and the AUTO_INCREMENT id it generated as `insert_id` (the server uses it for the next
    /// INSERT only). The session's first pin is a round trip of its own before the statement,
    /// outside its timing; once the target has taken one, a MariaDB target gets the pins of
    /// a single text statement in the statement itself (`SET STATEMENT timestamp = …,
    /// insert_id = … FOR …`: the values hold for that statement only, the answer is the
    /// statement's), with no round trip. A target that refuses (another engine) or changes
    /// the value (out of its range: it warns) turns pins off for this session, counted and
    /// noted, never fatal. Whether anything was sent.
    async fn pin(&mut self, x: &Recorded) -> Pinned {
        let Some(need) = self.pin_need(x) else {
            return Pinned::No;
        };
        if self.pins_off {
            return Pinned::Refused;
        }
        if self.conn.is_none() {
            return Pinned::No;
        }
        let values = pin_values(x, need, self.start.session);
        if self.pins_batch {
            if one_statement(&x.command) {
                self.pin_prefix = Some(format!("SET STATEMENT {values} FOR "));
            } else {
                self.pin_pipe = Some(format!("SET {values}"));
            }
            self.shared.progress.pins.fetch_add(1, Ordering::Relaxed);
            self.shared
                .progress
                .pins_batched
                .fetch_add(1, Ordering::Relaxed);
            return Pinned::Batched;
        }
        self.pin_alone(&values).await
    }

    /// What `x` needs pinned, if anything. The time for a read or write calling a time
    /// function, and for a write that may read it otherwise (see `schema`); the id for a
    /// write that generated one; the RAND seeds for a statement calling `RAND()`.
    fn pin_need(&self, x: &Recorded) -> Option<PinNeed> {
        if !matches!(x.command, Command::Query { .. } | Command::Execute { .. }) {
            return None;
        }
        let tables = self.shared.time_tables.as_ref();
        let t = match &x.command {
            Command::Execute { stmt_id, .. } if self.stmts.contains_key(stmt_id) => {
                self.stmts[stmt_id].pins
            }
            cmd => PinTraits::of(self.sql_of(cmd)?, tables),
        };
        // Asked first: a schema change it sees counts even when the text calls NOW().
        let time = t.write
            && tables
                .zip(t.time_read)
                .is_none_or(|(tables, r)| tables.may_read_time_as(r))
            || t.time_call;
        let id = t.write && x.insert_id > 0;
        let rand = t.rand;
        (time || id || rand).then_some(PinNeed { time, id, rand })
    }

    /// Pins with a `SET` of its own (see [`Worker::pin`]).
    async fn pin_alone(&mut self, values: &str) -> Pinned {
        let q = format!("SET {values}");
        self.buf.clear();
        self.buf.push(command::Code::Query.byte());
        self.buf.extend_from_slice(q.as_bytes());
        let Some(conn) = self.conn.as_mut() else {
            return Pinned::No;
        };
        let mariadb = conn.server_version.contains("MariaDB");
        match conn.command(&self.buf).await {
            Ok((answer, _)) => {
                if self.pin_taken(&answer, &q) {
                    self.shared.progress.pins.fetch_add(1, Ordering::Relaxed);
                    self.pins_batch = mariadb && self.shared.config.pin_batch && !self.prefix_broke;
                }
            }
            // The statement finds the connection gone and reconnects.
            Err(_) => self.conn = None,
        }
        Pinned::Sent
    }

    /// Whether the target took a pin `q` as it was; if not (an error, or a value it changed:
    /// it warns "Truncated incorrect timestamp value"), pins are off for this session,
    /// counted and noted.
    fn pin_taken(&mut self, answer: &Response, q: &str) -> bool {
        if matches!(answer, Response::Ok(ok) if ok.warnings == 0) {
            return true;
        }
        self.pins_off = true;
        self.pins_batch = false;
        self.shared
            .progress
            .pins_refused
            .fetch_add(1, Ordering::Relaxed);
        let why = match answer {
            Response::Err(e) => {
                format!("error {}: {}", e.code, String::from_utf8_lossy(&e.message))
            }
            Response::Ok(ok) => format!(
                "accepted with {} warning(s): the value was changed",
                ok.warnings
            ),
            r => r.kind_name().to_string(),
        };
        self.shared.note_error(format!(
            "session {}: the target refused `{q}` ({why}); the session goes on without pins",
            self.start.session
        ));
        false
    }

    /// `--sync-reread`: the answers of the view point `key` are held back: until they are
    /// settled, the commits that started after it ended (in the recording) wait, so that a
    /// round of reading it again sees none of them (production's view did not).
    fn hold_view(&mut self, key: Option<CommitKey>, start_us: u64) {
        let (Some(order), Some(key)) = (&self.shared.order, key) else {
            return;
        };
        if let Some(held) = &order.held {
            held.register(self.clone, key, start_us, self.view_rows.clone());
            self.hold_key = Some(key);
            let p = &self.shared.progress;
            p.views_held.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `--sync-reread`: the commits that wait for the held view (see
    /// [`Worker::hold_view`]) go on: it is settled, or this session is about to wait for
    /// something else than its own reads (its time, its next exchanges), which must not
    /// hold up the other sessions.
    fn unhold(&mut self) {
        if let (Some(key), Some(order)) = (self.hold_key.take(), &self.shared.order) {
            if let Some(held) = &order.held {
                held.done(self.clone, key);
            }
        }
    }

    /// `--sync`: this commit point / view point has been answered (or never will be).
    fn release(&self, keys: Keys) {
        if let Some(order) = &self.shared.order {
            order.release(self.clone, keys);
        }
    }

    fn now_us(&self) -> u64 {
        self.shared.clock.now_us()
    }

    pub(crate) async fn run(mut self, rx: &mut mpsc::UnboundedReceiver<Batch>, task: &mut Task) {
        let shared = self.shared.clone();
        let session = self.start.session;
        // Open the connection at the session's recorded offset.
        // Created on the first wait: a --speed max run needs none.
        let mut timer: Option<PreciseTimer> = None;
        if let Some(at) = shared.pacing.due(self.start.start_us, self.clone) {
            timer
                .get_or_insert_with(PreciseTimer::new)
                .sleep_until(at)
                .await;
        }
        shared
            .progress
            .sessions_active
            .fetch_add(1, Ordering::Relaxed);
        task.active = true;
        let connected = self.connect().await;
        let mut start = self.start.clone();
        start.clone = self.out_clone;
        start.start_us = self.now_us();
        start.server = shared.config.target.address();
        start.client = String::new();
        start.mid_stream = false;
        start.encrypted = false;
        start.compressed = false;
        start.connection_id = self.conn.as_ref().map(|c| c.connection_id);
        if let Some(c) = &self.conn {
            start.server_version = Some(c.server_version.clone().into_bytes());
            start.capabilities = Some(c.caps());
        }
        start.db = self.current_db.clone().map(String::into_bytes);
        self.emit(Event::SessionStart(start)).await;
        if let Err(e) = &connected {
            shared
                .progress
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            shared.note_error(format!("session {session}: cannot connect: {e}"));
        }
        let mut reason = EndReason::EndOfRun;
        loop {
            let Work {
                x,
                keys,
                class,
                wait,
                survivors,
            } = match task.inbox.next() {
                Some(w) => {
                    task.in_flight = true;
                    w
                }
                None => {
                    let batch = match rx.try_recv() {
                        Ok(b) => b,
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            self.hand_over().await;
                            shared.flush(&mut self.tally);
                            let next = if self.hold_key.is_some() {
                                match tokio::time::timeout(HOLD_IDLE, rx.recv()).await {
                                    Ok(b) => b,
                                    Err(_) => {
                                        self.unhold();
                                        rx.recv().await
                                    }
                                }
                            } else {
                                rx.recv().await
                            };
                            match next {
                                Some(b) => b,
                                None => break,
                            }
                        }
                    };
                    task.inbox = batch.into_iter();
                    continue;
                }
            };
            self.tally.permits += 1;
            if failpoint_panics(self.start.session, x.seq) {
                panic!("failpoint {FAILPOINT_PANIC} at exchange {}", x.seq);
            }
            // Held reads of a view: until its transaction does something else.
            let statement = matches!(x.command, Command::Query { .. } | Command::Execute { .. });
            if !self.held.is_empty() && (class.view || statement && !class.in_view) {
                self.settle().await;
            }
            if let Some(b) = x.backfill.as_deref() {
                if !shared.stopping() {
                    self.restore(b).await;
                }
            }
            let scheduled = shared.pacing.due(x.start_us, self.clone);
            if let Some(at) = scheduled {
                if at > tokio::time::Instant::now() {
                    self.unhold();
                }
                self.wait_for_time(at, &mut timer).await;
            }
            // Stopped, before or while this exchange waited for its time: it is not sent.
            if shared.stopping() {
                self.release(keys);
                task.in_flight = false;
                break;
            }
            let scheduled_us = match scheduled {
                Some(at) => shared.clock.us_at(at),
                None => self.now_us(),
            };
            let mut labels = 0u8;
            if class.view {
                self.view_ambiguity(&x).await;
            }
            let waited = wait && {
                if !self.wait_for_order(&x, keys, class).await {
                    labels |= OrderLabel::OUT_OF_ORDER;
                }
                true
            };
            if class.view || class.in_view {
                labels |= self.view_labels(class, labels).await;
            }
            // Pending (not answered here yet) commits it may overtake: its rows then differ for
            // their writes (see `divergence`).
            let overtakes = class.write
                && shared.divergence.is_some()
                && shared
                    .order
                    .as_ref()
                    .is_some_and(|o| o.commits.overtakes(self.clone, session, x.end_us));
            let pinned = if shared.config.pin {
                self.pin(&x).await
            } else {
                Pinned::No
            };
            if pinned == Pinned::Refused {
                labels |= OrderLabel::UNPINNED;
            }
            // Closed loop without a wait: sent when scheduled (one clock read fewer).
            let sent_us = if scheduled.is_none() && !waited && pinned != Pinned::Sent {
                scheduled_us
            } else {
                self.now_us()
            };
            if let Some(order) = &shared.order {
                let recorded = Duration::from_micros(x.end_us.saturating_sub(x.start_us));
                order.in_server(session, self.clone, Some(recorded));
            }
            if let Some(order) = &shared.order {
                if let Some(s) = &survivors {
                    if !order.sent(self.clone, s).await && labels & OrderLabel::OUT_OF_ORDER == 0 {
                        labels |= OrderLabel::OUT_OF_ORDER;
                        shared.progress.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                }
                order.sending(session, self.clone, x.seq);
            }
            let sample_key = self.sample_key(&x.command);
            if let Some(c) = self.conn.as_mut() {
                c.keep_rows(sample_key.is_some());
            }
            let (mut response, mut more) = self.execute(&x).await;
            self.unsent_pins();
            if std::mem::take(&mut self.pipe_refused) {
                labels |= OrderLabel::UNPINNED;
            }
            let settled = if shared.order.is_some() && shared.config.sync_deadlocks {
                self.follow_deadlock(&x, &mut response, &mut more).await
            } else {
                Settled::No
            };
            if settled == Settled::Retried {
                labels |= OrderLabel::LOCK_CONFLICT;
            }
            let kept = self
                .conn
                .as_mut()
                .and_then(|c| c.take_kept())
                .zip(sample_key);
            if let Some(order) = &shared.order {
                order.in_server(session, self.clone, None);
                if in_transaction(&response) == Some(false) {
                    order.txn_ended(session, self.clone);
                }
            }
            let end_us = self.now_us();
            let clone = self.clone as usize;
            if let Some(d) = shared.divergence.as_ref().and_then(|d| d.get(clone)) {
                let sql = sql_of(&self.stmts, &self.stmt_sql, &x.command);
                let added = self.divergence.answered(
                    d,
                    &x,
                    sql,
                    class,
                    &response,
                    labels,
                    overtakes,
                    settled == Settled::Undone,
                );
                let p = &shared.progress;
                if added & OrderLabel::LOCK_CONFLICT != 0 {
                    p.lock_conflicts.fetch_add(1, Ordering::Relaxed);
                }
                if added & OrderLabel::AFTER_DIVERGENCE != 0 {
                    p.after_divergence.fetch_add(1, Ordering::Relaxed);
                }
                labels |= added;
            }
            task.exchanges += 1;
            task.in_flight = false;
            let quit = matches!(x.command, Command::Quit);
            let x = if shared.order.is_some()
                && shared.config.sync_deadlocks
                && settled != Settled::Undone
            {
                self.keep_txn(x, &response)
            } else {
                x
            };
            let holds = shared.config.sync_reread
                && self.held.is_empty()
                && class.view
                && self.holds(&x, &response);
            if holds {
                // Before its point is released: a commit that waited for it then finds it.
                self.hold_view(keys.view, x.start_us);
            }
            self.release(keys);
            // The previous exchange, if sending this one did not already hand it over.
            self.hand_over().await;
            let hold = shared.config.sync_reread && (!self.held.is_empty() || holds);
            let answered = Answered {
                x,
                response,
                more,
                kept,
                scheduled_us,
                sent_us,
                end_us,
                labels,
                view: class.view,
            };
            if hold {
                let mut answered = answered;
                if let Handed::Own(r) = answered.x {
                    // Sent again from here, when an autocommit read.
                    answered.x = Handed::Shared(Arc::new(r));
                }
                let differs = differs_from_recorded(&answered.x, &answered.response);
                self.held.push(answered);
                // Settled at the first read that differs, while fewer of the commits that
                // ended after the view have run: the rounds can still find its prefix.
                if differs {
                    self.settle().await;
                }
            } else {
                self.answered = Some(answered);
            }
            if quit {
                reason = EndReason::Quit;
                break;
            }
        }
        self.settle().await;
        self.hand_over().await;
        shared.flush(&mut self.tally);
        // Commit points queued behind the end will never be answered: release them.
        rx.close();
        let mut left: Vec<Work> = task.inbox.by_ref().collect();
        while let Ok(b) = rx.try_recv() {
            left.extend(b);
        }
        shared.budget.add_permits(left.len());
        for w in left {
            self.release(w.keys);
        }
        if let Some(conn) = self.conn.take() {
            conn.quit().await;
        }
        if let Some(conn) = self.spare.take().and_then(|s| s.conn) {
            conn.quit().await;
        }
        if shared.stopping() && reason != EndReason::Quit {
            reason = EndReason::EndOfRun;
        }
        shared
            .progress
            .sessions_active
            .fetch_sub(1, Ordering::Relaxed);
        task.active = false;
        shared
            .progress
            .sessions_done
            .fetch_add(1, Ordering::Relaxed);
        let end_us = self.now_us();
        self.emit(Event::SessionEnd(SessionEnd {
            session,
            end_us,
            reason,
            login: if connected.is_ok() {
                Login::Ok
            } else {
                Login::Unknown
            },
            exchanges: task.exchanges,
        }))
        .await;
    }

    /// Paced: waits until `at`, the exchange's time, unless the replay stops first. What this
    /// session has answered goes to the writer first when there is time to wait.
    async fn wait_for_time(&mut self, at: tokio::time::Instant, timer: &mut Option<PreciseTimer>) {
        let shared = self.shared.clone();
        if shared.stopping() {
            return;
        }
        let now = tokio::time::Instant::now();
        if at > now {
            self.hand_over().await;
            shared.flush(&mut self.tally);
            if at - now >= SPARE_IDLE {
                self.close_spare_view().await;
            }
        }
        if !crate::waiting::sleep_alone(at, || shared.stopping()) && !shared.stopping() {
            timer
                .get_or_insert_with(PreciseTimer::new)
                .sleep_until(at)
                .await;
        }
    }

    /// `--sync`: waits until the commits recorded as ended before this exchange ended (at
    /// `recorded_end_us`) have been answered; a commit point, under `--sync-views`, also for
    /// the view points that ended before it started (`recorded_start_us`); a write, under
    /// `--sync-writes`, for the other sessions' writes that ended before it started. Or
    /// until a wait gives way (counted). False: it went out of the recorded order.
    async fn wait_for_order(&mut self, x: &Recorded, keys: Keys, class: Class) -> bool {
        let shared = self.shared.clone();
        let Some(order) = &shared.order else {
            return true;
        };
        let (recorded_end_us, recorded_start_us) = (x.end_us, x.start_us);
        self.hand_over().await;
        shared.flush(&mut self.tally);
        let timeout = shared.config.sync_timeout;
        let rows = self.order_rows(order, x, keys, class).await;
        if class.view {
            self.view_rows = rows.clone();
        }
        if self.takes_spare_view(x, class) {
            self.snapshot_early(x, &rows).await;
        }
        let session = self.start.session;
        let stuck = |s, at_once| order.gives_way(session, self.clone, s, at_once);
        let began = Instant::now();
        let mut until = recorded_end_us;
        if order.locks && class.locks {
            order.commits.wait_read(until, timeout).await;
            until = order.commits.released_by(self.clone, session, until);
        }
        let mut waited = order
            .commits
            .wait(self.clone, until, &rows, timeout, &stuck)
            .await;
        if let (Some(writes), true) = (&order.writes, class.locks) {
            // Its own point is registered (the feeder reads ahead) before it can be answered.
            writes.wait_read(recorded_start_us + 1, timeout).await;
            // The rows it was registered with: its statement's, or every row (`on`).
            let own = keys.write.and_then(|key| writes.rows(self.clone, key));
            let w = writes
                .wait(
                    self.clone,
                    recorded_start_us,
                    own.as_ref().unwrap_or(&rows),
                    timeout,
                    &stuck,
                )
                .await;
            if waited == Waited::Ready {
                waited = w;
            }
        }
        if let (Some(views), true) = (&order.views, class.commit) {
            // The reads answered before this commit was did not see it.
            let v = views
                .wait(self.clone, recorded_end_us, &rows, timeout, &stuck)
                .await;
            if v != Waited::Ready {
                order.displace(self.clone, recorded_end_us, &rows);
            }
            if waited == Waited::Ready {
                waited = v;
            }
        }
        if let (Some(held), true) = (&order.held, class.commit) {
            // Nor did the views that ended before it started, held to be read again.
            let held_since = Instant::now();
            let h = held
                .wait(self.clone, recorded_start_us, &rows, timeout, &stuck)
                .await;
            let us = u64::try_from(held_since.elapsed().as_micros()).unwrap_or(u64::MAX);
            shared
                .progress
                .held_wait_us
                .fetch_add(us, Ordering::Relaxed);
            if waited == Waited::Ready {
                waited = h;
            }
        }
        order.done_waiting(session, self.clone);
        let waited_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        let p = &shared.progress;
        let total = match waited {
            Waited::Ready => &p.sync_wait_us,
            Waited::TimedOut | Waited::Cycle => &p.sync_wait_gave_way_us,
        };
        total.fetch_add(waited_us, Ordering::Relaxed);
        let counter = match waited {
            Waited::Ready => return true,
            Waited::TimedOut => &shared.progress.sync_timeouts,
            Waited::Cycle => &shared.progress.sync_cycles,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        shared.progress.out_of_order.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// `--sync-rows`: the rows an exchange waits for the earlier points of: a commit point's
    /// and a view point's as the feeder registered them (its transaction's, see `txn_rows`),
    /// a write's own; every row for anything else, or with `--sync-rows off`.
    async fn order_rows(
        &mut self,
        order: &Order,
        x: &Recorded,
        keys: Keys,
        class: Class,
    ) -> Arc<Rows> {
        let shared = &self.shared;
        let timeout = shared.config.sync_timeout;
        if !shared.config.sync_rows {
            return order.every_row.clone();
        }
        if let Some(key) = keys.commit {
            order.commits.wait_read(x.start_us + 1, timeout).await;
            return order
                .commits
                .rows(self.clone, key)
                .unwrap_or_else(|| order.every_row.clone());
        }
        if let (Some(key), Some(views)) = (keys.view, &order.views) {
            views.wait_read(x.start_us + 1, timeout).await;
            return views
                .rows(self.clone, key)
                .unwrap_or_else(|| order.every_row.clone());
        }
        match shared
            .divergence
            .as_ref()
            .and_then(|d| d.get(self.clone as usize))
        {
            Some(d) if class.locks => {
                let sql = sql_of(&self.stmts, &self.stmt_sql, &x.command);
                Arc::new(self.divergence.rows(d, x, sql))
            }
            _ => order.every_row.clone(),
        }
    }

    /// `--sync`: whether the view point `x` is order-ambiguous, and the commits it overlapped
    /// (asked of the feeder once per view point, before it waits for the order).
    async fn view_ambiguity(&mut self, x: &Recorded) {
        let Some(order) = &self.shared.order else {
            return;
        };
        let timeout = self.shared.config.sync_timeout;
        let until = order
            .ambiguous(self.start.session, x.seq, x.end_us, timeout)
            .await;
        self.view_ambiguous = until.is_some();
        self.view_seq = x.seq;
        self.view_overlapped = until.unwrap_or_default();
    }

    /// `--sync`: the labels a read shares with its transaction's view: a view point is
    /// [`OrderLabel::AMBIGUOUS`] when it took its view while another session's commit ran (in
    /// the recording), out of order when it went ahead of an earlier commit (`own`); a read
    /// from its view inherits those, and is out of order too when a commit went ahead of the
    /// view point meanwhile.
    async fn view_labels(&mut self, class: crate::sync::Class, own: u8) -> u8 {
        let Some(order) = &self.shared.order else {
            return 0;
        };
        let session = self.start.session;
        if class.view {
            self.view_labels = own
                | if self.view_ambiguous {
                    OrderLabel::AMBIGUOUS
                } else {
                    0
                };
        } else if self.view_labels & OrderLabel::OUT_OF_ORDER == 0
            && order.displaced(session, self.view_seq, self.clone)
        {
            self.view_labels |= OrderLabel::OUT_OF_ORDER;
        }
        let added = self.view_labels & !own;
        let p = &self.shared.progress;
        if added & OrderLabel::AMBIGUOUS != 0 {
            p.order_ambiguous.fetch_add(1, Ordering::Relaxed);
        }
        if added & OrderLabel::OUT_OF_ORDER != 0 {
            p.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        self.view_labels
    }

    /// Sends one command; never fails: what went wrong becomes the response.
    async fn execute(&mut self, x: &Recorded) -> (Response, Vec<Response>) {
        let cmd = &x.command;
        if let Some(skip) = self.filter(cmd) {
            if let (Command::Prepare { sql }, Some(id)) = (cmd, x.prepared_id) {
                self.stmt_sql.insert(id, sql.clone());
            }
            return (Response::Skipped(skip), vec![]);
        }
        if self.conn.is_none() && !matches!(cmd, Command::Quit) && !self.reconnect().await {
            return (Response::Skipped(SkipReason::NotConnected), vec![]);
        }
        let batched = self.pin_prefix.is_some();
        match self.send(cmd, x.prepared_id).await {
            Ok((Response::Err(e), _)) if batched && e.code == ER_PARSE_ERROR && !x.recorded_err => {
                // The prefix made it unparsable (a statement SET STATEMENT cannot carry):
                // nothing ran. Pinned the slow way, sent again as recorded.
                self.pins_batch = false;
                self.prefix_broke = true;
                let p = &self.shared.progress;
                p.pins.fetch_sub(1, Ordering::Relaxed);
                p.pins_batched.fetch_sub(1, Ordering::Relaxed);
                if let Some(need) = self.pin_need(x) {
                    let values = pin_values(x, need, self.start.session);
                    self.pin_alone(&values).await;
                }
                Box::pin(self.execute(x)).await
            }
            Ok(answer) => answer,
            Err(lost) => {
                self.lose(lost);
                if !matches!(cmd, Command::Quit) {
                    self.reconnect().await;
                }
                (Response::Missing(MissingReason::ConnectionLost), vec![])
            }
        }
    }

    /// Pins set up for a statement that was not sent (skipped, or no connection): nothing
    /// was pinned.
    fn unsent_pins(&mut self) {
        if self.pin_prefix.take().is_some() | self.pin_pipe.take().is_some() {
            let p = &self.shared.progress;
            p.pins.fetch_sub(1, Ordering::Relaxed);
            p.pins_batched.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `--sync-deadlocks`: keeps `x` as a statement of the transaction open on the target,
    /// as its answer tells.
    fn keep_txn(&mut self, x: Handed, response: &Response) -> Handed {
        let Some(open) = in_transaction(response) else {
            return x;
        };
        let was = std::mem::replace(&mut self.in_txn, open);
        if !self.in_txn {
            self.txn = None;
            return x;
        }
        if !matches!(x.command, Command::Query { .. } | Command::Execute { .. }) {
            return x;
        }
        if !was {
            self.txn = Some(Vec::new());
        }
        let Some(txn) = self.txn.as_mut() else {
            return x;
        };
        if txn.len() >= TXN_KEPT {
            self.txn = None;
            return x;
        }
        let shared = match x {
            Handed::Own(r) => Arc::new(r),
            Handed::Shared(r) => r,
        };
        txn.push(shared.clone());
        Handed::Shared(shared)
    }

    /// `--sync-deadlocks`: a transaction lost to a deadlock on one side only ends as it did
    /// in production. Production's was lost and this one was not: it is rolled back here
    /// too. This one was lost and production's was not: its statements are sent again from
    /// the one that opened it (at most [`DEADLOCK_RETRIES`] times), then `x` again, whose
    /// answer then stands. Either way the rows follow production's instead of staying
    /// different for the rest of the replay.
    async fn follow_deadlock(
        &mut self,
        x: &Recorded,
        response: &mut Response,
        more: &mut Vec<Response>,
    ) -> Settled {
        let replayed = match response {
            Response::Err(e) => e.code,
            Response::Skipped(_) | Response::Missing(_) => return Settled::No,
            _ => 0,
        };
        let p = self.shared.clone();
        let p = &p.progress;
        if x.recorded_code == ER_LOCK_DEADLOCK && replayed != ER_LOCK_DEADLOCK {
            if !in_transaction(response).unwrap_or(self.in_txn) {
                // The statement committed on its own: nothing to undo.
                return Settled::No;
            }
            if self.rollback().await.is_err() {
                return Settled::No;
            }
            self.txn = None;
            self.in_txn = false;
            p.deadlocks_undone.fetch_add(1, Ordering::Relaxed);
            return Settled::Undone;
        }
        if replayed != ER_LOCK_DEADLOCK || x.recorded_err {
            return Settled::No;
        }
        self.in_txn = false;
        let Some(txn) = self.txn.take() else {
            p.deadlocks_not_retried.fetch_add(1, Ordering::Relaxed);
            return Settled::No;
        };
        for _ in 0..DEADLOCK_RETRIES {
            let mut lost = false;
            for y in &txn {
                self.pin(y).await;
                let (r, _) = self.execute(y).await;
                self.unsent_pins();
                self.pipe_refused = false;
                lost = match r {
                    Response::Err(e) if e.code == ER_LOCK_DEADLOCK => true,
                    Response::Missing(_) | Response::Skipped(_) => true,
                    _ => false,
                };
                if lost {
                    break;
                }
            }
            if lost {
                if self.conn.is_none() {
                    break;
                }
                continue;
            }
            self.pin(x).await;
            let (r, m) = self.execute(x).await;
            self.unsent_pins();
            if matches!(&r, Response::Err(e) if e.code == ER_LOCK_DEADLOCK) {
                continue;
            }
            *response = r;
            *more = m;
            self.in_txn = true;
            self.txn = Some(txn);
            p.deadlocks_retried.fetch_add(1, Ordering::Relaxed);
            return Settled::Retried;
        }
        p.deadlocks_not_retried.fetch_add(1, Ordering::Relaxed);
        Settled::No
    }

    /// `--sync-reread`: whether the answered view point `x` starts holding back answers: it
    /// overlapped other sessions' commits in the recording and ran before those that ended
    /// after it (no recorded order: production may have seen them), and its transaction
    /// (if any) is kept to be sent again.
    fn holds(&mut self, x: &Recorded, response: &Response) -> bool {
        let Response::Rows(rs) = response else {
            return false;
        };
        self.held_txn = rs.status & SERVER_STATUS_IN_TRANS != 0;
        let spare_view = self.spare.as_ref().is_some_and(|s| s.view == Some(x.seq));
        (spare_view
            || self
                .view_overlapped
                .last()
                .is_some_and(|&(e, _)| e > x.end_us))
            && x.rows_digest.is_some()
            && (!self.held_txn || self.txn.is_some())
    }

    /// `--sync-reread`: hands over the held reads of an order-ambiguous view, at its first read
    /// whose rows are not production's (the later reads of the view then come from the view
    /// it was settled on), or when its transaction stops reading. When some of
    /// their rows are not production's, the view is read again after the commits it
    /// overlapped (an autocommit read is sent again; a transaction that has only read is
    /// rolled back and its statements sent again), one more of them each round, in the
    /// order they started in the recording (see [`reread_steps`]), at most [`REREAD_ROUNDS`] rounds: production's view held some prefix
    /// of them. The answers of the round with the fewest differences from production's
    /// stand; the rounds stop once one has none, or has more than the best so far (the
    /// commits past it only take the view further away). Production's answers are the oracle
    /// for which order production had; what decides is the whole view, so every read of it
    /// counts.
    async fn settle(&mut self) {
        self.settle_held().await;
        self.unhold();
    }

    /// [`Worker::settle`], but for the held view's point.
    async fn settle_held(&mut self) {
        let mut held = std::mem::take(&mut self.held);
        let differs = differs_from_recorded;
        let mut best = held.iter().filter(|a| differs(&a.x, &a.response)).count();
        if best > 0 {
            if let Some(mut again) = self.read_on_spare(&held).await {
                let n = differing(&held, &again);
                if n < best {
                    take_rereads(&mut held, &mut again);
                    self.shared
                        .progress
                        .spare_reproduced
                        .fetch_add(1, Ordering::Relaxed);
                    if self.held_txn {
                        self.adopt_spare().await;
                    }
                    // Production's view was earlier than the replay's: the later rounds
                    // would only take it further away.
                    if let Some(s) = self.spare.as_mut() {
                        s.view = None;
                    }
                    for a in held {
                        self.hand_over().await;
                        self.answered = Some(a);
                    }
                    return;
                }
            } else if let Some(s) = self.spare.as_mut() {
                s.view = None;
            }
        }
        if best > 0 {
            let view_end = held.first().map_or(0, |a| a.x.end_us);
            let steps = reread_steps(&self.view_overlapped, view_end);
            let p = self.shared.progress.clone();
            let mut improved = false;
            for (round, step) in steps.into_iter().enumerate() {
                let Some((mut again, reached)) = self.read_again(&held, step).await else {
                    break;
                };
                if round == 0 {
                    p.rereads.fetch_add(1, Ordering::Relaxed);
                }
                p.reread_rounds.fetch_add(1, Ordering::Relaxed);
                let n = differing(&held, &again);
                if n < best {
                    best = n;
                    improved = true;
                    take_rereads(&mut held, &mut again);
                }
                if best == 0 || n > best || !reached {
                    break;
                }
            }
            if improved {
                p.rereads_reproduced.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(s) = self.spare.as_mut() {
            s.view = None;
        }
        for a in held {
            self.hand_over().await;
            self.answered = Some(a);
        }
    }

    /// `--sync-reread`: sends the held view's reads again once the commits it overlapped
    /// that the round `step` takes in have been answered: their answers (and when they were
    /// sent and answered) by seq, and whether the wait reached the round's end (it stops at
    /// this session's own next commit point); or `None` when that could not be done.
    async fn read_again(&mut self, held: &[Answered], step: Round) -> Option<(Rereads, bool)> {
        let until_us = step.until_us;
        let shared = self.shared.clone();
        let order = shared.order.as_ref()?;
        let view = held.first()?;
        let again = self.view_statements(held)?;
        if self.held_txn {
            if let Err(why) = self.rollback().await {
                self.reread_failed(&format!("ROLLBACK: {why}"));
                return None;
            }
        }
        let (session, clone) = (self.start.session, self.clone);
        let until = order
            .commits
            .until_own(clone, session, view.x.end_us, until_us);
        let reached = until >= until_us;
        let stuck = |s, at_once| order.gives_way(session, clone, s, at_once);
        let rows = self.view_rows.clone();
        // The commits that started after the view ended wait for it (see `hold_view`).
        order
            .commits
            .wait_started_before(
                clone,
                until,
                step.started_before_us.min(view.x.end_us),
                &rows,
                shared.config.sync_timeout,
                &stuck,
            )
            .await;
        order.done_waiting(session, clone);
        let mut out = FxHashMap::default();
        for y in &again {
            let r = match self.send_again(y).await {
                Ok(answer) => {
                    out.insert(y.seq, answer);
                    continue;
                }
                Err(r) => r,
            };
            // Not the transaction it was: the first answers stand.
            self.txn = None;
            if self.held_txn {
                let why = match &r {
                    Response::Err(e) => {
                        format!("error {}: {}", e.code, String::from_utf8_lossy(&e.message))
                    }
                    r => r.kind_name().to_string(),
                };
                self.reread_failed(&format!("exchange {} sent again: {why}", y.seq));
            }
            return None;
        }
        Some((out, reached))
    }

    /// Sends a read of a held view again (pinned as before): its answer, what followed it, when
    /// it was sent and answered; or the answer when it is an error or none.
    async fn send_again(
        &mut self,
        y: &Recorded,
    ) -> Result<(Response, Vec<Response>, u64, u64), Response> {
        self.pin(y).await;
        let sent = self.now_us();
        let (r, m) = self.execute(y).await;
        let end = self.now_us();
        self.unsent_pins();
        self.pipe_refused = false;
        match r {
            Response::Err(_) | Response::Missing(_) | Response::Skipped(_) => Err(r),
            r => Ok((r, m, sent, end)),
        }
    }

    /// What reads the held view again: its transaction's statements so far, when they only
    /// read; or the autocommit read.
    fn view_statements(&self, held: &[Answered]) -> Option<Vec<Arc<Recorded>>> {
        let view = held.first()?;
        if self.held_txn {
            let txn = self.txn.clone()?;
            let only_reads = txn.iter().all(|y| {
                self.sql_of(&y.command)
                    .is_some_and(|s| is_read_only(s) && !takes_locks(s))
            });
            only_reads.then_some(txn)
        } else {
            match &view.x {
                Handed::Shared(r) => Some(vec![r.clone()]),
                Handed::Own(_) => None,
            }
        }
    }

    /// `--sync-spare`: whether the view point `x` is also taken on the spare connection: an
    /// order-ambiguous plain read that runs after a commit it overlapped (one that ended
    /// before it did in the recording).
    fn takes_spare_view(&self, x: &Recorded, class: Class) -> bool {
        let cfg = &self.shared.config;
        cfg.sync_spare
            && cfg.sync_reread
            && class.view
            && !class.locks
            && !self.carried.is_off()
            && x.rows_digest.is_some()
            && self
                .view_overlapped
                .first()
                .is_some_and(|&(e, _)| e < x.end_us)
    }

    /// `--sync-spare`: before the view point `x`, which the replay runs after commits it
    /// overlapped in the recording, the view as it was before them, on the spare connection:
    /// once the commits that ended before `x` started have run here, `START TRANSACTION WITH
    /// CONSISTENT SNAPSHOT` there. No commit waits for it, so the view it gets lies between
    /// that lower bound and the one the replay's rule gives `x`: where production's lay when
    /// production did not see some of those commits (re-read rounds only go later). Read
    /// there only when `x`'s view turns out not to be production's (see [`Worker::settle`]).
    async fn snapshot_early(&mut self, x: &Recorded, rows: &Arc<Rows>) {
        let shared = self.shared.clone();
        let Some(order) = &shared.order else {
            return;
        };
        let (session, clone) = (self.start.session, self.clone);
        let stuck = |s, at_once| order.gives_way(session, clone, s, at_once);
        let waited = order
            .commits
            .wait(clone, x.start_us, rows, shared.config.sync_timeout, &stuck)
            .await;
        order.done_waiting(session, clone);
        // Once the commits it overlapped that ended before it have all run here, an earlier
        // view is the replay's own.
        if waited != Waited::Ready
            || !order
                .commits
                .pending_between(clone, session, x.start_us, x.end_us)
        {
            return;
        }
        let Some(mut spare) = self.ready_spare().await else {
            return;
        };
        // Sent without waiting for the answer (read when the connection is used next): the
        // server takes the view as it reads the command, and the session goes on to its
        // own view meanwhile.
        let sent = spare
            .send(b"START TRANSACTION WITH CONSISTENT SNAPSHOT", &mut self.buf)
            .await;
        self.spare = Some(spare);
        match sent {
            Ok(()) => {
                if let Some(s) = self.spare.as_mut() {
                    (s.view, s.open) = (Some(x.seq), true);
                }
                shared
                    .progress
                    .spare_snapshots
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => self.spare_failed(&format!(
                "START TRANSACTION WITH CONSISTENT SNAPSHOT: {why}"
            )),
        }
    }

    /// The spare connection, connected, and given the session's database, `SET`s and
    /// prepared statements; `None` when that cannot be (then it is not used again).
    async fn ready_spare(&mut self) -> Option<Spare> {
        if self.carried.is_off() || self.conn.is_none() {
            return None;
        }
        let (mut spare, fresh) = match self.spare.take() {
            Some(mut s) if s.conn.is_some() => {
                if let Err(why) = s.answered().await {
                    self.spare_failed(&why);
                    return None;
                }
                (s, false)
            }
            _ => {
                let own = (self.conn.take(), std::mem::take(&mut self.stmts));
                let connected = self.connect().await;
                let conn = self.conn.take();
                (self.conn, self.stmts) = own;
                self.lock_conn();
                if let Err(e) = connected {
                    self.spare_failed(&format!("could not connect: {e}"));
                    return None;
                }
                (Spare::new(conn, self.current_db.clone()), true)
            }
        };
        let variables = if fresh {
            self.variables.clone()
        } else {
            Vec::new()
        };
        let db = self.current_db.clone();
        let use_db = (spare.db != db).then(|| db.clone()).flatten();
        let sets = self.carried.take_ungiven(fresh);
        let stmts: Vec<(u32, Vec<u8>)> = self
            .stmts
            .iter()
            .filter(|(id, _)| !spare.stmts.contains_key(id))
            .map(|(id, st)| (*id, st.sql.clone()))
            .collect();
        self.swap_spare(&mut spare);
        let brought = self
            .bring_up(&variables, use_db.as_deref(), &sets, &stmts)
            .await;
        self.swap_spare(&mut spare);
        for (id, _) in &stmts {
            // Prepared on the session's own connection whatever the spare answered.
            self.stmt_sql.remove(id);
        }
        match brought {
            Ok(()) => {
                spare.db = db;
                Some(spare)
            }
            Err(why) => {
                self.spare_failed(&why);
                None
            }
        }
    }

    /// On the connection in use (the spare's, swapped in): backfilled `variables`, the
    /// database `db`, the session's `sets`, then its statements `stmts`.
    async fn bring_up(
        &mut self,
        variables: &[(Vec<u8>, Vec<u8>)],
        db: Option<&str>,
        sets: &[Vec<u8>],
        stmts: &[(u32, Vec<u8>)],
    ) -> Result<(), String> {
        self.set_variables(variables, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(db) = db {
            let q = format!("USE `{}`", db.replace('`', "``"));
            self.simple(q.as_bytes())
                .await
                .map_err(|e| format!("{q}: {e}"))?;
        }
        for q in sets {
            self.simple(q)
                .await
                .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(q)))?;
        }
        for (id, sql) in stmts {
            match self.prepare(Some(*id), sql).await {
                Ok((Response::Prepared(_), _)) => {}
                Ok((r, _)) => return Err(format!("PREPARE answered {}", r.kind_name())),
                Err(e) => return Err(format!("PREPARE: {e}")),
            }
        }
        Ok(())
    }

    /// Swaps the connection in use (and its statements) with the spare's.
    fn swap_spare(&mut self, spare: &mut Spare) {
        std::mem::swap(&mut self.conn, &mut spare.conn);
        std::mem::swap(&mut self.stmts, &mut spare.stmts);
    }

    /// The candidate's lock waits name this session by the connection it uses now.
    fn lock_conn(&self) {
        let waits = self
            .shared
            .order
            .as_ref()
            .and_then(|o| o.lock_waits.as_ref());
        if let (Some(l), Some(c)) = (waits, &self.conn) {
            l.connected(c.connection_id, (self.start.session, self.clone));
        }
    }

    /// The spare connection failed: counted, noted, and not used again by this session.
    fn spare_failed(&mut self, why: &str) {
        self.carried.turn_off();
        self.spare = None;
        self.shared
            .progress
            .spare_failed
            .fetch_add(1, Ordering::Relaxed);
        self.shared.note_error(format!(
            "session {}: its spare connection (--sync-spare) failed: {why}; it is not used \
             again",
            self.start.session
        ));
    }

    /// `--sync-spare`: the held view's reads sent again on the spare connection, in the
    /// earlier view it took for them (see [`Worker::snapshot_early`]); `None` when it holds
    /// none for this view, or they could not be read there.
    async fn read_on_spare(&mut self, held: &[Answered]) -> Option<Rereads> {
        let view = held.first()?;
        if self.spare.as_ref()?.view != Some(view.x.seq) {
            return None;
        }
        let again = self.view_statements(held)?;
        let mut spare = self.spare.take()?;
        spare.view = None;
        if let Err(why) = spare.answered().await {
            self.spare_failed(&why);
            return None;
        }
        self.shared
            .progress
            .spare_reads
            .fetch_add(1, Ordering::Relaxed);
        self.swap_spare(&mut spare);
        let mut out = FxHashMap::default();
        let mut read = true;
        for y in &again {
            // The spare's transaction is the view: a BEGIN would end it.
            if self.sql_of(&y.command).is_some_and(opens_transaction) {
                continue;
            }
            match self.send_again(y).await {
                Ok(answer) => out.insert(y.seq, answer),
                Err(_) => {
                    read = false;
                    break;
                }
            };
        }
        self.swap_spare(&mut spare);
        self.spare = Some(spare);
        read.then_some(out)
    }

    /// `--sync-spare`: ends the spare connection's transaction, if one is open (a `ROLLBACK`
    /// whose answer is read when the connection is used next). Left open, the next view's
    /// `START TRANSACTION` ends it (a `ROLLBACK` after every view cost 12 k statements and a
    /// tenth of the replay's time at 32 threads); ended when the session waits long for
    /// its next exchange, as an open view holds back the candidate's purge.
    async fn close_spare_view(&mut self) {
        let Some(mut spare) = self.spare.take() else {
            return;
        };
        spare.view = None;
        if std::mem::take(&mut spare.open) {
            if let Err(why) = spare.send(b"ROLLBACK", &mut self.buf).await {
                self.spare_failed(&format!("ROLLBACK: {why}"));
                return;
            }
        }
        self.spare = Some(spare);
    }

    /// `--sync-spare`: the earlier view on the spare connection stands for the held
    /// transaction: its transaction on the session's connection is rolled back, and the
    /// session goes on on the spare connection (the other one becomes its spare).
    async fn adopt_spare(&mut self) {
        if let Err(why) = self.rollback().await {
            self.reread_failed(&format!("ROLLBACK: {why}"));
        }
        let Some(mut spare) = self.spare.take() else {
            return;
        };
        self.swap_spare(&mut spare);
        spare.db = self.current_db.clone();
        self.carried.all_given();
        spare.open = false;
        self.spare = Some(spare);
        self.lock_conn();
    }

    /// Keeps what a second connection of the session would need to answer as this one does
    /// after `sql` ran on it (see [`Carried::note`]). `prepared`: a statement's text, not run
    /// yet.
    fn session_state(&mut self, sql: &[u8], prepared: bool) {
        if self.keeps_spare() && self.carried.note(sql, prepared).is_some() {
            self.unshared();
        }
    }

    /// The session keeps state a spare connection cannot share (a changed user, a reset
    /// connection).
    fn unshare(&mut self) {
        if self.keeps_spare() && !self.carried.is_off() {
            self.carried.turn_off();
            self.unshared();
        }
    }

    /// Whether the replay keeps a spare connection per session (`--sync` with `--sync-spare`).
    fn keeps_spare(&self) -> bool {
        self.shared.config.sync_spare && self.shared.order.is_some()
    }

    /// The session's spare was turned off by state it cannot share: closed, and counted.
    fn unshared(&mut self) {
        self.spare = None;
        self.shared
            .progress
            .spare_unshared
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A transaction rolled back to be read again could not be (see
    /// [`crate::Progress::rereads_failed`]): counted, and noted with `why`.
    fn reread_failed(&self, why: &str) {
        self.shared
            .progress
            .rereads_failed
            .fetch_add(1, Ordering::Relaxed);
        self.shared.note_error(format!(
            "session {}: a transaction rolled back to be read again (--sync-reread) could not \
             be: {why}; its first answers stand",
            self.start.session
        ));
    }

    /// Sends `ROLLBACK`; why not, when the target did not take it.
    async fn rollback(&mut self) -> Result<(), String> {
        self.simple(b"ROLLBACK").await
    }

    /// Sends the text statement `q`; why not, when the target did not answer OK.
    async fn simple(&mut self, q: &[u8]) -> Result<(), String> {
        self.buf.clear();
        self.buf.push(command::Code::Query.byte());
        self.buf.extend_from_slice(q);
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        match conn.command(&self.buf).await {
            Ok((Response::Ok(_), _)) => Ok(()),
            Ok((Response::Err(e), _)) => Err(format!(
                "error {}: {}",
                e.code,
                String::from_utf8_lossy(&e.message)
            )),
            Ok((r, _)) => Err(r.kind_name().to_string()),
            Err(e) => {
                self.conn = None;
                Err(format!("connection lost: {e}"))
            }
        }
    }

    /// The server went away.
    fn lose(&mut self, lost: Lost) {
        self.conn = None;
        self.shared.progress.lost.fetch_add(1, Ordering::Relaxed);
        self.shared.note_error(format!(
            "session {}: connection lost: {lost}",
            self.start.session
        ));
    }

    /// The SQL a command runs, for filters: its own, or its statement's.
    fn sql_of<'a>(&'a self, cmd: &'a Command) -> Option<&'a [u8]> {
        sql_of(&self.stmts, &self.stmt_sql, cmd)
    }

    fn filter(&self, cmd: &Command) -> Option<SkipReason> {
        let cfg = &self.shared.config;
        if let Command::Execute {
            prepare_seen: false,
            ..
        } = cmd
        {
            return Some(SkipReason::UnknownStatement);
        }
        if !cfg.read_only && cfg.include.is_none() && cfg.exclude.is_none() {
            return None;
        }
        let sql = self.sql_of(cmd);
        if let Some(sql) = sql {
            let regex = cfg.include.is_some() || cfg.exclude.is_some();
            let text = if regex {
                String::from_utf8_lossy(sql)
            } else {
                std::borrow::Cow::Borrowed("")
            };
            if cfg.include.as_ref().is_some_and(|r| !r.is_match(&text))
                || cfg.exclude.as_ref().is_some_and(|r| r.is_match(&text))
            {
                if matches!(cmd, Command::Prepare { .. }) {
                    return None; // keep the statement: its executes are filtered one by one
                }
                return Some(SkipReason::Filtered);
            }
            if cfg.read_only && !matches!(cmd, Command::Prepare { .. }) && !is_read_only(sql) {
                return Some(SkipReason::Filtered);
            }
        }
        if cfg.read_only
            && matches!(
                cmd,
                Command::SendLongData { .. } | Command::ProcessKill { .. } | Command::Other { .. }
            )
        {
            return Some(SkipReason::Filtered);
        }
        None
    }

    /// The target's id for a recorded statement id.
    fn target_stmt(&self, recorded: u32) -> Option<u32> {
        self.stmts.get(&recorded).map(|s| s.target_id)
    }

    /// Sends one command as the recorded client sent it (statement ids mapped to the
    /// target's) and reads the answer.
    /// `prepared_id`: a PREPARE's recorded statement id.
    async fn send(&mut self, cmd: &Command, prepared_id: Option<u32>) -> Result<Answer, Lost> {
        let skipped = |r: SkipReason| Ok((Response::Skipped(r), vec![]));
        // The target's id of the statement a command names.
        let mut stmt = match cmd {
            Command::Execute { stmt_id, .. }
            | Command::Fetch { stmt_id, .. }
            | Command::SendLongData { stmt_id, .. }
            | Command::ResetStmt { stmt_id } => match self.target_stmt(*stmt_id) {
                Some(id) => Some(id),
                None => return skipped(SkipReason::UnknownStatement),
            },
            _ => None,
        };
        match cmd {
            Command::Prepare { sql } => return self.prepare(prepared_id, sql).await,
            Command::ChangeUser { user, db } => {
                return self.change_user(user, db.as_deref()).await;
            }
            Command::Quit => {
                if let Some(c) = self.conn.take() {
                    c.quit().await;
                }
                return Ok((Response::None, vec![]));
            }
            // PROCESS_KILL names a connection of the recorded server; other codes were
            // recorded without their bytes.
            Command::ProcessKill { .. } | Command::Other { .. } => {
                return skipped(SkipReason::Unsupported(cmd.name().to_string()));
            }
            Command::CloseStmt { stmt_id } => {
                self.stmt_sql.remove(stmt_id);
                match self.stmts.remove(stmt_id) {
                    Some(closed) => stmt = Some(closed.target_id),
                    None => return Ok((Response::None, vec![])),
                }
            }
            Command::ResetStmt { stmt_id } => {
                // Types go with the next EXECUTE again, whatever the server kept.
                if let Some(s) = self.stmts.get_mut(stmt_id) {
                    s.types.clear();
                }
            }
            _ => {}
        }
        let mut no_types = Vec::new();
        let sent_types = match cmd {
            Command::Execute {
                stmt_id,
                params,
                raw_params,
                ..
            } => match self.stmts.get_mut(stmt_id) {
                Some(s) if params.is_empty() => {
                    // Sent as recorded: values in the types the recorded client bound. With
                    // no types in it, they are the ones bound before the recording, unless
                    // this replay bound some: the target would refuse or misread the values.
                    match backfill::types_bound(raw_params, s.params) {
                        Some(false) if !s.bound => return skipped(SkipReason::TypesNotSent),
                        Some(true) => {
                            s.bound = true;
                            s.types.clear();
                            if let Some(t) = backfill::bound_types(raw_params, s.params) {
                                s.types.extend_from_slice(t);
                            }
                        }
                        _ => {}
                    }
                    &mut s.types
                }
                Some(s) => {
                    // Types go with the first EXECUTE, and with any whose types changed.
                    s.bound = true;
                    &mut s.types
                }
                None => &mut no_types,
            },
            _ => &mut no_types,
        };
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        if let Err(e) = command::encode(cmd, stmt, sent_types, &mut b) {
            self.buf = b;
            return skipped(SkipReason::Unsupported(e.to_string()));
        }
        if let (Some(prefix), Command::Query { .. }) = (self.pin_prefix.take(), cmd) {
            // After the command byte: `SET STATEMENT … FOR ` then the statement.
            b.splice(1..1, prefix.into_bytes());
        }
        let pipe = self.pin_pipe.take().map(|q| {
            let mut set = vec![command::Code::Query.byte()];
            set.extend_from_slice(q.as_bytes());
            (q, set)
        });
        let sent = match self.conn.as_mut() {
            Some(conn) => {
                // The pin and the statement back to back, in one write: the server answers
                // them in order.
                match &pipe {
                    Some((_, set)) => conn.send_commands(&[set, &b]).await,
                    None => conn.send_command(&b).await,
                }
            }
            None => Err(Lost::NotConnected),
        };
        self.buf = b;
        sent?;
        // The server is at work: the previous exchange's bookkeeping costs no latency now.
        self.hand_over().await;
        if let Some((q, _)) = &pipe {
            let set = match self.conn.as_mut() {
                Some(conn) => conn.read_answer().await,
                None => Err(Lost::NotConnected),
            }?;
            if !self.pin_taken(&set.0, q) {
                // The statement ran unpinned.
                self.pipe_refused = true;
                let p = &self.shared.progress;
                p.pins.fetch_sub(1, Ordering::Relaxed);
                p.pins_batched.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let answer = match self.conn.as_mut() {
            Some(conn) => conn.read_answer().await,
            None => Err(Lost::NotConnected),
        }?;
        self.after(cmd, &answer.0);
        Ok(answer)
    }

    /// What a command changed in the session that a reconnect must restore.
    fn after(&mut self, cmd: &Command, first: &Response) {
        if matches!(first, Response::Err(_)) {
            // The server may have kept only part of the types of a refused EXECUTE.
            if let Command::Execute { stmt_id, .. } = cmd {
                if let Some(s) = self.stmts.get_mut(stmt_id) {
                    s.types.clear();
                }
            }
            return;
        }
        match cmd {
            Command::InitDb { db } => {
                self.current_db = Some(String::from_utf8_lossy(db).into_owned());
            }
            Command::Query { sql, .. } => {
                if let Some(db) = crate::readonly::use_target(sql) {
                    self.current_db = Some(db);
                }
                self.session_state(sql, false);
            }
            Command::Prepare { sql } => self.session_state(sql, true),
            Command::ChangeUser { .. } => self.unshare(),
            Command::ResetConnection => {
                self.unshare();
                // The server forgets the session's statements and variables.
                self.stmts.clear();
                self.variables.clear();
                self.deferred = None;
            }
            _ => {}
        }
    }

    async fn change_user(&mut self, user: &[u8], db: Option<&[u8]>) -> Result<Answer, Lost> {
        let recorded = String::from_utf8_lossy(user).into_owned();
        let (u, p) = self.shared.config.target.credentials_for(Some(&recorded));
        let db = db.map(|d| String::from_utf8_lossy(d).into_owned());
        let Some(conn) = self.conn.as_mut() else {
            return Err(Lost::NotConnected);
        };
        let answer = conn
            .change_user(u.as_deref().unwrap_or(""), p.as_deref(), db.as_deref())
            .await?;
        if !matches!(answer.0, Response::Err(_)) {
            self.user = Some(recorded);
            self.current_db = db;
            self.stmts.clear();
            self.variables.clear();
            self.deferred = None;
        }
        Ok(answer)
    }
}

/// A fault injected for tests: `MYRR_FAILPOINT_PANIC=SESSION:SEQ` makes that session's task
/// panic as it takes exchange SEQ (see [`supervised`]). Read once per run.
pub(crate) const FAILPOINT_PANIC: &str = "MYRR_FAILPOINT_PANIC";

fn failpoint_panics(session: u64, seq: u64) -> bool {
    static AT: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        let v = std::env::var(FAILPOINT_PANIC).ok()?;
        let (s, q) = v.split_once(':')?;
        Some((s.parse().ok()?, q.parse().ok()?))
    });
    *at == Some((session, seq))
}

/// Runs a session task. A panic in it (a bug in myrr) ends that session only: the replay
/// goes on without it instead of losing the thread's other sessions or waiting, at every
/// turn, for commit points that will never be answered. Its points are released; what it
/// had answered is written (see `Worker`'s `Drop`); the exchange it was working on and the
/// ones handed to it afterwards are counted (`Progress::abandoned`), so that every exchange
/// of the session is either in the run or counted; the session ends as
/// [`EndReason::Lost`]; and the panic's message becomes one of the run's errors.
pub(crate) async fn supervised(worker: Worker, mut rx: mpsc::UnboundedReceiver<Batch>) {
    use futures_util::FutureExt;
    let (shared, session, clone) = (worker.shared.clone(), worker.start.session, worker.clone);
    let mut task = Task::new();
    let run = std::panic::AssertUnwindSafe(worker.run(&mut rx, &mut task));
    let Err(panic) = run.catch_unwind().await else {
        return;
    };
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    if let Some(order) = &shared.order {
        order.session_lost(session, clone);
    }
    let p = &shared.progress;
    p.sessions_failed.fetch_add(1, Ordering::Relaxed);
    let left: Vec<Work> = task.inbox.by_ref().collect();
    shared.budget.add_permits(left.len());
    p.abandoned.fetch_add(
        left.len() as u64 + u64::from(task.in_flight),
        Ordering::Relaxed,
    );
    if let Some(order) = &shared.order {
        for w in left {
            order.release(clone, w.keys);
        }
    }
    if task.active {
        p.sessions_active.fetch_sub(1, Ordering::Relaxed);
        shared
            .events
            .send(Event::SessionEnd(SessionEnd {
                session,
                end_us: shared.clock.now_us(),
                reason: EndReason::Lost,
                login: Login::Unknown,
                exchanges: task.exchanges,
            }))
            .await;
    }
    shared.note_error(format!(
        "session {session}: internal error, please report it (a bug in myrr: {what}); the \
         session was abandoned, and its exchanges from there on are not replayed"
    ));
    while let Some(batch) = rx.recv().await {
        shared.budget.add_permits(batch.len());
        p.abandoned.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Some(order) = &shared.order {
            for w in batch {
                order.release(clone, w.keys);
            }
        }
    }
}

/// Whether an answer's rows are not the recorded ones (a read recorded with rows).
fn differs_from_recorded(x: &Recorded, r: &Response) -> bool {
    match (x.rows_digest, r) {
        (Some(d), Response::Rows(rs)) => rs.digest != d,
        (Some(_), _) => true,
        (None, _) => false,
    }
}

/// `--sync-reread`: how long a session that holds a view's answers waits for its next
/// exchanges before the commits held for it go on.
const HOLD_IDLE: Duration = Duration::from_millis(2);

/// `--sync-reread`: most rounds of reading an order-ambiguous view again.
pub(crate) const REREAD_ROUNDS: usize = 4;

/// `--sync-reread`: what a round of reading a view again waits for: the commits that ended
/// before `until_us` and started before `started_before_us` (recorded µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Round {
    pub(crate) until_us: u64,
    pub(crate) started_before_us: u64,
}

/// `--sync-reread`: the rounds of reading a view again: each takes in one more of the commits
/// it overlapped that ended after the view point did (`view_end`), by their recorded starts
/// — the nearest [`REREAD_ROUNDS`] − 1 of them, and the last. By starts, not ends: a commit
/// is visible once InnoDB has committed it in memory, before its log flush (group commit)
/// and its answer. Measured at 32 threads: 0.54–0.59 % not reproduced against 0.59–0.60 % by
/// ends, with fewer rounds (benches/RESULTS.md, 2026-12-07 21:59).
pub(crate) fn reread_steps(overlapped: &[crate::sync::Overlap], view_end: u64) -> Vec<Round> {
    let later: Vec<_> = overlapped.iter().filter(|&&(e, _)| e > view_end).collect();
    let mut starts: Vec<u64> = later.iter().map(|&&(_, s)| s + 1).collect();
    starts.sort_unstable();
    starts.dedup();
    if starts.len() > REREAD_ROUNDS {
        starts.drain(REREAD_ROUNDS - 1..starts.len() - 1);
    }
    starts
        .into_iter()
        .map(|started_before_us| Round {
            // Past the last to end of those it takes in.
            until_us: later
                .iter()
                .filter(|&&&(_, s)| s < started_before_us)
                .map(|&&(e, _)| e + 1)
                .max()
                .unwrap_or(view_end),
            started_before_us,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_read_again_past_each_later_commit_it_overlapped_by_start_up_to_the_last() {
        let rounds = |o: &[(u64, u64)]| -> Vec<(u64, u64)> {
            reread_steps(o, 10)
                .into_iter()
                .map(|r| (r.until_us, r.started_before_us))
                .collect()
        };
        assert_eq!(rounds(&[]), vec![]);
        // Ended before the view did: the view saw them already.
        assert_eq!(rounds(&[(5, 1), (9, 2)]), vec![]);
        // The one that ended last started first.
        assert_eq!(rounds(&[(5, 1), (12, 7), (20, 3)]), vec![(21, 4), (21, 8)]);
        assert_eq!(
            rounds(&[(11, 6), (12, 5), (13, 4), (14, 3), (15, 2), (16, 1)]),
            vec![(17, 2), (17, 3), (17, 4), (17, 7)]
        );
        assert_eq!(
            rounds(&[(11, 1), (12, 2), (30, 3), (14, 4)]),
            vec![(12, 2), (13, 3), (31, 4), (31, 5)]
        );
    }
}
