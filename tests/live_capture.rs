//! Live capture on loopback while real clients (the mariadb CLI, sysbench in text and
//! prepared-statement mode, mysqlslap) run against the project's source MariaDB. The server's
//! general log is the ground truth: every command it received on a captured connection must
//! be in the recording, in order, with its SQL (and for EXECUTE, typed parameters that expand
//! to the same statement the server logged).

mod common;

use std::process::Command;

use common::genlog::*;
use common::*;
use myrr_recording::{Command as Cmd, Event, Response};

#[test]
fn live_capture_of_real_clients_matches_the_server_general_log() {
    let db = db();
    let port = db.source_port;
    let dir = tempdir();
    let sb = |mode: &str, threads: &str| {
        sysbench(
            port,
            &[
                "--mysql-db=sbtest",
                "--tables=2",
                "--table-size=500",
                &format!("--threads={threads}"),
                "--time=3",
                &format!("--db-ps-mode={mode}"),
                "run",
            ],
        )
    };
    // Fresh sysbench tables (outside the capture).
    let _ = sysbench(port, &["--mysql-db=sbtest", "--tables=2", "cleanup"]).output();
    run(&mut sysbench(
        port,
        &[
            "--mysql-db=sbtest",
            "--tables=2",
            "--table-size=500",
            "prepare",
        ],
    ));
    sql(port, "CREATE DATABASE IF NOT EXISTS myrr_live; DROP DATABASE IF EXISTS myrr_slap; SET GLOBAL log_output='TABLE'; TRUNCATE mysql.general_log; SET GLOBAL general_log=ON");

    let cap = LiveCapture::start(port, &dir.join("live.myrr"));

    // The mariadb CLI: USE (sent as COM_INIT_DB), DDL, DML, an error, a multi-statement.
    let script = "USE myrr_live;\nDROP TABLE IF EXISTS t;\nCREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20));\n\
        INSERT INTO t VALUES (1,'a'),(2,'b'),(3,NULL);\nSELECT * FROM t ORDER BY id;\n\
        SELECT * FROM no_such_table;\nUPDATE t SET v='z' WHERE id<3;\n\
        DELIMITER //\nSELECT 1; SELECT id FROM t WHERE id > 1//\nDELIMITER ;\nSELECT COUNT(*) FROM t;\n";
    let mut cli = Command::new("mariadb");
    cli.args([
        "-h127.0.0.1",
        "--protocol=tcp",
        "-umyrr",
        "-pmyrr",
        "--force",
    ])
    .arg(format!("-P{port}"))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cli.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
    }
    child.wait().unwrap();

    run(&mut sb("disable", "2"));
    run(&mut sb("auto", "2"));
    run(Command::new("mysqlslap")
        .args([
            "-h127.0.0.1",
            "--protocol=tcp",
            "-umyrr",
            "-pmyrr",
            "--auto-generate-sql",
            "--concurrency=2",
        ])
        .args([
            "--number-of-queries=100",
            "--iterations=1",
            "--create-schema=myrr_slap",
        ])
        .arg(format!("-P{port}")));

    let summary = cap.stop();
    sql(port, "SET GLOBAL general_log=OFF");
    assert!(
        summary.contains("drops 0"),
        "kernel drops during the capture:\n{summary}"
    );
    let log = general_log(port);
    let events = read_events(&dir.join("live.myrr"));

    for e in &events {
        if let Event::SessionStart(s) = e {
            assert!(!s.encrypted, "{s:?}");
        }
    }
    let Checked {
        sessions: checked_sessions,
        exchanges: checked_exchanges,
        executes,
        kinds: kinds_seen,
        exact,
        by_session: exchanges,
        ..
    } = check_against_log(&events, &log);
    // 1 CLI + 2 + 2 sysbench + mysqlslap's connections.
    assert!(
        checked_sessions >= 6,
        "only {checked_sessions} sessions matched the general log"
    );
    assert!(
        executes > 100 && checked_exchanges > 1000,
        "{executes} executes, {checked_exchanges} exchanges"
    );
    assert!(
        exact.1 > 100 && exact.0 * 100 >= exact.1 * 95,
        "row counts: {} of {} exact",
        exact.0,
        exact.1
    );
    for k in [
        "Query",
        "Init DB",
        "Prepare",
        "Execute",
        "Close stmt",
        "Quit",
    ] {
        assert!(
            kinds_seen.get(k).copied().unwrap_or(0) > 0,
            "no {k} seen: {kinds_seen:?}"
        );
    }

    // The CLI session, exchange by exchange.
    let cli = exchanges
        .values()
        .find(|xs| {
            xs.iter()
                .any(|x| x.command.sql() == Some(b"SELECT * FROM no_such_table"))
        })
        .expect("CLI session recorded");
    let find = |s: &str| {
        cli.iter()
            .find(|x| x.command.sql() == Some(s.as_bytes()))
            .unwrap_or_else(|| panic!("{s} not recorded"))
    };
    assert!(
        matches!(&find("INSERT INTO t VALUES (1,'a'),(2,'b'),(3,NULL)").response, Response::Ok(ok) if ok.affected_rows == 3)
    );
    assert_eq!(find("SELECT * FROM t ORDER BY id").total_rows(), 3);
    assert!(
        matches!(&find("SELECT * FROM no_such_table").response, Response::Err(e) if e.code == 1146)
    );
    assert!(
        matches!(&find("UPDATE t SET v='z' WHERE id<3").response, Response::Ok(ok) if ok.affected_rows == 2)
    );
    let multi = find("SELECT 1; SELECT id FROM t WHERE id > 1");
    assert_eq!(multi.more.len(), 1, "two result sets: {multi:?}");
    assert_eq!(multi.total_rows(), 3);
    assert!(cli
        .iter()
        .any(|x| matches!(&x.command, Cmd::InitDb { db } if db == b"myrr_live")));
}

/// A user without capture rights gets told what is wrong and how to grant the rights, and
/// nothing is left half-written. (CI runs as root, so the test drops to `nobody` itself.)
#[test]
fn capture_without_permission_says_how_to_grant_it() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap();
    let out = std::env::temp_dir().join(format!("myrr-noperm-{}.myrr", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut c = if uid == "0" {
        // Drop to nobody, without any capability.
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_myrr"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_myrr"))
    };
    let o = c
        .args(["capture", "-i", "lo", "--duration", "1s", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("lo"), "names the interface: {err}");
    assert!(
        err.contains("setcap cap_net_raw,cap_net_admin=eip"),
        "says how to grant the rights: {err}"
    );
    assert!(!out.exists(), "no output written");
    assert!(
        !err.contains("capturing on"),
        "no claim that it is capturing: {err}"
    );

    // An interface that does not exist: the same, without the rights hint.
    let o = myrr()
        .args(["capture", "-i", "myrr-no-such0", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("myrr-no-such0") && !err.contains("setcap"),
        "{err}"
    );
    assert!(!out.exists(), "no output written");
}
