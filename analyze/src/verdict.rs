//! Thresholds and the verdict: when a shape's latency counts as regressed or improved, and
//! which of the user's limits ([`Options`]) the candidate broke.

use crate::report::{RunUnreplayed, Shape, SideBySide, Thresholds, Totals, Unreplayed, Verdict};
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

/// Pass, or the limits broken: first what a replay did not replay (what follows may be its
/// consequence), then the overall p99, each regressed shape whose p99 broke the limit (in the
/// order of `shapes`), then the application statements' mismatch rate.
pub(crate) fn verdict(
    shapes: &[Shape],
    overall: &SideBySide,
    totals: &Totals,
    unreplayed: &Unreplayed,
    opts: &Options,
) -> Verdict {
    let mut reasons = Vec::new();
    if let Some(max) = opts.max_unreplayed {
        for (side, run) in [
            ("baseline", &unreplayed.baseline),
            ("candidate", &unreplayed.candidate),
        ] {
            if let Some(reason) = unreplayed_reason(side, run, max) {
                reasons.push(reason);
            }
        }
    }
    let incomplete_replay = !reasons.is_empty();
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
        let (rate, mismatched) = (
            totals.application_mismatch_rate,
            totals.application_mismatched,
        );
        if rate > max || (max == 0.0 && mismatched > 0) {
            reasons.push(format!(
                "{} of {} compared application statements differ ({:.3} %, limit {:.3} %){}",
                mismatched,
                totals.application_compared,
                rate * 100.0,
                max * 100.0,
                if incomplete_replay {
                    "; some may follow from the exchanges not replayed"
                } else {
                    ""
                }
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
            max_unreplayed: opts.max_unreplayed,
            min_samples: opts.min_samples,
            alpha: opts.alpha,
            min_change: opts.min_change,
            min_change_us: opts.min_change_us,
        },
        regressed_shapes: judged("regressed"),
        improved_shapes: judged("improved"),
    }
}

/// Why a replay failed `--max-unreplayed` (None when it did not, or the run is no replay).
fn unreplayed_reason(side: &str, run: &RunUnreplayed, max: f64) -> Option<String> {
    if !run.replay || run.counted_share <= max || run.counted == 0 {
        return None;
    }
    let by_reason: Vec<String> = run
        .reasons
        .iter()
        .filter(|r| r.counted)
        .map(|r| format!("{}: {}", r.reason, r.count))
        .collect();
    Some(format!(
        "{:.3} % of the {side}'s recorded exchanges were not replayed ({} of {}: {}; limit {:.3} %)",
        run.counted_share * 100.0,
        run.counted,
        run.exchanges,
        by_reason.join(", "),
        max * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use myrr_recording::{MissingReason, Response, SkipReason};

    use super::*;
    use crate::unreplayed::Tally;

    fn flat() -> SideBySide {
        SideBySide {
            baseline: Percentiles::default(),
            candidate: Percentiles::default(),
            p50_ratio: None,
            p95_ratio: None,
            p99_ratio: None,
        }
    }

    /// A run of `exchanges` exchanges, `left_out` of them answered as given.
    fn run(replay: bool, exchanges: u64, left_out: &[(u64, Response)]) -> RunUnreplayed {
        let mut t = Tally::default();
        for (n, response) in left_out {
            for _ in 0..*n {
                t.count(response);
            }
        }
        t.into_report(exchanges, replay)
    }

    fn judge(totals: &Totals, candidate: RunUnreplayed) -> Verdict {
        let unreplayed = Unreplayed {
            baseline: run(false, 1000, &[]),
            candidate,
        };
        verdict(&[], &flat(), totals, &unreplayed, &Options::default())
    }

    fn unknown() -> Response {
        Response::Skipped(SkipReason::UnknownStatement)
    }

    #[test]
    fn unreplayed_under_the_limit_passes() {
        // 1 % is the default limit: 10 of 1000 is not over it.
        let v = judge(&Totals::default(), run(true, 1000, &[(10, unknown())]));
        assert!(v.pass, "{:?}", v.reasons);
        assert_eq!(v.thresholds.max_unreplayed, Some(0.01));
    }

    #[test]
    fn unreplayed_over_the_limit_fails_first() {
        let totals = Totals {
            compared: 900,
            mismatched: 30,
            mismatch_rate: 30.0 / 900.0,
            application_compared: 800,
            application_mismatched: 30,
            application_mismatch_rate: 30.0 / 800.0,
            ..Totals::default()
        };
        let candidate = run(
            true,
            1000,
            &[
                (20, unknown()),
                (5, Response::Missing(MissingReason::ConnectionLost)),
                (50, Response::Skipped(SkipReason::Filtered)),
            ],
        );
        let v = judge(&totals, candidate);
        assert!(!v.pass);
        assert_eq!(v.reasons.len(), 2, "{:?}", v.reasons);
        assert_eq!(
            v.reasons[0],
            "2.500 % of the candidate's recorded exchanges were not replayed \
             (25 of 1000: unknown_statement: 20, lost_in_flight: 5; limit 1.000 %)"
        );
        assert!(
            v.reasons[1].starts_with("30 of 800 compared application statements differ")
                && v.reasons[1].ends_with("some may follow from the exchanges not replayed"),
            "{}",
            v.reasons[1]
        );
    }

    #[test]
    fn only_replays_and_only_counted_reasons_are_judged() {
        // Filtered on request: listed, not judged.
        let v = judge(
            &Totals::default(),
            run(true, 100, &[(60, Response::Skipped(SkipReason::Filtered))]),
        );
        assert!(v.pass, "{:?}", v.reasons);
        // A capture is no replay (it cannot skip; if it says so, it is not judged).
        let v = judge(&Totals::default(), run(false, 100, &[(60, unknown())]));
        assert!(v.pass, "{:?}", v.reasons);
        // The baseline is judged too when it is a replay.
        let unreplayed = Unreplayed {
            baseline: run(
                true,
                100,
                &[(3, Response::Skipped(SkipReason::NotConnected))],
            ),
            candidate: run(true, 100, &[]),
        };
        let v = verdict(
            &[],
            &flat(),
            &Totals::default(),
            &unreplayed,
            &Options::default(),
        );
        assert!(!v.pass);
        assert!(
            v.reasons[0].contains("of the baseline's") && v.reasons[0].contains("not_connected: 3"),
            "{:?}",
            v.reasons
        );
        // No limit: not judged.
        let opts = Options {
            max_unreplayed: None,
            ..Options::default()
        };
        let v = verdict(&[], &flat(), &Totals::default(), &unreplayed, &opts);
        assert!(v.pass, "{:?}", v.reasons);
    }

    #[test]
    fn the_mismatch_rate_judged_is_the_application_statements() {
        // Chatter differs (a SET answered with a warning), the application's answers do not.
        let chatter_only = Totals {
            compared: 100,
            mismatched: 4,
            mismatch_rate: 0.04,
            application_compared: 60,
            application_mismatched: 0,
            application_mismatch_rate: 0.0,
            ..Totals::default()
        };
        let v = judge(&chatter_only, run(true, 100, &[]));
        assert!(v.pass, "{:?}", v.reasons);
        let application = Totals {
            application_mismatched: 3,
            application_mismatch_rate: 0.05,
            ..chatter_only
        };
        let v = judge(&application, run(true, 100, &[]));
        assert_eq!(
            v.reasons,
            ["3 of 60 compared application statements differ (5.000 %, limit 0.000 %)"]
        );
        let opts = Options {
            max_mismatch_rate: Some(0.06),
            ..Options::default()
        };
        let unreplayed = Unreplayed::default();
        assert!(verdict(&[], &flat(), &application, &unreplayed, &opts).pass);
    }
}
