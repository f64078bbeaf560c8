//! The dispatcher: reads the recordings in time order and hands each session's exchanges to
//! its session tasks.
//!
//! [`dispatch`] takes what this replay replays ([`Selector`]: shard, limits, sessions seen
//! starting), starts a session task per recorded session and clone on the pool, and hands
//! over each exchange as [`Work`] through [`Handover`], within the queue budget (a semaphore
//! over all sessions) and no further ahead of its time than `read_ahead`. When an exchange is
//! due, how many go at once and how the budget grows are [`Pacing`](crate::pacing::Pacing)'s
//! to say. Under `--sync`, [`feed_commits`] reads ahead and registers every commit point in
//! the recorded commit order ([`crate::sync`]), and each exchange is marked with whether it
//! waits for that order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use myrr_recording::{
    event_time, Command, Event, Exchange, FormatError, Response, RunReader, SessionStart,
};
use tokio::sync::mpsc;

use crate::handover::{self, Handover};
use crate::{pool, session, sync, ReplayConfig, Shared};

/// Closed loop: when no session takes an exchange for this long, the queue budget grows (the
/// queued exchanges belong to sessions blocked on a lock whose holder's next command is
/// further on).
const QUEUE_STALL: Duration = Duration::from_millis(10);

/// Queue budget the dispatcher takes at once.
const PERMIT_BATCH: usize = 256;

/// Every this many exchanges handed over, the batches not yet full are sent anyway.
const FLUSH_EVERY: usize = 1024;

/// A recorded exchange as far as a session task needs it: its command and times, not its
/// recorded answer. The dispatcher frees the answer on the thread that decoded it (a free on
/// another thread costs the allocator more).
pub(crate) struct Recorded {
    pub(crate) seq: u64,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) command: Command,
    /// A PREPARE's recorded statement id, which later EXECUTEs name.
    pub(crate) prepared_id: Option<u32>,
}

impl From<Exchange> for Recorded {
    fn from(x: Exchange) -> Self {
        Self {
            seq: x.seq,
            start_us: x.start_us,
            end_us: x.end_us,
            prepared_id: match x.response {
                Response::Prepared(p) => Some(p.stmt_id),
                _ => None,
            },
            command: x.command,
        }
    }
}

/// A recorded exchange handed to a session task: its own without `--scale` (no allocation),
/// shared between the clones with it.
pub(crate) enum Handed {
    Own(Recorded),
    Shared(Arc<Recorded>),
}

impl std::ops::Deref for Handed {
    type Target = Recorded;

    fn deref(&self) -> &Recorded {
        match self {
            Handed::Own(r) => r,
            Handed::Shared(r) => r,
        }
    }
}

impl Handed {
    /// The command, taken (copied while another clone still holds it).
    pub(crate) fn into_command(self) -> Command {
        match self {
            Handed::Own(r) => r.command,
            Handed::Shared(r) => Arc::try_unwrap(r)
                .map(|r| r.command)
                .unwrap_or_else(|r| r.command.clone()),
        }
    }
}

/// One recorded exchange for a session task, with its place in the commit order (`--sync`).
pub(crate) struct Work {
    pub(crate) x: Handed,
    /// Registered commit point: release it once answered.
    pub(crate) commit: Option<sync::CommitKey>,
    /// Wait for the commits that ended before it started.
    pub(crate) wait: bool,
}

/// Which recorded events this replay takes (shard, limits, sessions seen starting). The
/// dispatcher and the `--sync` commit feeder both read through one, so they agree exactly.
struct Selector<'a> {
    cfg: &'a ReplayConfig,
    horizon: Option<u64>,
    live: HashSet<u64>,
    taken: u64,
}

enum Pick {
    Start(SessionStart),
    Exchange(Exchange),
    End(u64),
    Skip,
    Stop,
}

impl<'a> Selector<'a> {
    fn new(cfg: &'a ReplayConfig, recorded_origin_us: u64) -> Self {
        Self {
            cfg,
            horizon: cfg
                .limit_duration
                .map(|d| recorded_origin_us + d.as_micros() as u64),
            live: HashSet::new(),
            taken: 0,
        }
    }

