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
//!
//! A session that began before the recording may come with a [`Backfill`] (its prepared
//! statements and variables): it rides on the session's next exchange, so that its tasks
//! restore the session before sending that exchange, and costs the other exchanges nothing
//! but an empty pointer. Mid-stream sessions without a database, against a target that names
//! none, are refused ([`sessions_without_db`] before the replay, [`NoDatabase`] while it runs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use myrr_recording::{
    event_time, Backfill, Command, Event, Exchange, FormatError, Response, ResultDigest, RunReader,
    SessionStart,
};
use tokio::sync::mpsc;

use crate::handover::{self, Handover};
use crate::txn_rows::{TxnRows, View};
use crate::{pool, session, sync, ReplayConfig, ReplayError, Shared};

/// Closed loop: when no session takes an exchange for this long, the queue budget grows (the
/// queued exchanges belong to sessions blocked on a lock whose holder's next command is
/// further on).
const QUEUE_STALL: Duration = Duration::from_millis(10);

/// Queue budget the dispatcher takes at once.
const PERMIT_BATCH: usize = 256;

/// Every this many exchanges handed over, the batches not yet full are sent anyway.
const FLUSH_EVERY: usize = 1024;

/// How much of the recording the check before the replay reads for mid-stream sessions
/// without a database: the capture sees such a session at its first command, and the pools
/// that hold them are busy as the capture starts. Later ones stop the replay when met.
const DB_CHECK_WINDOW: Duration = Duration::from_secs(10);

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
    /// The AUTO_INCREMENT id the recorded statement generated (its OK's last_insert_id), 0
    /// for none: `--pin` has the replayed statement generate the same.
    pub(crate) insert_id: u64,
    /// The digest of the recorded answer's first result, when it had rows: a replayed
    /// answer whose rows differ keeps them (`row_samples`).
    pub(crate) rows_digest: Option<ResultDigest>,
    /// The recorded answer was an error (a replayed error is new only where it was not).
    pub(crate) recorded_err: bool,
    /// The recorded error's code, 0 for none; the rows a recorded OK said were affected.
    /// A replayed write whose outcome differs diverged (`crate::divergence`).
    pub(crate) recorded_code: u16,
    pub(crate) affected: u64,
    /// What the session held before the recording began, learnt since its previous exchange:
    /// restored before this one is sent.
    pub(crate) backfill: Option<Box<Backfill>>,
}

impl From<Exchange> for Recorded {
    fn from(x: Exchange) -> Self {
        Self {
            seq: x.seq,
            start_us: x.start_us,
            end_us: x.end_us,
            prepared_id: match &x.response {
                Response::Prepared(p) => Some(p.stmt_id),
                _ => None,
            },
            insert_id: match &x.response {
                Response::Ok(ok) => ok.last_insert_id,
                _ => 0,
            },
            rows_digest: match &x.response {
                Response::Rows(rs) => Some(rs.digest),
                _ => None,
            },
            recorded_err: matches!(x.response, Response::Err(_)),
            recorded_code: match &x.response {
                Response::Err(e) => e.code,
                _ => 0,
            },
            affected: match &x.response {
                Response::Ok(ok) => ok.affected_rows,
                _ => 0,
            },
            command: x.command,
            backfill: None,
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
    /// Registered commit point, view point (`--sync-views`), write (`--sync-writes`):
    /// released once answered.
    pub(crate) keys: sync::Keys,
    /// What it is to the commit order (`--sync`).
    pub(crate) class: sync::Class,
    /// Wait for the commits that ended before it started.
    pub(crate) wait: bool,
    /// A deadlock's victim: the other sessions' locking exchanges (session, seq) in flight
    /// across it in the recording, sent before it is (see `sync`).
    pub(crate) survivors: Option<Arc<[(u64, u64)]>>,
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
    Backfill(Backfill),
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
            Event::Backfill(b) if self.live.contains(&b.session) => Pick::Backfill(b),
            Event::SessionEnd(e) if self.live.remove(&e.session) => Pick::End(e.session),
            _ => Pick::Skip,
        }
    }
}

/// Mid-stream sessions whose database nobody knows, as the events go by: neither their
/// start nor a backfill before their first exchange names one, and neither the target URL nor
/// `--default-db` gives one. Inactive when a database is configured.
pub(crate) struct NoDatabase {
    active: bool,
    /// Sessions started without a database, not yet resolved: a description of each.
    open: HashMap<u64, String>,
    /// Sessions that reached an exchange without one.
    refused: u64,
    example: Option<String>,
}

