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
//! Main types: [`ReplayConfig`], [`Target`] (where and as whom), [`Progress`] (live counters),
//! [`Summary`] (the outcome).

mod follow;
mod handover;
mod outbox;
mod pacer;
mod pool;
mod readonly;
mod sched;
mod session;
mod sync;
mod tls;
pub use sync::SyncMode;
pub use tls::{Tls, TlsMode};
pub mod target;
pub(crate) use handover::Batch;
use handover::Handover;
pub use sched::{Policy, Sched};
mod wire;

pub use readonly::{first_keyword, is_read_only};
pub use target::Target;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use myrr_recording::{
    event_time, Command, Event, Exchange, FormatError, Header, RecordingReader, RecordingWriter,
    Response, RunKind, RunReader, SessionStart, LEVEL_FAST,
};
use tokio::sync::mpsc;

/// Closed loop: exchanges queued for sessions at first. Short queues keep the exchanges in
/// the CPU cache between the dispatcher and the sessions: with 100k queued, the client spent
/// about 12 % more CPU per query. Too short, and a session whose recorded pace was slower than
/// the others' catches up with the dispatcher's place in the recording while the budget sits
/// in the others' queues: it runs dry and must be woken (4096: 1.2 % of the exchanges of a
/// 16-session sysbench replay found their queue empty; 16 Ki: half as many, for 4 % less
/// client CPU per query). The budget grows (up to `ReplayConfig::queue`) with the sessions
/// live, and whenever no session takes an exchange for [`QUEUE_STALL`]; paced replays start
/// at `queue` (they are bounded by `read_ahead`).
const CLOSED_LOOP_QUEUE: usize = 16384;
/// Closed loop: the budget is at least this much per live session.
const CLOSED_LOOP_PER_SESSION: usize = 256;
const QUEUE_STALL: Duration = Duration::from_millis(10);

/// Logins in progress at once, over all sessions.
const LOGIN_SLOTS: usize = 32;

/// Queue budget the dispatcher takes at once.
const PERMIT_BATCH: usize = 256;

/// Exchanges handed to a session at once in a closed loop (see module `handover`).
const HAND_OVER_BATCH: usize = 32;
/// Every this many exchanges handed over, the batches not yet full are sent anyway.
const FLUSH_EVERY: usize = 1024;
/// Output events a session thread may have queued for the writer (see `outbox`): 2 Ki events of
/// a few hundred bytes each, on each of up to 64 threads by default.
const OUTPUT_SHARD: usize = 2048;

/// `--sync`: a command in the server this long is taken to be blocked on a lock.
const STUCK_AFTER: Duration = Duration::from_millis(20);

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
    /// TLS to the target.
    pub tls: Tls,
    /// Threads that run the sessions (each its own single-threaded runtime); 1: the caller's.
    pub session_threads: usize,
    /// Scheduling policy of the replay's threads (see [`Sched`]).
    pub sched: Sched,
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
            tls: Tls::default(),
            session_threads: 1,
            sched: Sched::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("{0}")]
    Target(String),
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
}

/// Live counters, readable while the replay runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub sessions_active: AtomicU64,
    pub sessions_done: AtomicU64,
    pub exchanges: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
    pub lost: AtomicU64,
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
    /// `--sync`: exchanges that stopped waiting because the earlier commit's session was
    /// blocked in the server (on a lock the waiting session most likely holds).
    pub sync_cycles: AtomicU64,
}

/// One session's counts, timings and taken queue permits since it last handed them to
/// [`Shared`]: sessions run on many threads, and a lock plus five contended atomic updates per
/// exchange cost more than batching them (every [`Tally::BATCH`] exchanges, and whenever the
/// session is about to wait).
#[derive(Default)]
pub(crate) struct Tally {
    exchanges: u64,
    errors: u64,
    skipped: u64,
    pub(crate) permits: usize,
    recorded_us: u64,
    max_lag_us: u64,
    timings: Vec<(u64, u64)>,
}

impl Tally {
    pub(crate) const BATCH: usize = 32;

    pub(crate) fn count(&mut self, r: &Response, recorded_us: u64, lag_us: u64, service_us: u64) {
        self.exchanges += 1;
        match r {
            Response::Err(_) => self.errors += 1,
            Response::Skipped(_) => self.skipped += 1,
            _ => {}
        }
        self.recorded_us = self.recorded_us.max(recorded_us);
        self.max_lag_us = self.max_lag_us.max(lag_us);
        self.timings.push((lag_us, service_us));
    }

