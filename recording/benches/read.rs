//! Reading a recording, as replay's dispatcher and `analyze` do: blocks decompressed, events
//! decoded (columns shared between answers). The events are what sysbench's oltp_read_only
//! records: EXECUTEs of a few statements, each answered by a result set of one column.
//! Writing them is measured too (capture and replay's output). Run:
//! `cargo bench -p myrr-recording`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use myrr_recording::{
    Column, Command, Event, Exchange, Header, Param, RecordingReader, RecordingWriter, Response,
    ResultDigest, ResultSet, RunKind, SessionStart, Value,
};

const EVENTS: u64 = 20_000;

fn header() -> Header {
    Header {
        kind: RunKind::Capture,
        tool_version: "bench".into(),
        source: "bench".into(),
        started_us: 1,
        options: vec![],
    }
}

fn exchange(seq: u64) -> Event {
    let table = format!("sbtest{}", seq % 4 + 1).into_bytes();
    let ranged = seq % 16 >= 10;
    Event::Exchange(Exchange {
        session: seq % 16 + 1,
        seq: seq / 16,
        clone: 0,
        scheduled_us: None,
        start_us: 1_000_000 + seq * 20,
        end_us: 1_000_000 + seq * 20 + 150,
        command: Command::Execute {
            stmt_id: (seq % 16) as u32,
            flags: 0,
            params: (0..1 + ranged as u64)
                .map(|i| Param {
                    column_type: 8,
                    unsigned: false,
                    value: Value::Int(((seq * 7919 + i * 99) % 10_000) as i64),
                })
                .collect(),
            prepare_seen: true,
            raw_params: vec![],
        },
        response: Response::Rows(ResultSet {
            columns: vec![Column {
                name: b"c".to_vec(),
                table,
                column_type: 254,
                flags: 0,
                charset: 45,
                decimals: 0,
                length: 480,
            }]
            .into(),
            rows: if ranged { 100 } else { 1 },
            bytes: if ranged { 12_400 } else { 124 },
            digest: ResultDigest {
                ordered: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                unordered: seq.wrapping_mul(0xbf58_476d_1ce4_e5b9),
            },
            status: 3,
            warnings: 0,
            complete: true,
            error: None,
        }),
        more: vec![],
    })
}

fn events() -> Vec<Event> {
    let mut v: Vec<Event> = (1..=16)
        .map(|session| {
            Event::SessionStart(SessionStart {
                session,
                ..Default::default()
            })
        })
        .collect();
    v.extend((0..EVENTS).map(exchange));
    v
}

fn write(evs: &[Event]) -> Vec<u8> {
    let mut w = RecordingWriter::new(Vec::new(), &header()).expect("writer");
    for e in evs {
        w.push(e).expect("push");
    }
    w.finish().expect("finish")
}

fn read_and_write(c: &mut Criterion) {
    let evs = events();
    let bytes = write(&evs);
    let mut g = c.benchmark_group("recording");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);
    g.bench_function("read (per event)", |b| {
        b.iter(|| {
            let r = RecordingReader::new(&bytes[..], Path::new("bench.myrr")).expect("reader");
            let mut n = 0;
            for e in r {
                e.expect("event");
                n += 1;
            }
            assert_eq!(n, evs.len());
        })
    });
    g.bench_function("write (per event)", |b| b.iter(|| write(&evs).len()));
    g.finish();
}

criterion_group!(benches, read_and_write);
criterion_main!(benches);