impl NoDatabase {
    pub(crate) fn new(cfg: &ReplayConfig) -> Self {
        Self {
            active: cfg.default_db.is_none() && cfg.target.default_db().is_none(),
            open: HashMap::new(),
            refused: 0,
            example: None,
        }
    }

    fn start(&mut self, s: &SessionStart) {
        if self.active && s.mid_stream && s.db.is_none() {
            let text = |b: &Option<Vec<u8>>| {
                b.as_deref().map_or("unknown".into(), |b| {
                    String::from_utf8_lossy(b).into_owned()
                })
            };
            let client = if s.client.is_empty() { "?" } else { &s.client };
            let what = format!(
                "session {} from {client}, user {}",
                s.session,
                text(&s.user)
            );
            self.open.insert(s.session, what);
        }
    }

    /// A server's backfill names the session's database.
    fn backfill(&mut self, b: &Backfill) {
        if b.db.is_some() {
            self.open.remove(&b.session);
        }
    }

    /// The session's exchange: true when the session has no database (it is refused).
    fn exchange(&mut self, session: u64) -> bool {
        if self.open.is_empty() {
            return false;
        }
        match self.open.remove(&session) {
            Some(what) => {
                self.refused += 1;
                self.example.get_or_insert(what);
                true
            }
            None => false,
        }
    }

    fn end(&mut self, session: u64) {
        self.open.remove(&session);
    }

    /// The refusal, if any session was refused (or, `with_open`, is still unresolved).
    fn error(mut self, with_open: bool, when: &str) -> Option<ReplayError> {
        let mut sessions = self.refused;
        if with_open {
            sessions += self.open.len() as u64;
            if self.example.is_none() {
                self.example = self.open.into_iter().min().map(|(_, what)| what);
            }
        }
        (sessions > 0).then(|| ReplayError::NoDatabase {
            sessions,
            example: self.example.unwrap_or_default(),
            when: when.into(),
        })
    }
}

/// The check before the replay: mid-stream sessions without a database (see [`NoDatabase`])
/// among those this replay takes in the first [`DB_CHECK_WINDOW`] of the recording. Reading
/// the whole recording here would cost as much as the replay's own reading; the dispatcher
/// stops the replay on a later one.
pub(crate) fn sessions_without_db(cfg: &ReplayConfig, origin_us: u64) -> Option<ReplayError> {
    let mut check = NoDatabase::new(cfg);
    if !check.active {
        return None;
    }
    let horizon = origin_us.saturating_add(DB_CHECK_WINDOW.as_micros() as u64);
    let merged = RunReader::open(&cfg.inputs).ok()?;
    let mut select = Selector::new(cfg, origin_us);
    for ev in merged {
        if event_time(&ev) > horizon {
            break;
        }
        match select.pick(ev) {
            Pick::Stop => break,
            Pick::Start(s) => check.start(&s),
            Pick::Backfill(b) => check.backfill(&b),
            Pick::Exchange(x) => {
                check.exchange(x.session);
            }
            Pick::End(session) => check.end(session),
            Pick::Skip => {}
        }
    }
    check.error(true, "")
}

/// What the dispatcher leaves when the reading is over.
#[derive(Default)]
pub(crate) struct Dispatched {
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) pool: Option<pool::Pool>,
    /// Damage met on the way (a block whose checksum is right but whose contents do not
    /// decode: the pre-scan checks checksums only), which ended the reading there.
    pub(crate) damage: Option<FormatError>,
    /// A session the replay had to refuse ([`NoDatabase`]), which stopped it.
    pub(crate) refused: Option<ReplayError>,
}

