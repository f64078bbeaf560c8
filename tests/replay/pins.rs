//! `--pin`: before a write, or a read calling a time function, the session sets `timestamp`
//! to the statement's recorded start and `insert_id` to the AUTO_INCREMENT id the recorded
//! statement generated, so the candidate writes what production wrote whatever the order
//! sessions run in; a target that refuses a pin is counted and the session goes on.

use crate::backfill::{query, Recording, T0};
use crate::common::*;
use crate::{replay_against, serial};
use myrr_recording::{OkInfo, Response};

fn inserted(id: u64) -> Response {
    Response::Ok(OkInfo {
        affected_rows: 1,
        last_insert_id: id,
        ..OkInfo::default()
    })
}

/// Production: two INSERTs that got ids 777 and 778 (another session's rows came first),
/// one taking its time from the column default, one from NOW(6); an UPDATE by the recorded
/// id; a read of NOW(6).
fn recording(path: &std::path::Path, t0_offset_us: u64) {
    let mut r = Recording::default();
    let at = |us: u64| t0_offset_us + us;
    r.start(1, at(0), false, Some("myrr_pin"));
    r.answered(
        1,
        at(10),
        query("INSERT INTO t (note) VALUES ('a')"),
        inserted(777),
    );
    r.answered(
        1,
        at(1_010),
        query("INSERT INTO t (note, at) VALUES ('b', NOW(6))"),
        inserted(778),
    );
    r.answered(
        1,
        at(2_010),
        query("UPDATE t SET note = 'c' WHERE id = 777"),
        inserted(0),
    );
    r.answered(1, at(3_010), query("SELECT 1"), inserted(0));
    r.end(1, at(4_000));
    r.write(path);
}

