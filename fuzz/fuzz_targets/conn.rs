//! `Conn`: the MySQL connection decoder, fed a sequence of data/gap operations in both
//! directions, then ended.
//!
//! Input: `flags:u8 op*`
//!   flags bit 0: syn_seen; bit 1: tiny packet limit (4 KiB) instead of 1 MiB;
//!   bit 2: the TLS plaintext may follow (`expect_tls_plaintext`); bit 3: a capture's row
//!   sampler; bit 4: a replaying client's row keeping (the rows kept of each answer are taken
//!   and decoded after every operation)
//!   op := tag:u8 ...
//!     tag & 3 == 0 | 1 : data, direction = tag & 1 (0 = client→server); `len:u16le bytes[len]`
//!                        (clipped to what is left); time advances by (tag >> 2) ms
//!     tag & 3 == 2     : gap, direction = (tag >> 2) & 1; `n:u16le` bytes lost
//!     tag & 3 == 3     : time jumps by (tag >> 2) seconds, except tag >> 2 == 63: the TLS
//!                        plaintext follows (`tls_plaintext`), 62: it will not (`tls_unreadable`)
//!   At the end: `conn.end(EndReason::EndOfRun, ..)`.
//!
//! Checks: no panic; the events form one well-ordered session: at most one SessionStart and it
//! comes first, every event carries its id, exactly one SessionEnd, last, when a session started;
//! exchange numbers are unique and stay below SessionEnd.exchanges; end_us >= start_us; a row
//! sample follows its exchange and stays within the sample bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myrr_recording::sample::ROWS_MAX;
use myrr_recording::SampleReason;
use myrr_wire::conn::{Conn, Ctx, ShapeSampler};
use myrr_wire::DecodeStats as Stats;
use myrr_recording::{Direction, EndReason, Event};

fn dir(b: u8) -> Direction {
    if b & 1 == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

fuzz_target!(|data: &[u8]| {
    myrr_fuzz::run(|| one(data));
});

fn one(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let limit = if flags & 2 != 0 { 4096 } else { 1 << 20 };
    let mut now: u64 = 1_700_000_000_000_000;
    let mut conn = Conn::new(
        "10.0.0.1:40000".into(),
        "10.0.0.2:3306".into(),
        now,
        flags & 1 != 0,
        limit,
    );
    let mut events = Vec::new();
    let mut stats = Stats::default();
    let mut next_session = 7u64;
    let mut sampler = ShapeSampler::new();
    conn.keep_rows = flags & 16 != 0;
    if flags & 4 != 0 {
        conn.expect_tls_plaintext();
    }
    let mut ctx = Ctx {
        events: &mut events,
        stats: &mut stats,
        next_session: &mut next_session,
        samples: (flags & 8 != 0).then_some(&mut sampler),
    };
    while let Some((&tag, r)) = rest.split_first() {
        rest = r;
        match tag & 3 {
            0 | 1 => {
                if rest.len() < 2 {
                    break;
                }
                let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
                let bytes = &rest[2..2 + n];
                rest = &rest[2 + n..];
                now += (tag >> 2) as u64 * 1000;
                conn.data(dir(tag), bytes, now, &mut ctx);
            }
            2 => {
                if rest.len() < 2 {
                    break;
                }
                let n = u16::from_le_bytes([rest[0], rest[1]]) as u64;
                rest = &rest[2..];
                conn.gap(dir(tag >> 2), n, now, &mut ctx);
            }
            _ if tag >> 2 == 63 => {
                conn.tls_plaintext();
            }
            _ if tag >> 2 == 62 => conn.tls_unreadable(&mut ctx),
            _ => now += (tag >> 2) as u64 * 1_000_000,
        }
        if let Some(k) = conn.take_kept() {
            let s = k.sample(7, 0, now, SampleReason::DiffersFromRecorded);
            assert!(s.rows.len() <= ROWS_MAX, "{} rows kept", s.rows.len());
        }
    }
    conn.end(EndReason::EndOfRun, now, &mut ctx);
    drop(ctx);
    if myrr_fuzz::debug() {
        for e in &events {
            eprintln!("{e:?}");
        }
    }

    // Well-formedness of the session's events.
    let Some(first) = events.first() else { return };
    let Event::SessionStart(start) = first else {
        panic!("first event is not SessionStart: {first:?}")
    };
    assert_eq!(start.session, 7);
    assert_eq!(next_session, 8, "one connection, one session id");
    let Some(Event::SessionEnd(end)) = events.last() else {
        panic!("last event is not SessionEnd: {:?}", events.last())
    };
    // Exchange numbers are unique; they are NOT necessarily in order: a command without a
    // response (QUIT, CLOSE_STMT, ...) is emitted at once, before earlier commands still waiting
    // for theirs (see README, findings).
    let mut seqs = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.session(), Some(7), "event {i} of another session");
        match e {
            Event::SessionStart(_) => assert_eq!(i, 0, "second SessionStart"),
            Event::SessionEnd(_) => assert_eq!(i, events.len() - 1, "SessionEnd not last"),
            Event::Exchange(x) => {
                assert!(seqs.insert(x.seq), "exchange seq {} twice", x.seq);
                assert!(x.seq < end.exchanges, "exchange seq {} >= {}", x.seq, end.exchanges);
                assert!(x.end_us >= x.start_us, "exchange ends before it starts: {x:?}");
            }
            Event::Gap(_) | Event::Backfill(_) => {}
            Event::Label(l) => panic!("the decoder made an order label: {l:?}"),
            Event::Phase(p) => panic!("the decoder made a ramp phase: {p:?}"),
            Event::Rows(r) => {
                let Some(Event::Exchange(x)) = i.checked_sub(1).map(|p| &events[p]) else {
                    panic!("row sample {i} not after an exchange");
                };
                assert_eq!(r.seq, x.seq, "row sample of another exchange");
                assert!(r.rows.len() <= ROWS_MAX && !r.rows.is_empty(), "{r:?}");
            }
        }
    }
    assert!(end.end_us >= start.start_us);
}
