//! Pacing: every decision `--speed`, `--sync` and `--queue` imply, taken in one place.
//!
//! The dispatcher asks [`Pacing`] when an exchange (or a session's login) is due, how large the
//! queue budget is at first and how it grows with the sessions live, and how many exchanges it
//! hands a session at once; session tasks ask it when their next exchange is due and whether
//! it must wait for the recorded commit order. (The one other use of `--speed` is the threads'
//! scheduling policy, [`crate::sched`], chosen before the recording is read.)
//!
//! - **Paced** (`--speed F`): an exchange recorded `d` after the recording's first event is due
//!   `d / F` after the replay's start (plus `--stagger` per clone). Exchanges go to their session
//!   one at a time (one due soon must not wait in a batch while the dispatcher reads on), and
//!   the queues are bounded by `read_ahead` rather than by the budget.
//! - **Closed loop** (`--speed max`): every exchange is due at once. Exchanges go to sessions in
//!   batches of [`HAND_OVER_BATCH`] (fewer wake-ups), except under `--sync`, where other sessions
//!   may wait for this exchange's commit. The queue budget starts at [`CLOSED_LOOP_QUEUE`] and
//!   grows to [`CLOSED_LOOP_PER_SESSION`] per live session, never beyond `--queue`.

use std::time::Duration;

use tokio::time::Instant;

use crate::sync::Class;
use crate::{ReplayConfig, Speed, SyncMode};

/// Closed loop: exchanges queued for sessions at first. Short queues keep the exchanges in
/// the CPU cache between the dispatcher and the sessions: with 100k queued, the client spent
/// about 12 % more CPU per query. Too short, and a session whose recorded pace was slower than
/// the others' catches up with the dispatcher's place in the recording while the budget sits
/// in the others' queues: it runs dry and must be woken (4096: 1.2 % of the exchanges of a
/// 16-session sysbench replay found their queue empty; 16 Ki: half as many, for 4 % less
/// client CPU per query). The budget grows (up to `ReplayConfig::queue`) with the sessions
/// live, and whenever no session takes an exchange for `QUEUE_STALL` (the dispatcher's);
/// paced replays start at `queue` (they are bounded by `read_ahead`).
pub(crate) const CLOSED_LOOP_QUEUE: usize = 16384;
/// Closed loop: the budget is at least this much per live session.
pub(crate) const CLOSED_LOOP_PER_SESSION: usize = 256;
/// Exchanges handed to a session at once in a closed loop (see module `handover`).
pub(crate) const HAND_OVER_BATCH: usize = 32;

/// The replay's pace, decided from its configuration once.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    speed: Speed,
    sync: SyncMode,
    queue: usize,
    stagger: Duration,
    /// The replay's start on the monotonic clock, and the recorded instant it stands for.
    start: Instant,
    recorded_origin_us: u64,
}

impl Pacing {
    /// `start`: when the recording's first instant, `recorded_origin_us`, is replayed.
    pub(crate) fn new(config: &ReplayConfig, start: Instant, recorded_origin_us: u64) -> Self {
        Self {
            speed: config.speed,
            sync: config.sync,
            queue: config.queue.max(1),
            stagger: config.stagger,
            start,
            recorded_origin_us,
        }
    }

    pub(crate) fn closed_loop(&self) -> bool {
        self.speed == Speed::Max
    }

    /// The recorded instant the replay's start stands for.
    pub(crate) fn recorded_origin_us(&self) -> u64 {
        self.recorded_origin_us
    }

    /// When a recorded instant is due for `clone` (`None`: at once, a closed loop).
    pub(crate) fn due(&self, recorded_us: u64, clone: u32) -> Option<Instant> {
        match self.speed {
            Speed::Max => None,
            Speed::Factor(f) => {
                let offset = recorded_us.saturating_sub(self.recorded_origin_us) as f64 / f;
                Some(self.start + Duration::from_micros(offset as u64) + self.stagger * clone)
            }
        }
    }

    /// Exchanges that may be queued for sessions at the start, over all sessions.
    pub(crate) fn initial_budget(&self) -> usize {
        match self.speed {
            Speed::Max => CLOSED_LOOP_QUEUE.min(self.queue),
            Speed::Factor(_) => self.queue,
        }
    }

    /// The budget `live` session tasks call for, when it is more than `capacity` (closed loop
    /// only: a paced replay has its whole budget from the start).
    pub(crate) fn budget_for(&self, live: usize, capacity: usize) -> Option<usize> {
        let want = (CLOSED_LOOP_PER_SESSION * live).min(self.queue);
        (self.closed_loop() && want > capacity).then_some(want)
    }

    /// The most the budget may grow to when sessions stop taking exchanges.
    pub(crate) fn max_budget(&self) -> usize {
        self.queue
    }

