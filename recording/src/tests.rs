//! Round trips and damage handling of the file format.

use std::path::Path;

use crate::digest::RowDigester;
use crate::event::*;
use crate::format::*;
use crate::sample::{RowSample, SampleReason};

fn header() -> Header {
    Header {
        kind: RunKind::Capture,
        tool_version: "test".into(),
        source: "unit".into(),
        started_us: 1,
        options: vec![("port".into(), "3306".into())],
    }
}

fn exchange(session: u64, seq: u64) -> Event {
    let mut d = RowDigester::new();
    d.row([crate::ValueRef::Int(seq as i64)]);
    Event::Exchange(Exchange {
        session,
        seq,
        clone: 0,
        scheduled_us: None,
        start_us: 1_000 + seq,
        end_us: 2_000 + seq,
        command: Command::Query {
            sql: format!("SELECT {seq} /* padding to make blocks fill up a bit faster */")
                .into_bytes(),
            attrs: vec![],
        },
        response: Response::Rows(ResultSet {
            columns: vec![Column {
                name: b"x".to_vec(),
                column_type: 8,
                ..Default::default()
            }]
            .into(),
            rows: 1,
            bytes: 3,
            digest: d.finish(),
            status: 2,
            warnings: 0,
            complete: true,
            error: None,
        }),
        more: vec![],
    })
}

fn events(n: u64) -> Vec<Event> {
    let mut v = vec![Event::SessionStart(SessionStart {
        session: 1,
        ..Default::default()
    })];
    v.extend((0..n).map(|i| exchange(1, i)));
    v.push(Event::SessionEnd(SessionEnd {
        session: 1,
        end_us: 9,
        reason: EndReason::Quit,
        login: Login::Ok,
        exchanges: n,
    }));
    v
}

fn write(evs: &[Event]) -> Vec<u8> {
    let mut w = RecordingWriter::new(Vec::new(), &header()).unwrap();
    for e in evs {
        w.push(e).unwrap();
    }
    w.finish().unwrap()
}

