//! Production as the reference (`Options::reference`): the baseline's exchanges whose answers
//! differ from production's are not reproduced, kept out of the comparison and the verdict and
//! counted by cause; those the baseline reproduced are compared as usual — answers, insert ids,
//! affected rows and warnings. Three synthetic runs, analyzed and exported as JSON, which must
//! match the schema.

use std::path::{Path, PathBuf};

use myrr_analyze::export::{Exporter, Json};
use myrr_analyze::{analyze, Options};
use myrr_recording::*;
use serde_json::{json, Value as J};

const T0: u64 = 1_700_000_000_000_000;

/// A fresh directory per call (tests run in parallel).
fn dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("myrr-reference-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rows(digest: u64) -> Response {
    rows_in(digest, 2)
}

/// Rows answered with server status `status`.
fn rows_in(digest: u64, status: u16) -> Response {
    Response::Rows(ResultSet {
        columns: vec![Column {
            name: b"v".to_vec(),
            ..Default::default()
        }]
        .into(),
        rows: 1,
        bytes: 4,
        digest: ResultDigest {
            ordered: digest,
            unordered: digest,
        },
        status,
        warnings: 0,
        complete: true,
        error: None,
    })
}

fn ok(affected_rows: u64, last_insert_id: u64, warnings: u16) -> Response {
    Response::Ok(OkInfo {
        affected_rows,
        last_insert_id,
        warnings,
        ..Default::default()
    })
}

/// (SQL, production's answer, the baseline's, the candidate's).
fn workload() -> Vec<(&'static str, [Response; 3])> {
    vec![
        ("SELECT v FROM t WHERE id = 1", [rows(1), rows(1), rows(1)]),
        // Not reproduced: the baseline saw other rows than production; the candidate agrees
        // with the baseline.
        (
            "SELECT v FROM t WHERE id = 2",
            [rows(2), rows(22), rows(22)],
        ),
        // Not reproduced, and the candidate differs too: not judged.
        (
            "SELECT v FROM t WHERE id = 3",
            [rows(3), rows(33), rows(34)],
        ),
        // Another AUTO_INCREMENT id than production's: not reproduced.
        (
            "INSERT INTO t (v) VALUES ('x')",
            [ok(1, 10, 0), ok(1, 11, 0), ok(1, 12, 0)],
        ),
        // Reproduced; the candidate differs: real differences (values, warnings, insert id).
        ("SELECT v FROM t WHERE id = 5", [rows(5), rows(5), rows(6)]),
        (
            "UPDATE t SET v = 'y' WHERE id < 3",
            [ok(2, 0, 0), ok(2, 0, 0), ok(2, 0, 1)],
        ),
        (
            "INSERT INTO u (v) VALUES ('z')",
            [ok(1, 7, 0), ok(1, 7, 0), ok(1, 8, 0)],
        ),
        // Reproduced; the candidate differs, but its replay labelled the exchange: the
        // replay's order can explain it, not counted.
        ("SELECT v FROM t WHERE id = 8", [rows(8), rows(8), rows(9)]),
    ]
}

/// The order labels the replays (1: baseline, 2: candidate) wrote for an exchange.
fn label(sql: &str, which: usize) -> u8 {
    match (sql, which) {
        ("SELECT v FROM t WHERE id = 3", 1) => OrderLabel::AMBIGUOUS,
        ("SELECT v FROM t WHERE id = 8", 2) => OrderLabel::OUT_OF_ORDER,
        _ => 0,
    }
}

