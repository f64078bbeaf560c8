//! `myrr capture --tls-probe`: TLS clients of the project's `tls` MariaDB server (scripts/db.sh,
//! TLS 1.2 and 1.3 offered) read in plaintext inside the server's libssl by the eBPF probe,
//! checked against the server's general log as the plaintext live captures are: the mariadb
//! CLI, sysbench in text and prepared-statement mode and a Python client over TLS, with
//! plaintext clients in the same capture; pooled TLS connections opened before the capture;
//! 16 TLS sessions at full speed; missing rights and a process without a TLS library; no probe
//! left loaded after any of it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::clients::{seed, App, Counts, Driver};
use common::genlog::*;
use common::*;
use myrr_recording::{Command as Cmd, Event, Response};

/// One probe at a time: the tests count the kernel's loaded programs and share the server.
static PROBE: Mutex<()> = Mutex::new(());

fn tls_port() -> u16 {
    db().env["MYRR_TLS_PORT"].parse().unwrap()
}

/// The lock on the probe, the tls server's port and a directory of the test's own.
fn one_probe_at_a_time() -> (std::sync::MutexGuard<'static, ()>, u16, std::path::PathBuf) {
    let one = PROBE.lock().unwrap_or_else(|p| p.into_inner());
    (one, tls_port(), tempdir())
}

fn assert_no_probe_left() {
    let left = probe_programs_left();
    assert!(left.is_empty(), "{left:?}");
}

/// Our eBPF programs loaded in the kernel (bpftool), after the kernel's grace period for
/// programs just released.
fn probe_programs_left() -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..50 {
        let out = Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .expect("bpftool (scripts/setup.sh installs it)");
        left = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" name myrr_"))
            .map(str::to_string)
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    left
}

/// The mariadb CLI on the tls server, reading `script` from stdin, going on after errors.
fn cli(port: u16, tls: &[&str], script: &str) {
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "--protocol=tcp",
            "-umyrr",
            "-pmyrr",
            "--force",
        ])
        .arg(format!("-P{port}"))
        .args(tls)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
}

/// sysbench over TLS: it reads cacert.pem, client-cert.pem and client-key.pem from its
/// working directory.
fn sysbench_tls(test: &str, port: u16, dir: &Path, args: &[&str]) -> Command {
    let tls = Path::new(&db().env["MYRR_TLS_CA"])
        .parent()
        .unwrap()
        .to_owned();
    for (from, to) in [
        ("ca.pem", "cacert.pem"),
        ("server-cert.pem", "client-cert.pem"),
        ("server-key.pem", "client-key.pem"),
    ] {
        std::fs::copy(tls.join(from), dir.join(to)).unwrap();
    }
    let mut c = sysbench_test(test, port, &["--mysql-ssl=on", "--mysql-db=sbtest"]);
    c.args(args).current_dir(dir);
    c
}

/// From a capture's summary: (sessions read with their secrets, decrypted, whose secrets came
/// late, without keys, failed); all 0 when none was.
fn read_with_secrets(summary: &str) -> [u64; 5] {
    let Some(line) = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("read with their secrets: "))
    else {
        return [0; 5];
    };
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(5)
        .map(|w| w.parse().unwrap())
        .collect();
    n.try_into().unwrap_or_else(|_| panic!("{line}"))
}

