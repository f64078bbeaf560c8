//! What a replay did not replay: the exchanges it skipped (`Response::Skipped`, by
//! [`SkipReason`]) and those lost in flight (sent, then the connection to the target went
//! away: `Response::Missing(MissingReason::ConnectionLost)`). They are counted over every
//! exchange of a run, joined or not, and every report names them before any other finding:
//! a replay that left part of the workload out ran another workload, and the differences
//! that follow from it are not the candidate's.
//!
//! `--max-unreplayed` judges all of them but the `filtered` ones, which the user left out on
//! purpose (`replay --read-only`, `--include`, `--exclude`); those are still listed.

use std::collections::BTreeMap;

use myrr_recording::{MissingReason, Response, SkipReason};

use crate::report::{RunUnreplayed, UnreplayedReason};

/// The name under which exchanges lost in flight are listed with the skip reasons.
pub const LOST_IN_FLIGHT: &str = "lost_in_flight";

const LOST_IN_FLIGHT_EXPLAINED: &str =
    "sent, but the connection to the target was lost before the answer came (the server went \
     away or closed the session)";

/// Counts one run's exchanges that were not replayed, as the run is read.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Skip reason name → (exchanges, explanation).
    skipped: BTreeMap<&'static str, (u64, &'static str)>,
    lost_in_flight: u64,
}

impl Tally {
    /// Counts an exchange's answer if it says the exchange was not replayed.
    pub(crate) fn count(&mut self, response: &Response) {
        match response {
            Response::Skipped(reason) => {
                self.skipped
                    .entry(reason.name())
                    .or_insert((0, reason.explain()))
                    .0 += 1;
            }
            Response::Missing(MissingReason::ConnectionLost) => self.lost_in_flight += 1,
            _ => {}
        }
    }

    /// The run's account: `exchanges` is the number of exchanges it holds.
    pub(crate) fn into_report(self, exchanges: u64, replay: bool) -> RunUnreplayed {
        let share = |n: u64| {
            if exchanges > 0 {
                n as f64 / exchanges as f64
            } else {
                0.0
            }
        };
        let lost = (self.lost_in_flight > 0).then_some((
            LOST_IN_FLIGHT,
            (self.lost_in_flight, LOST_IN_FLIGHT_EXPLAINED),
        ));
        let mut reasons: Vec<UnreplayedReason> = self
            .skipped
            .into_iter()
            .chain(lost)
            .map(|(name, (count, explanation))| UnreplayedReason {
                reason: name.to_string(),
                count,
                share: share(count),
                explanation: explanation.to_string(),
                counted: counts_against_limit(name),
            })
            .collect();
        // Most first; ties by name, so that reports are stable.
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        let counted = reasons.iter().filter(|r| r.counted).map(|r| r.count).sum();
        RunUnreplayed {
            replay,
            exchanges,
            skipped: reasons
                .iter()
                .filter(|r| r.reason != LOST_IN_FLIGHT)
                .map(|r| r.count)
                .sum(),
            lost_in_flight: self.lost_in_flight,
            counted,
            counted_share: share(counted),
            reasons,
        }
    }
}

/// Whether exchanges left out for `reason` count against `--max-unreplayed`: all but those
/// the user filtered out.
fn counts_against_limit(reason: &str) -> bool {
    reason != SkipReason::Filtered.name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::OkInfo;

    #[test]
    fn counts_by_reason_most_first() {
        let mut t = Tally::default();
        let ok = Response::Ok(OkInfo::default());
        for _ in 0..90 {
            t.count(&ok);
        }
        for _ in 0..4 {
            t.count(&Response::Skipped(SkipReason::UnknownStatement));
        }
        t.count(&Response::Skipped(SkipReason::Unsupported(
            "process_kill".into(),
        )));
        t.count(&Response::Skipped(SkipReason::Unsupported("other".into())));
        t.count(&Response::Skipped(SkipReason::Filtered));
        t.count(&Response::Skipped(SkipReason::Filtered));
        t.count(&Response::Missing(MissingReason::ConnectionLost));
        // Missing for other reasons is a capture's loss, not a replay's.
        t.count(&Response::Missing(MissingReason::Gap));
        let r = t.into_report(100, true);
        let rows: Vec<(&str, u64, bool)> = r
            .reasons
            .iter()
            .map(|x| (x.reason.as_str(), x.count, x.counted))
            .collect();
        assert_eq!(
            rows,
            [
                ("unknown_statement", 4, true),
                ("filtered", 2, false),
                ("unsupported", 2, true),
                ("lost_in_flight", 1, true),
            ]
        );
        assert_eq!(r.skipped, 8);
        assert_eq!(r.lost_in_flight, 1);
        assert_eq!(r.counted, 7);
        assert!((r.counted_share - 0.07).abs() < 1e-12);
        assert!((r.reasons[0].share - 0.04).abs() < 1e-12);
        assert_eq!(
            r.reasons[0].explanation,
            SkipReason::UnknownStatement.explain()
        );
        assert_eq!(r.reasons[3].explanation, LOST_IN_FLIGHT_EXPLAINED);
    }

    #[test]
    fn nothing_left_out() {
        let mut t = Tally::default();
        t.count(&Response::None);
        let r = t.into_report(0, true);
        assert!(r.reasons.is_empty());
        assert_eq!((r.skipped, r.counted, r.counted_share), (0, 0, 0.0));
    }
}