/// A replay of `rec` into `out` (closed loop, with `args`, `--json`): its summary.
fn pinned_replay(rec: &std::path::Path, out: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = replay_against(rec, &db().candidate_url, out, &[args, &["--json"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fresh() {
    sql(
        db().candidate_port,
        "DROP DATABASE IF EXISTS myrr_pin; CREATE DATABASE myrr_pin; \
         CREATE TABLE myrr_pin.t (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20), \
            at DATETIME(6) DEFAULT NOW(6))",
    );
}

fn rows() -> String {
    sql(
        db().candidate_port,
        "SELECT id, note, at FROM myrr_pin.t ORDER BY id",
    )
}

/// The DATETIME(6) the candidate shows for µs `us` since the epoch.
fn datetime(us: u64) -> String {
    sql(
        db().candidate_port,
        &format!(
            "SELECT FROM_UNIXTIME({}.{:06})",
            us / 1_000_000,
            us % 1_000_000
        ),
    )
    .trim()
    .to_string()
}

#[test]
fn pinned_writes_get_production_s_ids_and_times() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("pin.myrr");
    recording(&rec, 0);

    fresh();
    let s = pinned_replay(&rec, &dir.join("on.myrr"), &["--pin", "on"]);
    // The three writes; SELECT 1 calls no time function. The first pin is a SET of its own;
    // once the target took it, the other two carry theirs (SET STATEMENT … FOR).
    assert_eq!(s["pins"]["statements"], 3, "{s:#}");
    assert_eq!(s["pins"]["batched"], 2, "{s:#}");
    assert_eq!(s["pins"]["refused"], 0, "{s:#}");
    let want = format!(
        "777\tc\t{}\n778\tb\t{}\n",
        datetime(T0 + 10),
        datetime(T0 + 1_010)
    );
    assert_eq!(rows(), want);
    // The same rows with every pin a SET of its own.
    fresh();
    let s = pinned_replay(
        &rec,
        &dir.join("unbatched.myrr"),
        &["--pin", "on", "--pin-batch", "off"],
    );
    assert_eq!(s["pins"]["statements"], 3, "{s:#}");
    assert_eq!(s["pins"]["batched"], 0, "{s:#}");
    assert_eq!(rows(), want);

    // Without pins the candidate numbers and dates the rows itself.
    fresh();
    let o = replay_against(
        &rec,
        &db().candidate_url,
        &dir.join("off.myrr"),
        &["--pin", "off"],
    );
    assert!(o.status.success());
    let got = rows();
    assert!(
        got.starts_with("1\ta\t") && got.contains("\n2\tb\t"),
        "{got}"
    );

    // analyze sees the other ids themselves, not only what follows from them — also for the
    // INSERT calling NOW(6), whose time may differ but whose id may not.
    let (_, unpinned) = analyze_json(&rec, &[&dir.join("off.myrr")], &[]);
    assert_eq!(
        unpinned["mismatches"]["insert_id"], 2,
        "{:#}",
        unpinned["mismatches"]
    );
    let (code, pinned) = analyze_json(&rec, &[&dir.join("on.myrr")], &[]);
    assert_eq!(code, 0, "{:#}", pinned["verdict"]);
}

#[test]
fn a_refused_pin_is_counted_and_the_session_goes_on_without() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("far.myrr");
    // In the year 2128: beyond what the server's `timestamp` holds (it truncates, and warns).
    recording(&rec, 5_000_000_000_000_000 - T0);
    fresh();
    let o = replay_against(
        &rec,
        &db().candidate_url,
        &dir.join("far-out.myrr"),
        &["--pin", "on", "--json"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["pins"]["refused"], 1, "{s:#}");
    assert_eq!(s["pins"]["statements"], 0, "{s:#}");
    assert!(
        s["first_errors"]
            .to_string()
            .contains("refused `SET timestamp"),
        "{s:#}"
    );
    // Every statement still ran.
    assert_eq!(s["errors"], 0, "{s:#}");
    assert_eq!(
        sql(db().candidate_port, "SELECT COUNT(*) FROM myrr_pin.t").trim(),
        "2"
    );
}

/// A statement the `SET STATEMENT … FOR` prefix would not parse where production's did: it is
/// sent again, pinned by a SET of its own, and the session's later pins are SETs too.
#[test]
fn a_statement_the_prefix_breaks_is_pinned_the_slow_way() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("unparsable.myrr");
    let mut r = Recording::default();
    r.start(1, 0, false, Some("myrr_pin"));
    r.answered(
        1,
        10,
        query("INSERT INTO t (note) VALUES ('a')"),
        inserted(777),
    );
    // Production's server took it (another dialect); MariaDB does not parse it.
    r.answered(
        1,
        1_010,
        query("INSERT INTO t (note) VALUE5 ('b')"),
        inserted(778),
    );
    r.answered(
        1,
        2_010,
        query("INSERT INTO t (note) VALUES ('c')"),
        inserted(779),
    );
    r.end(1, 3_000);
    r.write(&rec);
    fresh();
    let s = pinned_replay(&rec, &dir.join("out.myrr"), &["--pin", "on"]);
    assert_eq!(s["pins"]["statements"], 3, "{s:#}");
    assert_eq!(s["pins"]["batched"], 0, "{s:#}");
    assert_eq!(s["errors"], 1, "{s:#}");
    let got = rows();
    assert!(
        got.starts_with("777\ta\t") && got.contains("\n779\tc\t"),
        "{got}"
    );
    // The unparsable statement was answered once, with MariaDB's own parse error.
    let xs: Vec<_> = read_events(&dir.join("out.myrr"))
        .into_iter()
        .filter_map(|e| match e {
            myrr_recording::Event::Exchange(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(xs.len(), 3);
    assert!(
        matches!(&xs[1].response, Response::Err(e) if e.code == 1064),
        "{:?}",
        xs[1].response
    );
}

/// Prepared statements cannot carry a prefix: their pins go as a `SET` sent right before the
/// EXECUTE, without waiting for its answer (the server answers both in order).
#[test]
fn prepared_writes_get_their_pins_pipelined() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("ps.myrr");
    let mut r = Recording::default();
    r.start(1, 0, false, Some("myrr_pin"));
    r.answered(
        1,
        10,
        myrr_recording::Command::Prepare {
            sql: b"INSERT INTO t (note) VALUES (?)".to_vec(),
        },
        Response::Prepared(myrr_recording::Prepared {
            stmt_id: 5,
            params: 1,
            columns: 0,
            warnings: 0,
            param_defs: vec![],
            column_defs: vec![],
        }),
    );
    let execute = |note: &str| myrr_recording::Command::Execute {
        stmt_id: 5,
        flags: 0,
        params: vec![myrr_recording::Param {
            column_type: 0xfd,
            unsigned: false,
            value: myrr_recording::Value::Bytes(note.as_bytes().to_vec()),
        }],
        prepare_seen: true,
        raw_params: vec![],
    };
    for (i, note) in ["a", "b", "c"].iter().enumerate() {
        let at = 1_000 * (i as u64 + 1);
        r.answered(1, at, execute(note), inserted(777 + i as u64));
    }
    r.end(1, 5_000);
    r.write(&rec);
    fresh();
    let s = pinned_replay(&rec, &dir.join("out.myrr"), &["--pin", "on"]);
    assert_eq!(s["pins"]["statements"], 3, "{s:#}");
    assert_eq!(s["pins"]["batched"], 2, "{s:#}");
    assert_eq!(s["errors"], 0, "{s:#}");
    let want = format!(
        "777\ta\t{}\n778\tb\t{}\n779\tc\t{}\n",
        datetime(T0 + 1_000),
        datetime(T0 + 2_000),
        datetime(T0 + 3_000)
    );
    assert_eq!(rows(), want);
    // Each EXECUTE's answer is its own (the SET's OK was read first).
    let ids: Vec<u64> = read_events(&dir.join("out.myrr"))
        .into_iter()
        .filter_map(|e| match e {
            myrr_recording::Event::Exchange(x) => match x.response {
                Response::Ok(ok) => Some(ok.last_insert_id),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(ids, [777, 778, 779]);
}

/// Only writes that can read the session's time get a `timestamp` pin: the candidate is
/// asked which tables fill a column from the time (a default, ON UPDATE, a trigger), and a
/// write to one other table goes without — unless the text does not say which table it
/// writes, or the replay changed the schema.
#[test]
fn only_writes_that_can_read_the_time_are_pinned() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("which.myrr");
    let mut r = Recording::default();
    r.start(1, 0, false, Some("myrr_pin_which"));
    let writes = [
        (10, "INSERT INTO plain VALUES (1, 1)"),
        (20, "UPDATE plain SET v = 2 WHERE id = 1"),
        (30, "INSERT INTO logged (id) VALUES (1)"),
        (40, "INSERT INTO upd (id, v) VALUES (1, 1)"),
        (50, "UPDATE upd SET v = 2 WHERE id = 1"),
        (60, "UPDATE plain JOIN upd USING (id) SET plain.v = 3"),
        (70, "ALTER TABLE plain ADD at DATETIME(6) DEFAULT NOW(6)"),
        (80, "INSERT INTO plain (id, v) VALUES (2, 2)"),
    ];
    for (at, q) in writes {
        r.answered(1, at * 1_000, query(q), inserted(0));
    }
    r.end(1, 100_000);
    r.write(&rec);
    sql(
        db().candidate_port,
        "DROP DATABASE IF EXISTS myrr_pin_which; CREATE DATABASE myrr_pin_which; \
         USE myrr_pin_which; \
         CREATE TABLE plain (id INT PRIMARY KEY, v INT); \
         CREATE TABLE logged (id INT PRIMARY KEY, at DATETIME(6)); \
         CREATE TRIGGER logged_at BEFORE INSERT ON logged FOR EACH ROW SET NEW.at = NOW(6); \
         CREATE TABLE upd (id INT PRIMARY KEY, v INT, \
            changed TIMESTAMP(6) NULL DEFAULT NULL ON UPDATE CURRENT_TIMESTAMP(6))",
    );
    let s = pinned_replay(&rec, &dir.join("out.myrr"), &["--pin", "on"]);
    // The trigger's table, both writes to the ON UPDATE table, the join, the ALTER and the
    // write after it; not the first two writes to `plain`.
    assert_eq!(s["pins"]["statements"], 6, "{s:#}");
    assert!(s["pins"]["time_tables"].as_u64().unwrap() >= 2, "{s:#}");
    assert_eq!(s["errors"], 0, "{s:#}");
    let one = |q: &str| sql(db().candidate_port, q).trim().to_string();
    assert_eq!(
        one("SELECT at FROM myrr_pin_which.logged"),
        datetime(T0 + 30_000)
    );
    assert_eq!(
        one("SELECT changed FROM myrr_pin_which.upd"),
        datetime(T0 + 50_000)
    );
    assert_eq!(
        one("SELECT at FROM myrr_pin_which.plain WHERE id = 2"),
        datetime(T0 + 80_000)
    );
}

/// `RAND()`: production's seeds are not on the wire, but every replay of a statement draws
/// the same values (pinned `rand_seed1`/`rand_seed2` from its place in the recording), so
/// what a baseline and a candidate write with it, and read back, agrees.
#[test]
fn rand_draws_the_same_values_in_every_replay() {
    let _serial = serial();
    let dir = tempdir();
    let rec = dir.join("rand.myrr");
    let mut r = Recording::default();
    r.start(1, 0, false, Some("myrr_pin_rand"));
    for (at, q) in [
        (10, "INSERT INTO r (v) VALUES (RAND()), (RAND())"),
        (20, "INSERT INTO r (v) SELECT RAND()"),
        (30, "UPDATE r SET w = FLOOR(RAND() * 1000000)"),
    ] {
        r.answered(1, at * 1_000, query(q), inserted(0));
    }
    r.end(1, 100_000);
    r.write(&rec);
    let table = |pin: &str, n: u32| -> String {
        sql(
            db().candidate_port,
            "DROP DATABASE IF EXISTS myrr_pin_rand; CREATE DATABASE myrr_pin_rand; \
             CREATE TABLE myrr_pin_rand.r (id INT AUTO_INCREMENT PRIMARY KEY, v DOUBLE, w INT)",
        );
        let s = pinned_replay(&rec, &dir.join(format!("{pin}-{n}.myrr")), &["--pin", pin]);
        assert_eq!(s["errors"], 0, "{s:#}");
        if pin == "on" {
            assert_eq!(s["pins"]["statements"], 3, "{s:#}");
        }
        sql(
            db().candidate_port,
            "SELECT id, v, w FROM myrr_pin_rand.r ORDER BY id",
        )
    };
    let (one, two) = (table("on", 1), table("on", 2));
    assert_eq!(one.lines().count(), 3, "{one}");
    assert_eq!(one, two);
    // Unpinned, each replay draws its own.
    assert_ne!(table("off", 1), table("off", 2));
}
