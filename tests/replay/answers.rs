//! What comes back: on identical data every answer is the recorded one, and a row far
//! beyond the protocol's packet limit is read whole.

use crate::common::*;
use crate::{recorded, replay, serial};
use myrr_recording::{Command as Cmd, Response};

#[test]
fn replay_on_identical_data_gives_identical_answers() {
    let _serial = serial();
    let rec = recorded();
    let dir = tempdir();
    // A pool of 16 threads (sessions beyond 16 share one), and every session on one thread.
    for threads in ["16", "1"] {
        let out = dir.join(format!("cand-{threads}.myrr"));
        replay(rec, &out, &["--speed", "max", "--threads", threads]);
        same_answers(rec, &out);
    }
}

/// Every exchange of `rec` replayed once in `out`, with the same answer.
fn same_answers(rec: &std::path::Path, out: &std::path::Path) {
    let base = read_events(rec);
    let cand = read_events(out);
    let b = exchanges_by_key(&base);
    let c = exchanges_by_key(&cand);
    assert!(b.len() > 500, "recording too small: {}", b.len());
    assert_eq!(b.len(), c.len(), "every exchange replayed once");
    let mut rows = 0;
    let mut executes = 0;
    for (k, x) in &b {
        let y = c.get(k).unwrap_or_else(|| panic!("{k:?} not replayed"));
        assert_eq!(x.command, y.command);
        match (&x.response, &y.response) {
            (Response::Rows(a), Response::Rows(r)) => {
                assert_eq!(
                    a.rows,
                    r.rows,
                    "{k:?} {:?}",
                    x.command.sql().map(String::from_utf8_lossy)
                );
                assert_eq!(
                    a.digest,
                    r.digest,
                    "{k:?} {:?}",
                    x.command.sql().map(String::from_utf8_lossy)
                );
                assert_eq!(
                    myrr_recording::columns_digest(&a.columns),
                    myrr_recording::columns_digest(&r.columns)
                );
                rows += a.rows;
            }
            (Response::Err(a), Response::Err(r)) => assert_eq!(a.code, r.code),
            (Response::Ok(_), Response::Ok(_)) => {}
            (Response::Prepared(a), Response::Prepared(r)) => {
                assert_eq!((a.params, a.columns), (r.params, r.columns));
            }
            (Response::None, Response::None) => {}
            (a, r) => panic!(
                "{k:?}: recorded {} replayed {}: {x:?} / {y:?}",
                a.kind_name(),
                r.kind_name()
            ),
        }
        if matches!(x.command, Cmd::Execute { .. }) {
            executes += 1;
        }
        assert!(y.scheduled_us.is_some() && y.end_us >= y.start_us);
    }
    assert!(
        rows > 1000 && executes > 100,
        "{rows} rows, {executes} executes"
    );
}

/// A row far larger than the 16 MiB packet limit of the protocol (split over several packets
/// on the wire) is read whole and digested.
#[test]
fn a_row_of_70_mib_is_replayed() {
    let _serial = serial();
    let db = db();
    sql(
        db.candidate_port,
        "SET GLOBAL max_allowed_packet = 128 * 1024 * 1024",
    );
    let dir = tempdir();
    let rec = dir.join("big.myrr");
    let q = "SELECT REPEAT('x', 70 * 1024 * 1024) AS big, 1 AS one";
    synthetic_recording(
        &rec,
        "sbtest",
        &[vec![(0, q.into()), (10, "SELECT 2".into())]],
    );
    let out = dir.join("big.out.myrr");
    replay(&rec, &out, &["--speed", "max"]);
    let xs = exchanges_by_key(&read_events(&out));
    let Response::Rows(r) = &xs[&(1, 0, 0)].response else {
        panic!("{:?}", xs[&(1, 0, 0)].response)
    };
    assert!(r.complete && r.rows == 1, "{r:?}");
    assert!(r.bytes > 70 * 1024 * 1024, "{} bytes", r.bytes);
    assert_eq!(
        xs[&(1, 1, 0)].response.kind_name(),
        "rows",
        "the session goes on"
    );
}
