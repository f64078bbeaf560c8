//! Captures built frame by frame (Ethernet, IPv4, TCP around MySQL packets) and fed through
//! `Capture::packet`: what TCP and the capture do to a conversation — segments the capture
//! missed or saw late, a client port reused without a SYN in the capture, handshakes that stop
//! short — and the events and counters that must come out.

use etherparse::PacketBuilder;
use myrr_capture::{Capture, CaptureConfig, LinkType, Stats};
use myrr_recording::{
    EndReason, Event, Exchange, Login, MissingReason, Response, SessionEnd, SessionStart,
};
use myrr_wire::handshake::{self, Greeting};

const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
const SERVER_PORT: u16 = 3306;

// ---- MySQL packets ---------------------------------------------------------------------

fn plain(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    myrr_wire::framing::frame(seq, payload, &mut v);
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

const CAPS: u32 = 1 | 8 | 0x200 | 0x8000 | (1 << 19);

fn greeting() -> Vec<u8> {
    let mut p = Vec::new();
    Greeting {
        capabilities: CAPS,
        ..Greeting::default()
    }
    .encode(&mut p);
    plain(0, &p)
}

fn login(user: &str) -> Vec<u8> {
    let mut p = Vec::new();
    handshake::Login {
        capabilities: CAPS,
        user: user.as_bytes(),
        database: Some(b"shop"),
        ..handshake::Login::default()
    }
    .encode(&mut p);
    plain(1, &p)
}

/// "SELECT 1" at 1.0 s, answered 300 µs later: the start of most streams below.
fn select_1_answered(t: &mut Tcp) -> Vec<(u64, Vec<u8>)> {
    vec![
        (1_000_000, t.c(&query("SELECT 1"))),
        (1_000_300, t.s(&ok())),
    ]
}

/// An ERR the server sends before the client logged in: no SQL state (nothing negotiated yet).
fn handshake_err(seq: u8, code: u16, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(msg.as_bytes());
    plain(seq, &p)
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

    /// SYN, SYN-ACK, ACK: the streams start one after the initial sequence numbers.
    fn handshake(&mut self) -> Vec<Vec<u8>> {
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        let syn_ack = Flags { ack: true, ..syn };
        let v = vec![
            frame(true, self.port, self.client, 0, syn, &[]),
            frame(
                false,
                self.port,
                self.server,
                self.client.wrapping_add(1),
                syn_ack,
                &[],
            ),
            frame(
                true,
                self.port,
                self.client.wrapping_add(1),
                self.server.wrapping_add(1),
                ACK,
                &[],
            ),
        ];
        self.client = self.client.wrapping_add(1);
        self.server = self.server.wrapping_add(1);
        v
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

    /// Both sides close: FIN from the client, FIN from the server.
    fn close(&mut self) -> Vec<Vec<u8>> {
        let fin = Flags { fin: true, ..ACK };
        let v = vec![
            frame(true, self.port, self.client, self.server, fin, &[]),
            frame(
                false,
                self.port,
                self.server,
                self.client.wrapping_add(1),
                fin,
                &[],
            ),
        ];
        self.client = self.client.wrapping_add(1);
        self.server = self.server.wrapping_add(1);
        v
    }

    fn reset_by_server(&self) -> Vec<u8> {
        let rst = Flags { rst: true, ..ACK };
        frame(false, self.port, self.server, self.client, rst, &[])
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

    fn starts(&self) -> Vec<&SessionStart> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::SessionStart(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn ends(&self) -> Vec<&SessionEnd> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::SessionEnd(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}

// ---- every byte carries the time of its own segment --------------------------------------

/// The capture missed a COM_STMT_CLOSE the server received; the query right behind it waits
/// in the reassembly queue until the server's answer acknowledges the lost bytes. The query
/// started when its own segment was captured, not when the answer flushed it out.
#[test]
fn request_flushed_by_the_servers_ack_starts_at_its_own_packet() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = select_1_answered(&mut t);
    let _lost = t.c(&close_stmt(1));
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    frames.push((2_000_800, t.s(&ok())));
    let run = capture(&frames);
    assert_eq!((run.stats.decode.gaps, run.stats.decode.gap_bytes), (1, 9));
    let x = run.exchange("SELECT 2");
    assert!(matches!(x.response, Response::Ok(_)), "{:?}", x.response);
    assert_eq!((x.start_us, x.end_us), (2_000_000, 2_000_800));
}

/// The COM_STMT_CLOSE was lost on the wire and retransmitted after the query that followed
/// it: the query's bytes were captured at 2.0 s and keep that time.
#[test]
fn request_behind_a_filled_hole_starts_at_its_own_packet() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = select_1_answered(&mut t);
    let close = t.c(&close_stmt(1));
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    frames.push((2_200_000, close));
    frames.push((2_200_500, t.s(&ok())));
    let run = capture(&frames);
    assert_eq!(run.stats.decode.gaps, 0);
    let x = run.exchange("SELECT 2");
    assert!(matches!(x.response, Response::Ok(_)), "{:?}", x.response);
    assert_eq!((x.start_us, x.end_us), (2_000_000, 2_200_500));
}

/// A query still queued behind a loss when the capture ends is delivered then, with its own
/// time, and waits for an answer that never comes.
#[test]
fn request_queued_at_the_end_of_the_capture_keeps_its_time() {
    let mut t = Tcp::new(40001, 1000, 5000);
    let mut frames = select_1_answered(&mut t);
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

// ---- a client port reused without a SYN in the capture ----------------------------------

const DAY_US: u64 = 86_400 * 1_000_000;

/// An answer takes at most this long in these conversations.
fn assert_answered_promptly(run: &Run) {
    for x in run.exchanges() {
        if !matches!(x.response, Response::Missing(_)) {
            assert!(
                x.end_us - x.start_us < 1_000_000,
                "exchange {} of session {} answered after {} µs",
                x.seq,
                x.session,
                x.end_us - x.start_us
            );
        }
    }
}

/// A query whose answer the capture does not have, on a connection whose end it does not
/// have either; 90 days later a new connection from the same client port, its SYN missing
/// too, starts far behind the old one's sequence numbers. Taken for a retransmission, its
/// query was dropped and its OK given to the old query, 90 days late.
#[test]
fn port_reused_behind_without_syn_starts_a_new_session() {
    let mut old = Tcp::new(40002, 2_000_000_000, 7000);
    let mut new = Tcp::new(40002, 1_000_000, 900_000_000);
    let later = 90 * DAY_US;
    let frames = vec![
        (1_000_000, old.c(&query("SELECT SLEEP(100)"))),
        (later, new.c(&query("SELECT 3"))),
        (later + 500, new.s(&ok())),
    ];
    let run = capture(&frames);
    assert_answered_promptly(&run);
    assert_eq!((run.stats.streams_restarted, run.stats.flows), (1, 2));
    assert_eq!(run.stats.decode.gaps, 0);
    let x = run.exchange("SELECT SLEEP(100)");
    assert_eq!(x.response, Response::Missing(MissingReason::Closed));
    let y = run.exchange("SELECT 3");
    assert!(matches!(y.response, Response::Ok(_)), "{:?}", y.response);
    assert_eq!((y.start_us, y.end_us), (later, later + 500));
    assert_ne!(x.session, y.session);
    let starts = run.starts();
    assert_eq!(starts.len(), 2);
    assert!(starts.iter().all(|s| s.mid_stream));
    assert_eq!(starts[1].start_us, later);
    // The old session ended when it was last seen.
    let ends = run.ends();
    assert_eq!(
        (ends[0].session, ends[0].end_us, &ends[0].reason),
        (x.session, 1_000_000, &EndReason::Closed)
    );
}

/// The same, the new connection's sequence numbers far ahead of the old ones, in both
/// directions: not a loss of 1.5 GB (a gap) but a new session.
#[test]
fn port_reused_ahead_without_syn_starts_a_new_session() {
    let mut old = Tcp::new(40003, 10_000, 20_000);
    let mut new = Tcp::new(40003, 1_500_010_000, 1_600_020_000);
    let frames = vec![
        (1_000_000, old.c(&query("SELECT 1"))),
        (1_000_200, old.s(&ok())),
        (2_000_000, old.c(&query("SELECT SLEEP(100)"))),
        (5_000_000, new.c(&query("SELECT 3"))),
        (5_000_500, new.s(&ok())),
    ];
    let run = capture(&frames);
    assert_answered_promptly(&run);
    let x = run.exchange("SELECT SLEEP(100)");
    assert_eq!(x.response, Response::Missing(MissingReason::Closed));
    let y = run.exchange("SELECT 3");
    assert!(matches!(y.response, Response::Ok(_)), "{:?}", y.response);
    assert_eq!((y.start_us, y.end_us), (5_000_000, 5_000_500));
    assert_ne!(x.session, y.session);
    assert_eq!((run.stats.streams_restarted, run.stats.decode.gaps), (1, 0));
}

/// A new connection on a reused port whose greeting is in the capture but not its SYN: the
/// greeting starts the new flow, and its login is decoded.
#[test]
fn port_reused_without_syn_decodes_the_new_login() {
    let mut old = Tcp::new(40004, 3_000_000_000, 3_100_000_000);
    let mut new = Tcp::new(40004, 100_000, 200_000);
    let frames = vec![
        (1_000_000, old.c(&query("SELECT 1"))),
        (1_000_200, old.s(&ok())),
        (3_000_000, new.s(&greeting())),
        (3_000_100, new.c(&login("app"))),
        (3_000_200, new.s(&plain(2, &[0, 0, 0, 2, 0, 0, 0]))),
        (3_000_300, new.c(&query("SELECT 3"))),
        (3_000_500, new.s(&ok())),
    ];
    let run = capture(&frames);
    assert_answered_promptly(&run);
    let starts = run.starts();
    assert_eq!(starts.len(), 2);
    assert!(!starts[1].mid_stream);
    assert_eq!(starts[1].user.as_deref(), Some(&b"app"[..]));
    let y = run.exchange("SELECT 3");
    assert_eq!((y.start_us, y.end_us), (3_000_300, 3_000_500));
    assert_eq!(y.session, starts[1].session);
    assert_eq!(run.stats.streams_restarted, 1);
}

/// Jumps the same connection does make stay in its session: a retransmission, and the
/// capture losing more than a window of the client's bytes (its acknowledgement of the
/// server's bytes shows the connection is the same one): a gap.
#[test]
fn a_loss_beyond_the_window_is_a_gap_not_a_new_session() {
    let mut t = Tcp::new(40005, 10_000, 20_000);
    let first = t.c(&query("SELECT 1"));
    let mut frames = vec![
        (1_000_000, first.clone()),
        (1_000_200, t.s(&ok())),
        (1_000_300, first),
    ];
    t.client += 100 << 20;
    frames.push((2_000_000, t.c(&query("SELECT 2"))));
    frames.push((2_000_500, t.s(&ok())));
    let run = capture(&frames);
    assert_answered_promptly(&run);
    assert_eq!(run.stats.streams_restarted, 0);
    assert_eq!(run.starts().len(), 1);
    assert_eq!(
        (run.stats.decode.gaps, run.stats.decode.gap_bytes),
        (1, 100 << 20)
    );
    let y = run.exchange("SELECT 2");
    assert!(matches!(y.response, Response::Ok(_)), "{:?}", y.response);
    assert_eq!((y.start_us, y.end_us), (2_000_000, 2_000_500));
}

// ---- handshakes that stop short --------------------------------------------------------

/// The server greets; the client never logs in and closes (a health check, a port probe, a
/// client that gave up). No session, but counted.
#[test]
fn greeting_never_answered_is_an_aborted_handshake() {
    for end in ["client closes", "server resets"] {
        let mut t = Tcp::new(40010, 100, 200);
        let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
        for f in t.handshake() {
            frames.push((1_000_000, f));
        }
        frames.push((1_000_100, t.s(&greeting())));
        if end == "client closes" {
            frames.extend(t.close().into_iter().map(|f| (1_000_200, f)));
        } else {
            frames.push((11_000_000, t.reset_by_server()));
        }
        let run = capture(&frames);
        assert_eq!(run.stats.decode.handshakes_aborted, 1, "{end}");
        assert_eq!(run.stats.decode.logins_failed, 0, "{end}");
        assert!(run.starts().is_empty(), "{end}");
    }
    // Still waiting for the login when the capture ends: not aborted.
    let mut t = Tcp::new(40011, 100, 200);
    let mut frames: Vec<(u64, Vec<u8>)> =
        t.handshake().into_iter().map(|f| (1_000_000, f)).collect();
    frames.push((1_000_100, t.s(&greeting())));
    assert_eq!(capture(&frames).stats.decode.handshakes_aborted, 0);
}

/// The server greets, then refuses before the client answered (an ERR instead of the
/// client's login): a failed login, and a session that says so.
#[test]
fn err_after_the_greeting_is_a_failed_login() {
    let mut t = Tcp::new(40012, 100, 200);
    let mut frames: Vec<(u64, Vec<u8>)> =
        t.handshake().into_iter().map(|f| (1_000_000, f)).collect();
    frames.push((1_000_100, t.s(&greeting())));
    frames.push((11_000_000, t.s(&handshake_err(1, 1043, "Bad handshake"))));
    frames.extend(t.close().into_iter().map(|f| (11_000_100, f)));
    let run = capture(&frames);
    assert_eq!(run.stats.decode.logins_failed, 1);
    assert_eq!(run.stats.decode.handshakes_aborted, 0);
    assert_eq!(run.starts().len(), 1);
    let ends = run.ends();
    assert!(
        matches!(&ends[..], [e] if matches!(e.login, Login::Failed { code: 1043, .. })),
        "{ends:?}"
    );
}

/// An ERR instead of the greeting ("Host is blocked", "Too many connections"), with or
/// without the SYN in the capture: a failed login.
#[test]
fn err_instead_of_the_greeting_is_a_failed_login() {
    for syn in [true, false] {
        let mut t = Tcp::new(40013, 100, 200);
        let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
        if syn {
            frames.extend(t.handshake().into_iter().map(|f| (1_000_000, f)));
        }
        frames.push((
            1_000_100,
            t.s(&handshake_err(0, 1040, "Too many connections")),
        ));
        frames.extend(t.close().into_iter().map(|f| (1_000_200, f)));
        let run = capture(&frames);
        assert_eq!(run.stats.decode.logins_failed, 1, "syn {syn}");
        let ends = run.ends();
        assert!(
            matches!(&ends[..], [e] if matches!(e.login, Login::Failed { code: 1040, .. })),
            "syn {syn}: {ends:?}"
        );
    }
}
