//! myrr-replay: re-issue recorded sessions against a candidate server.
//!
//! [`run`] streams one or more recordings (merged by time), starts one tokio task and one real
//! connection per recorded session (times `--scale`, for this `--shard`), paces
//! each session's commands on the recorded timeline (or as fast as answers come with
//! [`Speed::Max`]), and writes what the candidate answered as a replay run in the recording
//! format. Memory stays bounded: events are streamed, the exchanges queued for sessions are
//! bounded over all sessions, result rows are digested as they arrive.
//!
//! Threads: the dispatcher (reading the recordings) runs on the caller's runtime; sessions
//! run on a pool of single-threaded runtimes, a thread per session up to `session_threads`
//! (module `pool`); events go to the output through a queue a writer thread drains (module
//! `outbox`). Nothing wakes another thread per exchange in a closed loop.
//!
//! Sessions speak the protocol themselves (module `wire`): handshake and authentication through
//! `mysql_common`, answers read by the capture's own decoder, so a replayed answer is decoded
//! and digested by the code that decoded the recorded one, and every command the capture
//! records can be sent as recorded (`mysql_async` has no API for COM_STMT_RESET,
//! SEND_LONG_DATA, FIELD_LIST, STATISTICS or SET_OPTION, and builds a `Row` of owned values
//! per row, which cost twice sysbench's client CPU per query). `mysql_async` only parses the
//! `--target` URL; the preflight logs in with the sessions' own client.
//!
//! Sessions that began before the recording (mid-stream) are restored from their backfills
//! before their next exchange (statements prepared under their recorded ids, session
//! variables set); those whose database nobody knows are refused before the target hears
//! from the replay, unless a database is configured. Every exchange not sent is counted by
//! its [`SkipReason`] ([`Summary::skipped_by`]).
//!
//! Main types: [`ReplayConfig`], [`Target`] (where and as whom), [`Progress`] (live counters),
//! [`Summary`] (the outcome).

mod backfill;
mod dispatch;
mod divergence;
mod follow;
mod footprint;
mod handover;
mod locks;
mod outbox;
mod pacer;
mod pacing;
mod pool;
pub mod ramp;
mod readonly;
mod sched;
mod schema;
mod session;
mod spare;
mod sync;
mod tls;
mod txn_rows;
mod waiting;
pub use sync::{SyncMode, WriteOrder};
pub use tls::{Tls, TlsMode};
pub mod target;
pub(crate) use handover::Batch;
pub use sched::{Policy, Sched};
mod wire;

pub use ramp::Ramp;
pub use readonly::{first_keyword, is_read_only, write_target};
pub use target::Target;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use myrr_recording::{
    event_time, Event, FormatError, Header, RecordingReader, RecordingWriter, Response, RunKind,
    SkipReason, LEVEL_FAST,
};

/// Logins in progress at once, over all sessions.
const LOGIN_SLOTS: usize = 32;

/// Output events a session thread may have queued for the writer (see `outbox`): 2 Ki events of
/// a few hundred bytes each, on each of up to 64 threads by default.
const OUTPUT_SHARD: usize = 2048;

/// Replay pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Recorded think times divided by this factor.
    Factor(f64),
    /// Closed loop: each session sends its next command as soon as the previous answered.
    Max,
}

#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub inputs: Vec<PathBuf>,
    pub target: Target,
    pub output: PathBuf,
    pub speed: Speed,
    /// Clones of every session.
    pub scale: u32,
    /// Clone k starts k × stagger after the original.
    pub stagger: Duration,
    /// (index, count): replay only sessions with `session % count == index`.
    pub shard: (u32, u32),
    pub read_only: bool,
    pub include: Option<regex::Regex>,
    pub exclude: Option<regex::Regex>,
    /// Stop after this many recorded exchanges.
    pub limit_exchanges: Option<u64>,
    /// Stop after this much recorded time.
    pub limit_duration: Option<Duration>,
    /// Database for sessions whose recording has none (mid-stream sessions).
    pub default_db: Option<String>,
    /// Replay the readable part of a damaged recording instead of refusing it.
    pub ignore_damage: bool,
    /// How long a session keeps trying to reconnect after the server went away.
    pub reconnect_wait: Duration,
    /// After a stop request, how long in-flight exchanges may take to finish.
    pub drain_timeout: Duration,
    /// Exchanges read ahead of their time, over all sessions. Queues are per session and
    /// unbounded each: one session blocked in the server (on a lock another session holds)
    /// must never stop the others from getting their next commands.
    pub queue: usize,
    /// Paced replay reads the recording at most this far ahead of the replay clock.
    pub read_ahead: Duration,
    /// Keep the recorded commit order across sessions.
    pub sync: SyncMode,
    /// Longest an exchange waits for earlier commits before it goes anyway.
    pub sync_timeout: Duration,
    /// Under `sync`, the other direction too: a commit waits for the reads that had finished
    /// before it started (they must not see it; see `sync`).
    pub sync_views: bool,
    /// Under `sync`, an exchange waits only for the earlier commits (and a commit only for
    /// the earlier reads) whose rows it may share (see `txn_rows`).
    pub sync_rows: bool,
    /// Under `sync`, a write waits for the other sessions' writes that had finished before it
    /// started (each row's, or all: row locks are taken in production's order).
    pub sync_writes: WriteOrder,
    /// Under `sync`, a write or locking read answered while another session's commit was
    /// finishing also waits for that commit (it was most likely woken by its lock release;
    /// see `sync::CommitOrder::released_by`).
    pub sync_locks: bool,
    /// Under `sync`, a transaction lost to a deadlock on one side only ends as production's
    /// did: rolled back here too when production lost it, sent again when the target lost it
    /// and production did not (see `session::Worker::follow_deadlock`).
    pub sync_deadlocks: bool,
    /// Under `sync`, a read of an order-ambiguous view whose rows are not production's is
    /// read again after the commits it overlapped (see `session::Worker::reread`).
    pub sync_reread: bool,
    /// Under `sync_reread`, an order-ambiguous view that ran after commits it overlapped is
    /// also taken on a spare connection before them, to be read there when its rows are not
    /// production's (see `session::Worker::snapshot_early`).
    pub sync_spare: bool,
    /// Under `sync`, ask the candidate for its lock waits to tell an order wait that closes a
    /// circle with them (give way at once) from a long but legitimate lock wait (keep waiting);
    /// without it, or when the candidate cannot say, a session long in the server is taken to
    /// be in such a circle (see `locks`).
    pub sync_lock_waits: bool,
    /// Pin what production's statements saw: before a write, or a read calling a time
    /// function, the session sets `timestamp` to the statement's recorded start and, when the
    /// recorded statement generated an AUTO_INCREMENT id, `insert_id` to it.
    pub pin: bool,
    /// `pin` on a MariaDB target: after a session's first pin, a text statement carries its
    /// pins (`SET STATEMENT … FOR`) instead of a `SET` round trip before it.
    pub pin_batch: bool,
    /// Keep the first rows (bounded: see `myrr_recording::sample`) of the first
    /// `DIFFERING_PER_SHAPE` answers of each statement shape whose rows differ from the
    /// recorded answer's, as a `RowSample` after its exchange.
    pub row_samples: bool,
    /// TLS to the target.
    pub tls: Tls,
    /// Threads that run the sessions (each its own single-threaded runtime); 1: the caller's.
    pub session_threads: usize,
    /// Scheduling policy of the replay's threads (see [`Sched`]).
    pub sched: Sched,
    /// The run numbers this replay's clones from here (a ramp's steps follow each other in
    /// one run: see [`Ramp`]).
    pub clone_base: u32,
    /// Replay the recording once per step, at growing multiples of its load (`--ramp`).
    pub ramp: Option<Ramp>,
    /// When the recording's first instant is replayed (wall clock), so that the shards of
    /// a replay on several machines start together (`--start-at`); `None`: at once.
    pub start_at: Option<SystemTime>,
}

