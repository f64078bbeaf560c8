//! Row samples: the first rows of an answer, kept so that a report can show a difference
//! rather than two digests.
//!
//! A run holds rows only as digests (see [`crate::digest`]); a [`RowSample`] event, right after
//! its exchange, adds the first rows of some answers: a capture keeps the first answers of each
//! statement shape, a replay the answers whose digest differs from the recorded answer it
//! re-issued. A sample is bounded ([`ROWS_MAX`] rows, [`BYTES_MAX`] bytes of values, each value
//! cut at [`CELL_MAX`] bytes) so that recordings grow by a little, whatever the answers.
//! [`SampleBuilder`] applies the bounds; decoders feed it the values of a result's first rows.

use bincode::{Decode, Encode};

use crate::digest::ValueRef;
use crate::event::{SessionId, Value};

/// Rows kept of one answer.
pub const ROWS_MAX: usize = 20;
/// Bytes of values kept of one answer (a value counts its bytes, or 8 for a number or a date).
pub const BYTES_MAX: usize = 4096;
/// Bytes kept of one value; longer ones are cut (and counted in [`RowSample::cells_cut`]).
pub const CELL_MAX: usize = 256;

/// Why an answer's rows were kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum SampleReason {
    /// A capture keeps the first answers of each statement shape.
    FirstOfShape,
    /// A replay keeps an answer whose rows differ from the recorded answer's.
    DiffersFromRecorded,
}

/// The first rows of the first result of one exchange (format version 3).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct RowSample {
    pub session: SessionId,
    pub seq: u64,
    pub clone: u32,
    /// Its exchange's start: a run merged from several files keeps the sample by its exchange.
    pub at_us: u64,
    pub why: SampleReason,
    /// The rows kept, each one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows of the answer that were not kept (beyond the bounds).
    pub rows_left_out: u64,
    /// Values cut to [`CELL_MAX`] bytes.
    pub cells_cut: u32,
}

impl SampleReason {
    pub fn name(self) -> &'static str {
        match self {
            SampleReason::FirstOfShape => "first_of_shape",
            SampleReason::DiffersFromRecorded => "differs_from_recorded",
        }
    }
}

/// A value as a person reads it: text as text (bytes that are not UTF-8 in hex), numbers,
/// dates and times as MySQL prints them, `NULL`.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t' && c != '\n') => s.into(),
            _ => {
                let mut h = String::with_capacity(2 + 2 * b.len());
                h.push_str("0x");
                for x in b {
                    h.push_str(&format!("{x:02X}"));
                }
                h
            }
        },
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut t = format!("{y:04}-{mo:02}-{d:02}");
            if (*h, *mi, *s, *us) != (0, 0, 0, 0) {
                t.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
            }
            if *us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            t
        }
        Value::Time(neg, d, h, m, s, us) => {
            let mut t = format!(
                "{}{:02}:{m:02}:{s:02}",
                if *neg { "-" } else { "" },
                *d * 24 + *h as u32
            );
            if *us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            t
        }
    }
}

/// Collects the first rows of an answer within the bounds, one value at a time.
#[derive(Debug, Default)]
pub struct SampleBuilder {
    rows: Vec<Vec<Value>>,
    row: Vec<Value>,
    bytes: usize,
    /// A row did not fit: no further row is kept (the sample stays a prefix of the answer).
    full: bool,
    left_out: u64,
    cut: u32,
    /// Values of the current row that were cut.
    row_cut: u32,
}

