//! Sessions that began before the recording (mid-stream): restored from their backfill
//! (statements prepared under their recorded ids, session variables set), EXECUTEs whose
//! parameter types were bound before the recording skipped and counted by reason, and the
//! refusal of sessions whose database nobody knows.

use std::path::Path;

use crate::common::*;
use crate::{replay_against, serial};
use myrr_recording::{
    Backfill, BackfillSource, Command as Cmd, EndReason, Event, Exchange, Header, KnownStatement,
    Login, OkInfo, Param, RecordingWriter, Response, RunKind, SessionEnd, SessionStart, SkipReason,
    Value,
};

pub(crate) const T0: u64 = 1_700_000_000_000_000;

/// Builds a recording event by event, on a timeline starting at [`T0`].
#[derive(Default)]
pub(crate) struct Recording {
    events: Vec<Event>,
    /// Exchanges so far, per session.
    seqs: std::collections::HashMap<u64, u64>,
}

impl Recording {
    /// A session seen at `at_us`: full (with its handshake, in `db`) or mid-stream (its
    /// database as a server backfill would tell it, or unknown).
    pub(crate) fn start(&mut self, session: u64, at_us: u64, mid_stream: bool, db: Option<&str>) {
        self.events.push(Event::SessionStart(SessionStart {
            session,
            client: format!("10.0.0.9:{}", 40000 + session),
            server: "10.0.0.1:3306".into(),
            start_us: T0 + at_us,
            user: Some(b"myrr".to_vec()),
            db: db.map(|d| d.as_bytes().to_vec()),
            mid_stream,
            ..Default::default()
        }));
    }

    fn backfill(&mut self, b: Backfill) {
        self.events.push(Event::Backfill(b));
    }

    fn exchange(&mut self, session: u64, at_us: u64, command: Cmd) {
        self.answered(session, at_us, command, Response::Ok(OkInfo::default()));
    }

    /// An exchange with its recorded answer.
    pub(crate) fn answered(&mut self, session: u64, at_us: u64, command: Cmd, response: Response) {
        let seq = self.seqs.entry(session).or_default();
        self.events.push(Event::Exchange(Exchange {
            session,
            seq: *seq,
            clone: 0,
            scheduled_us: None,
            start_us: T0 + at_us,
            end_us: T0 + at_us + 50,
            command,
            response,
            more: vec![],
        }));
        *seq += 1;
    }

    pub(crate) fn end(&mut self, session: u64, at_us: u64) {
        self.events.push(Event::SessionEnd(SessionEnd {
            session,
            end_us: T0 + at_us,
            reason: EndReason::Closed,
            login: Login::Unknown,
            exchanges: self.seqs.get(&session).copied().unwrap_or(0),
        }));
    }

