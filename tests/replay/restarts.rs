//! The candidate restarted mid-replay, paced and in a closed loop: sessions reconnect and
//! go on.

use std::process::Command;

use crate::common::*;
use crate::{recorded, serial, spawn_replay, steady_recording};
use myrr_recording::{MissingReason, Response, SkipReason};

#[test]
fn candidate_restart_mid_replay() {
    // 4 sessions, a query every 50 ms for 6 s.
    restart_mid_replay(&[], 120, |i| format!("SELECT {i}, COUNT(*) FROM sbtest1"));
}

/// In a closed loop, sessions alone on their threads wait for answers in a blocking recv(2):
/// the restart must reach them there too.
#[test]
fn candidate_restart_mid_closed_loop() {
    // 4 sessions, 400 queries of 10 ms each, back to back: about 4 s.
    restart_mid_replay(&["--speed", "max"], 400, |i| {
        format!("SELECT {i}, SLEEP(0.01)")
    });
}

/// A background replay's output once it has ended; it fails the test (and is killed) if it
/// has not ended within `limit`.
fn output_within(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "the replay did not end within {limit:?}:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Replays 4 sessions of `per_session` queries each (`sql(i)`, recorded 50 ms apart) with
/// `extra` options, restarts the candidate 1.5 s in, and checks that the run completes, the
/// restart shows in some exchanges and every session recovered.
fn restart_mid_replay(extra: &[&str], per_session: u64, sql: impl Fn(u64) -> String) {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("long.myrr");
    steady_recording(&rec, "myrr_rp", 4, 50_000, per_session, sql);
    let _ = recorded(); // myrr_rp exists on the candidate
    let out = dir.join("restart.myrr");
    let child = spawn_replay(&rec, &db.candidate_url, &out, extra);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let st = Command::new("bash")
        .arg(root().join("scripts/db.sh"))
        .args(["restart", "candidate"])
        .status()
        .unwrap();
    assert!(st.success());
    let o = output_within(child, std::time::Duration::from_secs(90));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let ev = read_events(&out);
    let xs: Vec<_> = exchanges_by_key(&ev).into_values().collect();
    let all = 4 * per_session as usize;
    assert_eq!(xs.len(), all, "every exchange is in the run");
    let lost = xs
        .iter()
        .filter(|x| {
            matches!(
                x.response,
                Response::Missing(MissingReason::ConnectionLost)
                    | Response::Err(_)
                    | Response::Skipped(SkipReason::NotConnected)
            )
        })
        .count();
    let ok = xs
        .iter()
        .filter(|x| matches!(x.response, Response::Rows(_)))
        .count();
    assert!(lost >= 1, "the restart affected nothing?\n{err}");
    assert!(err.contains("reconnects"), "{err}");
    // Sessions reconnected and went on: the last exchanges of every session succeeded.
    for s in 1..=4u64 {
        let last = xs
            .iter()
            .filter(|x| x.session == s)
            .max_by_key(|x| x.seq)
            .unwrap();
        assert!(
            matches!(last.response, Response::Rows(_)),
            "session {s} did not recover: {:?}",
            last.response
        );
    }
    assert!(
        ok + lost == all && ok > all * 5 / 8,
        "{ok} ok, {lost} affected"
    );
}
