//! The replay client's work per answer, without the network: a session hands each answer to
//! the MySQL decoder (the one capture uses), which frames it, reads the result set and digests every row.
//!
//! Two answers of sysbench's oltp_read_only, on a connection that logged in and prepared its
//! statements: a point select (one row) and a range select (100 rows of 120 characters).
//! End-to-end replay benchmarks (`benches/replay.sh`) swing by ±10 % on a shared machine;
//! these give stable nanoseconds per answer. Run: `cargo bench -p myrr-wire`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use myrr_recording::{Direction, Event, Response};
use myrr_wire::caps;
use myrr_wire::conn::{Conn, Ctx};
use myrr_wire::handshake::{Greeting, Login};
use myrr_wire::DecodeStats as Stats;

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;
const CAPS: u32 = caps::LONG_PASSWORD
    | caps::CONNECT_WITH_DB
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::MULTI_STATEMENTS
    | caps::DEPRECATE_EOF;
const TYPE_LONGLONG: u8 = 8;
const TYPE_STRING: u8 = 254;

fn packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) {
    myrr_wire::framing::frame(seq, payload, out);
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn greeting() -> Vec<u8> {
    let mut p = Vec::new();
    Greeting {
        capabilities: CAPS,
        collation: 45,
        ..Greeting::default()
    }
    .encode(&mut p);
    p
}

fn login() -> Vec<u8> {
    let mut p = Vec::new();
    Login {
        capabilities: CAPS,
        collation: 45,
        user: b"sbtest",
        database: Some(b"sbtest"),
        ..Login::default()
    }
    .encode(&mut p);
    p
}

fn ok() -> Vec<u8> {
    vec![0, 0, 0, 2, 0, 0, 0]
}

/// OK packet with the 0xfe header that ends a result set under DEPRECATE_EOF.
fn ok_eof() -> Vec<u8> {
    vec![0xfe, 0, 0, 2, 0, 0, 0]
}

fn coldef(name: &[u8], t: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for s in [&b"def"[..], b"sbtest", b"sbtest1", b"sbtest1", name, name] {
        lenenc_str(&mut p, s);
    }
    p.push(0x0c);
    p.extend_from_slice(&45u16.to_le_bytes());
    p.extend_from_slice(&480u32.to_le_bytes());
    p.push(t);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

/// PREPARE of `sql` (statement `id`, `params` parameters, one column `c`): request, answer.
fn prepare(id: u32, sql: &[u8], params: u16) -> (Vec<u8>, Vec<u8>) {
    let mut q = vec![0x16];
    q.extend_from_slice(sql);
    let mut req = Vec::new();
    packet(&mut req, 0, &q);
    let mut head = vec![0];
    head.extend_from_slice(&id.to_le_bytes());
    head.extend_from_slice(&1u16.to_le_bytes());
    head.extend_from_slice(&params.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    let mut ans = Vec::new();
    packet(&mut ans, 1, &head);
    let mut seq = 2;
    for _ in 0..params {
        packet(&mut ans, seq, &coldef(b"?", TYPE_LONGLONG));
        seq += 1;
    }
    packet(&mut ans, seq, &coldef(b"c", TYPE_STRING));
    (req, ans)
}

/// EXECUTE of statement `id` with BIGINT parameters, answered by `rows` rows of one
/// 120-character column.
fn execute(id: u32, args: &[i64], rows: usize) -> (Vec<u8>, Vec<u8>) {
    let mut e = vec![0x17];
    e.extend_from_slice(&id.to_le_bytes());
    e.push(0);
    e.extend_from_slice(&1u32.to_le_bytes());
    e.push(0); // NULL bitmap
    e.push(1); // new_params_bound
    for _ in args {
        e.extend_from_slice(&[TYPE_LONGLONG, 0]);
    }
    for a in args {
        e.extend_from_slice(&a.to_le_bytes());
    }
    let mut req = Vec::new();
    packet(&mut req, 0, &e);
    let mut ans = Vec::new();
    packet(&mut ans, 1, &[1]);
    packet(&mut ans, 2, &coldef(b"c", TYPE_STRING));
    let mut seq = 3u8;
    for r in 0..rows {
        let mut row = vec![0, 0];
        // sysbench's `c`: groups of 11 digits, 120 characters.
        let value = format!("{r:011}-{}", "68487932199-".repeat(9));
        lenenc_str(&mut row, value.as_bytes());
        packet(&mut ans, seq, &row);
        seq = seq.wrapping_add(1);
    }
    packet(&mut ans, seq, &ok_eof());
    (req, ans)
}

/// A decoder past the login, with the two statements prepared, as a replay session has it.
fn session() -> (Conn, Vec<Event>, Stats) {
    let mut conn = Conn::new("c:1".into(), "s:2".into(), 0, true, 1 << 24);
    conn.answers_only = true;
    let (mut events, mut stats, mut next) = (Vec::new(), Stats::default(), 1);
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    let mut greet = Vec::new();
    packet(&mut greet, 0, &greeting());
    conn.data(S, &greet, 0, &mut ctx);
    let mut l = Vec::new();
    packet(&mut l, 1, &login());
    conn.data(C, &l, 0, &mut ctx);
    let mut o = Vec::new();
    packet(&mut o, 2, &ok());
    conn.data(S, &o, 0, &mut ctx);
    for (id, sql, params) in [
        (1, &b"SELECT c FROM sbtest1 WHERE id=?"[..], 1),
        (2, b"SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?", 2),
    ] {
        let (req, ans) = prepare(id, sql, params);
        conn.data(C, &req, 0, &mut ctx);
        conn.data(S, &ans, 0, &mut ctx);
    }
    events.clear();
    (conn, events, stats)
}

fn answers(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay answer");
    for (name, id, args, rows) in [
        ("point select, 1 row", 1, &[5000i64][..], 1),
        ("range select, 100 rows", 2, &[5000, 5099], 100),
    ] {
        let (req, ans) = execute(id, args, rows);
        let (mut conn, mut events, mut stats) = session();
        let mut next = 1;
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ctx = Ctx {
                    events: &mut events,
                    stats: &mut stats,
                    next_session: &mut next,
                    samples: None,
                };
                conn.data(C, &req, 1, &mut ctx);
                conn.data(S, &ans, 2, &mut ctx);
                let answered = events.drain(..).fold(0, |n, e| match e {
                    Event::Exchange(x) => match x.response {
                        Response::Rows(rs) => n + rs.rows,
                        _ => n,
                    },
                    _ => n,
                });
                assert_eq!(answered, rows as u64, "the answer decodes");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, answers);
criterion_main!(benches);
