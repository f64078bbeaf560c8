//! A ramp run (`replay --ramp`): what each step asked and achieved, and the candidate's
//! **headroom**, the largest multiple of the recorded load it sustained within the latency
//! limit.
//!
//! A ramp run's header names its steps (`ramp`: the multiples); step k's clones are the next
//! `ramp_clones(multiples)[k]` clone numbers after the steps before it, so each exchange
//! belongs to the step of its clone number, whatever order the run's events come in. The
//! replay's `Phase` events say how each step ended (cut short, and why).
//!
//! Per step: throughput asked (its exchanges over the span of their scheduled starts: the
//! recorded load times the multiple) and achieved (the same exchanges over the span from the
//! first start to the last answer); p50/p95/p99 of service time and of time since scheduled;
//! errors. A step is within the limit when its p99 (the analysis' latency measure) is at
//! most `--max-p99`, or without it at most step 1's p99 × (1 + `--max-p99-regression`,
//! 100 % when not given), and the replay did not cut it short. The headroom is the multiple
//! of the last step of the run of steps, from the first, that were all within the limit.

use hdrhistogram::Histogram;
use myrr_recording::{Exchange, Header, Phase, Response};
use serde::Serialize;

use crate::stats::{new_histogram, record, Percentiles};
use crate::Options;

/// One step of a ramp run, in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    /// From 1.
    pub step: u32,
    /// Multiple of the recorded load asked.
    pub multiple: f64,
    pub clones: u32,
    /// The step ran (a ramp stops at the first step that fails).
    pub ran: bool,
    pub exchanges: u64,
    pub errors: u64,
    /// Exchanges per second asked (over their scheduled starts) and achieved (from the first
    /// start to the last answer).
    pub asked_per_s: f64,
    pub achieved_per_s: f64,
    pub service: Percentiles,
    pub since_scheduled: Percentiles,
    /// Why the replay cut the step short (its limits on start lag and errors, or a stop).
    pub stopped: Option<String>,
    /// Its p99 was within the latency limit and the replay did not cut it short.
    pub within_limit: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RampReport {
    pub steps: Vec<RampStep>,
    /// The latency limit a step is judged by (µs, of `measure`), and how it was set.
    pub p99_limit_us: u64,
    pub limit: String,
    /// `service` or `since_scheduled`.
    pub measure: String,
    /// The largest multiple of the recorded load sustained within the limit; `None` when
    /// the first step was not.
    pub headroom: Option<f64>,
}

struct StepStats {
    multiple: f64,
    clones: u32,
    exchanges: u64,
    errors: u64,
    service: Histogram<u64>,
    since_scheduled: Histogram<u64>,
    first_scheduled_us: u64,
    last_scheduled_us: u64,
    first_start_us: u64,
    last_end_us: u64,
    stopped: Option<String>,
    ended: bool,
}

/// Collects a ramp run's exchanges by step while the run is read.
pub(crate) struct RampTracker {
    steps: Vec<StepStats>,
    /// The first clone number of each step, and one past the last step's.
    bounds: Vec<u32>,
}

