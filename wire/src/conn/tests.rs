//! Byte fixtures for the connection decoder: a whole conversation (greeting, login, text and
//! binary result sets, prepared statements, errors, multi-results, compression) must decode
//! to the same events however its messages are split, and truncated or impossible input must
//! not panic.

use std::sync::Arc;

use myrr_recording::{Column, Command, Exchange, Param, Response, Value};

use super::results::{COLUMN_SETS, COLUMN_SET_BYTES};
use super::*;
use crate::framing::{compressed_frame, plain};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

fn lenenc_str(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s);
    v
}

fn greeting(caps: u32) -> Vec<u8> {
    let mut p = Vec::new();
    crate::handshake::Greeting {
        capabilities: caps,
        ..Default::default()
    }
    .encode(&mut p);
    p
}

fn login(caps: u32, user: &[u8], db: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    crate::handshake::Login {
        capabilities: caps,
        user,
        database: Some(db),
        ..Default::default()
    }
    .encode(&mut p);
    p
}

fn ok(affected: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0, affected, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn eof(status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p
}

fn err(code: u16, msg: &[u8]) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(b"#42S02");
    p.extend_from_slice(msg);
    p
}

fn coldef(name: &[u8], t: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for s in [&b"def"[..], b"db", b"t", b"t", name, name] {
        p.extend(lenenc_str(s));
    }
    p.push(0x0c);
    p.extend_from_slice(&33u16.to_le_bytes());
    p.extend_from_slice(&11u32.to_le_bytes());
    p.push(t);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

/// A conversation as (direction, packets of one write).
fn conversation(caps: u32) -> Vec<(Direction, Vec<u8>)> {
    let mut v = vec![
        (S, plain(0, &greeting(caps))),
        (C, plain(1, &login(caps, b"app", b"shop"))),
        (S, plain(2, &ok(0, 2))),
    ];
    // SELECT with a text result set: 2 columns, 2 rows (one NULL).
    v.push((C, plain(0, b"\x03SELECT id, name FROM t")));
    let mut r = plain(1, &[2]);
    r.extend(plain(2, &coldef(b"id", 3)));
    r.extend(plain(3, &coldef(b"name", 0xfd)));
    r.extend(plain(4, &eof(2)));
    r.extend(plain(5, b"\x011\x03pen"));
    r.extend(plain(6, b"\x012\xfb"));
    r.extend(plain(7, &eof(2)));
    v.push((S, r));
    // An error.
    v.push((C, plain(0, b"\x03SELECT * FROM nope")));
    v.push((S, plain(1, &err(1146, b"Table 'nope' doesn't exist"))));
    // Multi-results: an OK with MORE_RESULTS, then a result set.
    v.push((C, plain(0, b"\x03UPDATE t SET a=1; SELECT 1")));
    let mut r = plain(1, &ok(3, 0x0a));
    r.extend(plain(2, &[1]));
    r.extend(plain(3, &coldef(b"1", 8)));
    r.extend(plain(4, &eof(2)));
    r.extend(plain(5, b"\x011"));
    r.extend(plain(6, &eof(2)));
    v.push((S, r));
    // Prepare with one parameter and one column, then execute with a binary row.
    v.push((C, plain(0, b"\x16SELECT name FROM t WHERE id = ?")));
    let mut r = plain(1, &[0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend(plain(2, &coldef(b"?", 0xfd)));
    r.extend(plain(3, &eof(2)));
    r.extend(plain(4, &coldef(b"name", 0xfd)));
    r.extend(plain(5, &eof(2)));
    v.push((S, r));
    let mut exec = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0];
    exec.extend_from_slice(&5i64.to_le_bytes());
    v.push((C, plain(0, &exec)));
    let mut r = plain(1, &[1]);
    r.extend(plain(2, &coldef(b"name", 0xfd)));
    r.extend(plain(3, &eof(2)));
    r.extend(plain(4, b"\x00\x00\x04lamp"));
    r.extend(plain(5, &eof(2)));
    v.push((S, r));
    v.push((C, plain(0, &[0x19, 7, 0, 0, 0])));
    v.push((C, plain(0, &[0x0e])));
    v.push((S, plain(1, &ok(0, 2))));
    v.push((C, plain(0, &[0x01])));
    v
}

const CAPS: u32 = caps::LONG_PASSWORD
    | caps::CONNECT_WITH_DB
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::MULTI_STATEMENTS;

/// Decodes a conversation, delivering message `split.0` in two pieces cut at `split.1`.
fn decode(
    conv: &[(Direction, Vec<u8>)],
    split: Option<(usize, usize)>,
    syn: bool,
) -> (Vec<Event>, DecodeStats) {
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, syn, 1 << 20);
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        match split {
            Some((m, at)) if m == i => {
                conn.data(*dir, &bytes[..at], 0, &mut ctx);
                conn.data(*dir, &bytes[at..], 0, &mut ctx);
            }
            _ => conn.data(*dir, bytes, 0, &mut ctx),
        }
    }
    conn.end(EndReason::Closed, 0, &mut ctx);
    (events, stats)
}

