//! `--ramp`: the recording replayed once per step, at growing multiples of its load, against
//! the same target, each step a phase of one output run; the ramp stops at the first step the
//! candidate cannot keep up with.
//!
//! **How a step multiplies the load.** A step of multiple `m` runs `floor(m)` clones of every
//! session (at least one) at `m / floor(m)` × the replay's `--speed`: 1, 2, 4, 8 are 1, 2, 4, 8
//! clones at the recorded pace, 1.5 is one clone 1.5 × as fast, 2.5 two clones 1.25 × as fast.
//! Clones add load the way more users do: more connections, each with production's think
//! times and its transactions' mix. Speed alone would only shorten the think times, keeping
//! production's number of connections, and cannot make a session go faster than its own
//! round trips allow: a knee found that way is the client's, not the candidate's. The
//! fraction left over is taken by speed.
//!
//! The steps' clones are numbered on from the previous step's (a step of 2 after a step of 1
//! has clones 1 and 2), so every exchange of the run keeps its own (session, seq, clone), and
//! analyze joins all of them to the baseline's; a [`myrr_recording::Phase`] event marks each
//! step's start and end.
//!
//! **When a step fails.** Every second (a *window*), the exchanges the step replayed in it are
//! judged: the window is bad when more than 1 % of them started more than `max_lag` after they
//! were due (the window's p99 start lag is over `max_lag`), or when more than `max_errors` of
//! them failed where production's statement had not. Two bad windows in a row stop the step
//! there (in-flight exchanges still get their answers) and end the ramp; so does a whole step
//! over either limit. Windows of fewer than [`MIN_JUDGED`] exchanges are not judged. A
//! candidate that answers nothing at all is judged once its answers come.

use std::time::Duration;

/// With `--start-at`, the pause between one step's scheduled end and the next step's start.
pub const STEP_PAUSE: Duration = Duration::from_secs(1);
/// A window: how often a running step is judged.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Bad windows in a row that stop a step.
pub const BAD_WINDOWS: u32 = 2;
/// The share of exchanges that may start later than `max_lag` (p99).
pub const LATE_SHARE: f64 = 0.01;
/// Windows (and steps) with fewer exchanges are not judged.
pub const MIN_JUDGED: u64 = 20;

/// `--ramp` and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    /// Multiples of the recorded load, in the order they run.
    pub steps: Vec<f64>,
    /// A window (or step) whose p99 start lag is over this is bad.
    pub max_lag: Duration,
    /// A window (or step) in which more than this share of the exchanges failed where
    /// production's had not is bad.
    pub max_errors: f64,
    /// Each step replays this much of the recording (recorded time); `None`: all of it.
    pub step_duration: Option<Duration>,
}

impl Ramp {
    pub fn new(steps: Vec<f64>) -> Self {
        Self {
            steps,
            max_lag: Duration::from_millis(250),
            max_errors: 0.01,
            step_duration: None,
        }
    }

    /// The steps as they run: clones and speed of each, the clones numbered on.
    pub fn plan(&self) -> Vec<Step> {
        let mut first_clone = 0;
        self.steps
            .iter()
            .zip(myrr_recording::ramp_clones(&self.steps))
            .enumerate()
            .map(|(index, (&multiple, clones))| {
                let step = Step {
                    index: index as u32,
                    multiple,
                    clones,
                    speed: multiple / f64::from(clones),
                    first_clone,
                };
                first_clone += clones;
                step
            })
            .collect()
    }
}

/// One step as it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub index: u32,
    pub multiple: f64,
    pub clones: u32,
    /// Times the replay's `--speed`.
    pub speed: f64,
    pub first_clone: u32,
}

/// What a step (or a window of it) replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub exchanges: u64,
    /// Started more than `max_lag` after they were due.
    pub late: u64,
    /// Failed where production's statement had not.
    pub new_errors: u64,
}

impl Counts {
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            exchanges: self.exchanges.saturating_sub(before.exchanges),
            late: self.late.saturating_sub(before.late),
            new_errors: self.new_errors.saturating_sub(before.new_errors),
        }
    }
}

