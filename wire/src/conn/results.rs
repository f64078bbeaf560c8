//! Result sets as they are read: rows digested against their columns as they arrive (most
//! packets of a large answer are rows, so this is the decoder's hot path), and column
//! definitions parsed once per distinct set, since a statement repeats the same ones with
//! every answer.

use std::sync::Arc;

use myrr_recording::{Column, ErrInfo, ResultSet, RowDigester, SampleBuilder, ValueRef};
use rustc_hash::FxHashMap;

use super::commands::{Inflight, Stmt};
use super::packets::parse_column;
use super::sample::{KeptRows, RawRows};
use super::{Conn, Ctx};
use crate::reader::Reader;
use crate::values::{read_binary, UNSIGNED_FLAG};
use crate::{AnomalyAt, DecodeStats};
use myrr_recording::Command;

/// Largest payload that can be a terminator rather than a row starting with 0xfe.
const MAX_TERMINATOR: usize = 0xff_fffe;

/// A packet that ends a result set's rows: its terminator (EOF, or OK under DEPRECATE_EOF) or
/// an error. Anything else in `Rows` state is a row.
pub(super) fn ends_rows(p: &[u8]) -> bool {
    match p.first() {
        Some(0xff) => true,
        Some(0xfe) => p.len() <= MAX_TERMINATOR,
        _ => false,
    }
}

#[derive(Debug)]
pub(super) struct ResultBuild {
    pub(super) columns: Arc<[Column]>,
    rows: u64,
    bytes: u64,
    digest: RowDigester,
    binary: bool,
    pub(super) complete: bool,
    /// The first rows' bytes, when this result's rows are kept (see [`super::sample`]).
    keep: Option<Box<RawRows>>,
}

impl ResultBuild {
    pub(super) fn new(binary: bool, columns: Arc<[Column]>) -> Self {
        Self {
            columns,
            rows: 0,
            bytes: 0,
            digest: RowDigester::new(),
            binary,
            complete: true,
            keep: None,
        }
    }

    /// Keeps the first rows (within [`RawRows`]' bounds) of this result, under the
    /// sampling key `key`.
    pub(super) fn keeping(mut self, key: Option<u64>) -> Self {
        self.keep = key.map(|key| Box::new(RawRows::new(key)));
        self
    }

    /// Digests one row; false when the row does not parse against the columns.
    fn row(&mut self, payload: &[u8]) -> bool {
        self.rows += 1;
        self.bytes += payload.len() as u64;
        if let Some(k) = self.keep.as_mut() {
            k.push(payload);
        }
        let ok = if self.binary {
            binary_row(&self.columns, payload, &mut self.digest)
        } else {
            text_row(self.columns.len(), payload, &mut self.digest)
        };
        if !ok {
            self.complete = false;
        }
        ok
    }

    /// The rows kept of this result, with what reading them needs.
    pub(super) fn take_kept(&mut self) -> Option<KeptRows> {
        let raw = self.keep.take()?;
        Some(KeptRows {
            raw: *raw,
            binary: self.binary,
            columns: self.columns.clone(),
            total_rows: self.rows,
        })
    }

    pub(super) fn finish(self, status: u16, warnings: u16, error: Option<ErrInfo>) -> ResultSet {
        ResultSet {
            complete: self.complete && error.is_none(),
            digest: self.digest.finish(),
            columns: self.columns,
            rows: self.rows,
            bytes: self.bytes,
            status,
            warnings,
            error,
        }
    }
}

/// Where a row's values go: the digest, or a sample of the first rows.
pub(super) trait RowSink {
    fn value(&mut self, v: ValueRef<'_>);
    fn end_row(&mut self);
}

impl RowSink for RowDigester {
    #[inline]
    fn value(&mut self, v: ValueRef<'_>) {
        RowDigester::value(self, v)
    }
    #[inline]
    fn end_row(&mut self) {
        RowDigester::end_row(self)
    }
}

impl RowSink for SampleBuilder {
    fn value(&mut self, v: ValueRef<'_>) {
        SampleBuilder::value(self, v)
    }
    fn end_row(&mut self) {
        SampleBuilder::end_row(self)
    }
}

/// A text-protocol row of `columns` values into `sink`; false when it does not parse.
pub(super) fn text_row(columns: usize, payload: &[u8], sink: &mut impl RowSink) -> bool {
    let mut r = Reader::new(payload);
    for _ in 0..columns {
        if r.rest().first() == Some(&0xfb) {
            r.skip(1);
            sink.value(ValueRef::Null);
        } else {
            match r.lenenc_bytes() {
                Some(b) => sink.value(ValueRef::Bytes(b)),
                None => {
                    sink.end_row();
                    return false;
                }
            }
        }
    }
    sink.end_row();
    r.is_empty()
}

/// A binary-protocol row into `sink`; false when it does not parse against `columns`.
pub(super) fn binary_row(columns: &[Column], payload: &[u8], sink: &mut impl RowSink) -> bool {
    let mut r = Reader::new(payload);
    let n = columns.len();
    let ok = (|| {
        if r.u8()? != 0 {
            return None;
        }
        let bitmap = r.take((n + 7 + 2) / 8)?;
        for (i, c) in columns.iter().enumerate() {
            let bit = i + 2;
            if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                sink.value(ValueRef::Null);
            } else {
                let v = read_binary(&mut r, c.column_type, c.flags & UNSIGNED_FLAG != 0)?;
                sink.value(v);
            }
        }
        Some(())
    })()
    .is_some();
    sink.end_row();
    ok && r.is_empty()
}

