//! Applications with connection pools and server-side prepared statements, on real client
//! libraries (node's mysql2, mysql-connector-python: tests/clients/), captured live on the
//! source from before they connect, replayed onto a candidate seeded with the same data: the
//! replay must skip nothing and leave the candidate's tables equal to the source's, and
//! analyze must find the same answers.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::clients::{checksums, seed, App, Counts, Driver, TABLES};
use common::*;
use myrr_recording::{Command as Cmd, Event};

const CONNECTIONS: u32 = 4;
const ITERATIONS: u32 = 60;

/// The tests capture all traffic to the source's port: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn node_pool_captured_from_its_start_replays_to_the_same_tables() {
    full_capture_replays_to_the_same_tables(Driver::Node);
}

#[test]
fn python_pool_captured_from_its_start_replays_to_the_same_tables() {
    full_capture_replays_to_the_same_tables(Driver::Python);
}

fn full_capture_replays_to_the_same_tables(driver: Driver) {
    let _serial = serial();
    let db = db();
    let name = format!("myrr_pool_{}", driver.name());
    let dir = tempdir();
    seed(db.source_port, &name, CONNECTIONS);
    seed(db.candidate_port, &name, CONNECTIONS);
    let seeded = checksums(db.source_port, &name);
    assert_eq!(seeded, checksums(db.candidate_port, &name), "seeded alike");

    let rec = dir.join("capture.myrr");
    let cap = LiveCapture::start(db.source_port, &rec);
    let app = App::start(driver, db.source_port, &name, CONNECTIONS, ITERATIONS);
    let counts = app.run();
    let summary = cap.stop();
    assert!(summary.contains("drops 0"), "kernel drops:\n{summary}");
    assert_eq!(counts, Counts::expected(CONNECTIONS, ITERATIONS));
    let source = checksums(db.source_port, &name);
    // The check below can fail: the workload changed every table, so a replay that did
    // nothing (or not all of it) leaves the candidate at `seeded`.
    for t in TABLES {
        assert_ne!(source[t], seeded[t], "{t}: the workload changed nothing");
    }

    // The capture holds each pooled connection whole: login, PREPAREs, EXECUTEs.
    let events = read_events(&rec);
    let sessions: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::SessionStart(s) if s.db.as_deref() == Some(name.as_bytes()) => {
                assert!(!s.mid_stream, "{s:?}");
                Some(s.session)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sessions.len(),
        CONNECTIONS as usize,
        "one session per connection"
    );
    let mut per_kind: HashMap<&str, u64> = HashMap::new();
    for x in events.iter().filter_map(Event::as_exchange) {
        assert!(
            sessions.contains(&x.session),
            "a session of another client: {x:?}"
        );
        *per_kind.entry(x.command.name()).or_default() += 1;
        if let Cmd::Execute { prepare_seen, .. } = &x.command {
            assert!(prepare_seen, "EXECUTE of an unknown statement: {x:?}");
        }
    }
    // Four statements prepared per connection, each executed once before `ready`.
    let setup = u64::from(4 * CONNECTIONS);
    assert_eq!(per_kind.get("prepare"), Some(&setup), "{per_kind:?}");
    assert_eq!(
        per_kind.get("execute"),
        Some(&(counts.executes() + setup)),
        "{per_kind:?}"
    );

    // Replay onto the candidate at the recorded pace.
    let out = dir.join("replay.myrr");
    let (s, report) = replay_whole(&rec, &out, &name, &source);
    let recorded = events.iter().filter_map(Event::as_exchange).count();
    assert_eq!(s["exchanges"], recorded as u64, "{s:#}");

    // Every answer as recorded.
    assert_eq!(report["verdict"]["pass"], true);
    assert_eq!(
        report["totals"]["mismatched"], 0,
        "{:#}",
        report["mismatches"]
    );
}