/// Judges a running step window by window (see the module's doc).
pub struct Judge<'a> {
    ramp: &'a Ramp,
    bad: u32,
}

impl<'a> Judge<'a> {
    pub fn new(ramp: &'a Ramp) -> Self {
        Self { ramp, bad: 0 }
    }

    /// One window's counts; why the step must stop, after [`BAD_WINDOWS`] bad ones in a row.
    pub fn window(&mut self, w: Counts) -> Option<String> {
        match self.over_limits(w) {
            Some(why) => {
                self.bad += 1;
                (self.bad >= BAD_WINDOWS).then(|| {
                    format!(
                        "{why} in {} windows of {} s in a row",
                        self.bad,
                        WINDOW.as_secs()
                    )
                })
            }
            None => {
                if w.exchanges >= MIN_JUDGED {
                    self.bad = 0;
                }
                None
            }
        }
    }

    /// A whole step's counts: why it was not sustained, if it was not.
    pub fn step(&self, s: Counts) -> Option<String> {
        self.over_limits(s)
            .map(|why| format!("{why} over the step"))
    }

    fn over_limits(&self, c: Counts) -> Option<String> {
        if c.exchanges < MIN_JUDGED {
            return None;
        }
        let share = |n: u64| n as f64 / c.exchanges as f64;
        if share(c.late) > LATE_SHARE {
            return Some(format!(
                "p99 start lag over {} ms ({:.1} % of {} exchanges started late)",
                self.ramp.max_lag.as_millis(),
                share(c.late) * 100.0,
                c.exchanges
            ));
        }
        if share(c.new_errors) > self.ramp.max_errors {
            return Some(format!(
                "{:.1} % of {} exchanges failed where production's did not (limit {} %)",
                share(c.new_errors) * 100.0,
                c.exchanges,
                self.ramp.max_errors * 100.0
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_multiples_are_clones_and_the_rest_is_speed() {
        let plan = Ramp::new(vec![1.0, 2.0, 4.0, 1.5, 2.5, 0.5, 3.0 - 1e-12]).plan();
        let got: Vec<(u32, f64, u32)> = plan
            .iter()
            .map(|s| (s.clones, s.speed, s.first_clone))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1.0, 0),
                (2, 1.0, 1),
                (4, 1.0, 3),
                (1, 1.5, 7),
                (2, 1.25, 8),
                (1, 0.5, 10),
                (3, (3.0 - 1e-12) / 3.0, 11),
            ]
        );
    }

    fn counts(exchanges: u64, late: u64, new_errors: u64) -> Counts {
        Counts {
            exchanges,
            late,
            new_errors,
        }
    }

    #[test]
    fn a_step_stops_after_two_bad_windows_in_a_row() {
        let ramp = Ramp::new(vec![1.0]);
        let mut j = Judge::new(&ramp);
        assert_eq!(
            j.window(counts(1000, 10, 0)),
            None,
            "1 % late is within p99"
        );
        assert_eq!(j.window(counts(1000, 11, 0)), None, "one bad window");
        assert_eq!(j.window(counts(1000, 0, 0)), None, "a good one resets");
        assert_eq!(j.window(counts(1000, 50, 0)), None);
        assert_eq!(j.window(counts(5, 0, 0)), None, "too few to judge");
        let why = j
            .window(counts(1000, 50, 0))
            .expect("two bad windows in a row");
        assert!(why.contains("p99 start lag over 250 ms"), "{why}");
        assert!(why.contains("5.0 %"), "{why}");
    }

    #[test]
    fn new_errors_over_the_limit_fail_a_window_and_a_step() {
        let mut ramp = Ramp::new(vec![1.0]);
        ramp.max_errors = 0.05;
        let mut j = Judge::new(&ramp);
        assert_eq!(j.window(counts(100, 0, 5)), None, "5 % is the limit");
        assert_eq!(j.window(counts(100, 0, 6)), None);
        assert!(j.window(counts(100, 0, 6)).is_some());
        let why = j.step(counts(1000, 0, 60)).expect("over the step");
        assert!(why.contains("failed where production's did not"), "{why}");
        assert_eq!(j.step(counts(10, 10, 10)), None, "too few to judge");
    }
}
