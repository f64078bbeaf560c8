//! Stopping a replay: Ctrl-C, a kill, a session stuck in the server at Ctrl-C.

use std::process::Command;

use crate::common::*;
use crate::{serial, spawn_replay, steady_recording};
use myrr_recording::Event;

/// Ctrl-C to a background replay after `after_ms`; its output once it has ended.
fn interrupt(child: std::process::Child, after_ms: u64) -> std::process::Output {
    interrupt_at(child, after_ms).0
}

/// As [`interrupt`], also giving the wall-clock time of the signal in µs since the epoch
/// (the clock of a run's timings): when `kill` has sent it (taken before `kill` starts, a
/// loaded machine's fork and exec could put the signal tens of ms later than that time).
fn interrupt_at(child: std::process::Child, after_ms: u64) -> (std::process::Output, u64) {
    std::thread::sleep(std::time::Duration::from_millis(after_ms));
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    (child.wait_with_output().unwrap(), at)
}

#[test]
fn ctrl_c_stops_cleanly_and_the_output_is_readable() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("slow.myrr");
    // 10 sessions, a query every 100 ms each, session k 10·k ms after session 0: whenever the
    // stop comes, most sessions are waiting for their next exchange's time.
    let sessions: Vec<(u64, Vec<(u64, String)>)> = (0..10u64)
        .map(|k| {
            let xs = (0..100u64)
                .map(|i| (k * 10_000 + i * 100_000, format!("SELECT {i}")))
                .collect();
            (k * 10_000, xs)
        })
        .collect();
    synthetic_recording_starting(&rec, "sbtest", &sessions);
    let out = dir.join("interrupted.myrr");
    let (o, stopped_us) = interrupt_at(spawn_replay(&rec, &db.candidate_url, &out, &[]), 1500);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "interrupted runs exit 1: {err}");
    assert!(err.contains("interrupted"), "{err}");
    let ev = read_events(&out);
    let xs = exchanges_by_key(&ev);
    let n = xs.len();
    assert!(n > 10 && n < 1000, "{n} exchanges before the stop");
    // A session waiting for its next exchange's time when the stop came does not send it when
    // that time comes (the 50 ms leave the signal time to arrive; the sessions' next
    // exchanges were due over the 100 ms after it).
    let late = xs
        .values()
        .filter_map(|x| x.scheduled_us)
        .filter(|&at| at > stopped_us + 50_000)
        .count();
    assert_eq!(
        late, 0,
        "exchanges due more than 50 ms after the stop were sent"
    );
    // Every session that started also ended.
    let starts = ev
        .iter()
        .filter(|e| matches!(e, Event::SessionStart(_)))
        .count();
    let ends = ev
        .iter()
        .filter(|e| matches!(e, Event::SessionEnd(_)))
        .count();
    assert_eq!(starts, ends);
}

/// A replay killed outright (SIGKILL: no chance to flush) loses at most about the last second:
/// the output written so far reads, up to any torn block at its end.
#[test]
fn a_killed_replay_loses_at_most_the_last_second() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("steady.myrr");
    // One query every 10 ms for 8 s.
    steady_recording(&rec, "sbtest", 1, 10_000, 800, |i| format!("SELECT {i}"));
    let out = dir.join("killed.myrr");
    let mut child = spawn_replay(&rec, &db.candidate_url, &out, &[]);
    std::thread::sleep(std::time::Duration::from_millis(4000));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut n = 0;
    for e in myrr_recording::RecordingReader::open(&out).unwrap() {
        match e {
            Ok(Event::Exchange(x)) => {
                assert_eq!(x.seq, n, "in order, none missing");
                n += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // About 400 were answered (4 s at 100 per second, less the start): at most a second's
    // worth, and some slack for a slow machine, may be missing.
    assert!(n >= 250, "only {n} exchanges survived the kill");
}

/// Ctrl-C while a command is stuck in the server: after the drain timeout the session is
/// dropped, and what it had answered before is still in the summary and the output.
#[test]
fn a_session_stuck_at_ctrl_c_keeps_its_answered_exchanges() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("stuck.myrr");
    let mut s: Vec<(u64, String)> = (0..10).map(|i| (i, format!("SELECT {i}"))).collect();
    s.push((10, "SELECT SLEEP(60)".to_string()));
    s.push((11, "SELECT 11".to_string()));
    synthetic_recording(&rec, "sbtest", &[s]);
    let out = dir.join("stuck.out.myrr");
    let child = spawn_replay(&rec, &db.candidate_url, &out, &["--speed", "max", "--json"]);
    let o = interrupt(child, 1500);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let written = exchanges_by_key(&read_events(&out));
    assert_eq!(written.len(), 10, "the 10 answered exchanges are written");
    assert_eq!(summary["exchanges"], 10, "{summary:#}");
}

/// Ctrl-C in the middle of a ramp: the step running ends "stopped on request", no later step
/// starts, the run is readable and the replay exits 1 (interrupted).
#[test]
fn ctrl_c_during_a_ramp_ends_the_step_and_the_ramp() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("steady.myrr");
    // 2 s per step: the stop comes 1 s into step 2.
    steady_recording(&rec, "sbtest", 2, 50_000, 40, |i| format!("SELECT {i}"));
    let out = dir.join("ramp.myrr");
    let o = interrupt(
        spawn_replay(&rec, &db.candidate_url, &out, &["--ramp", "1,2,4"]),
        3300,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let phases: Vec<myrr_recording::Phase> = read_events(&out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Phase(p) => Some(p),
            _ => None,
        })
        .collect();
    let starts: Vec<u32> = phases
        .iter()
        .filter(|p| p.end.is_none())
        .map(|p| p.index)
        .collect();
    assert_eq!(starts, [0, 1], "{phases:?}");
    let ends: Vec<Option<String>> = phases
        .iter()
        .filter_map(|p| p.end.as_ref().map(|e| e.stopped.clone()))
        .collect();
    assert_eq!(ends, [None, Some("stopped on request".to_string())]);
}
