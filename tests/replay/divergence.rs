//! `--sync`: a write whose outcome differs from production's marks its rows, and the later
//! statements that touch them are labelled after-divergence (its own answer, a lock conflict
//! on one side only, lock-conflict); statements on other rows are not.

use crate::common::*;
use crate::serial;
use myrr_recording::{Command as Cmd, Event, OrderLabel, Response};

/// An OK answer: rows affected, status flags (0x0002 autocommit, 0x0003 in a transaction).
fn ok(affected: u64, status: u16) -> Response {
    Response::Ok(myrr_recording::OkInfo {
        affected_rows: affected,
        status,
        ..Default::default()
    })
}

/// Production's deadlock error.
fn deadlock() -> Response {
    Response::Err(myrr_recording::ErrInfo {
        code: 1213,
        state: b"40001".to_vec(),
        message: b"Deadlock found when trying to get lock; try restarting transaction".to_vec(),
    })
}

/// A recorded text statement at `start` µs, answered in 100 µs.
fn q(start: u64, sql: &str, answer: Response) -> (u64, u64, Cmd, Response) {
    let command = Cmd::Query {
        sql: sql.as_bytes().to_vec(),
        attrs: vec![],
    };
    (start, start + 100, command, answer)
}

/// Replays `rec` onto the candidate with `--sync all`: the JSON summary and the events.
fn replay_sync(rec: &std::path::Path) -> (serde_json::Value, Vec<Event>) {
    replay_sync_with(rec, &[])
}

/// [`replay_sync`] with `extra` arguments.
fn replay_sync_with(rec: &std::path::Path, extra: &[&str]) -> (serde_json::Value, Vec<Event>) {
    let out = rec.with_extension("replay.myrr");
    let mut args = vec!["--sync", "all", "--json"];
    args.extend(extra);
    let o = crate::replay_command(rec, &db().candidate_url, &out, &args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        serde_json::from_slice(&o.stdout).unwrap(),
        read_events(&out),
    )
}

/// The order labels the run gave exchange (session, seq), 0 for none.
fn labels(events: &[Event], session: u64, seq: u64) -> u8 {
    events
        .iter()
        .find_map(|e| match e {
            Event::Label(l) if l.session == session && l.seq == seq => Some(l.labels),
            _ => None,
        })
        .unwrap_or(0)
}

/// The answer the run got for exchange (session, seq).
fn answer(events: &[Event], session: u64, seq: u64) -> Option<Response> {
    events
        .iter()
        .filter_map(Event::as_exchange)
        .find(|x| x.session == session && x.seq == seq)
        .map(|x| x.response.clone())
}

/// Table `myrr_div.t (id, v)` on the candidate, with the rows of `ids` (among 1–200; a list,
/// or a query of the numbers `s (n)`) at 0.
fn table(ids: &str) {
    sql(
        db().candidate_port,
        &format!(
            "DROP DATABASE IF EXISTS myrr_div; CREATE DATABASE myrr_div; \
             CREATE TABLE myrr_div.t (id INT PRIMARY KEY, v INT); \
             INSERT INTO myrr_div.t WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL \
             SELECT n + 1 FROM s WHERE n < 200) SELECT n, 0 FROM s WHERE n IN ({ids})"
        ),
    );
}

