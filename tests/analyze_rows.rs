//! Readable differences end to end: a capture keeps the first rows of the first answers of
//! each statement shape, a replay the rows of the answers that differ from the recorded ones,
//! and analyze shows both sides of a difference — the statement with its literals (text
//! protocol, the mariadb CLI) or its bound parameters (binary protocol, sysbench's prepared
//! statements) and the differing cell marked — in JSON and in text.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value as Json;

/// The tests share the servers' databases.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads the same data into `myrr_rows` and sysbench's `myrr_rows_sb` on a server.
fn load(port: u16) {
    sql(
        port,
        "DROP DATABASE IF EXISTS myrr_rows; CREATE DATABASE myrr_rows; USE myrr_rows; \
         CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(6,2)); \
         INSERT INTO t VALUES (1,'one',1.10),(2,'two',2.20),(3,'three',3.30),(4,'four',4.40)",
    );
}

fn examples<'a>(report: &'a Json, fingerprint: &str) -> &'a Vec<Json> {
    let shape = report["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fingerprint"] == fingerprint)
        .unwrap_or_else(|| panic!("no shape {fingerprint}: {:#}", report["shapes"]));
    shape["examples"].as_array().unwrap()
}

fn side<'a>(example: &'a Json, which: &str) -> &'a Json {
    &example["rows"][which]
}

/// The cells marked as differing on one side, as their text.
fn marked(side: &Json) -> Vec<String> {
    side["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rc| {
            let (r, c) = (
                rc[0].as_u64().unwrap() as usize,
                rc[1].as_u64().unwrap() as usize,
            );
            side["rows"][r][c].as_str().unwrap().to_string()
        })
        .collect()
}

fn capture_workload(dir: &Path) -> std::path::PathBuf {
    let db = db();
    load(db.source_port);
    sql(
        db.source_port,
        "DROP DATABASE IF EXISTS myrr_rows_sb; CREATE DATABASE myrr_rows_sb",
    );
    let sb = |cmd: &str| {
        sysbench_test(
            "oltp_point_select",
            db.source_port,
            &[
                "--mysql-db=myrr_rows_sb",
                "--tables=1",
                "--table-size=4",
                "--threads=1",
                "--events=12",
                "--db-ps-mode=auto",
                cmd,
            ],
        )
    };
    run(&mut sb("prepare"));
    let capture = dir.join("rows.myrr");
    let cap = LiveCapture::start_with(db.source_port, &capture, &["--json"]);
    let mut cli = std::process::Command::new("mariadb");
    cli.args(["-h127.0.0.1", "--protocol=tcp", "-umyrr", "-pmyrr"])
        .arg(format!("-P{}", db.source_port))
        .args([
            "myrr_rows",
            "-e",
            "SELECT id, v, d FROM t WHERE id BETWEEN 1 AND 3 ORDER BY id; \
             SELECT id, v, d FROM t WHERE id BETWEEN 2 AND 4 ORDER BY id; \
             SELECT COUNT(*) FROM t; SELECT v FROM t WHERE id = 2",
        ]);
    run(&mut cli);
    run(&mut sb("run"));
    let summary = cap.stop();
    // The capture says how many answers it kept rows of: the first (at most 3) of each shape.
    let json: Json = summary
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary in {summary}"));
    let kept = json["row_samples"]["kept"].as_u64().unwrap();
    assert!((5..=20).contains(&kept), "{json:#}");
    capture
}

