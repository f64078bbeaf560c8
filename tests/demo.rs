//! The README's first command, end to end on the MariaDB pair (shortened workload, debug
//! binary): the demo must run and find what it planted — the dropped index and the changed row.

mod common;

use common::*;

#[test]
fn demo_finds_the_dropped_index_and_the_changed_row() {
    let dir = tempdir();
    let out = std::process::Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("MYRR_BIN", env!("CARGO_BIN_EXE_myrr"))
        .env("MYRR_DEMO_SECONDS", "2")
        .env("MYRR_DEMO_DIR", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: FAIL"), "{stdout}");
    assert!(stdout.contains("report.html"), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("FAIL"));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let shapes = r["shapes"].as_array().unwrap();
    let shape = |fp: &str| {
        shapes
            .iter()
            .find(|s| s["fingerprint"] == fp)
            .unwrap_or_else(|| panic!("{fp} missing"))
    };
    assert_eq!(
        shape("select id, c from sbtest? where k = ?")["latency"],
        "regressed"
    );
    assert!(
        shape("select k, c from sbtest? where id = ?")["mismatches"]["values"].as_u64() >= Some(1)
    );
    assert_eq!(r["verdict"]["pass"], false);
}
