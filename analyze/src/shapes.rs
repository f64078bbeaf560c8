//! Per-shape aggregation. [`Shapes`] is the registry that gives every exchange its shape (the
//! fingerprint of its SQL; an EXECUTE takes its PREPARE's), and each [`ShapeAcc`] gathers, while
//! the runs are joined, its latency histograms on both sides, its answer differences by class
//! and a few examples of each, until it becomes one of the report's [`Shape`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use myrr_recording::{render_value, Command, Exchange, Response, RowSample, RunKind, Value};
use rustc_hash::FxHashMap as HashMap;

use crate::cells;
use crate::compare::{is_nondeterministic, is_ordered, Mismatch};
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::join::Key;
use crate::report::{Example, ExampleRows, Shape, SideRows};
use crate::stats::{mann_whitney, new_histogram, ratio, record, Percentiles};
use crate::{verdict, Options};

/// Shape registry: SQL → fingerprint → shape index, with a cache on the raw SQL.
#[derive(Default)]
pub(crate) struct Shapes {
    by_sql: HashMap<u64, u32>,
    by_text: HashMap<String, u32>,
    shapes: Vec<ShapeAcc>,
    /// (session, statement id) → shape of its PREPARE, and its text (for examples).
    stmts: HashMap<(u64, u32), (u32, Arc<str>)>,
}

impl Shapes {
    fn intern_text(&mut self, text: String) -> u32 {
        if let Some(&i) = self.by_text.get(&text) {
            return i;
        }
        let i = self.shapes.len() as u32;
        let fp = Fingerprint::from_text(text.clone());
        self.shapes.push(ShapeAcc {
            id: fp.id_hex(),
            nondeterministic: is_nondeterministic(&text),
            ordered: is_ordered(&text),
            fingerprint: text.clone(),
            base: new_histogram(),
            cand: new_histogram(),
            total_base: 0,
            total_cand: 0,
            mismatches: BTreeMap::new(),
            examples: Vec::new(),
        });
        self.by_text.insert(text, i);
        i
    }

    fn of_sql(&mut self, sql: &[u8]) -> u32 {
        let h = xxhash_rust::xxh3::xxh3_64(sql);
        if let Some(&i) = self.by_sql.get(&h) {
            return i;
        }
        let text = fingerprint(&String::from_utf8_lossy(sql));
        let i = self.intern_text(text);
        if self.by_sql.len() < 1_000_000 {
            self.by_sql.insert(h, i);
        }
        i
    }

    /// The shape of an exchange's command (EXECUTE: its statement's PREPARE).
    pub(crate) fn of(&mut self, x: &Exchange) -> u32 {
        match &x.command {
            Command::Query { sql, .. } => self.of_sql(sql),
            Command::Prepare { sql } => {
                let s = self.of_sql(sql);
                if let Response::Prepared(p) = &x.response {
                    let text: String = String::from_utf8_lossy(sql)
                        .chars()
                        .take(STATEMENT_CHARS)
                        .collect();
                    self.stmts.insert((x.session, p.stmt_id), (s, text.into()));
                }
                s
            }
            Command::Execute { stmt_id, .. } => match self.stmts.get(&(x.session, *stmt_id)) {
                Some(&(s, _)) => s,
                None => self.intern_text(format!("execute of unknown statement {stmt_id}")),
            },
            c => self.intern_text(format!("administrator command: {}", c.name())),
        }
    }

    /// The statement `command` sent, as an example shows it: its SQL, or an EXECUTE's
    /// prepared text; and an EXECUTE's parameters.
    pub(crate) fn statement(&self, session: u64, command: &Command) -> (String, Vec<String>) {
        match command {
            Command::Query { sql, .. } | Command::Prepare { sql } => (cut(sql), vec![]),
            Command::Execute {
                stmt_id,
                params,
                prepare_seen,
                raw_params,
                ..
            } => {
                let text = match self.stmts.get(&(session, *stmt_id)) {
                    Some((_, text)) => text.to_string(),
                    None => {
                        format!("EXECUTE of statement {stmt_id} (its PREPARE is not in the run)")
                    }
                };
                let params = if *prepare_seen || !params.is_empty() {
                    params.iter().map(|p| literal(&p.value)).collect()
                } else {
                    vec![format!(
                        "({} bytes of parameters, not decoded)",
                        raw_params.len()
                    )]
                };
                (text, params)
            }
            Command::InitDb { db } => (format!("USE {}", String::from_utf8_lossy(db)), vec![]),
            c => (format!("administrator command: {}", c.name()), vec![]),
        }
    }