fn read(bytes: &[u8]) -> (Vec<Event>, Option<FormatError>) {
    let r = match RecordingReader::new(bytes, Path::new("t.myrr")) {
        Ok(r) => r,
        Err(e) => return (vec![], Some(e)),
    };
    let mut out = vec![];
    for item in r {
        match item {
            Ok(e) => out.push(e),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[test]
fn every_compression_level_reads_back_the_same() {
    let evs = events(20_000);
    let at = |level| {
        let mut w = RecordingWriter::with_level(Vec::new(), &header(), level).unwrap();
        for e in &evs {
            w.push(e).unwrap();
        }
        w.finish().unwrap()
    };
    let (fast, default) = (at(crate::LEVEL_FAST), at(crate::LEVEL_DEFAULT));
    assert_eq!(default, write(&evs), "the default level is LEVEL_DEFAULT");
    assert_ne!(fast, default, "the level reaches the compressor");
    for bytes in [&fast, &default] {
        let (back, err) = read(bytes);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(back, evs);
    }
}

#[test]
fn round_trip_many_blocks() {
    let evs = events(20_000);
    let bytes = write(&evs);
    let r = RecordingReader::new(&bytes[..], Path::new("t.myrr")).unwrap();
    assert_eq!(r.header(), &header());
    let (back, err) = read(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(back, evs);
    // Repetitive events compress well: far less than the uncompressed encoding.
    assert!(bytes.len() < 20_000 * 40, "{} bytes", bytes.len());
}

#[test]
fn every_truncation_keeps_a_prefix_and_names_the_offset() {
    let evs = events(3000);
    let bytes = write(&evs);
    let step = (bytes.len() / 200).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        let (got, err) = read(&bytes[..cut]);
        assert!(got.len() <= evs.len());
        assert_eq!(
            &evs[..got.len()],
            &got[..],
            "cut {cut}: events read must be a prefix"
        );
        let err = err.unwrap_or_else(|| panic!("cut at {cut} of {} gave no error", bytes.len()));
        let msg = err.to_string();
        assert!(msg.starts_with("t.myrr"), "{msg}");
        if cut >= 18 + 8 {
            assert!(err.offset().unwrap() <= cut as u64, "{msg}");
        }
    }
}

#[test]
fn flipped_byte_is_reported_as_corrupt() {
    let evs = events(3000);
    let bytes = write(&evs);
    let mut seen_prefix = false;
    for at in (40..bytes.len()).step_by(997) {
        let mut b = bytes.clone();
        b[at] ^= 0x55;
        let (got, err) = read(&b);
        let err = err.expect("corruption must be reported");
        assert!(
            matches!(
                err,
                FormatError::Corrupt { .. } | FormatError::Truncated { .. }
            ),
            "{err}"
        );
        assert_eq!(&evs[..got.len()], &got[..]);
        seen_prefix |= !got.is_empty();
    }
    assert!(
        seen_prefix,
        "damage in a later block keeps the earlier ones"
    );
}

#[test]
fn newer_version_and_bad_magic_are_refused() {
    let mut bytes = write(&events(1));
    bytes[8] = 0xff;
    let (_, err) = read(&bytes);
    assert!(
        matches!(err, Some(FormatError::NewerVersion { found: 255, .. })),
        "{err:?}"
    );
    let (_, err) = read(b"PCAP\xd4\xc3\xb2\xa1 not a recording");
    assert!(matches!(err, Some(FormatError::BadMagic { .. })));
    let (_, err) = read(b"");
    assert!(matches!(err, Some(FormatError::BadMagic { .. })));
}

#[test]
fn live_flush_seals_small_blocks() {
    let mut w = RecordingWriter::new(Vec::new(), &header()).unwrap();
    w.push(&exchange(1, 0)).unwrap();
    w.flush_if_older(std::time::Duration::ZERO).unwrap();
    w.push(&exchange(1, 1)).unwrap();
    let bytes = w.finish().unwrap();
    let (got, err) = read(&bytes);
    assert!(err.is_none());
    assert_eq!(got.len(), 2);
}

/// Found by fuzzing: a length prefix of 2^62 inside a block whose checksums are right must be
/// an error, not an allocation that aborts the process.
#[test]
fn crafted_huge_length_is_an_error() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/recording_reader/bincode-len-2pow62-alloc.myrr");
    let bytes = std::fs::read(&path).unwrap();
    let (_, err) = read(&bytes);
    assert!(err.is_some(), "crafted file must give an error");
}

#[test]
fn skim_decodes_the_first_and_last_blocks_and_checks_every_block() {
    let evs = events(20_000);
    let bytes = write(&evs);
    let blocks = block_offsets(&bytes);
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    let skim = RecordingReader::new(&bytes[..], Path::new("t.myrr"))
        .unwrap()
        .skim();
    assert!(skim.damage.is_none(), "{:?}", skim.damage);
    assert_eq!(skim.first[..], evs[..skim.first.len()]);
    assert_eq!(skim.last[..], evs[evs.len() - skim.last.len()..]);
    assert!(!skim.last.is_empty());

    // A flipped byte in a middle block: found, with that block's offset.
    let mid = blocks[blocks.len() / 2];
    let mut bad = bytes.clone();
    bad[mid + 20] ^= 0x55;
    let skim = RecordingReader::new(&bad[..], Path::new("t.myrr"))
        .unwrap()
        .skim();
    let damage = skim.damage.expect("the damaged block is found");
    assert_eq!(damage.offset(), Some(mid as u64), "{damage}");
    assert_eq!(skim.first[..], evs[..skim.first.len()]);
}

#[test]
fn a_new_header_names_this_myrr_and_starts_now() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let h = Header::new(
        RunKind::Replay,
        "db:3306".into(),
        vec![("speed".into(), "1".into())],
    );
    assert_eq!(h.kind, RunKind::Replay);
    // The workspace's version, which the myrr binary reports too.
    assert_eq!(h.tool_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(h.source, "db:3306");
    assert_eq!(h.options, [("speed".to_string(), "1".to_string())]);
    assert!(h.started_us >= before && h.started_us < before + 60_000_000);
}

#[test]
fn version_1_files_still_read_and_backfills_round_trip() {
    // A version-1 file is a version-2 file without Backfill events: the same bytes, but for
    // the version field.
    let evs = events(50);
    let mut v1 = write(&evs);
    v1[8..10].copy_from_slice(&1u16.to_le_bytes());
    let (got, err) = read(&v1);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, evs);

    let mut v0 = v1.clone();
    v0[8..10].copy_from_slice(&0u16.to_le_bytes());
    let (_, err) = read(&v0);
    assert!(
        matches!(
            err,
            Some(FormatError::Corrupt {
                what: "format version",
                ..
            })
        ),
        "{err:?}"
    );

    let mut evs = events(3);
    evs.insert(
        1,
        Event::Backfill(Backfill {
            session: 1,
            at_us: 1_000,
            source: BackfillSource::Server { connection_id: 42 },
            user: Some(b"app".to_vec()),
            db: Some(b"shop".to_vec()),
            variables: vec![(b"sql_mode".to_vec(), b"STRICT_TRANS_TABLES".to_vec())],
            statements: vec![KnownStatement {
                id: 7,
                sql: b"SELECT ? FROM t WHERE id = ?".to_vec(),
                params: 2,
            }],
        }),
    );
    let bytes = write(&evs);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION);
    let (got, err) = read(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, evs);
}

#[test]
fn version_2_files_still_read_and_row_samples_round_trip() {
    // A version-2 file is a version-3 file without Rows events: the same bytes, but for the
    // version field.
    let evs = events(50);
    let mut v2 = write(&evs);
    v2[8..10].copy_from_slice(&2u16.to_le_bytes());
    let (got, err) = read(&v2);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, evs);

    let mut evs = events(3);
    evs.insert(
        2,
        Event::Rows(RowSample {
            session: 1,
            seq: 0,
            clone: 2,
            at_us: 1_000,
            why: SampleReason::DiffersFromRecorded,
            rows: vec![vec![
                Value::Int(1),
                Value::Bytes(b"x".to_vec()),
                Value::Null,
            ]],
            rows_left_out: 4,
            cells_cut: 1,
        }),
    );
    let bytes = write(&evs);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION);
    let (got, err) = read(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, evs);
}
