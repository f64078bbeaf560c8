//! Capturing sessions that were open before the capture started: connections that prepared
//! their statements earlier (as pools do), then a capture with and without `--server`
//! (backfill from the source's performance_schema) and with `--backfill FILE` from
//! `myrr snapshot`. The client is mysql_async, which prepares server-side (COM_STMT_PREPARE)
//! and executes with the binary protocol.

mod common;

use std::path::Path;

use common::*;
use myrr_recording::{BackfillSource, Command as Cmd, Event};
use mysql_async::prelude::Queryable;

const DB: &str = "myrr_backfill";

/// The tests share a database and capture the same port: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
const CONNECTIONS: usize = 3;
const ITERATIONS: i64 = 20;

/// Connections that prepared their statements (and executed each once, so the server has
/// their parameter types) before any capture starts.
struct App {
    rt: tokio::runtime::Runtime,
    conns: Vec<(mysql_async::Conn, Statements)>,
}

struct Statements {
    select: mysql_async::Statement,
    update: mysql_async::Statement,
    insert: mysql_async::Statement,
}

/// Opens a connection to the workload database and prepares the app's statements on it
/// (in the app's order: the server numbers them alike), executing each once.
async fn connect_and_prepare(url: &str, worker: i64) -> (mysql_async::Conn, Statements) {
    let mut c = mysql_async::Conn::from_url(format!("{url}/{DB}?prefer_socket=false"))
        .await
        .unwrap();
    if worker == 0 {
        // The first connection's statement ids sit well above where a new connection's
        // counter starts (see `reconnect_numbered_like`).
        for _ in 0..300 {
            let st = c.prep("SELECT 0").await.unwrap();
            c.close(st).await.unwrap();
        }
    }
    let s = Statements {
        select: c
            .prep("SELECT balance, note FROM accounts WHERE id = ?")
            .await
            .unwrap(),
        update: c
            .prep("UPDATE accounts SET balance = balance + ?, note = ? WHERE id = ?")
            .await
            .unwrap(),
        insert: c
            .prep("INSERT INTO events (worker, seq, amount) VALUES (?, ?, ?)")
            .await
            .unwrap(),
    };
    let _: Vec<(String, Option<String>)> = c.exec(&s.select, (worker,)).await.unwrap();
    c.exec_drop(&s.update, ("0.00", "warm", worker))
        .await
        .unwrap();
    c.exec_drop(&s.insert, (worker, -1i64, "0.00"))
        .await
        .unwrap();
    (c, s)
}

impl App {
    fn start(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conns = rt.block_on(async {
            let mut out = Vec::new();
            for worker in 0..CONNECTIONS as i64 {
                out.push(connect_and_prepare(url, worker).await);
            }
            out
        });
        Self { rt, conns }
    }

    /// Each connection works on its own rows: the end state does not depend on how the
    /// sessions interleave.
    fn work(&mut self) {
        self.rt.block_on(async {
            for i in 0..ITERATIONS {
                for (worker, (c, s)) in self.conns.iter_mut().enumerate() {
                    let worker = worker as i64;
                    let _: Vec<(String, Option<String>)> =
                        c.exec(&s.select, (worker,)).await.unwrap();
                    // A NULL now and then (its own parameter type), never first.
                    let note = (i % 3 != 1).then(|| format!("it {i}"));
                    c.exec_drop(&s.update, (format!("{}.25", i), note, worker))
                        .await
                        .unwrap();
                    c.exec_drop(&s.insert, (worker, i, format!("{i}.50")))
                        .await
                        .unwrap();
                }
            }
        });
    }

    fn close(self) {
        let Self { rt, conns } = self;
        rt.block_on(async {
            for (c, _) in conns {
                c.disconnect().await.unwrap();
            }
        });
    }
}

fn seed(port: u16) {
    sql(
        port,
        &format!(
            "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB};
             CREATE TABLE accounts (id INT PRIMARY KEY, balance DECIMAL(12,2) NOT NULL,
                note VARCHAR(64));
             INSERT INTO accounts VALUES (0, 100, NULL), (1, 100, NULL), (2, 100, NULL);
             CREATE TABLE events (worker INT, seq INT, amount DECIMAL(12,2),
                PRIMARY KEY (worker, seq));"
        ),
    );
}

/// EXECUTEs of statements the capture did not know.
fn unprepared_executes(events: &[Event]) -> usize {
    events
        .iter()
        .filter_map(Event::as_exchange)
        .filter(|x| {
            matches!(
                x.command,
                Cmd::Execute {
                    prepare_seen: false,
                    ..
                }
            )
        })
        .count()
}

