//! Captures built frame by frame (Ethernet, IPv4, TCP around MySQL packets) and fed through
//! `Capture::packet`: what TCP and the capture do to a conversation — segments the capture
//! missed or saw late, a client port reused without a SYN in the capture, handshakes that stop
//! short — and the events and counters that must come out.

use etherparse::PacketBuilder;
use myrr_capture::{Capture, CaptureConfig, LinkType, Stats};
use myrr_recording::{Event, Exchange, MissingReason, Response};

const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_PORT: u16 = 3306;

// ---- MySQL packets ---------------------------------------------------------------------

fn plain(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    plain(0, &p)
}

/// COM_STMT_CLOSE: no answer.
fn close_stmt(id: u32) -> Vec<u8> {
    let mut p = vec![0x19];
    p.extend_from_slice(&id.to_le_bytes());
    plain(0, &p)
}

fn ok() -> Vec<u8> {
    plain(1, &[0, 0, 0, 2, 0, 0, 0])
}

// ---- TCP -------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}

const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

fn frame(to_server: bool, client_port: u16, seq: u32, ack: u32, f: Flags, data: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if to_server {
        (CLIENT_IP, SERVER_IP, client_port, SERVER_PORT)
    } else {
        (SERVER_IP, CLIENT_IP, SERVER_PORT, client_port)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65535);
    if f.syn {
        b = b.syn();
    }
    if f.ack {
        b = b.ack(ack);
    }
    if f.fin {
        b = b.fin();
    }
    if f.rst {
        b = b.rst();
    }
    if !data.is_empty() {
        b = b.psh();
    }
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, data).unwrap();
    out
}

/// One TCP connection: the next sequence number of each direction.
struct Tcp {
    port: u16,
    client: u32,
    server: u32,
}

impl Tcp {
    /// A connection whose client stream is at `client` and server stream at `server`.
    fn new(port: u16, client: u32, server: u32) -> Self {
        Self {
            port,
            client,
            server,
        }
    }

    /// The client's next segment (acknowledging all the server sent); the stream moves on.
    fn c(&mut self, data: &[u8]) -> Vec<u8> {
        let f = frame(true, self.port, self.client, self.server, ACK, data);
        self.client = self.client.wrapping_add(data.len() as u32);
        f
    }

    fn s(&mut self, data: &[u8]) -> Vec<u8> {
        let f = frame(false, self.port, self.server, self.client, ACK, data);
        self.server = self.server.wrapping_add(data.len() as u32);
        f
    }
}

// ---- running a capture -----------------------------------------------------------------

struct Run {
    events: Vec<Event>,
    stats: Stats,
    /// First and last packet times.
    span: (u64, u64),
}

fn capture(frames: &[(u64, Vec<u8>)]) -> Run {
    let mut cap = Capture::new(CaptureConfig::default());
    let mut events = Vec::new();
    for (at, f) in frames {
        cap.packet(*at, LinkType::Ethernet, f);
        events.extend(cap.drain_events());
    }
    cap.finish();
    events.extend(cap.drain_events());
    let times = frames.iter().map(|(t, _)| *t);
    let span = (times.clone().min().unwrap_or(0), times.max().unwrap_or(0));
    let run = Run {
        events,
        stats: cap.stats().clone(),
        span,
    };
    run.check_latencies();
    run
}

impl Run {
    fn exchanges(&self) -> Vec<&Exchange> {
        self.events.iter().filter_map(Event::as_exchange).collect()
    }

    fn exchange(&self, sql: &str) -> &Exchange {
        self.exchanges()
            .into_iter()
            .find(|x| x.command.sql() == Some(sql.as_bytes()))
            .unwrap_or_else(|| panic!("no exchange for {sql}: {:#?}", self.events))
    }

    /// Invariant: an exchange lies within the capture; no latency is longer than its span.
    fn check_latencies(&self) {
        let (first, last) = self.span;
        for x in self.exchanges() {
            assert!(
                x.start_us >= first && x.end_us <= last && x.start_us <= x.end_us,
                "exchange {} of session {} at {}..{} µs, outside the capture's {first}..{last} µs",
                x.seq,
                x.session,
                x.start_us,
                x.end_us
            );
        }
    }
}

// ---- every byte carries the time of its own segment --------------------------------------

/// The capture missed a COM_STMT_CLOSE the server received; the query right behind it waits
/// in the reassembly queue until the server's answer acknowledges the lost bytes. The query
/// started when its own segment was captured, not when the answer flushed it out.
#[test]
fn request_flushed_by_the_servers_ack_starts_at_its_own_packet() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = vec![
        (1_000_000, t.c(&query("SELECT 1"))),
        (1_000_300, t.s(&ok())),
    ];
    let _lost = t.c(&close_stmt(1));
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    frames.push((2_000_800, t.s(&ok())));
    let run = capture(&frames);
    assert_eq!((run.stats.gaps, run.stats.gap_bytes), (1, 9));
    let x = run.exchange("SELECT 2");
    assert!(matches!(x.response, Response::Ok(_)), "{:?}", x.response);
    assert_eq!((x.start_us, x.end_us), (2_000_000, 2_000_800));
}

/// The COM_STMT_CLOSE was lost on the wire and retransmitted after the query that followed
/// it: the query's bytes were captured at 2.0 s and keep that time.
#[test]
fn request_behind_a_filled_hole_starts_at_its_own_packet() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = vec![
        (1_000_000, t.c(&query("SELECT 1"))),
        (1_000_300, t.s(&ok())),
    ];
    let close = t.c(&close_stmt(1));
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    frames.push((2_200_000, close));
    frames.push((2_200_500, t.s(&ok())));
    let run = capture(&frames);
    assert_eq!(run.stats.gaps, 0);
    let x = run.exchange("SELECT 2");
    assert!(matches!(x.response, Response::Ok(_)), "{:?}", x.response);
    assert_eq!((x.start_us, x.end_us), (2_000_000, 2_200_500));
}

/// A query still queued behind a loss when the capture ends is delivered then, with its own
/// time, and waits for an answer that never comes.
#[test]
fn request_queued_at_the_end_of_the_capture_keeps_its_time() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = vec![
        (1_000_000, t.c(&query("SELECT 1"))),
        (1_000_300, t.s(&ok())),
    ];
    let _lost = t.c(&close_stmt(1));
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    // A keep-alive from the server long after: it acknowledges nothing new.
    frames.push((9_000_000, frame(false, 40001, t.server, 1000, ACK, &[])));
    let run = capture(&frames);
    let x = run.exchange("SELECT 2");
    assert_eq!(
        x.response,
        Response::Missing(MissingReason::EndOfCapture),
        "{x:?}"
    );
    assert_eq!(x.start_us, 2_000_000);
}

/// Two queries sent back to back, the first split over two segments: the second starts with
/// the segment that brought its first byte, not with the first query's first segment.
#[test]
fn pipelined_request_starts_with_the_segment_of_its_first_byte() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let first = query("SELECT 'a first statement, split'");
    let (head, tail) = first.split_at(12);
    let mut tail = tail.to_vec();
    tail.extend(query("SELECT 2"));
    let mut answers = ok();
    answers.extend(ok());
    let frames = vec![
        (1_000_000, t.c(head)),
        (1_000_100, t.c(&tail)),
        (1_000_500, t.s(&answers)),
    ];
    let run = capture(&frames);
    let x = run.exchange("SELECT 'a first statement, split'");
    assert_eq!((x.start_us, x.end_us), (1_000_000, 1_000_500));
    let x = run.exchange("SELECT 2");
    assert_eq!((x.start_us, x.end_us), (1_000_100, 1_000_500));
}
