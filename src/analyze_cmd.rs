//! `myrr analyze` and `myrr fingerprint`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use myrr_analyze::export::{Exporter, Html, Json, Markdown, Text};
use myrr_analyze::fingerprint::Fingerprint;
use myrr_analyze::Options;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Md,
    Html,
}

/// Parses `20%`, `0.2` or `20` (percent when > 1) as a fraction.
fn fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(n) => (n, true),
        None => (t, false),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a number or percentage"))?;
    if v < 0.0 || !v.is_finite() {
        return Err(format!("{s:?} must be a positive fraction"));
    }
    Ok(if pct || v > 1.0 { v / 100.0 } else { v })
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 pass, 1 fail (thresholds exceeded), 2 could not analyze.\n\nExamples:\n  myrr analyze --baseline prod.myrr --candidate cand.myrr\n  myrr analyze --baseline old.myrr --candidate shard0.myrr shard1.myrr --max-p99-regression 20% --format html -o report.html\n  myrr analyze --reference prod.myrr --baseline base.myrr --candidate cand.myrr"
)]
pub struct Args {
    /// Baseline run (a capture, or a replay on the old server); several files are one run.
    #[arg(long, required = true, num_args = 1.., value_name = "RUN")]
    baseline: Vec<PathBuf>,
    /// Candidate run (the shards of one replay may be given together).
    #[arg(long, required = true, num_args = 1.., value_name = "RUN")]
    candidate: Vec<PathBuf>,
    /// Production's run (the capture) as the reference: exchanges whose baseline answer
    /// differs from production's were not reproduced by the baseline replay and are kept out
    /// of the comparison and the verdict (counted, by cause, in the report).
    #[arg(long, num_args = 1.., value_name = "RUN")]
    reference: Option<Vec<PathBuf>>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the report here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Fail when p99 latency (overall, or of a regressed shape) is this much worse, e.g. 20%.
    #[arg(long, value_parser = fraction, value_name = "PCT")]
    max_p99_regression: Option<f64>,
    /// Fail when more than this share of the compared application statements differ (driver
    /// chatter such as pings, SET, prepares is left out; default 0: any difference).
    #[arg(long, value_parser = fraction, value_name = "PCT", default_value = "0")]
    max_mismatch_rate: f64,
    /// Fail when more than this share of a replay's recorded exchanges were not replayed
    /// (skipped, other than by --read-only/--include/--exclude, or lost in flight).
    #[arg(long, value_parser = fraction, value_name = "PCT", default_value = "1%")]
    max_unreplayed: f64,
    /// Samples needed on each side before a shape can be called regressed or improved.
    #[arg(long, default_value = "30", value_name = "N")]
    min_samples: u64,
    /// Significance level of the Mann-Whitney U test on each shape's latencies.
    #[arg(long, default_value = "0.001", value_name = "P")]
    alpha: f64,
    /// Smallest change of a shape's median latency that counts, e.g. 10%.
    #[arg(long, value_parser = fraction, default_value = "10%", value_name = "PCT")]
    min_change: f64,
    /// Smallest change of a shape's median latency that counts, in µs.
    #[arg(long, default_value = "100", value_name = "US")]
    min_change_us: u64,
    /// A ramp run (replay --ramp): the latency limit of its steps, e.g. 50ms; the headroom
    /// is the largest multiple of the recorded load whose p99 stays within it (and every
    /// step's before it). Without it: step 1's p99 plus --max-p99-regression (default 100%).
    #[arg(long, value_parser = crate::util::parse_duration, value_name = "D")]
    max_p99: Option<std::time::Duration>,
    /// Judge latency from the scheduled start (queueing included) instead of service time.
    #[arg(long)]
    since_scheduled: bool,
    /// Shapes listed in text and Markdown reports.
    #[arg(long, default_value = "20", value_name = "N")]
    top: usize,
    /// Analyze the readable part of damaged runs.
    #[arg(long)]
    ignore_damage: bool,
    /// Bucket width of the report's time series, in seconds: 1, 2, 10, 30, 60, 300, 600, 1800
    /// or a multiple of 3600 (default: 1, wider as the runs need; never more than 300 buckets).
    #[arg(long, value_parser = bucket, value_name = "SECS")]
    bucket: Option<u64>,
}

/// A bucket width the timeline can merge into: one of its widths, or whole hours.
fn bucket(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if myrr_analyze::BUCKET_WIDTHS_S.contains(&v) || (v > 0 && v % 3600 == 0) {
        Ok(v)
    } else {
        Err(format!(
            "{v} s: the bucket width is one of {:?} s or a multiple of 3600",
            myrr_analyze::BUCKET_WIDTHS_S
        ))
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let opts = Options {
        max_p99_regression: a.max_p99_regression,
        max_mismatch_rate: Some(a.max_mismatch_rate),
        max_unreplayed: Some(a.max_unreplayed),
        min_samples: a.min_samples,
        alpha: a.alpha,
        min_change: a.min_change,
        min_change_us: a.min_change_us,
        since_scheduled: a.since_scheduled,
        ignore_damage: a.ignore_damage,
        reference: a.reference.clone(),
        max_p99_us: a.max_p99.map(|d| d.as_micros() as u64),
        bucket_s: a.bucket,
        ..Options::default()
    };
    let report = myrr_analyze::analyze(&a.baseline, &a.candidate, &opts)?;
    let to_terminal = a.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let exporter: Box<dyn Exporter> = match a.format {
        Format::Text => Box::new(Text { color, top: a.top }),
        Format::Json => Box::new(Json),
        Format::Md => Box::new(Markdown { top: a.top }),
        Format::Html => Box::new(Html),
    };
    match &a.output {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            );
            exporter.write(&report, &mut f)?;
            f.flush()?;
            eprintln!(
                "myrr: {} — report written to {}",
                if report.verdict.pass { "PASS" } else { "FAIL" },
                p.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            exporter.write(&report, &mut out)?;
        }
    }
    Ok(if report.verdict.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(clap::Args)]
#[command(
    after_help = "Prints `id<TAB>fingerprint` per statement; the id is pt-query-digest's (last 16 hex digits of the fingerprint's MD5)."
)]
pub struct FingerprintArgs {
    /// Statements are separated by NUL bytes instead of newlines (for SQL with newlines).
    #[arg(short = '0', long = "null")]
    null: bool,
}

pub fn fingerprint(a: FingerprintArgs) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut emit = |sql: &[u8]| -> std::io::Result<()> {
        let f = Fingerprint::of(&String::from_utf8_lossy(sql));
        writeln!(out, "{}\t{}", f.id_hex(), f.text.replace(['\n', '\t'], " "))
    };
    if a.null {
        let mut all = Vec::new();
        stdin.lock().read_to_end(&mut all)?;
        for s in all.split(|&b| b == 0) {
            if !s.is_empty() {
                emit(s)?;
            }
        }
    } else {
        for line in stdin.lock().split(b'\n') {
            let mut l = line?;
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            emit(&l)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
