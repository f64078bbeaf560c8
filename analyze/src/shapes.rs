//! Per-shape aggregation. [`Shapes`] is the registry that gives every exchange its shape (the
//! fingerprint of its SQL; an EXECUTE takes its PREPARE's), and each [`ShapeAcc`] gathers, while
//! the runs are joined, its latency histograms on both sides, its answer differences by class
//! and a few examples of each, until it becomes one of the report's [`Shape`]s.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use myrr_recording::{Command, Exchange, Response};
use rustc_hash::FxHashMap as HashMap;

use crate::compare::{is_nondeterministic, is_ordered, Mismatch};
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::join::Key;
use crate::report::{Example, Shape};
use crate::stats::{mann_whitney, new_histogram, ratio, record, Percentiles};
use crate::{verdict, Options};

/// Shape registry: SQL → fingerprint → shape index, with a cache on the raw SQL.
#[derive(Default)]
pub(crate) struct Shapes {
    by_sql: HashMap<u64, u32>,
    by_text: HashMap<String, u32>,
    shapes: Vec<ShapeAcc>,
    /// (session, statement id) → shape of its PREPARE.
    stmts: HashMap<(u64, u32), u32>,
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
            example_counts: BTreeMap::new(),
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
                    self.stmts.insert((x.session, p.stmt_id), s);
                }
                s
            }
            Command::Execute { stmt_id, .. } => match self.stmts.get(&(x.session, *stmt_id)) {
                Some(&s) => s,
                None => self.intern_text(format!("execute of unknown statement {stmt_id}")),
            },
            c => self.intern_text(format!("administrator command: {}", c.name())),
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
    pub(crate) fn into_report(self, opts: &Options) -> Vec<Shape> {
        self.shapes
            .into_iter()
            .filter(|s| !(s.base.is_empty() && s.cand.is_empty() && s.mismatches.is_empty()))
            .map(|s| s.into_shape(opts))
            .collect()
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
    examples: Vec<Example>,
    example_counts: BTreeMap<Mismatch, usize>,
}

impl ShapeAcc {
    /// One joined exchange's latency on each side, in µs.
    pub(crate) fn record_latency(&mut self, base_us: u64, cand_us: u64) {
        record(&mut self.base, base_us);
        record(&mut self.cand, cand_us);
        self.total_base += base_us;
        self.total_cand += cand_us;
    }

    /// One answer difference at `key`, kept as an example while its class has fewer than
    /// `max_examples`.
    pub(crate) fn record_difference(
        &mut self,
        m: Mismatch,
        key: Key,
        baseline: &Response,
        candidate: &Response,
        max_examples: usize,
    ) {
        *self.mismatches.entry(m).or_default() += 1;
        let n = self.example_counts.entry(m).or_default();
        if *n < max_examples {
            *n += 1;
            self.examples.push(Example {
                session: key.0,
                seq: key.1,
                clone: key.2,
                sql: self.fingerprint.chars().take(300).collect(),
                baseline: describe(baseline),
                candidate: describe(candidate),
            });
        }
    }

    fn into_shape(self, opts: &Options) -> Shape {
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
            examples: self.examples,
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
