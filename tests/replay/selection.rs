//! What is replayed, and how many times: --scale, --shard, --include, --exclude, --limit,
//! --read-only.

use std::collections::BTreeSet;

use crate::common::*;
use crate::{recorded, replay, serial};
use myrr_recording::{Event, Response, SkipReason};

fn sessions_of(events: &[Event]) -> BTreeSet<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionStart(s) => Some(s.session),
            _ => None,
        })
        .collect()
}

#[test]
fn scale_and_shards() {
    let _serial = serial();
    let rec = recorded();
    let dir = tempdir();
    let base = read_events(rec);
    let n = exchanges_by_key(&base).len();
    replay(
        rec,
        &dir.join("x3.myrr"),
        &["--speed", "max", "--scale", "3"],
    );
    let x3 = read_events(&dir.join("x3.myrr"));
    let k3 = exchanges_by_key(&x3);
    assert_eq!(k3.len(), 3 * n);
    assert_eq!(
        k3.keys().map(|k| k.2).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1, 2])
    );

    replay(
        rec,
        &dir.join("s0.myrr"),
        &["--speed", "max", "--shard", "0/2"],
    );
    replay(
        rec,
        &dir.join("s1.myrr"),
        &["--speed", "max", "--shard", "1/2"],
    );
    let s0 = sessions_of(&read_events(&dir.join("s0.myrr")));
    let s1 = sessions_of(&read_events(&dir.join("s1.myrr")));
    assert!(!s0.is_empty() && !s1.is_empty());
    assert!(s0.is_disjoint(&s1));
    let all: BTreeSet<u64> = s0.union(&s1).copied().collect();
    assert_eq!(all, sessions_of(&base));
    // analyze takes the shards as one candidate run, and the clones of a scaled run each
    // join the capture's single exchange.
    for cand in [
        vec![dir.join("s0.myrr"), dir.join("s1.myrr")],
        vec![dir.join("x3.myrr")],
    ] {
        let (_, r) = analyze_json(rec, &cand, &[]);
        let want = if cand.len() == 2 { n } else { 3 * n };
        assert_eq!(r["totals"]["joined"], want as u64, "{:#}", r["totals"]);
        assert_eq!(r["totals"]["mismatched"], 0, "{:#}", r["mismatches"]);
        assert!(
            r["totals"]["only_baseline"].as_object().unwrap().is_empty(),
            "{:#}",
            r["totals"]
        );
    }
}

#[test]
fn read_only_sends_no_write() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    sql(db.candidate_port, "DROP DATABASE IF EXISTS myrr_ro; CREATE DATABASE myrr_ro; CREATE TABLE myrr_ro.t (id INT PRIMARY KEY, v INT); INSERT INTO myrr_ro.t VALUES (1,1),(2,2)");
    let before = sql(db.candidate_port, "CHECKSUM TABLE myrr_ro.t");
    let rec = dir.join("rw.myrr");
    synthetic_recording(
        &rec,
        "myrr_ro",
        &[vec![
            (0, "SELECT * FROM t".into()),
            (10, "UPDATE t SET v = v + 1".into()),
            (20, "INSERT INTO t VALUES (3,3)".into()),
            (30, "DELETE FROM t WHERE id = 1".into()),
            (40, "/* x */ select count(*) from t".into()),
            (50, "CREATE TABLE t2 (a INT)".into()),
        ]],
    );
    let out = dir.join("ro.myrr");
    replay(&rec, &out, &["--speed", "max", "--read-only"]);
    assert_eq!(
        before,
        sql(db.candidate_port, "CHECKSUM TABLE myrr_ro.t"),
        "data changed"
    );
    let ev = read_events(&out);
    let x = exchanges_by_key(&ev);
    let kinds: Vec<(u64, &str)> = {
        let mut v: Vec<_> = x
            .values()
            .map(|x| (x.seq, x.response.kind_name()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kinds,
        vec![
            (0, "rows"),
            (1, "skipped"),
            (2, "skipped"),
            (3, "skipped"),
            (4, "rows"),
            (5, "skipped")
        ]
    );
    assert!(x
        .values()
        .all(|x| !matches!(x.response, Response::Skipped(ref r) if *r != SkipReason::Filtered)));
}

#[test]
fn filters_and_limits() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("f.myrr");
    let s: Vec<(u64, String)> = (0..20)
        .map(|i| {
            (
                i * 1000,
                if i % 2 == 0 {
                    format!("SELECT {i}")
                } else {
                    format!("SELECT 'x{i}'")
                },
            )
        })
        .collect();
    synthetic_recording(&rec, "sbtest", &[s]);
    let kinds = |out: &std::path::Path| -> Vec<&'static str> {
        let mut v: Vec<_> = exchanges_by_key(&read_events(out)).into_values().collect();
        v.sort_by_key(|x| x.seq);
        v.iter().map(|x| x.response.kind_name()).collect()
    };
    replay(
        &rec,
        &dir.join("inc.myrr"),
        &["--speed", "max", "--include", "^SELECT '"],
    );
    let k = kinds(&dir.join("inc.myrr"));
    assert_eq!(k.len(), 20);
    assert!(
        k.iter()
            .enumerate()
            .all(|(i, k)| *k == if i % 2 == 1 { "rows" } else { "skipped" }),
        "{k:?}"
    );
    replay(
        &rec,
        &dir.join("exc.myrr"),
        &["--speed", "max", "--exclude", "x1"],
    );
    let k = kinds(&dir.join("exc.myrr"));
    assert_eq!(
        k.iter().filter(|k| **k == "skipped").count(),
        6,
        "x1, x11, x13, x15, x17, x19: {k:?}"
    );
    replay(
        &rec,
        &dir.join("lim.myrr"),
        &["--speed", "max", "--limit", "7"],
    );
    assert_eq!(kinds(&dir.join("lim.myrr")).len(), 7);
}
