//! myrr-replay: re-issue recorded sessions against a candidate server.
//!
//! [`run`] streams one or more recordings (merged by time), starts one tokio task and one real
//! connection per recorded session (times `--scale`, for this `--shard`), paces
//! each session's commands on the recorded timeline (or as fast as answers come with
//! [`Speed::Max`]), and writes what the candidate answered as a replay run in the recording
//! format. Memory stays bounded: events are streamed, per-session queues are bounded, result
//! rows are digested as they arrive.
//!
//! Sessions speak the protocol themselves (module `wire`): handshake and authentication through
//! `mysql_common`, answers read by the capture's own decoder, so a replayed answer is decoded
//! and digested by the code that decoded the recorded one, and every command the capture
//! records can be sent as recorded (`mysql_async` has no API for COM_STMT_RESET,
//! SEND_LONG_DATA, FIELD_LIST, STATISTICS or SET_OPTION, and builds a `Row` of owned values
//! per row, which cost twice sysbench's client CPU per query). The preflight check connects
//! with `mysql_async`, independently of that code.
//!
//! Main types: [`ReplayConfig`], [`Target`] (where and as whom), [`Progress`] (live counters),
//! [`Summary`] (the outcome).

mod pacer;
mod readonly;
mod session;
pub mod target;
mod wire;

pub use readonly::{first_keyword, is_read_only};
pub use target::Target;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use myrr_recording::{
    event_time, run_session_id, Event, Exchange, FormatError, Header, RecordingReader,
    RecordingWriter, Response, RunKind, RunReader, SessionStart,
};
use tokio::sync::mpsc;

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
    /// Per-session queue of exchanges read ahead of their time.
    pub queue: usize,
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
            queue: 1024,
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
    pub sessions_total: AtomicU64,
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
}

