//! The report: everything `analyze` concluded, as data. Exporters render it; the JSON form is
//! the report serialized as is and checked against `schema/report.schema.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::Percentiles;

/// 2: `unreplayed`, the application statements' mismatch rate, `thresholds.max_unreplayed`,
/// the `insert_id` mismatch class.
/// 3: examples name their mismatch class and carry the statement as sent (`statement`,
/// `params`) and the rows of both answers with the differing cells (`rows`); `reproduction`
/// (`--reference`: the baseline's exchanges that did not reproduce production's answers).
/// 4: `totals.order_dependent`, order labels as reproduction causes.
/// 5: `timeline`: both runs over time (throughput, p99 service and since-scheduled time,
/// errors per bucket), their stalls, the worst window and the regressed shapes over time.
pub const SCHEMA_VERSION: u32 = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool_version: String,
    /// What the runs did not replay: named before any other finding.
    pub unreplayed: Unreplayed,
    pub comparison: Comparison,
    /// Whether the baseline reproduced production (`--reference`).
    pub reproduction: Reproduction,
    pub totals: Totals,
    pub latency: Latency,
    /// Both runs over time.
    pub timeline: Timeline,
    /// Query shapes, most added time first.
    pub shapes: Vec<Shape>,
    /// Mismatches by class over all shapes (nondeterministic shapes excluded).
    pub mismatches: BTreeMap<String, u64>,
    pub verdict: Verdict,
    /// The candidate is a ramp run (`replay --ramp`): its steps and headroom.
    pub ramp: Option<crate::ramp::RampReport>,
}

/// Exchanges each run did not replay (see [`crate::unreplayed`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unreplayed {
    pub baseline: RunUnreplayed,
    pub candidate: RunUnreplayed,
}

/// The exchanges of one run that were not replayed, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunUnreplayed {
    /// The run is a replay: only replays leave exchanges out, and `--max-unreplayed` judges
    /// only them.
    pub replay: bool,
    /// Exchanges in the run: the recorded exchanges it was given (clones included).
    pub exchanges: u64,
    /// Not sent, whatever the reason.
    pub skipped: u64,
    /// Sent, but the connection to the target was lost before the answer came.
    pub lost_in_flight: u64,
    /// What `--max-unreplayed` judges: skipped for any reason but `filtered` (left out on
    /// request), and lost in flight.
    pub counted: u64,
    /// counted / exchanges (0 when the run has none).
    pub counted_share: f64,
    /// Each reason, most exchanges first: the skip reasons and `lost_in_flight`.
    pub reasons: Vec<UnreplayedReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnreplayedReason {
    /// A skip reason's name (`unknown_statement`, `filtered`, `unsupported`,
    /// `not_connected`, `types_not_sent`) or `lost_in_flight`.
    pub reason: String,
    pub count: u64,
    /// count / the run's exchanges.
    pub share: f64,
    /// What the reason means and what to do about it.
    pub explanation: String,
    /// Counted against `--max-unreplayed`.
    pub counted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `capture_vs_replay`, `replay_vs_replay`, `capture_vs_capture` or `replay_vs_capture`.
    pub kind: String,
    /// What the kind means for reading the latency figures.
    pub note: String,
    pub baseline: RunInfo,
    pub candidate: RunInfo,
    /// Which latency the shapes and verdict use: `service` or `since_scheduled`.
    pub latency_measure: String,
}