/// Reads events in time order and hands each session's exchanges to its tasks (one per clone).
pub(crate) async fn dispatch(shared: Arc<Shared>, mut pool: pool::Pool) -> Dispatched {
    let cfg = &shared.config;
    let mut tasks = Vec::new();
    let mut merged = match RunReader::open(&cfg.inputs) {
        Ok(m) => m,
        Err(e) => {
            return Dispatched {
                tasks,
                pool: Some(pool),
                damage: Some(e),
                refused: None,
            }
        }
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
    // `--sync`: each session's last locking exchange handed over (seq, recorded start, end).
    let mut locking: HashMap<u64, (u64, u64, u64)> = HashMap::new();
    let mut select = Selector::new(cfg, pacing.recorded_origin_us());
    // Backfills not yet handed over, by session: each goes with the session's next exchange.
    let mut backfills: HashMap<u64, Box<Backfill>> = HashMap::new();
    let mut no_db = NoDatabase::new(cfg);
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
                no_db.start(&s);
                let mut txs = Vec::new();
                for clone in 0..cfg.scale {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let worker = session::Worker::new(shared.clone(), s.clone(), clone);
                    tasks.push(pool.spawn(session::supervised(worker, rx)));
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
            Pick::Backfill(b) => {
                no_db.backfill(&b);
                if handover.is_open(b.session) {
                    match backfills.entry(b.session) {
                        std::collections::hash_map::Entry::Occupied(mut e) => {
                            merge_backfill(e.get_mut(), b)
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(Box::new(b));
                        }
                    }
                }
            }
            Pick::Exchange(x) => {
                let session = x.session;
                if !handover.is_open(session) {
                    continue;
                }
                if no_db.exchange(session) {
                    // Met after the check before the replay: stop here, with the same error.
                    shared.halt();
                    break;
                }
                let class = match shared.order {
                    Some(_) => classifier.classify(&x),
                    None => sync::Class::default(),
                };
                let wait = pacing.waits_for_order(class);
                let survivors: Option<Arc<[(u64, u64)]>> = class.victim.then(|| {
                    locking
                        .iter()
                        .filter(|(&s, &(_, start, end))| {
                            s != session && start < x.start_us && end > x.end_us
                        })
                        .map(|(&s, &(seq, _, _))| (s, seq))
                        .collect()
                });
                if class.locks {
                    locking.insert(session, (x.seq, x.start_us, x.end_us));
                }
                let key = (x.end_us, x.session, x.seq);
                // Registered by the commit feeder, which reads ahead (see `sync`).
                let order = shared.order.as_ref();
                let keys = sync::Keys {
                    commit: class.commit.then_some(key),
                    view: order
                        .and_then(|o| o.views.as_ref())
                        .and_then(|_| class.view.then(|| sync::view_key(&x, class))),
                    write: order
                        .and_then(|o| o.writes.as_ref())
                        .and_then(|_| class.locks.then_some(key)),
                };
                let mut recorded = Recorded::from(x);
                if !backfills.is_empty() {
                    recorded.backfill = backfills.remove(&session);
                }
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
                    let work = Work {
                        x,
                        keys,
                        class,
                        wait,
                        survivors: survivors.clone(),
                    };
                    if !handover.hand(session, clone, work, &mut refused) {
                        break;
                    }
                }
                give_back(&shared, &mut refused);
            }
            Pick::End(session) => {
                handover.close(session, &mut refused);
                give_back(&shared, &mut refused);
                classifier.session_ended(session);
                locking.remove(&session);
                backfills.remove(&session);
                no_db.end(session);
            }
        }
    }
    // Every session still open gets what it has been handed.
    handover.send_all(&mut refused);
    give_back(&shared, &mut refused);
    Dispatched {
        tasks,
        pool: Some(pool),
        damage: merged.take_damage(),
        refused: no_db.error(
            false,
            &format!(
                ". Met during the replay, which stopped there (the check before it reads the \
                 recording's first {} s)",
                DB_CHECK_WINDOW.as_secs()
            ),
        ),
    }
}

/// A second backfill of a session before its next exchange (a statement inferred after the
/// server's view): both are restored.
pub(crate) fn merge_backfill(into: &mut Backfill, b: Backfill) {
    into.statements.extend(b.statements);
    into.variables.extend(b.variables);
    if b.db.is_some() {
        into.db = b.db;
    }
    if into.user.is_none() {
        into.user = b.user;
    }
}

/// Exchanges a session task did not take (it had ended): their queue permits come back, and
/// their commit points are released (they will never be answered).
fn give_back(shared: &Shared, refused: &mut Vec<handover::Refused>) {
    if refused.is_empty() {
        return;
    }
    shared.budget.add_permits(refused.len());
    for (clone, w) in refused.drain(..) {
        if let Some(order) = &shared.order {
            order.release(clone, w.keys);
        }
    }
}

