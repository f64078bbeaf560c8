//! Writes a synthetic capture-kind recording: N sessions, each sending `SELECT n` every
//! `gap_ms` milliseconds, all open at once. Used by benches/replay.sh to measure replay with
//! thousands of concurrent sessions.
//!
//! cargo run --release --example synthetic -- SESSIONS QUERIES GAP_MS DB OUT.myrr

use myrr_recording::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: synthetic SESSIONS QUERIES GAP_MS DB OUT.myrr");
        std::process::exit(2);
    }
    let n: u64 = args[1].parse().expect("SESSIONS");
    let q: u64 = args[2].parse().expect("QUERIES");
    let gap: u64 = args[3].parse::<u64>().expect("GAP_MS") * 1000;
    let db = args[4].as_bytes().to_vec();
    let t0 = 1_700_000_000_000_000u64;
    let header = Header {
        kind: RunKind::Capture,
        tool_version: "synthetic".into(),
        source: "examples/synthetic.rs".into(),
        started_us: t0,
        options: vec![],
    };
    let mut w = RecordingWriter::create(std::path::Path::new(&args[5]), &header).expect("create");
    for s in 1..=n {
        w.push(&Event::SessionStart(SessionStart {
            session: s,
            start_us: t0 + s * 100,
            user: Some(b"myrr".to_vec()),
            db: Some(db.clone()),
            ..Default::default()
        }))
        .expect("write");
    }
    // Exchanges in time order across sessions, as a capture writes them.
    for i in 0..q {
        for s in 1..=n {
            let at = t0 + s * 100 + (i + 1) * gap;
            w.push(&Event::Exchange(Exchange {
                session: s,
                seq: i,
                clone: 0,
                scheduled_us: None,
                start_us: at,
                end_us: at + 50,
                command: Command::Query {
                    sql: format!("SELECT {i}").into_bytes(),
                    attrs: vec![],
                },
                response: Response::Rows(ResultSet {
                    columns: Default::default(),
                    rows: 1,
                    bytes: 1,
                    digest: ResultDigest::default(),
                    status: 0,
                    warnings: 0,
                    complete: true,
                    error: None,
                }),
                more: vec![],
            }))
            .expect("write");
        }
    }
    for s in 1..=n {
        w.push(&Event::SessionEnd(SessionEnd {
            session: s,
            end_us: t0 + (q + 1) * gap + s * 100,
            reason: EndReason::Quit,
            login: Login::Ok,
            exchanges: q,
        }))
        .expect("write");
    }
    w.finish().expect("finish");
}