impl Progress {
    fn count(&self, r: &Response) {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        match r {
            Response::Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Response::Skipped(_) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

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
    pub(crate) events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
    /// Replay start on the monotonic clock, and the recorded instant it stands for.
    start: tokio::time::Instant,
    recorded_origin_us: u64,
    timings: Mutex<Timings>,
    errors: Mutex<Vec<String>>,
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

    pub(crate) fn record_timing(&self, lag_us: u64, service_us: u64) {
        self.progress
            .max_lag_us
            .fetch_max(lag_us, Ordering::Relaxed);
        if let Ok(mut t) = self.timings.lock() {
            let _ = t.lag.record(lag_us.max(1));
            let _ = t.service.record(service_us.max(1));
        }
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
}

/// What a pre-scan of the inputs found.
struct Scan {
    origin_us: u64,
    end_us: u64,
    sessions: u64,
    damage: Option<FormatError>,
}

fn scan(inputs: &[PathBuf], shard: (u32, u32)) -> Result<Scan, ReplayError> {
    let mut s = Scan {
        origin_us: u64::MAX,
        end_us: 0,
        sessions: 0,
        damage: None,
    };
    for (i, p) in inputs.iter().enumerate() {
        let r = RecordingReader::open(p)?;
        let kind = r.header().kind;
        for item in r {
            match item {
                Ok(Event::SessionStart(st)) => {
                    s.origin_us = s.origin_us.min(st.start_us);
                    if run_session_id(kind, i, st.session) % shard.1 as u64 == shard.0 as u64
                        && st.clone == 0
                    {
                        s.sessions += 1;
                    }
                }
                Ok(e) => s.end_us = s.end_us.max(event_time(&e)),
                Err(e) => {
                    s.damage.get_or_insert(e);
                    break;
                }
            }
        }
    }
    Ok(s)
}

/// Every session holds a socket (and, paced, a timer): lift the soft limit on open files to
/// the hard one, as a 1024 default would cap a replay at about a thousand sessions.
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a valid, initialized struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Connects once with the first session's credentials, before anything starts.
async fn preflight(target: &Target, user: Option<&str>) -> Result<String, ReplayError> {
    use mysql_async::prelude::Queryable;
    let fail = |message: String| ReplayError::Preflight {
        address: target.address(),
        message,
    };
    let opts = target.opts_for(user, None);
    let connect = mysql_async::Conn::new(opts);
    let mut conn = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail("no answer within 10 s".into())),
    };
    let v: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = conn.disconnect().await;
    Ok(v.unwrap_or_default())
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
pub async fn run(
    config: ReplayConfig,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> Result<Summary, ReplayError> {
    raise_fd_limit();
    let scan = scan(&config.inputs, config.shard)?;
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
    let server_version = preflight(&config.target, first_user(&config.inputs).as_deref()).await?;
    progress
        .sessions_total
        .store(scan.sessions * config.scale as u64, Ordering::Relaxed);
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
            ("server_version".into(), server_version.clone()),
        ],
    };
    let output = config.output.clone();
    let out_err = |e: myrr_recording::WriteError| ReplayError::Output {
        path: output.clone(),
        message: e.to_string(),
    };
    let mut writer = RecordingWriter::create(&config.output, &header).map_err(out_err)?;
    let (tx, mut rx) = mpsc::channel::<Event>(16 * 1024);
    // The writer runs as a task: events cost no thread wake-up each; blocks are compressed on
    // the writer's own thread.
    let writer_task = tokio::spawn(async move {
        let mut last = Instant::now();
        while let Some(e) = rx.recv().await {
            writer.push(&e)?;
            if last.elapsed() >= Duration::from_millis(500) {
                writer.flush_if_older(Duration::from_secs(1))?;
                last = Instant::now();
            }
        }
        writer.finish()?;
        Ok::<(), myrr_recording::WriteError>(())
    });

    let started = Instant::now();
    let shared = Arc::new(Shared {
        progress: progress.clone(),
        clock: Clock::new(),
        events: tx,
        stop: stop.clone(),
        start: tokio::time::Instant::now() + Duration::from_millis(50),
        recorded_origin_us: scan.origin_us,
        timings: Mutex::new(Timings {
            lag: Histogram::new(3).expect("histogram"),
            service: Histogram::new(3).expect("histogram"),
        }),
        errors: Mutex::new(Vec::new()),
        config,
    });

    // The dispatcher reads the recordings and feeds session tasks; it is a task too (reading
    // ahead from page cache is quick), so nothing crosses threads per exchange.
    let tasks = tokio::spawn(dispatch(shared.clone()))
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
    drop(shared);
    match writer_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(out_err(e)),
        Err(e) => {
            return Err(ReplayError::Output {
                path: output,
                message: e.to_string(),
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
        elapsed: started.elapsed(),
        lag_p50_us: lag.value_at_quantile(0.5),
        lag_p99_us: lag.value_at_quantile(0.99),
        lag_max_us: lag.max(),
        service_p50_us: service.value_at_quantile(0.5),
        service_p99_us: service.value_at_quantile(0.99),
        interrupted,
        damage: scan.damage.map(|d| d.to_string()),
        first_errors,
    })
}

/// Reads events in time order and hands each session's exchanges to its tasks (one per clone).
async fn dispatch(shared: Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = &shared.config;
    let mut tasks = Vec::new();
    let Ok(merged) = RunReader::open(&cfg.inputs) else {
        return tasks;
    };
    let mut senders: HashMap<u64, Vec<mpsc::Sender<Arc<Exchange>>>> = HashMap::new();
    let mut dispatched = 0u64;
    let horizon = cfg
        .limit_duration
        .map(|d| shared.recorded_origin_us + d.as_micros() as u64);
    for ev in merged {
        if shared.stopping() {
            break;
        }
        if horizon.is_some_and(|h| event_time(&ev) > h)
            || cfg.limit_exchanges.is_some_and(|l| dispatched >= l)
        {
            break;
        }
        match ev {
            Event::SessionStart(s) => {
                if s.clone != 0 {
                    continue; // a replay run used as input: replay each session once
                }
                let id = s.session;
                if id % cfg.shard.1 as u64 != cfg.shard.0 as u64 {
                    continue;
                }
                let mut txs = Vec::new();
                for clone in 0..cfg.scale {
                    let (tx, rx) = mpsc::channel(cfg.queue);
                    let start = SessionStart {
                        session: id,
                        ..s.clone()
                    };
                    let worker = session::Worker::new(shared.clone(), start, clone);
                    tasks.push(tokio::spawn(worker.run(rx)));
                    txs.push(tx);
                }
                senders.insert(id, txs);
            }
            Event::Exchange(x) => {
                if x.clone != 0 {
                    continue;
                }
                let id = x.session;
                let Some(txs) = senders.get(&id) else {
                    continue;
                };
                dispatched += 1;
                let x = Arc::new(Exchange { session: id, ..x });
                for tx in txs {
                    let _ = tx.send(x.clone()).await;
                }
            }
            Event::SessionEnd(e) => {
                senders.remove(&e.session);
            }
            Event::Gap(_) => {}
        }
    }
    tasks
}

/// Recording paths, for messages.
pub fn describe(inputs: &[PathBuf]) -> String {
    inputs
        .iter()
        .map(|p: &PathBuf| Path::new(p).display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