impl ReplayConfig {
    pub fn new(inputs: Vec<PathBuf>, target: Target, output: PathBuf) -> Self {
        Self {
            inputs,
            target,
            output,
            speed: Speed::Factor(1.0),
            scale: 1,
            stagger: Duration::from_millis(10),
            shard: (0, 1),
            read_only: false,
            include: None,
            exclude: None,
            limit_exchanges: None,
            limit_duration: None,
            default_db: None,
            ignore_damage: false,
            reconnect_wait: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            queue: 100_000,
            read_ahead: Duration::from_secs(2),
            sync: SyncMode::None,
            sync_timeout: Duration::from_secs(5),
            sync_views: true,
            sync_rows: false,
            sync_writes: WriteOrder::Rows,
            sync_locks: true,
            sync_deadlocks: true,
            sync_reread: true,
            sync_spare: true,
            sync_lock_waits: true,
            pin: false,
            pin_batch: true,
            row_samples: true,
            tls: Tls::default(),
            session_threads: 1,
            sched: Sched::Auto,
            clone_base: 0,
            ramp: None,
            start_at: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("{0}")]
    Target(String),
    /// Options that cannot go together, or a `--start-at` already past.
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the target {address}: {message}")]
    Preflight { address: String, message: String },
    #[error("{0}\n  (replay the readable part with --ignore-damage)")]
    Damaged(FormatError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}: nothing to replay (no sessions)")]
    Empty(String),
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
    /// Mid-stream sessions whose database nobody knows: the recording has none (no handshake,
    /// no backfill naming one) and neither the target URL nor `default_db` gives one. Most of
    /// their statements would fail with error 1046 (no database selected).
    #[error(
        "{sessions} mid-stream session(s) have no database (e.g. {example}): the recording \
         does not say which, and the target URL names none; give one with --default-db DB \
         (or in the URL: mysql://user@host:port/DB){when}"
    )]
    NoDatabase {
        sessions: u64,
        example: String,
        /// Empty when found before anything was sent; else how the replay stopped.
        when: String,
    },
}

/// Skip reasons, in the order summaries list them; one of each (names and explanations do not
/// depend on a reason's details).
pub fn skip_reasons() -> [SkipReason; SKIP_REASONS] {
    [
        SkipReason::UnknownStatement,
        SkipReason::TypesNotSent,
        SkipReason::Filtered,
        SkipReason::Unsupported(String::new()),
        SkipReason::NotConnected,
    ]
}

pub const SKIP_REASONS: usize = 5;

/// A reason's place in [`skip_reasons`].
fn skip_slot(r: &SkipReason) -> usize {
    match r {
        SkipReason::UnknownStatement => 0,
        SkipReason::TypesNotSent => 1,
        SkipReason::Filtered => 2,
        SkipReason::Unsupported(_) => 3,
        SkipReason::NotConnected => 4,
    }
}

/// Live counters, readable while the replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub sessions_active: AtomicU64,
    pub sessions_done: AtomicU64,
    pub exchanges: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
    /// `skipped` by reason, in the order of [`skip_reasons`].
    pub skipped_by: [AtomicU64; SKIP_REASONS],
    pub lost: AtomicU64,
    /// Session tasks that ended on an internal error (a panic: a bug in myrr), and the
    /// exchanges handed to them afterwards, not replayed (see `session::supervised`).
    pub sessions_failed: AtomicU64,
    pub abandoned: AtomicU64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Latest recorded timestamp reached (µs since the epoch).
    pub recorded_us: AtomicU64,
    /// Recorded timeline origin and end.
    pub recorded_start_us: AtomicU64,
    pub recorded_end_us: AtomicU64,
    /// Largest start lag since the last [`Progress::take_max_lag_us`].
    pub max_lag_us: AtomicU64,
    /// `--sync`: exchanges that stopped waiting for earlier commits after the timeout.
    pub sync_timeouts: AtomicU64,
    /// `--sync`: exchanges labelled (`OrderLabel`): reads that overlapped another session's
    /// commit in the recording, exchanges that ran out of the recorded order.
    pub order_ambiguous: AtomicU64,
    pub out_of_order: AtomicU64,
    /// `--sync`: exchanges labelled lock-conflict (a deadlock or lock wait timeout on one
    /// side only) and after-divergence (rows an earlier write left different).
    pub lock_conflicts: AtomicU64,
    /// `--sync-deadlocks`: transactions production lost to a deadlock rolled back here too;
    /// transactions the target lost sent again and taken; and those that could not be (no
    /// copy of the whole transaction, or lost again every time).
    pub deadlocks_undone: AtomicU64,
    pub deadlocks_retried: AtomicU64,
    pub deadlocks_not_retried: AtomicU64,
    /// `--sync-reread`: views read again, and those whose answer was then production's;
    /// transactions rolled back to be read again that could not be (the target refused the
    /// `ROLLBACK` or answered a read sent again with an error): the session then goes on in
    /// a transaction production did not have, and its first answers stand.
    pub rereads: AtomicU64,
    pub rereads_reproduced: AtomicU64,
    /// `--sync-reread`: rounds of reads sent again (a view may take several).
    pub reread_rounds: AtomicU64,
    pub rereads_failed: AtomicU64,
    /// `--sync-reread`: views whose answers were held back (the commits that started after
    /// them waited), and the time commits waited for such views (part of the sync waits).
    pub views_held: AtomicU64,
    pub held_wait_us: AtomicU64,
    /// `--sync-spare`: views also taken on a spare connection, those of them read there,
    /// and those whose answers were then production's (or closer to them); sessions whose
    /// spare connection failed (it is then not used again); sessions that kept no spare as
    /// they keep state a second connection cannot share (temporary tables, user variables,
    /// named locks, a prepared `SET`, over 64 distinct `SET`s, a changed user, a reset).
    pub spare_snapshots: AtomicU64,
    pub spare_reads: AtomicU64,
    pub spare_reproduced: AtomicU64,
    pub spare_failed: AtomicU64,
    pub spare_unshared: AtomicU64,
    pub after_divergence: AtomicU64,
    /// `--sync`: exchanges that stopped waiting because the earlier commit's session was
    /// blocked in the server (on a lock the waiting session most likely holds).
    pub sync_cycles: AtomicU64,
    /// `--sync`: µs the sessions spent waiting for earlier commits (and the reads before a
    /// commit), in waits that ended in order and in waits that gave way or timed out.
    pub sync_wait_us: AtomicU64,
    pub sync_wait_gave_way_us: AtomicU64,
    /// `--sync`: times the candidate was asked for its lock waits.
    pub lock_waits_asked: AtomicU64,
    /// Answers whose rows differed from the recorded and were kept (`row_samples`).
    pub row_samples: AtomicU64,
    /// Backfills applied (per session task: each clone applies its session's).
    pub backfills: AtomicU64,
    /// Backfilled statements prepared on the target, and those it refused.
    pub backfill_statements: AtomicU64,
    pub backfill_statements_failed: AtomicU64,
    /// Backfilled session variables set on the target, and those it refused.
    pub backfill_variables: AtomicU64,
    pub backfill_variables_rejected: AtomicU64,
    /// `--pin`: statements sent with pinned values, and sessions whose target refused a pin.
    pub pins: AtomicU64,
    /// Of `pins`, those carried in the statement itself (`SET STATEMENT … FOR`).
    pub pins_batched: AtomicU64,
    pub pins_refused: AtomicU64,
    /// Exchanges that started later than the ramp's `max_lag` after they were due, and
    /// those that failed where production's statement had not (`--ramp` judges both).
    pub late: AtomicU64,
    pub new_errors: AtomicU64,
    /// `--ramp`: the step running (from 1; 0 without a ramp), of how many, its multiple of
    /// the recorded load (× 1000), its clones and when it started (µs since the epoch).
    pub ramp_step: AtomicU64,
    pub ramp_steps: AtomicU64,
    pub ramp_multiple_milli: AtomicU64,
    pub ramp_clones: AtomicU64,
    pub ramp_started_us: AtomicU64,
}

