//! `Reassembler`: one direction of a TCP flow.
//!
//! Input: `flags:u8 isn:u32le limit:u16le stream_len:u16le stream[stream_len] op*`
//!   flags bit 0: call `syn(isn)` first
//!   flags bit 1: "wild" mode: sequence numbers are arbitrary u32s (wrap-around, far jumps);
//!                otherwise every segment is a slice of one true byte stream `stream`, sent at
//!                sequence number isn+1+offset (so content can be checked)
//!   limit = reorder limit (0 → 1 MiB)
//!   op := tag:u8 a:u16le b:u16le  (wild mode: a:u32le b:u16le)
//!     tag % 5 == 0 | 1 : segment of stream[a .. a+b] (wild: at seq a, b bytes of `stream`)
//!     tag % 5 == 2     : acked(isn+1+a)              (wild: acked(a))
//!     tag % 5 == 3     : fin at the end of the stream (wild: fin(a))
//!     tag % 5 == 4     : syn(isn) again (must be ignored once the flow started)
//!   At the end: `finish()`.
//!
//! Checks after every call: `pending_bytes() <= limit` (not with MYRR_FUZZ_SKIP_KNOWN=1); accounting: the next expected sequence
//! number equals the first one plus delivered data bytes plus gap bytes plus FINs counted
//! (mod 2^32); after `finish()` nothing is pending. In stream mode also: every delivered byte is
//! the stream's byte at that position, nothing is delivered beyond the stream's end, and data +
//! gaps never exceed the furthest sequence number seen (segment end or ack). Segments are captured
//! at the number of their op: queued bytes never come out with a later time than the op.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myrr_capture::tcp::{Delivery, Reassembler, SeqNum};

struct Model<'s> {
    limit: usize,
    /// Stream mode: the true bytes, at sequence numbers isn+1...
    stream: Option<&'s [u8]>,
    data_start: SeqNum,
    /// First `next` (set when the reassembler first has one).
    base: Option<SeqNum>,
    delivered: u64,
    gaps: u64,
    fins: u64,
    /// Furthest sequence number offered (segment end / ack), relative to `data_start`.
    furthest: i64,
    /// Capture time of the call being checked: the number of the op.
    now: u64,
}

impl Model<'_> {
    fn check(&mut self, r: &Reassembler, out: &mut Vec<Delivery<'_>>, what: &str) {
        if self.base.is_none() {
            // After a SYN: data starts at isn + 1.
            self.base = r.next_seq();
        }
        for d in out.drain(..) {
            let (bytes, gap): (&[u8], u64) = match &d {
                Delivery::Data(b) => (b, 0),
                Delivery::Queued { bytes, at_us } => {
                    assert!(*at_us <= self.now, "{what}: queued bytes from a later segment");
                    (bytes, 0)
                }
                Delivery::Gap(n) => (&[], *n),
            };
            assert!(!matches!(d, Delivery::Gap(0)), "{what}: empty gap");
            assert!(
                matches!(d, Delivery::Gap(_)) || !bytes.is_empty(),
                "{what}: empty data delivery"
            );
            if let (Some(stream), Some(base)) = (self.stream, self.base) {
                let pos = base.diff(self.data_start) as i64
                    + (self.delivered + self.gaps + self.fins) as i64;
                assert!(pos >= 0);
                let pos = pos as usize;
                if !bytes.is_empty() {
                    assert!(
                        pos + bytes.len() <= stream.len(),
                        "{what}: delivered bytes {pos}..{} beyond the stream's {} bytes",
                        pos + bytes.len(),
                        stream.len()
                    );
                    assert_eq!(bytes, &stream[pos..pos + bytes.len()], "{what}: wrong bytes at {pos}");
                }
            }
            self.delivered += bytes.len() as u64;
            self.gaps += gap;
        }
        if myrr_fuzz::debug() {
            eprintln!("{what}: pending {} next {:?}", r.pending_bytes(), r.next_seq());
        }
        // Known violation (README, findings): the queue can outgrow the limit by one segment
        // per call. MYRR_FUZZ_SKIP_KNOWN=1 skips this check so fuzzing can look further.
        assert!(
            myrr_fuzz::skip_known() || r.pending_bytes() <= self.limit,
            "{what}: {} bytes pending over the {}-byte limit",
            r.pending_bytes(),
            self.limit
        );
        if let (Some(base), Some(next)) = (self.base, r.next_seq()) {
            let moved = next.0.wrapping_sub(base.0);
            let accounted = (self.delivered + self.gaps + self.fins) as u32;
            assert_eq!(
                moved, accounted,
                "{what}: next moved {moved} but data {} + gaps {} + fins {}",
                self.delivered, self.gaps, self.fins
            );
            if self.stream.is_some() {
                let consumed = base.diff(self.data_start) as i64
                    + (self.delivered + self.gaps + self.fins) as i64;
                assert!(
                    consumed <= self.furthest.max(base.diff(self.data_start) as i64),
                    "{what}: data+gaps reach {consumed}, furthest seen {}",
                    self.furthest
                );
            }
        }
    }
}

