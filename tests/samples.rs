//! The committed samples stay true: capturing each pcap again gives exactly the committed
//! recording, and the sample analysis finds what samples/README.md says it finds.

mod common;

use common::*;

#[test]
fn samples_recapture_to_the_committed_recordings() {
    let dir = tempdir();
    for name in ["cli-session", "sysbench-ps"] {
        let pcap = root().join(format!("samples/{name}.pcap"));
        let out = dir.join(format!("{name}.myrr"));
        run(myrr()
            .args(["capture", "-r"])
            .arg(&pcap)
            .args(["--port", "23306", "-o"])
            .arg(&out));
        let committed = read_events(&root().join(format!("samples/{name}.myrr")));
        assert_eq!(
            read_events(&out),
            committed,
            "{name}: re-captured recording differs"
        );
    }
}

#[test]
fn sample_cli_session_has_what_the_readme_says() {
    let ev = read_events(&root().join("samples/cli-session.myrr"));
    let xs: Vec<_> = exchanges_by_key(&ev).into_values().collect();
    let by_sql = |s: &str| {
        xs.iter()
            .find(|x| x.command.sql() == Some(s.as_bytes()))
            .unwrap_or_else(|| panic!("{s}"))
    };
    assert_eq!(by_sql("SELECT * FROM items ORDER BY id").total_rows(), 3);
    assert!(
        matches!(by_sql("SELECT * FROM no_such_table").response, myrr_recording::Response::Err(ref e) if e.code == 1146)
    );
    assert_eq!(
        by_sql("SELECT COUNT(*) FROM items; SELECT MAX(price) FROM items")
            .more
            .len(),
        1
    );
}

#[test]
fn sample_analysis_fails_on_values() {
    let out = myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(root().join("samples/sysbench-ps.myrr"))
        .arg("--candidate")
        .arg(root().join("samples/sysbench-ps.candidate.myrr"))
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["mismatches"]["values"].as_u64().unwrap() > 0);
    assert_eq!(
        r["mismatches"].as_object().unwrap().len(),
        1,
        "only value differences: {:#}",
        r["mismatches"]
    );
    assert_eq!(r["totals"]["joined"], 158);
}