/// The two apps are one workload: the same workers and iterations leave the same tables.
#[test]
fn node_and_python_apps_write_the_same_tables() {
    let _serial = serial();
    let port = db().source_port;
    let mut sums = Vec::new();
    for driver in [Driver::Node, Driver::Python] {
        let name = format!("myrr_pool_same_{}", driver.name());
        seed(port, &name, 2);
        let counts = App::start(driver, port, &name, 2, 12).run();
        assert_eq!(counts, Counts::expected(2, 12), "{driver:?}");
        sums.push(checksums(port, &name));
    }
    assert_eq!(sums[0], sums[1], "node, python");
}

#[test]
fn node_pool_open_before_the_capture_replays_whole_with_server_backfill() {
    mid_stream_capture_with_server_backfill(Driver::Node, &[]);
}

#[test]
fn python_pool_open_before_the_capture_replays_whole_with_server_backfill() {
    mid_stream_capture_with_server_backfill(Driver::Python, &[]);
}

/// A pool with a short maximum lifetime: its new connections are whole sessions in the
/// capture, the old ones backfilled; the replay covers both.
#[test]
fn node_pool_reconnecting_during_the_capture_replays_whole() {
    mid_stream_capture_with_server_backfill(Driver::Node, &["--reconnect-every", "20"]);
}

/// The ordinary production case: the pool connected and prepared its statements before the
/// capture started. With `--server`, the capture backfills every connection from the
/// source's performance_schema; the replay prepares the statements again, logs into the
/// recorded database, skips nothing and leaves the candidate's tables equal to the source's.
fn mid_stream_capture_with_server_backfill(driver: Driver, app_args: &[&str]) {
    let _serial = serial();
    let db = db();
    let name = format!("myrr_pool_mid_{}", driver.name());
    let dir = tempdir();
    seed(db.source_port, &name, CONNECTIONS);
    let app = App::start_with(
        driver,
        db.source_port,
        &name,
        CONNECTIONS,
        ITERATIONS,
        app_args,
    );
    // The candidate starts where the source is when the capture starts.
    sql(
        db.candidate_port,
        &format!("DROP DATABASE IF EXISTS {name}"),
    );
    copy_db(db, &name);
    let at_start = checksums(db.source_port, &name);
    assert_eq!(at_start, checksums(db.candidate_port, &name));

    let rec = dir.join("capture.myrr");
    let cap = LiveCapture::start_with(
        db.source_port,
        &rec,
        &["--json", "--server", &db.source_url],
    );
    let counts = app.run();
    let stderr = cap.stop();
    let reconnects = counts.reconnects;
    assert_eq!(
        Counts {
            reconnects: 0,
            ..counts
        },
        Counts::expected(CONNECTIONS, ITERATIONS)
    );
    if !app_args.is_empty() {
        assert_eq!(reconnects, u64::from(CONNECTIONS) * 2, "{counts:?}");
    }
    let summary: serde_json::Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary:\n{stderr}"));
    assert_eq!(summary["kernel_drops"], 0, "{summary:#}");
    assert_eq!(
        summary["sessions"]["mid_stream"], CONNECTIONS,
        "{summary:#}"
    );
    assert_eq!(
        summary["sessions"]["backfilled"], CONNECTIONS,
        "{summary:#}"
    );
    assert_eq!(summary["executes_unprepared"], 0, "{summary:#}");
    // Each replaced connection: a whole session, its PREPAREs in the capture.
    assert_eq!(summary["sessions"]["full"], reconnects, "{summary:#}");
    let source = checksums(db.source_port, &name);
    for t in TABLES {
        assert_ne!(source[t], at_start[t], "{t}: the workload changed nothing");
    }

    // Replayed against a URL without a database, as the README writes it: the backfill
    // gives each session its database.
    replay_whole(&rec, &dir.join("replay.myrr"), &name, &source);
}

