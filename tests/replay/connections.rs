//! Connecting to the target: TLS, ed25519 login, a target that never greets, more
//! sessions than the soft open-files limit.

use std::process::Command;

use crate::common::*;
use crate::{replay_against, serial};
use myrr_recording::Response;

/// More sessions than a default soft limit on open files allows: replay lifts its own limit
/// to the hard one, so every session connects.
#[test]
fn sessions_beyond_the_soft_open_files_limit() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("many.myrr");
    let sessions: Vec<Vec<(u64, String)>> = (0..300)
        .map(|i| {
            vec![
                (i * 100, format!("SELECT {i}")),
                (i * 100 + 50_000, "SELECT 1".into()),
            ]
        })
        .collect();
    synthetic_recording(&rec, "sbtest", &sessions);
    let out = dir.join("many.out.myrr");
    let script = "ulimit -Sn 128 && exec \"$0\" replay \"$1\" --target \"$2\" -o \"$3\" --json";
    let o = Command::new("sh")
        .args(["-c", script])
        .arg(env!("CARGO_BIN_EXE_myrr"))
        .arg(&rec)
        .arg(&db.candidate_url)
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["connect_failures"], 0, "{s}");
    assert_eq!(s["exchanges"], 600, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
}

/// The run succeeded; the rows its first exchange (session 1) returned.
fn rows_of_first(o: &std::process::Output, out: &std::path::Path) -> u64 {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let xs = exchanges_by_key(&read_events(out));
    match &xs[&(1, 0, 0)].response {
        Response::Rows(r) => r.rows,
        other => panic!("{other:?}"),
    }
}

/// The replay was refused before any session started (exit 2), saying all of `what`.
fn assert_refused(o: &std::process::Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(what.iter().all(|w| err.contains(w)), "{what:?}: {err}");
}

/// TLS to the target, against the candidate's own certificate (scripts/db.sh makes a CA and
/// an account that requires TLS): refused without TLS (with a hint), encrypted with it,
/// verified against the CA, and refused when the certificate does not chain to a trusted CA.
#[test]
fn tls_to_the_target() {
    let _serial = serial();
    let db = db();
    let ca = db.env["MYRR_TLS_CA"].clone();
    let dir = tempdir();
    let rec = dir.join("tls.myrr");
    let out = dir.join("tls.out.myrr");
    let encrypted = "SELECT 1 FROM information_schema.SESSION_STATUS \
                     WHERE VARIABLE_NAME = 'SSL_VERSION' AND VARIABLE_VALUE LIKE 'TLS%'";
    synthetic_recording(&rec, "sbtest", &[vec![(0, encrypted.to_string())]]);
    let url = db
        .candidate_url
        .replace("mysql://myrr:", "mysql://myrr_tls:");
    let o = replay_against(&rec, &url, &out, &["--tls", "off"]);
    assert_refused(&o, &["1045", "--tls require"]);
    for args in [
        vec!["--tls", "require"],
        vec!["--tls", "verify-ca", "--tls-ca", &ca],
        vec!["--tls", "verify-identity", "--tls-ca", &ca],
    ] {
        let o = replay_against(&rec, &url, &out, &args);
        assert_eq!(
            rows_of_first(&o, &out),
            1,
            "{args:?}: the session is encrypted"
        );
    }
    // The public web roots do not know the test CA.
    let o = replay_against(&rec, &url, &out, &["--tls", "verify-ca"]);
    assert_refused(&o, &["UnknownIssuer"]);
}

/// client_ed25519 against MariaDB's ed25519 plugin (scripts/db.sh makes the account): the
/// server greets with mysql_native_password and switches the client to ed25519. The right
/// password logs in; a wrong one is refused before any session starts.
#[test]
fn ed25519_login() {
    let _serial = serial();
    let db = db();
    let dir = tempdir();
    let rec = dir.join("ed.myrr");
    let out = dir.join("ed.out.myrr");
    let who = "SELECT 1 FROM DUAL WHERE CURRENT_USER() LIKE 'myrr\\_ed@%'";
    synthetic_recording(&rec, "sbtest", &[vec![(0, who.to_string())]]);
    let url = db
        .candidate_url
        .replace("mysql://myrr:", "mysql://myrr_ed:");
    let o = replay_against(&rec, &url, &out, &[]);
    assert_eq!(rows_of_first(&o, &out), 1, "logged in as myrr_ed");
    let wrong = db
        .candidate_url
        .replace("mysql://myrr:myrr@", "mysql://myrr_ed:wrong@");
    assert_refused(&replay_against(&rec, &wrong, &out, &[]), &["1045"]);
}

/// A target that accepts connections but never greets: the replay says so within seconds and
/// exits 2, instead of hanging.
#[test]
fn a_target_that_never_greets_is_refused_in_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c); // accept, say nothing, keep the connection open
        }
    });
    let dir = tempdir();
    let rec = dir.join("mute.myrr");
    synthetic_recording(&rec, "sbtest", &[vec![(0, "SELECT 1".into())]]);
    let started = std::time::Instant::now();
    let o = myrr()
        .arg("replay")
        .arg(&rec)
        .args(["--target", &format!("mysql://u:p@127.0.0.1:{port}"), "-o"])
        .arg(dir.join("mute.out.myrr"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("no answer"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(90));
}