impl SampleBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next value of the current row.
    pub fn value(&mut self, v: ValueRef<'_>) {
        if self.full {
            return;
        }
        let (v, size) = match v {
            ValueRef::Bytes(b) if b.len() > CELL_MAX => {
                self.row_cut += 1;
                (Value::Bytes(b[..CELL_MAX].to_vec()), CELL_MAX)
            }
            ValueRef::Bytes(b) => (Value::Bytes(b.to_vec()), b.len()),
            ValueRef::Null => (Value::Null, 1),
            other => (other.to_owned_value(), 8),
        };
        self.bytes += size;
        self.row.push(v);
    }

    /// Ends the current row: kept if it fits within the bounds, else left out with every row
    /// after it.
    pub fn end_row(&mut self) {
        if self.full
            || self.rows.len() >= ROWS_MAX
            || (self.bytes > BYTES_MAX && !self.rows.is_empty())
        {
            self.full = true;
            self.left_out += 1;
            self.row.clear();
            self.row_cut = 0;
            return;
        }
        self.cut += std::mem::take(&mut self.row_cut);
        self.rows.push(std::mem::take(&mut self.row));
        if self.bytes >= BYTES_MAX {
            // The first row is kept whatever its size (its values are cut); nothing after it.
            self.full = true;
        }
    }

    /// The sample of an answer of `total_rows` rows, of which the builder saw the first ones.
    pub fn finish(
        self,
        session: SessionId,
        seq: u64,
        at_us: u64,
        why: SampleReason,
        total_rows: u64,
    ) -> RowSample {
        let kept = self.rows.len() as u64;
        RowSample {
            session,
            seq,
            clone: 0,
            at_us,
            why,
            rows: self.rows,
            rows_left_out: total_rows.saturating_sub(kept).max(self.left_out),
            cells_cut: self.cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(rows: &[&[ValueRef<'_>]]) -> RowSample {
        let mut b = SampleBuilder::new();
        for r in rows {
            for v in *r {
                b.value(*v);
            }
            b.end_row();
        }
        b.finish(1, 2, 3, SampleReason::FirstOfShape, rows.len() as u64)
    }

    #[test]
    fn values_render_as_mysql_prints_them() {
        assert_eq!(render_value(&Value::Null), "NULL");
        assert_eq!(render_value(&Value::Bytes(b"pen".to_vec())), "pen");
        assert_eq!(render_value(&Value::Bytes(vec![0, 0xff])), "0x00FF");
        assert_eq!(render_value(&Value::Int(-3)), "-3");
        assert_eq!(render_value(&Value::Double(1.5)), "1.5");
        assert_eq!(
            render_value(&Value::Date(2024, 2, 29, 0, 0, 0, 0)),
            "2024-02-29"
        );
        assert_eq!(
            render_value(&Value::Date(2024, 2, 29, 13, 5, 9, 120)),
            "2024-02-29 13:05:09.000120"
        );
        assert_eq!(render_value(&Value::Time(true, 1, 2, 3, 4, 0)), "-26:03:04");
    }

    #[test]
    fn small_answers_are_kept_whole() {
        let s = build(&[
            &[ValueRef::Int(1), ValueRef::Bytes(b"a")],
            &[ValueRef::Null, ValueRef::Bytes(b"b")],
        ]);
        assert_eq!(
            s.rows,
            vec![
                vec![Value::Int(1), Value::Bytes(b"a".to_vec())],
                vec![Value::Null, Value::Bytes(b"b".to_vec())]
            ]
        );
        assert_eq!((s.rows_left_out, s.cells_cut), (0, 0));
    }

    #[test]
    fn at_most_rows_max_rows() {
        let one: &[ValueRef<'_>] = &[ValueRef::UInt(7)];
        let rows = vec![one; ROWS_MAX + 5];
        let s = build(&rows);
        assert_eq!(s.rows.len(), ROWS_MAX);
        assert_eq!(s.rows_left_out, 5);
    }

    #[test]
    fn bytes_are_bounded_and_long_values_cut() {
        let long = vec![b'x'; 1000];
        let row: &[ValueRef<'_>] = &[ValueRef::Bytes(&long), ValueRef::Bytes(&long)];
        let rows = vec![row; 10];
        let s = build(&rows);
        // Each value is cut to CELL_MAX: 512 bytes a row, 8 rows fit in BYTES_MAX.
        assert_eq!(s.rows.len(), BYTES_MAX / (2 * CELL_MAX));
        assert_eq!(s.rows_left_out, 10 - s.rows.len() as u64);
        assert_eq!(s.cells_cut as usize, 2 * s.rows.len());
        let kept: usize = s
            .rows
            .iter()
            .flatten()
            .map(|v| match v {
                Value::Bytes(b) => b.len(),
                _ => 8,
            })
            .sum();
        assert!(kept <= BYTES_MAX, "{kept}");
    }

    #[test]
    fn a_first_row_larger_than_the_bound_is_kept_alone() {
        let long = vec![b'y'; CELL_MAX];
        let wide: Vec<ValueRef<'_>> = (0..40).map(|_| ValueRef::Bytes(&long)).collect();
        let s = build(&[&wide, &wide]);
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.rows_left_out, 1);
    }
}
