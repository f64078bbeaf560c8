//! `--help` of every subcommand, snapshot-tested: a change to the CLI shows up here, and the
//! snapshots are what the README promises. Regenerate with `MYRR_UPDATE_SNAPSHOTS=1 cargo test
//! --test cli_help` and review the diff.

mod common;

use common::*;

#[test]
fn help_snapshots() {
    let update = std::env::var_os("MYRR_UPDATE_SNAPSHOTS").is_some();
    let mut failures = Vec::new();
    for sub in [
        "",
        "capture",
        "inspect",
        "replay",
        "analyze",
        "fingerprint",
        "snapshot",
    ] {
        let mut c = myrr();
        if !sub.is_empty() {
            c.arg(sub);
        }
        let out = c.arg("--help").env("NO_COLOR", "1").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let name = if sub.is_empty() { "myrr" } else { sub };
        let path = root().join(format!("tests/snapshots/{name}.help.txt"));
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != text {
            failures.push(format!(
                "{name}: --help changed (MYRR_UPDATE_SNAPSHOTS=1 to accept):\n{text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_tell_a_new_user_what_to_do() {
    let dir = tempdir();
    // A recording that is not one.
    let bogus = dir.join("x.myrr");
    std::fs::write(&bogus, b"hello").unwrap();
    let out = myrr().arg("inspect").arg(&bogus).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a myrr recording"));
    // A capture file that does not exist.
    let out = myrr()
        .args(["capture", "-r", "/nonexistent.pcap", "-o"])
        .arg(dir.join("o.myrr"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pcap"));
    // An unreachable target: refused before any session starts.
    let rec = root().join("samples/cli-session.myrr");
    let out = myrr()
        .arg("replay")
        .arg(&rec)
        .args(["--target", "mysql://u:secret@127.0.0.1:1", "-o"])
        .arg(dir.join("r.myrr"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot reach the target 127.0.0.1:1"), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");
    // Wrong credentials on a live server.
    let db = db();
    let out = myrr()
        .arg("replay")
        .arg(&rec)
        .args([
            "--target",
            &format!("mysql://myrr:wrong@127.0.0.1:{}", db.candidate_port),
            "-o",
        ])
        .arg(dir.join("r2.myrr"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Access denied"), "{err}");
    // Live capture without the right to: says how to grant it (only testable as non-root).
}