/// Session 1 sets a lock wait timeout of 1 s and updates row 1 (production: at once). In the
/// replay another transaction holds row 1, so the UPDATE times out: a lock conflict, and row
/// 1 is not what production had. Session 2 reads rows 1 and 2 two seconds later: the read of
/// row 1 follows the divergence, that of row 2 does not.
#[test]
fn reads_of_rows_a_diverged_write_left_different_are_labelled() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("diverged.myrr");
    synthetic_timed(
        &rec,
        "myrr_div",
        &[
            vec![
                q(0, "SET innodb_lock_wait_timeout = 1", ok(0, 2)),
                q(10_000, "UPDATE t SET v = 5 WHERE id = 1", ok(1, 2)),
            ],
            vec![
                q(2_000_000, "SELECT v FROM t WHERE id = 1", ok(0, 2)),
                q(2_010_000, "SELECT v FROM t WHERE id = 2", ok(0, 2)),
                q(
                    2_020_000,
                    "SELECT SUM(v) FROM t WHERE id BETWEEN 1 AND 3",
                    ok(0, 2),
                ),
                q(2_030_000, "SELECT v FROM t WHERE id > 1", ok(0, 2)),
            ],
        ],
    );
    table("1, 2, 3");
    // Holds row 1 for 4 s.
    let holder = mariadb_cli(
        db.candidate_port,
        "BEGIN; SELECT v FROM myrr_div.t WHERE id = 1 FOR UPDATE; SELECT SLEEP(4); ROLLBACK",
    )
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let held = || {
        sql(
            db.candidate_port,
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_rows_locked > 0",
        )
        .trim()
            != "0"
    };
    let since = std::time::Instant::now();
    while !held() {
        if since.elapsed().as_secs() >= 10 {
            let o = holder.wait_with_output().unwrap();
            panic!("the lock was never taken: {o:?}");
        }
        // InnoDB refreshes INNODB_TRX only when it was not read for 100 ms.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let (summary, events) = replay_sync(&rec);
    assert!(holder.wait_with_output().unwrap().status.success());
    let labels = |session, seq| labels(&events, session, seq);
    let update = answer(&events, 1, 1);
    assert!(
        matches!(&update, Some(Response::Err(e)) if e.code == 1205),
        "the update did not time out: {update:?}"
    );
    assert_eq!(labels(1, 1), OrderLabel::LOCK_CONFLICT, "{summary}");
    assert_eq!(
        labels(2, 0),
        OrderLabel::AFTER_DIVERGENCE,
        "row 1: {summary}"
    );
    assert_eq!(labels(2, 1), 0, "row 2: {summary}");
    assert_eq!(
        labels(2, 2),
        OrderLabel::AFTER_DIVERGENCE,
        "rows 1-3: {summary}"
    );
    assert_eq!(labels(2, 3), 0, "rows 2-: {summary}");
    let d = &summary["divergence"];
    assert_eq!(d["lock_conflicts"], 1, "{summary}");
    assert_eq!(d["after_divergence"], 2, "{summary}");
    assert!(d["primary_keys"].as_u64().unwrap() >= 1, "{summary}");
}

/// The candidate's value of each of `ids` in `myrr_div.t`, comma-separated.
fn values(ids: &str) -> String {
    sql(
        db().candidate_port,
        &format!("SELECT GROUP_CONCAT(v ORDER BY id) FROM myrr_div.t WHERE id IN ({ids})"),
    )
    .trim()
    .to_string()
}

/// Production's session 1 lost its transaction to a deadlock at its second UPDATE (row 4);
/// replayed alone, that UPDATE succeeds. By default (`--sync-deadlocks on`) the replay rolls
/// the transaction back there, as production's deadlock did: row 3 keeps its value, and
/// nothing after it is labelled. With `off`, a deadlock on one side only rolls back a whole
/// transaction there and not here: every write of it is marked, so session 2's later read of
/// row 3 is labelled, its read of row 9 is not (marking only what ends up different, decided
/// at the transaction's end, let 9 differences through on sysbench at 32 threads).
#[test]
fn a_transaction_production_lost_to_a_deadlock_is_rolled_back_here_too() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("deadlock-one-side.myrr");
    synthetic_timed(
        &rec,
        "myrr_div",
        &[
            vec![
                q(0, "BEGIN", ok(0, 0x0003)),
                q(1_000, "UPDATE t SET v = 7 WHERE id = 3", ok(1, 0x0003)),
                q(2_000, "UPDATE t SET v = 7 WHERE id = 4", deadlock()),
                // What sysbench sends next: a BEGIN, which commits an open transaction.
                q(3_000, "BEGIN", ok(0, 0x0003)),
                q(4_000, "COMMIT", ok(0, 0x0002)),
            ],
            vec![
                q(50_000, "SELECT v FROM t WHERE id = 3", ok(0, 0x0002)),
                q(51_000, "SELECT v FROM t WHERE id = 9", ok(0, 0x0002)),
            ],
        ],
    );
    for follow in ["on", "off"] {
        table("3, 4, 9");
        let (summary, events) = replay_sync_with(&rec, &["--sync-deadlocks", follow]);
        let labels = |session, seq| labels(&events, session, seq);
        assert_eq!(
            labels(1, 1),
            0,
            "the first UPDATE went as recorded: {summary}"
        );
        assert_eq!(
            labels(1, 2),
            OrderLabel::LOCK_CONFLICT,
            "{follow}: {summary}"
        );
        let deadlocks = &summary["divergence"]["deadlocks"];
        if follow == "on" {
            assert_eq!(values("3, 4"), "0,0", "rolled back as in production");
            assert_eq!(deadlocks["undone"], 1, "{summary}");
            assert_eq!(labels(1, 3), 0, "the BEGIN: {summary}");
            assert_eq!(labels(2, 0), 0, "row 3 is production's: {summary}");
        } else {
            assert_eq!(values("3, 4"), "7,7", "the next BEGIN committed it");
            assert_eq!(deadlocks["undone"], 0, "{summary}");
            assert_eq!(labels(1, 3), OrderLabel::AFTER_DIVERGENCE, "{summary}");
            assert_eq!(
                labels(2, 0),
                OrderLabel::AFTER_DIVERGENCE,
                "row 3: {summary}"
            );
        }
        assert_eq!(labels(2, 1), 0, "row 9: {follow}: {summary}");
    }
}

