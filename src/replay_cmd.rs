//! `myrr replay`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use myrr_replay::{
    Progress, ReplayConfig, Speed, Summary, SyncMode, Target, Tls, TlsMode, WriteOrder,
};

use crate::util::parse_duration;

#[derive(clap::Args)]
#[command(
    after_help = "Credentials come from the URL, MYRR_PASSWORD, or --user-map; never from the recording.\n\nExamples:\n  myrr replay prod.myrr --target mysql://app@10.0.0.5:3306 -o cand.myrr\n  myrr replay prod.myrr --target mysql://app@cand:3306 -o cand.myrr --speed max --scale 4\n  myrr replay prod.myrr --target mysql://app@cand:3306 -o shard0.myrr --shard 0/2"
)]
pub struct Args {
    /// Recording(s) to replay (several are merged by time).
    #[arg(required = true, value_name = "REC")]
    inputs: Vec<PathBuf>,
    /// Candidate server: mysql://user[:password]@host:port[/db].
    #[arg(long, value_name = "URL")]
    target: String,
    /// Write the replay run here.
    #[arg(short = 'o', long = "output", value_name = "OUT.myrr")]
    output: PathBuf,
    /// Pace: a factor (1 = recorded pace, 2 = twice as fast) or `max` (closed loop).
    #[arg(long, default_value = "1", value_name = "F|max")]
    speed: String,
    /// Run N clones of every session (more load than recorded).
    #[arg(long, default_value = "1", value_name = "N")]
    scale: u32,
    /// Delay between clones of a session.
    #[arg(long, default_value = "10ms", value_parser = parse_duration, value_name = "D")]
    stagger: Duration,
    /// Replay only share i of N (sessions with id % N == i), e.g. 0/4.
    #[arg(long, default_value = "0/1", value_name = "i/N")]
    shard: String,
    /// Replay only statements that cannot write (SELECT, SHOW, SET session, BEGIN/COMMIT…).
    #[arg(long)]
    read_only: bool,
    /// Load ramp: replay the recording once per step at these multiples of its load, one
    /// after another, and stop at the first step the candidate cannot keep up with. A step
    /// of m runs floor(m) clones of every session (more users, production's think times) at
    /// m/floor(m) x --speed. Clones write too: use --read-only on data you care about.
    #[arg(long, value_name = "M,M,…", value_delimiter = ',', num_args = 1..)]
    ramp: Vec<f64>,
    /// --ramp: each step replays this much of the recording (default: all of it).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    ramp_step: Option<Duration>,
    /// --ramp: a step fails when, in two 1-second windows in a row (or over the whole step),
    /// more than 1 % of its exchanges started more than this after they were due.
    #[arg(long, default_value = "250ms", value_parser = parse_duration, value_name = "D")]
    ramp_max_lag: Duration,
    /// --ramp: a step fails when more than this share of its exchanges fail where
    /// production's statement did not (in two windows in a row, or over the step).
    #[arg(long, default_value = "1%", value_parser = parse_share, value_name = "P%")]
    ramp_max_errors: f64,
    /// Begin the recorded timeline at this wall-clock time (RFC 3339 in UTC, e.g.
    /// 2026-12-06T12:00:00Z, or +30s from now), so that the shards of a replay started on
    /// several machines replay together. At most 5 s late is caught up; later is refused.
    #[arg(long, value_parser = parse_start_at, value_name = "TIME")]
    start_at: Option<std::time::SystemTime>,
    /// Keep the recorded commit order across sessions (write workloads): `commit` holds every
    /// write and commit until the commits that had finished before it did in the recording have
    /// finished in the replay; `all` holds every statement so (reads then see what they saw).
    #[arg(long, value_enum, default_value = "none", value_name = "MODE")]
    sync: SyncArg,
    /// Longest a statement waits for earlier commits under --sync before it goes anyway.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "D")]
    sync_timeout: Duration,
    /// Under --sync, a commit also waits until the reads that had finished before it did in
    /// the recording have run (they did not see it). `off`: only the other direction.
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_views: OnOff,
    /// Under --sync, a statement waits only for the earlier commits whose rows it may share
    /// (told by its text and the candidate's primary keys; what the text cannot tell counts as
    /// every row), and a commit only for the earlier reads of its rows. Off by default: on the
    /// TPC-C-like and sysbench benches it was no faster and left more answers not reproduced.
    #[arg(long, value_enum, default_value = "off", value_name = "ON_OFF")]
    sync_rows: OnOff,
    /// Under --sync, a write (or locking read) also waits until the other sessions' writes
    /// that had finished before it started in the recording have run: `rows`, those that may
    /// have written a row it writes (told by the statements' texts and the candidate's primary
    /// keys; what a text cannot tell counts as every row), so that each row is written in
    /// production's order; `on`, every one (row locks taken in production's order). `rows`
    /// left 0.75 % of sysbench oltp_read_write's answers (32 threads) not reproduced, against
    /// 1.16 % `off` and 0.70 % `on`, in the time `off` took (`on`: 1.5× as long).
    #[arg(long, value_enum, default_value = "rows", value_name = "MODE")]
    sync_writes: WritesArg,
    /// Under --sync, a write or locking read answered while another session's commit was
    /// finishing (at most 5 ms before it) also waits for that commit: a statement woken by a
    /// commit's lock release can be answered a few µs before the commit is, and replayed first
    /// it would take the lock in the other order (the order waits then fight the locks).
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_locks: OnOff,
    /// Under --sync, a transaction lost to a deadlock on one side only ends as production's
    /// did (its rows would stay different for the rest of the replay): rolled back here too
    /// when production lost it; when the candidate lost it and production did not, its
    /// statements are sent again (at most 3 times). Both are labelled lock-conflict.
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_deadlocks: OnOff,
    /// Under --sync, a read that overlapped other sessions' commits in the recording (no
    /// recorded order) and ran before them here, whose rows are not production's, is read
    /// again after them (an autocommit read; or the transaction, while it has only read: rolled
    /// back and sent again), once per transaction: production's answers tell which order
    /// production had.
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_reread: OnOff,
    /// Under --sync-reread, an order-ambiguous read that runs after commits it overlapped in
    /// the recording (production may not have seen them) is also taken, on a spare connection
    /// of its session, as soon as the commits that ended before it started have run
    /// (`START TRANSACTION WITH CONSISTENT SNAPSHOT`, no commit waits for it); when its rows
    /// are not production's, it is read there first, and the earlier view stands if it is
    /// closer to production's (the transaction then goes on on that connection). Costs a
    /// second connection per session and a statement per such view.
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_spare: OnOff,
    /// Under --sync, ask the candidate for its lock waits (InnoDB's status, else
    /// sys.innodb_lock_waits or InnoDB's information_schema tables; needs PROCESS), so that a statement waiting for an earlier
    /// commit goes ahead only when that wait and the candidate's lock waits close a circle,
    /// not whenever the commit's session is long in the server (`off`, or a candidate that
    /// cannot say: after 20 ms more than twice production's time).
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    sync_lock_waits: OnOff,
    /// Pin what production's statements saw (deterministic writes): before a write, or a read
    /// calling a time function, set `timestamp` to the statement's recorded start and
    /// `insert_id` to the AUTO_INCREMENT id it generated. `auto`: on with --sync.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pin: PinArg,
    /// With --pin on a MariaDB target: once a session's first pin was taken, a text statement
    /// carries its pins (`SET STATEMENT timestamp = …, insert_id = … FOR <statement>`)
    /// instead of a `SET` round trip before it. `off`: always a `SET` of their own.
    #[arg(long, value_enum, default_value = "on", value_name = "ON_OFF")]
    pin_batch: OnOff,
    /// Keep no rows: by default the first rows (at most 20 rows, 4 KiB) of the first 10 answers
    /// of each statement shape whose rows differ from the recorded answer's are kept, so that
    /// `analyze` can show them.
    #[arg(long)]
    no_row_samples: bool,
    /// TLS to the target: off; prefer (when offered, certificate not checked); require
    /// (certificate not checked); verify-ca (chain to --tls-ca, or the public web roots);
    /// verify-identity (also the host name).
    #[arg(long, value_enum, default_value = "off", value_name = "MODE")]
    tls: TlsArg,
    /// PEM file of the CA certificates that verify-ca and verify-identity trust.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Replay only statements whose SQL matches this regex.
    #[arg(long, value_name = "REGEX")]
    include: Option<String>,
    /// Skip statements whose SQL matches this regex.
    #[arg(long, value_name = "REGEX")]
    exclude: Option<String>,
    /// Stop after this many recorded exchanges.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Stop after this much recorded time (e.g. 5m).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    limit_duration: Option<Duration>,
    /// Database for sessions whose recording has none (mid-stream sessions the capture learnt
    /// nothing of). Without it, or one in the target URL, a replay with such sessions refuses
    /// to start.
    #[arg(long, value_name = "DB")]
    default_db: Option<String>,
    /// File mapping recorded users to target users: lines `recorded = user[:password]`, `*` for any.
    #[arg(long, value_name = "FILE")]
    user_map: Option<PathBuf>,
    /// Replay the readable part of a damaged recording.
    #[arg(long)]
    ignore_damage: bool,
    /// How long a session tries to reconnect after the server went away.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "D")]
    reconnect_wait: Duration,
    /// Session threads, at most: each new session gets a thread of its own until there are
    /// N, then shares the least busy one. A thread per busy session answers the server as
    /// quickly as a blocking client does; 1 runs everything on one thread.
    #[arg(long, default_value = "64", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Linux scheduling of the replay's threads: batch (SCHED_BATCH: a thread woken by an
    /// answer does not preempt a running one, such as the server's on a shared machine);
    /// pair (each session thread kept on the CPU its server thread answers from, for a
    /// candidate on this machine); normal (the policy myrr was started with); auto: with
    /// --speed max, pair for a loopback target and batch for another, unless started under a
    /// policy other than the default; normal when paced
    #[arg(long, value_enum, default_value = "auto", value_name = "POLICY")]
    sched: SchedArg,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TlsArg {
    Off,
    Prefer,
    Require,
    VerifyCa,
    VerifyIdentity,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchedArg {
    Auto,
    Normal,
    Batch,
    Pair,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PinArg {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WritesArg {
    Off,
    Rows,
    On,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SyncArg {
    None,
    Commit,
    All,
}

/// `5%` or `0.05`.
fn parse_share(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a share (try 1% or 0.01)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?}: a share is between 0 and 100 %"));
    }
    Ok(v)
}

/// RFC 3339 in UTC (`2026-12-06T12:00:00Z`, fractions of a second allowed) or `+D` from now.
pub(crate) fn parse_start_at(s: &str) -> Result<std::time::SystemTime, String> {
    let s = s.trim();
    if let Some(d) = s.strip_prefix('+') {
        return Ok(std::time::SystemTime::now() + parse_duration(d)?);
    }
    humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_rfc3339(s))
        .map_err(|e| {
            format!("{s:?}: not an RFC 3339 time such as 2026-12-06T12:00:00Z, nor +30s ({e})")
        })
}

fn parse_shard(s: &str) -> anyhow::Result<(u32, u32)> {
    let (i, n) = s.split_once('/').context("--shard is i/N, e.g. 0/4")?;
    let (i, n): (u32, u32) = (i.trim().parse()?, n.trim().parse()?);
    if n == 0 || i >= n {
        bail!("--shard {s}: need 0 <= i < N");
    }
    Ok((i, n))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let speed = if a.speed == "max" {
        Speed::Max
    } else {
        let f: f64 = a
            .speed
            .parse()
            .with_context(|| format!("--speed {:?}: a number or max", a.speed))?;
        if !(f > 0.0 && f.is_finite()) {
            bail!("--speed must be positive");
        }
        Speed::Factor(f)
    };
    if a.scale == 0 {
        bail!("--scale must be at least 1");
    }
    let target = Target::new(
        &a.target,
        std::env::var("MYRR_PASSWORD").ok(),
        a.user_map.as_deref(),
    )?;
    let mut cfg = ReplayConfig::new(a.inputs.clone(), target, a.output.clone());
    cfg.speed = speed;
    cfg.scale = a.scale;
    cfg.stagger = a.stagger;
    cfg.shard = parse_shard(&a.shard)?;
    cfg.read_only = a.read_only;
    cfg.sync = match a.sync {
        SyncArg::None => SyncMode::None,
        SyncArg::Commit => SyncMode::Commit,
        SyncArg::All => SyncMode::All,
    };
    cfg.sync_timeout = a.sync_timeout;
    cfg.sync_views = matches!(a.sync_views, OnOff::On);
    cfg.sync_rows = matches!(a.sync_rows, OnOff::On);
    cfg.sync_writes = match a.sync_writes {
        WritesArg::Off => WriteOrder::Off,
        WritesArg::Rows => WriteOrder::Rows,
        WritesArg::On => WriteOrder::All,
    };
    cfg.sync_locks = matches!(a.sync_locks, OnOff::On);
    cfg.sync_deadlocks = matches!(a.sync_deadlocks, OnOff::On);
    cfg.sync_reread = matches!(a.sync_reread, OnOff::On);
    cfg.sync_spare = matches!(a.sync_spare, OnOff::On);
    cfg.sync_lock_waits = matches!(a.sync_lock_waits, OnOff::On);
    cfg.row_samples = !a.no_row_samples;
    cfg.pin_batch = matches!(a.pin_batch, OnOff::On);
    cfg.pin = match a.pin {
        PinArg::Auto => !matches!(cfg.sync, SyncMode::None),
        PinArg::On => true,
        PinArg::Off => false,
    };
    let mode = match a.tls {
        TlsArg::Off => TlsMode::Off,
        TlsArg::Prefer => TlsMode::Prefer,
        TlsArg::Require => TlsMode::Require,
        TlsArg::VerifyCa => TlsMode::VerifyCa,
        TlsArg::VerifyIdentity => TlsMode::VerifyIdentity,
    };
    cfg.tls = Tls::new(mode, a.tls_ca.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    cfg.include = a
        .include
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--include")?;
    cfg.exclude = a
        .exclude
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--exclude")?;
    if !a.ramp.is_empty() {
        let mut ramp = myrr_replay::Ramp::new(a.ramp.clone());
        ramp.max_lag = a.ramp_max_lag;
        ramp.max_errors = a.ramp_max_errors;
        ramp.step_duration = a.ramp_step;
        cfg.ramp = Some(ramp);
    } else if a.ramp_step.is_some() {
        bail!("--ramp-step needs --ramp");
    }
    cfg.start_at = a.start_at;
    cfg.limit_exchanges = a.limit;
    cfg.limit_duration = a.limit_duration;
    cfg.default_db = a.default_db.clone();
    cfg.ignore_damage = a.ignore_damage;
    cfg.reconnect_wait = a.reconnect_wait;

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let progress = Arc::new(Progress::default());
    cfg.session_threads = a.threads.into();
    cfg.sched = match a.sched {
        SchedArg::Auto => myrr_replay::Sched::Auto,
        SchedArg::Normal => myrr_replay::Sched::Normal,
        SchedArg::Batch => myrr_replay::Sched::Batch,
        SchedArg::Pair => myrr_replay::Sched::Pair,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reporter = spawn_reporter(progress.clone(), stop.clone());
    let result = rt.block_on(myrr_replay::run(cfg, progress.clone(), stop.clone()));
    reporter.finish();
    let s = result?;
    print_summary(&s, &a.output, a.json);
    Ok(if s.damage.is_some() || s.interrupted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

struct Reporter {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Progress bar on a terminal (never with NO_COLOR... bars are not colour, but we keep them
/// off when stderr is not a terminal); plain lines every 10 s otherwise.
fn spawn_reporter(p: Arc<Progress>, stop: Arc<AtomicBool>) -> Reporter {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let tty = std::io::stderr().is_terminal();
    let handle = std::thread::spawn(move || {
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(1000);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let mut last_ex = 0u64;
        let mut ticks = 0u64;
        let period = Duration::from_millis(200);
        while !d.load(Ordering::Relaxed) {
            std::thread::sleep(period);
            ticks += 1;
            let plain_due = ticks % 50 == 0;
            if bar.is_none() && !plain_due {
                continue;
            }
            let ex = p.exchanges.load(Ordering::Relaxed);
            let secs = if bar.is_some() { 0.2 } else { 10.0 };
            let qps = (ex - last_ex) as f64 / secs;
            last_ex = ex;
            let (s0, s1, now) = (
                p.recorded_start_us.load(Ordering::Relaxed),
                p.recorded_end_us.load(Ordering::Relaxed),
                p.recorded_us.load(Ordering::Relaxed),
            );
            let frac = if s1 > s0 {
                (now.saturating_sub(s0)) as f64 / (s1 - s0) as f64
            } else {
                0.0
            };
            let msg = format!(
                "recorded {:.1}s/{:.1}s  {:.0} qps  sessions {} open {} done  errors {}  skipped {}  lost {}  lag max {:.1} ms{}",
                now.saturating_sub(s0) as f64 / 1e6,
                s1.saturating_sub(s0) as f64 / 1e6,
                qps,
                p.sessions_active.load(Ordering::Relaxed),
                p.sessions_done.load(Ordering::Relaxed),
                p.errors.load(Ordering::Relaxed),
                p.skipped.load(Ordering::Relaxed),
                p.lost.load(Ordering::Relaxed),
                p.take_max_lag_us() as f64 / 1000.0,
                if stop.load(Ordering::Relaxed) { "  stopping…" } else { "" },
            );
            let msg = format!("{}{msg}", ramp_progress(&p));
            match &bar {
                Some(b) => {
                    b.set_position((frac.clamp(0.0, 1.0) * 1000.0) as u64);
                    b.set_message(msg);
                }
                None => eprintln!("myrr: {msg}"),
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    });
    Reporter {
        done,
        handle: Some(handle),
    }
}

/// `--ramp`: the step running and the multiple of the recorded load it achieves so far: its
/// clones times how fast the recorded timeline advances (1 = the recorded pace).
fn ramp_progress(p: &Progress) -> String {
    let step = p.ramp_step.load(Ordering::Relaxed);
    if step == 0 {
        return String::new();
    }
    let started = p.ramp_started_us.load(Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let wall = now.saturating_sub(started);
    let recorded = p
        .recorded_us
        .load(Ordering::Relaxed)
        .saturating_sub(p.recorded_start_us.load(Ordering::Relaxed));
    let achieved = if wall > 0 {
        p.ramp_clones.load(Ordering::Relaxed) as f64 * recorded as f64 / wall as f64
    } else {
        0.0
    };
    format!(
        "step {step}/{} x{} (achieved x{achieved:.2})  ",
        p.ramp_steps.load(Ordering::Relaxed),
        p.ramp_multiple_milli.load(Ordering::Relaxed) as f64 / 1000.0,
    )
}

fn print_summary(s: &Summary, out: &std::path::Path, json: bool) {
    let qps = s.exchanges as f64 / s.elapsed.as_secs_f64().max(1e-9);
    let b = &s.backfill;
    if json {
        // `--sync`: what the run labelled for rows it left different from production's.
        let divergence = serde_json::json!({
            "lock_conflicts": s.lock_conflicts,
            "after_divergence": s.after_divergence,
            "primary_keys": s.primary_keys.as_ref().and_then(|t| t.as_ref().ok()),
            "primary_keys_failure": s.primary_keys.as_ref().and_then(|t| t.as_ref().err()),
            "reach_tables": s.reach_tables.as_ref().and_then(|t| t.as_ref().ok()),
            "reach_tables_failure": s.reach_tables.as_ref().and_then(|t| t.as_ref().err()),
            "deadlocks": {
                "undone": s.deadlocks_undone,
                "retried": s.deadlocks_retried,
                "not_retried": s.deadlocks_not_retried,
            },
        });
        let skipped_by: serde_json::Map<String, serde_json::Value> = s
            .skipped_by
            .iter()
            .map(|(r, n)| (r.name().to_string(), (*n).into()))
            .collect();
        let lock_waits = serde_json::json!({"asked": s.lock_waits_asked, "failure": s.lock_waits_failure, "source": s.lock_waits_source});
        let mut v = serde_json::json!({
            "output": out.display().to_string(),
            "server_version": s.server_version,
            "sessions": s.sessions,
            "exchanges": s.exchanges,
            "errors": s.errors,
            "skipped": s.skipped,
            "skipped_by_reason": skipped_by,
            "connection_lost": s.lost,
            "internal_errors": {"sessions": s.sessions_failed, "exchanges_abandoned": s.abandoned},
            "reconnects": s.reconnects,
            "connect_failures": s.connect_failures,
            "sync_timeouts": s.sync_timeouts,
            "sync_cycles": s.sync_cycles,
            "sync_wait_s": {
                "in_order": s.sync_wait.as_secs_f64(),
                "gave_way": s.sync_wait_gave_way.as_secs_f64(),
                "held_views": s.sync_wait_held.as_secs_f64(),
            },
            "order_ambiguous": s.order_ambiguous,
            "out_of_order": s.out_of_order,
            "rereads": {"held": s.views_held, "sent": s.rereads, "rounds": s.reread_rounds, "reproduced": s.rereads_reproduced, "failed": s.rereads_failed},
            "spare_views": {"taken": s.spare_snapshots, "read": s.spare_reads, "reproduced": s.spare_reproduced, "failed_sessions": s.spare_failed, "unshared_sessions": s.spare_unshared},
            "divergence": divergence,
            "backfill": {
                "sessions": b.sessions,
                "statements": b.statements,
                "statements_failed": b.statements_failed,
                "variables": b.variables,
                "variables_rejected": b.variables_rejected,
            },
            "pins": {
                "statements": s.pins.statements,
                "batched": s.pins.batched,
                "refused": s.pins.refused,
                "time_tables": s.pins.time_tables.as_ref().and_then(|t| t.as_ref().ok()),
                "time_tables_failure": s.pins.time_tables.as_ref().and_then(|t| t.as_ref().err()),
            },
            "row_samples": s.row_samples,
            "elapsed_s": s.elapsed.as_secs_f64(),
            "qps": qps,
            "start_lag_us": {"p50": s.lag_p50_us, "p99": s.lag_p99_us, "max": s.lag_max_us},
            "service_us": {"p50": s.service_p50_us, "p99": s.service_p99_us},
            "interrupted": s.interrupted,
            "damage": s.damage,
            "first_errors": s.first_errors,
            "sched": s.sched.name(),
            "start_late_s": s.start_late.as_secs_f64(),
            "ramp": s.steps.iter().map(|st| serde_json::json!({
                "step": st.step.index + 1,
                "multiple": st.step.multiple,
                "clones": st.step.clones,
                "speed": st.step.speed,
                "exchanges": st.counts.exchanges,
                "late": st.counts.late,
                "new_errors": st.counts.new_errors,
                "elapsed_s": st.elapsed.as_secs_f64(),
                "qps": st.counts.exchanges as f64 / st.elapsed.as_secs_f64().max(1e-9),
                "start_lag_p99_us": st.lag_p99_us,
                "service_p99_us": st.service_p99_us,
                "failed": st.failed,
                "interrupted": st.interrupted,
            })).collect::<Vec<_>>(),
        });
        v["lock_waits"] = lock_waits;
        println!("{v}");
    }
    eprintln!(
        "myrr: replayed {} exchanges in {} sessions against {} in {:.1}s ({:.0} qps) -> {}",
        s.exchanges,
        s.sessions,
        s.server_version,
        s.elapsed.as_secs_f64(),
        qps,
        out.display()
    );
    eprintln!(
        "  server errors {}  skipped {}  lost with the connection {}  reconnects {}  failed connects {}",
        s.errors, s.skipped, s.lost, s.reconnects, s.connect_failures
    );
    for (reason, n) in s.skipped_by.iter().filter(|(_, n)| *n > 0) {
        eprintln!("    {n} {}: {}", reason.name(), reason.explain());
    }
    if s.sessions_failed > 0 {
        eprintln!(
            "  internal errors (bugs in myrr, first ones above; please report them): {} sessions \
             abandoned, {} exchanges handed to them afterwards not replayed",
            s.sessions_failed, s.abandoned
        );
    }
    if b.sessions > 0 {
        eprintln!(
            "  sessions restored from backfills {}: statements prepared {} (refused {}), \
             variables set {} (refused {})",
            b.sessions, b.statements, b.statements_failed, b.variables, b.variables_rejected
        );
    }
    if s.pins.statements + s.pins.refused > 0 {
        eprintln!(
            "  --pin: {} statements sent with production's timestamp/insert_id ({} of them \
             carrying it: SET STATEMENT … FOR); {} sessions' targets refused a pin (they went \
             on without)",
            s.pins.statements, s.pins.batched, s.pins.refused
        );
    }
    match &s.pins.time_tables {
        Some(Ok(n)) => eprintln!(
            "  --pin: {n} of the candidate's tables and views can read the time without a time \
             function in the statement (defaults, ON UPDATE, triggers, views): only writes to \
             them, or calling one, got a timestamp pin"
        ),
        Some(Err(why)) => eprintln!(
            "  --pin: could not ask the candidate which tables read the time ({why}): every \
             write got a timestamp pin"
        ),
        None => {}
    }
    if s.row_samples > 0 {
        eprintln!(
            "  answers whose rows differ from the recording: {} (their first rows kept)",
            s.row_samples
        );
    }
    eprintln!(
        "  start lag p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms   service time p50 {:.2} ms  p99 {:.2} ms",
        s.lag_p50_us as f64 / 1e3,
        s.lag_p99_us as f64 / 1e3,
        s.lag_max_us as f64 / 1e3,
        s.service_p50_us as f64 / 1e3,
        s.service_p99_us as f64 / 1e3
    );
    if s.sync_timeouts + s.sync_cycles > 0 {
        eprintln!(
            "  --sync: {} statements went ahead of an earlier commit: {} after --sync-timeout, \
             {} because that commit's session was blocked in the server (the candidate locked \
             differently)",
            s.sync_timeouts + s.sync_cycles,
            s.sync_timeouts,
            s.sync_cycles
        );
    }
    if !(s.sync_wait + s.sync_wait_gave_way).is_zero() {
        eprintln!(
            "  --sync: sessions waited {:.1} s in all for the recorded order ({:.1} s of it in \
             waits that then went ahead)",
            (s.sync_wait + s.sync_wait_gave_way).as_secs_f64(),
            s.sync_wait_gave_way.as_secs_f64()
        );
    }
    if let Some(why) = &s.lock_waits_failure {
        eprintln!(
            "  --sync: could not ask the candidate for its lock waits ({why}); a session long \
             in the server was taken to be blocked by the replay's order"
        );
    } else if s.lock_waits_asked > 0 {
        eprintln!(
            "  --sync: asked the candidate for its lock waits {} times ({})",
            s.lock_waits_asked,
            s.lock_waits_source.as_deref().unwrap_or("?")
        );
    }
    if s.order_ambiguous + s.out_of_order > 0 {
        eprintln!(
            "  --sync: labelled in the run: {} order-ambiguous reads (they overlapped another \
             session's commit in the recording), {} exchanges out of the recorded order",
            s.order_ambiguous, s.out_of_order
        );
    }
    if s.lock_conflicts + s.after_divergence > 0 {
        eprintln!(
            "  --sync: labelled in the run: {} lock conflicts (a deadlock or lock wait timeout \
             here or in the recording, not both), {} exchanges after a divergence (they touch \
             rows an earlier write left different from production's)",
            s.lock_conflicts, s.after_divergence
        );
    }
    if s.views_held > 0 {
        eprintln!(
            "  --sync: {} order-ambiguous views held back their answers to be read again if \
             need be; commits that started after them waited {:.1} s for them in all",
            s.views_held,
            s.sync_wait_held.as_secs_f64()
        );
    }
    if s.rereads + s.rereads_failed > 0 {
        eprintln!(
            "  --sync: {} order-ambiguous views read again after the commits they overlapped \
             (their rows were not production's; {} rounds); {} then were closer to \
             production's",
            s.rereads, s.reread_rounds, s.rereads_reproduced
        );
    }
    if s.spare_snapshots + s.spare_failed > 0 {
        eprintln!(
            "  --sync: {} order-ambiguous views also taken on a spare connection before the \
             commits they overlapped; {} read there (their rows were not production's), {} \
             then closer to production's{}",
            s.spare_snapshots,
            s.spare_reads,
            s.spare_reproduced,
            if s.spare_failed > 0 {
                format!(
                    "; {} sessions' spare connections failed (first errors above)",
                    s.spare_failed
                )
            } else {
                String::new()
            }
        );
    }
    if s.spare_unshared > 0 {
        eprintln!(
            "  --sync: {} sessions kept no spare connection: they keep state a second \
             connection would not share (temporary tables, user variables, named locks, a \
             prepared SET, over 64 distinct SETs, a changed user or a reset)",
            s.spare_unshared
        );
    }
    if s.rereads_failed > 0 {
        eprintln!(
            "  --sync: {} transactions rolled back to be read again could not be (first errors \
             above): their first answers stand, and their sessions went on in a transaction \
             production did not have",
            s.rereads_failed
        );
    }
    if s.deadlocks_undone + s.deadlocks_retried + s.deadlocks_not_retried > 0 {
        eprintln!(
            "  --sync: transactions lost to a deadlock on one side only: {} rolled back here as \
             in production, {} sent again and taken, {} could not be sent again (their rows \
             stay different)",
            s.deadlocks_undone, s.deadlocks_retried, s.deadlocks_not_retried
        );
    }
    if let Some(Err(why)) = &s.reach_tables {
        eprintln!(
            "  --sync-rows: could not ask the candidate which tables are views or have triggers \
             or foreign keys ({why}): every statement waited for every earlier commit"
        );
    }
    if let Some(Err(why)) = &s.primary_keys {
        eprintln!(
            "  --sync: could not ask the candidate for its primary keys ({why}): rows an earlier \
             write left different were told by table only"
        );
    }
    if !s.start_late.is_zero() {
        eprintln!(
            "  --start-at: began the recorded timeline {:.2} s late (caught up)",
            s.start_late.as_secs_f64()
        );
    }
    for st in &s.steps {
        eprintln!(
            "  ramp step {} x{}: {} clones at {} x the pace, {} exchanges in {:.1}s ({:.0} qps), \
             start lag p99 {:.2} ms, service p99 {:.2} ms, {} late, {} new errors: {}",
            st.step.index + 1,
            st.step.multiple,
            st.step.clones,
            st.step.speed,
            st.counts.exchanges,
            st.elapsed.as_secs_f64(),
            st.counts.exchanges as f64 / st.elapsed.as_secs_f64().max(1e-9),
            st.lag_p99_us as f64 / 1e3,
            st.service_p99_us as f64 / 1e3,
            st.counts.late,
            st.counts.new_errors,
            match (&st.failed, st.interrupted) {
                (_, true) => "stopped on request".to_string(),
                (Some(why), _) => format!("NOT SUSTAINED, the ramp stops here: {why}"),
                (None, _) => "sustained".to_string(),
            }
        );
    }
    if s.interrupted {
        eprintln!("  interrupted: the output holds everything replayed up to the stop");
    }
    if let Some(d) = &s.damage {
        eprintln!("  damaged input, replayed its readable part: {d}");
    }
    for e in &s.first_errors {
        eprintln!("  {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_progress_names_the_ramp_step_and_the_multiple_achieved() {
        let p = Progress::default();
        assert_eq!(ramp_progress(&p), "", "no ramp, no step");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        p.ramp_step.store(2, Ordering::Relaxed);
        p.ramp_steps.store(3, Ordering::Relaxed);
        p.ramp_multiple_milli.store(2000, Ordering::Relaxed);
        p.ramp_clones.store(2, Ordering::Relaxed);
        // 2 s into the step, the replay has reached 1.9 s of the recording: 2 clones at
        // 0.95 × the pace.
        p.ramp_started_us.store(now - 2_000_000, Ordering::Relaxed);
        p.recorded_start_us.store(10_000_000, Ordering::Relaxed);
        p.recorded_us.store(11_900_000, Ordering::Relaxed);
        let line = ramp_progress(&p);
        assert!(line.starts_with("step 2/3 x2 (achieved x1.9"), "{line}");
    }

    #[test]
    fn start_at_takes_rfc3339_or_an_offset_from_now() {
        let at = parse_start_at("2026-12-06T12:00:00Z").unwrap();
        let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_796_558_400);
        let later = parse_start_at("+30s").unwrap();
        let ahead = later.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(ahead > Duration::from_secs(29) && ahead <= Duration::from_secs(30));
        assert!(parse_start_at("12:00").is_err());
        assert_eq!(parse_share("5%"), Ok(0.05));
        assert_eq!(parse_share("0.5"), Ok(0.5));
        assert!(parse_share("150%").is_err());
    }
}