fn sessions(events: &[Event]) -> Vec<&myrr_recording::SessionStart> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionStart(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn tls_clients_are_recorded_as_the_server_logged_them() {
    let (_one, port, dir) = one_probe_at_a_time();
    let _ = sysbench_test(
        "oltp_read_write",
        port,
        &["--mysql-db=sbtest", "--tables=2", "cleanup"],
    )
    .output();
    run(&mut sysbench_test(
        "oltp_read_write",
        port,
        &[
            "--mysql-db=sbtest",
            "--tables=2",
            "--table-size=500",
            "prepare",
        ],
    ));
    seed(port, "myrr_tls_app", 2);
    sql(port, "CREATE DATABASE IF NOT EXISTS myrr_tls; SET GLOBAL log_output='TABLE'; TRUNCATE mysql.general_log; SET GLOBAL general_log=ON");

    let cap = LiveCapture::start_with(port, &dir.join("tls.myrr"), &["--tls-probe"]);
    // TLS 1.3 (the CLI's default here): USE, DDL, DML, an error, a multi-statement.
    cli(
        port,
        &["--ssl"],
        "USE myrr_tls;\nDROP TABLE IF EXISTS t;\nCREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20));\n\
         INSERT INTO t VALUES (1,'a'),(2,'b'),(3,NULL);\nSELECT * FROM t ORDER BY id;\n\
         SELECT * FROM no_such_table;\nDELIMITER //\nSELECT 1; SELECT id FROM t WHERE id > 1//\n\
         DELIMITER ;\nSELECT REPEAT('x', 100000);\n",
    );
    // TLS 1.2, and a client in the clear in the same capture.
    cli(
        port,
        &["--ssl", "--tls-version=TLSv1.2"],
        "SELECT 'over TLS 1.2';\n",
    );
    cli(port, &["--skip-ssl"], "SELECT 'in the clear';\n");
    for mode in ["disable", "auto"] {
        run(&mut sysbench_tls(
            "oltp_read_write",
            port,
            &dir,
            &[
                "--tables=2",
                "--table-size=500",
                "--threads=2",
                "--time=3",
                &format!("--db-ps-mode={mode}"),
                "run",
            ],
        ));
    }
    let app = App::start_with(
        Driver::Python,
        port,
        "myrr_tls_app",
        2,
        20,
        &["--tls", "1.3"],
    );
    let counts = app.run();
    assert_eq!(counts, Counts::expected(2, 20));
    let summary = cap.stop();
    sql(port, "SET GLOBAL general_log=OFF");
    assert!(
        summary.contains("drops 0\n") && summary.contains("tls probe drops 0"),
        "{summary}"
    );
    assert_no_probe_left();

    let events = read_events(&dir.join("tls.myrr"));
    let starts = sessions(&events);
    let tls = starts.iter().filter(|s| s.encrypted).count();
    // CLI ×2, sysbench 2 + 2 (and their main connections), the Python app's 2.
    assert!(tls >= 8, "{tls} TLS sessions: {starts:?}");
    // All set up under the probe: read from the packets with the secrets the server derived
    // (TLS 1.3 and 1.2), no data probe attached.
    assert_eq!(
        read_with_secrets(&summary),
        [tls as u64, tls as u64, 0, 0, 0],
        "{summary}"
    );
    assert!(
        summary.contains("data probes for the 0 connections open at the start (not attached)"),
        "{summary}"
    );
    assert!(
        starts.iter().any(|s| !s.encrypted),
        "the client in the clear"
    );
    for s in starts.iter().filter(|s| s.encrypted) {
        assert_eq!(
            s.user.as_deref(),
            Some(&b"myrr"[..]),
            "login read inside TLS: {s:?}"
        );
        assert!(
            s.connection_id.is_some(),
            "greeting from the packets: {s:?}"
        );
    }
    let checked = check_against_log(&events, &general_log(port));
    assert!(
        checked.sessions >= 9,
        "{} sessions matched the log",
        checked.sessions
    );
    assert!(checked.executes > 100, "{checked:?}");
    for k in [
        "Query",
        "Init DB",
        "Prepare",
        "Execute",
        "Close stmt",
        "Quit",
    ] {
        assert!(
            checked.kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k}: {:?}",
            checked.kinds
        );
    }
    let all: Vec<_> = checked.by_session.values().flatten().collect();
    let find = |s: &str| {
        all.iter()
            .find(|x| x.command.sql() == Some(s.as_bytes()))
            .unwrap_or_else(|| panic!("{s} not recorded"))
    };
    assert!(
        matches!(&find("SELECT * FROM no_such_table").response, Response::Err(e) if e.code == 1146)
    );
    assert_eq!(find("SELECT * FROM t ORDER BY id").total_rows(), 3);
    assert_eq!(
        find("SELECT 1; SELECT id FROM t WHERE id > 1").more.len(),
        1
    );
    assert_eq!(
        find("SELECT REPEAT('x', 100000)").total_rows(),
        1,
        "a 100 kB answer, whole"
    );
    assert_eq!(find("SELECT 'over TLS 1.2'").total_rows(), 1);
    assert_eq!(find("SELECT 'in the clear'").total_rows(), 1);
    assert!(all
        .iter()
        .any(|x| matches!(&x.command, Cmd::InitDb { db } if db == b"myrr_tls")));
    // No gaps, nothing missing.
    assert!(!events.iter().any(|e| matches!(e, Event::Gap(_))));
}

#[test]
fn tls_sessions_open_before_the_capture_are_recorded_from_then_on() {
    let (_one, port, dir) = one_probe_at_a_time();
    seed(port, "myrr_tls_pool", 3);
    // The pool connects over TLS 1.2, prepares its statements and runs each once: all before
    // the capture. The server's view gives the statements.
    let app = App::start_with(
        Driver::Node,
        port,
        "myrr_tls_pool",
        3,
        30,
        &["--tls", "1.2"],
    );
    let url = format!("mysql://myrr:myrr@127.0.0.1:{port}");
    let cap = LiveCapture::start_with(
        port,
        &dir.join("mid.myrr"),
        &["--tls-probe", "--server", &url],
    );
    let counts = app.run();
    let summary = cap.stop();
    assert!(summary.contains("tls probe drops 0"), "{summary}");
    // The pool's connections were open at the start: the data probes read them.
    assert!(
        summary.contains("connections open at the start, until they close"),
        "{summary}"
    );
    let events = read_events(&dir.join("mid.myrr"));
    let mid: Vec<u64> = sessions(&events)
        .iter()
        .filter(|s| s.mid_stream && s.encrypted)
        .map(|s| s.session)
        .collect();
    assert_eq!(mid.len(), 3, "the pool's three TLS connections: {summary}");
    let executes = events
        .iter()
        .filter_map(Event::as_exchange)
        .filter(|x| mid.contains(&x.session))
        .filter(|x| matches!(&x.command, Cmd::Execute { params, .. } if !params.is_empty()))
        .filter(|x| !matches!(x.response, Response::Err(_) | Response::Missing(_)))
        .count() as u64;
    assert_eq!(
        executes,
        counts.executes(),
        "every EXECUTE, decoded: {summary}"
    );
    assert_no_probe_left();
}