/// The most distinct column sets, and bytes of their definitions, a connection remembers.
pub(super) const COLUMN_SETS: usize = 32;
pub(super) const COLUMN_SET_BYTES: usize = 16 << 10;

/// A parsed set of column definitions, with how many of them did not parse.
type ColumnSet = (Arc<[Column]>, u64);

/// Column definitions, parsed once per distinct set. A statement sends the same definitions
/// with every answer; its answers share one parsed set, found by the definitions' bytes,
/// rather than parsing and allocating the set again each time. Bounded per connection.
#[derive(Debug, Default)]
pub(super) struct ColumnSets {
    /// The definition packets of the result being read, each after its length.
    raw: Vec<u8>,
    /// Sets seen, by their packets.
    pub(super) known: FxHashMap<Box<[u8]>, ColumnSet>,
    pub(super) known_bytes: usize,
}

impl ColumnSets {
    /// A result's definitions start.
    pub(super) fn begin(&mut self) {
        self.raw.clear();
    }

    pub(super) fn push(&mut self, packet: &[u8]) {
        self.raw
            .extend_from_slice(&(packet.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(packet);
    }

    /// The columns pushed since `begin`.
    /// The columns pushed since `begin`; definitions that do not parse are counted as
    /// anomalies at `at` (the server stream's position).
    pub(super) fn finish(&mut self, stats: &mut DecodeStats, at: AnomalyAt) -> Arc<[Column]> {
        let (cols, malformed) = match self.known.get(&self.raw[..]) {
            Some((cols, malformed)) => (cols.clone(), *malformed),
            None => {
                let mut malformed = 0;
                let mut cols = Vec::new();
                let mut r = Reader::new(&self.raw);
                while let Some(p) = r.u32().and_then(|n| r.take(n as usize)) {
                    cols.push(parse_column(p).unwrap_or_else(|| {
                        malformed += 1;
                        Column::default()
                    }));
                }
                let cols: Arc<[Column]> = cols.into();
                if self.known.len() >= COLUMN_SETS
                    || self.known_bytes + self.raw.len() > COLUMN_SET_BYTES
                {
                    self.known.clear();
                    self.known_bytes = 0;
                }
                if self.raw.len() <= COLUMN_SET_BYTES {
                    self.known_bytes += self.raw.len();
                    self.known
                        .insert(self.raw.as_slice().into(), (cols.clone(), malformed));
                }
                (cols, malformed)
            }
        };
        if malformed > 0 {
            stats.anomaly(at, malformed);
        }
        cols
    }
}

impl Conn {
    /// Whether to keep the first rows of the result `f` starts now, and under which sampling
    /// key: a replaying client keeps every exchange's first result (it keeps them in its run
    /// only when they differ from the recorded ones); a capture, the first answers of each
    /// statement shape (`ctx.samples`).
    /// (A function of the fields it reads: its callers hold the command in flight.)
    pub(super) fn keep_key(
        keep_rows: bool,
        stmts: &FxHashMap<u32, Stmt>,
        f: &Inflight,
        ctx: &mut Ctx<'_>,
    ) -> Option<u64> {
        if !f.results.is_empty() {
            return None;
        }
        if keep_rows {
            return Some(0);
        }
        let samples = ctx.samples.as_deref_mut()?;
        let key = match &f.command {
            Command::Query { sql, .. } => {
                if !samples.look() {
                    return None;
                }
                crate::sql::shape_key(sql)
            }
            Command::Execute { stmt_id, .. } | Command::Fetch { stmt_id, .. } => {
                stmts.get(stmt_id)?.key
            }
            _ => return None,
        };
        samples.wants(key).then_some(key)
    }

    /// A row of the result being read (none: the result's start was not seen).
    pub(super) fn row(f: &mut Inflight, p: &[u8]) {
        if let Some(c) = f.cur.as_mut() {
            c.row(p);
        }
    }
}
