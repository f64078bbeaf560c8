//! The canonical result digest: one function for capture and replay.
//!
//! Capture decodes wire rows and replay reads driver rows into the same value model
//! ([`ValueRef`]), and both feed it here, so equal rows give equal digests. Three values come
//! out: an ordered digest (row order matters), an unordered multiset digest (row order ignored,
//! duplicates counted) and, separately, a digest of the column names and types
//! ([`columns_digest`]). Together they tell "same rows, other order" and "other columns" apart
//! from "other values".

use bincode::{Decode, Encode};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::event::{Column, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Encode, Decode)]
pub struct ResultDigest {
    pub ordered: u64,
    pub unordered: u64,
}

/// A borrowed value, as it comes off a wire row or out of a driver row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bytes(&'a [u8]),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => ValueRef::Null,
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Int(i) => ValueRef::Int(*i),
            Value::UInt(u) => ValueRef::UInt(*u),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Double(d) => ValueRef::Double(*d),
            Value::Date(y, mo, d, h, mi, s, us) => ValueRef::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Value::Time(n, d, h, m, s, us) => ValueRef::Time(*n, *d, *h, *m, *s, *us),
        }
    }
}

impl ValueRef<'_> {
    pub fn to_owned_value(&self) -> Value {
        match *self {
            ValueRef::Null => Value::Null,
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::UInt(u) => Value::UInt(u),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Double(d) => Value::Double(d),
            ValueRef::Date(y, mo, d, h, mi, s, us) => Value::Date(y, mo, d, h, mi, s, us),
            ValueRef::Time(n, d, h, m, s, us) => Value::Time(n, d, h, m, s, us),
        }
    }
}

/// Bytes of a row's encoding kept inline: a result set of short rows allocates nothing.
const INLINE_ROW: usize = 256;

/// The encoding of the row being digested: inline up to `INLINE_ROW` bytes, then on the heap.
/// (A `SmallVec` did the same at twice the instructions per value: its `extend_from_slice`
/// is an insert, with a tail move and a capacity check per call.)
#[derive(Debug, Clone)]
struct RowBuf {
    inline: [u8; INLINE_ROW],
    len: usize,
    /// Holds the whole row once it outgrew `inline`.
    heap: Vec<u8>,
}