fn write_run(path: &Path, which: usize) {
    let kind = if which == 0 {
        RunKind::Capture
    } else {
        RunKind::Replay
    };
    let header = Header {
        kind,
        tool_version: "test".into(),
        source: "synthetic".into(),
        started_us: T0,
        options: vec![],
    };
    let mut w = RecordingWriter::create(path, &header).unwrap();
    w.push(&Event::SessionStart(SessionStart {
        session: 1,
        start_us: T0,
        ..Default::default()
    }))
    .unwrap();
    for (seq, (sql, answers)) in workload().into_iter().enumerate() {
        let t = T0 + 1_000 * (seq as u64 + 1);
        if label(sql, which) != 0 {
            w.push(&Event::Label(OrderLabel {
                session: 1,
                seq: seq as u64,
                clone: 0,
                at_us: t,
                labels: label(sql, which),
            }))
            .unwrap();
        }
        w.push(&Event::Exchange(Exchange {
            session: 1,
            seq: seq as u64,
            clone: 0,
            scheduled_us: (which > 0).then_some(t),
            start_us: t,
            end_us: t + 100,
            command: Command::Query {
                sql: sql.as_bytes().to_vec(),
                attrs: vec![],
            },
            response: answers[which].clone(),
            more: vec![],
        }))
        .unwrap();
    }
    w.finish().unwrap();
}

