//! The JSON report against `schema/report.schema.json`: a real report (two synthetic runs
//! written here, analyzed by `myrr_analyze::analyze`, exported by the `Json` exporter) must
//! validate, and documents that drift from it must not.

use std::path::{Path, PathBuf};

use myrr_analyze::export::{Exporter, Json};
use myrr_analyze::{analyze, Options};
use myrr_recording::*;
use serde_json::{json, Value};

const T0: u64 = 1_700_000_000_000_000;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the schema is a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// A fresh directory per call (tests run in parallel).
fn dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("myrr-report-schema-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rows(digest: u64) -> Response {
    Response::Rows(ResultSet {
        columns: vec![Column {
            name: b"c".to_vec(),
            table: b"t".to_vec(),
            column_type: 253,
            ..Default::default()
        }]
        .into(),
        rows: 1,
        bytes: 12,
        digest: ResultDigest {
            ordered: digest,
            unordered: digest ^ 0x5555,
        },
        status: 2,
        warnings: 0,
        complete: true,
        error: None,
    })
}

fn error(code: u16, message: &str) -> Response {
    Response::Err(ErrInfo {
        code,
        state: b"42000".to_vec(),
        message: message.as_bytes().to_vec(),
    })
}

fn query(sql: &str) -> Command {
    Command::Query {
        sql: sql.as_bytes().to_vec(),
        attrs: vec![],
    }
}

/// One exchange: (session, command, response, latency µs).
type X = (u64, Command, Response, u64);

/// The workload; `candidate` switches the answers and latencies that differ.
fn workload(candidate: bool) -> Vec<X> {
    let mut xs = Vec::new();
    // Session 1: a point select, 4× slower on the candidate (regressed).
    for i in 0..60u64 {
        let us = if candidate {
            400 + i % 40
        } else {
            100 + i % 40
        };
        xs.push((
            1,
            query(&format!("SELECT c FROM t WHERE id = {i}")),
            rows(i),
            us,
        ));
    }
    // Session 2: answers that differ, and some that do not.
    xs.push((2, query("SELECT c FROM t WHERE id = 7"), rows(7), 150));
    xs.push((
        2,
        query("SELECT c FROM t WHERE note = '<b>&\"x\"'"),
        rows(if candidate { 99 } else { 98 }),
        150,
    ));
    xs.push((
        2,
        query("SELECT * FROM missing_table"),
        error(1146, "Table 'db.missing_table' doesn't exist"),
        90,
    ));
    xs.push((
        2,
        query("SELECT JSON_VALUE(doc, '$.a') FROM t"),
        if candidate {
            error(1064, "You have an error near '<\"&'>' at line 1")
        } else {
            rows(5)
        },
        120,
    ));
    xs.push((
        2,
        query("UPDATE t SET c = 'x' WHERE id < 10"),
        Response::Ok(OkInfo {
            affected_rows: if candidate { 8 } else { 9 },
            ..Default::default()
        }),
        300,
    ));
    // Session 3: nondeterministic answers (not failures).
    for i in 0..3 {
        xs.push((
            3,
            query("SELECT NOW(), RAND()"),
            rows(if candidate { 1000 + i } else { 2000 + i }),
            50,
        ));
    }
    xs.push((3, Command::Ping, Response::Ok(OkInfo::default()), 20));
    // Session 5: EXECUTEs of a statement prepared before the capture, which the replay
    // skipped, and a query lost in flight.
    for i in 0..3 {
        xs.push((
            5,
            Command::Execute {
                stmt_id: 42,
                flags: 0,
                params: vec![],
                prepare_seen: false,
                raw_params: vec![],
            },
            if candidate {
                Response::Skipped(SkipReason::UnknownStatement)
            } else {
                rows(300 + i)
            },
            80,
        ));
    }
    xs.push((
        5,
        query("SELECT c FROM t WHERE id = 8"),
        if candidate {
            Response::Missing(MissingReason::ConnectionLost)
        } else {
            rows(8)
        },
        80,
    ));
    // Session 4: an exchange only the baseline has.
    xs.push((4, query("SELECT 1"), rows(1), 40));
    if !candidate {
        xs.push((4, query("SELECT 2"), rows(2), 40));
    }
    xs
}