#[test]
fn sixteen_tls_sessions_at_full_speed_lose_nothing() {
    let (_one, port, dir) = one_probe_at_a_time();
    let _ = sysbench_test(
        "oltp_read_only",
        port,
        &["--mysql-db=sbtest", "--tables=2", "cleanup"],
    )
    .output();
    run(sysbench_test(
        "oltp_read_only",
        port,
        &[
            "--mysql-db=sbtest",
            "--tables=2",
            "--table-size=500",
            "prepare",
        ],
    )
    .stderr(Stdio::null()));
    let cap = LiveCapture::start_with(port, &dir.join("load.myrr"), &["--tls-probe"]);
    let out = run(&mut sysbench_tls(
        "oltp_read_only",
        port,
        &dir,
        &[
            "--tables=2",
            "--table-size=500",
            "--threads=16",
            "--time=20",
            "--db-ps-mode=disable",
            "run",
        ],
    ));
    let summary = cap.stop();
    assert!(
        summary.contains("tls probe drops 0") && summary.contains("drops 0\n"),
        "{summary}"
    );
    let total: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("total:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total in sysbench's output:\n{out}"));
    let events = read_events(&dir.join("load.myrr"));
    let queries = events
        .iter()
        .filter_map(Event::as_exchange)
        .filter(|x| matches!(x.command, Cmd::Query { .. }))
        .filter(|x| !matches!(x.response, Response::Missing(_)))
        .count() as u64;
    assert!(total > 10_000, "{out}");
    assert_eq!(
        queries, total,
        "every statement sysbench sent, with its answer: {summary}"
    );
    let tls = sessions(&events).iter().filter(|s| s.encrypted).count() as u64;
    assert!(tls >= 16, "{summary}");
    assert_eq!(
        read_with_secrets(&summary),
        [tls, tls, 0, 0, 0],
        "{summary}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Gap(_))));
    assert_no_probe_left();
}

#[test]
fn the_probe_says_what_is_missing_and_plaintext_capture_goes_on() {
    let (_one, port, dir) = one_probe_at_a_time();
    // Without CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE (but with the packet capture's rights):
    // said, with how to grant them, and nothing written.
    let out = dir.join("noperm.myrr");
    let o = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all,+net_raw,+net_admin",
            "--ambient-caps=+net_raw,+net_admin",
            "--bounding-set=-all,+net_raw,+net_admin",
        ])
        .arg(env!("CARGO_BIN_EXE_myrr"))
        .args([
            "capture",
            "-i",
            "lo",
            "--port",
            &port.to_string(),
            "--tls-probe",
            "--duration",
            "1s",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    for what in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "setcap"] {
        assert!(err.contains(what), "names {what}: {err}");
    }
    assert!(!out.exists(), "nothing written: {err}");

    // A process without a TLS library (named by PID): said, with what was searched, and the
    // plaintext sessions are captured.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let cap = LiveCapture::start_with(
        port,
        &dir.join("nolib.myrr"),
        &["--tls-probe", &sleeper.id().to_string()],
    );
    cli(port, &["--skip-ssl"], "SELECT 'still captured';\n");
    let summary = cap.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        summary.contains(&format!(
            "no TLS library to probe in process {}",
            sleeper.id()
        )) && summary.contains("searched")
            && summary.contains("/proc/"),
        "{summary}"
    );
    let events = read_events(&dir.join("nolib.myrr"));
    assert!(events
        .iter()
        .filter_map(Event::as_exchange)
        .any(|x| x.command.sql() == Some(&b"SELECT 'still captured'"[..])));
    assert_no_probe_left();
}

/// However the capture ends — its --duration, or killed outright — the probe is gone with it.
#[test]
fn no_probe_outlives_the_capture() {
    let (_one, port, dir) = one_probe_at_a_time();
    let o = myrr()
        .args([
            "capture",
            "-i",
            "lo",
            "--port",
            &port.to_string(),
            "--tls-probe",
            "--duration",
            "2s",
            "-o",
        ])
        .arg(dir.join("duration.myrr"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("reading TLS sessions of process"),
        "{err}"
    );
    assert_no_probe_left();

    let mut child = myrr()
        .args([
            "capture",
            "-i",
            "lo",
            "--port",
            &port.to_string(),
            "--tls-probe",
            "-o",
        ])
        .arg(dir.join("killed.myrr"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Attached: our programs are loaded.
    let attached = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(" name myrr_read_in"))
            .unwrap_or(false)
    });
    assert!(attached, "the probe never attached");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_probe_left();
}