/// With production's run as the reference: the baseline's exchanges whose answers differ from
/// production's were not reproduced, and are kept out of the comparison and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Reproduction {
    /// The reference run (production's capture), when given.
    pub reference: Option<RunInfo>,
    /// Baseline answers compared with the reference's.
    pub compared: u64,
    /// Of those, answers that differ from the reference's: not reproduced.
    pub not_reproduced: u64,
    /// not_reproduced / compared.
    pub not_reproduced_share: f64,
    /// Not-reproduced exchanges by the class of their difference from the reference.
    pub causes: BTreeMap<String, u64>,
    /// Joined baseline/candidate pairs kept out of the comparison for it (clones included).
    pub excluded: u64,
    /// What this means for reading the report.
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub files: Vec<String>,
    pub kind: String,
    pub source: String,
    pub server_version: Option<String>,
    pub sessions: u64,
    pub exchanges: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Exchanges found on both sides (joined by session, seq, clone).
    pub joined: u64,
    /// Joined and compared (both sides have an answer).
    pub compared: u64,
    pub same: u64,
    pub mismatched: u64,
    /// mismatched / compared.
    pub mismatch_rate: f64,
    /// Compared exchanges that are application statements, not driver chatter (see
    /// [`crate::chatter`]).
    pub application_compared: u64,
    pub application_mismatched: u64,
    /// application_mismatched / application_compared: what `--max-mismatch-rate` judges.
    pub application_mismatch_rate: f64,
    /// Differences in shapes whose answers cannot be stable (NOW(), RAND() …): not failures.
    pub nondeterministic_differences: u64,
    /// Same rows in another order where the SQL sets no order: not failures.
    pub order_unspecified: u64,
    /// Differences on exchanges that a replay labelled (`--sync`: order-ambiguous,
    /// out-of-order, unpinned, lock-conflict, after-divergence), by label: the replay's
    /// order, not the server, can explain
    /// them, so they are not counted as mismatches (nor in the verdict).
    pub order_dependent: BTreeMap<String, u64>,
    /// Joined but not compared, by reason (skipped, missing, incomplete result …).
    pub not_compared: BTreeMap<String, u64>,
    /// Exchanges on one side only, by reason.
    pub only_baseline: BTreeMap<String, u64>,
    pub only_candidate: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideBySide {
    pub baseline: Percentiles,
    pub candidate: Percentiles,
    pub p50_ratio: Option<f64>,
    pub p95_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub percentile: f64,
    pub baseline_us: u64,
    pub candidate_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Send to last byte of the answer.
    pub service: SideBySide,
    /// From when the command was due to the last byte (queueing included); for captures,
    /// the same as service time.
    pub since_scheduled: SideBySide,
    /// Percentile curves of the measure in use, for charts.
    pub curve: Vec<CurvePoint>,
}

/// One differing answer of a shape.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// Where: the session and the exchange's position in it (and the clone, with --scale).
    pub session: u64,
    pub seq: u64,
    pub clone: u32,
    /// The mismatch class of this difference.
    pub class: String,
    /// The shape's fingerprint (cut at 300 characters).
    pub sql: String,
    /// The statement as sent: the SQL with its literals, or an EXECUTE's prepared text (cut
    /// at 2000 characters).
    pub statement: String,
    /// An EXECUTE's bound parameters, rendered as SQL literals, in order.
    pub params: Vec<String>,
    /// Each answer in a line.
    pub baseline: String,
    pub candidate: String,
    /// The rows of both answers, when either answer has rows.
    pub rows: Option<ExampleRows>,
}

/// The rows of a differing answer on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleRows {
    pub baseline: SideRows,
    pub candidate: SideRows,
}