    fn pick(&mut self, ev: Event) -> Pick {
        let cfg = self.cfg;
        if self.horizon.is_some_and(|h| event_time(&ev) > h)
            || cfg.limit_exchanges.is_some_and(|l| self.taken >= l)
        {
            return Pick::Stop;
        }
        match ev {
            // A replay run used as input: each session once (clone 0).
            Event::SessionStart(s)
                if s.clone == 0 && s.session % cfg.shard.1 as u64 == cfg.shard.0 as u64 =>
            {
                self.live.insert(s.session);
                Pick::Start(s)
            }
            Event::Exchange(x) if x.clone == 0 && self.live.contains(&x.session) => {
                self.taken += 1;
                Pick::Exchange(x)
            }
            Event::SessionEnd(e) if self.live.remove(&e.session) => Pick::End(e.session),
            _ => Pick::Skip,
        }
    }
}

/// Reads events in time order and hands each session's exchanges to its tasks (one per clone).
///
/// Damage met on the way (a block whose checksum is right but whose contents do not decode:
/// the pre-scan checks checksums only) ends the reading there and is returned.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    mut pool: pool::Pool,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Option<pool::Pool>,
    Option<FormatError>,
) {
    let cfg = &shared.config;
    let mut tasks = Vec::new();
    let mut merged = match RunReader::open(&cfg.inputs) {
        Ok(m) => m,
        Err(e) => return (tasks, Some(pool), Some(e)),
    };
    // Paced, an exchange is sent to its session at once: one due soon must not wait in a
    // batch while the dispatcher reads on. So with --sync, where other sessions may wait for
    // this exchange's commit.
    // A quiet session's partial batch waits for no more than FLUSH_EVERY exchanges of the
    // others (the dispatcher may never wait while permits keep coming).
    let pacing = &shared.pacing;
    let mut handover = Handover::new(pacing.batch(), FLUSH_EVERY);
    let mut refused = Vec::new();
    let mut classifier = sync::Classifier::default();
    let mut select = Selector::new(cfg, pacing.recorded_origin_us());
    let mut permits = 0u32;
    let mut capacity = shared.budget.available_permits();
    for ev in merged.by_ref() {
        if shared.stopping() {
            break;
        }
        let pick = select.pick(ev);
        // Paced: no further ahead than `read_ahead`, whatever the queues could hold.
        let due = match &pick {
            Pick::Start(s) => Some(s.start_us),
            Pick::Exchange(x) => Some(x.start_us),
            _ => None,
        };
        if let Some(at) = due.and_then(|us| pacing.due(us, 0)) {
            match at.checked_sub(cfg.read_ahead) {
                Some(early) if early > tokio::time::Instant::now() => {
                    handover.send_unsent(&mut refused);
                    give_back(&shared, &mut refused);
                    tokio::time::sleep_until(early).await
                }
                _ => {}
            }
        }
        match pick {
            Pick::Stop => break,
            Pick::Skip => {}
            Pick::Start(s) => {
                let mut txs = Vec::new();
                for clone in 0..cfg.scale {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let worker = session::Worker::new(shared.clone(), s.clone(), clone);
                    tasks.push(pool.spawn(worker.run(rx)));
                    txs.push(tx);
                }
                handover.open(s.session, txs);
                // Closed loop: room for every live session's share, whatever the start.
                let live = handover.sessions() * cfg.scale as usize;
                if let Some(want) = pacing.budget_for(live, capacity) {
                    shared.budget.add_permits(want - capacity);
                    capacity = want;
                }
            }
            Pick::Exchange(x) => {
                let session = x.session;
                if !handover.is_open(session) {
                    continue;
                }
                let (write, commit) = match shared.order {
                    Some(_) => classifier.classify(&x),
                    None => (false, false),
                };
                let wait = pacing.waits_for_order(write, commit);
                let commit = commit.then_some((x.end_us, x.session, x.seq));
                let recorded = Recorded::from(x);
                let (mut own, shared_x) = if cfg.scale == 1 {
                    (Some(recorded), None)
                } else {
                    (None, Some(Arc::new(recorded)))
                };
                for clone in 0..cfg.scale as usize {
                    // The session task gives the permit back when it takes the exchange.
                    // Taken in batches: a dispatcher waiting for permits is woken once per
                    // batch, not by every session (each wake-up can cross threads).
                    if permits == 0 {
                        let batch = PERMIT_BATCH.min(pacing.max_budget()) as u32;
                        let got = match shared.budget.try_acquire_many(batch) {
                            Ok(p) => {
                                p.forget();
                                true
                            }
                            Err(_) => {
                                // The sessions give permits back as they take exchanges:
                                // they must have theirs before the dispatcher waits.
                                handover.send_unsent(&mut refused);
                                give_back(&shared, &mut refused);
                                let wait = shared.budget.acquire_many(batch);
                                if capacity < pacing.max_budget() {
                                    match tokio::time::timeout(QUEUE_STALL, wait).await {
                                        Ok(got) => got.map(|p| p.forget()).is_ok(),
                                        // Nothing came back: the queued exchanges belong to
                                        // sessions that are blocked (on a lock whose holder's
                                        // next command is further on). The queues may hold
                                        // more.
                                        Err(_) => {
                                            capacity += batch as usize;
                                            true
                                        }
                                    }
                                } else {
                                    wait.await.map(|p| p.forget()).is_ok()
                                }
                            }
                        };
                        if !got {
                            break;
                        }
                        permits = batch;
                    }
                    permits -= 1;
                    let x = match (&shared_x, own.take()) {
                        (Some(x), _) => Handed::Shared(x.clone()),
                        // One clone: it takes the exchange itself, on its only turn.
                        (None, Some(x)) => Handed::Own(x),
                        (None, None) => break,
                    };
                    if !handover.hand(session, clone, Work { x, commit, wait }, &mut refused) {
                        break;
                    }
                }
                give_back(&shared, &mut refused);
            }
            Pick::End(session) => {
                handover.close(session, &mut refused);
                give_back(&shared, &mut refused);
                classifier.session_ended(session);
            }
        }
    }
    // Every session still open gets what it has been handed.
    handover.send_all(&mut refused);
    give_back(&shared, &mut refused);
    (tasks, Some(pool), merged.take_damage())
}