fn report(reference: bool) -> J {
    let d = dir();
    let paths: Vec<PathBuf> = ["prod", "base", "cand"]
        .iter()
        .map(|n| d.join(format!("{n}-{reference}.myrr")))
        .collect();
    for (i, p) in paths.iter().enumerate() {
        write_run(p, i);
    }
    let opts = Options {
        reference: reference.then(|| vec![paths[0].clone()]),
        ..Options::default()
    };
    let r = analyze(&paths[1..2], &paths[2..3], &opts).expect("analyze");
    let mut out = Vec::new();
    Json.write(&r, &mut out).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn exchanges_the_baseline_did_not_reproduce_are_kept_out_and_the_rest_judged() {
    let r = report(true);
    let x = &r["reproduction"];
    assert_eq!(x["compared"], 8, "{x:#}");
    assert_eq!(x["not_reproduced"], 3, "{x:#}");
    // The baseline's order label is the cause where it has one.
    assert_eq!(
        x["causes"],
        json!({"values": 1, "order-ambiguous": 1, "insert_id": 1}),
        "{x:#}"
    );
    assert_eq!(x["excluded"], 3, "{x:#}");
    assert!((x["not_reproduced_share"].as_f64().unwrap() - 3.0 / 8.0).abs() < 1e-9);
    assert_eq!(x["reference"]["kind"], "capture");
    let t = &r["totals"];
    assert_eq!(t["not_compared"]["not_reproduced"], 3, "{t:#}");
    assert_eq!(t["compared"], 5, "{t:#}");
    assert_eq!(t["mismatched"], 3, "{t:#}");
    assert_eq!(t["order_dependent"], json!({"out-of-order": 1}), "{t:#}");
    assert_eq!(
        r["mismatches"],
        json!({"values": 1, "warnings": 1, "insert_id": 1}),
        "{:#}",
        r["mismatches"]
    );
    assert_eq!(r["verdict"]["pass"], false);

    let without = report(false);
    assert!(without["reproduction"]["reference"].is_null());
    assert!(without["reproduction"]["note"]
        .as_str()
        .unwrap()
        .contains("cannot be told apart"));
    // Without the reference, the exchanges the baseline did not reproduce and the candidate
    // answered otherwise count as differences, unless a replay labelled them.
    assert_eq!(
        without["totals"]["mismatched"], 4,
        "{:#}",
        without["totals"]
    );
    assert_eq!(
        without["totals"]["order_dependent"],
        json!({"order-ambiguous": 1, "out-of-order": 1}),
        "{:#}",
        without["totals"]
    );
}

#[test]
fn reports_with_and_without_a_reference_match_the_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/report.schema.json");
    let schema: J = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for reference in [true, false] {
        let doc = report(reference);
        let errs: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{errs:#?}\n{doc:#}");
    }
}

/// Session 1 reads a stock row `FOR UPDATE` and loses its transaction to a deadlock (its read
/// answered `victim_read`); session 2 reads the row `FOR UPDATE` and commits; session 3 reads
/// a row in autocommit (`other_read`).
fn write_deadlock_run(path: &Path, victim_read: u64, other_read: u64) {
    const IN_TRANS: u16 = 3;
    let ok_in = |status| {
        Response::Ok(OkInfo {
            status,
            ..Default::default()
        })
    };
    let deadlock = Response::Err(ErrInfo {
        code: 1213,
        state: b"40001".to_vec(),
        message: b"Deadlock found when trying to get lock; try restarting transaction".to_vec(),
    });
    let read = "SELECT s FROM stock WHERE id = 925 FOR UPDATE";
    let sessions: [&[(u64, &str, Response)]; 3] = [
        &[
            (0, "BEGIN", ok_in(IN_TRANS)),
            (1_000, read, rows_in(victim_read, IN_TRANS)),
            (2_000, "UPDATE stock SET s = s - 1 WHERE id = 926", deadlock),
        ],
        &[
            (500, "BEGIN", ok_in(IN_TRANS)),
            (8_000, read, rows_in(7, IN_TRANS)),
            (9_000, "COMMIT", ok_in(2)),
        ],
        &[(3_000, "SELECT s FROM stock WHERE id = 1", rows(other_read))],
    ];
    let header = Header {
        kind: RunKind::Capture,
        tool_version: "test".into(),
        source: "synthetic".into(),
        started_us: T0,
        options: vec![],
    };
    let mut w = RecordingWriter::create(path, &header).unwrap();
    for (i, xs) in sessions.iter().enumerate() {
        let session = i as u64 + 1;
        w.push(&Event::SessionStart(SessionStart {
            session,
            start_us: T0,
            ..Default::default()
        }))
        .unwrap();
        for (seq, (at, sql, answer)) in xs.iter().enumerate() {
            w.push(&Event::Exchange(Exchange {
                session,
                seq: seq as u64,
                clone: 0,
                scheduled_us: None,
                start_us: T0 + at,
                end_us: T0 + at + 100,
                command: Command::Query {
                    sql: sql.as_bytes().to_vec(),
                    attrs: vec![],
                },
                response: answer.clone(),
                more: vec![],
            }))
            .unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn a_difference_in_a_transaction_production_lost_to_a_deadlock_is_labelled_not_counted() {
    let d = dir();
    let (prod, base, cand) = (
        d.join("prod.myrr"),
        d.join("base.myrr"),
        d.join("cand.myrr"),
    );
    write_deadlock_run(&prod, 1, 2);
    // The candidate read the victim's row after the survivor had changed it, and differs
    // in session 3 as well.
    write_deadlock_run(&cand, 5, 9);
    let report = |baseline_victim_read: u64, reference: bool| {
        write_deadlock_run(&base, baseline_victim_read, 2);
        let opts = Options {
            reference: reference.then(|| vec![prod.clone()]),
            ..Options::default()
        };
        let r = analyze(
            std::slice::from_ref(&base),
            std::slice::from_ref(&cand),
            &opts,
        )
        .expect("analyze");
        let mut out = Vec::new();
        Json.write(&r, &mut out).unwrap();
        serde_json::from_slice::<J>(&out).unwrap()
    };
    let r = report(1, true);
    let t = &r["totals"];
    assert_eq!(t["mismatched"], 1, "{t:#}");
    assert_eq!(t["order_dependent"], json!({"lock-conflict": 1}), "{t:#}");
    // Where the baseline did not reproduce the victim's read, the cause says why.
    let r = report(4, true);
    let x = &r["reproduction"];
    assert_eq!(x["causes"], json!({"lock-conflict": 1}), "{x:#}");
    // Without the reference nothing tells the victim's transaction apart: both count.
    let r = report(1, false);
    assert_eq!(r["totals"]["mismatched"], 2, "{:#}", r["totals"]);
    let _ = std::fs::remove_dir_all(&d);
}