fn exchanges(events: &[Event]) -> Vec<&Exchange> {
    events.iter().filter_map(Event::as_exchange).collect()
}

#[test]
fn conversation_decodes_fully() {
    let (events, stats) = decode(&conversation(CAPS), None, true);
    assert!(stats.undecodable.is_empty(), "{:?}", stats.undecodable);
    let Event::SessionStart(s) = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(s.user.as_deref(), Some(&b"app"[..]));
    assert_eq!(s.db.as_deref(), Some(&b"shop"[..]));
    assert_eq!(s.server_version.as_deref(), Some(&b"10.11.19-MariaDB"[..]));
    assert_eq!(s.connection_id, Some(42));
    let x = exchanges(&events);
    let kinds: Vec<(&str, &str)> = x
        .iter()
        .map(|x| (x.command.name(), x.response.kind_name()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("query", "rows"),
            ("query", "err"),
            ("query", "ok"),
            ("prepare", "prepared"),
            ("execute", "rows"),
            ("close_stmt", "none"),
            ("ping", "ok"),
            ("quit", "none"),
        ]
    );
    assert_eq!(x[0].total_rows(), 2);
    assert_eq!(x[2].more.len(), 1);
    assert_eq!(x[2].total_rows(), 1);
    match &x[4].command {
        Command::Execute {
            params,
            prepare_seen,
            ..
        } => {
            assert!(prepare_seen);
            assert_eq!(params[0].value, Value::Int(5));
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(x[4].total_rows(), 1);
    assert!(
        matches!(events.last(), Some(Event::SessionEnd(e)) if e.reason == EndReason::Quit && e.login == Login::Ok)
    );
}

#[test]
fn every_split_point_decodes_the_same() {
    let conv = conversation(CAPS);
    let (want, _) = decode(&conv, None, true);
    for (i, (_, bytes)) in conv.iter().enumerate() {
        for at in 1..bytes.len() {
            let (got, _) = decode(&conv, Some((i, at)), true);
            assert_eq!(got, want, "message {i} split at {at}");
        }
    }
}

#[test]
fn compressed_conversation_every_split() {
    let caps = CAPS | caps::COMPRESS;
    let mut conv = conversation(caps);
    // After the login OK everything travels in compressed frames, some deflated.
    for (i, (_, bytes)) in conv.iter_mut().enumerate().skip(3) {
        *bytes = compressed_frame(0, bytes, i % 2 == 0);
    }
    let (want, stats) = decode(&conv, None, true);
    assert!(stats.undecodable.is_empty(), "{:?}", stats.undecodable);
    assert_eq!(exchanges(&want).len(), 8);
    assert!(matches!(&want[0], Event::SessionStart(s) if s.compressed));
    for (i, (_, bytes)) in conv.iter().enumerate() {
        for at in 1..bytes.len() {
            let (got, _) = decode(&conv, Some((i, at)), true);
            assert_eq!(got, want, "message {i} split at {at}");
        }
    }
}

#[test]
fn mid_stream_attach_at_first_command() {
    let conv = conversation(CAPS);
    // The capture starts after the login.
    let (events, _) = decode(&conv[3..], None, false);
    assert!(matches!(&events[0], Event::SessionStart(s) if s.mid_stream && s.user.is_none()));
    let x = exchanges(&events);
    assert_eq!(x.len(), 8);
    assert_eq!(x[0].total_rows(), 2);
}

#[test]
fn truncated_and_impossible_input_does_not_panic() {
    let conv = conversation(CAPS);
    let all: Vec<(Direction, Vec<u8>)> = conv.clone();
    // Every prefix of every message, delivered alone.
    for (i, (dir, bytes)) in all.iter().enumerate() {
        for cut in 0..bytes.len() {
            let mut c = conv[..i].to_vec();
            c.push((*dir, bytes[..cut].to_vec()));
            let _ = decode(&c, None, true);
        }
    }
    // Impossible lengths and garbage in every phase.
    let junk: [&[u8]; 5] = [
        &[0xff, 0xff, 0xff, 0x00, 0x03],
        &[0x05, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff],
        &[0x01, 0, 0, 0, 0xfc],
        &[0x09, 0, 0, 1, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x03, 0, 0, 0, 0x17, 0xff, 0xff],
    ];
    for j in junk {
        for at in 0..conv.len() {
            for dir in [C, S] {
                let mut c = conv.clone();
                c.insert(at, (dir, j.to_vec()));
                let _ = decode(&c, None, true);
                let _ = decode(&c, None, false);
            }
        }
    }
}

#[test]
fn gap_in_a_result_resumes_at_the_next_command() {
    let conv = conversation(CAPS);
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        if i == 4 {
            // Half of the first result set, then a loss.
            conn.data(*dir, &bytes[..bytes.len() / 2], 0, &mut ctx);
            conn.gap(*dir, 100, 0, &mut ctx);
            continue;
        }
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    conn.end(EndReason::Closed, 0, &mut ctx);
    let x = exchanges(&events);
    assert_eq!(x.len(), 8, "every command still recorded");
    assert!(matches!(&x[0].response, Response::Rows(rs) if !rs.complete));
    assert_eq!(
        x[1].response.kind_name(),
        "err",
        "decoding resumed at the next command"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Gap(g) if g.bytes == 100)));
}