/// `--sync`: reads the recordings ahead of the dispatcher and registers every commit point, so
/// an exchange can wait for commits that *started* after it but ended before it did.
pub(crate) async fn feed_commits(shared: Arc<Shared>) {
    let Some(all) = shared.order.as_ref() else {
        return;
    };
    let order = &all.commits;
    let cfg = &shared.config;
    if let Ok(merged) = RunReader::open(&cfg.inputs) {
        let mut classifier = sync::Classifier::default();
        let mut txn_rows = TxnRows::new(
            shared
                .divergence
                .as_ref()
                .and_then(|d| d.first())
                .and_then(|d| Some((d.keys.clone(), d.reach.clone()?))),
            cfg.sync_rows,
            cfg.sync_writes == crate::WriteOrder::Rows,
        );
        let register_view = |v: View| {
            if let Some(views) = &all.views {
                let rows = Arc::new(v.rows);
                for clone in 0..cfg.scale {
                    views.register(clone, v.key, v.start_us, rows.clone());
                }
            }
        };
        let mut ambiguity = sync::Ambiguity::default();
        let mut found = Vec::new();
        let mut select = Selector::new(cfg, shared.pacing.recorded_origin_us());
        for (n, ev) in merged.enumerate() {
            if shared.stopping() {
                break;
            }
            let at = event_time(&ev);
            match select.pick(ev) {
                Pick::Stop => break,
                Pick::Exchange(x) => {
                    let class = classifier.classify(&x);
                    let points = txn_rows.exchange(&x, class, sync::view_key(&x, class));
                    let key = (x.end_us, x.session, x.seq);
                    if let Some(rows) = points.commit {
                        for clone in 0..cfg.scale {
                            order.register(clone, key, x.start_us, rows.clone());
                        }
                    }
                    if let (Some(writes), Some(rows)) = (&all.writes, points.write) {
                        for clone in 0..cfg.scale {
                            writes.register(clone, key, x.start_us, rows.clone());
                        }
                    }
                    if let Some(v) = points.view {
                        register_view(v);
                    }
                    ambiguity.exchange(&x, class, &mut found);
                    if !found.is_empty() {
                        all.mark_ambiguous(&mut found, cfg.scale);
                    }
                }
                Pick::End(session) => {
                    classifier.session_ended(session);
                    if let Some(v) = txn_rows.session_ended(session) {
                        register_view(v);
                    }
                }
                Pick::Start(_) | Pick::Backfill(_) | Pick::Skip => {}
            }
            if n % 256 == 255 {
                order.read_to(at);
                if let Some(writes) = &all.writes {
                    writes.read_to(at);
                }
                if let Some(views) = &all.views {
                    for v in txn_rows.overdue(at) {
                        register_view(v);
                    }
                    // Not past a view point held until its transaction ends.
                    views.read_to(txn_rows.holding_since().map_or(at, |s| s.min(at)));
                }
                // Bounded read-ahead; and let the sessions run (one client thread).
                while order.pending() > sync::MAX_PENDING && !shared.stopping() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::task::yield_now().await;
            }
        }
        // Held when the reading stopped: every row.
        for v in txn_rows.overdue(u64::MAX) {
            register_view(v);
        }
    }
    for o in [Some(order), all.views.as_ref(), all.writes.as_ref()]
        .into_iter()
        .flatten()
    {
        o.read_to(u64::MAX);
    }
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

    fn backfill(session: u64, db: Option<&str>) -> Event {
        Event::Backfill(Backfill {
            session,
            db: db.map(|d| d.as_bytes().to_vec()),
            ..Backfill::default()
        })
    }

    /// A mid-stream session seen at `at_s`, its database unknown.
    fn mid_stream(session: u64, at_s: u64) -> Event {
        Event::SessionStart(SessionStart {
            session,
            start_us: at_s * 1_000_000,
            mid_stream: true,
            client: "10.1.1.1:5000".into(),
            ..SessionStart::default()
        })
    }

    /// What a selector makes of a run: "S1", "B1", "X1.0", "E1", "-" (skipped), "stop".
    fn picks(cfg: &ReplayConfig, events: Vec<Event>) -> Vec<String> {
        let mut select = Selector::new(cfg, 0);
        let mut out = Vec::new();
        for ev in events {
            out.push(match select.pick(ev) {
                Pick::Start(s) => format!("S{}", s.session),
                Pick::Backfill(b) => format!("B{}", b.session),
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

    #[test]
    fn a_backfill_is_taken_for_the_sessions_taken() {
        let events = vec![
            start(1, 0, 0),
            start(2, 0, 0),
            backfill(1, None),
            backfill(2, None),
            exchange(1, 0, 0, 1),
            end(1, 2),
            backfill(1, None),
        ];
        let got = picks(&config((1, 2), None, None), events);
        assert_eq!(got, ["S1", "-", "B1", "-", "X1.0", "E1", "-"]);
    }

    /// Applies a run's events to a check the way the dispatcher does; the refused sessions.
    fn refused(cfg: &ReplayConfig, events: Vec<Event>) -> Vec<u64> {
        let mut check = NoDatabase::new(cfg);
        let mut out = Vec::new();
        for ev in events {
            match ev {
                Event::SessionStart(s) => check.start(&s),
                Event::Backfill(b) => check.backfill(&b),
                Event::Exchange(x) if check.exchange(x.session) => out.push(x.session),
                Event::SessionEnd(e) => check.end(e.session),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn a_mid_stream_session_without_a_database_is_refused_at_its_first_exchange() {
        let cfg = config((0, 1), None, None);
        let events = vec![
            start(1, 0, 0),   // a handshake: not mid-stream
            mid_stream(2, 0), // no database: refused
            mid_stream(3, 0), // the server's backfill names its database
            backfill(3, Some("app")),
            mid_stream(4, 0), // an inferred backfill names none
            backfill(4, None),
            mid_stream(5, 0), // never sends anything
            exchange(1, 0, 0, 1),
            exchange(2, 0, 0, 1),
            exchange(2, 1, 0, 1), // refused once
            exchange(3, 0, 0, 1),
            exchange(4, 0, 0, 1),
            end(5, 2),
        ];
        assert_eq!(refused(&cfg, events.clone()), [2, 4]);
        let mut check = NoDatabase::new(&cfg);
        if let Event::SessionStart(s) = &events[1] {
            check.start(s);
        }
        match check.error(true, "") {
            Some(ReplayError::NoDatabase {
                sessions, example, ..
            }) => {
                assert_eq!(sessions, 1);
                assert_eq!(example, "session 2 from 10.1.1.1:5000, user unknown");
            }
            e => panic!("{e:?}"),
        }
        // A database from --default-db or the target URL: nothing to refuse.
        let with_default = ReplayConfig {
            default_db: Some("app".into()),
            ..config((0, 1), None, None)
        };
        assert_eq!(refused(&with_default, events.clone()), [] as [u64; 0]);
        let target = crate::Target::new("mysql://u@127.0.0.1:1/app", None, None).unwrap();
        let with_url = ReplayConfig::new(vec![], target, "out.myrr".into());
        assert_eq!(refused(&with_url, events), [] as [u64; 0]);
    }

    /// The check before the replay reads the recording's first `DB_CHECK_WINDOW`, through the
    /// dispatcher's selector (this shard's sessions only).
    #[test]
    fn the_check_before_the_replay_reads_the_first_seconds_of_this_shard() {
        use myrr_recording::{Header, RecordingWriter, RunKind};
        let dir = std::env::temp_dir().join(format!("myrr-dbcheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.myrr");
        let header = Header {
            kind: RunKind::Capture,
            tool_version: "test".into(),
            source: "test".into(),
            started_us: 0,
            options: vec![],
        };
        let late = DB_CHECK_WINDOW.as_secs() + 1;
        let events = [
            start(1, 0, 0),
            mid_stream(2, 1),
            mid_stream(3, 2),
            exchange(2, 0, 0, 3),
            mid_stream(5, late),
            exchange(5, 0, 0, late),
        ];
        let mut w = RecordingWriter::create(&path, &header).unwrap();
        for e in &events {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        let check = |shard| {
            let cfg = ReplayConfig {
                inputs: vec![path.clone()],
                ..config(shard, None, None)
            };
            match sessions_without_db(&cfg, 0) {
                Some(ReplayError::NoDatabase {
                    sessions, example, ..
                }) => Some((sessions, example)),
                None => None,
                Some(e) => panic!("{e}"),
            }
        };
        // Session 2 sent something, 3 has not yet: both counted; 5 is beyond the window.
        let (n, example) = check((0, 1)).unwrap();
        assert_eq!(n, 2);
        assert!(example.starts_with("session 2 "), "{example}");
        // Shard 1/2 holds sessions 1, 3 and 5; 0/2 only session 2.
        assert_eq!(check((1, 2)).map(|c| c.0), Some(1));
        let (n, example) = check((0, 2)).unwrap();
        assert_eq!((n, example.starts_with("session 2 ")), (1, true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_backfills_before_an_exchange_are_restored_together() {
        let stmt = |id| myrr_recording::KnownStatement {
            id,
            sql: b"SELECT ?".to_vec(),
            params: 1,
        };
        let mut server = Backfill {
            db: Some(b"app".to_vec()),
            variables: vec![(b"time_zone".to_vec(), b"+01:00".to_vec())],
            statements: vec![stmt(1)],
            ..Backfill::default()
        };
        let inferred = Backfill {
            statements: vec![stmt(2)],
            ..Backfill::default()
        };
        merge_backfill(&mut server, inferred);
        assert_eq!(server.statements, [stmt(1), stmt(2)]);
        assert_eq!(server.db.as_deref(), Some(&b"app"[..]));
        assert_eq!(server.variables.len(), 1);
    }
}