/// The replay loses a transaction that production committed: another transaction on the
/// candidate (heavier: it changed many rows, so InnoDB picks the replay's as the victim)
/// closes a deadlock with session 1's second UPDATE. By default the replay sends the
/// transaction again once the candidate has rolled it back (`BEGIN`, row 3), then the
/// UPDATE of row 4, which this time is taken: the rows end as production's, and the UPDATE
/// is labelled lock-conflict (its answer waited for a retry). With `--sync-deadlocks off`
/// both of session 1's writes are lost here and kept there: session 2's later read of row 3
/// follows the divergence.
#[test]
fn a_transaction_the_candidate_lost_to_a_deadlock_is_sent_again() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("deadlock-here.myrr");
    synthetic_timed(
        &rec,
        "myrr_div",
        &[
            vec![
                q(0, "BEGIN", ok(0, 0x0003)),
                q(1_000_000, "UPDATE t SET v = 7 WHERE id = 3", ok(1, 0x0003)),
                q(1_001_000, "UPDATE t SET v = 7 WHERE id = 4", ok(1, 0x0003)),
                q(1_002_000, "COMMIT", ok(0, 0x0002)),
            ],
            vec![
                q(4_000_000, "SELECT v FROM t WHERE id = 3", ok(0, 0x0002)),
                q(4_001_000, "SELECT v FROM t WHERE id = 9", ok(0, 0x0002)),
            ],
        ],
    );
    for follow in ["on", "off"] {
        table("SELECT n FROM s");
        // Holds rows 4-200 from the start; at 2 s (session 1 then waits for row 4 while
        // holding row 3) asks for row 3.
        let other = mariadb_cli(
            db.candidate_port,
            "BEGIN; UPDATE myrr_div.t SET v = 1 WHERE id >= 4; SELECT SLEEP(2); \
             UPDATE myrr_div.t SET v = 1 WHERE id = 3; SELECT SLEEP(1); ROLLBACK",
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let (summary, events) = replay_sync_with(&rec, &["--sync-deadlocks", follow]);
        let _ = other.wait_with_output();
        let labels = |session, seq| labels(&events, session, seq);
        assert_eq!(
            labels(1, 2),
            OrderLabel::LOCK_CONFLICT,
            "{follow}: {summary}"
        );
        assert_eq!(labels(2, 1), 0, "row 9: {follow}: {summary}");
        let update = answer(&events, 1, 2);
        let deadlocks = &summary["divergence"]["deadlocks"];
        if follow == "on" {
            assert!(
                matches!(&update, Some(Response::Ok(_))),
                "the UPDATE of row 4, sent again: {update:?}"
            );
            assert_eq!(deadlocks["retried"], 1, "{summary}");
            assert_eq!(values("3, 4"), "7,7", "committed as in production");
            assert_eq!(labels(1, 3), 0, "the COMMIT: {summary}");
            assert_eq!(labels(2, 0), 0, "row 3 is production's: {summary}");
        } else {
            assert!(
                matches!(&update, Some(Response::Err(e)) if e.code == 1213),
                "the replay's UPDATE of row 4 was not the victim: {update:?}"
            );
            assert_eq!(deadlocks["retried"], 0, "{summary}");
            assert_eq!(values("3, 4"), "0,0", "lost here");
            assert_eq!(labels(1, 3), OrderLabel::AFTER_DIVERGENCE, "{summary}");
            assert_eq!(
                labels(2, 0),
                OrderLabel::AFTER_DIVERGENCE,
                "row 3: {summary}"
            );
        }
    }
}