/// One session's counts, timings and taken queue permits since it last handed them to
/// [`Shared`]: sessions run on many threads, and a lock plus five contended atomic updates per
/// exchange cost more than batching them (every [`Tally::BATCH`] exchanges, and whenever the
/// session is about to wait).
#[derive(Default)]
pub(crate) struct Tally {
    exchanges: u64,
    errors: u64,
    /// Errors where the recorded answer was none.
    new_errors: u64,
    /// By reason, in the order of [`skip_reasons`].
    skipped: [u64; SKIP_REASONS],
    pub(crate) permits: usize,
    recorded_us: u64,
    max_lag_us: u64,
    timings: Vec<(u64, u64)>,
    /// When the first exchange counted since the last hand-over ended (µs since the epoch).
    first_end_us: u64,
    last_end_us: u64,
}

impl Tally {
    pub(crate) const BATCH: usize = 32;
    /// Counts are handed over at least this often (a ramp judges them every second; a
    /// session that never waits, being behind, would otherwise hand them over only every
    /// [`Tally::BATCH`] exchanges, seconds apart on a slow candidate).
    pub(crate) const MAX_AGE_US: u64 = 200_000;

    pub(crate) fn count(
        &mut self,
        r: &Response,
        recorded_err: bool,
        recorded_us: u64,
        lag_us: u64,
        service_us: u64,
        end_us: u64,
    ) {
        if self.exchanges == 0 {
            self.first_end_us = end_us;
        }
        self.last_end_us = end_us;
        self.exchanges += 1;
        match r {
            Response::Err(_) => {
                self.errors += 1;
                self.new_errors += u64::from(!recorded_err);
            }
            Response::Skipped(r) => self.skipped[skip_slot(r)] += 1,
            _ => {}
        }
        self.recorded_us = self.recorded_us.max(recorded_us);
        self.max_lag_us = self.max_lag_us.max(lag_us);
        self.timings.push((lag_us, service_us));
    }

    pub(crate) fn full(&self) -> bool {
        self.timings.len() >= Self::BATCH
            || self.permits >= Self::BATCH
            || self.last_end_us.saturating_sub(self.first_end_us) >= Self::MAX_AGE_US
    }
}

impl Progress {
    pub fn take_max_lag_us(&self) -> u64 {
        self.max_lag_us.swap(0, Ordering::Relaxed)
    }

    /// What a ramp judges, so far.
    pub fn ramp_counts(&self) -> ramp::Counts {
        ramp::Counts {
            exchanges: self.exchanges.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            new_errors: self.new_errors.load(Ordering::Relaxed),
        }
    }
}

/// Wall clock anchored to a monotonic one, so timings never jump.
pub(crate) struct Clock {
    wall0_us: u64,
    t0: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall0_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            t0: Instant::now(),
        }
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.wall0_us + self.t0.elapsed().as_micros() as u64
    }

    pub(crate) fn us_at(&self, at: tokio::time::Instant) -> u64 {
        let at: Instant = at.into_std();
        self.wall0_us + at.saturating_duration_since(self.t0).as_micros() as u64
    }
}

/// What every session task shares.
pub(crate) struct Shared {
    pub(crate) config: ReplayConfig,
    pub(crate) progress: Arc<Progress>,
    pub(crate) clock: Clock,
    pub(crate) events: outbox::Outbox,
    stop: Arc<AtomicBool>,
    /// When each exchange is due, how many go at once, the queue budget.
    pub(crate) pacing: pacing::Pacing,
    timings: Mutex<Timings>,
    errors: Mutex<Vec<String>>,
    /// `--sync`: the recorded commit order and who is in the server.
    pub(crate) order: Option<sync::Order>,
    /// `row_samples`: the differing answers of each statement shape whose rows are kept
    /// (at most `DIFFERING_PER_SHAPE` a shape; see `session::Worker::sample_key`).
    pub(crate) samples: std::sync::Mutex<myrr_wire::conn::ShapeSampler>,
    /// Exchanges that may be queued for sessions, over all sessions.
    pub(crate) budget: tokio::sync::Semaphore,
    /// Logins in progress at once. A storm of thousands of sessions starting together, each
    /// on its own thread, left the server's single connection-acceptor thread one runnable
    /// thread among dozens: logins then took up to a second.
    pub(crate) logins: tokio::sync::Semaphore,
    /// What the replay's threads do (`--sched`).
    pub(crate) policy: Policy,
    /// Set once the replay gives up on the answers still due (a stop's `drain_timeout` is
    /// over): sessions waiting for one outside their runtime go back to waiting in it, where
    /// they can be dropped.
    pub(crate) abandon: Arc<AtomicBool>,
    /// An exchange that starts more than this after it was due is late (`--ramp`).
    late_after_us: u64,
    /// `--pin`: the candidate's tables whose writes can read the session's time (None: not
    /// known, every write is pinned).
    pub(crate) time_tables: Option<schema::TimeTables>,
    /// `--sync`: the rows this replay left different from production's, per clone.
    pub(crate) divergence: Option<Vec<divergence::Divergence>>,
}

