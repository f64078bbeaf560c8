//! `--ramp`: steps run one after another at growing multiples of the recorded load, each a
//! phase of the run; the ramp stops at the first step the candidate cannot keep up with, and
//! not before.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use crate::{replay_command, serial, steady_recording};
use myrr_recording::Event;

/// The run's phases (start and end events) and its exchanges per step (by clone number).
struct Ramped {
    starts: Vec<myrr_recording::Phase>,
    ends: Vec<myrr_recording::Phase>,
    exchanges_by_clone: BTreeMap<u32, u64>,
    keys: HashSet<(u64, u64, u32)>,
}

fn ramped(path: &std::path::Path) -> Ramped {
    let mut r = Ramped {
        starts: vec![],
        ends: vec![],
        exchanges_by_clone: BTreeMap::new(),
        keys: HashSet::new(),
    };
    for e in read_events(path) {
        match e {
            Event::Phase(p) if p.end.is_none() => r.starts.push(p),
            Event::Phase(p) => r.ends.push(p),
            Event::Exchange(x) => {
                *r.exchanges_by_clone.entry(x.clone).or_default() += 1;
                assert!(r.keys.insert((x.session, x.seq, x.clone)), "{x:?} twice");
            }
            _ => {}
        }
    }
    r
}

fn json_summary(o: &std::process::Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "replay failed: {err}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"))
}

#[test]
fn a_ramp_runs_every_step_the_candidate_keeps_up_with() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("steady.myrr");
    // Two sessions, a light statement every 25 ms for 2 s: 80 a second recorded.
    steady_recording(&rec, "sbtest", 2, 25_000, 80, |i| format!("SELECT {i}"));
    let out = dir.join("ramp.myrr");
    let o = replay_command(
        &rec,
        &db.candidate_url,
        &out,
        &["--ramp", "1,2,4", "--json"],
    )
    .output()
    .unwrap();
    let v = json_summary(&o);
    let steps = v["ramp"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{v}");
    let r = ramped(&out);
    // Steps in order, each with its clones numbered on from the previous step's.
    let plan: Vec<(u32, f64, u32, u32)> = r
        .starts
        .iter()
        .map(|p| (p.index, p.multiple, p.first_clone, p.clones))
        .collect();
    assert_eq!(plan, [(0, 1.0, 0, 1), (1, 2.0, 1, 2), (2, 4.0, 3, 4)]);
    assert_eq!(r.ends.len(), 3);
    for (w, p) in r.starts.windows(2).zip(&r.ends) {
        assert!(
            p.at_us <= w[1].at_us,
            "step {} ended after the next began",
            p.index
        );
    }
    // Every clone replayed every exchange: 7 clones × 2 sessions × 80.
    assert_eq!(r.exchanges_by_clone.len(), 7, "{:?}", r.exchanges_by_clone);
    assert!(
        r.exchanges_by_clone.values().all(|&n| n == 160),
        "{:?}",
        r.exchanges_by_clone
    );
    let mut qps = vec![];
    for (s, end) in steps.iter().zip(&r.ends) {
        let e = end.end.as_ref().unwrap();
        assert_eq!(e.stopped, None, "a step that kept up was stopped: {s}");
        assert!(s["failed"].is_null(), "{s}");
        assert_eq!(s["exchanges"].as_u64().unwrap(), e.exchanges);
        assert_eq!(e.exchanges, 160 * u64::from(end.clones), "{s}");
        qps.push(s["qps"].as_f64().unwrap());
    }
    // Achieved throughput follows the multiple (each step lasts the recorded 2 s).
    for (q, m) in qps.iter().zip([1.0, 2.0, 4.0]) {
        let want = 80.0 * m;
        assert!(
            (q / want - 1.0).abs() < 0.35,
            "step x{m}: {q:.0} qps, asked {want}"
        );
    }
}

