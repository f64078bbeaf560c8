//! Both runs over time: what one p99 over the whole run hides — a candidate that degrades
//! after two minutes (a buffer pool filling, checkpoint stalls, a plan flip), or stops
//! answering for seconds.
//!
//! Each side's time axis starts at its first measured exchange's start (each side its own
//! origin, so a capture and its paced replay line up) and an exchange counts at its end: per
//! bucket, exchanges completed per second, errors (`Response::Err`) per second, and the p99 of
//! service and since-scheduled time. Only what the join times is measured: commands that
//! expect an answer, answered (not skipped, not missing) — the same exchanges as the overall
//! latency.
//!
//! Memory is bounded whatever the run's length, which is known only at its end:
//! - [`RunSeries`] starts at 1 s buckets and widens them along [`WIDTHS_S`] (each width divides
//!   the next, so buckets merge whole) whenever a bucket index would reach [`MAX_BUCKETS`]:
//!   1 s buckets up to 5 min, 2 s up to 10 min, 10 s up to 50 min, and so on. A bucket holds a
//!   histogram of service time at ±6 % (3.7 KiB, allocated with its first exchange), and one of
//!   since-scheduled time once that differs (in a replay): at most ~2.2 MiB per side.
//! - Stalls are found on 100 ms slots: per slot, the exchanges completed and the change in
//!   exchanges in flight (+1 at a start's slot, −1 at its end's). A stall is a run of slots in
//!   which nothing completed while something was in flight, at least [`STALL_MIN_US`] long,
//!   after the run's first completion (so an idle workload is not a stall, and neither is the
//!   wait for the first answer). Slots double in width past [`MAX_SLOTS`] (1.8 h at 100 ms):
//!   12 bytes a slot, ≤ 768 KiB per side.
//! - Per shape, per bucket: count, sum and max of the latency the verdict uses (per shape, the
//!   buckets it was seen in, in order: exchanges come nearly in the order they ended, so the
//!   bucket is almost always the last one; merged with the buckets), so the shapes found
//!   regressed at the end can be shown over time: at most shapes × [`MAX_BUCKETS`] cells.
//!
//! Both sides are shown at the same bucket width: the wider of the two, the finer side merged
//! up to it.
//!
//! Cost, measured with an interleaved A/B of `myrr analyze --baseline X --candidate X`
//! against the same code without the timeline (release builds, median CPU time of 20–40 runs
//! each): +1.7 % on a sysbench capture of 83k exchanges, +3.2 % on one of 207k (prepared
//! statements), +3.7 % on a write workload's capture of 364k; peak RSS +1 MiB; +3.9 % for
//! that capture against its paced replay (whose since-scheduled histograms are kept too).
//! Measured again on 2026-12-07 (`/tmp`-built A/B, 30–40 interleaved runs per input, CPU
//! time): +4.1 to +6.5 % with a total counted per value; summing a histogram's total when
//! asked instead, +3.6 to +5.6 % (median +4.3 % over 12 measurements: ro-16, rw-all and a
//! paced replay against its recording). analyze itself got faster since the first figures,
//! so the same cost is a larger share.
//! The first version (HdrHistograms per bucket, a hash map per (shape, bucket), divisions per
//! offset) cost +7.5 %; u32 cells inline in the bucket (half the bytes) measured slower
//! (+5.7 % against +2.5 % in the same interleaved run) and were not kept.

use myrr_recording::{Exchange, Response};

use crate::report::{
    RunTimeline, Shape, ShapeBucket, ShapePoint, ShapeTimeline, Stall, TimeBucket, Timeline,
    WorstWindow,
};

/// Bucket widths, in seconds, from the finest; past the last, widths double. Each divides the
/// next, so a bucket of one width is whole buckets of the finer ones.
pub const WIDTHS_S: [u64; 9] = [1, 2, 10, 30, 60, 300, 600, 1800, 3600];
/// Buckets kept per side: the charts' resolution.
pub(crate) const MAX_BUCKETS: usize = 300;
/// The finest slot stalls are looked for at.
pub(crate) const SLOT_US: u64 = 100_000;
/// Slots kept per side before they double in width.
pub(crate) const MAX_SLOTS: usize = 1 << 16;
/// The shortest time without a completion that is a stall.
pub(crate) const STALL_MIN_US: u64 = 1_000_000;
/// Regressed shapes shown over time.
pub(crate) const MAX_SHAPES: usize = 10;

/// The width after `width_us`.
fn wider(width_us: u64) -> u64 {
    WIDTHS_S
        .iter()
        .map(|s| s * 1_000_000)
        .find(|&w| w > width_us)
        .unwrap_or_else(|| width_us.saturating_mul(2))
}

/// Counts per power of two in a [`Coarse`] histogram (4 bits below the leading one).
const SUB: u32 = 16;
/// Cells of a [`Coarse`] histogram: values up to 2³² µs (71 minutes; longer ones count there).
const COARSE_CELLS: usize = ((32 - 3) * SUB) as usize;