struct Timings {
    lag: Histogram<u64>,
    service: Histogram<u64>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Hands a session's counts and timings to the shared ones (see [`Tally`]).
    pub(crate) fn flush(&self, t: &mut Tally) {
        let p = &self.progress;
        if t.permits > 0 {
            self.budget.add_permits(t.permits);
        }
        if !t.timings.is_empty() {
            p.max_lag_us.fetch_max(t.max_lag_us, Ordering::Relaxed);
            p.recorded_us.fetch_max(t.recorded_us, Ordering::Relaxed);
            let late = t
                .timings
                .iter()
                .filter(|(lag, _)| *lag > self.late_after_us)
                .count() as u64;
            if late > 0 {
                p.late.fetch_add(late, Ordering::Relaxed);
            }
            if let Ok(mut h) = self.timings.lock() {
                for &(lag, service) in &t.timings {
                    let _ = h.lag.record(lag.max(1));
                    let _ = h.service.record(service.max(1));
                }
            }
        }
        let skipped = t.skipped.iter().sum();
        for (n, counter) in [
            (t.exchanges, &p.exchanges),
            (t.errors, &p.errors),
            (t.new_errors, &p.new_errors),
            (skipped, &p.skipped),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if skipped > 0 {
            for (&n, counter) in t.skipped.iter().zip(&p.skipped_by) {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *t = Tally {
            timings: std::mem::take(&mut t.timings),
            ..Tally::default()
        };
        t.timings.clear();
    }

    /// Stops the replay as a stop request does (the dispatcher met a session it must refuse).
    pub(crate) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn note_error(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            if v.len() < 20 {
                v.push(e);
            }
        }
    }
}

/// Outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub server_version: String,
    pub sessions: u64,
    pub exchanges: u64,
    pub errors: u64,
    pub skipped: u64,
    /// `skipped` by reason: every reason of [`skip_reasons`], in that order, zeros included.
    pub skipped_by: Vec<(SkipReason, u64)>,
    pub lost: u64,
    /// See [`Progress::sessions_failed`].
    pub sessions_failed: u64,
    pub abandoned: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub sync_timeouts: u64,
    pub sync_cycles: u64,
    /// `--sync`: time the sessions spent waiting for the recorded order, in waits that ended
    /// in order, and in waits that gave way or timed out (summed over sessions).
    pub sync_wait: Duration,
    pub sync_wait_gave_way: Duration,
    /// `--sync-reread`: of those, time commits waited for views held to be read again.
    pub sync_wait_held: Duration,
    /// `--sync`: times the candidate was asked for its lock waits, and why it could not be
    /// (circles were then guessed from time).
    pub lock_waits_asked: u64,
    pub lock_waits_failure: Option<String>,
    /// Where they were read from: `SHOW ENGINE INNODB STATUS`, or the query used.
    pub lock_waits_source: Option<String>,
    /// `--sync`: exchanges labelled order-ambiguous / out-of-order in the run.
    pub order_ambiguous: u64,
    pub out_of_order: u64,
    /// `--sync`: exchanges labelled lock-conflict / after-divergence in the run.
    pub lock_conflicts: u64,
    /// `--sync-deadlocks` (see [`Progress::deadlocks_undone`]).
    pub deadlocks_undone: u64,
    pub deadlocks_retried: u64,
    pub deadlocks_not_retried: u64,
    /// `--sync-reread` (see [`Progress::rereads`]).
    pub rereads: u64,
    pub rereads_reproduced: u64,
    pub reread_rounds: u64,
    pub rereads_failed: u64,
    pub views_held: u64,
    /// `--sync-spare` (see [`Progress::spare_snapshots`]).
    pub spare_snapshots: u64,
    pub spare_reads: u64,
    pub spare_reproduced: u64,
    pub spare_failed: u64,
    pub spare_unshared: u64,
    pub after_divergence: u64,
    /// `--sync`: how many of the candidate's tables have a primary key (rows that an earlier
    /// write left different are told by it), or why it could not be asked.
    pub primary_keys: Option<Result<u64, String>>,
    /// `--sync-rows`: how many of the candidate's tables a statement reaches through others
    /// (views, tables with triggers or foreign keys), or why it could not be asked (every
    /// statement then waits for every earlier commit).
    pub reach_tables: Option<Result<u64, String>>,
    /// Answers whose rows differed from the recorded ones, kept as row samples.
    pub row_samples: u64,
    /// What backfills restored of sessions that began before the recording.
    pub backfill: BackfillCounts,
    /// `--pin`.
    pub pins: PinCounts,
    pub elapsed: Duration,
    pub lag_p50_us: u64,
    pub lag_p99_us: u64,
    pub lag_max_us: u64,
    pub service_p50_us: u64,
    pub service_p99_us: u64,
    /// Stopped early (Ctrl-C) rather than at the end of the recording.
    pub interrupted: bool,
    /// The recording was damaged and only its readable part was replayed.
    pub damage: Option<String>,
    pub first_errors: Vec<String>,
    /// What the replay's threads did (see [`Sched`]).
    pub sched: Policy,
    /// `--ramp`: each step run, in order.
    pub steps: Vec<StepSummary>,
    /// `--start-at`: how late this process began the timeline (0: on time or not asked).
    pub start_late: Duration,
}

/// One ramp step's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSummary {
    pub step: ramp::Step,
    pub counts: ramp::Counts,
    pub elapsed: Duration,
    pub lag_p99_us: u64,
    pub service_p99_us: u64,
    /// Why the step was cut short or not sustained; `None`: the candidate kept up.
    pub failed: Option<String>,
    /// Stopped by a stop request, not by the ramp's limits.
    pub interrupted: bool,
}

/// What the replay restored of sessions that began before the recording (their
/// [`myrr_recording::Backfill`]s), and what the target refused of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillCounts {
    /// Session tasks that applied a backfill (each clone counts).
    pub sessions: u64,
    pub statements: u64,
    pub statements_failed: u64,
    pub variables: u64,
    pub variables_rejected: u64,
}