/// The first rows of one side's answer, as kept by its run (see [`crate::cells`]).
#[derive(Debug, Clone, Serialize)]
pub struct SideRows {
    /// The run kept this answer's rows.
    pub kept: bool,
    /// Why there are no rows to show, when there are none.
    pub note: Option<String>,
    pub columns: Vec<String>,
    /// The rows shown (bounded: 20 rows, 4 KiB of text), each one cell per column.
    pub rows: Vec<Vec<String>>,
    /// `[row, column]` of the cells that differ from the other side's (only when both sides
    /// were kept).
    pub differing: Vec<[u32; 2]>,
    /// Rows of the answer not shown.
    pub rows_left_out: u64,
    /// Cells cut short by the run (values over 256 bytes).
    pub cells_cut: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    /// pt-query-digest style id (last 16 hex digits of the fingerprint's MD5).
    pub id: String,
    pub fingerprint: String,
    pub nondeterministic: bool,
    pub baseline: Percentiles,
    pub candidate: Percentiles,
    pub total_baseline_us: u64,
    pub total_candidate_us: u64,
    /// Time the candidate added over the baseline for this shape (negative: saved).
    pub added_us: i64,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// Mann-Whitney U two-sided p-value, when both sides have samples.
    pub p_value: Option<f64>,
    /// `regressed`, `improved`, `unchanged` or `insufficient` (too few samples).
    pub latency: String,
    pub mismatches: BTreeMap<String, u64>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub max_p99_regression: Option<f64>,
    pub max_mismatch_rate: Option<f64>,
    pub max_unreplayed: Option<f64>,
    pub min_samples: u64,
    pub alpha: f64,
    pub min_change: f64,
    pub min_change_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub pass: bool,
    /// Why it failed (empty on a pass).
    pub reasons: Vec<String>,
    pub thresholds: Thresholds,
    pub regressed_shapes: u64,
    pub improved_shapes: u64,
}

/// Both runs over time (see [`crate::timeline`]): each side's time axis starts at its first
/// measured exchange; both are cut in buckets of the same width.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// Width of every bucket, in seconds (adapted to the runs' length: at most 300 buckets).
    pub bucket_s: f64,
    /// The resolution stalls are found at, in milliseconds (coarser in runs over 1.8 hours).
    pub stall_resolution_ms: u64,
    pub baseline: RunTimeline,
    pub candidate: RunTimeline,
    /// The candidate's bucket with the highest p99 service time; none when it measured
    /// nothing.
    pub worst_window: Option<WorstWindow>,
    /// The first 10 regressed shapes (in the order of `shapes`) over time, in the latency
    /// measure the verdict uses.
    pub shapes: Vec<ShapeTimeline>,
}

/// One run over time.
#[derive(Debug, Clone, Serialize)]
pub struct RunTimeline {
    /// Time 0 of this run's axis: its first measured exchange's start, in µs since the Unix
    /// epoch (none when the run measured nothing).
    pub origin_us: Option<u64>,
    /// From time 0 to the last measured exchange's end, in seconds.
    pub duration_s: f64,
    /// Every bucket from time 0 to the last exchange's end (empty ones included), each
    /// counting the exchanges that ended in it.
    pub buckets: Vec<TimeBucket>,
    /// Times of at least a second in which no exchange completed while some were in flight,
    /// after the first completion.
    pub stalls: Vec<Stall>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeBucket {
    /// Seconds from the run's time 0.
    pub start_s: f64,
    /// Measured exchanges that ended in the bucket.
    pub exchanges: u64,
    /// exchanges per second.
    pub throughput: f64,
    /// Of those, answered with an error.
    pub errors: u64,
    pub errors_per_s: f64,
    /// p99 of the bucket's service times (0 when it has none; ±6 %).
    pub p99_service_us: u64,
    /// p99 of the bucket's times since scheduled (a capture's: its service times).
    pub p99_since_scheduled_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stall {
    /// Seconds from the run's time 0.
    pub start_s: f64,
    pub length_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorstWindow {
    /// The bucket's start, seconds from time 0.
    pub start_s: f64,
    pub candidate_p99_us: u64,
    /// The baseline's p99 service time in the bucket at the same time (none when it
    /// measured nothing then).
    pub baseline_p99_us: Option<u64>,
}

/// A regressed shape over time.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeTimeline {
    /// The shape's id (see `shapes`).
    pub id: String,
    /// Every bucket of the longer run.
    pub buckets: Vec<ShapeBucket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShapeBucket {
    pub start_s: f64,
    pub baseline: ShapePoint,
    pub candidate: ShapePoint,
}

/// A shape's exchanges that ended in a bucket on one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShapePoint {
    pub count: u64,
    pub mean_us: f64,
    pub max_us: u64,
}