/// Found by fuzzing: a command with no answer sent while an earlier one still waits must not
/// overtake it.
#[test]
fn exchanges_keep_session_order_behind_pending_answers() {
    let conv = conversation(CAPS);
    let mut c = conv[..3].to_vec();
    c.push((C, plain(0, b"\x03SELECT 1")));
    c.push((C, plain(0, &[0x19, 9, 0, 0, 0]))); // close, no answer, sent before the SELECT's answer
    c.push((S, plain(1, &ok(0, 2))));
    c.push((C, plain(0, &[0x01])));
    let (events, _) = decode(&c, None, true);
    let seqs: Vec<u64> = exchanges(&events).iter().map(|x| x.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}

/// A text query answered by one result set with the given column definitions and one row.
fn query_with_columns(conv: &mut Vec<(Direction, Vec<u8>)>, defs: &[Vec<u8>]) {
    conv.push((C, plain(0, b"\x03SELECT")));
    let mut r = plain(1, &[defs.len() as u8]);
    let mut seq = 2;
    for d in defs {
        r.extend(plain(seq, d));
        seq += 1;
    }
    r.extend(plain(seq, &eof(2)));
    let mut row = Vec::new();
    for _ in defs {
        row.extend(lenenc_str(b"7"));
    }
    r.extend(plain(seq + 1, &row));
    r.extend(plain(seq + 2, &eof(2)));
    conv.push((S, r));
}

fn result_columns(x: &Exchange) -> &Arc<[Column]> {
    match &x.response {
        Response::Rows(rs) => &rs.columns,
        other => panic!("not rows: {other:?}"),
    }
}

#[test]
fn answers_with_the_same_column_definitions_share_one_parsed_set() {
    let mut conv = conversation(CAPS)[..3].to_vec();
    let a = vec![coldef(b"id", 3), coldef(b"name", 0xfd)];
    let b = vec![coldef(b"id", 3), coldef(b"title", 0xfd)];
    let malformed = vec![b"\x03def".to_vec()];
    for defs in [&a, &b, &a, &malformed, &malformed] {
        query_with_columns(&mut conv, defs);
    }
    let (events, stats) = decode(&conv, None, true);
    let xs = exchanges(&events);
    assert_eq!(xs.len(), 5);
    let cols: Vec<_> = xs.iter().map(|x| result_columns(x)).collect();
    let names = |c: &Arc<[Column]>| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(cols[0]), [b"id".to_vec(), b"name".to_vec()]);
    assert_eq!(names(cols[1]), [b"id".to_vec(), b"title".to_vec()]);
    assert!(
        Arc::ptr_eq(cols[0], cols[2]),
        "the same definitions: one set"
    );
    assert!(!Arc::ptr_eq(cols[0], cols[1]));
    assert_eq!(cols[1][0].column_type, 3);
    // A definition that does not parse is counted with every answer that carries it.
    assert_eq!(
        stats.undecodable.get("malformed column definition"),
        Some(&2)
    );
    // Each is kept with its place: in the server's stream, within what the server sent, and
    // the second one later than the first.
    let server_bytes: usize = conv
        .iter()
        .filter(|(d, _)| *d == S)
        .map(|(_, b)| b.len())
        .sum();
    let places: Vec<_> = stats
        .anomalies
        .iter()
        .map(|a| (a.direction, a.offset))
        .collect();
    assert_eq!(places.len(), 2, "{places:?}");
    assert!(places
        .iter()
        .all(|&(d, o)| d == S && o > 0 && o <= server_bytes as u64));
    assert!(places[0].1 < places[1].1, "{places:?}");
    assert!(stats.anomalies[0].session.is_some());
    // The rows were read against the shared columns.
    for x in &xs {
        match &x.response {
            Response::Rows(rs) => assert_eq!((rs.rows, rs.complete), (1, true)),
            other => panic!("{other:?}"),
        }
    }
}