    /// The rows of side `base` (or the candidate's) of example `i` of `shape`, read after the
    /// example was made; dropped if the example was replaced since (another key).
    pub(crate) fn attach(&mut self, shape: u32, i: usize, base: bool, key: Key, sample: RowSample) {
        let Some(e) = self.shapes[shape as usize].examples.get_mut(i) else {
            return;
        };
        let x = &e.example;
        // With a fan-out, the baseline's key has clone 0 where the example names the clone.
        if (x.session, x.seq) != (key.0, key.1) || (!base && x.clone != key.2) {
            return;
        }
        if base {
            e.base.sample = Some(sample);
        } else {
            e.cand.sample = Some(sample);
        }
    }

    /// A shape's fingerprint text.
    pub(crate) fn fingerprint(&self, shape: u32) -> &str {
        &self.shapes[shape as usize].fingerprint
    }

    pub(crate) fn get_mut(&mut self, shape: u32) -> &mut ShapeAcc {
        &mut self.shapes[shape as usize]
    }

    /// The report's shapes, in the order they were first seen. A shape with no latency and no
    /// difference (never joined, or only untimed commands that answered alike) has nothing to
    /// report.
    /// `kinds`: the baseline's and the candidate's, which say why rows were not kept.
    /// Fingerprint → shape index, taken out before [`Shapes::into_report`] (the timeline finds
    /// the regressed shapes' series by it).
    pub(crate) fn take_index(&mut self) -> HashMap<String, u32> {
        std::mem::take(&mut self.by_text)
    }

    pub(crate) fn into_report(self, opts: &Options, kinds: (RunKind, RunKind)) -> Vec<Shape> {
        self.shapes
            .into_iter()
            .filter(|s| !(s.base.is_empty() && s.cand.is_empty() && s.mismatches.is_empty()))
            .map(|s| s.into_shape(opts, kinds))
            .collect()
    }
}

/// Characters of a statement shown in an example.
const STATEMENT_CHARS: usize = 2000;

fn cut(sql: &[u8]) -> String {
    let text = String::from_utf8_lossy(sql);
    let mut out: String = text.chars().take(STATEMENT_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// A bound parameter as an SQL literal.
fn literal(v: &Value) -> String {
    match v {
        Value::Bytes(_) | Value::Date(..) | Value::Time(..) => {
            let mut t = render_value(v);
            if t.len() > 256 {
                let mut end = 256;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.truncate(end);
                t.push('…');
            }
            // Bytes that are not text render in hex, an SQL literal as is.
            if matches!(v, Value::Bytes(b) if t.starts_with("0x") && !b.starts_with(b"0x")) {
                t
            } else {
                format!("'{}'", t.replace('\'', "''"))
            }
        }
        other => render_value(other),
    }
}

/// One side of a differing exchange, as an example needs it.
pub(crate) struct Side {
    /// Column names, when the answer has rows.
    columns: Option<Vec<String>>,
    /// The rows the run kept, once they are read (they follow their exchange).
    pub(crate) sample: Option<RowSample>,
}

impl Side {
    pub(crate) fn of(response: &Response, sample: Option<RowSample>) -> Self {
        let columns = match response {
            Response::Rows(rs) => Some(
                rs.columns
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.name).into_owned())
                    .collect(),
            ),
            _ => None,
        };
        Self { columns, sample }
    }
}

/// An example being gathered: its rows are rendered when the report is made.
pub(crate) struct PendingExample {
    pub(crate) example: Example,
    class: Mismatch,
    pub(crate) base: Side,
    pub(crate) cand: Side,
}

/// Why a side's rows are not shown.
fn not_kept(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Capture => {
            "not kept: a capture keeps the rows of the first 3 answers of each statement shape"
        }
        RunKind::Replay => {
            "not kept: a replay keeps the rows of the first 10 answers of each statement shape \
             that differ from the recording it replayed (none with --no-row-samples, nor before \
             format version 3)"
        }
    }
}

fn side_rows(side: &Side, kind: RunKind) -> (SideRows, Option<Vec<Vec<String>>>) {
    let columns = side.columns.clone().unwrap_or_default();
    match (&side.columns, &side.sample) {
        (None, _) => (
            SideRows {
                kept: false,
                note: Some("no rows: the answer is not a result set".into()),
                columns,
                rows: vec![],
                differing: vec![],
                rows_left_out: 0,
                cells_cut: 0,
            },
            None,
        ),
        (Some(_), None) => (
            SideRows {
                kept: false,
                note: Some(not_kept(kind).into()),
                columns,
                rows: vec![],
                differing: vec![],
                rows_left_out: 0,
                cells_cut: 0,
            },
            None,
        ),
        (Some(_), Some(sample)) => {
            let (rows, left) = cells::render(sample);
            (
                SideRows {
                    kept: true,
                    note: None,
                    columns,
                    rows: rows.clone(),
                    differing: vec![],
                    rows_left_out: left,
                    cells_cut: sample.cells_cut,
                },
                Some(rows),
            )
        }
    }
}

