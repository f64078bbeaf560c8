//! Keeping the first rows of answers, so that a report can show a difference.
//!
//! While a result is read, its first rows' bytes are copied as they come ([`RawRows`], bounded,
//! one copy per row; nothing is decoded); once the exchange is emitted they become
//! [`KeptRows`]. A capture turns them into a [`RowSample`] event for the first answers of each
//! statement shape ([`ShapeSampler`], shared by the capture's connections through
//! [`Ctx`](super::Ctx)); a replaying client (`Conn::keep_rows`) takes them with
//! [`Conn::take_kept`](super::Conn::take_kept) and decodes them only when its answer differs
//! from the recorded one.

use std::sync::Arc;

use myrr_recording::sample::{SampleReason, ROWS_MAX};
use myrr_recording::{Column, RowSample, SampleBuilder, SessionId, ValueRef};
use rustc_hash::FxHashMap;

use super::results::{binary_row, text_row, RowSink};

/// Bytes of raw rows copied per result: enough for [`ROWS_MAX`] rows whose values the sample
/// then cuts, never more.
const RAW_BYTES_MAX: usize = 64 << 10;

/// The first rows of a result as they came off the wire, each after its length.
#[derive(Debug)]
pub(super) struct RawRows {
    /// The sampling key of the exchange's statement (0 for a replaying client).
    pub(super) key: u64,
    buf: Vec<u8>,
    rows: usize,
    /// A row did not fit: none after it is kept either.
    full: bool,
}

impl RawRows {
    pub(super) fn new(key: u64) -> Self {
        Self {
            key,
            buf: Vec::new(),
            rows: 0,
            full: false,
        }
    }

    pub(super) fn push(&mut self, row: &[u8]) {
        if self.full || self.rows >= ROWS_MAX || self.buf.len() + 4 + row.len() > RAW_BYTES_MAX {
            self.full = true;
            return;
        }
        self.buf
            .extend_from_slice(&(row.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(row);
        self.rows += 1;
    }
}

/// The first rows of an exchange's first result, undecoded, with what decoding them needs.
#[derive(Debug)]
pub struct KeptRows {
    pub(super) raw: RawRows,
    pub(super) binary: bool,
    pub(super) columns: Arc<[Column]>,
    /// Rows of the whole result.
    pub total_rows: u64,
}

impl KeptRows {
    /// The rows as a sample of exchange (`session`, `seq`) started at `at_us`. Rows that do
    /// not parse against the columns end the sample (they are counted as left out).
    pub fn sample(&self, session: SessionId, seq: u64, at_us: u64, why: SampleReason) -> RowSample {
        let mut b = SampleBuilder::new();
        let mut rest = &self.raw.buf[..];
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(row) = rest.get(4..4 + n) else { break };
            rest = &rest[4 + n..];
            // Checked first, so that a row that does not parse is not kept in part.
            let ok = if self.binary {
                binary_row(&self.columns, row, &mut Check)
            } else {
                text_row(self.columns.len(), row, &mut Check)
            };
            if !ok {
                break;
            }
            if self.binary {
                binary_row(&self.columns, row, &mut b);
            } else {
                text_row(self.columns.len(), row, &mut b);
            }
        }
        b.finish(session, seq, at_us, why, self.total_rows)
    }
}

/// A sink that keeps nothing: whether a row parses.
struct Check;

impl RowSink for Check {
    fn value(&mut self, _: ValueRef<'_>) {}
    fn end_row(&mut self) {}
}

/// How many answers of each statement shape a capture keeps rows of.
pub const ANSWERS_PER_SHAPE: u8 = 3;
/// How many differing answers of each statement shape a replay keeps rows of: more than a
/// capture's first answers, so that examples of differences have theirs, and bounded, so that
/// a replay whose answers mostly differ (writes replayed out of order) grows by little.
pub const DIFFERING_PER_SHAPE: u8 = 10;
/// Shapes a capture keeps samples of; answers of shapes beyond are counted, not kept.
pub const SHAPES_MAX: usize = 10_000;
/// Text answers in a row whose shape had no room left, after which a capture computes the
/// shape of only one text answer in [`LOOK_EVERY`]: the workload's shapes are all sampled by
/// then, and the shape key was 3 % of a text-protocol capture's time. A shape first seen
/// later is still sampled when it comes back (and a replay keeps the rows of every differing
/// answer's shape anyway).
const SATURATED: u32 = 10_000;
const LOOK_EVERY: u32 = 16;

/// A choice of answers to keep rows of: the first `per_shape` answers with rows of each
/// statement shape (by [`crate::sql::shape_key`]; an EXECUTE by its PREPARE's text), over at
/// most [`SHAPES_MAX`] shapes. A capture's keeps [`ANSWERS_PER_SHAPE`] of every answer; a
/// replay's, [`DIFFERING_PER_SHAPE`] of the answers that differ from the recorded ones.
#[derive(Debug)]
pub struct ShapeSampler {
    per_shape: u8,
    kept: FxHashMap<u64, u8>,
    /// Samples written.
    pub samples: u64,
    /// Answers not sampled because [`SHAPES_MAX`] shapes were already sampled.
    pub shapes_over_limit: u64,
    /// Answers in a row that found no room (see [`SATURATED`]).
    full_in_row: u32,
    /// Text answers since the last one whose shape was computed, once saturated.
    unlooked: u32,
}

impl Default for ShapeSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ShapeSampler {
    /// A capture's: [`ANSWERS_PER_SHAPE`] answers of each shape.
    pub fn new() -> Self {
        Self::with_per_shape(ANSWERS_PER_SHAPE)
    }