fn nowhere() -> AnomalyAt {
    AnomalyAt {
        anomaly: Anomaly::MalformedColumnDefinition,
        session: None,
        direction: Direction::ServerToClient,
        offset: 0,
    }
}

#[test]
fn remembered_column_sets_stay_bounded() {
    let mut sets = ColumnSets::default();
    let mut stats = DecodeStats::default();
    for i in 0..1000u32 {
        sets.begin();
        sets.push(&coldef(format!("c{i}").as_bytes(), 3));
        let cols = sets.finish(&mut stats, nowhere());
        assert_eq!(cols[0].name, format!("c{i}").into_bytes());
        assert!(sets.known.len() <= COLUMN_SETS);
        assert!(sets.known_bytes <= COLUMN_SET_BYTES);
    }
    // A set larger than the whole budget is parsed but not kept.
    sets.begin();
    for _ in 0..COLUMN_SET_BYTES / 40 {
        sets.push(&coldef(b"a_rather_long_column_name", 3));
    }
    let cols = sets.finish(&mut stats, nowhere());
    assert_eq!(cols.len(), COLUMN_SET_BYTES / 40);
    assert!(sets.known_bytes <= COLUMN_SET_BYTES);
}

/// Two EXECUTEs of statement 5 (`INSERT … VALUES (?, ?)`), each answered with an OK; the
/// second sends no types (the client sent them already), as libraries do.
type Conversation = Vec<(Direction, Vec<u8>)>;

fn executes_of_statement_5() -> (Conversation, Vec<Vec<Param>>) {
    let params: Vec<Vec<Param>> = (0..2)
        .map(|i| {
            vec![
                Param {
                    column_type: 8, // LONGLONG
                    unsigned: false,
                    value: Value::Int(i),
                },
                Param {
                    column_type: 253, // VAR_STRING
                    unsigned: false,
                    value: Value::Bytes(format!("row {i}").into_bytes()),
                },
            ]
        })
        .collect();
    let mut sent_types = Vec::new();
    let mut conv = Vec::new();
    for p in &params {
        let cmd = Command::Execute {
            stmt_id: 5,
            flags: 0,
            params: p.clone(),
            prepare_seen: true,
            raw_params: vec![],
        };
        let mut b = Vec::new();
        crate::command::encode(&cmd, None, &mut sent_types, &mut b).unwrap();
        conv.push((C, plain(0, &b)));
        conv.push((S, plain(1, &ok(1, 2))));
    }
    (conv, params)
}