/// A latency distribution at ±6 % (16 cells per power of two, like an HdrHistogram at one
/// significant digit), in 3.7 KiB. Recording is a leading-zero count, a shift and an add,
/// where `hdrhistogram`'s checked record path is a call per value: with two of those per
/// exchange (and a hash map per shape, divisions per offset) the timeline cost 7.5 % of
/// analyze's CPU time; with these, 2–4 % (see the module doc).
#[derive(Clone)]
struct Coarse {
    counts: Box<[u64; COARSE_CELLS]>,
}

impl Coarse {
    fn new() -> Self {
        Self {
            counts: Box::new([0; COARSE_CELLS]),
        }
    }

    /// The cell of `us`: values under 16 exactly, then 16 cells per power of two.
    #[inline]
    fn cell(us: u64) -> usize {
        let v = us.clamp(1, u64::from(u32::MAX));
        let exp = 63 - v.leading_zeros();
        if exp < 4 {
            v as usize
        } else {
            ((exp - 3) * SUB + ((v >> (exp - 4)) as u32 & (SUB - 1))) as usize
        }
    }

    /// The highest value of cell `i`.
    fn highest(i: usize) -> u64 {
        let i = i as u64;
        if i < u64::from(SUB) {
            i
        } else {
            let (exp, sub) = (i / u64::from(SUB) + 3, i % u64::from(SUB));
            ((u64::from(SUB) + sub + 1) << (exp - 4)) - 1
        }
    }

    /// Values recorded (summed when asked: a second counter to bump per value cost more
    /// than the sum, which is asked once per bucket).
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn record(&mut self, us: u64) {
        self.counts[Self::cell(us)] += 1;
    }

    fn add(&mut self, other: &Coarse) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// The value at quantile `q` (the highest of its cell, as HdrHistogram answers); 0 when
    /// empty.
    fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        let want = ((q * total as f64).ceil() as u64).clamp(1, total.max(1));
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want && n > 0 {
                return Self::highest(i);
            }
        }
        0
    }
}

/// The index of an offset in cells `width` wide, remembering the last cell's range: the
/// exchanges of a run come nearly in the order they ended, so most offsets fall in the cell
/// of the one before and need no division (a 64-bit division costs more than the rest of
/// recording an exchange).
struct Grid {
    width: u64,
    lo: u64,
    hi: u64,
    at: usize,
}

impl Grid {
    fn new(width: u64) -> Self {
        Self {
            width,
            lo: 0,
            hi: 0,
            at: 0,
        }
    }

    #[inline]
    fn index(&mut self, offset: u64) -> u64 {
        if offset >= self.lo && offset < self.hi {
            return self.at as u64;
        }
        let i = offset / self.width;
        self.lo = i * self.width;
        self.hi = self.lo.saturating_add(self.width);
        self.at = i as usize;
        i
    }

    fn widen(&mut self, width: u64) {
        *self = Self::new(width);
    }
}

/// The two distributions of a bucket, allocated with its first exchange.
struct Latencies {
    service: Coarse,
    /// Since scheduled, once an exchange's differs from its service time (never in a
    /// capture): until then it is the service time's, and recording it twice would cost the
    /// time of one more histogram per exchange.
    sched: Option<Coarse>,
}

impl Latencies {
    fn record(&mut self, service_us: u64, sched_us: u64) {
        if self.sched.is_none() && sched_us != service_us {
            self.sched = Some(self.service.clone());
        }
        self.service.record(service_us);
        if let Some(h) = &mut self.sched {
            h.record(sched_us);
        }
    }

    fn add(&mut self, other: &Latencies) {
        if self.sched.is_none() && other.sched.is_some() {
            self.sched = Some(self.service.clone());
        }
        if let Some(h) = &mut self.sched {
            h.add(other.sched.as_ref().unwrap_or(&other.service));
        }
        self.service.add(&other.service);
    }
}

#[derive(Default)]
struct Bucket {
    exchanges: u64,
    errors: u64,
    latencies: Option<Box<Latencies>>,
}

impl Bucket {
    fn merge(&mut self, other: Bucket) {
        self.exchanges += other.exchanges;
        self.errors += other.errors;
        match (&mut self.latencies, other.latencies) {
            (_, None) => {}
            (None, Some(l)) => self.latencies = Some(l),
            (Some(a), Some(b)) => a.add(&b),
        }
    }

    fn p99(&self) -> (u64, u64) {
        self.latencies.as_ref().map_or((0, 0), |l| {
            (
                l.service.quantile(0.99),
                l.sched.as_ref().unwrap_or(&l.service).quantile(0.99),
            )
        })
    }
}