/// Replays `rec` onto the candidate (its URL names no database) into `out`: nothing may be
/// skipped or fail, the candidate's tables must end as `source`'s, and analyze must pass.
/// Returns the replay's JSON summary and analyze's report.
fn replay_whole(
    rec: &std::path::Path,
    out: &std::path::Path,
    name: &str,
    source: &std::collections::BTreeMap<String, u64>,
) -> (serde_json::Value, serde_json::Value) {
    let db = db();
    let json = run(myrr()
        .arg("replay")
        .arg(rec)
        .args(["--target", &db.candidate_url, "--json", "-o"])
        .arg(out));
    let s: serde_json::Value = serde_json::from_str(&json).expect("replay --json");
    for k in ["skipped", "errors", "connection_lost", "connect_failures"] {
        assert_eq!(s[k], 0, "{k}: {s:#}");
    }
    assert_eq!(
        &checksums(db.candidate_port, name),
        source,
        "the candidate's tables differ from the source's after the replay"
    );
    let (code, report) = analyze_json(rec, &[out], &[]);
    assert_eq!(code, 0, "{:#}", report["verdict"]);
    (s, report)
}

/// The same capture without `--server`: nothing is hidden. The capture warns (how many
/// EXECUTEs, what share, what to do); a replay against a URL without a database is refused
/// before it sends anything, naming `--default-db`; with it, the replay counts what it
/// skipped by reason; analyze fails for the exchanges not replayed, and says so first.
#[test]
fn node_pool_open_before_a_capture_without_backfill_is_accounted_for_everywhere() {
    let _serial = serial();
    let db = db();
    let driver = Driver::Node;
    let name = format!("myrr_pool_nobf_{}", driver.name());
    let dir = tempdir();
    seed(db.source_port, &name, CONNECTIONS);
    let app = App::start(driver, db.source_port, &name, CONNECTIONS, ITERATIONS);
    sql(
        db.candidate_port,
        &format!("DROP DATABASE IF EXISTS {name}"),
    );
    copy_db(db, &name);
    let at_start = checksums(db.candidate_port, &name);

    let rec = dir.join("capture.myrr");
    let cap = LiveCapture::start_with(db.source_port, &rec, &["--json"]);
    let counts = app.run();
    let stderr = cap.stop();
    let summary: serde_json::Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary:\n{stderr}"));
    // Every workload EXECUTE names a statement prepared before the capture.
    assert_eq!(
        summary["executes_unprepared"],
        counts.executes(),
        "{summary:#}"
    );
    let warning = summary["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("--server"), "{summary:#}");

    // Refused up front: the sessions' database is unknown and the URL names none.
    let out = dir.join("replay.myrr");
    let refused = myrr()
        .arg("replay")
        .arg(&rec)
        .args(["--target", &db.candidate_url, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{text}");
    assert!(text.contains("--default-db"), "{text}");
    assert_eq!(
        checksums(db.candidate_port, &name),
        at_start,
        "nothing sent"
    );

    let json = run(myrr()
        .arg("replay")
        .arg(&rec)
        .args([
            "--target",
            &db.candidate_url,
            "--default-db",
            &name,
            "--json",
            "-o",
        ])
        .arg(&out));
    let s: serde_json::Value = serde_json::from_str(&json).expect("replay --json");
    // COMMITs and BEGINs are queries and replay; every EXECUTE is skipped, with its reason.
    assert_eq!(
        s["skipped_by_reason"]["unknown_statement"],
        counts.executes(),
        "{s:#}"
    );
    assert_eq!(s["skipped"], counts.executes(), "{s:#}");

    // analyze: fails, the exchanges not replayed first, with their reason.
    let out_text = myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(&rec)
        .arg("--candidate")
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out_text.stdout);
    assert_eq!(out_text.status.code(), Some(1), "{report}");
    let first_reason = report
        .lines()
        .position(|l| l.contains("unknown_statement"))
        .unwrap_or_else(|| panic!("no unknown_statement in:\n{report}"));
    let values = report.lines().position(|l| l.contains("differ"));
    assert!(
        values.is_none_or(|v| v > first_reason),
        "not replayed must come first:\n{report}"
    );
}
