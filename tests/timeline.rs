//! The timeline on the MariaDB pair: a paced write workload replayed on a candidate that a
//! global read lock holds still for 2 s. `myrr analyze` must name the stall at the time the
//! lock was taken (on the replay's axis: from its first exchange) and about as long.
//!
//! Its own test crate: the lock stops every write on the candidate, which the tests of other
//! crates (run one crate at a time) never see.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A time as the reports print it (`12.3 s`; runs here are shorter than two minutes).
fn secs(s: f64) -> String {
    let t = format!("{s:.1}");
    format!("{} s", t.strip_suffix(".0").unwrap_or(&t))
}

#[test]
fn a_stalled_candidate_shows_the_stall_at_its_time() {
    let db = db();
    let port = db.candidate_port;
    sql(
        port,
        "DROP DATABASE IF EXISTS myrr_tl; CREATE DATABASE myrr_tl; \
         CREATE TABLE myrr_tl.w (s INT, i INT, PRIMARY KEY (s, i)) ENGINE=InnoDB",
    );
    // 4 sessions, each an INSERT every 20 ms for 6 s.
    let dir = tempdir();
    let rec = dir.join("writes.myrr");
    let sessions: Vec<Vec<(u64, String)>> = (0..4)
        .map(|s| {
            (0..300u64)
                .map(|i| (i * 20_000, format!("INSERT INTO w VALUES ({s}, {i})")))
                .collect()
        })
        .collect();
    synthetic_recording(&rec, "myrr_tl", &sessions);
    let out = dir.join("stalled.myrr");
    let replay = myrr()
        .arg("replay")
        .arg(&rec)
        .args(["--target", &db.candidate_url, "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    // Every INSERT waits while the lock is held; the server's clock says when it was taken.
    let locked = sql(
        port,
        "FLUSH TABLES WITH READ LOCK; SELECT UNIX_TIMESTAMP(NOW(6)); DO SLEEP(2); UNLOCK TABLES",
    );
    let locked_us = (locked.trim().parse::<f64>().unwrap() * 1e6) as u64;
    let o = replay.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "myrr replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let (_, r) = analyze_json(&rec, &[&out], &[]);
    let t = &r["timeline"];
    assert_eq!(t["bucket_s"], 1.0, "{t:#}");
    let cand = &t["candidate"];
    let origin = cand["origin_us"].as_u64().unwrap();
    assert!(
        locked_us > origin,
        "the lock came before the replay's first exchange"
    );
    let at = (locked_us - origin) as f64 / 1e6;
    let stalls = cand["stalls"].as_array().unwrap();
    let stall = stalls
        .iter()
        .find(|x| (x["start_s"].as_f64().unwrap() - at).abs() <= 0.5)
        .unwrap_or_else(|| panic!("no stall at {at:.2} s: {stalls:#?}"));
    let (start, length) = (
        stall["start_s"].as_f64().unwrap(),
        stall["length_s"].as_f64().unwrap(),
    );
    eprintln!("lock at {at:.3} s; stall {start} s for {length} s; stalls {stalls:?}");
    assert!((1.6..=2.4).contains(&length), "{stall:#}");
    assert!(t["baseline"]["stalls"].as_array().unwrap().is_empty());
    // The throughput chart shows it: the buckets inside the stall completed nothing.
    let inside = (start + 1.0).floor() as usize;
    if start + length >= inside as f64 + 1.0 {
        assert_eq!(cand["buckets"][inside]["exchanges"], 0, "{t:#}");
    }
    // When the lock goes, what was due during it completes late: the bucket's p99 since
    // scheduled is over a second. (Its p99 service time need not be: the 4 INSERTs that
    // waited are under 1 % of the catch-up that follows them.)
    let after = &cand["buckets"][(start + length).floor() as usize];
    assert!(
        after["p99_since_scheduled_us"].as_u64().unwrap() >= 1_000_000,
        "{after:#}"
    );
    assert!(t["worst_window"]["candidate_p99_us"].as_u64().unwrap() > 0);

    // The text report names it with its time.
    let text = myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(&rec)
        .arg("--candidate")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let named = format!("at {} for {}", secs(start), secs(length));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("candidate: ") && l.contains(" stalled at "))
        .unwrap_or_else(|| panic!("no stall named in\n{text}"));
    assert!(line.contains(&named), "{named:?} not in {line:?}");
    assert!(text.contains("baseline: no stall"), "{text}");
    // A bucket width asked for; one the timeline cannot merge into is refused.
    let analyze_with = |bucket: &str| {
        myrr()
            .arg("analyze")
            .arg("--baseline")
            .arg(&rec)
            .arg("--candidate")
            .arg(&out)
            .args(["--bucket", bucket])
            .output()
            .unwrap()
    };
    let wide = analyze_with("10");
    let wide_text = String::from_utf8_lossy(&wide.stdout);
    assert!(wide_text.contains("10 s buckets"), "{wide_text}");
    assert!(wide_text.contains(&named), "{wide_text}");
    let odd = analyze_with("7");
    assert_eq!(odd.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&odd.stderr).contains("multiple of 3600"));
    let _ = std::fs::remove_dir_all(&dir);
    sql(port, "DROP DATABASE IF EXISTS myrr_tl");
}
