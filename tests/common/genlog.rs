//! The server's general log as the ground truth of a live capture: every command it received
//! on a captured connection must be in the recording, in order, with its SQL (and for
//! EXECUTE, typed parameters that expand to the statement the server logged).

use std::collections::HashMap;

use myrr_recording::{Command as Cmd, Event, Exchange, Response, Value};

use super::sql;

pub struct Logged {
    pub kind: String,
    pub argument: String,
}

/// The general log, per connection id, in order.
pub fn general_log(port: u16) -> HashMap<u32, Vec<Logged>> {
    let out = sql(
        port,
        "SELECT thread_id, command_type, argument FROM mysql.general_log",
    );
    let mut m: HashMap<u32, Vec<Logged>> = HashMap::new();
    for line in out.lines() {
        let mut f = line.splitn(3, '\t');
        let (Some(id), Some(kind), arg) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // `mariadb -B` escapes NUL, newline, tab and backslash.
        let unescape = |s: &str| {
            let mut out = String::new();
            let mut it = s.chars();
            while let Some(c) = it.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match it.next() {
                    Some('0') => out.push('\0'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            }
            out
        };
        m.entry(id.parse().unwrap()).or_default().push(Logged {
            kind: kind.to_string(),
            argument: unescape(arg.unwrap_or("")),
        });
    }
    m
}

/// The statement the server logs for an EXECUTE: the PREPARE text with each `?` replaced.
pub fn expand(sql: &str, params: &[Value]) -> String {
    let mut out = String::new();
    let mut it = params.iter();
    for c in sql.chars() {
        if c == '?' {
            match it.next() {
                Some(Value::Int(i)) => out.push_str(&i.to_string()),
                Some(Value::UInt(u)) => out.push_str(&u.to_string()),
                Some(Value::Bytes(b)) => {
                    out.push('\'');
                    out.push_str(&String::from_utf8_lossy(b));
                    out.push('\'');
                }
                Some(Value::Null) => out.push_str("NULL"),
                // As MariaDB logs a bound DATETIME.
                Some(Value::Date(y, mo, d, h, mi, s, us)) => {
                    out.push_str(&format!(
                        "TIMESTAMP'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"
                    ));
                    if *us != 0 {
                        out.push_str(&format!(".{us:06}"));
                    }
                    out.push('\'');
                }
                Some(v) => out.push_str(&format!("{v:?}")),
                None => out.push('?'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn logged_kind(x: &Exchange) -> &'static str {
    match x.command {
        Cmd::Query { .. } => "Query",
        Cmd::InitDb { .. } => "Init DB",
        Cmd::Prepare { .. } => "Prepare",
        Cmd::Execute { .. } => "Execute",
        Cmd::CloseStmt { .. } => "Close stmt",
        Cmd::ResetStmt { .. } => "Reset stmt",
        Cmd::Quit => "Quit",
        Cmd::Ping => "Ping",
        Cmd::FieldList { .. } => "Field List",
        Cmd::ChangeUser { .. } => "Change user",
        _ => "?",
    }
}

/// What [`check_against_log`] compared.
#[derive(Debug, Default)]
pub struct Checked {
    /// Sessions found in the general log, and their exchanges.
    pub sessions: u64,
    pub exchanges: u64,
    pub executes: u64,
    pub kinds: HashMap<&'static str, u64>,
    /// sysbench's SELECTs whose row count is exact, of those checked.
    pub exact: (u64, u64),
    /// Every session's exchanges, by session id.
    pub by_session: HashMap<u64, Vec<Exchange>>,
    /// Every session's start.
    pub starts: HashMap<u64, myrr_recording::SessionStart>,
}

/// Compares every session of `events` whose connection the server logged with `log`
/// (assertions: the same commands in the same order, SQL, EXECUTE parameters, answers
/// present and whole, sysbench's row counts plausible). Sessions must have their handshake
/// in the capture; gaps and backfills fail the check.
pub fn check_against_log(events: &[Event], log: &HashMap<u32, Vec<Logged>>) -> Checked {
    let mut c = Checked::default();
    // Sessions by connection id, with their exchanges in order.
    let mut conn_of: HashMap<u64, u32> = HashMap::new();
    let mut exchanges: HashMap<u64, Vec<Exchange>> = HashMap::new();
    for e in events {
        match e {
            Event::SessionStart(s) => {
                assert!(!s.mid_stream, "{s:?}");
                c.starts.insert(s.session, s.clone());
                conn_of.insert(s.session, s.connection_id.expect("greeting seen"));
            }
            Event::Exchange(x) => exchanges.entry(x.session).or_default().push(x.clone()),
            Event::Gap(g) => panic!("gap in a loopback capture: {g:?}"),
            Event::SessionEnd(_) => {}
            Event::Backfill(b) => panic!("backfill without --server: {b:?}"),
            // The first rows of some answers: what the general log cannot say.
            Event::Rows(_) => {}
            Event::Label(l) => panic!("an order label in a capture: {l:?}"),
            Event::Phase(p) => panic!("a ramp phase in a capture: {p:?}"),
        }
    }
    for (session, xs) in &exchanges {
        let id = conn_of[session];
        let Some(logged) = log.get(&id) else { continue };
        let logged: Vec<&Logged> = logged.iter().filter(|l| l.kind != "Connect").collect();
        let mut prepared: HashMap<u32, String> = HashMap::new();
        // MariaDB's general log leaves out COM_PING and COM_RESET_CONNECTION (a pool's
        // checks, e.g. mysql-connector-python's).
        let xs: Vec<&Exchange> = xs
            .iter()
            .filter(|x| !matches!(x.command, Cmd::Ping | Cmd::ResetConnection))
            .collect();
        assert_eq!(
            xs.iter().map(|x| logged_kind(x)).collect::<Vec<_>>(),
            logged.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(),
            "session {session} (connection {id}): commands differ from the general log"
        );
        for (x, l) in xs.iter().zip(&logged) {
            *c.kinds.entry(logged_kind(x)).or_default() += 1;
            assert!(
                !matches!(x.response, Response::Missing(_)),
                "session {session} #{}: response missing: {x:?}",
                x.seq
            );
            if let Response::Rows(rs) = &x.response {
                assert!(rs.complete, "incomplete result: {x:?}");
            }
            match &x.command {
                Cmd::Query { sql, .. } | Cmd::Prepare { sql } => {
                    assert_eq!(
                        String::from_utf8_lossy(sql),
                        l.argument,
                        "session {session} #{}",
                        x.seq
                    );
                }
                Cmd::InitDb { db } => assert_eq!(String::from_utf8_lossy(db), l.argument),
                Cmd::Execute {
                    stmt_id,
                    params,
                    prepare_seen,
                    ..
                } => {
                    assert!(prepare_seen);
                    let values: Vec<Value> = params.iter().map(|p| p.value.clone()).collect();
                    let sql = &prepared[stmt_id];
                    assert_eq!(
                        expand(sql, &values),
                        l.argument,
                        "session {session} #{}",
                        x.seq
                    );
                    c.executes += 1;
                    // sysbench's shapes: point selects give 1 row, plain ranges 100 — fewer
                    // when another thread is between its DELETE and INSERT of a row (a CI run
                    // on a loaded machine saw 85). A decoding error would be far off, and the
                    // share of exact counts is checked below.
                    if sql.starts_with("SELECT c FROM") && sql.contains("WHERE id=?") {
                        assert!(x.total_rows() <= 1, "{sql}");
                        c.exact.0 += (x.total_rows() == 1) as u64;
                        c.exact.1 += 1;
                    }
                    if sql.starts_with("SELECT c FROM") && sql.contains("BETWEEN") {
                        assert!(
                            (50..=100).contains(&x.total_rows()),
                            "{sql}: {}",
                            x.total_rows()
                        );
                        c.exact.0 += (x.total_rows() == 100) as u64;
                        c.exact.1 += 1;
                    }
                }
                _ => {}
            }
            if let (Cmd::Prepare { sql }, Response::Prepared(p)) = (&x.command, &x.response) {
                prepared.insert(p.stmt_id, String::from_utf8_lossy(sql).into_owned());
            }
            c.exchanges += 1;
        }
        c.sessions += 1;
    }
    c.by_session = exchanges;
    c
}