impl PendingExample {
    fn into_example(self, ordered: bool, kinds: (RunKind, RunKind)) -> Example {
        let mut e = self.example;
        if self.base.columns.is_some() || self.cand.columns.is_some() {
            let (mut b, rb) = side_rows(&self.base, kinds.0);
            let (mut c, rc) = side_rows(&self.cand, kinds.1);
            if let (Some(rb), Some(rc)) = (rb, rc) {
                let (mb, mc) = cells::mark(&rb, &rc, ordered);
                b.differing = mb;
                c.differing = mc;
            }
            e.rows = Some(ExampleRows {
                baseline: b,
                candidate: c,
            });
        }
        e
    }
}

/// What is accumulated for one shape while the runs are joined.
pub(crate) struct ShapeAcc {
    fingerprint: String,
    id: String,
    /// Its answers may legitimately differ between runs (NOW(), RAND() …): differences are
    /// not failures.
    pub(crate) nondeterministic: bool,
    /// The SQL asks for an order, so rows in another order are a difference.
    pub(crate) ordered: bool,
    base: Histogram<u64>,
    cand: Histogram<u64>,
    total_base: u64,
    total_cand: u64,
    mismatches: BTreeMap<Mismatch, u64>,
    pub(crate) examples: Vec<PendingExample>,
}

impl ShapeAcc {
    /// One joined exchange's latency on each side, in µs.
    pub(crate) fn record_latency(&mut self, base_us: u64, cand_us: u64) {
        record(&mut self.base, base_us);
        record(&mut self.cand, cand_us);
        self.total_base += base_us;
        self.total_cand += cand_us;
    }

    /// One answer difference, counted; kept as an example while the shape has fewer than
    /// `max_examples`, or in place of one of a class with several when its class has none.
    /// The example's index, when it is kept (its rows may still be on their way).
    pub(crate) fn record_difference(
        &mut self,
        m: Mismatch,
        key: Key,
        statement: (String, Vec<String>),
        (baseline, base): (&Response, Side),
        (candidate, cand): (&Response, Side),
        max_examples: usize,
    ) -> Option<usize> {
        *self.mismatches.entry(m).or_default() += 1;
        let at = if self.examples.len() < max_examples {
            self.examples.len()
        } else if self.examples.iter().all(|e| e.class != m) {
            // The class with the most examples, if it has more than one, gives its last.
            let mut counts: BTreeMap<Mismatch, usize> = BTreeMap::new();
            for e in &self.examples {
                *counts.entry(e.class).or_default() += 1;
            }
            let (most, n) = counts
                .into_iter()
                .max_by_key(|&(c, n)| (n, std::cmp::Reverse(c)))?;
            if n < 2 {
                return None;
            }
            self.examples.iter().rposition(|e| e.class == most)?
        } else {
            return None;
        };
        let (statement, params) = statement;
        let pending = PendingExample {
            example: Example {
                session: key.0,
                seq: key.1,
                clone: key.2,
                class: m.name().into(),
                sql: self.fingerprint.chars().take(300).collect(),
                statement,
                params,
                baseline: describe(baseline),
                candidate: describe(candidate),
                rows: None,
            },
            class: m,
            base,
            cand,
        };
        if at == self.examples.len() {
            self.examples.push(pending);
        } else {
            self.examples[at] = pending;
        }
        Some(at)
    }

    fn into_shape(self, opts: &Options, kinds: (RunKind, RunKind)) -> Shape {
        let (pb, pc) = (Percentiles::of(&self.base), Percentiles::of(&self.cand));
        let p = mann_whitney(&self.cand, &self.base);
        let p50_ratio = ratio(pb.p50_us, pc.p50_us);
        let p99_ratio = ratio(pb.p99_us, pc.p99_us);
        let latency = verdict::shape_latency(&pb, &pc, p, opts);
        let mean_diff = pc.mean_us - pb.mean_us;
        Shape {
            id: self.id,
            fingerprint: self.fingerprint,
            nondeterministic: self.nondeterministic,
            total_baseline_us: self.total_base,
            total_candidate_us: self.total_cand,
            added_us: (mean_diff * pc.count as f64) as i64,
            baseline: pb,
            candidate: pc,
            p50_ratio,
            p99_ratio,
            p_value: p.map(|x| x.1),
            latency: latency.to_string(),
            mismatches: self
                .mismatches
                .iter()
                .map(|(k, v)| (k.name().to_string(), *v))
                .collect(),
            examples: self
                .examples
                .into_iter()
                .map(|e| e.into_example(self.ordered, kinds))
                .collect(),
        }
    }
}