    /// Exchanges handed to a session at once.
    pub(crate) fn batch(&self) -> usize {
        if self.closed_loop() && self.sync == SyncMode::None {
            HAND_OVER_BATCH
        } else {
            1
        }
    }

    /// `--sync`: does an exchange wait for the commits recorded as ended before it ended?
    /// `commit`: writes (and locking reads) and commit points; `all`: those and the reads
    /// that take a view. A read from a view its transaction already took (REPEATABLE READ)
    /// sees what that view saw whatever commits meanwhile, and a command that reads no data
    /// (BEGIN, SET, a read-only COMMIT) depends on none: they wait for no other session.
    pub(crate) fn waits_for_order(&self, class: Class) -> bool {
        match self.sync {
            SyncMode::None => false,
            SyncMode::Commit => class.locks || class.commit,
            SyncMode::All => class.locks || class.commit || class.view,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(speed: Speed, sync: SyncMode, queue: usize) -> Pacing {
        let target = crate::Target::new("mysql://u@127.0.0.1:1", None, None).unwrap();
        let config = ReplayConfig {
            speed,
            sync,
            queue,
            stagger: Duration::from_millis(3),
            ..ReplayConfig::new(vec![], target, "out.myrr".into())
        };
        Pacing::new(&config, Instant::now(), 1_000_000)
    }

    #[test]
    fn a_paced_exchange_is_due_at_its_recorded_offset_divided_by_the_speed() {
        let p = pacing(Speed::Factor(2.0), SyncMode::None, 100);
        let due = |us, clone| p.due(us, clone).unwrap() - p.start;
        assert_eq!(due(1_000_000, 0), Duration::ZERO);
        assert_eq!(due(3_000_000, 0), Duration::from_secs(1));
        // Clones are staggered.
        assert_eq!(due(3_000_000, 2), Duration::from_millis(1006));
        // Before the origin (a session opened before the first exchange): at the start.
        assert_eq!(due(10, 0), Duration::ZERO);
        assert!(!p.closed_loop());
    }

    #[test]
    fn a_closed_loop_sends_at_once_in_batches_unless_ordered() {
        let p = pacing(Speed::Max, SyncMode::None, 1 << 20);
        assert_eq!(p.due(5_000_000, 3), None);
        assert_eq!(p.batch(), HAND_OVER_BATCH);
        assert_eq!(pacing(Speed::Max, SyncMode::All, 100).batch(), 1);
        assert_eq!(pacing(Speed::Factor(1.0), SyncMode::None, 100).batch(), 1);
    }

    #[test]
    fn the_closed_loop_budget_grows_with_live_sessions_up_to_the_queue() {
        let p = pacing(Speed::Max, SyncMode::None, 100_000);
        assert_eq!(p.initial_budget(), CLOSED_LOOP_QUEUE);
        assert_eq!(p.budget_for(10, CLOSED_LOOP_QUEUE), None);
        assert_eq!(
            p.budget_for(100, CLOSED_LOOP_QUEUE),
            Some(100 * CLOSED_LOOP_PER_SESSION)
        );
        assert_eq!(p.budget_for(1000, 25_600), Some(100_000));
        // A queue smaller than the closed loop's start is the budget.
        assert_eq!(pacing(Speed::Max, SyncMode::None, 50).initial_budget(), 50);
        // Paced: the whole queue at once, never grown.
        let paced = pacing(Speed::Factor(1.0), SyncMode::None, 500);
        assert_eq!(paced.initial_budget(), 500);
        assert_eq!(paced.budget_for(1000, 500), None);
        assert_eq!(
            pacing(Speed::Factor(1.0), SyncMode::None, 0).initial_budget(),
            1
        );
    }

    #[test]
    fn sync_modes_decide_which_exchanges_wait_for_the_commit_order() {
        let none = pacing(Speed::Max, SyncMode::None, 1);
        let commit = pacing(Speed::Max, SyncMode::Commit, 1);
        let all = pacing(Speed::Max, SyncMode::All, 1);
        for (locks, commit_point) in [(false, false), (true, false), (false, true), (true, true)] {
            let class = Class {
                locks,
                commit: commit_point,
                ..Class::default()
            };
            assert!(!none.waits_for_order(class));
            assert_eq!(commit.waits_for_order(class), locks || commit_point);
            assert_eq!(all.waits_for_order(class), locks || commit_point);
        }
        let view = Class {
            view: true,
            ..Class::default()
        };
        let in_view = Class {
            in_view: true,
            ..Class::default()
        };
        assert!(all.waits_for_order(view) && !commit.waits_for_order(view));
        assert!(!all.waits_for_order(in_view));
        let locking_in_view = Class {
            locks: true,
            in_view: true,
            ..Class::default()
        };
        assert!(all.waits_for_order(locking_in_view));
    }
}