    pub(crate) fn full(&self) -> bool {
        self.timings.len() >= Self::BATCH || self.permits >= Self::BATCH
    }
}

impl Progress {
    pub fn take_max_lag_us(&self) -> u64 {
        self.max_lag_us.swap(0, Ordering::Relaxed)
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
    /// Replay start on the monotonic clock, and the recorded instant it stands for.
    start: tokio::time::Instant,
    recorded_origin_us: u64,
    timings: Mutex<Timings>,
    errors: Mutex<Vec<String>>,
    /// `--sync`: commit points dispatched and not yet answered.
    pub(crate) commits: Option<sync::CommitOrder>,
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
    /// `--sync`: (session, clone) → since when its current command is in the server.
    in_server: Mutex<HashMap<(u64, u32), Instant>>,
}

struct Timings {
    lag: Histogram<u64>,
    service: Histogram<u64>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// When a recorded instant is due in this replay (`None`: now, closed loop).
    pub(crate) fn schedule_at(&self, recorded_us: u64, clone: u32) -> Option<tokio::time::Instant> {
        let stagger = self.config.stagger * clone;
        match self.config.speed {
            Speed::Max => None,
            Speed::Factor(f) => {
                let offset = recorded_us.saturating_sub(self.recorded_origin_us) as f64 / f;
                Some(self.start + Duration::from_micros(offset as u64) + stagger)
            }
        }
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
            if let Ok(mut h) = self.timings.lock() {
                for &(lag, service) in &t.timings {
                    let _ = h.lag.record(lag.max(1));
                    let _ = h.service.record(service.max(1));
                }
            }
        }
        for (n, counter) in [
            (t.exchanges, &p.exchanges),
            (t.errors, &p.errors),
            (t.skipped, &p.skipped),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        *t = Tally {
            timings: std::mem::take(&mut t.timings),
            ..Tally::default()
        };
        t.timings.clear();
    }

    /// `--sync`: a session's command entered (or left) the server.
    pub(crate) fn in_server(&self, session: u64, clone: u32, inside: bool) {
        if self.commits.is_none() {
            return;
        }
        if let Ok(mut m) = self.in_server.lock() {
            if inside {
                m.insert((session, clone), Instant::now());
            } else {
                m.remove(&(session, clone));
            }
        }
    }