/// A recorded text statement from `start` to `end` µs.
fn qd(start: u64, end: u64, sql: &str, answer: Response) -> (u64, u64, Cmd, Response) {
    let (_, _, command, answer) = q(start, sql, answer);
    (start, end, command, answer)
}

/// Session 2's UPDATE of row 5 waited in production for session 1's transaction, which
/// deleted and re-inserted row 5, and was answered 7.3 ms before that transaction's COMMIT
/// was (InnoDB releases the locks before the COMMIT's log flush and answer; a flush that slow
/// is beyond `--sync-locks`' 5 ms): it waits for no commit in the replay. Session 1 first
/// sleeps 300 ms (production: at once), so with `--sync-writes off` the UPDATE runs before
/// the DELETE, and the re-insert leaves row 5 other than production's. Nothing differs in
/// what the statements answer (one row each), but the UPDATE went ahead of a commit that was
/// in flight when production answered it: the read of row 5 a second later is labelled
/// after-divergence; that of row 4 is not. With `--sync-writes rows` (the default) the
/// UPDATE waits for the DELETE and INSERT of its row, which ended before it began: row 5 is
/// production's, and nothing is labelled.
#[test]
fn a_write_ahead_of_a_commit_in_flight_marks_the_rows_it_overtook() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("overtaken.myrr");
    synthetic_timed(
        &rec,
        "myrr_div",
        &[
            vec![
                q(0, "BEGIN", ok(0, 0x0003)),
                qd(1_000, 1_100, "DO SLEEP(0.3)", ok(0, 0x0003)),
                qd(2_000, 2_100, "DELETE FROM t WHERE id = 5", ok(1, 0x0003)),
                qd(2_200, 2_300, "INSERT INTO t VALUES (5, 1)", ok(1, 0x0003)),
                qd(3_000, 12_000, "COMMIT", ok(0, 0x0002)),
            ],
            vec![qd(
                2_600,
                4_700,
                "UPDATE t SET v = 7 WHERE id = 5",
                ok(1, 0x0002),
            )],
            vec![
                q(1_000_000, "SELECT v FROM t WHERE id = 5", ok(0, 2)),
                q(1_000_200, "SELECT v FROM t WHERE id = 4", ok(0, 2)),
            ],
        ],
    );
    table("4, 5");
    let (summary, events) = replay_sync(&rec);
    assert_eq!(
        sql(db().candidate_port, "SELECT v FROM myrr_div.t WHERE id = 5").trim(),
        "7",
        "{summary}"
    );
    for (session, seq) in [(2, 0), (3, 0), (3, 1)] {
        assert_eq!(
            labels(&events, session, seq),
            0,
            "{session}#{seq}: {summary}"
        );
    }
    table("4, 5");
    let (summary, events) = replay_sync_with(&rec, &["--sync-writes", "off"]);
    // The replay did run the UPDATE first: row 5 is what session 1 inserted.
    assert_eq!(
        sql(db().candidate_port, "SELECT v FROM myrr_div.t WHERE id = 5").trim(),
        "1",
        "{summary}"
    );
    assert_eq!(
        labels(&events, 2, 0) & OrderLabel::OUT_OF_ORDER,
        0,
        "{summary}"
    );
    assert_ne!(
        labels(&events, 3, 0) & OrderLabel::AFTER_DIVERGENCE,
        0,
        "{summary}"
    );
    assert_eq!(
        labels(&events, 3, 1) & OrderLabel::AFTER_DIVERGENCE,
        0,
        "{summary}"
    );
}
