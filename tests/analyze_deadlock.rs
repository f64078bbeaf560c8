//! `myrr analyze --reference`: a transaction production lost to a deadlock has no recorded
//! order with the transactions that survived it, so a difference in its exchanges is labelled
//! lock-conflict from the reference and reported apart, not counted; a difference elsewhere
//! still counts. Runs written here with `RecordingWriter`; no database.

mod common;

use common::*;
use myrr_recording::*;

const IN_TRANS: u16 = 0x0003;
const AUTOCOMMIT: u16 = 0x0002;

fn q(sql: &str) -> Command {
    Command::Query {
        sql: sql.as_bytes().to_vec(),
        attrs: vec![],
    }
}

fn ok(status: u16) -> Response {
    Response::Ok(OkInfo {
        status,
        ..Default::default()
    })
}

fn rows(digest: u64, status: u16) -> Response {
    Response::Rows(ResultSet {
        columns: vec![Column {
            name: b"s".to_vec(),
            column_type: 3,
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

fn deadlock() -> Response {
    Response::Err(ErrInfo {
        code: 1213,
        state: b"40001".to_vec(),
        message: b"Deadlock found when trying to get lock; try restarting transaction".to_vec(),
    })
}

/// Session 1 reads a stock row `FOR UPDATE` and loses its transaction to a deadlock (the
/// read's answer: `victim_read`); session 2 reads the same row `FOR UPDATE` and commits;
/// session 3 reads a row in autocommit (`other_read`).
fn write_run(path: &std::path::Path, victim_read: u64, other_read: u64) {
    let sessions = vec![
        vec![
            (0, q("BEGIN"), ok(IN_TRANS)),
            (
                1_000,
                q("SELECT s FROM stock WHERE id = 925 FOR UPDATE"),
                rows(victim_read, IN_TRANS),
            ),
            (
                2_000,
                q("UPDATE stock SET s = s - 1 WHERE id = 926"),
                deadlock(),
            ),
        ],
        vec![
            (500, q("BEGIN"), ok(IN_TRANS)),
            (
                8_000,
                q("SELECT s FROM stock WHERE id = 925 FOR UPDATE"),
                rows(7, IN_TRANS),
            ),
            (9_000, q("COMMIT"), ok(AUTOCOMMIT)),
        ],
        vec![(
            3_000,
            q("SELECT s FROM stock WHERE id = 1"),
            rows(other_read, AUTOCOMMIT),
        )],
    ];
    synthetic_commands(path, "shop", &sessions);
}

#[test]
fn a_difference_in_a_transaction_production_lost_to_a_deadlock_is_labelled_not_counted() {
    let dir = tempdir();
    let (prod, base, cand) = (
        dir.join("prod.myrr"),
        dir.join("base.myrr"),
        dir.join("cand.myrr"),
    );
    write_run(&prod, 1, 2);
    // The baseline reproduced production; the candidate read the victim's row after the
    // survivor had changed it, and differs in session 3 as well.
    write_run(&base, 1, 2);
    write_run(&cand, 5, 9);
    let reference = ["--reference", prod.to_str().unwrap()];
    let (code, r) = analyze_json(&base, &[&cand], &reference);
    assert_eq!(code, 1, "{:#}", r["verdict"]);
    assert_eq!(r["totals"]["mismatched"], 1, "{:#}", r["totals"]);
    assert_eq!(
        r["totals"]["order_dependent"],
        serde_json::json!({"lock-conflict": 1}),
        "{:#}",
        r["totals"]
    );
    // Where the baseline did not reproduce the victim's read, the cause says so.
    write_run(&base, 4, 2);
    let (_, r) = analyze_json(&base, &[&cand], &reference);
    assert_eq!(
        r["reproduction"]["causes"],
        serde_json::json!({"lock-conflict": 1}),
        "{:#}",
        r["reproduction"]
    );
    // Without the reference nothing tells the victim's transaction apart: both count.
    write_run(&base, 1, 2);
    let (_, r) = analyze_json(&base, &[&cand], &[]);
    assert_eq!(r["totals"]["mismatched"], 2, "{:#}", r["totals"]);
}