    /// `--sync`: the session's current command has been in the server far longer than an
    /// answer takes (blocked on a lock, most likely).
    pub(crate) fn stuck_in_server(&self, session: u64, clone: u32) -> bool {
        self.in_server.lock().is_ok_and(|m| {
            m.get(&(session, clone))
                .is_some_and(|t| t.elapsed() > STUCK_AFTER)
        })
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
    pub lost: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub sync_timeouts: u64,
    pub sync_cycles: u64,
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

    let header = Header {
        kind: RunKind::Replay,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        source: config.target.address(),
        started_us: Clock::new().now_us(),
        options: vec![
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
            ("scale".into(), config.scale.to_string()),
            (
                "shard".into(),
                format!("{}/{}", config.shard.0, config.shard.1),
            ),
            ("read_only".into(), config.read_only.to_string()),
            ("sched".into(), policy.name().into()),
            ("server_version".into(), server_version.clone()),
        ],
    };
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
    let shared = Arc::new(Shared {
        progress: progress.clone(),
        clock: Clock::new(),
        events,
        stop: stop.clone(),
        start: tokio::time::Instant::now() + Duration::from_millis(50),
        recorded_origin_us: scan.origin_us,
        timings: Mutex::new(Timings {
            lag: Histogram::new(3).expect("histogram"),
            service: Histogram::new(3).expect("histogram"),
        }),
        errors: Mutex::new(Vec::new()),
        commits: (config.sync != SyncMode::None).then(|| sync::CommitOrder::new(config.scale)),
        in_server: Mutex::new(HashMap::new()),
        logins: tokio::sync::Semaphore::new(LOGIN_SLOTS),
        policy,
        abandon: Arc::default(),
        budget: tokio::sync::Semaphore::new(match config.speed {
            Speed::Max => CLOSED_LOOP_QUEUE.min(config.queue).max(1),
            Speed::Factor(_) => config.queue.max(1),
        }),
        config,
    });

    // The dispatcher reads the recordings on this thread and feeds the session tasks, which
    // run on the pool's threads. In a closed loop their queues are rarely empty, so handing
    // over an exchange seldom wakes a thread.
    let pool = pool::Pool::new(shared.config.session_threads);
    let feeder = tokio::spawn(feed_commits(shared.clone()));
    let (tasks, pool, read_damage) = tokio::spawn(dispatch(shared.clone(), pool))
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
    let summary_timings = {
        let t = shared
            .timings
            .lock()
            .map(|t| (t.lag.clone(), t.service.clone()));
        t.ok()
    };
    let first_errors = shared.errors.lock().map(|v| v.clone()).unwrap_or_default();
    // Sessions still waiting for an answer outside their runtime go back to it, so their
    // threads can drop them and end.
    shared.abandon.store(true, Ordering::Relaxed);
    feeder.abort();
    let _ = feeder.await;
    drop(pool);
    drop(shared);
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
    let (lag, service) =
        summary_timings.unwrap_or_else(|| (Histogram::new(3).unwrap(), Histogram::new(3).unwrap()));
    let p = &progress;
    Ok(Summary {
        server_version,
        sessions: p.sessions_done.load(Ordering::Relaxed),
        exchanges: p.exchanges.load(Ordering::Relaxed),
        errors: p.errors.load(Ordering::Relaxed),
        skipped: p.skipped.load(Ordering::Relaxed),
        lost: p.lost.load(Ordering::Relaxed),
        reconnects: p.reconnects.load(Ordering::Relaxed),
        connect_failures: p.connect_failures.load(Ordering::Relaxed),
        sync_timeouts: p.sync_timeouts.load(Ordering::Relaxed),
        sync_cycles: p.sync_cycles.load(Ordering::Relaxed),
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
    })
}

/// A recorded exchange as far as a session task needs it: its command and times, not its
/// recorded answer. The dispatcher frees the answer on the thread that decoded it (a free on
/// another thread costs the allocator more).
pub(crate) struct Recorded {
    pub(crate) seq: u64,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) command: Command,
    /// A PREPARE's recorded statement id, which later EXECUTEs name.
    pub(crate) prepared_id: Option<u32>,
}

impl From<Exchange> for Recorded {
    fn from(x: Exchange) -> Self {
        Self {
            seq: x.seq,
            start_us: x.start_us,
            end_us: x.end_us,
            prepared_id: match x.response {
                Response::Prepared(p) => Some(p.stmt_id),
                _ => None,
            },
            command: x.command,
        }
    }
}

/// A recorded exchange handed to a session task: its own without `--scale` (no allocation),
/// shared between the clones with it.
pub(crate) enum Handed {
    Own(Recorded),
    Shared(Arc<Recorded>),
}

impl std::ops::Deref for Handed {
    type Target = Recorded;

    fn deref(&self) -> &Recorded {
        match self {
            Handed::Own(r) => r,
            Handed::Shared(r) => r,
        }
    }
}

impl Handed {
    /// The command, taken (copied while another clone still holds it).
    pub(crate) fn into_command(self) -> Command {
        match self {
            Handed::Own(r) => r.command,
            Handed::Shared(r) => Arc::try_unwrap(r)
                .map(|r| r.command)
                .unwrap_or_else(|r| r.command.clone()),
        }
    }
}

/// One recorded exchange for a session task, with its place in the commit order (`--sync`).
pub(crate) struct Work {
    pub(crate) x: Handed,
    /// Registered commit point: release it once answered.
    pub(crate) commit: Option<sync::CommitKey>,
    /// Wait for the commits that ended before it started.
    pub(crate) wait: bool,
}

/// Which recorded events this replay takes (shard, limits, sessions seen starting). The
/// dispatcher and the `--sync` commit feeder both read through one, so they agree exactly.
struct Selector<'a> {
    cfg: &'a ReplayConfig,
    horizon: Option<u64>,
    live: HashSet<u64>,
    taken: u64,
}

enum Pick {
    Start(SessionStart),
    Exchange(Exchange),
    End(u64),
    Skip,
    Stop,
}

impl<'a> Selector<'a> {
    fn new(cfg: &'a ReplayConfig, recorded_origin_us: u64) -> Self {
        Self {
            cfg,
            horizon: cfg
                .limit_duration
                .map(|d| recorded_origin_us + d.as_micros() as u64),
            live: HashSet::new(),
            taken: 0,
        }
    }

