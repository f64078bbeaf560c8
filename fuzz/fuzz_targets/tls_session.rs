//! A MySQL connection read through `TlsFlow` (where TLS starts after the SSLRequest, the TLS
//! record layer, hellos, key schedule, decryption) into `Conn`, with a key log holding the
//! secrets of the corpus's wireshark-notes TLS captures (so their streams, the seeds, decrypt)
//! and, optionally, key log lines from the input.
//!
//! Input: `flags:u8 [keylog_len:u16le keylog[keylog_len]] op*`
//!   flags bit 0: syn_seen (only then is TLS read, as in a capture);
//!   bit 1: the key log lines come first in the input;
//!   bit 2: the secrets come from the server (`TlsFlow::live`, `--tls-probe`): tag 0xFF
//!   gives the first corpus capture's master secret, 0xFB the second's, and a time jump
//!   expires the wait for them
//!   op := tag:u8 ...   (the `conn` target's ops)
//!     tag & 3 == 0 | 1 : data, direction = tag & 1 (0 = client→server); `len:u16le bytes[len]`
//!     tag & 3 == 2     : gap, direction = (tag >> 2) & 1; `n:u16le` bytes lost
//!     tag & 3 == 3     : time jumps by (tag >> 2) seconds
//!   At the end: `finish`, then `conn.end(EndReason::EndOfRun, ..)`.
//!
//! Checks: no panic; the events form one well-ordered session (SessionStart first and once,
//! SessionEnd last and once); a session read in plaintext is never also counted encrypted;
//! the TLS reader's buffers stay bounded.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use myrr_capture::tls::record::{HEADER_LEN, MAX_BODY, MAX_KEPT};
use myrr_capture::tls::session::RESYNC_MAX;
use myrr_capture::tls::{KeyLog, SecretKind, TlsFlow, TlsStats, KEYS_WAIT_BYTES};
use myrr_recording::{Direction, EndReason, Event};
use myrr_wire::conn::{Conn, Ctx};
use myrr_wire::DecodeStats;

/// The key log lines of the corpus's wireshark-notes__mysql-ssl{,-larger}.pcapng.
const CORPUS_KEYS: &str = "\
CLIENT_RANDOM 03ED79E6D1BBFF454C8C512424D5B6B24D24AFAB1307B24AF91F440350955DDE 14BD78D3BCF5F0F9AE605A56C981F67CDAEEF1DA8C202BEAF12C32077DEE7344F07089A2EE5B492BAE612CDF6C8B0723
CLIENT_RANDOM E39B5BF4903C68684E8512FB2F60213E9EE843A0810B4982B607914D8092D482 95A5D39B02693BC1FB39254B179E9293007F6D37C66172B1EE4EF0D5E25CE1DABE878B6143DC3B266883E51A75E99DF9
";

fn corpus_keys() -> Arc<KeyLog> {
    static K: OnceLock<Arc<KeyLog>> = OnceLock::new();
    K.get_or_init(|| {
        let mut k = KeyLog::default();
        k.parse(CORPUS_KEYS.as_bytes(), "corpus");
        Arc::new(k)
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    myrr_fuzz::run(|| one(data));
});

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(rest.len());
    let (a, b) = rest.split_at(n);
    *rest = b;
    a
}

fn u16le(rest: &mut &[u8]) -> usize {
    let b = take(rest, 2);
    match b {
        [a, b] => usize::from(*a) | usize::from(*b) << 8,
        [a] => usize::from(*a),
        _ => 0,
    }
}

fn one(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let syn = flags & 1 != 0;
    let keylog = if flags & 2 != 0 {
        let n = u16le(&mut rest);
        let mut k = (*corpus_keys()).clone();
        k.parse(take(&mut rest, n), "input");
        Arc::new(k)
    } else {
        corpus_keys()
    };
    let mut now: u64 = 1_700_000_000_000_000;
    let mut events = Vec::new();
    let mut stats = DecodeStats::default();
    let mut tls_stats = TlsStats::default();
    let mut next = 1;
    let mut conn = Conn::new("c:1".into(), "s:2".into(), now, syn, 1 << 20);
    let live = flags & 4 != 0;
    let mut flow = syn.then(|| {
        if live {
            TlsFlow::live(&mut conn)
        } else {
            TlsFlow::new(keylog, &mut conn)
        }
    });
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next,
        samples: None,
    };
    while let Some((&tag, r)) = rest.split_first() {
        rest = r;
        let dir = if tag & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        match tag & 3 {
            0 | 1 => {
                now += u64::from(tag >> 2) * 1000;
                let n = u16le(&mut rest);
                let bytes = take(&mut rest, n);
                match &mut flow {
                    Some(f) => f.data(&mut conn, dir, bytes, now, &mut ctx, &mut tls_stats),
                    None => conn.data(dir, bytes, now, &mut ctx),
                }
            }
            2 => {
                let dir = if (tag >> 2) & 1 == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                let n = u16le(&mut rest) as u64;
                match &mut flow {
                    Some(f) => f.gap(&mut conn, dir, n, now, &mut ctx, &mut tls_stats),
                    None => conn.gap(dir, n, now, &mut ctx),
                }
            }
            _ if live && (tag == 0xFF || tag == 0xFB) => {
                if let Some(f) = &mut flow {
                    let line = CORPUS_KEYS.lines().nth(usize::from(tag == 0xFB)).unwrap_or("");
                    let hex = line.rsplit(' ').next().unwrap_or("");
                    let secret: Vec<u8> = (0..hex.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                        .collect();
                    f.secret(SecretKind::Master, &secret, &mut conn, &mut ctx, &mut tls_stats);
                }
            }
            _ => {
                now += u64::from(tag >> 2) * 1_000_000;
                if let Some(f) = &mut flow {
                    f.expire(now, &mut conn, &mut ctx, &mut tls_stats);
                }
            }
        }
        if let Some(f) = &flow {
            assert!(
                f.buffered()
                    <= 4 * (HEADER_LEN + MAX_BODY) + 4 * MAX_KEPT + 2 * (RESYNC_MAX + 65_536)
                        + KEYS_WAIT_BYTES + 65_536
            );
        }
    }
    if let Some(f) = &mut flow {
        f.finish(&mut conn, now, &mut ctx, &mut tls_stats);
    }
    conn.end(EndReason::EndOfRun, now, &mut ctx);

    assert!(stats.sessions_tls_read + stats.sessions_encrypted <= 1);
    assert!(tls_stats.sessions_decrypted <= 1);
    if let Some(first) = events.first() {
        let Event::SessionStart(s) = first else { panic!("first event {first:?}") };
        let id = s.session;
        assert_eq!(
            events.iter().filter(|e| matches!(e, Event::SessionStart(_))).count(),
            1
        );
        assert!(matches!(events.last(), Some(Event::SessionEnd(e)) if e.session == id));
        assert_eq!(
            events.iter().filter(|e| matches!(e, Event::SessionEnd(_))).count(),
            1
        );
    }
}