/// `--pin`: what was pinned, and what the target refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinCounts {
    /// Statements sent after a `SET timestamp` (and `insert_id`), or with them.
    pub statements: u64,
    /// Of those, the ones that carried their pins (`SET STATEMENT … FOR`, MariaDB): no round
    /// trip of their own.
    pub batched: u64,
    /// Session tasks whose target refused a pin; they went on without pins.
    pub refused: u64,
    /// The candidate's tables (and views) whose writes can read the session's time: only
    /// writes to them, or that call a time function, get a `timestamp` pin. An error: why
    /// the candidate could not be asked (every write was pinned). None: no pins.
    pub time_tables: Option<Result<u64, String>>,
}

/// What a pre-scan of the inputs found.
struct Scan {
    origin_us: u64,
    end_us: u64,
    damage: Option<FormatError>,
}

/// A quick pass over the inputs before anything starts: every block's length and checksum
/// are checked (such damage is refused up front), but only the first and last blocks are
/// decompressed and decoded, for the recording's start and end. A block that passes its
/// checksum but does not decode is met by the dispatcher, which reports it. A full decode
/// here cost as much as a second replay's reading.
fn scan(inputs: &[PathBuf]) -> Result<Scan, ReplayError> {
    let mut s = Scan {
        origin_us: u64::MAX,
        end_us: 0,
        damage: None,
    };
    for p in inputs {
        let skim = RecordingReader::open(p)?.skim();
        for e in skim.first.iter().chain(&skim.last) {
            if let Event::SessionStart(st) = e {
                s.origin_us = s.origin_us.min(st.start_us);
            }
            s.end_us = s.end_us.max(event_time(e));
        }
        if let Some(d) = skim.damage {
            s.damage.get_or_insert(d);
        }
    }
    Ok(s)
}

/// Every session holds a socket (and, paced, a timer): lift the soft limit on open files to
/// the hard one, as a 1024 default would cap a replay at about a thousand sessions.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (l.current, l.maximum) {
        if cur < max {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            );
        }
    }
}

/// Connects once with the first session's credentials, before anything starts; the server
/// version comes from its greeting.
async fn preflight(config: &ReplayConfig, user: Option<&str>) -> Result<String, ReplayError> {
    let target = &config.target;
    let fail = |message: String| ReplayError::Preflight {
        address: target.address(),
        message,
    };
    let (user, pass) = target.credentials_for(user);
    let login = wire::LoginOpts {
        user: user.as_deref().unwrap_or(""),
        pass: pass.as_deref(),
        db: None,
        recorded_caps: None,
    };
    let (host, port) = target.host_port();
    let connect = wire::WireConn::connect(&host, port, &config.tls, &login);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => {
            let version = c.server_version.clone();
            c.quit().await;
            Ok(version)
        }
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail("no answer within 10 s".into())),
    }
}

fn first_user(inputs: &[PathBuf]) -> Option<String> {
    for p in inputs {
        if let Ok(r) = RecordingReader::open(p) {
            for e in r.flatten() {
                if let Event::SessionStart(s) = e {
                    if let Some(u) = s.user {
                        return Some(String::from_utf8_lossy(&u).into_owned());
                    }
                }
            }
        }
    }
    None
}