fn capture_json(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary in:\n{stderr}"))
}

/// Seeds, opens the app, captures its work with `extra` capture arguments; returns the
/// capture's JSON summary and its events.
fn capture_app(dir: &Path, name: &str, extra: &[&str]) -> (serde_json::Value, Vec<Event>) {
    let db = db();
    seed(db.source_port);
    let mut app = App::start(&db.source_url);
    let out = dir.join(format!("{name}.myrr"));
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let cap = LiveCapture::start_with(db.source_port, &out, &args);
    app.work();
    let stderr = cap.stop();
    app.close();
    (capture_json(&stderr), read_events(&out))
}

#[test]
fn without_backfill_executes_of_earlier_statements_are_counted_and_warned_about() {
    let _serial = serial();
    let dir = tempdir();
    let (summary, events) = capture_app(&dir, "plain", &[]);
    let unprepared = unprepared_executes(&events) as u64;
    assert_eq!(
        unprepared,
        3 * CONNECTIONS as u64 * ITERATIONS as u64,
        "{summary}"
    );
    assert_eq!(summary["executes_unprepared"], unprepared);
    assert_eq!(summary["sessions"]["mid_stream"], CONNECTIONS as u64);
    let warning = summary["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("prepared before the capture") && warning.contains("--server"),
        "{summary}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Backfill(_))));
    // inspect says it too.
    let out = myrr()
        .arg("inspect")
        .arg(dir.join("plain.myrr"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("WARNING: {unprepared} of ")) && stderr.contains("--server"),
        "{stderr}"
    );
}

#[test]
fn with_server_backfill_every_execute_decodes_with_its_statement() {
    let _serial = serial();
    let dir = tempdir();
    let url = db().source_url.clone();
    let (summary, events) = capture_app(&dir, "server", &["--server", &url]);
    assert_eq!(summary["executes_unprepared"], 0, "{summary}");
    assert_eq!(summary["sessions"]["backfilled"], CONNECTIONS as u64);
    // The monitor's own connection is not part of the workload.
    assert_eq!(summary["sessions"]["full"], 0, "{summary}");
    assert!(summary["own_packets"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["warnings"].as_array().unwrap().is_empty());
    assert!(
        summary["backfill"]["from"]
            .as_str()
            .unwrap()
            .starts_with("server 127.0.0.1:"),
        "{summary}"
    );
    // MariaDB has no variables_by_thread: that is said, not hidden.
    let notes = summary["backfill"]["notes"].to_string();
    assert!(notes.contains("variables_by_thread"), "{notes}");
    // The password never reaches the recording.
    let raw = std::fs::read(dir.join("server.myrr")).unwrap();
    let pass = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(
        !raw.windows(pass.len() + 1)
            .any(|w| w == format!(":{pass}").as_bytes()),
        "password in the recording"
    );

    let backfills: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Backfill(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(backfills.len(), CONNECTIONS);
    for b in &backfills {
        assert!(matches!(b.source, BackfillSource::Server { .. }));
        assert_eq!(b.db.as_deref(), Some(DB.as_bytes()));
        assert_eq!(b.user.as_deref(), Some(&b"myrr"[..]));
        let mut params: Vec<u16> = b.statements.iter().map(|s| s.params).collect();
        params.sort();
        assert_eq!(params, [1, 3, 3]);
        let start = events.iter().find_map(|e| match e {
            Event::SessionStart(s) if s.session == b.session => Some(s),
            _ => None,
        });
        assert_eq!(start.unwrap().db.as_deref(), Some(DB.as_bytes()));
    }
    let executes: Vec<_> = events
        .iter()
        .filter_map(Event::as_exchange)
        .filter(|x| matches!(x.command, Cmd::Execute { .. }))
        .collect();
    assert_eq!(executes.len(), 3 * CONNECTIONS * ITERATIONS as usize);
    for x in executes {
        let Cmd::Execute { params, .. } = &x.command else {
            unreachable!()
        };
        assert!(!params.is_empty(), "undecoded: {x:?}");
    }
}

#[test]
fn a_snapshot_file_backfills_a_pcap_decoded_later() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    seed(db.source_port);
    let mut app = App::start(&db.source_url);
    // "tcpdump" here is a capture kept as a pcap would be: the snapshot is taken when it
    // starts, the decoding of the packets later.
    let view = dir.join("view.json");
    run(myrr()
        .args(["snapshot", "--server", &db.source_url, "-o"])
        .arg(&view));
    let text = std::fs::read_to_string(&view).unwrap();
    assert!(!text.contains(":myrr@"), "credentials in the view");
    let pcap = dir.join("app.pcap");
    let dump = common::Tcpdump::start(db.source_port, &pcap);
    app.work();
    std::thread::sleep(std::time::Duration::from_millis(200));
    dump.stop();
    app.close();
    let out = dir.join("pcap.myrr");
    let res = myrr()
        .args(["capture", "-r"])
        .arg(&pcap)
        .args([
            "--port",
            &db.source_port.to_string(),
            "--json",
            "--backfill",
        ])
        .arg(&view)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    let summary = capture_json(&stderr);
    assert_eq!(summary["sessions"]["backfilled"], CONNECTIONS as u64);
    assert_eq!(summary["executes_unprepared"], 0, "{summary}");

    // A broken view file: said, and the capture goes on without it.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let res = myrr()
        .args(["capture", "-r"])
        .arg(&pcap)
        .args(["--port", &db.source_port.to_string(), "--backfill"])
        .arg(&bad)
        .arg("-o")
        .arg(dir.join("bad.myrr"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(
        stderr.contains("not a server view written by `myrr snapshot`")
            && stderr.contains("WARNING"),
        "{stderr}"
    );
}

#[test]
fn a_monitor_without_grants_or_performance_schema_gets_told_what_is_missing() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    // The candidate runs without performance_schema.
    let res = myrr()
        .args(["snapshot", "--server", &db.candidate_url, "-o"])
        .arg(dir.join("c.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(
        stderr.contains("performance_schema is off") && stderr.contains("performance_schema=ON"),
        "{stderr}"
    );
    // An account with no grants at all.
    sql(
        db.source_port,
        "DROP USER IF EXISTS 'nogrant'@'127.0.0.1'; \
         CREATE USER 'nogrant'@'127.0.0.1' IDENTIFIED BY 'pw'",
    );
    let url = format!("mysql://nogrant@127.0.0.1:{}", db.source_port);
    let res = myrr()
        .env("MYRR_SERVER_PASSWORD", "pw")
        .args(["snapshot", "--server", &url, "-o"])
        .arg(dir.join("n.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(
        stderr.contains("GRANT PROCESS") && stderr.contains("GRANT SELECT ON performance_schema"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw@"), "{stderr}");
    // A server that does not answer: the live capture goes on, and says so (without the
    // password).
    let out = dir.join("x.myrr");
    let cap = LiveCapture::start_with(
        db.source_port,
        &out,
        &["--json", "--server", "mysql://x:secret@127.0.0.1:1"],
    );
    sql(db.source_port, "SELECT 1");
    let summary = capture_json(&cap.stop());
    let notes = summary["backfill"]["notes"].to_string();
    assert!(notes.contains("no backfill"), "{summary}");
    assert!(!notes.contains("secret"), "{notes}");
    assert!(summary["backfill"]["from"].is_null());
    // --server reads the server now: it cannot describe a pcap recorded earlier.
    let res = myrr()
        .args([
            "capture",
            "-r",
            "x.pcap",
            "--server",
            "mysql://m@127.0.0.1:1",
            "-o",
        ])
        .arg(dir.join("y.myrr"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("--server"));
}

const SELECT: &str = "SELECT balance, note FROM accounts WHERE id = ?";

/// A connection opened during the capture ("the pool reconnects") that numbers `sqls` from
/// `first_id` on, as the old session it stands for did. MariaDB hands a new connection ids
/// from a counter it does not reset, so the connection prepares throw-away statements until
/// its counter is there (or opens another, whose counter is lower).
fn reconnect_numbered_like(app: &App, first_id: u32, sqls: &[&str]) -> mysql_async::Conn {
    let url = db().source_url.clone();
    app.rt.block_on(async {
        // Connections whose counter is past the id stay open until the end: closed, their
        // server thread (and its counter) would serve the next attempt.
        let mut parked = Vec::new();
        for _attempt in 0..50 {
            let mut c = mysql_async::Conn::from_url(format!("{url}/{DB}?prefer_socket=false"))
                .await
                .unwrap();
            loop {
                // Each PREPARE takes the next id; one that is not the wanted one is closed.
                let st = c.prep(sqls[0]).await.unwrap();
                if st.id() == first_id {
                    for (n, sql) in sqls.iter().enumerate() {
                        let st = c.prep(*sql).await.unwrap();
                        assert_eq!(st.id(), first_id + n as u32, "ids are consecutive");
                        // Bind types once, as the application did.
                        match n {
                            0 => {
                                let _: Vec<(String, Option<String>)> =
                                    c.exec(&st, (0i64,)).await.unwrap();
                            }
                            1 => c.exec_drop(&st, ("0.00", "r", 3i64)).await.unwrap(),
                            _ => c.exec_drop(&st, (3i64, -2i64, "0.00")).await.unwrap(),
                        }
                    }
                    for p in parked {
                        let _ = mysql_async::Conn::disconnect(p).await;
                    }
                    return c;
                }
                let past = st.id() > first_id;
                c.close(st).await.unwrap();
                if past {
                    break;
                }
            }
            parked.push(c);
        }
        panic!("no connection could number its statements from {first_id}");
    })
}

/// The app's first connection's id for its SELECT, from the server's own tables.
fn select_id_of(app: &App) -> (u64, u32) {
    let conn_id = app.conns[0].0.id() as u64;
    let id = sql(
        db().source_port,
        &format!(
            "SELECT p.STATEMENT_ID FROM performance_schema.prepared_statements_instances p \
             JOIN performance_schema.threads t ON t.THREAD_ID = p.OWNER_THREAD_ID \
             WHERE t.PROCESSLIST_ID = {conn_id} AND p.SQL_TEXT = '{SELECT}'"
        ),
    );
    (conn_id, id.trim().parse().expect("the SELECT's id"))
}

/// Captures the app's work after connections numbered like its first one reconnect,
/// preparing `others` (each a list of statements from the first one's SELECT id on).
/// Returns the summary, the events, and the session of the app's first connection.
fn inferred_capture(
    dir: &Path,
    name: &str,
    others: &[&[&str]],
) -> (serde_json::Value, Vec<Event>, u64) {
    let db = db();
    seed(db.source_port);
    sql(
        db.source_port,
        &format!("INSERT INTO {DB}.accounts VALUES (3, 100, NULL)"),
    );
    let mut app = App::start(&db.source_url);
    let (_, select_id) = select_id_of(&app);
    let first_port = app.rt.block_on(async {
        let (ip_port,): (String,) = app.conns[0]
            .0
            .query_first(
                "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
            )
            .await
            .unwrap()
            .unwrap();
        ip_port
    });
    let out = dir.join(format!("{name}.myrr"));
    let cap = LiveCapture::start_with(db.source_port, &out, &["--json"]);
    let fresh: Vec<_> = others
        .iter()
        .map(|sqls| reconnect_numbered_like(&app, select_id, sqls))
        .collect();
    app.work();
    let stderr = cap.stop();
    app.rt.block_on(async {
        for c in fresh {
            c.disconnect().await.unwrap();
        }
    });
    app.close();
    let events = read_events(&out);
    let session = events
        .iter()
        .find_map(|e| match e {
            Event::SessionStart(s) if s.client == first_port => Some(s.session),
            _ => None,
        })
        .expect("the first connection's session");
    (capture_json(&stderr), events, session)
}

const UPDATE: &str = "UPDATE accounts SET balance = balance + ?, note = ? WHERE id = ?";
const INSERT: &str = "INSERT INTO events (worker, seq, amount) VALUES (?, ?, ?)";

/// The session's EXECUTEs: (decoded, left unprepared).
fn executes_of(events: &[Event], session: u64) -> (Vec<&myrr_recording::Exchange>, usize) {
    let mut decoded = Vec::new();
    let mut unprepared = 0;
    for x in events.iter().filter_map(Event::as_exchange) {
        match &x.command {
            Cmd::Execute {
                prepare_seen: false,
                ..
            } if x.session == session => unprepared += 1,
            Cmd::Execute { .. } if x.session == session => decoded.push(x),
            _ => {}
        }
    }
    (decoded, unprepared)
}

#[test]
fn without_backfill_a_reconnected_session_s_prepares_are_reused_when_unambiguous() {
    let _serial = serial();
    let dir = tempdir();
    let (summary, events, first) = inferred_capture(&dir, "inferred", &[&[SELECT, UPDATE, INSERT]]);
    // The first connection's statements are all inferred, from the reconnected session.
    let (decoded, unprepared) = executes_of(&events, first);
    assert_eq!(unprepared, 0, "{summary}");
    assert_eq!(decoded.len(), 3 * ITERATIONS as usize);
    let backfills: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Backfill(b) if b.session == first => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(backfills.len(), 3);
    let mut sqls: Vec<_> = backfills
        .iter()
        .map(|b| String::from_utf8_lossy(&b.statements[0].sql).into_owned())
        .collect();
    sqls.sort();
    let mut want = vec![SELECT, UPDATE, INSERT];
    want.sort();
    assert_eq!(sqls, want);
    for b in &backfills {
        assert!(
            matches!(b.source, BackfillSource::Inferred { from_session } if from_session != first)
        );
    }
    // Each backfill comes before the first EXECUTE that needed it, and the parameters are
    // the ones the app sent.
    let mut known = std::collections::HashSet::new();
    for e in &events {
        match e {
            Event::Backfill(b) => {
                known.insert((b.session, b.statements[0].id));
            }
            Event::Exchange(x) if x.session == first => {
                if let Cmd::Execute {
                    stmt_id, params, ..
                } = &x.command
                {
                    assert!(known.contains(&(first, *stmt_id)), "{x:?}");
                    assert!(!params.is_empty());
                }
            }
            _ => {}
        }
    }
    // What stays unprepared anywhere (other old sessions numbered otherwise) is counted.
    let unprepared_anywhere = unprepared_executes(&events);
    assert_eq!(summary["executes_unprepared"], unprepared_anywhere as u64);
}

#[test]
fn inference_refuses_when_two_statements_share_an_id_and_parameter_types() {
    let _serial = serial();
    let dir = tempdir();
    // A second reconnected session numbers another SELECT like the first one's: the same
    // parameter type, the same columns.
    let (summary, events, first) = inferred_capture(
        &dir,
        "ambiguous",
        &[
            &[SELECT, UPDATE, INSERT],
            &["SELECT balance, note FROM accounts WHERE id = ? + 0"],
        ],
    );
    let (decoded, unprepared) = executes_of(&events, first);
    // Its SELECTs stay unprepared; its UPDATEs and INSERTs are inferred.
    assert_eq!(unprepared, ITERATIONS as usize, "{summary}");
    assert_eq!(decoded.len(), 2 * ITERATIONS as usize);
    assert!(
        summary["inferred"]["ambiguous"].as_u64().unwrap() >= ITERATIONS as u64,
        "{summary}"
    );
    assert!(summary["warnings"][0]
        .as_str()
        .unwrap()
        .contains("prepared before the capture"));
}

/// libmysqlclient (sysbench) binds a statement's parameter types once, before the capture:
/// even backfilled, its EXECUTEs' values cannot be read. When another connection prepares the
/// same SQL during the capture and binds its types, the old sessions' EXECUTEs are read with
/// those types, where exactly one type list reads them.
#[test]
fn types_bound_before_the_capture_are_read_with_another_session_s() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let port = db.source_port;
    let sb = |threads: &str, time: &str| {
        let mut c = sysbench_test(
            "oltp_point_select",
            port,
            &[
                "--mysql-db=myrr_tsql",
                "--tables=1",
                "--table-size=200",
                "--db-ps-mode=auto",
            ],
        );
        c.args([
            format!("--threads={threads}"),
            format!("--time={time}"),
            "run".into(),
        ]);
        c.stdout(std::process::Stdio::null());
        c
    };
    sql(
        port,
        "DROP DATABASE IF EXISTS myrr_tsql; CREATE DATABASE myrr_tsql",
    );
    run(sysbench_test(
        "oltp_point_select",
        port,
        &[
            "--mysql-db=myrr_tsql",
            "--tables=1",
            "--table-size=200",
            "prepare",
        ],
    )
    .stdout(std::process::Stdio::null()));
    // Two connections that prepared and bound before the capture.
    let mut old = sb("2", "6").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = dir.join("tsql.myrr");
    let cap = LiveCapture::start_with(port, &out, &["--json", "--server", &db.source_url]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // A new connection prepares the same SQL and binds its types in the capture.
    run(&mut sb("1", "1"));
    assert!(old.wait().unwrap().success());
    let summary = capture_json(&cap.stop());
    let read = summary["inferred"]["types_from_sql"].as_u64().unwrap();
    assert!(read > 0, "{summary:#}");
    // The old sessions' EXECUTEs from the new one's on are read; none with other types.
    let events = read_events(&out);
    let backfilled: std::collections::HashSet<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Backfill(b) => Some(b.session),
            _ => None,
        })
        .collect();
    assert_eq!(backfilled.len(), 2, "{summary:#}");
    let decoded = events
        .iter()
        .filter_map(Event::as_exchange)
        .filter(|x| backfilled.contains(&x.session))
        .filter(|x| matches!(&x.command, Cmd::Execute { params, .. } if !params.is_empty()))
        .count();
    assert!(
        decoded as u64 >= read,
        "{decoded} decoded, {read} read with other types"
    );
}
