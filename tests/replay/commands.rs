//! Every command kind the capture records reaches the server, and prepared statements
//! keep their parameter types across EXECUTEs and reconnects.

use crate::common::*;
use crate::{replay, replay_command, serial};
use myrr_recording::{Command as Cmd, Response, SkipReason};

/// Writes a recording of one session sending `cmds` 100 µs apart.
fn one_session(rec: &std::path::Path, db: &str, cmds: Vec<(Cmd, Response)>) {
    let session: Vec<_> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, (c, r))| (i as u64 * 100, c, r))
        .collect();
    synthetic_commands(rec, db, &[session]);
}

/// Every command kind the capture records, replayed against the candidate: long data and
/// statement reset, cursors and FETCH, FIELD_LIST, STATISTICS, SET_OPTION, CHANGE_USER, PING,
/// RESET_CONNECTION and QUIT — each must reach the server and come back decoded.
#[test]
fn every_command_kind_is_replayed() {
    use myrr_recording::{OkInfo, Param, Prepared, Value};
    let _serial = serial();
    let db = db();
    sql(
        db.candidate_port,
        "DROP DATABASE IF EXISTS myrr_cmd; CREATE DATABASE myrr_cmd; \
         CREATE TABLE myrr_cmd.doc (id INT PRIMARY KEY, body TEXT)",
    );
    let q = |s: &str| Cmd::Query {
        sql: s.as_bytes().to_vec(),
        attrs: vec![],
    };
    let ok = Response::Ok(OkInfo::default());
    let prepared = |id, params, columns| {
        Response::Prepared(Prepared {
            stmt_id: id,
            params,
            columns,
            warnings: 0,
            param_defs: vec![],
            column_defs: vec![],
        })
    };
    // EXECUTE of `INSERT INTO doc VALUES (?, ?)` with the second parameter sent as long data:
    // NULL bitmap, types bound (LONG, BLOB), then only the first value.
    let mut raw = vec![0x00, 1, 0x03, 0, 0xfc, 0];
    raw.extend_from_slice(&1i32.to_le_bytes());
    let long = |data: &str| Cmd::SendLongData {
        stmt_id: 7,
        param: 1,
        data: data.as_bytes().to_vec(),
    };
    let exec = |stmt_id, flags, params, raw_params| Cmd::Execute {
        stmt_id,
        flags,
        params,
        prepare_seen: true,
        raw_params,
    };
    let two = vec![
        Param {
            column_type: 0x03,
            unsigned: false,
            value: Value::Int(2),
        },
        Param {
            column_type: 0xfd,
            unsigned: false,
            value: Value::Bytes(b"two".to_vec()),
        },
    ];
    let cmds: Vec<(Cmd, Response)> = vec![
        (q("SELECT 'hello world'"), ok.clone()),
        (
            Cmd::Prepare {
                sql: b"INSERT INTO doc VALUES (?, ?)".to_vec(),
            },
            prepared(7, 2, 0),
        ),
        (long("hello "), Response::None),
        (long("world"), Response::None),
        (exec(7, 0, vec![], raw), ok.clone()),
        (q("SELECT body FROM doc WHERE id = 1"), ok.clone()),
        (Cmd::ResetStmt { stmt_id: 7 }, ok.clone()),
        (exec(7, 0, two, vec![]), ok.clone()),
        (Cmd::CloseStmt { stmt_id: 7 }, Response::None),
        (exec(7, 0, vec![], vec![]), ok.clone()),
        (
            Cmd::FieldList {
                table: b"doc".to_vec(),
                wildcard: vec![],
            },
            ok.clone(),
        ),
        (Cmd::Statistics, ok.clone()),
        (Cmd::SetOption { option: 1 }, ok.clone()),
        (q("SELECT 1; SELECT 2"), ok.clone()),
        (Cmd::SetOption { option: 0 }, ok.clone()),
        (q("SELECT 1; SELECT 2"), ok.clone()),
        (
            Cmd::Prepare {
                sql: b"SELECT id FROM doc ORDER BY id".to_vec(),
            },
            prepared(9, 0, 1),
        ),
        (exec(9, 1, vec![], vec![]), ok.clone()),
        (
            Cmd::Fetch {
                stmt_id: 9,
                rows: 1,
            },
            ok.clone(),
        ),
        (
            Cmd::Fetch {
                stmt_id: 9,
                rows: 5,
            },
            ok.clone(),
        ),
        (
            Cmd::ChangeUser {
                user: b"myrr".to_vec(),
                db: Some(b"myrr_cmd".to_vec()),
            },
            ok.clone(),
        ),
        (q("SELECT DATABASE()"), ok.clone()),
        (Cmd::Ping, ok.clone()),
        (Cmd::ResetConnection, ok.clone()),
        (Cmd::Quit, Response::None),
    ];
    let dir = tempdir();
    let rec = dir.join("cmds.myrr");
    one_session(&rec, "myrr_cmd", cmds);
    let out = dir.join("cmds.out.myrr");
    replay(&rec, &out, &["--speed", "max"]);
    let mut xs: Vec<_> = exchanges_by_key(&read_events(&out)).into_values().collect();
    xs.sort_by_key(|x| x.seq);
    let kinds: Vec<String> = xs
        .iter()
        .map(|x| {
            let more: Vec<_> = x.more.iter().map(|r| r.kind_name()).collect();
            match &x.response {
                Response::Err(e) => format!("error {}", e.code),
                r if more.is_empty() => r.kind_name().to_string(),
                r => format!("{} + {}", r.kind_name(), more.join(" + ")),
            }
        })
        .collect();
    let want = [
        "rows",
        "prepared",
        "none",
        "none",
        "ok",
        "rows",
        "ok",
        "ok",
        "none",
        "skipped",
        "rows",
        "text",
        "ok",
        "error 1064",
        "ok",
        "rows + rows",
        "prepared",
        "rows",
        "rows",
        "rows",
        "ok",
        "rows",
        "ok",
        "ok",
        "none",
    ];
    assert_eq!(kinds, want);
    let rows = |i: usize| match &xs[i].response {
        Response::Rows(r) => r.clone(),
        other => panic!("exchange {i}: {other:?}"),
    };
    // The long data arrived whole: the row reads back as the literal does.
    assert_eq!(rows(5).rows, 1);
    assert_eq!(rows(5).digest, rows(0).digest);
    let Response::Ok(inserted) = &xs[7].response else {
        panic!("{:?}", xs[7].response)
    };
    assert_eq!(inserted.affected_rows, 1);
    let names: Vec<_> = rows(10).columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, [b"id".to_vec(), b"body".to_vec()]);
    let Response::Text(stats) = &xs[11].response else {
        panic!("{:?}", xs[11].response)
    };
    assert!(
        stats.starts_with(b"Uptime"),
        "{}",
        String::from_utf8_lossy(stats)
    );
    // The cursor: no rows with the EXECUTE, then one and the last one through FETCH.
    assert_eq!((rows(17).rows, rows(18).rows, rows(19).rows), (0, 1, 1));
    assert_eq!(rows(21).rows, 1);
    let Response::Skipped(SkipReason::UnknownStatement) = &xs[9].response else {
        panic!("EXECUTE after CLOSE: {:?}", xs[9].response)
    };
    assert_eq!(
        sql(
            db.candidate_port,
            "SELECT id, body FROM myrr_cmd.doc ORDER BY id"
        ),
        "1\thello world\n2\ttwo\n"
    );
}