impl Default for RowBuf {
    fn default() -> Self {
        Self {
            inline: [0; INLINE_ROW],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl RowBuf {
    #[inline]
    fn extend_from_slice(&mut self, s: &[u8]) {
        let end = self.len + s.len();
        if end <= INLINE_ROW {
            self.inline[self.len..end].copy_from_slice(s);
        } else {
            if self.len <= INLINE_ROW {
                self.heap.clear();
                self.heap.extend_from_slice(&self.inline[..self.len]);
            }
            self.heap.extend_from_slice(s);
        }
        self.len = end;
    }

    #[inline]
    fn push(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }

    fn as_slice(&self) -> &[u8] {
        if self.len <= INLINE_ROW {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Builds a [`ResultDigest`] one value at a time, without holding rows.
#[derive(Debug, Clone, Default)]
pub struct RowDigester {
    row: RowBuf,
    ordered: u64,
    unordered: u64,
    rows: u64,
}

impl RowDigester {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next value of the current row.
    pub fn value(&mut self, v: ValueRef<'_>) {
        // A tag, then the value little-endian; fixed-width parts go in as one piece.
        let tagged = |tag: u8, le: [u8; 8]| {
            let mut t = [tag; 9];
            t[1..].copy_from_slice(&le);
            t
        };
        let buf = &mut self.row;
        match v {
            ValueRef::Null => buf.push(0),
            ValueRef::Bytes(b) => {
                buf.extend_from_slice(&tagged(1, (b.len() as u64).to_le_bytes()));
                buf.extend_from_slice(b);
            }
            ValueRef::Int(i) => buf.extend_from_slice(&tagged(2, i.to_le_bytes())),
            ValueRef::UInt(u) => buf.extend_from_slice(&tagged(3, u.to_le_bytes())),
            ValueRef::Float(f) => {
                let [a, b, c, d] = f.to_bits().to_le_bytes();
                buf.extend_from_slice(&[4, a, b, c, d]);
            }
            ValueRef::Double(d) => buf.extend_from_slice(&tagged(5, d.to_bits().to_le_bytes())),
            ValueRef::Date(y, mo, d, h, mi, s, us) => {
                let [y0, y1] = y.to_le_bytes();
                let [u0, u1, u2, u3] = us.to_le_bytes();
                buf.extend_from_slice(&[6, y0, y1, mo, d, h, mi, s, u0, u1, u2, u3]);
            }
            ValueRef::Time(neg, d, h, m, s, us) => {
                let [d0, d1, d2, d3] = d.to_le_bytes();
                let [u0, u1, u2, u3] = us.to_le_bytes();
                buf.extend_from_slice(&[7, neg as u8, d0, d1, d2, d3, h, m, s, u0, u1, u2, u3]);
            }
        }
    }

    /// Closes the current row.
    pub fn end_row(&mut self) {
        let h = xxh3_64(self.row.as_slice());
        self.row.clear();
        self.ordered = xxh3_64_with_seed(&h.to_le_bytes(), self.ordered ^ 0x9e37_79b9_7f4a_7c15);
        self.unordered = self.unordered.wrapping_add(mix(h));
        self.rows += 1;
    }

    /// Adds a whole row.
    pub fn row<'a>(&mut self, values: impl IntoIterator<Item = ValueRef<'a>>) {
        for v in values {
            self.value(v);
        }
        self.end_row();
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(&self) -> ResultDigest {
        ResultDigest {
            ordered: self.ordered,
            unordered: self.unordered,
        }
    }
}

/// splitmix64 finaliser: spreads a row hash before it is summed into the multiset digest.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Digest of column names and types: differs when the result's shape differs.
pub fn columns_digest(columns: &[Column]) -> u64 {
    let mut buf = Vec::with_capacity(columns.len() * 16);
    for c in columns {
        buf.extend_from_slice(&(c.name.len() as u32).to_le_bytes());
        buf.extend_from_slice(&c.name);
        buf.push(c.column_type);
        // Only the flag that changes how a value reads: UNSIGNED.
        buf.push((c.flags & 0x20 != 0) as u8);
    }
    xxh3_64(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(rows: &[&[ValueRef<'_>]]) -> ResultDigest {
        let mut d = RowDigester::new();
        for r in rows {
            d.row(r.iter().copied());
        }
        d.finish()
    }

    /// Recordings hold digests: the row encoding must not change. Spelled out here byte by
    /// byte (a tag, then the value little-endian), independently of `value`.
    #[test]
    fn row_encoding_stays_the_one_recordings_hold() {
        let row = [
            ValueRef::Null,
            ValueRef::Bytes(b"abc"),
            ValueRef::Int(-5),
            ValueRef::UInt(u64::MAX),
            ValueRef::Float(1.5),
            ValueRef::Double(-2.25),
            ValueRef::Date(2026, 11, 21, 8, 30, 59, 123_456),
            ValueRef::Time(true, 3, 4, 5, 6, 7),
        ];
        let mut enc = vec![0u8, 1];
        enc.extend(3u64.to_le_bytes());
        enc.extend(b"abc");
        enc.push(2);
        enc.extend((-5i64).to_le_bytes());
        enc.push(3);
        enc.extend(u64::MAX.to_le_bytes());
        enc.push(4);
        enc.extend(1.5f32.to_bits().to_le_bytes());
        enc.push(5);
        enc.extend((-2.25f64).to_bits().to_le_bytes());
        enc.push(6);
        enc.extend(2026u16.to_le_bytes());
        enc.extend([11, 21, 8, 30, 59]);
        enc.extend(123_456u32.to_le_bytes());
        enc.extend([7, 1]);
        enc.extend(3u32.to_le_bytes());
        enc.extend([4, 5, 6]);
        enc.extend(7u32.to_le_bytes());
        let h = xxh3_64(&enc);
        let d = digest(&[&row]);
        assert_eq!(
            d.ordered,
            xxh3_64_with_seed(&h.to_le_bytes(), 0x9e37_79b9_7f4a_7c15)
        );
        assert_eq!(d.unordered, mix(h));
    }

    /// Rows that outgrow the inline buffer, in one value or across several, and a short row
    /// after a long one, digest the same bytes as a plain encoding of them.
    #[test]
    fn long_rows_digest_their_whole_encoding() {
        let plain = |values: &[&[u8]]| {
            let mut enc = Vec::new();
            for v in values {
                enc.push(1);
                enc.extend((v.len() as u64).to_le_bytes());
                enc.extend(*v);
            }
            xxh3_64(&enc)
        };
        let a = vec![b'a'; 200];
        let b = vec![b'b'; 100];
        let c = vec![b'c'; 1000];
        let rows: [&[&[u8]]; 4] = [&[&a, &b], &[&c], &[&b, &a, &c, &b], &[b"x"]];
        let mut d = RowDigester::new();
        let (mut ordered, mut unordered) = (0u64, 0u64);
        for r in rows {
            d.row(r.iter().map(|v| ValueRef::Bytes(v)));
            let h = plain(r);
            ordered = xxh3_64_with_seed(&h.to_le_bytes(), ordered ^ 0x9e37_79b9_7f4a_7c15);
            unordered = unordered.wrapping_add(mix(h));
        }
        assert_eq!(d.finish(), ResultDigest { ordered, unordered });
    }

    #[test]
    fn order_changes_ordered_digest_only() {
        let a = digest(&[&[ValueRef::Int(1)], &[ValueRef::Int(2)]]);
        let b = digest(&[&[ValueRef::Int(2)], &[ValueRef::Int(1)]]);
        assert_ne!(a.ordered, b.ordered);
        assert_eq!(a.unordered, b.unordered);
    }

    #[test]
    fn value_boundaries_and_types_matter() {
        let a = digest(&[&[ValueRef::Bytes(b"ab"), ValueRef::Bytes(b"c")]]);
        let b = digest(&[&[ValueRef::Bytes(b"a"), ValueRef::Bytes(b"bc")]]);
        assert_ne!(a, b);
        let n = digest(&[&[ValueRef::Null]]);
        let e = digest(&[&[ValueRef::Bytes(b"")]]);
        assert_ne!(n, e);
        assert_ne!(
            digest(&[&[ValueRef::Int(1)]]),
            digest(&[&[ValueRef::UInt(1)]])
        );
    }

    #[test]
    fn duplicates_count_in_multiset() {
        let one = digest(&[&[ValueRef::Int(7)]]);
        let two = digest(&[&[ValueRef::Int(7)], &[ValueRef::Int(7)]]);
        assert_ne!(one.unordered, two.unordered);
        assert_ne!(
            digest(&[]).unordered,
            digest(&[&[ValueRef::Int(7)], &[ValueRef::Int(7)]]).unordered
        );
    }

    #[test]
    fn owned_and_borrowed_values_agree() {
        let owned = [
            Value::Bytes(b"x".to_vec()),
            Value::Date(2024, 1, 2, 3, 4, 5, 6),
        ];
        let a = digest(&[&[
            ValueRef::Bytes(b"x"),
            ValueRef::Date(2024, 1, 2, 3, 4, 5, 6),
        ]]);
        let mut d = RowDigester::new();
        d.row(owned.iter().map(ValueRef::from));
        assert_eq!(a, d.finish());
    }

    #[test]
    fn columns_digest_sees_names_and_types() {
        let c = |n: &str, t| Column {
            name: n.into(),
            column_type: t,
            ..Default::default()
        };
        assert_ne!(columns_digest(&[c("a", 3)]), columns_digest(&[c("b", 3)]));
        assert_ne!(columns_digest(&[c("a", 3)]), columns_digest(&[c("a", 8)]));
        assert_eq!(columns_digest(&[c("a", 3)]), columns_digest(&[c("a", 3)]));
    }
}