fn decode_backfilled(
    conv: &[(Direction, Vec<u8>)],
    backfill: Option<Backfill>,
) -> (Vec<Event>, DecodeStats) {
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 7, false, 1 << 20);
    if let Some(b) = backfill {
        conn.backfill(b);
    }
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (dir, bytes) in conv {
        conn.data(*dir, bytes, 10, &mut ctx);
    }
    conn.end(EndReason::Closed, 20, &mut ctx);
    (events, stats)
}

fn statement_5_backfill() -> Backfill {
    Backfill {
        source: myrr_recording::BackfillSource::Server { connection_id: 9 },
        user: Some(b"app".to_vec()),
        db: Some(b"shop".to_vec()),
        statements: vec![myrr_recording::KnownStatement {
            id: 5,
            sql: b"INSERT INTO t VALUES (?, ?)".to_vec(),
            params: 2,
        }],
        ..Backfill::default()
    }
}

#[test]
fn a_backfilled_session_decodes_executes_of_statements_prepared_before_the_capture() {
    let (conv, params) = executes_of_statement_5();

    // Without the server's view: both EXECUTEs are kept undecoded, and counted.
    let (events, stats) = decode_backfilled(&conv, None);
    assert_eq!(stats.executes_unprepared, 2);
    assert_eq!(stats.sessions_backfilled, 0);
    for x in exchanges(&events) {
        assert!(
            matches!(&x.command, Command::Execute { prepare_seen: false, params, .. } if params.is_empty())
        );
    }

    // With it: the session starts as that user in that database, the backfill follows the
    // start, and both EXECUTEs decode (the second with the types the first bound).
    let (events, stats) = decode_backfilled(&conv, Some(statement_5_backfill()));
    assert_eq!(stats.executes_unprepared, 0);
    assert_eq!(stats.sessions_backfilled, 1);
    assert!(matches!(&events[0], Event::SessionStart(s)
        if s.mid_stream && s.user.as_deref() == Some(b"app") && s.db.as_deref() == Some(b"shop")));
    let Event::Backfill(b) = &events[1] else {
        panic!("backfill right after the start: {:?}", events[1]);
    };
    assert_eq!((b.session, b.at_us, b.statements.len()), (1, 7, 1));
    let got: Vec<_> = exchanges(&events)
        .iter()
        .map(|x| match &x.command {
            Command::Execute { params, .. } => params.clone(),
            c => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(got, params);
}

#[test]
fn a_backfilled_statement_whose_types_came_before_the_capture_stays_raw() {
    let (conv, _) = executes_of_statement_5();
    // The capture starts at the second EXECUTE, which sends no types.
    let (events, stats) = decode_backfilled(&conv[2..], Some(statement_5_backfill()));
    assert_eq!(stats.executes_unprepared, 0);
    let x = exchanges(&events);
    assert_eq!(x.len(), 1);
    assert!(
        matches!(&x[0].command, Command::Execute { prepare_seen: true, params, raw_params, .. }
            if params.is_empty() && !raw_params.is_empty()),
        "{:?}",
        x[0].command
    );
}

#[test]
fn a_backfill_is_dropped_when_the_handshake_is_in_the_capture() {
    let conv = conversation(CAPS);
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, false, 1 << 20);
    conn.backfill(statement_5_backfill());
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (dir, bytes) in &conv {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    assert_eq!(stats.sessions_backfilled, 0);
    assert!(!events.iter().any(|e| matches!(e, Event::Backfill(_))));
    assert!(matches!(&events[0], Event::SessionStart(s) if !s.mid_stream));
}

fn ssl_request(caps: u32) -> Vec<u8> {
    let mut p = (caps | caps::SSL).to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p
}

/// A TLS conversation as the capture sees it: the greeting and SSLRequest in the clear, then
/// TLS records; and what the TLS session carries, the login onwards.
fn tls_conversation(caps: u32) -> (Conversation, Conversation) {
    let caps = caps | caps::SSL;
    let wire = vec![
        (S, plain(0, &greeting(caps))),
        (C, plain(1, &ssl_request(caps))),
        // A ClientHello's record header and the start of an application data record.
        (C, vec![0x16, 3, 1, 0, 4, 1, 0, 0, 0]),
        (S, vec![0x17, 3, 3, 0, 9, 1, 2, 3]),
    ];
    let mut inside = vec![
        (C, plain(2, &login(caps, b"app", b"shop"))),
        (S, plain(3, &ok(0, 2))),
    ];
    inside.extend(conversation(caps).into_iter().skip(3));
    (wire, inside)
}

/// Feeds `wire`, then (when `read` says so) switches to plaintext and feeds `inside`.
fn decode_tls(
    wire: &[(Direction, Vec<u8>)],
    inside: Option<&Conversation>,
    syn: bool,
) -> (Vec<Event>, DecodeStats) {
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, syn, 1 << 20);
    conn.expect_tls_plaintext();
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (dir, bytes) in wire {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    if let Some(inside) = inside {
        assert!(conn.tls_plaintext());
        for (dir, bytes) in inside {
            conn.data(*dir, bytes, 0, &mut ctx);
        }
    }
    conn.end(EndReason::Closed, 0, &mut ctx);
    (events, stats)
}

#[test]
fn a_tls_session_is_decoded_from_its_plaintext_with_its_login() {
    let (wire, inside) = tls_conversation(CAPS);
    let (events, stats) = decode_tls(&wire, Some(&inside), true);
    let Event::SessionStart(s) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert!(s.encrypted && !s.mid_stream, "{s:?}");
    assert_eq!(s.user.as_deref(), Some(&b"app"[..]));
    assert_eq!(s.db.as_deref(), Some(&b"shop"[..]));
    // Every command of the plaintext conversation, as in the clear.
    let (clear, _) = decode(&conversation(CAPS), None, true);
    assert_eq!(exchanges(&events).len(), exchanges(&clear).len());
    assert_eq!(exchanges(&events)[0].total_rows(), 2);
    assert!(matches!(events.last(), Some(Event::SessionEnd(e)) if e.login == Login::Ok));
    assert_eq!((stats.sessions_tls_read, stats.sessions_encrypted), (1, 0));
    assert!(stats.undecodable.is_empty(), "{:?}", stats.undecodable);
}

#[test]
fn a_tls_session_without_plaintext_is_counted_encrypted() {
    let (wire, _) = tls_conversation(CAPS);
    // Waiting for the plaintext until the end: then it is an encrypted session, as without
    // `expect_tls_plaintext`.
    let (events, stats) = decode_tls(&wire, None, true);
    assert!(matches!(&events[0], Event::SessionStart(s) if s.encrypted && s.user.is_none()));
    assert!(matches!(events.last(), Some(Event::SessionEnd(e)) if e.login == Login::Encrypted));
    assert_eq!((stats.sessions_tls_read, stats.sessions_encrypted), (0, 1));
    assert!(exchanges(&events).is_empty());
    // Said at once, the same.
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
    conn.expect_tls_plaintext();
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (dir, bytes) in &wire[..2] {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    assert!(conn.awaits_tls() && ctx.events.is_empty());
    conn.tls_unreadable(&mut ctx);
    assert!(
        !conn.tls_plaintext(),
        "an encrypted session cannot turn readable"
    );
    assert_eq!(ctx.stats.sessions_encrypted, 1);
    assert!(matches!(&ctx.events[0], Event::SessionStart(s) if s.encrypted));
}

#[test]
fn a_tls_session_open_before_the_capture_attaches_at_its_first_plaintext_command() {
    let (wire, inside) = tls_conversation(CAPS);
    // Only TLS records on the wire (the capture began after the handshake); the plaintext
    // from the login's answer on.
    let (events, stats) = decode_tls(&wire[2..], Some(&inside[2..].to_vec()), false);
    assert!(matches!(&events[0], Event::SessionStart(s) if s.encrypted && s.mid_stream));
    assert_eq!(exchanges(&events).len(), 8);
    assert_eq!(stats.sessions_tls_read, 1);
}

/// Decodes a conversation with a capture's sampler; the events and the sampler.
fn decode_sampled(conv: &[(Direction, Vec<u8>)]) -> (Vec<Event>, ShapeSampler) {
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut samples = ShapeSampler::new();
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: Some(&mut samples),
    };
    for (dir, bytes) in conv {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    conn.end(EndReason::Closed, 0, &mut ctx);
    (events, samples)
}

#[test]
fn a_capture_keeps_the_first_rows_of_text_and_binary_answers_after_their_exchange() {
    let (events, samples) = decode_sampled(&conversation(CAPS));
    let rows: Vec<(usize, &myrr_recording::RowSample)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Rows(r) => Some((i, r)),
            _ => None,
        })
        .collect();
    // The text SELECT (seq 0) and the EXECUTE (seq 4); not the multi-result's second result,
    // nor the error.
    let seqs: Vec<u64> = rows.iter().map(|(_, r)| r.seq).collect();
    assert_eq!(seqs, [0, 4], "{rows:?}");
    for (i, r) in &rows {
        // Right after its exchange.
        let x = events[i - 1]
            .as_exchange()
            .expect("an exchange before the sample");
        assert_eq!((x.session, x.seq), (r.session, r.seq));
        assert_eq!(r.at_us, x.start_us);
        assert_eq!(r.why, myrr_recording::SampleReason::FirstOfShape);
    }
    assert_eq!(
        rows[0].1.rows,
        vec![
            vec![Value::Bytes(b"1".to_vec()), Value::Bytes(b"pen".to_vec())],
            vec![Value::Bytes(b"2".to_vec()), Value::Null],
        ]
    );
    assert_eq!(rows[1].1.rows, vec![vec![Value::Bytes(b"lamp".to_vec())]]);
    assert_eq!(samples.samples, 2);
}

#[test]
fn a_capture_keeps_three_answers_per_shape_and_nothing_without_a_sampler() {
    let mut conv = conversation(CAPS);
    conv.truncate(3);
    for i in 0..5u8 {
        // Same shape, other literals.
        let q = format!("\x03SELECT id FROM t WHERE id = {i}");
        conv.push((C, plain(0, q.as_bytes())));
        let mut r = plain(1, &[1]);
        r.extend(plain(2, &coldef(b"id", 3)));
        r.extend(plain(3, &eof(2)));
        r.extend(plain(4, &[1, b'0' + i]));
        r.extend(plain(5, &eof(2)));
        conv.push((S, r));
    }
    let (events, samples) = decode_sampled(&conv);
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Rows(r) => Some(r.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(samples.samples, 3);
    let (plain_events, _) = decode(&conv, None, true);
    assert!(!plain_events.iter().any(|e| matches!(e, Event::Rows(_))));
}

#[test]
fn a_replaying_client_takes_the_rows_of_the_last_answer() {
    let conv = conversation(CAPS);
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
    conn.keep_rows = true;
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    for (dir, bytes) in &conv[..5] {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    let kept = conn.take_kept().expect("rows kept");
    assert_eq!(kept.total_rows, 2);
    let s = kept.sample(1, 0, 0, myrr_recording::SampleReason::DiffersFromRecorded);
    assert_eq!(s.rows.len(), 2);
    assert_eq!(s.rows[1], vec![Value::Bytes(b"2".to_vec()), Value::Null]);
    // The error that follows has no rows: nothing is left over from the answer before.
    for (dir, bytes) in &conv[5..7] {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    assert!(conn.take_kept().is_none());
    // Keeping turned off between two answers: the first's rows are not taken as the second's.
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 20);
    conn.keep_rows = true;
    for (dir, bytes) in &conv[..5] {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    conn.keep_rows = false;
    for (dir, bytes) in &conv[5..13] {
        conn.data(*dir, bytes, 0, &mut ctx);
    }
    assert!(conn.take_kept().is_none());
    assert!(!ctx.events.iter().any(|e| matches!(e, Event::Rows(_))));
}

#[test]
fn rows_that_do_not_parse_leave_no_sample() {
    let mut conv = conversation(CAPS);
    conv.truncate(3);
    conv.push((C, plain(0, b"\x03SELECT id, name FROM t")));
    let mut r = plain(1, &[2]);
    r.extend(plain(2, &coldef(b"id", 3)));
    r.extend(plain(3, &coldef(b"name", 0xfd)));
    r.extend(plain(4, &eof(2)));
    // One value where the columns say two.
    r.extend(plain(5, b"\x011"));
    r.extend(plain(6, &eof(2)));
    conv.push((S, r));
    let (events, samples) = decode_sampled(&conv);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Rows(_))),
        "{events:?}"
    );
    assert_eq!(samples.samples, 0);
    assert_eq!(exchanges(&events).len(), 1);
}