/// An EXECUTE sends its parameter types only when they differ from the statement's previous
/// EXECUTE: every answer must still read its parameter with its own type (a DOUBLE read as the
/// LONGLONG before it would come back as a 19-digit number). After the connection is killed,
/// the session reconnects and re-prepares, and the new statement gets its types again.
#[test]
fn executes_whose_parameter_types_change_read_their_own_types() {
    use myrr_recording::{digest::RowDigester, digest::ValueRef, Param, Prepared, Value};
    let _serial = serial();
    let db = db();
    let exec = |column_type, value| Cmd::Execute {
        stmt_id: 3,
        flags: 0,
        params: vec![Param {
            column_type,
            unsigned: false,
            value,
        }],
        prepare_seen: true,
        raw_params: vec![],
    };
    let kill = Cmd::Query {
        sql: b"KILL CONNECTION_ID()".to_vec(),
        attrs: vec![],
    };
    // Each command, and what the replayed answer must read (None: not checked).
    let steps: Vec<(Cmd, Option<Option<&[u8]>>)> = vec![
        (exec(0x08, Value::Int(5)), Some(Some(b"5"))),
        (exec(0x08, Value::Int(-6)), Some(Some(b"-6"))),
        (exec(0x05, Value::Double(2.5)), Some(Some(b"2.5"))),
        (exec(0x05, Value::Double(-0.25)), Some(Some(b"-0.25"))),
        (exec(0xfd, Value::Bytes(b"x".to_vec())), Some(Some(b"x"))),
        (exec(0x06, Value::Null), Some(None)),
        (exec(0x08, Value::Int(7)), Some(Some(b"7"))),
        (kill, None),
        // Meets the dead connection (or the reconnected one).
        (exec(0x08, Value::Int(8)), None),
        (exec(0x08, Value::Int(9)), Some(Some(b"9"))),
        (exec(0x08, Value::Int(10)), Some(Some(b"10"))),
    ];
    let mut cmds = vec![(
        Cmd::Prepare {
            sql: b"SELECT CAST(? AS CHAR)".to_vec(),
        },
        Response::Prepared(Prepared {
            stmt_id: 3,
            params: 1,
            columns: 1,
            warnings: 0,
            param_defs: vec![],
            column_defs: vec![],
        }),
    )];
    cmds.extend(steps.iter().map(|(c, _)| (c.clone(), Response::None)));
    let dir = tempdir();
    let rec = dir.join("types.myrr");
    one_session(&rec, "sbtest", cmds);
    let out = dir.join("types.out.myrr");
    let o = replay_command(&rec, &db.candidate_url, &out, &["--speed", "max"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reconnects 1"), "{err}");
    let mut xs: Vec<_> = exchanges_by_key(&read_events(&out)).into_values().collect();
    xs.sort_by_key(|x| x.seq);
    assert_eq!(xs.len(), 1 + steps.len());
    for (x, (_, want)) in xs[1..].iter().zip(&steps) {
        let Some(want) = want else { continue };
        let mut d = RowDigester::new();
        d.row([want.map_or(ValueRef::Null, ValueRef::Bytes)]);
        match &x.response {
            Response::Rows(r) => assert_eq!(
                (r.rows, r.digest),
                (1, d.finish()),
                "exchange {} should read {:?}",
                x.seq,
                want.map(String::from_utf8_lossy)
            ),
            other => panic!("exchange {}: {other:?}", x.seq),
        }
    }
}