/// `ramp`: the run is a one-step ramp (`replay --ramp 1`), its step marked by phases.
fn write_run(path: &Path, kind: RunKind, candidate: bool, ramp: bool) {
    let mut options = vec![];
    if kind == RunKind::Replay {
        options.push(("server_version".to_string(), "8.0.36 <test>".to_string()));
    }
    if ramp {
        options.push(("ramp".to_string(), "1".to_string()));
    }
    let header = Header {
        kind,
        tool_version: "test".into(),
        source: if candidate {
            "127.0.0.1:3307".into()
        } else {
            "synthetic".into()
        },
        started_us: T0,
        options,
    };
    let mut w = RecordingWriter::create(path, &header).unwrap();
    let xs = workload(candidate);
    let sessions: std::collections::BTreeSet<u64> = xs.iter().map(|x| x.0).collect();
    for &s in &sessions {
        w.push(&Event::SessionStart(SessionStart {
            session: s,
            client: "127.0.0.1:50000".into(),
            server: "127.0.0.1:3306".into(),
            start_us: T0,
            user: Some(b"app".to_vec()),
            db: Some(b"db".to_vec()),
            ..Default::default()
        }))
        .unwrap();
    }
    let phase = |at_us, end| {
        Event::Phase(myrr_recording::Phase {
            index: 0,
            multiple: 1.0,
            first_clone: 0,
            clones: 1,
            speed: 1.0,
            at_us,
            end,
        })
    };
    if ramp {
        w.push(&phase(T0, None)).unwrap();
    }
    let mut seq = std::collections::HashMap::<u64, u64>::new();
    let mut t = T0;
    for (session, command, response, us) in xs {
        let n = seq.entry(session).or_default();
        t += 1_000;
        let noted = matches!(&command, Command::Query { sql, .. } if sql.starts_with(b"SELECT c FROM t WHERE note"));
        w.push(&Event::Exchange(Exchange {
            session,
            seq: *n,
            clone: 0,
            scheduled_us: (kind == RunKind::Replay).then_some(t - 5),
            start_us: t,
            end_us: t + us,
            command,
            response,
            more: vec![],
        }))
        .unwrap();
        if noted {
            // Both runs kept this answer's rows: the example shows them.
            w.push(&Event::Rows(RowSample {
                session,
                seq: *n,
                clone: 0,
                at_us: t,
                why: SampleReason::FirstOfShape,
                rows: vec![vec![myrr_recording::Value::Bytes(
                    if candidate {
                        &b"<b>&\"y\""[..]
                    } else {
                        &b"<b>&\"x\""[..]
                    }
                    .to_vec(),
                )]],
                rows_left_out: 0,
                cells_cut: 0,
            }))
            .unwrap();
        }
        *n += 1;
    }
    if ramp {
        let end = myrr_recording::PhaseEnd {
            stopped: None,
            exchanges: seq.values().sum(),
            late: 0,
            new_errors: 0,
        };
        w.push(&phase(t, Some(end))).unwrap();
    }
    for &s in &sessions {
        w.push(&Event::SessionEnd(SessionEnd {
            session: s,
            end_us: t + 10_000,
            reason: EndReason::Closed,
            login: Login::Ok,
            exchanges: seq[&s],
        }))
        .unwrap();
    }
    w.finish().unwrap();
}