fn u16le(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let flags = data[0];
    let isn = SeqNum(u32::from_le_bytes(data[1..5].try_into().unwrap()));
    let limit = match u16le(&data[5..7]) as usize {
        0 => 1 << 20,
        n => n,
    };
    let slen = (u16le(&data[7..9]) as usize).min(data.len() - 9);
    let stream = &data[9..9 + slen];
    let mut ops = &data[9 + slen..];
    let wild = flags & 2 != 0;
    let data_start = isn.advance(1);

    let mut r = Reassembler::new(limit);
    let mut m = Model {
        limit,
        stream: (!wild).then_some(stream),
        data_start,
        base: None,
        delivered: 0,
        gaps: 0,
        fins: 0,
        furthest: 0,
        now: 0,
    };
    let mut out = Vec::new();
    if flags & 1 != 0 {
        r.syn(isn);
        m.check(&r, &mut out, "syn");
    }
    let oplen = if wild { 7 } else { 5 };
    while ops.len() >= oplen {
        let tag = ops[0];
        let (a, b) = if wild {
            (u32::from_le_bytes(ops[1..5].try_into().unwrap()), u16le(&ops[5..7]) as usize)
        } else {
            (u16le(&ops[1..3]) as u32, u16le(&ops[3..5]) as usize)
        };
        ops = &ops[oplen..];
        m.now += 1;
        match tag % 5 {
            0 | 1 => {
                let (seq, payload) = if wild {
                    (SeqNum(a), &stream[..b.min(stream.len())])
                } else {
                    let a = (a as usize).min(stream.len());
                    let e = (a + b).min(stream.len());
                    (data_start.advance(a), &stream[a..e])
                };
                if !wild && !payload.is_empty() {
                    m.furthest = m.furthest.max(seq.diff(data_start) as i64 + payload.len() as i64);
                }
                if r.next_seq().is_none() && !payload.is_empty() {
                    // Without a SYN the first segment fixes where the stream starts.
                    m.base = Some(seq);
                }
                r.segment(seq, payload, m.now, &mut out);
                m.check(&r, &mut out, "segment");
            }
            2 => {
                let ack = if wild { SeqNum(a) } else { data_start.advance(a as usize) };
                if !wild {
                    m.furthest = m.furthest.max(a as i64);
                }
                r.acked(ack, &mut out);
                m.check(&r, &mut out, "acked");
            }
            3 => {
                let seq = if wild { SeqNum(a) } else { data_start.advance(stream.len()) };
                let before = r.next_seq();
                r.fin(seq);
                if r.next_seq() != before {
                    assert_eq!(r.next_seq(), before.map(|s| s.advance(1)));
                    m.fins += 1;
                    if !wild {
                        m.furthest = m.furthest.max(stream.len() as i64 + 1);
                    }
                }
                m.check(&r, &mut out, "fin");
            }
            _ => {
                let before = r.next_seq();
                r.syn(isn);
                if before.is_some() {
                    assert_eq!(r.next_seq(), before, "a second SYN moved the stream");
                }
                m.check(&r, &mut out, "syn again");
            }
        }
    }
    r.finish(&mut out);
    m.check(&r, &mut out, "finish");
    assert_eq!(r.pending_bytes(), 0, "finish left bytes pending");
});