    fn pick(&mut self, ev: Event) -> Pick {
        let cfg = self.cfg;
        if self.horizon.is_some_and(|h| event_time(&ev) > h)
            || cfg.limit_exchanges.is_some_and(|l| self.taken >= l)
        {
            return Pick::Stop;
        }
        match ev {
            // A replay run used as input: each session once (clone 0).
            Event::SessionStart(s)
                if s.clone == 0 && s.session % cfg.shard.1 as u64 == cfg.shard.0 as u64 =>
            {
                self.live.insert(s.session);
                Pick::Start(s)
            }
            Event::Exchange(x) if x.clone == 0 && self.live.contains(&x.session) => {
                self.taken += 1;
                Pick::Exchange(x)
            }
            Event::SessionEnd(e) if self.live.remove(&e.session) => Pick::End(e.session),
            _ => Pick::Skip,
        }
    }
}

/// Reads events in time order and hands each session's exchanges to its tasks (one per clone).
///
/// Damage met on the way (a block whose checksum is right but whose contents do not decode:
/// the pre-scan checks checksums only) ends the reading there and is returned.
async fn dispatch(
    shared: Arc<Shared>,
    mut pool: pool::Pool,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Option<pool::Pool>,
    Option<FormatError>,
) {
    let cfg = &shared.config;
    let mut tasks = Vec::new();
    let mut merged = match RunReader::open(&cfg.inputs) {
        Ok(m) => m,
        Err(e) => return (tasks, Some(pool), Some(e)),
    };
    // Paced, an exchange is sent to its session at once: one due soon must not wait in a
    // batch while the dispatcher reads on. So with --sync, where other sessions may wait for
    // this exchange's commit.
    // A quiet session's partial batch waits for no more than FLUSH_EVERY exchanges of the
    // others (the dispatcher may never wait while permits keep coming).
    let batch = match cfg.speed {
        Speed::Max if shared.commits.is_none() => HAND_OVER_BATCH,
        _ => 1,
    };
    let mut handover = Handover::new(batch, FLUSH_EVERY);
    let mut refused = Vec::new();
    let mut classifier = sync::Classifier::default();
    let mut select = Selector::new(cfg, shared.recorded_origin_us);
    let mut permits = 0u32;
    let mut capacity = shared.budget.available_permits();
    for ev in merged.by_ref() {
        if shared.stopping() {
            break;
        }
        let pick = select.pick(ev);
        // Paced: no further ahead than `read_ahead`, whatever the queues could hold.
        let due = match &pick {
            Pick::Start(s) => Some(s.start_us),
            Pick::Exchange(x) => Some(x.start_us),
            _ => None,
        };
        if let Some(at) = due.and_then(|us| shared.schedule_at(us, 0)) {
            match at.checked_sub(cfg.read_ahead) {
                Some(early) if early > tokio::time::Instant::now() => {
                    handover.send_unsent(&mut refused);
                    give_back(&shared, &mut refused);
                    tokio::time::sleep_until(early).await
                }
                _ => {}
            }
        }
        match pick {
            Pick::Stop => break,
            Pick::Skip => {}
            Pick::Start(s) => {
                let mut txs = Vec::new();
                for clone in 0..cfg.scale {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let worker = session::Worker::new(shared.clone(), s.clone(), clone);
                    tasks.push(pool.spawn(worker.run(rx)));
                    txs.push(tx);
                }
                handover.open(s.session, txs);
                // Closed loop: room for every live session's share, whatever the start.
                let live = handover.sessions() * cfg.scale as usize;
                let want = (CLOSED_LOOP_PER_SESSION * live).min(cfg.queue);
                if cfg.speed == Speed::Max && want > capacity {
                    shared.budget.add_permits(want - capacity);
                    capacity = want;
                }
            }
            Pick::Exchange(x) => {
                let session = x.session;
                if !handover.is_open(session) {
                    continue;
                }
                let (write, commit) = match shared.commits {
                    Some(_) => classifier.classify(&x),
                    None => (false, false),
                };
                let commit = commit.then_some((x.end_us, x.session, x.seq));
                let wait = match cfg.sync {
                    SyncMode::None => false,
                    SyncMode::Commit => write || commit.is_some(),
                    SyncMode::All => true,
                };
                let recorded = Recorded::from(x);
                let (mut own, shared_x) = if cfg.scale == 1 {
                    (Some(recorded), None)
                } else {
                    (None, Some(Arc::new(recorded)))
                };
                for clone in 0..cfg.scale as usize {
                    // The session task gives the permit back when it takes the exchange.
                    // Taken in batches: a dispatcher waiting for permits is woken once per
                    // batch, not by every session (each wake-up can cross threads).
                    if permits == 0 {
                        let batch = PERMIT_BATCH.min(cfg.queue.max(1)) as u32;
                        let got = match shared.budget.try_acquire_many(batch) {
                            Ok(p) => {
                                p.forget();
                                true
                            }
                            Err(_) => {
                                // The sessions give permits back as they take exchanges:
                                // they must have theirs before the dispatcher waits.
                                handover.send_unsent(&mut refused);
                                give_back(&shared, &mut refused);
                                let wait = shared.budget.acquire_many(batch);
                                if capacity < cfg.queue {
                                    match tokio::time::timeout(QUEUE_STALL, wait).await {
                                        Ok(got) => got.map(|p| p.forget()).is_ok(),
                                        // Nothing came back: the queued exchanges belong to
                                        // sessions that are blocked (on a lock whose holder's
                                        // next command is further on). The queues may hold
                                        // more.
                                        Err(_) => {
                                            capacity += batch as usize;
                                            true
                                        }
                                    }
                                } else {
                                    wait.await.map(|p| p.forget()).is_ok()
                                }
                            }
                        };
                        if !got {
                            break;
                        }
                        permits = batch;
                    }
                    permits -= 1;
                    let x = match (&shared_x, own.take()) {
                        (Some(x), _) => Handed::Shared(x.clone()),
                        // One clone: it takes the exchange itself, on its only turn.
                        (None, Some(x)) => Handed::Own(x),
                        (None, None) => break,
                    };
                    if !handover.hand(session, clone, Work { x, commit, wait }, &mut refused) {
                        break;
                    }
                }
                give_back(&shared, &mut refused);
            }
            Pick::End(session) => {
                handover.close(session, &mut refused);
                give_back(&shared, &mut refused);
                classifier.session_ended(session);
            }
        }
    }
    // Every session still open gets what it has been handed.
    handover.send_all(&mut refused);
    give_back(&shared, &mut refused);
    (tasks, Some(pool), merged.take_damage())
}

