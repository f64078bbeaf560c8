//! `Capture`: the whole pipeline (link layer → IP → TCP reassembly → MySQL decoding), fed
//! arbitrary frames, then finished.
//!
//! Input: `flags:u8 frame*`, frame := `link:u8 dt:u16le len:u16le bytes[len]`
//!   flags bit 0: small limits (reorder 4 KiB, max packet 64 KiB, 4 flows, 10 s idle timeout)
//!                instead of `CaptureConfig::default()`; server port 3306 either way
//!   flags bit 1: a server view that backfills every flow starting without a SYN with
//!                statements 1..=4 of 0..=3 parameters (their EXECUTEs then decode)
//!   flags bit 2: TLS plaintext comes from inside the server (`tls_plaintext`)
//!   link % 6: Ethernet, LinuxSll, LinuxSll2, Null, Loop, Raw; link >= 0xf0: not a frame but
//!     TLS plaintext (`Capture::plaintext`) of 10.0.0.1:(40000 + link & 3) ↔ 10.0.0.2:3306,
//!     client → server when link & 4 == 0, with `dt` bytes lost before it when link & 8
//!   dt: time step, µs; with the top bit set, (dt & 0x7fff) seconds
//!
//! Checks: no panic; events are well formed per session: SessionStart first and once, no event
//! for a session not started, none after its SessionEnd, exchange numbers unique;
//! after `finish()` every started session has ended exactly once.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use myrr_capture::backfill::ServerView;
use myrr_capture::{Capture, CaptureConfig, LinkType, Plaintext};
use myrr_recording::{Backfill, Direction, Event, KnownStatement};

/// Knows every connection: statements 1..=4, statement i with i - 1 parameters.
#[derive(Debug)]
struct Everything;

impl ServerView for Everything {
    fn lookup(&mut self, _: SocketAddr, _: SocketAddr) -> Option<Backfill> {
        Some(Backfill {
            user: Some(b"app".to_vec()),
            db: Some(b"db".to_vec()),
            statements: (1..=4u32)
                .map(|id| KnownStatement { id, sql: b"SELECT ?".to_vec(), params: id as u16 - 1 })
                .collect(),
            ..Backfill::default()
        })
    }
}

#[derive(Default)]
struct Session {
    ended: bool,
    seqs: std::collections::HashSet<u64>,
}

fn check(events: impl Iterator<Item = Event>, sessions: &mut HashMap<u64, Session>) {
    for e in events {
        let id = e.session().unwrap_or_else(|| panic!("a capture made a run-wide event: {e:?}"));
        match &e {
            Event::SessionStart(_) => {
                assert!(sessions.insert(id, Session::default()).is_none(), "session {id} started twice");
                continue;
            }
            Event::Backfill(b) => assert!(!b.statements.is_empty(), "an empty backfill: {b:?}"),
            _ => {}
        }
        let s = sessions.get_mut(&id).unwrap_or_else(|| panic!("event for unknown session: {e:?}"));
        assert!(!s.ended, "event after the session ended: {e:?}");
        match &e {
            Event::SessionEnd(end) => {
                s.ended = true;
                if let Some(l) = s.seqs.iter().max() {
                    assert!(*l < end.exchanges, "exchange {l} but SessionEnd.exchanges {}", end.exchanges);
                }
            }
            Event::Exchange(x) => {
                // Unique, not necessarily in order (see README, findings).
                assert!(s.seqs.insert(x.seq), "session {id}: exchange {} twice", x.seq);
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    myrr_fuzz::run(|| one(data));
});

fn one(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let mut config = if flags & 1 != 0 {
        CaptureConfig {
            server_ports: vec![3306],
            reorder_limit: 4096,
            max_packet: 64 << 10,
            max_flows: 4,
            idle_timeout_us: 10_000_000,
            ..Default::default()
        }
    } else {
        CaptureConfig { server_ports: vec![3306], ..Default::default() }
    };
    config.tls_plaintext = flags & 4 != 0;
    if flags & 2 != 0 {
        let view: Arc<Mutex<dyn ServerView>> = Arc::new(Mutex::new(Everything));
        config.server_view = Some(view);
    }
    let mut cap = Capture::new(config);
    let mut sessions = HashMap::new();
    let mut ts: u64 = 1_700_000_000_000_000;
    while rest.len() >= 5 {
        let link = match rest[0] % 6 {
            0 => LinkType::Ethernet,
            1 => LinkType::LinuxSll,
            2 => LinkType::LinuxSll2,
            3 => LinkType::Null,
            4 => LinkType::Loop,
            _ => LinkType::Raw,
        };
        let dt = u16::from_le_bytes([rest[1], rest[2]]) as u64;
        ts += if dt & 0x8000 != 0 { (dt & 0x7fff) * 1_000_000 } else { dt };
        let len = (u16::from_le_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
        let frame = &rest[5..5 + len];
        let tag = rest[0];
        rest = &rest[5 + len..];
        if tag >= 0xf0 {
            cap.plaintext(Plaintext {
                ts_us: ts,
                client: SocketAddr::from(([10, 0, 0, 1], 40000 + (tag & 3) as u16)),
                server: SocketAddr::from(([10, 0, 0, 2], 3306)),
                direction: if tag & 4 == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                data: frame.to_vec(),
                lost_before: if tag & 8 != 0 { dt } else { 0 },
            });
            check(cap.drain_events(), &mut sessions);
            continue;
        }
        cap.packet(ts, link, frame);
        check(cap.drain_events(), &mut sessions);
    }
    cap.finish();
    check(cap.drain_events(), &mut sessions);
    for (id, s) in &sessions {
        assert!(s.ended, "session {id} not ended after finish()");
    }
    let st = cap.stats();
    assert!(st.packets >= st.undecodable_packets);
}