impl RampTracker {
    /// A tracker when the run is a ramp (its first header names the steps).
    pub(crate) fn of(headers: &[Header]) -> Option<Self> {
        let multiples: Vec<f64> = headers
            .first()?
            .options
            .iter()
            .find(|(k, _)| k == "ramp")?
            .1
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<f64>().ok())
            .collect::<Option<_>>()?;
        if multiples.is_empty() {
            return None;
        }
        let clones = myrr_recording::ramp_clones(&multiples);
        let mut bounds = vec![0];
        for c in &clones {
            bounds.push(bounds.last().unwrap_or(&0) + c);
        }
        let steps = multiples
            .iter()
            .zip(clones)
            .map(|(&multiple, clones)| StepStats {
                multiple,
                clones,
                exchanges: 0,
                errors: 0,
                service: new_histogram(),
                since_scheduled: new_histogram(),
                first_scheduled_us: u64::MAX,
                last_scheduled_us: 0,
                first_start_us: u64::MAX,
                last_end_us: 0,
                stopped: None,
                ended: false,
            })
            .collect();
        Some(Self { steps, bounds })
    }

    fn step_of(&self, clone: u32) -> Option<usize> {
        // Few steps: a scan is as quick as a search.
        (0..self.steps.len()).find(|&i| clone >= self.bounds[i] && clone < self.bounds[i + 1])
    }

    /// Some step was cut short, or never ran.
    pub(crate) fn stopped(&self) -> bool {
        self.steps.iter().any(|s| s.stopped.is_some() || !s.ended)
    }

    pub(crate) fn phase(&mut self, p: &Phase) {
        if let (Some(s), Some(end)) = (self.steps.get_mut(p.index as usize), &p.end) {
            s.ended = true;
            s.stopped = end.stopped.clone();
        }
    }

    /// One exchange of the run; `latency`: its (service, since scheduled) when it is timed.
    pub(crate) fn exchange(&mut self, x: &Exchange, latency: Option<(u64, u64)>) {
        let Some(i) = self.step_of(x.clone) else {
            return;
        };
        let s = &mut self.steps[i];
        s.exchanges += 1;
        s.errors += u64::from(matches!(x.response, Response::Err(_)));
        let scheduled = x.scheduled_us.unwrap_or(x.start_us);
        s.first_scheduled_us = s.first_scheduled_us.min(scheduled);
        s.last_scheduled_us = s.last_scheduled_us.max(scheduled);
        s.first_start_us = s.first_start_us.min(x.start_us);
        s.last_end_us = s.last_end_us.max(x.end_us);
        if let Some((service, since)) = latency {
            record(&mut s.service, service);
            record(&mut s.since_scheduled, since);
        }
    }

    pub(crate) fn into_report(self, opts: &Options) -> RampReport {
        let measure = |s: &StepStats| {
            if opts.since_scheduled {
                s.since_scheduled.value_at_quantile(0.99)
            } else {
                s.service.value_at_quantile(0.99)
            }
        };
        let (p99_limit_us, limit) = match opts.max_p99_us {
            Some(us) => (
                us,
                format!("p99 at most {:.1} ms (--max-p99)", us as f64 / 1e3),
            ),
            None => {
                let r = opts.max_p99_regression.unwrap_or(1.0);
                let first = self.steps.first().map_or(0, measure);
                (
                    (first as f64 * (1.0 + r)) as u64,
                    format!(
                        "p99 at most step 1's ({:.1} ms) + {:.0} % (--max-p99-regression; \
                         or give --max-p99)",
                        first as f64 / 1e3,
                        r * 100.0
                    ),
                )
            }
        };
        let rate = |n: u64, from: u64, to: u64| {
            if to > from {
                n as f64 / ((to - from) as f64 / 1e6)
            } else {
                0.0
            }
        };
        let mut headroom = None;
        let mut leading = true;
        let steps = self
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let ran = s.exchanges > 0 || s.ended;
                let within = ran && s.exchanges > 0 && s.stopped.is_none() && {
                    measure(&s) <= p99_limit_us
                };
                leading &= within;
                if leading {
                    headroom = Some(s.multiple);
                }
                RampStep {
                    step: i as u32 + 1,
                    multiple: s.multiple,
                    clones: s.clones,
                    ran,
                    exchanges: s.exchanges,
                    errors: s.errors,
                    asked_per_s: rate(s.exchanges, s.first_scheduled_us, s.last_scheduled_us),
                    achieved_per_s: rate(s.exchanges, s.first_start_us, s.last_end_us),
                    service: Percentiles::of(&s.service),
                    since_scheduled: Percentiles::of(&s.since_scheduled),
                    stopped: s.stopped,
                    within_limit: within,
                }
            })
            .collect();
        RampReport {
            steps,
            p99_limit_us,
            limit,
            measure: if opts.since_scheduled {
                "since_scheduled"
            } else {
                "service"
            }
            .into(),
            headroom,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{Command, OkInfo, PhaseEnd, RunKind};

    fn header(ramp: &str) -> Vec<Header> {
        vec![Header::new(
            RunKind::Replay,
            "t".into(),
            vec![("ramp".into(), ramp.into())],
        )]
    }

    fn exchange(clone: u32, scheduled_us: u64, service_us: u64) -> Exchange {
        Exchange {
            session: 1,
            seq: 0,
            clone,
            scheduled_us: Some(scheduled_us),
            start_us: scheduled_us,
            end_us: scheduled_us + service_us,
            command: Command::Ping,
            response: myrr_recording::Response::Ok(OkInfo::default()),
            more: vec![],
        }
    }

    /// Step k replays 100 exchanges per clone over 1 s, each taking `service[k]` µs.
    fn ramp(multiples: &str, service: &[u64], stopped_at: Option<usize>) -> RampTracker {
        let mut t = RampTracker::of(&header(multiples)).expect("a ramp");
        let clones =
            myrr_recording::ramp_clones(&t.steps.iter().map(|s| s.multiple).collect::<Vec<_>>());
        let mut first = 0;
        for (k, (&n, &svc)) in clones.iter().zip(service).enumerate() {
            for c in first..first + n {
                for i in 0..100 {
                    t.exchange(
                        &exchange(c, k as u64 * 10_000_000 + i * 10_000, svc),
                        Some((svc, svc)),
                    );
                }
            }
            first += n;
            t.phase(&Phase {
                index: k as u32,
                multiple: 0.0,
                first_clone: 0,
                clones: n,
                speed: 1.0,
                at_us: 0,
                end: Some(PhaseEnd {
                    stopped: (stopped_at == Some(k)).then(|| "lag".to_string()),
                    exchanges: 0,
                    late: 0,
                    new_errors: 0,
                }),
            });
        }
        t
    }

    #[test]
    fn exchanges_go_to_the_step_of_their_clone() {
        let r = ramp("1,2,4", &[100, 100, 100], None).into_report(&Options::default());
        let got: Vec<(u32, u64, bool)> = r
            .steps
            .iter()
            .map(|s| (s.clones, s.exchanges, s.ran))
            .collect();
        assert_eq!(got, [(1, 100, true), (2, 200, true), (4, 400, true)]);
        // 100 a second asked per clone (over the 0.99 s of scheduled starts).
        let asked = r.steps[2].asked_per_s;
        assert!((asked - 400.0 / 0.99).abs() < 1.0, "{asked}");
        assert_eq!(r.headroom, Some(4.0));
    }

    #[test]
    fn the_headroom_is_the_last_step_within_the_limit() {
        // Step 1 at 1 ms: the default limit is 2 ms; x4 is at 5 ms.
        let r = ramp("1,2,4,8", &[1000, 1500, 5000, 1000], None).into_report(&Options::default());
        assert_eq!(r.p99_limit_us, 2 * r.steps[0].service.p99_us);
        let within: Vec<bool> = r.steps.iter().map(|s| s.within_limit).collect();
        assert_eq!(within, [true, true, false, true]);
        assert_eq!(
            r.headroom,
            Some(2.0),
            "a later step within the limit does not count"
        );
        // An absolute limit.
        let opts = Options {
            max_p99_us: Some(6000),
            ..Options::default()
        };
        let r = ramp("1,2,4,8", &[1000, 1500, 5000, 1000], None).into_report(&opts);
        assert_eq!(r.headroom, Some(8.0));
        // A step the replay cut short is not sustained, whatever its latency.
        let r = ramp("1,2,4", &[1000, 1000, 1000], Some(1)).into_report(&opts);
        assert_eq!(r.headroom, Some(1.0));
        assert_eq!(r.steps[1].stopped.as_deref(), Some("lag"));
        // Not even the recorded load.
        let r = ramp("1,2", &[9000, 1000], None).into_report(&opts);
        assert_eq!(r.headroom, None);
    }

    #[test]
    fn a_run_without_a_ramp_has_no_tracker() {
        assert!(RampTracker::of(&header("")).is_none());
        assert!(RampTracker::of(&header("1,x")).is_none());
        assert!(RampTracker::of(&[]).is_none());
    }
}