/// Exchanges a session task did not take (it had ended): their queue permits come back, and
/// their commit points are released (they will never be answered).
fn give_back(shared: &Shared, refused: &mut Vec<handover::Refused>) {
    if refused.is_empty() {
        return;
    }
    shared.budget.add_permits(refused.len());
    for (clone, w) in refused.drain(..) {
        if let (Some(order), Some(key)) = (&shared.commits, w.commit) {
            order.done(clone, key);
        }
    }
}

/// `--sync`: reads the recordings ahead of the dispatcher and registers every commit point, so
/// an exchange can wait for commits that *started* after it but ended before it did.
async fn feed_commits(shared: Arc<Shared>) {
    let Some(order) = &shared.commits else { return };
    let cfg = &shared.config;
    if let Ok(merged) = RunReader::open(&cfg.inputs) {
        let mut classifier = sync::Classifier::default();
        let mut select = Selector::new(cfg, shared.recorded_origin_us);
        for (n, ev) in merged.enumerate() {
            if shared.stopping() {
                break;
            }
            let at = event_time(&ev);
            match select.pick(ev) {
                Pick::Stop => break,
                Pick::Exchange(x) => {
                    if classifier.classify(&x).1 {
                        for clone in 0..cfg.scale {
                            order.register(clone, (x.end_us, x.session, x.seq));
                        }
                    }
                }
                Pick::End(session) => classifier.session_ended(session),
                Pick::Start(_) | Pick::Skip => {}
            }
            if n % 256 == 255 {
                order.read_to(at);
                // Bounded read-ahead; and let the sessions run (one client thread).
                while order.pending() > sync::MAX_PENDING && !shared.stopping() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::task::yield_now().await;
            }
        }
    }
    order.read_to(u64::MAX);
}

/// Recording paths, for messages.
pub fn describe(inputs: &[PathBuf]) -> String {
    inputs
        .iter()
        .map(|p: &PathBuf| Path::new(p).display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