/// Replays `config.inputs` against the target. `stop` ends it early (Ctrl-C): no new command
/// is sent, in-flight ones get `drain_timeout` to finish, and the output is complete up to there.
///
/// Under SCHED_BATCH (`config.sched`), the calling thread takes that policy for the run, and
/// the threads the run starts inherit it; run it on a current-thread runtime.
pub async fn run(
    config: ReplayConfig,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> Result<Summary, ReplayError> {
    check(&config)?;
    raise_fd_limit();
    // Before any thread starts, so that all of them inherit the policy. Where the policy
    // cannot be set (a sandbox), the replay runs under the one it has.
    let (policy, _batch) = config.sched.enter(config.speed, config.target.is_local());
    let scan = scan(&config.inputs)?;
    if let Some(d) = &scan.damage {
        if !config.ignore_damage {
            return Err(ReplayError::Damaged(scan.damage.unwrap()));
        }
        let _ = d;
    }
    if scan.origin_us == u64::MAX {
        return Err(ReplayError::Empty(
            config
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    // Before the target hears from us: sessions that could only fail are refused up front.
    if let Some(refused) = dispatch::sessions_without_db(&config, scan.origin_us) {
        return Err(refused);
    }
    let server_version = preflight(&config, first_user(&config.inputs).as_deref()).await?;
    progress
        .recorded_start_us
        .store(scan.origin_us, Ordering::Relaxed);
    progress
        .recorded_end_us
        .store(scan.end_us.max(scan.origin_us), Ordering::Relaxed);
    progress
        .recorded_us
        .store(scan.origin_us, Ordering::Relaxed);

    let header = Header::new(
        RunKind::Replay,
        config.target.address(),
        vec![
            (
                "inputs".into(),
                config
                    .inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "speed".into(),
                match config.speed {
                    Speed::Max => "max".into(),
                    Speed::Factor(f) => f.to_string(),
                },
            ),
            // Every clone of the run (a ramp's steps number theirs on), for analyze.
            (
                "scale".into(),
                match &config.ramp {
                    Some(r) => r.plan().iter().map(|s| s.clones).sum::<u32>(),
                    None => config.scale,
                }
                .to_string(),
            ),
            (
                "shard".into(),
                format!("{}/{}", config.shard.0, config.shard.1),
            ),
            ("read_only".into(), config.read_only.to_string()),
            (
                "ramp".into(),
                config.ramp.as_ref().map_or(String::new(), |r| {
                    r.steps
                        .iter()
                        .map(f64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            ),
            ("sched".into(), policy.name().into()),
            ("server_version".into(), server_version.clone()),
        ],
    );
    let output = config.output.clone();
    let out_err = |e: myrr_recording::WriteError| ReplayError::Output {
        path: output.clone(),
        message: e.to_string(),
    };
    let writer =
        RecordingWriter::create_with_level(&config.output, &header, LEVEL_FAST).map_err(out_err)?;
    let (events, writer_thread) =
        outbox::Outbox::start(writer, OUTPUT_SHARD).map_err(|e| ReplayError::Output {
            path: output.clone(),
            message: format!("cannot start the writer thread: {e}"),
        })?;

    let started = Instant::now();
    let steps: Vec<Option<ramp::Step>> = match &config.ramp {
        Some(r) => r.plan().into_iter().map(Some).collect(),
        None => vec![None],
    };
    progress.ramp_steps.store(
        config.ramp.as_ref().map_or(0, |r| r.steps.len() as u64),
        Ordering::Relaxed,
    );
    let mut lag = Histogram::<u64>::new(3).expect("histogram");
    let mut service = Histogram::<u64>::new(3).expect("histogram");
    let mut first_errors = Vec::new();
    let (mut interrupted, mut read_damage, mut refused) = (false, None, None);
    let mut lock_waits_failure: Option<String> = None;
    let mut lock_waits_source: Option<String> = None;
    let mut time_tables: Option<Result<u64, String>> = None;
    let mut primary_keys: Option<Result<u64, String>> = None;
    let mut reach_tables: Option<Result<u64, String>> = None;
    let mut step_summaries = Vec::new();
    let mut start_late = Duration::ZERO;
    let (mut first_anchor, mut timetable) = (None, Duration::ZERO);
    for step in steps {
        let mut cfg = config.clone();
        // The first step starts at --start-at; the others as soon as the one before ends.
        // With --start-at, every step begins on one timetable (the shards of a ramp on
        // several machines step up together): step k at the anchor plus the scheduled
        // length of the steps before it, plus a pause of `STEP_PAUSE` after each. A step
        // that overran begins late and catches up (its start lag shows it). Without
        // --start-at, a step begins as soon as the one before it has ended.
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        let start = match (&first_anchor, config.start_at) {
            (None, Some(at)) => {
                let (start, late) = anchor(at);
                start_late = late;
                first_anchor = Some(start);
                start
            }
            (Some(a), Some(_)) => (*a + timetable).max(soon),
            _ => soon,
        };
        if let Some(s) = step {
            let window = config
                .ramp
                .as_ref()
                .and_then(|r| r.step_duration)
                .into_iter()
                .chain(config.limit_duration)
                .fold(
                    Duration::from_micros(scan.end_us.saturating_sub(scan.origin_us)),
                    Duration::min,
                );
            let speed = match config.speed {
                Speed::Factor(f) => f * s.speed,
                Speed::Max => 1.0,
            };
            timetable += window.div_f64(speed) + ramp::STEP_PAUSE;
        }
        let clock = Clock::new();
        if let Some(s) = step {
            cfg.scale = s.clones;
            cfg.clone_base = s.first_clone;
            if let Speed::Factor(f) = config.speed {
                cfg.speed = Speed::Factor(f * s.speed);
            }
            if let Some(d) = config.ramp.as_ref().and_then(|r| r.step_duration) {
                cfg.limit_duration = Some(config.limit_duration.map_or(d, |l| l.min(d)));
            }
            progress
                .recorded_us
                .store(scan.origin_us, Ordering::Relaxed);
            progress
                .ramp_step
                .store(u64::from(s.index) + 1, Ordering::Relaxed);
            progress
                .ramp_multiple_milli
                .store((s.multiple * 1000.0) as u64, Ordering::Relaxed);
            progress
                .ramp_clones
                .store(u64::from(s.clones), Ordering::Relaxed);
            progress
                .ramp_started_us
                .store(clock.us_at(start), Ordering::Relaxed);
            events.send(phase(s, clock.us_at(start), None)).await;
        }
        let step_stop = Arc::new(AtomicBool::new(stop.load(Ordering::Relaxed)));
        let before = progress.ramp_counts();
        let step_started = Instant::now();
        let mut judged = config.ramp.as_ref().map(ramp::Judge::new);
        let mut failed = None;
        let mut pass = Box::pin(pass(
            cfg,
            start,
            scan.origin_us,
            events.clone(),
            progress.clone(),
            step_stop.clone(),
            policy,
        ));
        // Forwards a stop request to the step, and judges the step window by window.
        let mut window = before;
        let mut tick = tokio::time::interval_at(start + ramp::WINDOW, ramp::WINDOW);
        let out = loop {
            tokio::select! {
                out = &mut pass => break out,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stop.load(Ordering::Relaxed) {
                        step_stop.store(true, Ordering::Relaxed);
                    }
                }
                _ = tick.tick(), if judged.is_some() && failed.is_none() => {
                    let now = progress.ramp_counts();
                    if let Some(why) = judged.as_mut().and_then(|j| j.window(now.since(window))) {
                        failed = Some(why);
                        step_stop.store(true, Ordering::Relaxed);
                    }
                    window = now;
                }
            }
        };
        let stopped_by_user = stop.load(Ordering::Relaxed);
        interrupted |= stopped_by_user || (out.interrupted && failed.is_none());
        let _ = lag.add(&out.lag);
        let _ = service.add(&out.service);
        first_errors.extend(out.errors);
        first_errors.truncate(20);
        read_damage = read_damage.or(out.read_damage);
        lock_waits_failure = lock_waits_failure.or(out.lock_waits_failure);
        lock_waits_source = lock_waits_source.or(out.lock_waits_source);
        time_tables = time_tables.or(out.time_tables);
        primary_keys = primary_keys.or(out.primary_keys);
        reach_tables = reach_tables.or(out.reach_tables);
        refused = refused.or(out.refused);
        if let (Some(s), Some(judge)) = (step, &judged) {
            let counts = progress.ramp_counts().since(before);
            if failed.is_none() && !stopped_by_user {
                failed = judge.step(counts);
            }
            let at_us = clock.now_us();
            let stopped = if stopped_by_user {
                Some("stopped on request".to_string())
            } else {
                failed.clone()
            };
            events
                .send(phase(
                    s,
                    at_us,
                    Some(myrr_recording::PhaseEnd {
                        stopped,
                        exchanges: counts.exchanges,
                        late: counts.late,
                        new_errors: counts.new_errors,
                    }),
                ))
                .await;
            step_summaries.push(StepSummary {
                step: s,
                counts,
                elapsed: step_started.elapsed(),
                lag_p99_us: out.lag.value_at_quantile(0.99),
                service_p99_us: out.service.value_at_quantile(0.99),
                failed: failed.clone(),
                interrupted: stopped_by_user,
            });
        }
        if stopped_by_user || failed.is_some() || refused.is_some() {
            break;
        }
    }
    drop(events);
    match writer_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(out_err(e)),
        Err(_) => {
            return Err(ReplayError::Output {
                path: output,
                message: "the writer thread panicked".into(),
            })
        }
    }
    if let Some(refused) = refused {
        return Err(refused);
    }
    let p = &progress;
    Ok(Summary {
        server_version,
        sessions: p.sessions_done.load(Ordering::Relaxed),
        exchanges: p.exchanges.load(Ordering::Relaxed),
        errors: p.errors.load(Ordering::Relaxed),
        skipped: p.skipped.load(Ordering::Relaxed),
        skipped_by: skip_reasons()
            .into_iter()
            .zip(&p.skipped_by)
            .map(|(r, n)| (r, n.load(Ordering::Relaxed)))
            .collect(),
        lost: p.lost.load(Ordering::Relaxed),
        sessions_failed: p.sessions_failed.load(Ordering::Relaxed),
        abandoned: p.abandoned.load(Ordering::Relaxed),
        row_samples: p.row_samples.load(Ordering::Relaxed),
        reconnects: p.reconnects.load(Ordering::Relaxed),
        connect_failures: p.connect_failures.load(Ordering::Relaxed),
        sync_timeouts: p.sync_timeouts.load(Ordering::Relaxed),
        sync_cycles: p.sync_cycles.load(Ordering::Relaxed),
        sync_wait: Duration::from_micros(p.sync_wait_us.load(Ordering::Relaxed)),
        sync_wait_gave_way: Duration::from_micros(p.sync_wait_gave_way_us.load(Ordering::Relaxed)),
        sync_wait_held: Duration::from_micros(p.held_wait_us.load(Ordering::Relaxed)),
        lock_waits_asked: p.lock_waits_asked.load(Ordering::Relaxed),
        lock_waits_failure: lock_waits_failure.clone(),
        lock_waits_source: lock_waits_source.clone(),
        order_ambiguous: p.order_ambiguous.load(Ordering::Relaxed),
        out_of_order: p.out_of_order.load(Ordering::Relaxed),
        lock_conflicts: p.lock_conflicts.load(Ordering::Relaxed),
        deadlocks_undone: p.deadlocks_undone.load(Ordering::Relaxed),
        deadlocks_retried: p.deadlocks_retried.load(Ordering::Relaxed),
        deadlocks_not_retried: p.deadlocks_not_retried.load(Ordering::Relaxed),
        rereads: p.rereads.load(Ordering::Relaxed),
        rereads_reproduced: p.rereads_reproduced.load(Ordering::Relaxed),
        views_held: p.views_held.load(Ordering::Relaxed),
        reread_rounds: p.reread_rounds.load(Ordering::Relaxed),
        spare_snapshots: p.spare_snapshots.load(Ordering::Relaxed),
        spare_reads: p.spare_reads.load(Ordering::Relaxed),
        spare_reproduced: p.spare_reproduced.load(Ordering::Relaxed),
        spare_failed: p.spare_failed.load(Ordering::Relaxed),
        spare_unshared: p.spare_unshared.load(Ordering::Relaxed),
        rereads_failed: p.rereads_failed.load(Ordering::Relaxed),
        after_divergence: p.after_divergence.load(Ordering::Relaxed),
        primary_keys: primary_keys.clone(),
        reach_tables: reach_tables.clone(),
        backfill: BackfillCounts {
            sessions: p.backfills.load(Ordering::Relaxed),
            statements: p.backfill_statements.load(Ordering::Relaxed),
            statements_failed: p.backfill_statements_failed.load(Ordering::Relaxed),
            variables: p.backfill_variables.load(Ordering::Relaxed),
            variables_rejected: p.backfill_variables_rejected.load(Ordering::Relaxed),
        },
        pins: PinCounts {
            statements: p.pins.load(Ordering::Relaxed),
            batched: p.pins_batched.load(Ordering::Relaxed),
            refused: p.pins_refused.load(Ordering::Relaxed),
            time_tables: time_tables.clone(),
        },
        elapsed: started.elapsed(),
        lag_p50_us: lag.value_at_quantile(0.5),
        lag_p99_us: lag.value_at_quantile(0.99),
        lag_max_us: lag.max(),
        service_p50_us: service.value_at_quantile(0.5),
        service_p99_us: service.value_at_quantile(0.99),
        interrupted,
        damage: scan.damage.or(read_damage).map(|d| d.to_string()),
        first_errors,
        sched: policy,
        steps: step_summaries,
        start_late,
    })
}

/// Refuses what cannot run: a ramp without a pace or with `--scale`, a `--start-at` past.
fn check(config: &ReplayConfig) -> Result<(), ReplayError> {
    let refuse = |m: String| Err(ReplayError::Config(m));
    if let Some(r) = &config.ramp {
        if config.speed == Speed::Max {
            return refuse(
                "--ramp multiplies the recorded load: it needs a paced replay (--speed F), \
                 not --speed max (a closed loop has no load to multiply)"
                    .into(),
            );
        }
        if config.scale != 1 {
            return refuse("--ramp sets the clones of each step: leave --scale out".into());
        }
        if let Some(bad) = r.steps.iter().find(|m| !(m.is_finite() && **m > 0.0)) {
            return refuse(format!("--ramp: {bad} is not a positive multiple"));
        }
        if r.steps.is_empty() {
            return refuse("--ramp needs at least one step".into());
        }
    }
    if let Some(at) = config.start_at {
        if let Err(e) = at.duration_since(SystemTime::now()) {
            if e.duration() > START_AT_GRACE {
                return refuse(format!(
                    "--start-at was {:.1} s ago: this shard would begin the recorded timeline \
                     that far behind the others (at most {} s late is caught up); give a \
                     time far enough ahead for every shard to be ready",
                    e.duration().as_secs_f64(),
                    START_AT_GRACE.as_secs()
                ));
            }
        }
    }
    Ok(())
}

/// A ramp step's start (`end: None`) or end event.
fn phase(s: ramp::Step, at_us: u64, end: Option<myrr_recording::PhaseEnd>) -> Event {
    Event::Phase(myrr_recording::Phase {
        index: s.index,
        multiple: s.multiple,
        first_clone: s.first_clone,
        clones: s.clones,
        speed: s.speed,
        at_us,
        end,
    })
}

/// `--start-at` later than this is refused: this process would start that far behind the
/// other shards, and catching up would be a burst production never had.
pub const START_AT_GRACE: Duration = Duration::from_secs(5);

/// The monotonic instant of a wall-clock time, and how late it already is.
fn anchor(at: SystemTime) -> (tokio::time::Instant, Duration) {
    let now = tokio::time::Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => (now + wait, Duration::ZERO),
        Err(e) => {
            let late = e.duration();
            (now.checked_sub(late).unwrap_or(now), late)
        }
    }
}

/// What one pass over the recording (the replay, or one ramp step) gave.
struct Pass {
    /// Why the candidate could not be asked for its lock waits.
    lock_waits_failure: Option<String>,
    /// Where the lock waits were read from.
    lock_waits_source: Option<String>,
    /// `--pin`: the tables whose writes can read the time, as many as found, or why the
    /// candidate could not be asked.
    time_tables: Option<Result<u64, String>>,
    /// `--sync`: the tables with a primary key, or why they could not be asked.
    primary_keys: Option<Result<u64, String>>,
    /// `--sync-rows`: the tables reached through others, or why they could not be asked.
    reach_tables: Option<Result<u64, String>>,
    lag: Histogram<u64>,
    service: Histogram<u64>,
    errors: Vec<String>,
    interrupted: bool,
    read_damage: Option<FormatError>,
    refused: Option<ReplayError>,
}

/// Replays the recording once as `config` says, starting its timeline at `start`. `stop` ends
/// it early: no new command is sent, in-flight ones get `drain_timeout` to finish.
async fn pass(
    config: ReplayConfig,
    start: tokio::time::Instant,
    origin_us: u64,
    events: outbox::Outbox,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    policy: Policy,
) -> Pass {
    let pacing = pacing::Pacing::new(&config, start, origin_us);
    if pacing.closed_loop() {
        // Nothing waits for its time in a closed loop: the pass waits for its start.
        tokio::time::sleep_until(start).await;
    }
    let budget = pacing.initial_budget();
    let time_tables = match config.pin {
        true => Some(schema::TimeTables::ask(config.target.monitor_opts()).await),
        false => None,
    };
    let primary_keys = match config.sync {
        SyncMode::None => None,
        _ => Some(schema::primary_keys(config.target.monitor_opts()).await),
    };
    let primary_keys_found = primary_keys
        .as_ref()
        .map(|k| k.as_ref().map(|k| k.len() as u64).map_err(Clone::clone));
    let reach = match config.sync {
        SyncMode::None => None,
        _ if !config.sync_rows && config.sync_writes != WriteOrder::Rows => None,
        _ => Some(schema::reach(config.target.monitor_opts()).await),
    };
    let reach_found = reach
        .as_ref()
        .map(|r| r.as_ref().map(|r| r.len() as u64).map_err(Clone::clone));
    let reach = reach.and_then(Result::ok).map(Arc::new);
    let divergence = primary_keys.map(|k| {
        let keys = Arc::new(k.unwrap_or_default());
        (0..config.scale.max(1))
            .map(|_| divergence::Divergence::new(keys.clone(), reach.clone()))
            .collect::<Vec<_>>()
    });
    let time_tables_found = time_tables
        .as_ref()
        .map(|t| t.as_ref().map(|t| t.len() as u64).map_err(Clone::clone));
    let late_after_us = config
        .ramp
        .as_ref()
        .map_or(u64::MAX, |r| r.max_lag.as_micros() as u64);
    let shared = Arc::new(Shared {
        progress: progress.clone(),
        clock: Clock::new(),
        events,
        stop: stop.clone(),
        pacing,
        timings: Mutex::new(Timings {
            lag: Histogram::new(3).expect("histogram"),
            service: Histogram::new(3).expect("histogram"),
        }),
        errors: Mutex::new(Vec::new()),
        order: (config.sync != SyncMode::None).then(|| {
            sync::Order::new(
                config.scale,
                config.sync_views,
                config.sync_writes != WriteOrder::Off,
                config.sync_locks,
                config.sync_lock_waits,
                config.sync_views && config.sync_reread,
            )
        }),
        samples: std::sync::Mutex::new(myrr_wire::conn::ShapeSampler::with_per_shape(
            myrr_wire::conn::DIFFERING_PER_SHAPE,
        )),
        logins: tokio::sync::Semaphore::new(LOGIN_SLOTS),
        policy,
        abandon: Arc::default(),
        budget: tokio::sync::Semaphore::new(budget),
        late_after_us,
        time_tables: time_tables.and_then(Result::ok),
        divergence,
        config,
    });

    // The dispatcher reads the recordings on this thread and feeds the session tasks, which
    // run on the pool's threads. In a closed loop their queues are rarely empty, so handing
    // over an exchange seldom wakes a thread.
    let pool = pool::Pool::new(shared.config.session_threads);
    let feeder = tokio::spawn(dispatch::feed_commits(shared.clone()));
    let monitor_done = Arc::new(AtomicBool::new(false));
    let monitor = shared
        .order
        .as_ref()
        .and_then(|o| o.lock_waits.clone())
        .map(|l| {
            let opts = shared.config.target.monitor_opts();
            let done = monitor_done.clone();
            tokio::spawn(async move {
                l.monitor(opts, &done).await;
                l
            })
        });
    let dispatch::Dispatched {
        tasks,
        pool,
        damage: read_damage,
        refused,
    } = tokio::spawn(dispatch::dispatch(shared.clone(), pool))
        .await
        .unwrap_or_default();
    let mut interrupted = stop.load(Ordering::Relaxed);
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    // Tasks finish when their queues drain; after a stop they get `drain_timeout`.
    let mut drain = Box::pin(drain);
    loop {
        tokio::select! {
            _ = &mut drain => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) {
                    interrupted = true;
                    let _ = tokio::time::timeout(shared.config.drain_timeout, &mut drain).await;
                    break;
                }
            }
        }
    }
    let (lag, service) = shared
        .timings
        .lock()
        .map(|t| (t.lag.clone(), t.service.clone()))
        .unwrap_or_else(|_| (Histogram::new(3).unwrap(), Histogram::new(3).unwrap()));
    let errors = shared.errors.lock().map(|v| v.clone()).unwrap_or_default();
    // Sessions still waiting for an answer outside their runtime go back to it, so their
    // threads can drop them and end.
    shared.abandon.store(true, Ordering::Relaxed);
    feeder.abort();
    let _ = feeder.await;
    monitor_done.store(true, Ordering::Relaxed);
    let (lock_waits_failure, lock_waits_source) = match monitor {
        Some(m) => match m.await {
            Ok(l) => {
                progress
                    .lock_waits_asked
                    .fetch_add(l.asked.load(Ordering::Relaxed), Ordering::Relaxed);
                let source = l.source.lock().ok().and_then(|s| s.map(str::to_string));
                (l.failure.lock().ok().and_then(|f| f.clone()), source)
            }
            Err(_) => (None, None),
        },
        None => (None, None),
    };
    drop(pool);
    drop(shared);
    Pass {
        lock_waits_failure,
        lock_waits_source,
        time_tables: time_tables_found,
        primary_keys: primary_keys_found,
        reach_tables: reach_found,
        lag,
        service,
        errors,
        interrupted,
        read_damage,
        refused,
    }
}

/// Recording paths, for messages.
pub fn describe(inputs: &[PathBuf]) -> String {
    inputs
        .iter()
        .map(|p: &PathBuf| Path::new(p).display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts by reason land in the slot of their reason, whatever its details.
    #[test]
    fn every_skip_reason_has_its_own_slot() {
        let reasons = skip_reasons();
        for (i, r) in reasons.iter().enumerate() {
            assert_eq!(skip_slot(r), i, "{}", r.name());
        }
        let names: std::collections::HashSet<_> = reasons.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), SKIP_REASONS);
        let mut t = Tally::default();
        let skipped = |r| Response::Skipped(r);
        t.count(&skipped(SkipReason::TypesNotSent), false, 0, 0, 0, 0);
        t.count(
            &skipped(SkipReason::Unsupported("debug".into())),
            false,
            0,
            0,
            0,
            0,
        );
        t.count(
            &skipped(SkipReason::Unsupported("process_kill".into())),
            false,
            0,
            0,
            0,
            0,
        );
        t.count(&Response::None, false, 0, 0, 0, 0);
        assert_eq!(t.skipped, [0, 1, 0, 2, 0]);
        assert_eq!(t.exchanges, 4);
    }
}