/// One shape's exchanges in one bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Cell {
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Cell {
    fn add(&mut self, o: Cell) {
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.max_us = self.max_us.max(o.max_us);
    }

    fn point(self) -> ShapePoint {
        ShapePoint {
            count: self.count,
            mean_us: if self.count > 0 {
                self.sum_us as f64 / self.count as f64
            } else {
                0.0
            },
            max_us: self.max_us,
        }
    }
}

/// Adds `cell` to bucket `b` of one shape's cells (in bucket order): almost always the last
/// one or a new last one, as exchanges come nearly in the order they ended.
fn add_cell(cells: &mut Vec<(u32, Cell)>, b: u32, cell: Cell) {
    match cells.last_mut() {
        Some((last, c)) if *last == b => c.add(cell),
        Some((last, _)) if *last > b => match cells.binary_search_by_key(&b, |c| c.0) {
            Ok(i) => cells[i].1.add(cell),
            Err(i) => cells.insert(i, (b, cell)),
        },
        _ => cells.push((b, cell)),
    }
}

/// Completions and exchanges in flight on fine slots, for stalls.
struct Slots {
    width_us: u64,
    grid: Grid,
    /// Exchanges completed in each slot.
    completed: Vec<u32>,
    /// Exchanges in flight from this slot on, minus those before it: the prefix sum is the
    /// number in flight at each slot's end.
    in_flight: Vec<i64>,
}

