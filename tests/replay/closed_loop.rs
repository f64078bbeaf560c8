//! Closed loop (--speed max): a blocked session does not stall the others, a session
//! joining a waiting one's thread runs at once, and the threads' scheduling (--sched).

use std::process::Command;

use crate::common::*;
use crate::{replay, replay_against, serial, spawn_replay, steady_recording};
use myrr_recording::Response;

/// Closed loop with short queues: a session blocked on a row lock (its 6000 next exchanges
/// queued behind the blocked one) must not stop the dispatcher from reaching the lock
/// holder's COMMIT further on in the recording. The queue budget grows instead of waiting for
/// InnoDB's lock timeout.
#[test]
fn a_blocked_session_does_not_stall_a_closed_loop() {
    let _serial = serial();
    let db = db();
    sql(db.candidate_port, "DROP DATABASE IF EXISTS myrr_stall");
    sql(
        db.candidate_port,
        "CREATE DATABASE myrr_stall; \
         CREATE TABLE myrr_stall.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
         INSERT INTO myrr_stall.t VALUES (1, 0)",
    );
    let dir = tempdir();
    let rec = dir.join("stall.myrr");
    let holder = vec![
        (0, "BEGIN".to_string()),
        (10, "SELECT v FROM t WHERE id = 1 FOR UPDATE".to_string()),
        (100_000, "COMMIT".to_string()),
    ];
    // The sleep lets the holder take the lock first.
    let mut blocked = vec![
        (0, "SET SESSION innodb_lock_wait_timeout = 30".to_string()),
        (1, "DO SLEEP(0.5)".to_string()),
        (20, "UPDATE t SET v = v + 1 WHERE id = 1".to_string()),
    ];
    blocked.extend((0..6000).map(|i| (30 + i, "SELECT 1".to_string())));
    synthetic_recording(&rec, "myrr_stall", &[holder, blocked]);
    let out = dir.join("stall.out.myrr");
    let started = std::time::Instant::now();
    let o = replay_against(&rec, &db.candidate_url, &out, &[]);
    let took = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let xs = exchanges_by_key(&read_events(&out));
    assert_eq!(xs.len(), 3 + 6003);
    // Answered once the holder committed, not ended by the lock wait timeout (1205).
    assert!(
        matches!(xs[&(2, 2, 0)].response, Response::Ok(_)),
        "{:?}",
        xs[&(2, 2, 0)].response
    );
    assert!(took.as_secs() < 20, "took {took:?}");
    assert_eq!(
        sql(db.candidate_port, "SELECT v FROM myrr_stall.t").trim(),
        "1"
    );
}

/// The /proc file `file` of each of a process's threads whose name starts with `prefix`
/// (threads that end meanwhile are left out).
fn thread_files(pid: u32, prefix: &str, file: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join(file)).ok())
        .collect()
}

/// Scheduling policy (field 41 of /proc/PID/task/TID/stat) of each of a process's threads whose
/// name starts with `prefix`.
fn thread_policies(pid: u32, prefix: &str) -> Vec<u32> {
    thread_files(pid, prefix, "stat")
        .iter()
        .filter_map(|stat| {
            // Fields after the name start at field 3 (state).
            let close = stat.rfind(')')?;
            stat[close + 1..]
                .split_whitespace()
                .nth(41 - 3)?
                .parse()
                .ok()
        })
        .collect()
}

/// A closed-loop replay's threads run under SCHED_BATCH with `--sched batch` (a woken session
/// thread must not preempt the server's on a shared machine), and so they would by default
/// against another machine; against this machine's candidate the default is `pair`, which
/// keeps the default policy, as `--sched normal` and a paced replay do.
#[test]
fn closed_loop_threads_run_under_sched_batch() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("sleepy.myrr");
    let s: Vec<(u64, String)> = vec![(0, "SELECT SLEEP(1.5)".into()), (1, "SELECT 1".into())];
    synthetic_recording(&rec, "sbtest", &[s.clone(), s]);
    for (extra, want, name) in [
        (
            &["--speed", "max", "--sched", "batch"][..],
            SCHED_BATCH,
            "batch",
        ),
        (&["--speed", "max"][..], SCHED_OTHER, "pair"),
        (
            &["--speed", "max", "--sched", "normal"][..],
            SCHED_OTHER,
            "normal",
        ),
        (&["--speed", "1"][..], SCHED_OTHER, "normal"),
    ] {
        let out = dir.join("sleepy.out.myrr");
        let mut args = vec!["--threads", "4", "--json"];
        args.extend_from_slice(extra);
        let child = spawn_replay(&rec, &db.candidate_url, &out, &args);
        // Both looked for until both are seen: on a busy machine (two compilers running) one
        // look at the output thread, taken once the session threads were seen, found none.
        let (mut seen, mut output) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            seen = thread_policies(child.id(), "myrr-s");
            output = thread_policies(child.id(), "myrr-output");
            if seen.len() == 2 && output.len() == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(seen, [want, want], "session threads with {extra:?}");
        assert_eq!(output, [want], "output thread with {extra:?}");
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["sched"], name, "{summary:#}");
    }
}