#[test]
fn a_changed_row_shows_its_statement_and_the_differing_cell_on_both_sides() {
    let _s = serial();
    let db = db();
    let dir = tempdir();
    let capture = capture_workload(&dir);
    // Every row sysbench reads differs on the candidate, and one row the CLI reads.
    load(db.candidate_port);
    copy_db(db, "myrr_rows_sb");
    sql(
        db.candidate_port,
        "UPDATE myrr_rows.t SET v = 'TWO' WHERE id = 2; \
         UPDATE myrr_rows_sb.sbtest1 SET c = CONCAT('changed-', id)",
    );
    let cand = dir.join("cand.myrr");
    let url = format!("mysql://myrr:myrr@127.0.0.1:{}", db.candidate_port);
    run(myrr()
        .arg("replay")
        .arg(&capture)
        .args(["--target", &url, "--speed", "max", "-o"])
        .arg(&cand));
    let (code, r) = analyze_json(&capture, &[&cand], &[]);
    assert_eq!(code, 1, "{:#}", r["verdict"]);
    assert_eq!(r["schema_version"], 5);

    // Literal SQL (text protocol): both sides' rows, the changed cell marked on each.
    let xs = examples(
        &r,
        "select id, v, d from t where id between ? and ? order by id",
    );
    assert_eq!(xs.len(), 2, "{xs:#?}");
    let x = xs
        .iter()
        .find(|x| x["statement"] == "SELECT id, v, d FROM t WHERE id BETWEEN 1 AND 3 ORDER BY id")
        .unwrap_or_else(|| panic!("{xs:#?}"));
    assert_eq!(x["class"], "values");
    assert_eq!(x["params"], Json::Array(vec![]));
    let (b, c) = (side(x, "baseline"), side(x, "candidate"));
    assert_eq!(b["kept"], true, "{x:#}");
    assert_eq!(c["kept"], true, "{x:#}");
    assert_eq!(b["columns"], serde_json::json!(["id", "v", "d"]));
    assert_eq!(b["rows"][1], serde_json::json!(["2", "two", "2.20"]));
    assert_eq!(c["rows"][1], serde_json::json!(["2", "TWO", "2.20"]));
    assert_eq!(b["differing"], serde_json::json!([[1, 1]]), "{x:#}");
    assert_eq!(c["differing"], serde_json::json!([[1, 1]]), "{x:#}");
    // The shape that reads no changed row has no example.
    let count = r["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fingerprint"] == "select count(*) from t")
        .unwrap();
    assert!(count["examples"].as_array().unwrap().is_empty());

    // A prepared statement (binary protocol): its text and its bound id; the first answers of
    // the shape were kept by the capture, and by the replay since they differ.
    let xs = examples(&r, "select c from sbtest? where id=?");
    assert_eq!(xs.len(), 3, "{xs:#?}");
    let both: Vec<&Json> = xs
        .iter()
        .filter(|x| side(x, "baseline")["kept"] == true && side(x, "candidate")["kept"] == true)
        .collect();
    assert!(!both.is_empty(), "{xs:#?}");
    for x in both {
        assert_eq!(x["statement"], "SELECT c FROM sbtest1 WHERE id=?");
        let params = x["params"].as_array().unwrap();
        assert_eq!(params.len(), 1, "{x:#}");
        let id: u32 = params[0].as_str().unwrap().parse().unwrap();
        assert!((1..=4).contains(&id), "{x:#}");
        let (b, c) = (side(x, "baseline"), side(x, "candidate"));
        assert_eq!(b["columns"], serde_json::json!(["c"]));
        assert_eq!(marked(c), [format!("changed-{id}")], "{x:#}");
        let was = marked(b);
        assert_eq!(was.len(), 1, "{x:#}");
        assert!(!was[0].starts_with("changed"), "{x:#}");
    }

    // The text report: the statement with its literals or parameters, the cells between *.
    let text = run(myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(&capture)
        .arg("--candidate")
        .arg(&cand)
        .args(["--format", "text", "--max-mismatch-rate", "100%"]));
    for want in [
        "Differing answers",
        "SELECT id, v, d FROM t WHERE id BETWEEN 1 AND 3 ORDER BY id",
        "*two*",
        "*TWO*",
        "SELECT c FROM sbtest1 WHERE id=?  -- params: ",
        "*changed-",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
}

#[test]
fn a_replay_keeps_only_the_rows_that_differ_and_nothing_with_no_row_samples() {
    let _s = serial();
    let db = db();
    let dir = tempdir();
    let capture = capture_workload(&dir);
    load(db.candidate_port);
    copy_db(db, "myrr_rows_sb");
    sql(
        db.candidate_port,
        "UPDATE myrr_rows.t SET v = 'TWO' WHERE id = 2",
    );
    let url = format!("mysql://myrr:myrr@127.0.0.1:{}", db.candidate_port);
    let replay = |out: &Path, extra: &[&str]| {
        run(myrr()
            .arg("replay")
            .arg(&capture)
            .args(["--target", &url, "--speed", "max", "-o"])
            .arg(out)
            .args(extra));
    };
    let kept = dir.join("kept.myrr");
    replay(&kept, &[]);
    let samples = |p: &Path| -> Vec<myrr_recording::RowSample> {
        read_events(p)
            .into_iter()
            .filter_map(|e| match e {
                myrr_recording::Event::Rows(r) => Some(r),
                _ => None,
            })
            .collect()
    };
    // The three CLI statements that read row 2; sysbench's answers are the recorded ones.
    let got = samples(&kept);
    assert_eq!(got.len(), 3, "{got:#?}");
    for s in &got {
        assert_eq!(s.why, myrr_recording::SampleReason::DiffersFromRecorded);
        assert!(s
            .rows
            .iter()
            .any(|r| r.contains(&myrr_recording::Value::Bytes(b"TWO".to_vec()))));
    }
    let none = dir.join("none.myrr");
    replay(&none, &["--no-row-samples"]);
    assert!(samples(&none).is_empty());
    // Without rows on the candidate's side, the example says so.
    let (_, r) = analyze_json(&capture, &[&none], &[]);
    let xs = examples(
        &r,
        "select id, v, d from t where id between ? and ? order by id",
    );
    assert_eq!(side(&xs[0], "candidate")["kept"], false, "{:#}", xs[0]);
    assert!(side(&xs[0], "candidate")["note"]
        .as_str()
        .unwrap()
        .contains("not kept"));
    assert_eq!(side(&xs[0], "baseline")["kept"], true, "{:#}", xs[0]);
    assert_eq!(side(&xs[0], "baseline")["differing"], serde_json::json!([]));
}