impl Slots {
    fn new() -> Self {
        Self {
            width_us: SLOT_US,
            grid: Grid::new(SLOT_US),
            completed: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// The slot of `offset_us`, made room for.
    fn slot(&mut self, offset_us: u64) -> usize {
        let mut i = self.grid.index(offset_us);
        while i >= MAX_SLOTS as u64 {
            self.halve();
            i = self.grid.index(offset_us);
        }
        let i = i as usize;
        if i >= self.completed.len() {
            self.completed.resize(i + 1, 0);
            self.in_flight.resize(i + 1, 0);
        }
        i
    }

    /// Slots twice as wide: pairs merged.
    fn halve(&mut self) {
        self.width_us = self.width_us.saturating_mul(2);
        self.grid.widen(self.width_us);
        let pairs = self.completed.len().div_ceil(2);
        for i in 0..pairs {
            let (a, b) = (2 * i, 2 * i + 1);
            self.completed[i] =
                self.completed[a].saturating_add(*self.completed.get(b).unwrap_or(&0));
            self.in_flight[i] = self.in_flight[a] + self.in_flight.get(b).unwrap_or(&0);
        }
        self.completed.truncate(pairs);
        self.in_flight.truncate(pairs);
    }

    fn exchange(&mut self, start_us: u64, end_us: u64) {
        // The end's slot first: making room for it may widen the slots (start ≤ end).
        let e = self.slot(end_us);
        let s = if start_us >= self.grid.lo {
            e
        } else {
            (start_us / self.width_us) as usize
        };
        self.completed[e] = self.completed[e].saturating_add(1);
        if s < e {
            self.in_flight[s] += 1;
            self.in_flight[e] -= 1;
        }
    }

    /// Runs of slots with something in flight and nothing completed, after the first
    /// completion, at least [`STALL_MIN_US`] long.
    fn stalls(&self) -> Vec<Stall> {
        let mut out = Vec::new();
        let (mut in_flight, mut seen_completion) = (0i64, false);
        let mut run_start: Option<usize> = None;
        let close = |out: &mut Vec<Stall>, from: usize, to: usize| {
            let len_us = (to - from) as u64 * self.width_us;
            if len_us >= STALL_MIN_US {
                out.push(Stall {
                    start_s: from as f64 * self.width_us as f64 / 1e6,
                    length_s: len_us as f64 / 1e6,
                });
            }
        };
        for (i, (&done, &delta)) in self.completed.iter().zip(&self.in_flight).enumerate() {
            in_flight += delta;
            let stalled = seen_completion && done == 0 && in_flight > 0;
            match (stalled, run_start) {
                (true, None) => run_start = Some(i),
                (false, Some(from)) => {
                    close(&mut out, from, i);
                    run_start = None;
                }
                _ => {}
            }
            seen_completion |= done > 0;
        }
        // Every exchange in flight completes in a later slot, so a run always closes; keep
        // a cut-short run anyway.
        if let Some(from) = run_start {
            close(&mut out, from, self.completed.len());
        }
        out
    }
}

/// One run's time series as it is read.
pub(crate) struct RunSeries {
    /// The first measured exchange's start: time 0.
    origin_us: Option<u64>,
    width_us: u64,
    grid: Grid,
    buckets: Vec<Bucket>,
    slots: Slots,
    /// By shape index: the latency the verdict uses, per bucket.
    shapes: Vec<Vec<(u32, Cell)>>,
    /// The last end, from the origin.
    last_us: u64,
}

impl Default for RunSeries {
    fn default() -> Self {
        Self::starting_at(WIDTHS_S[0])
    }
}

impl RunSeries {
    /// Buckets `width_s` wide to begin with; one of [`WIDTHS_S`] (or wider ones: a width the
    /// chain does not divide would merge buckets unevenly), else the finest.
    pub(crate) fn starting_at(width_s: u64) -> Self {
        let width_s = if WIDTHS_S.contains(&width_s) || width_s % 3600 == 0 && width_s > 0 {
            width_s
        } else {
            WIDTHS_S[0]
        };
        let width_us = width_s.saturating_mul(1_000_000);
        Self {
            origin_us: None,
            width_us,
            grid: Grid::new(width_us),
            buckets: Vec::new(),
            slots: Slots::new(),
            shapes: Vec::new(),
            last_us: 0,
        }
    }

    /// A measured exchange (timed, answered): `service_us` and `sched_us` its latencies,
    /// `measure_us` the one the verdict uses.
    pub(crate) fn record(
        &mut self,
        x: &Exchange,
        shape: u32,
        (service_us, sched_us, measure_us): (u64, u64, u64),
    ) {
        let origin = *self.origin_us.get_or_insert(x.start_us);
        let end = x.end_us.saturating_sub(origin);
        let start = x.start_us.saturating_sub(origin).min(end);
        self.last_us = self.last_us.max(end);
        let b = self.bucket(end);
        let bucket = &mut self.buckets[b];
        bucket.exchanges += 1;
        let failed = |r: &Response| matches!(r, Response::Err(_));
        if failed(&x.response) || x.more.iter().any(failed) {
            bucket.errors += 1;
        }
        bucket
            .latencies
            .get_or_insert_with(|| {
                Box::new(Latencies {
                    service: Coarse::new(),
                    sched: None,
                })
            })
            .record(service_us, sched_us);
        let shape = shape as usize;
        if shape >= self.shapes.len() {
            self.shapes.resize_with(shape + 1, Vec::new);
        }
        let cell = Cell {
            count: 1,
            sum_us: measure_us,
            max_us: measure_us,
        };
        add_cell(&mut self.shapes[shape], b as u32, cell);
        self.slots.exchange(start, end);
    }

    /// The bucket of `offset_us`, made room for (widening the buckets if need be).
    fn bucket(&mut self, offset_us: u64) -> usize {
        let mut i = self.grid.index(offset_us);
        while i >= MAX_BUCKETS as u64 {
            self.widen(wider(self.width_us));
            i = self.grid.index(offset_us);
        }
        let i = i as usize;
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        i
    }

    /// Buckets `width_us` wide (a multiple of the current width): whole buckets merged.
    fn widen(&mut self, width_us: u64) {
        let k = (width_us / self.width_us).max(1) as usize;
        self.width_us = width_us;
        self.grid.widen(width_us);
        if k == 1 {
            return;
        }
        let old = std::mem::take(&mut self.buckets);
        for (i, b) in old.into_iter().enumerate() {
            if i % k == 0 {
                self.buckets.push(b);
            } else if let Some(last) = self.buckets.last_mut() {
                last.merge(b);
            }
        }
        for cells in &mut self.shapes {
            for (b, _) in cells.iter_mut() {
                *b /= k as u32;
            }
            // Still in bucket order: merge the neighbours that now share a bucket.
            cells.dedup_by(|(b, c), (into_b, into)| {
                let same = b == into_b;
                if same {
                    into.add(*c);
                }
                same
            });
        }
    }

    fn into_report(self, width_s: f64) -> RunTimeline {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (p99_service_us, p99_since_scheduled_us) = b.p99();
                TimeBucket {
                    start_s: i as f64 * width_s,
                    exchanges: b.exchanges,
                    throughput: b.exchanges as f64 / width_s,
                    errors: b.errors,
                    errors_per_s: b.errors as f64 / width_s,
                    p99_service_us,
                    p99_since_scheduled_us,
                }
            })
            .collect();
        RunTimeline {
            origin_us: self.origin_us,
            duration_s: self.last_us as f64 / 1e6,
            buckets,
            stalls: self.slots.stalls(),
        }
    }
}

