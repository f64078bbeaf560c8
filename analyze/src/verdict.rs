//! Thresholds and the verdict: when a shape's latency counts as regressed or improved, and
//! which of the user's limits ([`Options`]) the candidate broke.

use crate::report::{Shape, SideBySide, Thresholds, Totals, Verdict};
use crate::stats::{ratio, Percentiles};
use crate::Options;

/// A shape's latency on the candidate against the baseline: `insufficient` below
/// `min_samples` on either side; `regressed` or `improved` when the median moved by at least
/// `min_change` and `min_change_us` and the Mann-Whitney test (`p`: its z and p-value, with
/// z > 0 when the candidate is slower) is significant at `alpha`; `unchanged` otherwise.
pub(crate) fn shape_latency(
    pb: &Percentiles,
    pc: &Percentiles,
    p: Option<(f64, f64)>,
    opts: &Options,
) -> &'static str {
    let p50_ratio = ratio(pb.p50_us, pc.p50_us);
    let enough = pb.count >= opts.min_samples && pc.count >= opts.min_samples;
    let shift = pb.p50_us.abs_diff(pc.p50_us) >= opts.min_change_us;
    match (enough, p, p50_ratio) {
        (false, _, _) => "insufficient",
        (true, Some((z, pv)), Some(r))
            if shift && pv < opts.alpha && z > 0.0 && r > 1.0 + opts.min_change =>
        {
            "regressed"
        }
        (true, Some((z, pv)), Some(r))
            if shift && pv < opts.alpha && z < 0.0 && r < 1.0 / (1.0 + opts.min_change) =>
        {
            "improved"
        }
        _ => "unchanged",
    }
}

/// Pass, or the limits broken: the overall p99 first, then each regressed shape whose p99
/// broke the limit (in the order of `shapes`), then the answer mismatch rate.
pub(crate) fn verdict(
    shapes: &[Shape],
    overall: &SideBySide,
    totals: &Totals,
    opts: &Options,
) -> Verdict {
    let mut reasons = Vec::new();
    if let (Some(max), Some(r)) = (opts.max_p99_regression, overall.p99_ratio) {
        if r > 1.0 + max {
            reasons.push(format!(
                "overall p99 {:.2} ms → {:.2} ms (×{:.2}, limit ×{:.2})",
                overall.baseline.p99_us as f64 / 1e3,
                overall.candidate.p99_us as f64 / 1e3,
                r,
                1.0 + max
            ));
        }
    }
    for s in shapes.iter().filter(|s| s.latency == "regressed") {
        if let (Some(max), Some(r)) = (opts.max_p99_regression, s.p99_ratio) {
            if r > 1.0 + max {
                reasons.push(format!(
                    "shape {} regressed: p99 {:.2} ms → {:.2} ms (×{:.2}, limit ×{:.2}): {}",
                    s.id,
                    s.baseline.p99_us as f64 / 1e3,
                    s.candidate.p99_us as f64 / 1e3,
                    r,
                    1.0 + max,
                    s.fingerprint.chars().take(80).collect::<String>()
                ));
            }
        }
    }
    if let Some(max) = opts.max_mismatch_rate {
        if totals.mismatch_rate > max || (max == 0.0 && totals.mismatched > 0) {
            reasons.push(format!(
                "{} of {} compared answers differ ({:.3} %, limit {:.3} %)",
                totals.mismatched,
                totals.compared,
                totals.mismatch_rate * 100.0,
                max * 100.0
            ));
        }
    }
    let judged = |latency: &str| shapes.iter().filter(|s| s.latency == latency).count() as u64;
    Verdict {
        pass: reasons.is_empty(),
        reasons,
        thresholds: Thresholds {
            max_p99_regression: opts.max_p99_regression,
            max_mismatch_rate: opts.max_mismatch_rate,
            min_samples: opts.min_samples,
            alpha: opts.alpha,
            min_change: opts.min_change,
            min_change_us: opts.min_change_us,
        },
        regressed_shapes: judged("regressed"),
        improved_shapes: judged("improved"),
    }
}
