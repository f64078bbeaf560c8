//! Honest accounting, through `analyze` on two synthetic runs written here: exchanges a replay
//! skipped are counted by reason and judged by `max_unreplayed`, never as mismatches; the
//! mismatch rate the verdict judges leaves driver chatter out.

use std::path::{Path, PathBuf};

use myrr_analyze::report::Report;
use myrr_analyze::{analyze, Options};
use myrr_recording::*;

const T0: u64 = 1_700_000_000_000_000;

/// A fresh directory per call (tests run in parallel).
fn dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("myrr-accounting-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rows(digest: u64) -> Response {
    Response::Rows(ResultSet {
        columns: vec![Column {
            name: b"c".to_vec(),
            column_type: 253,
            ..Default::default()
        }]
        .into(),
        rows: 1,
        bytes: 8,
        digest: ResultDigest {
            ordered: digest,
            unordered: digest,
        },
        status: 2,
        warnings: 0,
        complete: true,
        error: None,
    })
}

fn ok(warnings: u16) -> Response {
    Response::Ok(OkInfo {
        warnings,
        ..Default::default()
    })
}

fn execute(stmt_id: u32, prepare_seen: bool) -> Command {
    Command::Execute {
        stmt_id,
        flags: 0,
        params: vec![],
        prepare_seen,
        raw_params: vec![],
    }
}

fn query(sql: &str) -> Command {
    Command::Query {
        sql: sql.as_bytes().to_vec(),
        attrs: vec![],
    }
}

/// (session, command, answer)
type X = (u64, Command, Response);

/// Session 1 is replayed in full: driver chatter (init_db, SET NAMES, prepare, ping) and ten
/// EXECUTEs. On the candidate, SET NAMES answers with a warning (a chatter mismatch) and one
/// EXECUTE returns other values (an application mismatch). Session 2's five EXECUTEs of a
/// statement prepared before the capture are skipped by the replay, and one UPDATE is
/// filtered out.
fn workload(candidate: bool) -> Vec<X> {
    let mut xs = vec![
        (
            1,
            Command::InitDb {
                db: b"shop".to_vec(),
            },
            ok(0),
        ),
        (1, query("SET NAMES utf8mb4"), ok(u16::from(candidate))),
        (
            1,
            Command::Prepare {
                sql: b"SELECT c FROM t WHERE id = ?".to_vec(),
            },
            Response::Prepared(Prepared {
                stmt_id: 1,
                params: 1,
                columns: 1,
                warnings: 0,
                param_defs: vec![],
                column_defs: vec![],
            }),
        ),
    ];
    for i in 0..10 {
        let digest = if candidate && i == 3 { 999 } else { i };
        xs.push((1, execute(1, true), rows(digest)));
    }
    xs.push((1, Command::Ping, ok(0)));
    for i in 0..5 {
        let answer = if candidate {
            Response::Skipped(SkipReason::UnknownStatement)
        } else {
            rows(100 + i)
        };
        xs.push((2, execute(9, false), answer));
    }
    let update = if candidate {
        Response::Skipped(SkipReason::Filtered)
    } else {
        ok(0)
    };
    xs.push((2, query("UPDATE t SET c = 'x' WHERE id = 1"), update));
    xs
}

fn write_run(path: &Path, kind: RunKind, xs: Vec<X>) {
    let header = Header {
        kind,
        tool_version: "test".into(),
        source: "synthetic".into(),
        started_us: T0,
        options: vec![],
    };
    let mut w = RecordingWriter::create(path, &header).unwrap();
    for session in [1, 2] {
        w.push(&Event::SessionStart(SessionStart {
            session,
            start_us: T0,
            ..Default::default()
        }))
        .unwrap();
    }
    let mut seq = [0u64; 3];
    for (i, (session, command, response)) in xs.into_iter().enumerate() {
        let start_us = T0 + 1_000 * i as u64;
        w.push(&Event::Exchange(Exchange {
            session,
            seq: seq[session as usize],
            clone: 0,
            scheduled_us: (kind == RunKind::Replay).then_some(start_us),
            start_us,
            end_us: start_us + 100,
            command,
            response,
            more: vec![],
        }))
        .unwrap();
        seq[session as usize] += 1;
    }
    w.finish().unwrap();
}