/// Both runs' series at one bucket width, the worst window, and the first [`MAX_SHAPES`]
/// regressed shapes over time. `index`: a shape's report entry → its index in the series.
pub(crate) fn timeline(
    mut base: RunSeries,
    mut cand: RunSeries,
    shapes: &[Shape],
    index: impl Fn(&Shape) -> Option<u32>,
) -> Timeline {
    let width_us = base.width_us.max(cand.width_us);
    base.widen(width_us);
    cand.widen(width_us);
    let width_s = width_us as f64 / 1e6;
    let regressed: Vec<(&Shape, u32)> = shapes
        .iter()
        .filter(|s| s.latency == "regressed")
        .filter_map(|s| Some((s, index(s)?)))
        .take(MAX_SHAPES)
        .collect();
    let n = base.buckets.len().max(cand.buckets.len());
    let shape_timelines = regressed
        .iter()
        .map(|&(s, i)| {
            let at = |side: &RunSeries, b: usize| {
                side.shapes
                    .get(i as usize)
                    .and_then(|cells| {
                        let at = cells.binary_search_by_key(&(b as u32), |c| c.0).ok()?;
                        Some(cells[at].1)
                    })
                    .unwrap_or_default()
                    .point()
            };
            ShapeTimeline {
                id: s.id.clone(),
                buckets: (0..n)
                    .map(|b| ShapeBucket {
                        start_s: b as f64 * width_s,
                        baseline: at(&base, b),
                        candidate: at(&cand, b),
                    })
                    .collect(),
            }
        })
        .collect();
    let (baseline, candidate) = (base.into_report(width_s), cand.into_report(width_s));
    let worst_window = worst_window(&baseline, &candidate);
    Timeline {
        bucket_s: width_s,
        stall_resolution_ms: SLOT_US / 1_000,
        baseline,
        candidate,
        worst_window,
        shapes: shape_timelines,
    }
}