    pub fn with_per_shape(per_shape: u8) -> Self {
        Self {
            per_shape,
            kept: FxHashMap::default(),
            samples: 0,
            shapes_over_limit: 0,
            full_in_row: 0,
            unlooked: 0,
        }
    }

    /// Whether an answer of shape `key` would be kept.
    pub fn has_room(&self, key: u64) -> bool {
        match self.kept.get(&key) {
            Some(&n) => n < self.per_shape,
            None => self.kept.len() < SHAPES_MAX,
        }
    }

    /// Whether an answer of shape `key`, starting, should have its rows kept (an answer of a
    /// new shape past [`SHAPES_MAX`] is counted).
    pub(super) fn wants(&mut self, key: u64) -> bool {
        let room = self.has_room(key);
        self.full_in_row = if room {
            0
        } else {
            self.full_in_row.saturating_add(1)
        };
        if !room && !self.kept.contains_key(&key) {
            self.shapes_over_limit += 1;
        }
        room
    }

    /// Whether a text answer's shape is worth computing: always, until [`SATURATED`] answers
    /// in a row found theirs full; then one in [`LOOK_EVERY`].
    pub(super) fn look(&mut self) -> bool {
        if self.full_in_row < SATURATED {
            return true;
        }
        self.unlooked += 1;
        if self.unlooked < LOOK_EVERY {
            return false;
        }
        self.unlooked = 0;
        true
    }

    /// Takes a place for an answer of shape `key` that had rows; false when its shape has none
    /// left (answers of one shape read at once on several connections).
    pub fn take(&mut self, key: u64) -> bool {
        if !self.has_room(key) {
            return false;
        }
        *self.kept.entry(key).or_default() += 1;
        self.samples += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `keep_key` does for a text answer of shape `key`.
    fn answer(s: &mut ShapeSampler, key: u64) -> bool {
        s.look() && s.wants(key) && s.take(key)
    }

    #[test]
    fn a_saturated_capture_looks_at_one_text_answer_in_sixteen_and_still_samples_a_new_shape() {
        let mut s = ShapeSampler::new();
        for _ in 0..3 {
            assert!(answer(&mut s, 1));
        }
        let mut looked = 0;
        for _ in 0..SATURATED + 16 * 100 {
            let look = s.look();
            looked += look as u32;
            assert!(!(look && s.wants(1)));
        }
        // Every answer is looked at until saturated, then one in 16.
        assert_eq!(looked, SATURATED + 100);
        // A new shape: sampled within 16 answers of it, three times, then full again.
        let kept = (0..3 * 16).filter(|_| answer(&mut s, 2)).count();
        assert_eq!(kept, 3);
        assert_eq!(s.samples, 6);
        assert!(!s.has_room(2));
    }
}
