//! myrr-analyze: fingerprints, latency histograms, result comparison, verdict and reports.
//!
//! [`analyze`] joins two runs exchange by exchange — by (session, seq, clone) — groups them
//! by [`fingerprint::Fingerprint`], keeps per-shape latency [`stats`] on both sides, classifies
//! every answer difference ([`compare::Mismatch`]), counts what each run did not replay
//! ([`unreplayed`]) and returns a [`report::Report`] with a [`report::Verdict`] against the
//! user's [`Options`]. [`export`] renders it as text, JSON,
//! Markdown or a self-contained HTML page. A run that cannot be analyzed is an
//! [`AnalyzeError`].
//!
//! Code map:
//! - `join`: streams both runs, pairs their exchanges (with the `--scale` fan-out), counts the
//!   [`report::Totals`] and assembles the report; [`analyze`] is its entry point.
//! - `shapes`: per-fingerprint aggregation: which shape each exchange has, and each shape's
//!   latency histograms, answer differences and examples.
//! - `verdict`: the thresholds of [`Options`] applied: each shape's latency judgement and the
//!   [`report::Verdict`] with its reasons.
//! - [`unreplayed`]: the exchanges a replay skipped or lost in flight, by reason, named first
//!   in every report and judged by `max_unreplayed`.
//! - `reproduction`: with production's run as the reference, the baseline's exchanges that
//!   did not reproduce production's answers, kept out of the comparison and the verdict.
//! - [`chatter`]: which exchanges are driver chatter rather than application statements (the
//!   mismatch rate the verdict judges is the application statements').
//! - [`compare`]: two answers to one exchange, classified; [`cells`]: the rows of a differing
//!   answer on both sides, bounded, with the differing cells marked; [`fingerprint`]: SQL to
//!   its shape;
//!   [`stats`]: histograms and the Mann-Whitney test.
//! - `timeline`: both runs over time (throughput, p99, errors per bucket), their stalls and
//!   the regressed shapes over time, in bounded memory whatever the runs' length.
//! - [`report`]: the result as data; [`export`]: one [`export::Exporter`] per output format.
//!
//! Memory does not grow with the number of exchanges: both runs are streamed, latency lives in
//! HdrHistograms, the timeline's buckets merge as a run grows, and only exchanges still
//! waiting for their partner are held (the skew between the two runs' orders, not their
//! length).

pub mod cells;
pub mod chatter;
pub mod compare;
pub mod export;
pub mod fingerprint;
mod join;
pub mod ramp;
pub mod report;
mod reproduction;
mod shapes;
pub mod stats;
mod timeline;
pub mod unreplayed;
mod verdict;

use myrr_recording::FormatError;

pub use join::analyze;
/// The widths `Options::bucket_s` may ask for, in seconds (each divides the next; past the
/// last, multiples of an hour).
pub use timeline::WIDTHS_S as BUCKET_WIDTHS_S;

/// Thresholds and choices of an analysis.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fail when the candidate's overall p99 (or a regressed shape's p99) is more than this
    /// fraction slower (0.2 = 20 %).
    pub max_p99_regression: Option<f64>,
    /// Fail when more than this fraction of the compared application statements differ
    /// (0 = any difference); driver chatter is left out (see [`chatter`]).
    pub max_mismatch_rate: Option<f64>,
    /// Fail when more than this fraction of a replay's exchanges were not replayed (skipped
    /// for any reason but `filtered`, or lost in flight; see [`unreplayed`]).
    pub max_unreplayed: Option<f64>,
    /// Samples needed on each side before a shape can be called regressed or improved.
    pub min_samples: u64,
    /// Significance level of the Mann-Whitney test.
    pub alpha: f64,
    /// Smallest change of the median that counts (0.1 = 10 %).
    pub min_change: f64,
    /// Smallest change of the median that counts, in µs: below it a shift is noise whatever
    /// its significance (with many samples, tiny shifts are significant).
    pub min_change_us: u64,
    /// Use time since the scheduled start (queueing included) instead of service time.
    pub since_scheduled: bool,
    /// Examples kept per shape (a class with none yet takes the place of one of a class with
    /// several).
    pub examples: usize,
    /// Analyze the readable part of damaged runs instead of refusing them.
    pub ignore_damage: bool,
    /// Production's run (the capture): the baseline's exchanges whose answers differ from it
    /// were not reproduced and are kept out of the comparison (see `reproduction`).
    pub reference: Option<Vec<std::path::PathBuf>>,
    /// A ramp run's latency limit (µs of p99): the headroom is the largest step within it
    /// (see [`ramp`]); without it, step 1's p99 × (1 + `max_p99_regression`, or 100 %).
    pub max_p99_us: Option<u64>,
    /// The timeline's bucket width in seconds, one of [`BUCKET_WIDTHS_S`] or a multiple of an
    /// hour; wider when the runs need more than 300 buckets. None: 1 s, widened as the runs
    /// need.
    pub bucket_s: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_p99_regression: None,
            max_mismatch_rate: Some(0.0),
            max_unreplayed: Some(0.01),
            min_samples: 30,
            alpha: 0.001,
            min_change: 0.10,
            min_change_us: 100,
            since_scheduled: false,
            examples: 3,
            ignore_damage: false,
            reference: None,
            max_p99_us: None,
            bucket_s: None,
        }
    }
}

/// Why a run could not be analyzed (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}\n  (analyze the readable part with --ignore-damage)")]
    Damaged(FormatError),
    #[error("{side} run has no exchanges ({files})")]
    Empty { side: &'static str, files: String },
    #[error("the baseline does not reproduce the reference: more than {limit} of its answers differ from production's; replay the baseline with --sync all onto a copy restored to the capture's start")]
    NotReproducible { limit: usize },
    #[error("nothing joins: the candidate's {candidate} exchanges do not match the baseline's {baseline} by session, sequence and statement; are these runs of the same recording?")]
    NothingJoins { baseline: u64, candidate: u64 },
}