/// In a closed loop a session alone on its thread waits for its answers outside the runtime;
/// when another session comes to that thread, the first goes back to waiting in the runtime,
/// so the newcomer runs at once and not after the first one's slow answer. Session 1 sleeps
/// 2 s; session 2's 20 000 queries keep the dispatcher from reading on to session 3 until
/// session 1 is waiting; with 2 threads, session 3 joins session 1's.
#[test]
fn a_session_joining_a_waiting_one_on_its_thread_runs_at_once() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("join.myrr");
    let many: Vec<(u64, String)> = (0..20_000).map(|i| (i + 1, "DO 1".to_string())).collect();
    synthetic_recording_starting(
        &rec,
        "sbtest",
        &[
            (0, vec![(0, "SELECT SLEEP(2)".into())]),
            (0, many),
            (30_000, vec![(30_000, "SELECT 3".into())]),
        ],
    );
    let out = dir.join("join.out.myrr");
    replay(&rec, &out, &["--speed", "max", "--threads", "2"]);
    let x = exchanges_by_key(&read_events(&out));
    let (slow, joined) = (&x[&(1, 0, 0)], &x[&(3, 0, 0)]);
    assert!(matches!(slow.response, Response::Rows(_)), "{slow:?}");
    assert!(matches!(joined.response, Response::Rows(_)), "{joined:?}");
    assert!(
        joined.end_us + 1_000_000 < slow.end_us,
        "session 3 answered {} µs after session 1's sleep began, session 1 at {} µs",
        joined.end_us - slow.start_us,
        slow.end_us - slow.start_us
    );
}

/// The CPUs each of a process's threads named `prefix…` may run on (/proc/…/status).
fn thread_cpus(pid: u32, prefix: &str) -> Vec<String> {
    thread_files(pid, prefix, "status")
        .iter()
        .filter_map(|status| {
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            Some(cpus.trim().to_string())
        })
        .collect()
}

/// Pins every thread of the candidate server to `cpus` (a taskset list) until dropped.
struct ServerPinned(String);

impl ServerPinned {
    fn to(cpus: &str) -> Self {
        let pid = std::fs::read_to_string(root().join("target/myrr-db/candidate/mariadbd.pid"))
            .unwrap()
            .trim()
            .to_string();
        let st = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "taskset {cpus} {pid}");
        ServerPinned(pid)
    }
}

impl Drop for ServerPinned {
    fn drop(&mut self) {
        let all = format!(
            "0-{}",
            std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
        );
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &all, &self.0])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// `--sched pair` (the default in a closed loop against this machine): session threads are
/// kept on the CPU their server thread answers from. With the server held on CPU 1, session
/// threads that run on CPU 0 are seen moved to CPU 1 only; under `--sched batch` no session
/// thread is ever kept on one CPU.
#[test]
fn closed_loop_session_threads_follow_their_server_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("busy.myrr");
    steady_recording(&rec, "sbtest", 8, 10, 4000, |i| format!("SELECT {i}"));
    let start = thread_cpus(std::process::id(), "");
    let _pinned = (cpus > 1).then(|| ServerPinned::to("1"));
    for (sched, follows) in [("auto", cpus > 1), ("batch", false)] {
        let out = dir.join("busy.out.myrr");
        let args = ["--speed", "max", "--json", "--sched", sched];
        let child = spawn_replay(&rec, &db.candidate_url, &out, &args);
        let mut single = Vec::new();
        let mut seen = 0;
        while single.is_empty() {
            let now = thread_cpus(child.id(), "myrr-s");
            if now.is_empty() && seen > 0 {
                break; // the replay ended
            }
            seen += now.len();
            single.extend(now.into_iter().filter(|c| !c.contains(['-', ','])));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["exchanges"], 32000, "{summary:#}");
        assert_eq!(
            !single.is_empty(),
            follows,
            "--sched {sched}: single-CPU session threads {single:?} (this process: {start:?})"
        );
        assert!(single.iter().all(|c| c == "1"), "{single:?}");
        if sched == "auto" {
            assert_eq!(summary["sched"], "pair", "{summary:#}");
        }
    }
}