    pub(crate) fn write(&self, path: &Path) {
        let header = Header {
            kind: RunKind::Capture,
            tool_version: "test".into(),
            source: "hand-built".into(),
            started_us: T0,
            options: vec![],
        };
        let mut w = RecordingWriter::create(path, &header).unwrap();
        for e in &self.events {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
    }
}

pub(crate) fn query(sql: &str) -> Cmd {
    Cmd::Query {
        sql: sql.as_bytes().to_vec(),
        attrs: vec![],
    }
}

/// EXECUTE of statement `id` with an INT and a string, decoded (the capture knew the
/// statement from the backfill and the client sent the types).
fn execute(id: u32, n: i64, note: &str) -> Cmd {
    Cmd::Execute {
        stmt_id: id,
        flags: 0,
        params: vec![
            Param {
                column_type: 0x03,
                unsigned: false,
                value: Value::Int(n),
            },
            Param {
                column_type: 0xfd,
                unsigned: false,
                value: Value::Bytes(note.as_bytes().to_vec()),
            },
        ],
        prepare_seen: true,
        raw_params: vec![],
    }
}

/// EXECUTE of statement `id` (INT, string) whose types the client bound before the
/// recording: NULL bitmap, new-params-bound 0, then only the values.
fn execute_without_types(id: u32, n: i32, note: &str) -> Cmd {
    let mut raw = vec![0x00, 0x00];
    raw.extend_from_slice(&n.to_le_bytes());
    raw.push(note.len() as u8);
    raw.extend_from_slice(note.as_bytes());
    Cmd::Execute {
        stmt_id: id,
        flags: 0,
        params: vec![],
        prepare_seen: true,
        raw_params: raw,
    }
}

fn insert(id: u32) -> KnownStatement {
    KnownStatement {
        id,
        sql: b"INSERT INTO t (id, note) VALUES (?, ?)".to_vec(),
        params: 2,
    }
}

/// A server backfill of `session`, as the capture writes it right after the start.
fn server_backfill(session: u64, db: &str, variables: &[(&str, &str)], ids: &[u32]) -> Backfill {
    Backfill {
        session,
        at_us: T0,
        source: BackfillSource::Server {
            connection_id: 4242,
        },
        user: Some(b"myrr".to_vec()),
        db: Some(db.as_bytes().to_vec()),
        variables: variables
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        statements: ids.iter().map(|&id| insert(id)).collect(),
    }
}

fn fresh_table(database: &str) {
    sql(
        db().candidate_port,
        &format!(
            "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}; \
             CREATE TABLE {database}.t (id INT, note VARCHAR(100))"
        ),
    );
}

fn rows(database: &str) -> String {
    sql(
        db().candidate_port,
        &format!("SELECT id, note FROM {database}.t ORDER BY id, note"),
    )
}

fn summary(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "myrr replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A mid-stream session whose statement 7 was prepared before the capture: the replay
/// prepares it on the candidate under id 7 and sets the session's variables before the first
/// EXECUTE, in every clone, so the rows land and the variables show in what the session
/// writes; a variable the candidate does not know is counted, not fatal.
#[test]
fn a_backfilled_session_is_restored_before_its_first_exchange() {
    let _serial = serial();
    fresh_table("myrr_bf");
    let mut r = Recording::default();
    r.start(1, 0, true, Some("myrr_bf"));
    let vars = [
        ("time_zone", "+05:00"),
        ("myrr_no_such_variable", "1"),
        ("sql_mode", "PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION"),
    ];
    r.backfill(server_backfill(1, "myrr_bf", &vars, &[7]));
    r.exchange(1, 100, execute(7, 1, "one"));
    r.exchange(1, 200, execute(7, 2, "two"));
    r.exchange(
        1,
        300,
        query("INSERT INTO t VALUES (3, @@session.time_zone)"),
    );
    r.exchange(1, 400, query("INSERT INTO t VALUES (4, 'a' || 'b')"));
    r.end(1, 500);
    let dir = tempdir();
    r.write(&dir.join("bf.myrr"));
    let out = dir.join("bf.out.myrr");
    let o = replay_against(
        &dir.join("bf.myrr"),
        &db().candidate_url,
        &out,
        &["--scale", "2", "--json"],
    );
    let s = summary(&o);
    // Each clone did it all: two of every row.
    assert_eq!(
        rows("myrr_bf"),
        "1\tone\n1\tone\n2\ttwo\n2\ttwo\n3\t+05:00\n3\t+05:00\n4\tab\n4\tab\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["skipped"], 0, "{s}");
    let b = &s["backfill"];
    assert_eq!(b["sessions"], 2, "{s}");
    assert_eq!(b["statements"], 2, "{s}");
    assert_eq!(b["statements_failed"], 0, "{s}");
    assert_eq!(b["variables"], 4, "{s}");
    assert_eq!(b["variables_rejected"], 2, "{s}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("myrr_no_such_variable"), "{stderr}");
    // The replay run keeps the backfill (once, for clone 0's session), so that it replays
    // as the recording does.
    let events = read_events(&out);
    let kept: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Backfill(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].statements, [insert(7)]);
}

/// Statement 8's types were bound before the recording and its EXECUTEs carry none: the
/// replay cannot send them (the candidate's copy has no types), so they are skipped as
/// TypesNotSent — unlike statement 7's, whose first EXECUTE sends types. The JSON summary
/// counts skips by reason.
#[test]
fn an_execute_without_types_is_skipped_and_skips_are_counted_by_reason() {
    let _serial = serial();
    fresh_table("myrr_bf_types");
    let mut r = Recording::default();
    r.start(1, 0, true, Some("myrr_bf_types"));
    r.backfill(server_backfill(1, "myrr_bf_types", &[], &[7, 8]));
    r.exchange(1, 100, execute(7, 1, "typed"));
    // Types bound by this replay's first EXECUTE of 7: sent as recorded.
    r.exchange(1, 200, execute_without_types(7, 2, "kept"));
    r.exchange(1, 300, execute_without_types(8, 9, "untyped"));
    r.exchange(1, 400, execute_without_types(8, 10, "untyped"));
    // A statement the capture knew nothing of.
    r.exchange(
        1,
        500,
        Cmd::Execute {
            stmt_id: 99,
            flags: 0,
            params: vec![],
            prepare_seen: false,
            raw_params: vec![0, 1, 3, 0, 1, 0, 0, 0],
        },
    );
    r.end(1, 600);
    let dir = tempdir();
    r.write(&dir.join("types.myrr"));
    let out = dir.join("types.out.myrr");
    let o = replay_against(
        &dir.join("types.myrr"),
        &db().candidate_url,
        &out,
        &["--json"],
    );
    let s = summary(&o);
    assert_eq!(rows("myrr_bf_types"), "1\ttyped\n2\tkept\n");
    let mut xs: Vec<_> = exchanges_by_key(&read_events(&out)).into_values().collect();
    xs.sort_by_key(|x| x.seq);
    let answers: Vec<_> = xs.iter().map(|x| x.response.clone()).collect();
    let ok = |r: &Response| matches!(r, Response::Ok(_));
    assert!(ok(&answers[0]) && ok(&answers[1]), "{answers:?}");
    assert_eq!(
        answers[2..],
        [
            Response::Skipped(SkipReason::TypesNotSent),
            Response::Skipped(SkipReason::TypesNotSent),
            Response::Skipped(SkipReason::UnknownStatement),
        ]
    );
    assert_eq!(s["skipped"], 3, "{s}");
    let by = &s["skipped_by_reason"];
    assert_eq!(by["types_not_sent"], 2, "{s}");
    assert_eq!(by["unknown_statement"], 1, "{s}");
    for zero in ["filtered", "unsupported", "not_connected"] {
        assert_eq!(by[zero], 0, "{zero}: {s}");
    }
    // The text summary says why, and what to do.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "2 types_not_sent: {}",
            SkipReason::TypesNotSent.explain()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 unknown_statement: "), "{stderr}");
}

/// A recording with a mid-stream session whose database is unknown (no handshake, no
/// backfill), and a full session that writes.
fn without_db(path: &Path, database: &str, mid_stream_at_us: u64) {
    let mut r = Recording::default();
    r.start(1, 0, false, Some(database));
    r.exchange(1, 100, query("INSERT INTO t VALUES (1, 'full')"));
    r.start(2, mid_stream_at_us, true, None);
    r.exchange(
        2,
        mid_stream_at_us + 100,
        query(&format!(
            "INSERT INTO {database}.t VALUES (2, 'mid-stream')"
        )),
    );
    r.end(1, mid_stream_at_us + 200);
    r.end(2, mid_stream_at_us + 200);
    r.write(path);
}

/// Against a target URL without a database and without --default-db, a mid-stream session
/// of unknown database is refused before anything is sent: exit 2, a message naming
/// --default-db, the candidate untouched. With --default-db it replays.
#[test]
fn mid_stream_sessions_without_a_database_are_refused_before_anything_is_sent() {
    let _serial = serial();
    fresh_table("myrr_bf_nodb");
    let dir = tempdir();
    let rec = dir.join("nodb.myrr");
    without_db(&rec, "myrr_bf_nodb", 1_000);
    let out = dir.join("nodb.out.myrr");
    let o = replay_against(&rec, &db().candidate_url, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--default-db"), "{stderr}");
    assert!(
        stderr.contains("1 mid-stream session(s) have no database (e.g. session 2 from 10.0.0.9:40002, user myrr)"),
        "{stderr}"
    );
    assert_eq!(rows("myrr_bf_nodb"), "", "nothing may reach the target");
    assert!(!out.exists(), "no replay run is written");

    let o = replay_against(
        &rec,
        &db().candidate_url,
        &out,
        &["--default-db", "myrr_bf_nodb"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(rows("myrr_bf_nodb"), "1\tfull\n2\tmid-stream\n");
}

/// One beyond the reach of the check before the replay (it reads the recording's first
/// 10 s) stops the replay when the dispatcher meets it, with the same error; its statements
/// are not sent.
#[test]
fn a_later_mid_stream_session_without_a_database_stops_the_replay() {
    let _serial = serial();
    fresh_table("myrr_bf_late");
    let dir = tempdir();
    let rec = dir.join("late.myrr");
    without_db(&rec, "myrr_bf_late", 30_000_000);
    let out = dir.join("late.out.myrr");
    let o = replay_against(&rec, &db().candidate_url, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--default-db"), "{stderr}");
    assert!(stderr.contains("Met during the replay"), "{stderr}");
    assert!(
        !rows("myrr_bf_late").contains("mid-stream"),
        "the refused session's statement was sent"
    );
}