/// The JSON report of the two synthetic runs.
fn report_json(since_scheduled: bool) -> Value {
    let d = dir();
    let (b, c) = (d.join("baseline.myrr"), d.join("candidate.myrr"));
    write_run(&b, RunKind::Capture, false, false);
    // One of the two reports is of a ramp run: its `ramp` is an object, the other's null.
    write_run(&c, RunKind::Replay, true, since_scheduled);
    let opts = Options {
        max_p99_regression: Some(0.2),
        since_scheduled,
        ..Options::default()
    };
    let report = analyze(&[b], &[c], &opts).expect("analyze");
    let _ = std::fs::remove_dir_all(&d);
    let mut out = Vec::new();
    Json.write(&report, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn real_report_matches_the_schema() {
    let v = validator();
    for since_scheduled in [false, true] {
        let doc = report_json(since_scheduled);
        let errs = errors(&v, &doc);
        assert!(errs.is_empty(), "schema errors: {errs:#?}\n{doc:#}");

        // The runs exercise what the schema describes: a failing verdict, a regressed shape,
        // mismatches with examples, nondeterministic differences, one-sided exchanges, and
        // nulls where there are any.
        assert_eq!(doc["verdict"]["pass"], json!(false), "{doc:#}");
        assert_eq!(
            doc["ramp"].is_object(),
            since_scheduled,
            "{:#}",
            doc["ramp"]
        );
        assert!(
            doc["totals"]["mismatched"].as_u64().unwrap() >= 3,
            "{doc:#}"
        );
        assert!(
            doc["totals"]["nondeterministic_differences"]
                .as_u64()
                .unwrap()
                >= 3
        );
        assert!(!doc["totals"]["only_baseline"]
            .as_object()
            .unwrap()
            .is_empty());
        assert!(doc["comparison"]["baseline"]["server_version"].is_null());
        let shapes = doc["shapes"].as_array().unwrap();
        assert!(
            shapes.iter().any(|s| s["latency"] == "regressed"),
            "{doc:#}"
        );
        assert!(shapes
            .iter()
            .any(|s| !s["examples"].as_array().unwrap().is_empty()));
        // The rows both runs kept, the differing cell marked on both sides; an answer with
        // rows on one side only says the other has none.
        let examples: Vec<&Value> = shapes
            .iter()
            .flat_map(|s| s["examples"].as_array().unwrap())
            .collect();
        let noted = examples
            .iter()
            .find(|e| e["statement"] == json!("SELECT c FROM t WHERE note = '<b>&\"x\"'"))
            .unwrap_or_else(|| panic!("{doc:#}"));
        assert_eq!(noted["class"], json!("values"));
        assert_eq!(noted["rows"]["baseline"]["rows"], json!([["<b>&\"x\""]]));
        assert_eq!(noted["rows"]["candidate"]["rows"], json!([["<b>&\"y\""]]));
        assert_eq!(noted["rows"]["baseline"]["differing"], json!([[0, 0]]));
        assert_eq!(noted["rows"]["candidate"]["differing"], json!([[0, 0]]));
        assert!(examples
            .iter()
            .any(|e| e["rows"]["candidate"]["kept"] == json!(false)
                && e["rows"]["baseline"]["kept"] == json!(false)
                && e["rows"]["candidate"]["note"].is_string()));
        assert!(shapes.iter().any(|s| s["nondeterministic"] == json!(true)));
        assert!(doc["verdict"]["thresholds"]["max_p99_regression"].is_number());
        let cand = &doc["unreplayed"]["candidate"];
        assert_eq!(cand["skipped"], json!(3), "{doc:#}");
        assert_eq!(cand["lost_in_flight"], json!(1), "{doc:#}");
        assert_eq!(cand["reasons"].as_array().unwrap().len(), 2, "{doc:#}");
        assert!(doc["totals"]["application_compared"].as_u64().unwrap() > 0);
        // Both runs over time: exchanges 1 ms apart, in one 1 s bucket; the regressed
        // shape over time; the worst window against the baseline's same second.
        let t = &doc["timeline"];
        assert_eq!(t["bucket_s"], json!(1.0), "{t:#}");
        assert_eq!(t["baseline"]["origin_us"], json!(T0 + 1_000), "{t:#}");
        let buckets = t["candidate"]["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 1, "{t:#}");
        // Measured: all but the skipped and lost exchanges (and the commands without an answer).
        assert_eq!(buckets[0]["exchanges"], json!(70), "{t:#}");
        assert_eq!(buckets[0]["errors"], json!(2), "{t:#}");
        assert_eq!(t["baseline"]["buckets"][0]["exchanges"], json!(75), "{t:#}");
        assert_eq!(t["baseline"]["buckets"][0]["errors"], json!(1), "{t:#}");
        assert!(t["worst_window"]["baseline_p99_us"].is_u64(), "{t:#}");
        let regressed = t["shapes"].as_array().unwrap();
        assert_eq!(regressed.len(), 1, "{t:#}");
        // Session 1's 60 point selects and session 2's one (session 5's was lost in flight).
        assert_eq!(regressed[0]["buckets"][0]["candidate"]["count"], json!(61));
    }
}

#[test]
fn drifted_documents_fail() {
    let v = validator();
    let doc = report_json(false);
    assert!(errors(&v, &doc).is_empty());
    let first_example = doc["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| !s["examples"].as_array().unwrap().is_empty())
        .unwrap();
    type Mutation = (&'static str, Box<dyn Fn(&mut Value)>);
    let mutations: Vec<Mutation> = vec![
        (
            "extra top-level field",
            Box::new(|d| {
                d["extra"] = json!(1);
            }),
        ),
        (
            "verdict.pass as a string",
            Box::new(|d| d["verdict"]["pass"] = json!("true")),
        ),
        (
            "missing totals.joined",
            Box::new(|d| {
                d["totals"].as_object_mut().unwrap().remove("joined");
            }),
        ),
        (
            "extra field in a shape",
            Box::new(|d| d["shapes"][0]["new_field"] = json!(null)),
        ),
        (
            "extra field in an example",
            Box::new(move |d| d["shapes"][first_example]["examples"][0]["query"] = json!("x")),
        ),
        (
            "a differing cell with three coordinates",
            Box::new(move |d| {
                d["shapes"][first_example]["examples"][0]["rows"] = json!({
                    "baseline": {"kept": true, "note": null, "columns": [], "rows": [],
                                 "differing": [[0, 0, 0]], "rows_left_out": 0, "cells_cut": 0},
                    "candidate": {"kept": true, "note": null, "columns": [], "rows": [],
                                  "differing": [], "rows_left_out": 0, "cells_cut": 0}
                })
            }),
        ),
        (
            "unknown example class",
            Box::new(move |d| d["shapes"][first_example]["examples"][0]["class"] = json!("other")),
        ),
        (
            "negative count",
            Box::new(|d| d["latency"]["service"]["baseline"]["count"] = json!(-1)),
        ),
        (
            "p99_ratio as a string",
            Box::new(|d| d["shapes"][0]["p99_ratio"] = json!("2.0")),
        ),
        (
            "unknown mismatch class",
            Box::new(|d| d["mismatches"]["something_else"] = json!(1)),
        ),
        (
            "unknown latency verdict",
            Box::new(|d| d["shapes"][0]["latency"] = json!("slower")),
        ),
        (
            "unknown unreplayed reason",
            Box::new(|d| d["unreplayed"]["candidate"]["reasons"][0]["reason"] = json!("bored")),
        ),
        (
            "missing unreplayed.baseline",
            Box::new(|d| {
                d["unreplayed"].as_object_mut().unwrap().remove("baseline");
            }),
        ),
        (
            "application rate above 1",
            Box::new(|d| d["totals"]["application_mismatch_rate"] = json!(1.5)),
        ),
        (
            "missing timeline",
            Box::new(|d| {
                d.as_object_mut().unwrap().remove("timeline");
            }),
        ),
        (
            "extra field in a time bucket",
            Box::new(|d| d["timeline"]["candidate"]["buckets"][0]["p50_us"] = json!(1)),
        ),
        (
            "negative throughput",
            Box::new(|d| d["timeline"]["baseline"]["buckets"][0]["throughput"] = json!(-1.0)),
        ),
        (
            "a stall shorter than a second",
            Box::new(|d| {
                d["timeline"]["candidate"]["stalls"] = json!([{"start_s": 3.0, "length_s": 0.2}])
            }),
        ),
        (
            "worst window without the baseline's figure",
            Box::new(|d| {
                d["timeline"]["worst_window"]
                    .as_object_mut()
                    .unwrap()
                    .remove("baseline_p99_us");
            }),
        ),
        (
            "a shape over time with a bad id",
            Box::new(|d| d["timeline"]["shapes"][0]["id"] = json!("slow")),
        ),
        (
            "server_version as a number",
            Box::new(|d| d["comparison"]["candidate"]["server_version"] = json!(8)),
        ),
    ];
    for (what, mutate) in mutations {
        let mut bad = doc.clone();
        mutate(&mut bad);
        assert!(
            !errors(&v, &bad).is_empty(),
            "{what}: the mutated document still validates"
        );
    }
}

/// Validates a report written elsewhere: `MYRR_REPORT_JSON=report.json cargo test -p
/// myrr-analyze --test report_schema` (nothing to do when unset).
#[test]
fn report_file_from_env_matches_the_schema() {
    let Some(path) = std::env::var_os("MYRR_REPORT_JSON") else {
        return;
    };
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let errs = errors(&validator(), &doc);
    assert!(errs.is_empty(), "{}: {errs:#?}", Path::new(&path).display());
}