/// Answer differences by class over all shapes; nondeterministic shapes' are not failures and
/// are left out, but for what their time functions cannot explain (another insert id).
pub(crate) fn mismatch_totals(shapes: &[Shape]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for s in shapes {
        for (m, n) in &s.mismatches {
            let explained = Mismatch::from_name(m).is_none_or(Mismatch::time_can_explain);
            if !s.nondeterministic || !explained {
                *totals.entry(m.clone()).or_default() += n;
            }
        }
    }
    totals
}

/// An answer in a line, for examples.
fn describe(r: &Response) -> String {
    match r {
        Response::Ok(ok) => format!(
            "ok, {} affected, {} warnings",
            ok.affected_rows, ok.warnings
        ),
        Response::Err(e) => format!("error {} {}", e.code, String::from_utf8_lossy(&e.message)),
        Response::Rows(rs) => format!(
            "{} rows × {} columns, digest {:016x}/{:016x}",
            rs.rows,
            rs.columns.len(),
            rs.digest.ordered,
            rs.digest.unordered
        ),
        other => other.kind_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_keeps_three_examples_and_makes_room_for_a_new_class() {
        let mut shapes = Shapes::default();
        let x = Exchange {
            session: 1,
            seq: 0,
            clone: 0,
            scheduled_us: None,
            start_us: 0,
            end_us: 0,
            command: Command::Query {
                sql: b"SELECT v FROM t WHERE id = 1".to_vec(),
                attrs: vec![],
            },
            response: Response::None,
            more: vec![],
        };
        let shape = shapes.of(&x);
        let (statement, params) = shapes.statement(1, &x.command);
        assert_eq!(statement, "SELECT v FROM t WHERE id = 1");
        assert!(params.is_empty());
        let sh = shapes.get_mut(shape);
        let mut record = |m: Mismatch, seq: u64| {
            let r = Response::None;
            sh.record_difference(
                m,
                (1, seq, 0),
                ("q".into(), vec![]),
                (&r, Side::of(&r, None)),
                (&r, Side::of(&r, None)),
                3,
            )
        };
        assert_eq!(record(Mismatch::Values, 1), Some(0));
        assert_eq!(record(Mismatch::Values, 2), Some(1));
        assert_eq!(record(Mismatch::Values, 3), Some(2));
        assert_eq!(record(Mismatch::Values, 4), None);
        // A class without an example replaces the last of the class with the most.
        assert_eq!(record(Mismatch::RowCount, 5), Some(2));
        assert_eq!(record(Mismatch::Warnings, 6), Some(1));
        // One example per class now: no room.
        assert_eq!(record(Mismatch::Order, 7), None);
        let seqs: Vec<u64> = sh.examples.iter().map(|e| e.example.seq).collect();
        assert_eq!(seqs, [1, 6, 5]);
        assert_eq!(sh.mismatches[&Mismatch::Values], 4);
    }

    #[test]
    fn an_execute_shows_its_prepared_text_and_parameters_as_literals() {
        let mut shapes = Shapes::default();
        let prepare = Exchange {
            session: 3,
            seq: 0,
            clone: 0,
            scheduled_us: None,
            start_us: 0,
            end_us: 0,
            command: Command::Prepare {
                sql: b"SELECT c FROM t WHERE id = ? AND k = ?".to_vec(),
            },
            response: Response::Prepared(myrr_recording::Prepared {
                stmt_id: 9,
                params: 2,
                columns: 1,
                warnings: 0,
                param_defs: vec![],
                column_defs: vec![],
            }),
            more: vec![],
        };
        shapes.of(&prepare);
        let param = |value| myrr_recording::Param {
            column_type: 8,
            unsigned: false,
            value,
        };
        let execute = Command::Execute {
            stmt_id: 9,
            flags: 0,
            params: vec![param(Value::Int(42)), param(Value::Bytes(b"it's".to_vec()))],
            prepare_seen: true,
            raw_params: vec![],
        };
        let (text, params) = shapes.statement(3, &execute);
        assert_eq!(text, "SELECT c FROM t WHERE id = ? AND k = ?");
        assert_eq!(params, ["42", "'it''s'"]);
        // Another session's statement 9 is unknown.
        let (text, _) = shapes.statement(4, &execute);
        assert!(text.contains("statement 9"), "{text}");
        let unread = Command::Execute {
            stmt_id: 9,
            flags: 0,
            params: vec![],
            prepare_seen: false,
            raw_params: vec![1, 2, 3],
        };
        assert_eq!(
            shapes.statement(3, &unread).1,
            ["(3 bytes of parameters, not decoded)"]
        );
    }
}