/// Exchanges a session task did not take (it had ended): their queue permits come back, and
/// their commit points are released (they will never be answered).
fn give_back(shared: &Shared, refused: &mut Vec<handover::Refused>) {
    if refused.is_empty() {
        return;
    }
    shared.budget.add_permits(refused.len());
    for (clone, w) in refused.drain(..) {
        if let (Some(order), Some(key)) = (&shared.order, w.commit) {
            order.commits.done(clone, key);
        }
    }
}

/// `--sync`: reads the recordings ahead of the dispatcher and registers every commit point, so
/// an exchange can wait for commits that *started* after it but ended before it did.
pub(crate) async fn feed_commits(shared: Arc<Shared>) {
    let Some(order) = shared.order.as_ref().map(|o| &o.commits) else {
        return;
    };
    let cfg = &shared.config;
    if let Ok(merged) = RunReader::open(&cfg.inputs) {
        let mut classifier = sync::Classifier::default();
        let mut select = Selector::new(cfg, shared.pacing.recorded_origin_us());
        for (n, ev) in merged.enumerate() {
            if shared.stopping() {
                break;
            }
            let at = event_time(&ev);
            match select.pick(ev) {
                Pick::Stop => break,
                Pick::Exchange(x) => {
                    if classifier.classify(&x).1 {
                        for clone in 0..cfg.scale {
                            order.register(clone, (x.end_us, x.session, x.seq));
                        }
                    }
                }
                Pick::End(session) => classifier.session_ended(session),
                Pick::Start(_) | Pick::Skip => {}
            }
            if n % 256 == 255 {
                order.read_to(at);
                // Bounded read-ahead; and let the sessions run (one client thread).
                while order.pending() > sync::MAX_PENDING && !shared.stopping() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::task::yield_now().await;
            }
        }
    }
    order.read_to(u64::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{EndReason, Login, SessionEnd};

    fn config(shard: (u32, u32), limit: Option<u64>, horizon_s: Option<u64>) -> ReplayConfig {
        let target = crate::Target::new("mysql://u@127.0.0.1:1", None, None).unwrap();
        ReplayConfig {
            shard,
            limit_exchanges: limit,
            limit_duration: horizon_s.map(Duration::from_secs),
            ..ReplayConfig::new(vec![], target, "out.myrr".into())
        }
    }

    fn start(session: u64, clone: u32, at_s: u64) -> Event {
        Event::SessionStart(SessionStart {
            session,
            start_us: at_s * 1_000_000,
            clone,
            ..SessionStart::default()
        })
    }

    fn exchange(session: u64, seq: u64, clone: u32, at_s: u64) -> Event {
        Event::Exchange(Exchange {
            session,
            seq,
            clone,
            scheduled_us: None,
            start_us: at_s * 1_000_000,
            end_us: at_s * 1_000_000 + 10,
            command: Command::Ping,
            response: Response::None,
            more: vec![],
        })
    }

    fn end(session: u64, at_s: u64) -> Event {
        Event::SessionEnd(SessionEnd {
            session,
            end_us: at_s * 1_000_000,
            reason: EndReason::Quit,
            login: Login::Ok,
            exchanges: 2,
        })
    }

    /// What a selector makes of a run: "S1", "X1.0", "E1", "-" (skipped), "stop".
    fn picks(cfg: &ReplayConfig, events: Vec<Event>) -> Vec<String> {
        let mut select = Selector::new(cfg, 0);
        let mut out = Vec::new();
        for ev in events {
            out.push(match select.pick(ev) {
                Pick::Start(s) => format!("S{}", s.session),
                Pick::Exchange(x) => format!("X{}.{}", x.session, x.seq),
                Pick::End(s) => format!("E{s}"),
                Pick::Skip => "-".into(),
                Pick::Stop => {
                    out.push("stop".into());
                    break;
                }
            });
        }
        out
    }

    fn two_sessions() -> Vec<Event> {
        vec![
            start(1, 0, 0),
            start(2, 0, 0),
            exchange(1, 0, 0, 1),
            exchange(2, 0, 0, 1),
            exchange(1, 1, 0, 2),
            exchange(2, 1, 0, 3),
            end(1, 4),
            end(2, 4),
        ]
    }

    #[test]
    fn a_shard_takes_the_sessions_whose_id_it_owns_and_their_exchanges() {
        let got = picks(&config((1, 2), None, None), two_sessions());
        assert_eq!(got, ["S1", "-", "X1.0", "-", "X1.1", "-", "E1", "-"]);
        let got = picks(&config((0, 2), None, None), two_sessions());
        assert_eq!(got, ["-", "S2", "-", "X2.0", "-", "X2.1", "-", "E2"]);
    }

    #[test]
    fn limits_stop_the_reading_at_the_first_exchange_beyond_them() {
        let got = picks(&config((0, 1), Some(3), None), two_sessions());
        assert_eq!(got, ["S1", "S2", "X1.0", "X2.0", "X1.1", "stop"]);
        // Events recorded more than 2 s after the first one are beyond --limit-duration.
        let got = picks(&config((0, 1), None, Some(2)), two_sessions());
        assert_eq!(got, ["S1", "S2", "X1.0", "X2.0", "X1.1", "stop"]);
    }

    #[test]
    fn a_replay_run_as_input_is_read_once_not_once_per_clone() {
        let events = vec![
            start(1, 0, 0),
            start(1, 1, 0),
            exchange(1, 0, 1, 1),
            exchange(1, 0, 0, 1),
            end(1, 2),
            // An exchange of a session that ended, or never started here, is not taken.
            exchange(1, 1, 0, 3),
            exchange(7, 0, 0, 3),
        ];
        let got = picks(&config((0, 1), None, None), events);
        assert_eq!(got, ["S1", "-", "-", "X1.0", "E1", "-", "-"]);
    }
}