/// The capture against its replay, analyzed with `opts`.
fn report(opts: &Options) -> Report {
    let d = dir();
    let (b, c) = (d.join("capture.myrr"), d.join("replay.myrr"));
    write_run(&b, RunKind::Capture, workload(false));
    write_run(&c, RunKind::Replay, workload(true));
    let r = analyze(&[b], &[c], opts).expect("analyze");
    let _ = std::fs::remove_dir_all(&d);
    r
}

#[test]
fn skipped_exchanges_are_counted_by_reason_not_as_mismatches() {
    let r = report(&Options::default());
    let t = &r.totals;
    assert_eq!(t.joined, 20);
    assert_eq!(t.compared, 14);
    assert_eq!(t.not_compared.get("skipped_in_candidate"), Some(&6));
    // Only the two planted differences; none of the six skipped exchanges.
    assert_eq!(t.mismatched, 2, "{:?}", r.mismatches);
    assert_eq!(r.mismatches.get("values"), Some(&1));
    assert_eq!(r.mismatches.get("warnings"), Some(&1));

    let cand = &r.unreplayed.candidate;
    assert!(cand.replay);
    assert_eq!(
        (
            cand.exchanges,
            cand.skipped,
            cand.lost_in_flight,
            cand.counted
        ),
        (20, 6, 0, 5)
    );
    assert!((cand.counted_share - 0.25).abs() < 1e-12);
    let reasons: Vec<(&str, u64, bool)> = cand
        .reasons
        .iter()
        .map(|x| (x.reason.as_str(), x.count, x.counted))
        .collect();
    assert_eq!(
        reasons,
        [("unknown_statement", 5, true), ("filtered", 1, false)]
    );
    assert_eq!(
        cand.reasons[0].explanation,
        SkipReason::UnknownStatement.explain()
    );
    assert!((cand.reasons[1].share - 0.05).abs() < 1e-12);
    let base = &r.unreplayed.baseline;
    assert!(!base.replay);
    assert!(base.reasons.is_empty() && base.counted == 0);
}

#[test]
fn application_rate_leaves_driver_chatter_out() {
    let t = report(&Options::default()).totals;
    // Compared: init_db, SET NAMES, prepare, ten EXECUTEs, ping; the EXECUTEs are the
    // application's statements.
    assert_eq!((t.compared, t.mismatched), (14, 2));
    assert_eq!((t.application_compared, t.application_mismatched), (10, 1));
    assert!((t.mismatch_rate - 2.0 / 14.0).abs() < 1e-12);
    assert!((t.application_mismatch_rate - 0.1).abs() < 1e-12);
}

#[test]
fn unreplayed_over_the_limit_fails_before_any_mismatch() {
    let r = report(&Options::default());
    let v = &r.verdict;
    assert!(!v.pass);
    assert_eq!(
        v.reasons[0],
        "25.000 % of the candidate's recorded exchanges were not replayed \
         (5 of 20: unknown_statement: 5; limit 1.000 %)"
    );
    assert!(
        v.reasons[1].starts_with("1 of 10 compared application statements differ"),
        "{:?}",
        v.reasons
    );
    assert_eq!(v.reasons.len(), 2);
}

#[test]
fn within_the_limits_passes_on_the_application_rate() {
    // 25 % not replayed is within 30 %; the application rate (10 %) is within 10 % while the
    // overall rate (14 %) is not: the verdict judges the application's.
    let r = report(&Options {
        max_unreplayed: Some(0.30),
        max_mismatch_rate: Some(0.10),
        ..Options::default()
    });
    assert!(r.verdict.pass, "{:?}", r.verdict.reasons);
    assert_eq!(r.verdict.thresholds.max_unreplayed, Some(0.30));
}