/// The candidate's bucket with the highest p99 service time (the earliest of equals), and the
/// baseline's at the same time.
fn worst_window(base: &RunTimeline, cand: &RunTimeline) -> Option<WorstWindow> {
    let (i, worst) = cand
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.exchanges > 0)
        .rev()
        .max_by_key(|(_, b)| b.p99_service_us)?;
    Some(WorstWindow {
        start_s: worst.start_s,
        candidate_p99_us: worst.p99_service_us,
        baseline_p99_us: base
            .buckets
            .get(i)
            .filter(|b| b.exchanges > 0)
            .map(|b| b.p99_service_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{Command, ErrInfo, OkInfo};

    const T0: u64 = 1_700_000_000_000_000;

    /// An exchange of session 1 from `start` to `end` (µs after T0).
    fn x(start: u64, end: u64, response: Response) -> Exchange {
        Exchange {
            session: 1,
            seq: 0,
            clone: 0,
            scheduled_us: None,
            start_us: T0 + start,
            end_us: T0 + end,
            command: Command::Ping,
            response,
            more: vec![],
        }
    }

    fn ok() -> Response {
        Response::Ok(OkInfo::default())
    }

    /// A shape of the report, its id the hex of `id`.
    fn shape(id: u32, latency: &str) -> Shape {
        Shape {
            id: format!("{id:016X}"),
            fingerprint: format!("select {id}"),
            nondeterministic: false,
            baseline: Default::default(),
            candidate: Default::default(),
            total_baseline_us: 0,
            total_candidate_us: 0,
            added_us: 0,
            p50_ratio: None,
            p99_ratio: None,
            p_value: None,
            latency: latency.into(),
            mismatches: Default::default(),
            examples: vec![],
        }
    }

    /// A steady run: one exchange of `us` µs every `every_us` from `from_us` to `to_us`.
    fn steady(s: &mut RunSeries, from_us: u64, to_us: u64, every_us: u64, us: u64) {
        let mut t = from_us;
        while t < to_us {
            s.record(&x(t, t + us, ok()), 0, (us, us, us));
            t += every_us;
        }
    }

    #[test]
    fn widths_divide_each_other() {
        let mut w = WIDTHS_S[0] * 1_000_000;
        for _ in 0..20 {
            let next = wider(w);
            assert!(next > w && next % w == 0, "{w} → {next}");
            w = next;
        }
        assert_eq!(wider(u64::MAX), u64::MAX);
    }

    /// 1 s buckets up to 5 min; past that, the next width that keeps the run within
    /// MAX_BUCKETS.
    #[test]
    fn bucket_width_follows_the_run_length() {
        for (run_s, want_s) in [
            (10, 1),
            (299, 1),
            (301, 2),
            (599, 2),
            (601, 10),
            (2_999, 10),
            (3_001, 30),
            (7_200, 30),
            (10_000, 60),
            (200_000, 1800),
        ] {
            let mut s = RunSeries::default();
            steady(&mut s, 0, run_s * 1_000_000, 1_000_000, 500);
            let t = timeline(s, RunSeries::default(), &[], |_| None);
            assert_eq!(t.bucket_s, want_s as f64, "{run_s} s run");
            assert!(t.baseline.buckets.len() <= MAX_BUCKETS, "{run_s} s run");
        }
    }

    /// Merging keeps every count and the distributions: a 20-minute run at 10 s buckets holds
    /// what was recorded, bucket by bucket.
    #[test]
    fn merging_keeps_counts_and_latencies() {
        let mut s = RunSeries::default();
        // 10 exchanges a second for 20 minutes; the 4th minute is slow (5 ms instead of 1 ms),
        // with errors.
        for i in 0..12_000u64 {
            let t = i * 100_000;
            let slow = (180_000_000..240_000_000).contains(&t);
            let us = if slow { 5_000 } else { 1_000 };
            let r = if slow && i % 2 == 0 {
                Response::Err(ErrInfo {
                    code: 1205,
                    state: b"HY000".to_vec(),
                    message: b"Lock wait timeout exceeded".to_vec(),
                })
            } else {
                ok()
            };
            s.record(&x(t, t + us, r), (i % 3) as u32, (us, us + 10, us));
        }
        let shapes = [shape(1, "regressed")];
        let t = timeline(RunSeries::default(), s, &shapes, |_| Some(1));
        let c = &t.candidate;
        assert_eq!(t.bucket_s, 10.0);
        // Shape 1's cells merged with the buckets: a third of each bucket's exchanges.
        let cells = &t.shapes[0].buckets;
        assert_eq!(cells.len(), 120);
        assert_eq!(cells.iter().map(|b| b.candidate.count).sum::<u64>(), 4_000);
        for b in cells {
            let slow = (180.0..240.0).contains(&b.start_s);
            assert!((33..=34).contains(&b.candidate.count), "{b:?}");
            assert_eq!(
                b.candidate.max_us,
                if slow { 5_000 } else { 1_000 },
                "{b:?}"
            );
            assert_eq!(b.baseline.count, 0);
        }
        assert_eq!(c.buckets.len(), 120);
        assert_eq!(c.buckets.iter().map(|b| b.exchanges).sum::<u64>(), 12_000);
        assert_eq!(c.buckets.iter().map(|b| b.errors).sum::<u64>(), 300);
        for b in &c.buckets {
            assert_eq!(b.exchanges, 100, "{b:?}");
            assert!((b.throughput - 10.0).abs() < 1e-9);
            let slow = (180.0..240.0).contains(&b.start_s);
            let want = if slow { 5_000 } else { 1_000 };
            // One significant digit: within 7 %.
            let near = |v: u64, w: u64| (v as f64 - w as f64).abs() <= w as f64 * 0.07;
            assert!(near(b.p99_service_us, want), "{b:?}");
            assert!(near(b.p99_since_scheduled_us, want + 10), "{b:?}");
            assert_eq!(b.errors_per_s, if slow { 5.0 } else { 0.0 }, "{b:?}");
        }
        let w = t.worst_window.unwrap();
        assert_eq!(w.start_s, 180.0);
        assert_eq!(w.baseline_p99_us, None);
        assert!(c.stalls.is_empty());
    }

    /// Both sides are shown at the wider side's width, and the worst window compares the same
    /// time on both.
    #[test]
    fn both_sides_share_the_width() {
        let (mut b, mut c) = (RunSeries::default(), RunSeries::default());
        steady(&mut b, 0, 100_000_000, 50_000, 300);
        steady(&mut c, 0, 400_000_000, 50_000, 300);
        // The candidate slows down between 200 s and 210 s.
        steady(&mut c, 200_000_000, 210_000_000, 50_000, 9_000);
        let t = timeline(b, c, &[], |_| None);
        assert_eq!(t.bucket_s, 2.0);
        assert_eq!(t.baseline.buckets.len(), 50);
        assert_eq!(t.candidate.buckets.len(), 200);
        assert_eq!(t.baseline.buckets[3].exchanges, 40);
        let w = t.worst_window.unwrap();
        assert_eq!(w.start_s, 200.0);
        assert!(w.candidate_p99_us >= 8_000, "{w:?}");
        // The baseline had ended by then.
        assert_eq!(w.baseline_p99_us, None);
        let t = {
            let (mut b, mut c) = (RunSeries::default(), RunSeries::default());
            steady(&mut b, 0, 10_000_000, 50_000, 300);
            steady(&mut c, 0, 10_000_000, 50_000, 300);
            steady(&mut c, 4_000_000, 5_000_000, 50_000, 3_000);
            timeline(b, c, &[], |_| None)
        };
        let w = t.worst_window.unwrap();
        assert_eq!(w.start_s, 4.0);
        assert!((290..=320).contains(&w.baseline_p99_us.unwrap()), "{w:?}");
    }

    /// No completion for 2 s while an exchange was in flight is a stall, named with its start
    /// and length; an idle second (nothing in flight) is not, nor is the wait for the first
    /// answer.
    #[test]
    fn stalls_are_found_and_idle_time_is_not() {
        let mut s = RunSeries::default();
        // The first exchange takes 1.5 s: waiting for the first answer is not a stall.
        s.record(&x(0, 1_500_000, ok()), 0, (0, 0, 0));
        steady(&mut s, 1_500_000, 10_000_000, 20_000, 500);
        // Idle from 10 s to 13 s: nothing in flight.
        steady(&mut s, 13_000_000, 20_000_000, 20_000, 500);
        // A stall from 20 s: one exchange waits 2.3 s, the next ones queue behind it.
        s.record(&x(20_000_000, 22_300_000, ok()), 0, (0, 0, 0));
        steady(&mut s, 22_300_000, 30_000_000, 20_000, 500);
        // Gaps under a second are not stalls.
        s.record(&x(30_000_000, 30_800_000, ok()), 0, (0, 0, 0));
        steady(&mut s, 30_800_000, 32_000_000, 20_000, 500);
        let t = timeline(RunSeries::default(), s, &[], |_| None);
        let stalls = &t.candidate.stalls;
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert!((stalls[0].start_s - 20.0).abs() <= 0.1, "{stalls:?}");
        assert!((stalls[0].length_s - 2.3).abs() <= 0.15, "{stalls:?}");
        assert_eq!(t.stall_resolution_ms, 100);
        // The throughput chart shows the idle time and the stall as empty buckets.
        let b = &t.candidate.buckets;
        assert_eq!(b[11].exchanges, 0);
        assert_eq!(b[21].exchanges, 0);
    }

    /// Past MAX_SLOTS, slots double in width and long stalls are still found.
    #[test]
    fn stalls_in_long_runs() {
        let mut s = RunSeries::default();
        let hour = 3_600_000_000u64;
        steady(&mut s, 0, 3 * hour, 500_000, 500);
        s.record(&x(3 * hour, 3 * hour + 5_000_000, ok()), 0, (0, 0, 0));
        steady(&mut s, 3 * hour + 5_000_000, 4 * hour, 500_000, 500);
        let t = timeline(RunSeries::default(), s, &[], |_| None);
        let stalls = &t.candidate.stalls;
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert!(
            (stalls[0].start_s - 3.0 * 3600.0).abs() <= 0.5,
            "{stalls:?}"
        );
        assert!((stalls[0].length_s - 5.0).abs() <= 0.5, "{stalls:?}");
    }

    /// Exchanges read out of time order (a replay writes them as they complete) and a clock
    /// that steps back count in the first bucket, without panicking.
    #[test]
    fn out_of_order_and_odd_times() {
        let mut s = RunSeries::default();
        s.record(&x(1_000, 2_000, ok()), 0, (1_000, 1_000, 1_000));
        // Started before the origin, ended after it.
        s.record(&x(0, 2_500, ok()), 0, (2_500, 2_500, 2_500));
        // Ended before it started, and before the origin.
        s.record(&x(500, 100, ok()), 0, (0, 0, 0));
        // Far in the future.
        s.record(&x(u64::MAX / 2, u64::MAX / 2, ok()), 0, (1, 1, 1));
        let t = timeline(s, RunSeries::default(), &[], |_| None);
        let b = &t.baseline.buckets;
        assert!(b.len() <= MAX_BUCKETS);
        assert_eq!(b.iter().map(|b| b.exchanges).sum::<u64>(), 4);
        assert_eq!(b[0].exchanges, 3);
        assert_eq!(t.baseline.origin_us, Some(T0 + 1_000));
    }

    /// The regressed shapes over time: count, mean and max on both sides, per bucket, at most
    /// MAX_SHAPES of them, in the report's order.
    #[test]
    fn regressed_shapes_over_time() {
        let (mut b, mut c) = (RunSeries::default(), RunSeries::default());
        for i in 0..40u64 {
            let t = i * 250_000;
            for shape in 0..12u32 {
                let us = 100 + u64::from(shape);
                b.record(&x(t, t + us, ok()), shape, (us, us, us));
                let slow = if shape == 3 && t >= 5_000_000 { 10 } else { 1 };
                c.record(&x(t, t + us * slow, ok()), shape, (us, us, us * slow));
            }
        }
        let mut shapes: Vec<Shape> = (0..12).map(|i| shape(i, "regressed")).collect();
        shapes[0].latency = "unchanged".into();
        shapes.swap(1, 3);
        let t = timeline(b, c, &shapes, |s| {
            u32::from_str_radix(&s.id, 16).ok().filter(|&i| i != 11)
        });
        assert_eq!(t.shapes.len(), MAX_SHAPES);
        assert_eq!(t.shapes[0].id, format!("{:016X}", 3));
        let three = &t.shapes[0].buckets;
        assert_eq!(three.len(), 10);
        assert_eq!(three[0].baseline.count, 4);
        assert_eq!(three[0].candidate.mean_us, 103.0);
        assert_eq!(three[7].candidate.mean_us, 1_030.0);
        assert_eq!(three[7].candidate.max_us, 1_030);
        assert_eq!(three[7].baseline.max_us, 103);
        assert!(t.shapes.iter().all(|s| s.id != format!("{:016X}", 0)));
    }

    /// Since-scheduled time gets its own histogram only once it differs from service time,
    /// starting from what the bucket held; merged buckets keep each one's.
    #[test]
    fn since_scheduled_only_where_it_differs() {
        let near = |v: u64, w: u64| (v as f64 - w as f64).abs() <= w as f64 * 0.07;
        let mut s = RunSeries::default();
        for i in 0..10 {
            s.record(
                &x(i * 1_000, i * 1_000 + 5_000, ok()),
                0,
                (5_000, 5_000, 5_000),
            );
        }
        s.record(&x(20_000, 20_100, ok()), 0, (100, 200, 100));
        // A second bucket as a capture has it, and a third with a late exchange.
        s.record(&x(1_000_000, 1_007_000, ok()), 0, (7_000, 7_000, 7_000));
        s.record(&x(2_000_000, 2_000_300, ok()), 0, (300, 9_000, 300));
        let (b0, b1) = (s.buckets[0].p99(), s.buckets[1].p99());
        assert!(near(b0.0, 5_000) && near(b0.1, 5_000), "{b0:?}");
        assert!(near(b1.0, 7_000) && near(b1.1, 7_000), "{b1:?}");
        assert!(s.buckets[1].latencies.as_ref().unwrap().sched.is_none());
        s.widen(2_000_000);
        let (m0, m1) = (s.buckets[0].p99(), s.buckets[1].p99());
        assert!(near(m0.0, 7_000) && near(m0.1, 7_000), "{m0:?}");
        assert!(near(m1.0, 300) && near(m1.1, 9_000), "{m1:?}");
        let l = s.buckets[0].latencies.as_ref().unwrap();
        assert_eq!(l.sched.as_ref().unwrap().total(), 12);
        assert_eq!(l.service.total(), 12);
    }

    /// A shape's cells stay in bucket order when an exchange comes after a later bucket's.
    #[test]
    fn shape_cells_out_of_order() {
        let mut cells = Vec::new();
        let c = |us: u64| Cell {
            count: 1,
            sum_us: us,
            max_us: us,
        };
        for (b, us) in [(0, 10), (2, 20), (1, 30), (2, 40), (0, 50), (5, 60)] {
            add_cell(&mut cells, b, c(us));
        }
        let got: Vec<(u32, u64, u64, u64)> = cells
            .iter()
            .map(|(b, c)| (*b, c.count, c.sum_us, c.max_us))
            .collect();
        assert_eq!(
            got,
            [
                (0, 2, 60, 50),
                (1, 1, 30, 30),
                (2, 2, 60, 40),
                (5, 1, 60, 60)
            ]
        );
    }

    /// Every value lands in a cell whose highest value is at most 6.25 % above it; quantiles
    /// are those of the values, to that precision.
    #[test]
    fn coarse_histogram_precision() {
        let mut v = 1u64;
        while v < 5_000_000_000 {
            let hi = Coarse::highest(Coarse::cell(v));
            let v32 = v.min(u64::from(u32::MAX));
            assert!(hi >= v32 && hi as f64 <= v32 as f64 * 1.0625, "{v} → {hi}");
            v = v * 9 / 8 + 1;
        }
        assert!(Coarse::cell(0) == 1 && Coarse::cell(u64::MAX) == COARSE_CELLS - 1);
        let mut h = Coarse::new();
        assert_eq!(h.quantile(0.99), 0);
        for us in 1..=1_000u64 {
            h.record(us * 100);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (1.0, 100_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(got >= want && got <= want * 1.0625, "q {q}: {got}");
        }
        let mut twice = h.clone();
        twice.add(&h);
        assert_eq!(twice.total(), 2_000);
        assert_eq!(twice.quantile(0.99), h.quantile(0.99));
    }

    /// A width asked for is where the buckets start; a run too long for it still gets at
    /// most MAX_BUCKETS; a width off the chain is not taken.
    #[test]
    fn a_width_asked_for() {
        let mut s = RunSeries::starting_at(10);
        steady(&mut s, 0, 100_000_000, 1_000_000, 500);
        let t = timeline(s, RunSeries::starting_at(2), &[], |_| None);
        assert_eq!(t.bucket_s, 10.0);
        assert_eq!(t.baseline.buckets.len(), 10);
        let mut s = RunSeries::starting_at(1);
        steady(&mut s, 0, 400_000_000, 1_000_000, 500);
        assert_eq!(
            timeline(s, RunSeries::default(), &[], |_| None).bucket_s,
            2.0
        );
        assert_eq!(RunSeries::starting_at(7).width_us, 1_000_000);
        assert_eq!(RunSeries::starting_at(0).width_us, 1_000_000);
        assert_eq!(RunSeries::starting_at(7200).width_us, 7_200_000_000);
    }

    #[test]
    fn empty_runs() {
        let t = timeline(RunSeries::default(), RunSeries::default(), &[], |_| None);
        assert!(t.baseline.buckets.is_empty() && t.candidate.stalls.is_empty());
        assert_eq!(t.baseline.origin_us, None);
        assert!(t.worst_window.is_none());
        assert_eq!(t.bucket_s, 1.0);
    }
}
