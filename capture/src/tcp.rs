//! TCP stream reassembly, one direction at a time.
//!
//! In-order data is handed on without copying; out-of-order segments wait in a bounded queue.
//! Bytes that never arrive (the capture missed them: the peer acknowledged them, the queue
//! overflowed, or the flow ended) become a reported gap, and delivery resumes after it — the
//! reassembler never guesses at missing bytes. Queued bytes keep the capture time of the
//! segment that brought them: a request delivered late (after a hole is filled, or when the
//! peer's acknowledgement declares the hole lost) still starts when it was sent.

use std::collections::BTreeMap;

/// Out-of-order segments queued per direction at most.
const MAX_SEGMENTS: usize = 1024;

/// How far a sender's bytes in flight reach beyond the receiver's last acknowledgement, at
/// most, as far as a capture is concerned. Window scaling allows up to 1 GiB, but receive
/// buffers stay well under 64 MiB in practice, and a 1 GiB bound would let half of all new
/// initial sequence numbers pass for the old stream's.
pub const MAX_WINDOW: usize = 64 << 20;

/// A TCP sequence number: arithmetic and comparison wrap at 2^32 (RFC 1982).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// Signed distance from `other` to `self`.
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    pub fn advance(self, n: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }

    pub fn after(self, other: SeqNum) -> bool {
        self.diff(other) > 0
    }
}

/// What reassembly produced for one segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// In-order bytes.
    Data(&'a [u8]),
    /// Bytes that will never come; delivery goes on after them.
    Gap(u64),
    /// Previously queued bytes, now in order, with the capture time (µs) of the segment that
    /// brought them: usually earlier than the segment being handled.
    Queued { bytes: Vec<u8>, at_us: u64 },
}

/// An out-of-order segment waiting for the bytes before it.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    /// When it was captured (µs); of its first copy when it was retransmitted.
    at_us: u64,
}

/// Reassembly state for one direction of one flow.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Next byte expected; `None` until the first segment (or SYN) is seen.
    next: Option<SeqNum>,
    /// Out-of-order segments keyed by distance from `next` at insertion... kept by sequence
    /// number and re-examined whenever `next` moves.
    pending: BTreeMap<u32, Pending>,
    pending_bytes: usize,
    limit: usize,
    /// Counters.
    pub retransmitted_bytes: u64,
    pub gap_bytes: u64,
}