#[test]
fn with_production_as_the_reference_what_the_baseline_did_not_reproduce_is_kept_out() {
    let _s = serial();
    let db = db();
    let dir = tempdir();
    let capture = capture_workload(&dir);
    let url = format!("mysql://myrr:myrr@127.0.0.1:{}", db.candidate_port);
    let replay = |out: &Path| {
        run(myrr()
            .arg("replay")
            .arg(&capture)
            .args(["--target", &url, "--speed", "max", "-o"])
            .arg(out));
    };
    // The baseline's copy of production is not faithful: row 3 differs. The candidate has the
    // same flaw, and a real difference of its own: row 2.
    load(db.candidate_port);
    copy_db(db, "myrr_rows_sb");
    sql(
        db.candidate_port,
        "UPDATE myrr_rows.t SET v = 'unfaithful' WHERE id = 3",
    );
    let base = dir.join("base.myrr");
    replay(&base);
    sql(
        db.candidate_port,
        "UPDATE myrr_rows.t SET v = 'TWO' WHERE id = 2",
    );
    let cand = dir.join("cand.myrr");
    replay(&cand);

    let (code, r) = analyze_json(&base, &[&cand], &["--reference", capture.to_str().unwrap()]);
    assert_eq!(code, 1, "{:#}", r["verdict"]);
    let x = &r["reproduction"];
    // The two range reads see row 3: the baseline did not reproduce them.
    assert_eq!(x["not_reproduced"], 2, "{x:#}");
    assert_eq!(x["causes"], serde_json::json!({"values": 2}), "{x:#}");
    assert_eq!(x["excluded"], 2, "{x:#}");
    // Every recorded exchange with an answer was compared with the baseline's.
    assert!(x["compared"].as_u64().unwrap() >= 15, "{x:#}");
    assert!(
        x["compared"].as_u64() <= x["reference"]["exchanges"].as_u64(),
        "{x:#}"
    );
    assert_eq!(r["totals"]["not_compared"]["not_reproduced"], 2);
    // What remains is the candidate's own difference.
    assert_eq!(
        r["mismatches"],
        serde_json::json!({"values": 1}),
        "{:#}",
        r["shapes"]
    );
    let xs = examples(&r, "select v from t where id = ?");
    assert_eq!(xs[0]["statement"], "SELECT v FROM t WHERE id = 2");
    assert!(examples(
        &r,
        "select id, v, d from t where id between ? and ? order by id"
    )
    .is_empty());

    // Without the reference the range reads count as differences, and the report says why it
    // cannot tell.
    let (_, plain) = analyze_json(&base, &[&cand], &[]);
    assert_eq!(plain["totals"]["mismatched"], 3, "{:#}", plain["totals"]);
    assert!(plain["reproduction"]["reference"].is_null());
    let text = run(myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(&base)
        .arg("--candidate")
        .arg(&cand)
        .args(["--max-mismatch-rate", "100%"]));
    assert!(text.contains("cannot be told apart"), "{text}");
    let text = run(myrr()
        .arg("analyze")
        .arg("--reference")
        .arg(&capture)
        .arg("--baseline")
        .arg(&base)
        .arg("--candidate")
        .arg(&cand)
        .args(["--max-mismatch-rate", "100%"]));
    assert!(
        text.contains("baseline answers") && text.contains("not reproduced (values 2)"),
        "{text}"
    );
}
