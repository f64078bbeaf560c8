//! Decoding [`ResultSet`]s with their column sets shared.
//!
//! Every answer of a statement carries the same column definitions. Decoded as plain values,
//! each answer would allocate its set again (two buffers per column, the list, the `Arc`). A
//! reader that borrows from its block decodes the definitions in place instead, and takes the
//! set from a small per-thread cache when it has been seen: no allocation for a repeated set.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bincode::de::{BorrowDecoder, Decoder};
use bincode::error::DecodeError;
use bincode::{BorrowDecode, Decode};
use rustc_hash::{FxHashMap, FxHasher};
use smallvec::SmallVec;

use crate::event::{Column, ResultSet};

/// Distinct sets a thread remembers before it starts over.
const CACHED_SETS: usize = 4096;

thread_local! {
    static SETS: RefCell<FxHashMap<u64, Arc<[Column]>>> = RefCell::default();
}

/// [`Column`] as encoded, borrowing its strings from the input. Field for field the same as
/// `Column` (the tests check it).
#[derive(BorrowDecode, Hash)]
struct ColumnRef<'a> {
    name: &'a [u8],
    table: &'a [u8],
    column_type: u8,
    flags: u16,
    charset: u16,
    decimals: u8,
    length: u32,
}

impl ColumnRef<'_> {
    fn is(&self, c: &Column) -> bool {
        self.name == c.name.as_slice()
            && self.table == c.table.as_slice()
            && (
                self.column_type,
                self.flags,
                self.charset,
                self.decimals,
                self.length,
            ) == (c.column_type, c.flags, c.charset, c.decimals, c.length)
    }

    fn to_column(&self) -> Column {
        Column {
            name: self.name.to_vec(),
            table: self.table.to_vec(),
            column_type: self.column_type,
            flags: self.flags,
            charset: self.charset,
            decimals: self.decimals,
            length: self.length,
        }
    }
}

/// A column list (encoded like a `Vec<Column>`), shared with earlier equal ones.
fn borrow_decode_columns<'de, D: BorrowDecoder<'de>>(
    d: &mut D,
) -> Result<Arc<[Column]>, DecodeError> {
    let n = u64::decode(d)?;
    let n = usize::try_from(n).map_err(|_| DecodeError::OutsideUsizeRange(n))?;
    // The decoder's size limit, counted as for a `Vec<Column>`.
    d.claim_container_read::<Column>(n)?;
    let mut refs: SmallVec<[ColumnRef<'de>; 8]> = SmallVec::new();
    for _ in 0..n {
        d.unclaim_bytes_read(std::mem::size_of::<Column>());
        refs.push(ColumnRef::borrow_decode(d)?);
    }
    let mut h = FxHasher::default();
    refs.hash(&mut h);
    let key = h.finish();
    SETS.with(|sets| {
        let mut sets = sets.borrow_mut();
        if let Some(set) = sets.get(&key) {
            if set.len() == refs.len() && refs.iter().zip(set.iter()).all(|(r, c)| r.is(c)) {
                return Ok(set.clone());
            }
        }
        let set: Arc<[Column]> = refs.iter().map(ColumnRef::to_column).collect();
        if sets.len() >= CACHED_SETS {
            sets.clear();
        }
        sets.insert(key, set.clone());
        Ok(set)
    })
}

impl<C> Decode<C> for ResultSet {
    fn decode<D: Decoder<Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        Ok(Self {
            columns: Decode::decode(d)?,
            rows: Decode::decode(d)?,
            bytes: Decode::decode(d)?,
            digest: Decode::decode(d)?,
            status: Decode::decode(d)?,
            warnings: Decode::decode(d)?,
            complete: Decode::decode(d)?,
            error: Decode::decode(d)?,
        })
    }
}

impl<'de, C> BorrowDecode<'de, C> for ResultSet {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(d: &mut D) -> Result<Self, DecodeError> {
        Ok(Self {
            columns: borrow_decode_columns(d)?,
            rows: BorrowDecode::borrow_decode(d)?,
            bytes: BorrowDecode::borrow_decode(d)?,
            digest: BorrowDecode::borrow_decode(d)?,
            status: BorrowDecode::borrow_decode(d)?,
            warnings: BorrowDecode::borrow_decode(d)?,
            complete: BorrowDecode::borrow_decode(d)?,
            error: BorrowDecode::borrow_decode(d)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ErrInfo;
    use crate::ResultDigest;

    fn col(name: &str, table: &str, column_type: u8) -> Column {
        Column {
            name: name.into(),
            table: table.into(),
            column_type,
            flags: 0x1001,
            charset: 33,
            decimals: 31,
            length: 80_000,
        }
    }

    fn rs(columns: &[Column], error: Option<ErrInfo>) -> ResultSet {
        ResultSet {
            columns: columns.into(),
            rows: 300,
            bytes: 70_000,
            digest: ResultDigest {
                ordered: u64::MAX,
                unordered: 7,
            },
            status: 0x22,
            warnings: 2,
            complete: error.is_none(),
            error,
        }
    }

    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<{ 1 << 20 }>()
    }

    fn both_ways(r: &ResultSet) -> (ResultSet, ResultSet) {
        let bytes = bincode::encode_to_vec(r, config()).unwrap();
        let (plain, n): (ResultSet, _) = bincode::decode_from_slice(&bytes, config()).unwrap();
        assert_eq!(n, bytes.len());
        let (borrowed, n): (ResultSet, _) =
            bincode::borrow_decode_from_slice(&bytes, config()).unwrap();
        assert_eq!(n, bytes.len());
        (plain, borrowed)
    }

    #[test]
    fn both_decoders_give_back_what_was_encoded() {
        let err = ErrInfo {
            code: 1317,
            state: b"70100".to_vec(),
            message: b"Query execution was interrupted".to_vec(),
        };
        let cols = [col("id", "t", 3), col("name", "t", 253), col("", "", 0)];
        for r in [rs(&cols, None), rs(&cols[..1], Some(err)), rs(&[], None)] {
            let (plain, borrowed) = both_ways(&r);
            assert_eq!(plain, r);
            assert_eq!(borrowed, r);
        }
    }

    #[test]
    fn equal_column_sets_are_shared_and_others_are_not() {
        let a = [col("id", "t", 3), col("name", "t", 253)];
        let b = [col("id", "t", 3), col("name", "u", 253)];
        let (_, a1) = both_ways(&rs(&a, None));
        let (_, a2) = both_ways(&rs(&a, None));
        let (_, b1) = both_ways(&rs(&b, None));
        assert!(Arc::ptr_eq(&a1.columns, &a2.columns));
        assert!(!Arc::ptr_eq(&a1.columns, &b1.columns));
        assert_eq!(&b1.columns[..], &b[..]);
        // The plain decoder does not share.
        let (p1, _) = both_ways(&rs(&a, None));
        assert!(!Arc::ptr_eq(&p1.columns, &a1.columns));
    }

    #[test]
    fn a_column_count_past_the_limit_is_an_error_not_an_allocation() {
        let mut bytes = Vec::new();
        bincode::encode_into_std_write(u64::MAX / 2, &mut bytes, config()).unwrap();
        let r: Result<(ResultSet, usize), _> = bincode::borrow_decode_from_slice(&bytes, config());
        assert!(r.is_err());
    }
}