impl Reassembler {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Default::default()
        }
    }

    /// The SYN carries the initial sequence number; data starts one after it.
    pub fn syn(&mut self, isn: SeqNum) {
        if self.next.is_none() {
            self.next = Some(isn.advance(1));
        }
    }

    pub fn next_seq(&self) -> Option<SeqNum> {
        self.next
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Whether `seq` lies further from the next byte expected, back or ahead, than any
    /// retransmission or reordered segment of this stream can: further than a window
    /// ([`MAX_WINDOW`]) and the reorder limit. Never before the stream has started.
    pub fn out_of_window(&self, seq: SeqNum) -> bool {
        let Some(next) = self.next else {
            return false;
        };
        let reach = self.limit.saturating_add(MAX_WINDOW) as u64;
        u64::from(seq.diff(next).unsigned_abs()) > reach
    }

    /// Feeds one segment, captured at `at_us`; `out` receives what can now be delivered, in
    /// order.
    pub fn segment<'a>(
        &mut self,
        seq: SeqNum,
        payload: &'a [u8],
        at_us: u64,
        out: &mut Vec<Delivery<'a>>,
    ) {
        if payload.is_empty() {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let off = seq.diff(next);
        if off <= 0 {
            let skip = (-(off as i64)) as usize;
            if skip >= payload.len() {
                self.retransmitted_bytes += payload.len() as u64;
                return;
            }
            self.retransmitted_bytes += skip as u64;
            let fresh = &payload[skip..];
            self.next = Some(next.advance(fresh.len()));
            out.push(Delivery::Data(fresh));
            self.drain_pending(out);
        } else {
            self.queue(seq, payload, at_us);
            // Over the limit (in bytes, or in segments, which bounds the work per segment):
            // what is still missing before the queued data counts as lost.
            while !self.pending.is_empty()
                && (self.pending_bytes > self.limit || self.pending.len() > MAX_SEGMENTS)
            {
                self.skip_to_first_pending(out);
            }
        }
    }

    fn queue(&mut self, seq: SeqNum, payload: &[u8], at_us: u64) {
        match self.pending.get(&seq.0) {
            Some(old) if old.bytes.len() >= payload.len() => {
                self.retransmitted_bytes += payload.len() as u64;
            }
            old => {
                // A longer copy replaces a shorter one; its first bytes came with the shorter.
                let at_us = old.map_or(at_us, |old| old.at_us.min(at_us));
                let seg = Pending {
                    bytes: payload.to_vec(),
                    at_us,
                };
                if let Some(old) = self.pending.insert(seq.0, seg) {
                    self.pending_bytes -= old.bytes.len();
                    self.retransmitted_bytes += old.bytes.len() as u64;
                }
                self.pending_bytes += payload.len();
            }
        }
    }

    /// The queued segment that starts earliest relative to `next` (overlapping ones first).
    fn closest_pending(&self, next: SeqNum) -> Option<u32> {
        self.pending
            .keys()
            .copied()
            .min_by_key(|&k| SeqNum(k).diff(next) as i64)
    }

    /// Delivers queued segments that have become in order.
    fn drain_pending(&mut self, out: &mut Vec<Delivery<'_>>) {
        while let Some(next) = self.next {
            // The pending segment closest after (or overlapping) `next`.
            let Some(key) = self.closest_pending(next) else {
                return;
            };
            let off = SeqNum(key).diff(next);
            if off > 0 {
                return;
            }
            let Some(Pending { mut bytes, at_us }) = self.pending.remove(&key) else {
                return;
            };
            self.pending_bytes -= bytes.len();
            let skip = (-(off as i64)) as usize;
            if skip >= bytes.len() {
                self.retransmitted_bytes += bytes.len() as u64;
                continue;
            }
            self.retransmitted_bytes += skip as u64;
            self.next = Some(next.advance(bytes.len() - skip));
            bytes.drain(..skip);
            out.push(Delivery::Queued { bytes, at_us });
        }
    }

    /// Declares everything before the first queued segment lost.
    pub fn skip_to_first_pending(&mut self, out: &mut Vec<Delivery<'_>>) {
        let Some(next) = self.next else { return };
        let Some(first) = self.closest_pending(next) else {
            return;
        };
        let lost = SeqNum(first).diff(next);
        if lost > 0 {
            self.gap_bytes += lost as u64;
            out.push(Delivery::Gap(lost as u64));
            self.next = Some(SeqNum(first));
        }
        self.drain_pending(out);
    }

    /// The peer acknowledged up to `ack`: bytes before it that we have not seen were sent and
    /// received, so the capture lost them. Declares that gap (and delivers what follows).
    pub fn acked(&mut self, ack: SeqNum, out: &mut Vec<Delivery<'_>>) {
        let Some(next) = self.next else { return };
        let ahead = ack.diff(next);
        if ahead <= 0 {
            return;
        }
        // Deliver queued data below the ack first; what is still missing below it is lost.
        loop {
            let Some(next) = self.next else { return };
            if ack.diff(next) <= 0 {
                return;
            }
            let first = self.closest_pending(next);
            match first {
                // Bytes up to the first queued segment were sent before it: lost with the rest.
                Some(_) => self.skip_to_first_pending(out),
                None => {
                    let lost = ack.diff(next) as u64;
                    self.gap_bytes += lost;
                    out.push(Delivery::Gap(lost));
                    self.next = Some(ack);
                    self.drain_pending(out);
                    return;
                }
            }
        }
    }

    /// A FIN at `seq` takes one sequence number; count it once everything before it arrived.
    pub fn fin(&mut self, seq: SeqNum) {
        if self.next == Some(seq) {
            self.next = Some(seq.advance(1));
        }
    }

    /// The flow ends: whatever is queued is delivered after a gap.
    pub fn finish(&mut self, out: &mut Vec<Delivery<'_>>) {
        while !self.pending.is_empty() {
            self.skip_to_first_pending(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(d: &[Delivery<'_>]) -> (Vec<u8>, u64) {
        let mut data = vec![];
        let mut gap = 0;
        for x in d {
            match x {
                Delivery::Data(b) => data.extend_from_slice(b),
                Delivery::Queued { bytes, .. } => data.extend_from_slice(bytes),
                Delivery::Gap(n) => gap += n,
            }
        }
        (data, gap)
    }

    #[test]
    fn seq_wraps() {
        let a = SeqNum(u32::MAX - 1);
        let b = a.advance(4);
        assert_eq!(b, SeqNum(2));
        assert_eq!(b.diff(a), 4);
        assert!(b.after(a));
    }

    #[test]
    fn reorders_dedups_and_trims_overlap_across_wrap() {
        let base = SeqNum(u32::MAX - 5);
        let mut r = Reassembler::new(1 << 20);
        let mut out = vec![];
        r.syn(SeqNum(base.0.wrapping_sub(1)));
        r.segment(base.advance(10), b"klmno", 0, &mut out);
        r.segment(base.advance(4), b"efghij", 0, &mut out);
        r.segment(base, b"abcdef", 0, &mut out); // overlaps "ef"
        r.segment(base, b"abcd", 0, &mut out); // retransmission
        let (data, gap) = flat(&out);
        assert_eq!(data, b"abcdefghijklmno");
        assert_eq!(gap, 0);
        assert_eq!(r.next_seq(), Some(base.advance(15)));
        assert!(r.retransmitted_bytes >= 6);
    }

    #[test]
    fn ack_beyond_seen_data_reports_gap() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = vec![];
        r.segment(SeqNum(100), b"abc", 0, &mut out);
        r.segment(SeqNum(110), b"xyz", 0, &mut out);
        r.acked(SeqNum(113), &mut out);
        let (data, gap) = flat(&out);
        assert_eq!(data, b"abcxyz");
        assert_eq!(gap, 7);
    }

    #[test]
    fn out_of_window_is_beyond_a_window_and_the_reorder_limit_either_way() {
        let mut r = Reassembler::new(1000);
        assert!(!r.out_of_window(SeqNum(0)), "not started");
        let next = SeqNum(u32::MAX - 10);
        r.syn(SeqNum(next.0.wrapping_sub(1)));
        let reach = (MAX_WINDOW + 1000) as u32;
        assert!(!r.out_of_window(next.advance(reach as usize)));
        assert!(r.out_of_window(next.advance(reach as usize + 1)));
        assert!(!r.out_of_window(SeqNum(next.0.wrapping_sub(reach))));
        assert!(r.out_of_window(SeqNum(next.0.wrapping_sub(reach + 1))));
        assert!(r.out_of_window(SeqNum(next.0.wrapping_add(1 << 31))));
    }

    #[test]
    fn queued_bytes_keep_the_time_of_their_segment() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = vec![];
        r.segment(SeqNum(100), b"abc", 10, &mut out);
        r.segment(SeqNum(106), b"ghi", 20, &mut out);
        r.segment(SeqNum(110), b"kl", 30, &mut out);
        r.segment(SeqNum(110), b"klm", 35, &mut out); // a longer copy: its start came at 30
                                                      // The hole at 103 is filled later; what was queued behind it keeps its own time.
        r.segment(SeqNum(103), b"def", 40, &mut out);
        // The peer acknowledges 109 ("j", never seen): delivery resumes at "klm".
        r.acked(SeqNum(113), &mut out);
        assert_eq!(
            out,
            vec![
                Delivery::Data(b"abc"),
                Delivery::Data(b"def"),
                Delivery::Queued {
                    bytes: b"ghi".to_vec(),
                    at_us: 20
                },
                Delivery::Gap(1),
                Delivery::Queued {
                    bytes: b"klm".to_vec(),
                    at_us: 30
                },
            ]
        );
    }

    #[test]
    fn queue_limit_forces_gap() {
        let mut r = Reassembler::new(8);
        let mut out = vec![];
        r.segment(SeqNum(0), b"a", 0, &mut out);
        r.segment(SeqNum(10), b"0123456789", 0, &mut out);
        let (data, gap) = flat(&out);
        assert_eq!(data, b"a0123456789");
        assert_eq!(gap, 9);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn finish_flushes_queue() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = vec![];
        r.segment(SeqNum(0), b"a", 0, &mut out);
        r.segment(SeqNum(5), b"b", 0, &mut out);
        r.finish(&mut out);
        assert_eq!(flat(&out), (b"ab".to_vec(), 4));
    }

    proptest::proptest! {
        #[test]
        fn any_segmentation_and_order_reassembles(
            data in proptest::collection::vec(proptest::num::u8::ANY, 1..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            order in proptest::collection::vec(0usize..64, 0..12),
            isn in proptest::num::u32::ANY,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort();
            cuts.dedup();
            let mut segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            // Shuffle the segments after the first, deterministically from `order`.
            for (i, o) in order.iter().enumerate() {
                let n = segs.len();
                if n > 2 { segs.swap(1 + i % (n - 1), 1 + o % (n - 1)); }
            }
            let mut r = Reassembler::new(1 << 20);
            r.syn(SeqNum(isn));
            let start = SeqNum(isn).advance(1);
            let mut out = vec![];
            for &(a, b) in &segs {
                r.segment(start.advance(a), &data[a..b], 0, &mut out);
            }
            r.finish(&mut out);
            let (got, gap) = flat(&out);
            proptest::prop_assert_eq!(gap, 0);
            proptest::prop_assert_eq!(got, data);
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    /// Found by fuzzing: the queue must stay within its limit whatever the segments.
    #[test]
    fn queue_stays_within_its_limit() {
        let mut r = Reassembler::new(8);
        let mut out = vec![];
        r.segment(SeqNum(0), b"a", 0, &mut out);
        for i in 0..8u32 {
            r.segment(SeqNum(10 + 2 * i), b"x", 0, &mut out);
            assert!(r.pending_bytes() <= 8);
        }
        for i in 0..8u32 {
            r.segment(SeqNum(100 + 60 * i), &[b'y'; 50], 0, &mut out);
            assert!(r.pending_bytes() <= 8, "{} bytes queued", r.pending_bytes());
        }
        let mut r = Reassembler::new(1 << 30);
        r.segment(SeqNum(0), b"a", 0, &mut out);
        for i in 0..5000u32 {
            r.segment(SeqNum(10 + 2 * i), b"x", 0, &mut out);
        }
        assert!(r.pending.len() <= MAX_SEGMENTS);
    }
}
