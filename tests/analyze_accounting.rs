//! `myrr analyze` on a capture and a replay that skipped part of it (written here with
//! `RecordingWriter`; no database): the exit code, and the text report naming what was not
//! replayed before any other finding.

mod common;

use std::path::Path;

use common::*;
use myrr_recording::*;

const T0: u64 = 1_700_000_000_000_000;

fn rows(digest: u64) -> Response {
    Response::Rows(ResultSet {
        columns: vec![Column {
            name: b"c".to_vec(),
            column_type: 253,
            ..Default::default()
        }]
        .into(),
        rows: 1,
        bytes: 8,
        digest: ResultDigest {
            ordered: digest,
            unordered: digest,
        },
        status: 2,
        warnings: 0,
        complete: true,
        error: None,
    })
}

/// One session of twenty exchanges: fifteen queries, then five EXECUTEs of a statement
/// prepared before the capture. The replay skipped the EXECUTEs and one query answered with
/// other values.
fn write_run(path: &Path, kind: RunKind) {
    let replay = kind == RunKind::Replay;
    let header = Header {
        kind,
        tool_version: "test".into(),
        source: "synthetic".into(),
        started_us: T0,
        options: vec![],
    };
    let mut w = RecordingWriter::create(path, &header).unwrap();
    w.push(&Event::SessionStart(SessionStart {
        session: 1,
        start_us: T0,
        ..Default::default()
    }))
    .unwrap();
    for seq in 0..20u64 {
        let (command, response) = if seq < 15 {
            let command = Command::Query {
                sql: format!("SELECT c FROM t WHERE id = {seq}").into_bytes(),
                attrs: vec![],
            };
            let digest = if replay && seq == 7 { 999 } else { seq };
            (command, rows(digest))
        } else {
            let command = Command::Execute {
                stmt_id: 3,
                flags: 0,
                params: vec![],
                prepare_seen: false,
                raw_params: vec![],
            };
            let response = if replay {
                Response::Skipped(SkipReason::UnknownStatement)
            } else {
                rows(seq)
            };
            (command, response)
        };
        let start_us = T0 + 1_000 * seq;
        w.push(&Event::Exchange(Exchange {
            session: 1,
            seq,
            clone: 0,
            scheduled_us: replay.then_some(start_us),
            start_us,
            end_us: start_us + 100,
            command,
            response,
            more: vec![],
        }))
        .unwrap();
    }
    w.finish().unwrap();
}

/// Runs `myrr analyze` (text) on the two runs; returns its exit code and output.
fn analyze_text(extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempdir();
    let (base, cand) = (dir.join("capture.myrr"), dir.join("replay.myrr"));
    write_run(&base, RunKind::Capture);
    write_run(&cand, RunKind::Replay);
    let out = myrr()
        .arg("analyze")
        .arg("--baseline")
        .arg(&base)
        .arg("--candidate")
        .arg(&cand)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The position of the first line containing `what`.
fn line_of(text: &str, what: &str) -> usize {
    text.lines()
        .position(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in\n{text}"))
}

#[test]
fn unreplayed_exchanges_fail_and_are_named_first() {
    let (code, text) = analyze_text(&[]);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("myrr analyze: FAIL"), "{text}");
    // Right under the verdict: what was not replayed, with its reason's count, share and
    // explanation.
    assert!(
        lines[1]
            .starts_with("not replayed in the candidate: 5 of 20 recorded exchanges (25.000 %)"),
        "{text}"
    );
    let reason = lines[2];
    assert!(
        reason.contains("unknown_statement")
            && reason.contains(" 5 ")
            && reason.contains("25.000 %")
            && reason.contains(SkipReason::UnknownStatement.explain()),
        "{text}"
    );
    // Then the verdict's reasons: not replayed first, then the one answer that differs.
    let unreplayed = line_of(&text, "were not replayed");
    let differ = line_of(&text, "compared application statements differ");
    assert!(lines[unreplayed].contains("(5 of 20: unknown_statement: 5; limit 1.000 %)"));
    assert!(2 < unreplayed && unreplayed < differ, "{text}");
    assert!(
        lines[differ].contains("1 of 15 compared application statements differ"),
        "the skipped exchanges are no mismatches:\n{text}"
    );
    assert!(differ < line_of(&text, "answers:"), "{text}");
}

#[test]
fn within_the_limits_passes_and_still_names_them() {
    let (code, text) = analyze_text(&["--max-unreplayed", "30%", "--max-mismatch-rate", "10%"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("myrr analyze: PASS"), "{text}");
    assert_eq!(line_of(&text, "not replayed in the candidate"), 1, "{text}");
    assert!(line_of(&text, "unknown_statement") < line_of(&text, "answers:"));
    // Over the mismatch limit alone: the verdict does not blame what was not replayed.
    let (code, text) = analyze_text(&["--max-unreplayed", "30%"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains("were not replayed"), "{text}");
}