#[test]
fn a_ramp_stops_at_the_first_step_the_candidate_cannot_keep_up_with() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("serial.myrr");
    // Each statement holds one server-wide named lock for 20 ms: the candidate answers at
    // most 50 a second, whatever the connections. Recorded: 2 sessions, one every 100 ms
    // (20 a second) for 3 s.
    steady_recording(&rec, "sbtest", 2, 100_000, 30, |i| {
        format!("SELECT GET_LOCK('myrr_ramp', 10), SLEEP(0.02), RELEASE_LOCK('myrr_ramp'), {i}")
    });
    let out = dir.join("ramp.myrr");
    let o = replay_command(
        &rec,
        &db.candidate_url,
        &out,
        &["--ramp", "1,4,8", "--ramp-max-lag", "200ms", "--json"],
    )
    .output()
    .unwrap();
    let v = json_summary(&o);
    let steps = v["ramp"].as_array().unwrap();
    // x1 (20 a second) is sustained; x4 (80 a second) cannot be; x8 never runs.
    assert_eq!(steps.len(), 2, "{v}");
    assert!(steps[0]["failed"].is_null(), "x1 failed: {}", steps[0]);
    let why = steps[1]["failed"].as_str().expect("x4 must fail");
    assert!(why.contains("p99 start lag over 200 ms"), "{why}");
    let r = ramped(&out);
    assert_eq!(r.starts.len(), 2);
    let end = r.ends[1].end.as_ref().unwrap();
    assert_eq!(end.stopped.as_deref(), Some(why));
    // Stopped early: x4 did not replay all it had to (4 clones × 60).
    assert!(end.exchanges < 240, "{end:?}");
    assert!(end.late > 0, "{end:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("NOT SUSTAINED, the ramp stops here"), "{err}");

    // analyze: per step, what was asked and achieved, and the headroom.
    let analyze = |format: &str| {
        let o = myrr()
            .args(["analyze", "--format", format, "--baseline"])
            .arg(&rec)
            .arg("--candidate")
            .arg(&out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "analyze: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    let report: serde_json::Value = serde_json::from_str(&analyze("json")).unwrap();
    let ramp = &report["ramp"];
    assert_eq!(ramp["headroom"].as_f64(), Some(1.0), "{ramp}");
    let steps = ramp["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["exchanges"].as_u64(), Some(60));
    assert_eq!(
        steps[0]["within_limit"].as_bool(),
        Some(true),
        "{}",
        steps[0]
    );
    // x1 achieved what it asked; x4 asked four times as much and fell short.
    let (asked1, achieved1) = (
        steps[0]["asked_per_s"].as_f64().unwrap(),
        steps[0]["achieved_per_s"].as_f64().unwrap(),
    );
    assert!((achieved1 / asked1 - 1.0).abs() < 0.2, "{}", steps[0]);
    let (asked4, achieved4) = (
        steps[1]["asked_per_s"].as_f64().unwrap(),
        steps[1]["achieved_per_s"].as_f64().unwrap(),
    );
    assert!(asked4 > 2.5 * asked1, "{}", steps[1]);
    assert!(achieved4 < 0.8 * asked4, "{}", steps[1]);
    assert_eq!(steps[1]["stopped"].as_str(), Some(why));
    assert_eq!(steps[2]["ran"].as_bool(), Some(false));
    // The exchanges of the clones that never ran are named for the ramp's stop.
    assert!(
        report["totals"]["only_baseline"]["ramp_stopped"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        report["totals"]
    );
    let text = analyze("text");
    assert!(text.contains("load ramp: headroom x1"), "{text}");
    assert!(text.contains("cut short: p99 start lag"), "{text}");
    let html = analyze("html");
    assert!(html.contains("id=\"ramp\""), "no ramp section");
    assert!(html.contains("aria-label=\"throughput against load\""));
    assert!(
        html.contains("x1 (headroom)"),
        "the headroom's step is not marked"
    );
    let md = analyze("md");
    assert!(md.contains("### Load ramp"), "{md}");
}

#[test]
fn a_ramp_refuses_what_it_cannot_multiply() {
    let dir = tempdir();
    let rec = dir.join("r.myrr");
    steady_recording(&rec, "sbtest", 1, 1000, 2, |i| format!("SELECT {i}"));
    for (args, says) in [
        (
            &["--ramp", "1,2", "--speed", "max"][..],
            "needs a paced replay",
        ),
        (&["--ramp", "1,2", "--scale", "2"][..], "leave --scale out"),
        (&["--ramp", "1,0"][..], "not a positive multiple"),
        (&["--ramp-step", "1s"][..], "--ramp-step needs --ramp"),
    ] {
        let o = replay_command(&rec, "mysql://u@127.0.0.1:1", &dir.join("o.myrr"), args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }
}
