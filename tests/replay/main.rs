//! Replay against the real MariaDB pair: capture real client traffic on the source, replay it
//! on the candidate holding identical data, and check what came back. The tests are grouped
//! by concern in the modules below; what several of them use is here, what other test
//! crates use too is in tests/common.

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod backfill;
mod closed_loop;
mod commands;
mod connections;
mod damage;
mod divergence;
mod pacing;
mod pins;
mod ramp;
mod restarts;
mod selection;
mod shards;
mod stops;
mod sync;

use std::process::Command;

use common::*;

/// One recording of real traffic (sysbench read-only in text and prepared mode, the mariadb
/// CLI) captured on the source, shared by the tests of this crate.
fn recorded() -> &'static std::path::Path {
    static REC: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    REC.get_or_init(|| {
        let db = db();
        let port = db.source_port;
        let dir = tempdir();
        let sb = |args: &[&str]| {
            let mut v = vec!["--mysql-db=myrr_rp", "--tables=2", "--table-size=300"];
            v.extend_from_slice(args);
            sysbench(port, &v)
        };
        sql(port, "DROP DATABASE IF EXISTS myrr_rp; CREATE DATABASE myrr_rp");
        run(&mut sb(&["prepare"]));
        sql(port, "CREATE TABLE myrr_rp.kv (k INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO myrr_rp.kv VALUES (1,'a'),(2,'b')");
        sql(db.candidate_port, "DROP DATABASE IF EXISTS myrr_rp");
        copy_db(db, "myrr_rp");
        let cap = LiveCapture::start(port, &dir.join("rp.myrr"));
        let ro = |mode: &str| {
            let mode = format!("--db-ps-mode={mode}");
            let args = ["--mysql-db=myrr_rp", "--tables=2", "--table-size=300", "--threads=2", "--events=60", &mode, "run"];
            run(&mut sysbench_test("oltp_read_only", port, &args))
        };
        ro("disable");
        ro("auto");
        sql_force(port, "USE myrr_rp; SELECT * FROM kv ORDER BY k; SELECT * FROM missing_table_x; SELECT COUNT(*) FROM sbtest1");
        let _ = sql(port, "SELECT 1");
        cap.stop();
        dir.join("rp.myrr")
    })
}

/// Tests here share the candidate (one restarts it): they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `myrr replay REC --target URL -o OUT EXTRA...`.
fn replay_command(
    rec: &std::path::Path,
    url: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> Command {
    let mut c = myrr();
    c.arg("replay")
        .arg(rec)
        .args(["--target", url, "-o"])
        .arg(out)
        .args(extra);
    c
}

fn replay(rec: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> String {
    let o = replay_command(rec, &db().candidate_url, out, extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "myrr replay failed: {err}");
    err
}

/// A recording of `sessions` alike sessions on `db`, each sending `sql(i)` every `every_us`
/// µs, `n` times.
fn steady_recording(
    path: &std::path::Path,
    db: &str,
    sessions: usize,
    every_us: u64,
    n: u64,
    sql: impl Fn(u64) -> String,
) {
    let s: Vec<(u64, String)> = (0..n).map(|i| (i * every_us, sql(i))).collect();
    synthetic_recording(path, db, &vec![s; sessions]);
}

/// A replay of `rec` against `url` into `out` (paced unless `extra` says otherwise), running
/// in the background with its stdout and stderr piped.
fn spawn_replay(
    rec: &std::path::Path,
    url: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Child {
    replay_command(rec, url, out, extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A closed-loop replay of `rec` against `url` into `out`; the process's output.
fn replay_against(
    rec: &std::path::Path,
    url: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    replay_command(rec, url, out, &[&["--speed", "max"], extra].concat())
        .output()
        .unwrap()
}
