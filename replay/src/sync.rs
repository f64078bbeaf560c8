//! `--sync commit|all`: keep the recorded order of commits across sessions.
//!
//! Sessions replayed each in their own send order can commit conflicting transactions in a
//! different order than production did (two sessions' UPDATEs of one row swap), and from then
//! on reads, duplicate keys and deadlocks differ. Under `--sync`, an exchange waits until every
//! *commit point* (an exchange that ended a transaction that wrote — by COMMIT, ROLLBACK or a
//! deadlock that rolled it back — or an autocommit write)
//! that had finished in the recording before the exchange itself finished has finished in the
//! replay. `commit` holds writes and commit points so; `all` also holds the reads that take
//! a view (reads then see what they saw). A read from a view its transaction took already
//! (InnoDB's REPEATABLE READ), and a command that reads no data, wait for no other session.
//!
//! Why "before it finished" rather than "before it started": a statement that waited for a row
//! lock in production finished after the commit that released it. Holding it only for commits
//! that ended before it *started* lets it take the lock first in the replay, and then the
//! earlier commit's session waits for the lock while this session's commit waits for that
//! commit: a deadlock. Ordered by recorded end times, an exchange only ever waits for ones that
//! ended earlier, so waits cannot form a cycle.
//!
//! The dispatcher reads the recording in start order and registers each commit point, keyed
//! by its recorded end, before handing it to its session. A commit that must precede an
//! exchange X may have *started* after X (a short autocommit write during X): so X's wait
//! also covers commit points dispatched after it, which is why the dispatcher reads ahead of
//! the replay (per-session queues) — the wait sees every commit that started before X's end
//! once the dispatcher has read that far; until then the earliest pending end is unknown and
//! X waits for the dispatcher too (see [`CommitOrder::dispatched_to`]). The earliest pending
//! end is kept with the waits registered by the end they wait up to; a commit answered wakes
//! only the waits it ends. A wait is bounded
//! (`sync_timeout`) so that whatever the candidate does differently, the replay goes on.
//!
//! The other direction (`--sync-views`, on by default): a read that had finished before a
//! commit did had not seen it (a commit becomes visible just before its answer leaves), so
//! under `--sync` a commit point also waits until every *view point* that ended before the
//! commit ended has been answered: an autocommit read with rows, or the first read with rows
//! of a transaction (InnoDB's REPEATABLE READ reads the whole transaction from the view its
//! first read took). Without it, a commit replayed early shows its rows to a read that did
//! not see them in production. Both directions thus follow recorded ends: a read waits for
//! the commits that ended before it, a commit for the reads that ended before it, and every
//! wait points to an earlier recorded end: no cycle among the waits. A view point may start
//! after the commit that waits for it (a short read during a long commit), so view points are
//! registered, keyed by recorded end, by the same read-ahead feeder as commit points, and a
//! commit's wait also waits for the feeder to have read that far. (Until session 15 a commit
//! waited only for the reads that ended before it *started*; a read that overlapped it then
//! ran in either order. Measured on sysbench oltp_read_write at 32 threads, two pairs of
//! replays each: answers not reproduced 2.05 and 2.09 % before, 1.70 and 1.63 % after; replay
//! time +4 %.) A view point blocked in the server (a locking read) gives way as a commit does.
//!
//! Row locks (`--sync-writes`, off by default): a write (or a locking read) also waits until
//! the other sessions' writes that ended before it started have been answered, so that locks
//! are taken in production's order. Without it, two open transactions' writes to one row or
//! gap ran in either order, and the replay deadlocked where production had not (on sysbench
//! oltp_read_write, a session's COMMIT waiting for another's while that one waited for its
//! lock). Writes that overlapped in production (one waited for the other's lock, the wire
//! cannot say which) still run in either order. Measured (benches/writes.sh, 4 pairs of
//! replays each): with views alone every pair gave production's answers (none counted with
//! `--reference`); with writes too, one pair in four had 16 differences, and the replay took
//! 4 % longer: it does not pay, and stays an option.
//!
//! Lock releases (`--sync-locks`, on by default): a commit releases its row locks just before
//! its answer leaves, so a statement that waited for one of them can be answered a few µs
//! *before* that commit: ordered by ends alone it went first in the replay, took the lock,
//! and the commit's session then waited for it while its own commit waited for that commit
//! (on the TPC-C-like bench the first of thousands of such fights). A write or locking read
//! answered while another session's commit point was in flight, at most
//! [`LOCK_RELEASE_SLACK_US`] (5 ms) before it, waits for that commit too (never past its own
//! session's next commit). Such a wait points to a later end, so waits can now form a
//! circle: a waiter whose chain of waited-for sessions leads back to itself gives way at
//! once ([`Order::waits_in_circle`]) instead of after `sync_timeout`. A deadlock's victim is no
//! commit point: it failed because the survivor's lock request was already waiting, and it
//! is the request that closes the circle that InnoDB picks when the two weigh the same. So
//! the survivor does not wait for it; the victim waits instead until the other sessions'
//! locking statements that were in flight across it in the recording have been sent
//! ([`Order::sent`], at most [`VICTIM_WAIT`]), and the candidate then finds the deadlock
//! production had, with the same victim.
//!
//! Pairs whose recorded intervals overlap have no recorded order: [`Ambiguity`] finds the view
//! points that overlapped a commit point of another session, so that the run labels them (and
//! the reads of the same transaction after them) `order-ambiguous`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myrr_recording::{Command, Exchange, Response};
use tokio::sync::{watch, Notify};

use crate::footprint::Rows;

use crate::readonly::{is_read_only, takes_locks};

/// Which exchanges wait for earlier commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Each session in its own order only.
    #[default]
    None,
    /// Writes and commit points wait for the commits that finished before they did.
    Commit,
    /// Writes, commit points and the reads that take a view wait for the commits that
    /// finished before they did.
    All,
}

/// `--sync-writes`: which earlier writes of other sessions a write waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteOrder {
    /// None (commits order the writes).
    Off,
    /// Those that ended before it started in the recording and may have written a row it
    /// writes (told by the statements' texts and the candidate's primary keys, as
    /// `--sync-rows` tells them): each row is written in production's order.
    #[default]
    Rows,
    /// Every one that ended before it started in the recording.
    All,
}

pub(crate) const SERVER_STATUS_IN_TRANS: u16 = 0x0001;

const ER_LOCK_DEADLOCK: u16 = 1213;

/// A commit point: (recorded end µs, session, seq).
pub(crate) type CommitKey = (u64, u64, u64);

/// An exchange's registered points, released once it is answered (or never will be).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keys {
    pub(crate) commit: Option<CommitKey>,
    pub(crate) view: Option<CommitKey>,
    pub(crate) write: Option<CommitKey>,
}

/// Most commit points registered ahead of the replay (memory stays bounded).
pub(crate) const MAX_PENDING: usize = 1 << 20;

/// A command in the server this long (plus twice what it took in production) is taken to be
/// blocked on a lock, when the candidate's lock waits are not known.
const STUCK_AFTER: Duration = Duration::from_millis(20);

/// When they are known: a command in the server this long (plus twice …) and in no lock
/// wait the candidate shows is taken to be stuck all the same.
const STUCK_LONG: Duration = Duration::from_secs(1);

/// The replay's `--sync` state: the recorded commit order, and since when each session's
/// current command has been in the server (a wait for a commit whose session is blocked in
/// the candidate, on a lock this replay took in another order, gives way at once).
pub(crate) struct Order {
    pub(crate) commits: CommitOrder,
    /// `--sync-views`: view points not answered yet (registered by the commit feeder, as
    /// commit points are).
    pub(crate) views: Option<CommitOrder>,
    /// `--sync-writes`: writes and locking reads not answered yet (registered by the commit
    /// feeder, as commit points are, with the rows each may write).
    pub(crate) writes: Option<CommitOrder>,
    /// (session, clone) → since when its current command is in the server, and how long it
    /// took in production.
    in_server: Mutex<HashMap<(u64, u32), (Instant, Duration)>>,
    /// (session, clone) → the seq of the last exchange it sent.
    sent: Mutex<HashMap<(u64, u32), u64>>,
    /// `--sync-reread`: view points whose answers a session holds back, to read the view
    /// again past commits it overlapped (registered when first answered, done when settled).
    /// A commit that started after such a view point ended waits for it: production's view
    /// did not see that commit, and a re-read round must not either.
    pub(crate) held: Option<CommitOrder>,
    /// `--sync-lock-waits`: the candidate's lock waits, asked by a monitor.
    pub(crate) lock_waits: Option<Arc<crate::locks::LockWaits>>,
    /// (session, clone) → the session whose commit it waits for now.
    waiting: Mutex<HashMap<(u64, u32), u64>>,
    /// (session, clone) → the session it last gave way to, blocked in the server by its
    /// locks, and since when that one's command is in the server.
    gave_way: Mutex<HashMap<(u64, u32), (u64, Instant)>>,
    /// `--sync-locks`.
    pub(crate) locks: bool,
    /// View points found order-ambiguous by the feeder ([`Ambiguity`]): (session, seq) →
    /// (clones that have not asked yet, the recorded ends of the commits it overlapped).
    ambiguous: Mutex<HashMap<(u64, u64), Overlapped>>,
    /// View points a commit went ahead of (its wait for them gave way): (session, seq,
    /// clone). They, and the reads from their view, may have seen that commit.
    displaced: Mutex<HashSet<(u64, u64, u32)>>,
    /// Every row (what an exchange waits for when its rows are not told).
    pub(crate) every_row: Arc<Rows>,
}

impl Order {
    pub(crate) fn new(
        clones: u32,
        views: bool,
        writes: bool,
        locks: bool,
        lock_waits: bool,
        held: bool,
    ) -> Self {
        Self {
            commits: CommitOrder::new(clones),
            // Registered by the commit feeder, which reads ahead.
            views: views.then(|| CommitOrder::new(clones)),
            writes: writes.then(|| CommitOrder::new(clones)),
            held: held.then(|| {
                // Registered by the sessions themselves, as they answer: nothing to read.
                let held = CommitOrder::new(clones);
                held.read_to(u64::MAX);
                held
            }),
            in_server: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            lock_waits: lock_waits.then(Default::default),
            waiting: Mutex::new(HashMap::new()),
            gave_way: Mutex::new(HashMap::new()),
            locks,
            ambiguous: Mutex::new(HashMap::new()),
            displaced: Mutex::new(HashSet::new()),
            every_row: Arc::new(Rows::everything()),
        }
    }

    /// A commit that ended at `end_us` (recorded), writing `rows`, went ahead of the view
    /// points still pending that ended before it and read them: they are out of order.
    pub(crate) fn displace(&self, clone: u32, end_us: u64, rows: &Rows) {
        let Some(views) = &self.views else {
            return;
        };
        let keys = views.pending_before(clone, end_us, rows);
        if let Ok(mut d) = self.displaced.lock() {
            if d.len() < MAX_PENDING {
                d.extend(
                    keys.into_iter()
                        .map(|(_, session, seq)| (session, seq, clone)),
                );
            }
        }
    }

    /// Whether a commit went ahead of view point (session, seq) in `clone`.
    pub(crate) fn displaced(&self, session: u64, seq: u64, clone: u32) -> bool {
        self.displaced
            .lock()
            .is_ok_and(|d| d.contains(&(session, seq, clone)))
    }

    /// An exchange's commit point and view point are answered (or never will be).
    pub(crate) fn release(&self, clone: u32, keys: Keys) {
        if let Some(key) = keys.commit {
            self.commits.done(clone, key);
        }
        if let (Some(views), Some(key)) = (&self.views, keys.view) {
            views.done(clone, key);
        }
        if let (Some(writes), Some(key)) = (&self.writes, keys.write) {
            writes.done(clone, key);
        }
    }

    /// A session task ended abruptly (see `session::supervised`): every point of it registered
    /// in `clone` is released, as if answered.
    pub(crate) fn session_lost(&self, session: u64, clone: u32) {
        for order in [
            Some(&self.commits),
            self.views.as_ref(),
            self.writes.as_ref(),
            self.held.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let state = order.clone_state(clone);
            let keys: Vec<CommitKey> = state
                .keys
                .lock()
                .map(|k| k.keys().filter(|k| k.1 == session).copied().collect())
                .unwrap_or_default();
            for key in keys {
                state.done(key);
            }
        }
        self.done_waiting(session, clone);
    }

    /// The feeder found these view points order-ambiguous: (session, seq, a commit point it
    /// overlapped).
    pub(crate) fn mark_ambiguous(&self, found: &mut Vec<(u64, u64, Overlap)>, clones: u32) {
        if let Ok(mut m) = self.ambiguous.lock() {
            for (session, seq, commit) in found.drain(..) {
                let ends = &mut m.entry((session, seq)).or_insert((clones.max(1), vec![])).1;
                if let Err(at) = ends.binary_search(&commit) {
                    ends.insert(at, commit);
                    // Bounded (a long report overlaps thousands): the earliest and the last.
                    if ends.len() > AMBIGUOUS_ENDS_KEPT {
                        ends.remove(AMBIGUOUS_ENDS_KEPT - 1);
                    }
                }
            }
        }
    }

    /// Whether the view point (session, seq), which ended at `end_us` in the recording, was
    /// order-ambiguous: then the commit points it overlapped, by recorded end.
    /// Its answer is final once the feeder has read past its end: waits for that, at most
    /// `timeout` (then: as far as known).
    pub(crate) async fn ambiguous(
        &self,
        session: u64,
        seq: u64,
        end_us: u64,
        timeout: Duration,
    ) -> Option<Vec<Overlap>> {
        self.commits.wait_read(end_us, timeout).await;
        let mut m = self.ambiguous.lock().ok()?;
        match m.get_mut(&(session, seq)) {
            Some((left, ends)) if *left > 1 => {
                *left -= 1;
                Some(ends.clone())
            }
            Some(_) => m.remove(&(session, seq)).map(|(_, ends)| ends),
            None => None,
        }
    }

    /// A session's command entered the server (`Some`: it took this long in the recording),
    /// or left it (`None`).
    pub(crate) fn in_server(&self, session: u64, clone: u32, recorded: Option<Duration>) {
        if let Ok(mut m) = self.in_server.lock() {
            match recorded {
                // A statement that was long in production (a report, a SLEEP) is not stuck
                // for being long here.
                Some(d) => m.insert((session, clone), (Instant::now(), d)),
                None => m.remove(&(session, clone)),
            };
        }
    }

    /// `session` (in `clone`) sends its exchange `seq`.
    pub(crate) fn sending(&self, session: u64, clone: u32, seq: u64) {
        if let Ok(mut m) = self.sent.lock() {
            m.insert((session, clone), seq);
        }
    }

    /// A deadlock's victim waits until each of `survivors` (session, seq) has been sent in
    /// `clone` and is waiting in the server (in it for [`SURVIVOR_IN_SERVER`], or answered
    /// already), so that its lock request waits when the victim's arrives; at most
    /// [`VICTIM_WAIT`]. False: one was not there in time.
    pub(crate) async fn sent(&self, clone: u32, survivors: &[(u64, u64)]) -> bool {
        let deadline = tokio::time::Instant::now() + VICTIM_WAIT;
        loop {
            let all = self.sent.lock().is_ok_and(|m| {
                survivors.iter().all(|&(s, q)| match m.get(&(s, clone)) {
                    Some(&sent) if sent > q => true,
                    Some(&sent) if sent == q => self.in_server.lock().is_ok_and(|i| {
                        i.get(&(s, clone))
                            .is_none_or(|(entered, _)| entered.elapsed() >= SURVIVOR_IN_SERVER)
                    }),
                    _ => false,
                })
            });
            if all {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// `session` (in `clone`) waits for `blocker`'s commit: whether that wait closes a
    /// circle of waits back to `session` (each waiting for the next's commit, none in the
    /// server: nothing would ever move). Waits form no circle when they follow recorded ends,
    /// but a statement waiting for the commit that released its lock waits for a later end.
    pub(crate) fn waits_in_circle(&self, session: u64, clone: u32, blocker: u64) -> bool {
        let Ok(mut w) = self.waiting.lock() else {
            return false;
        };
        w.insert((session, clone), blocker);
        let mut at = blocker;
        for _ in 0..w.len() {
            if at == session {
                return true;
            }
            match w.get(&(at, clone)) {
                Some(&next) => at = next,
                None => return false,
            }
        }
        false
    }

    /// `session`'s transaction ended (or it ran outside one): it holds no lock that a
    /// session it gave way to may wait for, so it no longer goes on at once (see
    /// [`Order::gives_way`]). Kept past the transaction, a session went on giving way in every
    /// later transaction while the one it once gave way to stayed blocked in one command (on
    /// the TPC-C-like bench: bursts of thousands of out-of-order statements, each of them
    /// free to take locks out of order and block others in turn).
    pub(crate) fn txn_ended(&self, session: u64, clone: u32) {
        if let Ok(mut g) = self.gave_way.lock() {
            g.remove(&(session, clone));
        }
    }

    /// `session`'s wait is over.
    pub(crate) fn done_waiting(&self, session: u64, clone: u32) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&(session, clone));
        }
    }

    /// `session` (in `clone`) waits for `blocker`'s commit: whether it should stop waiting
    /// and go ahead, because the waits close a circle that nothing would break. Order waits
    /// alone ([`Order::waits_in_circle`]); with the candidate's lock waits known (see `locks`),
    /// when they and the order waits lead from `blocker`, in the server, back to `session`;
    /// without them, when `blocker`'s command has been in the server far longer than its
    /// answer took in production ([`STUCK_AFTER`] more than twice as long: blocked on a lock,
    /// most likely).
    ///
    /// `at_once`, before the waiter has waited at all: only when it gave way to `blocker`
    /// before, and `blocker` is still blocked in the same command (then this session holds
    /// what `blocker` waits for, and goes on giving way until its transaction frees it: one
    /// [`STUCK_CHECK`] per statement made such a transaction crawl).
    pub(crate) fn gives_way(&self, session: u64, clone: u32, blocker: u64, at_once: bool) -> bool {
        let Some((entered, recorded)) = self
            .in_server
            .lock()
            .ok()
            .and_then(|m| m.get(&(blocker, clone)).copied())
        else {
            return !at_once && self.waits_in_circle(session, clone, blocker);
        };
        if at_once {
            return self
                .gave_way
                .lock()
                .is_ok_and(|g| g.get(&(session, clone)) == Some(&(blocker, entered)));
        }
        if self.waits_in_circle(session, clone, blocker) {
            return true;
        }
        let inside = entered.elapsed();
        let asking = self
            .lock_waits
            .as_ref()
            .filter(|l| l.working.load(Ordering::Relaxed));
        let Some(l) = asking else {
            return inside > STUCK_AFTER + 2 * recorded;
        };
        // Not in a lock wait the candidate shows (a metadata lock, a stalled server): the
        // time guess, later.
        if inside > STUCK_LONG + 2 * recorded {
            return true;
        }
        let suspect = if l.current.load(Ordering::Relaxed) {
            crate::locks::SUSPECT_AFTER
        } else {
            crate::locks::SUSPECT_AFTER + 2 * recorded
        };
        if inside < suspect {
            return false;
        }
        let Some(waits) = l.ask(entered + suspect) else {
            return false;
        };
        let order: HashMap<_, _> = self.waiting.lock().map_or_else(
            |_| HashMap::new(),
            |w| {
                w.iter()
                    .filter(|((_, c), _)| *c == clone)
                    .map(|(&t, &b)| (t, (b, clone)))
                    .collect()
            },
        );
        let (from, to) = ((blocker, clone), (session, clone));
        // The holders the candidate named; else, once per answer, the guessed ones too.
        let guessed = || {
            let Ok(in_server) = self.in_server.lock() else {
                return false;
            };
            let lock = waits.edges(|t| in_server.contains_key(&t));
            crate::locks::leads_back(from, to, &lock, &order)
        };
        let r = crate::locks::leads_back(from, to, &waits.edges, &order)
            || (!waits.maybe.is_empty() && guessed() && l.guess(waits.at));
        if r {
            if let Ok(mut g) = self.gave_way.lock() {
                g.insert((session, clone), (blocker, entered));
            }
        }
        r
    }
}

/// Commit points (or view points) read and not yet answered, per clone (clones are
/// independent copies of the workload and are not ordered against each other).
pub(crate) struct CommitOrder {
    clones: Vec<Pending>,
}

/// Points scanned at most for one wait's check: past that many pending points before its end,
/// a wait counts the rest as points it must wait for (it waits longer, never less).
const SCAN_LIMIT: usize = 4096;

/// A registered point: its recorded start, and the rows its transaction may touch (for a
/// commit point its writes and locking reads; for a view point its transaction's statements
/// from the view on; every row unless `--sync-rows`).
struct Point {
    start_us: u64,
    rows: Arc<Rows>,
}

struct Pending {
    /// Pending points.
    keys: Mutex<BTreeMap<CommitKey, Point>>,
    /// Every point that started before this recorded instant is registered.
    read_to: watch::Sender<u64>,
    /// Sessions in [`CommitOrder::wait`], by the recorded end they wait up to (and a number
    /// that tells two waits for one end apart), with the rows they wait for. An update wakes
    /// only those whose wait is over: waking every waiter on every commit (a watch channel's
    /// way) woke each session thread several times per commit, and each wake-up of another
    /// thread costs both sides a context switch.
    waiters: Mutex<BTreeMap<(u64, u64), WaitFor>>,
    next_waiter: AtomicU64,
}

/// A registered wait: what it waits for, and how to wake it.
struct WaitFor {
    rows: Arc<Rows>,
    /// Only the points that started before this (recorded µs).
    started_before: u64,
    notify: Arc<Notify>,
}

/// What a wait waits for: the points that ended before `until`, started before
/// `started_before` and may share a row with `rows`.
#[derive(Clone, Copy)]
struct Span<'a> {
    until: u64,
    started_before: u64,
    rows: &'a Rows,
}

/// The first point in the way of a wait.
fn first_in_way(keys: &BTreeMap<CommitKey, Point>, span: Span<'_>) -> Option<CommitKey> {
    keys.range(..(span.until, 0, 0))
        .enumerate()
        .find(|(i, (_, p))| {
            *i >= SCAN_LIMIT || p.start_us < span.started_before && p.rows.meets(span.rows)
        })
        .map(|(_, (k, _))| *k)
}

impl Pending {
    fn new() -> Self {
        Self {
            keys: Mutex::new(BTreeMap::new()),
            read_to: watch::Sender::new(0),
            waiters: Mutex::new(BTreeMap::new()),
            next_waiter: AtomicU64::new(0),
        }
    }

    /// Whether a wait is over.
    fn ready(&self, span: Span<'_>) -> bool {
        let read_to = *self.read_to.borrow();
        read_to >= span.until
            && self
                .keys
                .lock()
                .map_or(true, |k| first_in_way(&k, span).is_none())
    }

    /// Wakes the waits `affected` names that are over.
    fn wake(&self, affected: impl Fn(u64, &Rows) -> bool) {
        let read_to = *self.read_to.borrow();
        let (Ok(keys), Ok(mut waiters)) = (self.keys.lock(), self.waiters.lock()) else {
            return;
        };
        // Waits for every row are over in the order of their ends: past the first that is
        // not, none is (without `--sync-rows`, every wait is one).
        let mut every_row_blocked = false;
        waiters.retain(|&(until, _), w| {
            let every_row = w.rows.is_everything() && w.started_before == u64::MAX;
            let span = Span {
                until,
                started_before: w.started_before,
                rows: &w.rows,
            };
            let over = until <= read_to
                && !(every_row && every_row_blocked)
                && affected(until, &w.rows)
                && first_in_way(&keys, span).is_none();
            if over {
                w.notify.notify_one();
            } else if every_row && until <= read_to {
                // Registered and not over: a point before its end is in its way.
                every_row_blocked = true;
            }
            !over
        });
    }

    fn done(&self, key: CommitKey) {
        let Some(point) = self.keys.lock().ok().and_then(|mut k| k.remove(&key)) else {
            return;
        };
        self.wake(|until, rows| until > key.0 && rows.meets(&point.rows));
    }

    fn read_to(&self, us: u64) {
        let mut before = 0;
        let moved = self.read_to.send_if_modified(|r| {
            before = *r;
            *r = (*r).max(us);
            *r != before
        });
        if moved {
            self.wake(|until, _| until > before);
        }
    }

    /// Registers a wait: woken (a permit stored) once every point in its way is answered.
    /// Deregistered when dropped.
    fn waiter(&self, span: Span<'_>, rows: &Arc<Rows>) -> Waiter<'_> {
        let key = (span.until, self.next_waiter.fetch_add(1, Ordering::Relaxed));
        let notify = Arc::new(Notify::new());
        if let Ok(mut w) = self.waiters.lock() {
            let started_before = span.started_before;
            let rows = rows.clone();
            let notify = notify.clone();
            w.insert(
                key,
                WaitFor {
                    rows,
                    started_before,
                    notify,
                },
            );
        }
        Waiter {
            pending: self,
            key,
            notify,
        }
    }
}

/// One registered wait (see [`Pending::waiter`]).
struct Waiter<'a> {
    pending: &'a Pending,
    key: (u64, u64),
    notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.pending.waiters.lock() {
            w.remove(&self.key);
        }
    }
}

impl CommitOrder {
    pub(crate) fn new(clones: u32) -> Self {
        Self {
            clones: (0..clones.max(1)).map(|_| Pending::new()).collect(),
        }
    }

    fn clone_state(&self, clone: u32) -> &Pending {
        &self.clones[(clone as usize).min(self.clones.len() - 1)]
    }

    /// A point that started at `start_us` (recorded), whose transaction may touch `rows`, is
    /// pending.
    pub(crate) fn register(&self, clone: u32, key: CommitKey, start_us: u64, rows: Arc<Rows>) {
        if let Ok(mut k) = self.clone_state(clone).keys.lock() {
            k.insert(key, Point { start_us, rows });
        }
    }

    pub(crate) fn done(&self, clone: u32, key: CommitKey) {
        self.clone_state(clone).done(key);
    }

    /// The rows a pending point was registered with.
    pub(crate) fn rows(&self, clone: u32, key: CommitKey) -> Option<Arc<Rows>> {
        let keys = self.clone_state(clone).keys.lock().ok()?;
        keys.get(&key).map(|p| p.rows.clone())
    }

    /// The reader has registered every commit point that started before `us`.
    pub(crate) fn read_to(&self, us: u64) {
        for p in &self.clones {
            p.read_to(us);
        }
    }

    /// Waits until the reader has registered every commit point that started before
    /// `until_us`, at most `timeout`.
    pub(crate) async fn wait_read(&self, until_us: u64, timeout: Duration) {
        let mut rx = self.clones[0].read_to.subscribe();
        if *rx.borrow() >= until_us {
            return;
        }
        let _ = tokio::time::timeout(timeout, rx.wait_for(|r| *r >= until_us)).await;
    }

    /// The points of `clone` not answered that ended before `until_us` and may share a row
    /// with `rows`.
    pub(crate) fn pending_before(&self, clone: u32, until_us: u64, rows: &Rows) -> Vec<CommitKey> {
        self.clone_state(clone).keys.lock().map_or(Vec::new(), |k| {
            k.range(..(until_us, 0, 0))
                .filter(|(_, p)| p.rows.meets(rows))
                .map(|(k, _)| *k)
                .collect()
        })
    }

    /// Whether a point of another session than `session` that ended in `from_us..until_us`
    /// (recorded) is still pending in `clone`.
    pub(crate) fn pending_between(
        &self,
        clone: u32,
        session: u64,
        from_us: u64,
        until_us: u64,
    ) -> bool {
        self.clone_state(clone).keys.lock().is_ok_and(|k| {
            k.range((from_us, 0, 0)..(until_us, 0, 0))
                .any(|(k, _)| k.1 != session)
        })
    }

    /// `--sync-locks`: the end a write or locking read of `session` that ended at `end_us`
    /// (recorded) should wait up to. A commit releases its locks just before its answer
    /// leaves, and a statement that waited for one of them can be answered first, by a few
    /// µs: on the wire it then ended before the commit that let it run, and ordered by ends
    /// alone it would take the lock first in the replay. So when another session's commit
    /// point was in flight as it ended, and ended at most [`LOCK_RELEASE_SLACK_US`] later, the
    /// statement waits for that commit too. Call once the reader has registered every point
    /// that started before `end_us`.
    pub(crate) fn released_by(&self, clone: u32, session: u64, end_us: u64) -> u64 {
        let Ok(keys) = self.clone_state(clone).keys.lock() else {
            return end_us;
        };
        let mut until = end_us;
        for (k, p) in keys.range((end_us, 0, 0)..(end_us + LOCK_RELEASE_SLACK_US, 0, 0)) {
            if k.1 == session {
                // Its own session's next commit: never waited for.
                break;
            }
            if p.start_us < end_us {
                until = k.0 + 1;
            }
        }
        until
    }

    /// `until_us`, or the recorded end of `session`'s own next commit point after `from_us`
    /// if that comes first (a session never waits for its own commit).
    pub(crate) fn until_own(&self, clone: u32, session: u64, from_us: u64, until_us: u64) -> u64 {
        let Ok(keys) = self.clone_state(clone).keys.lock() else {
            return from_us;
        };
        keys.range((from_us.min(until_us), 0, 0)..(until_us, 0, 0))
            .find(|(k, _)| k.1 == session)
            .map_or(until_us, |(k, _)| k.0)
    }

    /// Whether a write of `session` answered at `end_us` (recorded) is about to run before
    /// another session's commit point that was in flight as it was answered, and that it does
    /// not wait for: one answered later than [`LOCK_RELEASE_SLACK_US`] after it (InnoDB
    /// releases a transaction's locks before its COMMIT's log flush and answer, so production
    /// may well have run the write after that transaction's writes), within
    /// [`OVERTAKE_WINDOW_US`]. Such a write may overtake the writes of that transaction.
    pub(crate) fn overtakes(&self, clone: u32, session: u64, end_us: u64) -> bool {
        let Ok(keys) = self.clone_state(clone).keys.lock() else {
            return false;
        };
        keys.range((end_us, 0, 0)..(end_us + OVERTAKE_WINDOW_US, 0, 0))
            .any(|(k, p)| k.1 != session && p.start_us < end_us)
    }

    /// Commit points registered and not answered (largest over clones).
    pub(crate) fn pending(&self) -> usize {
        self.clones
            .iter()
            .map(|p| p.keys.lock().map_or(0, |k| k.len()))
            .max()
            .unwrap_or(0)
    }

    /// Waits until every commit point that ended before `until_us` (recorded) and may share a
    /// row with `rows` has been answered, for at most `timeout`. `stuck(session, at_once)`
    /// tells whether a session has been inside the server for long: when the commit waited
    /// for belongs to such a session, it is most likely blocked on a lock this session holds
    /// (the candidate locked differently than production did), and waiting longer would only
    /// deadlock. Asked once before waiting at all (`at_once`), then every [`STUCK_CHECK`].
    pub(crate) async fn wait(
        &self,
        clone: u32,
        until_us: u64,
        rows: &Arc<Rows>,
        timeout: Duration,
        stuck: impl Fn(u64, bool) -> bool,
    ) -> Waited {
        self.wait_started_before(clone, until_us, u64::MAX, rows, timeout, stuck)
            .await
    }

    /// [`CommitOrder::wait`], for only the points that started before `started_before`
    /// (recorded).
    pub(crate) async fn wait_started_before(
        &self,
        clone: u32,
        until_us: u64,
        started_before: u64,
        rows: &Arc<Rows>,
        timeout: Duration,
        stuck: impl Fn(u64, bool) -> bool,
    ) -> Waited {
        let p = self.clone_state(clone);
        let span = Span {
            until: until_us,
            started_before,
            rows,
        };
        if p.ready(span) {
            return Waited::Ready;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let blocked = |at_once| {
            let first = p.keys.lock().ok().and_then(|k| first_in_way(&k, span));
            first.is_some_and(|k| stuck(k.1, at_once))
        };
        if blocked(true) {
            return Waited::Cycle;
        }
        // Registered before the state is read again: an update in between finds it.
        let waiter = p.waiter(span, rows);
        if p.ready(span) {
            return Waited::Ready;
        }
        loop {
            let step = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(STUCK_CHECK);
            if tokio::time::timeout(step, waiter.notify.notified())
                .await
                .is_ok()
            {
                return Waited::Ready;
            }
            if tokio::time::Instant::now() >= deadline {
                return Waited::TimedOut;
            }
            if blocked(false) {
                return Waited::Cycle;
            }
        }
    }
}

/// The key a view point is registered by, for the commits that wait for it: its recorded
/// end; for a locking read, [`LOCK_RELEASE_SLACK_US`] later. A locking read answered just
/// before a commit ended may have waited for that commit's lock (`--sync-locks` then holds it
/// for that commit): the commit must not wait for it in turn. The commits it did not wait
/// for, its locks order anyway.
pub(crate) fn view_key(x: &Exchange, class: Class) -> CommitKey {
    let slack = if class.locks {
        LOCK_RELEASE_SLACK_US
    } else {
        0
    };
    (x.end_us.saturating_add(slack), x.session, x.seq)
}

/// How much later than a statement's answer the commit that released its lock can be
/// answered (see [`CommitOrder::released_by`]): InnoDB releases a transaction's locks before
/// its COMMIT's log flush, and the flush under load takes milliseconds (sysbench's 99.9th
/// percentile COMMIT: 2.6 ms). Was 200 µs until session 18: on the TPC-C-like capture 3 of 4
/// pairs of replays then counted a difference (payments' `w_ytd = w_ytd + ?` run in another
/// order, whose DECIMAL rounding warnings differ), none of 4 with 5 ms.
pub(crate) const LOCK_RELEASE_SLACK_US: u64 = 5_000;

/// How much later than a write's answer a commit that was in flight as it was answered may
/// be answered, for the write to count as possibly overtaking it (see
/// [`CommitOrder::overtakes`]) when it does not wait for it (beyond
/// [`LOCK_RELEASE_SLACK_US`]).
pub(crate) const OVERTAKE_WINDOW_US: u64 = 20_000;

/// How long a deadlock's survivor is in the server before its victim is sent (its request
/// has reached the lock it waits for).
const SURVIVOR_IN_SERVER: Duration = Duration::from_millis(5);

/// Longest a deadlock's victim waits for its survivors to be sent.
pub(crate) const VICTIM_WAIT: Duration = Duration::from_millis(200);

/// How often a waiter checks whether the session it waits for is stuck in the server.
const STUCK_CHECK: Duration = Duration::from_millis(2);

/// How a wait for earlier commits ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    /// The session of the earlier commit is blocked in the server.
    Cycle,
}

/// What an exchange is to the commit order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Class {
    /// It can write.
    pub(crate) write: bool,
    /// It can write or takes row locks (a locking read): ordered among writes.
    pub(crate) locks: bool,
    /// It ended a transaction that wrote (or was an autocommit write).
    pub(crate) commit: bool,
    /// A read with rows that took a view: autocommit, or its transaction's first.
    pub(crate) view: bool,
    /// A read with rows inside a transaction whose view an earlier read took.
    pub(crate) in_view: bool,
    /// A deadlock's victim: it ends its transaction, but is no commit point (see
    /// [`Order::sent`]).
    pub(crate) victim: bool,
    /// It ended its transaction (or ran outside one).
    pub(crate) ended: bool,
}

/// Finds commit points and view points in recorded exchanges, in the order the dispatcher
/// reads them.
#[derive(Default)]
pub(crate) struct Classifier {
    /// (session, recorded statement id) → the statement can write, it takes row locks.
    writes: HashMap<(u64, u32), (bool, bool)>,
    /// Sessions with a transaction that wrote and has not ended.
    dirty: HashSet<u64>,
    /// Sessions in a transaction whose view a read has taken.
    viewed: HashSet<u64>,
}

impl Classifier {
    pub(crate) fn classify(&mut self, x: &Exchange) -> Class {
        let kind = |sql: &[u8]| {
            let write = !is_read_only(sql);
            (write, write || takes_locks(sql))
        };
        let (statement, (write, locks)) = match &x.command {
            Command::Query { sql, .. } => (true, kind(sql)),
            Command::Execute { stmt_id, .. } => (
                true,
                self.writes
                    .get(&(x.session, *stmt_id))
                    .copied()
                    .unwrap_or((false, false)),
            ),
            Command::Prepare { sql } => {
                if let Response::Prepared(p) = &x.response {
                    self.writes.insert((x.session, p.stmt_id), kind(sql));
                }
                (false, (false, false))
            }
            _ => (false, (false, false)),
        };
        if write {
            self.dirty.insert(x.session);
        }
        let status = match x.more.last().unwrap_or(&x.response) {
            Response::Ok(ok) => Some(ok.status),
            Response::Rows(rs) => Some(rs.status),
            _ => None,
        };
        let ended = match (status, &x.response) {
            (Some(s), _) => s & SERVER_STATUS_IN_TRANS == 0,
            // A deadlock rolls the whole transaction back: its locks are released here.
            (None, Response::Err(e)) => e.code == ER_LOCK_DEADLOCK,
            _ => false,
        };
        let victim = matches!(&x.response, Response::Err(e) if e.code == ER_LOCK_DEADLOCK);
        let commit = ended && self.dirty.remove(&x.session) && !victim;
        let read = statement && !write && matches!(x.response, Response::Rows(_));
        let in_view = read && self.viewed.contains(&x.session);
        let view = read && !in_view;
        if ended {
            self.viewed.remove(&x.session);
        } else if view {
            self.viewed.insert(x.session);
        }
        Class {
            write,
            locks,
            commit,
            view,
            in_view,
            victim,
            ended,
        }
    }

    /// The session ended: whatever it left open was rolled back.
    pub(crate) fn session_ended(&mut self, session: u64) {
        self.dirty.remove(&session);
        self.viewed.remove(&session);
        self.writes.retain(|(s, _), _| *s != session);
    }
}

/// Finds the view points whose recorded interval overlapped a commit point of another
/// session (no recorded order between them). The exchanges come roughly in the order they
/// were recorded — as they ended, not as they started — so each one is tested against those
/// of the last [`AMBIGUITY_WINDOW_US`] (recorded time) by interval, not by reading order.
#[derive(Default)]
pub(crate) struct Ambiguity {
    /// Commit points read: (end, start, session).
    commits: BTreeSet<(u64, u64, u64)>,
    /// View points read and not found ambiguous: (end, start, session, seq).
    views: BTreeSet<(u64, u64, u64, u64)>,
    /// The latest start read.
    latest: u64,
}

/// An order-ambiguous view point: the clones that have not asked for it yet, and the commits
/// it overlapped, by recorded end.
type Overlapped = (u32, Vec<Overlap>);

/// A commit point an order-ambiguous view point overlapped: its recorded end and start.
pub(crate) type Overlap = (u64, u64);

/// Most recorded ends of overlapped commits kept per order-ambiguous view point.
const AMBIGUOUS_ENDS_KEPT: usize = 64;

/// How far back in recorded time a new exchange is tested against earlier ones: a view
/// point longer than this may miss a commit that ran (and ended) early in it.
pub(crate) const AMBIGUITY_WINDOW_US: u64 = 10_000_000;

impl Ambiguity {
    /// The next exchange read; the view points found ambiguous on the way go to `found` as
    /// (session, seq, a commit point it overlapped), once per such commit point or more.
    pub(crate) fn exchange(
        &mut self,
        x: &Exchange,
        class: Class,
        found: &mut Vec<(u64, u64, Overlap)>,
    ) {
        let (start, end) = (x.start_us, x.end_us.max(x.start_us));
        self.latest = self.latest.max(start);
        let horizon = self.latest.saturating_sub(AMBIGUITY_WINDOW_US);
        while self.commits.first().is_some_and(|c| c.0 < horizon) {
            self.commits.pop_first();
        }
        while self.views.first().is_some_and(|v| v.0 < horizon) {
            self.views.pop_first();
        }
        // Intervals [start, end] that overlap this one: they end after it starts (the sets
        // are ordered by end) and start before it ends.
        let after = |v: u64| (v.saturating_add(1), 0, 0);
        if class.view {
            found.extend(
                self.commits
                    .range(after(start)..)
                    .filter(|c| c.1 < end && c.2 != x.session)
                    .map(|c| (x.session, x.seq, (c.0, c.1))),
            );
            // Kept either way: a commit read later may overlap it too, and end later.
            self.views.insert((end, start, x.session, x.seq));
        }
        if class.commit {
            found.extend(
                self.views
                    .range((start.saturating_add(1), 0, 0, 0)..)
                    .filter(|v| v.1 < end && v.2 != x.session)
                    .map(|v| (v.2, v.3, (end, start))),
            );
            self.commits.insert((end, start, x.session));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::footprint::{Cond, Footprint, Key};
    use myrr_recording::{OkInfo, Prepared};

    fn all() -> Arc<Rows> {
        Arc::new(Rows::everything())
    }

    /// Rows `ids` of table `t`.
    pub(crate) fn ids(t: &str, ids: &[i128]) -> Rows {
        let keys = ids.iter().map(|&i| Key::Int(i)).collect();
        Rows::of(Footprint::Table(t.into(), Some(vec![vec![Cond::In(keys)]])))
    }

    fn x(session: u64, command: Command, status: u16) -> Exchange {
        Exchange {
            session,
            seq: 0,
            clone: 0,
            scheduled_us: None,
            start_us: 0,
            end_us: 0,
            command,
            response: Response::Ok(OkInfo {
                status,
                ..Default::default()
            }),
            more: vec![],
        }
    }

    fn q(s: &str) -> Command {
        Command::Query {
            sql: s.as_bytes().to_vec(),
            attrs: vec![],
        }
    }

    #[test]
    fn commit_points() {
        let mut c = Classifier::default();
        // Autocommit write: a commit point; autocommit read: not.
        assert!(c.classify(&x(1, q("UPDATE t SET a=1"), 0x0002)).commit);
        assert!(!c.classify(&x(1, q("SELECT 1"), 0x0002)).commit);
        // A transaction that wrote ends at its COMMIT.
        assert!(!c.classify(&x(1, q("BEGIN"), 0x0003)).commit);
        assert!(
            !c.classify(&x(1, q("INSERT INTO t VALUES (1)"), 0x0003))
                .commit
        );
        assert!(!c.classify(&x(2, q("SELECT 2"), 0x0002)).commit);
        assert!(c.classify(&x(1, q("COMMIT"), 0x0002)).commit);
        // A read-only transaction is not one.
        assert!(!c.classify(&x(1, q("BEGIN"), 0x0003)).commit);
        assert!(!c.classify(&x(1, q("SELECT 3"), 0x0003)).commit);
        assert!(!c.classify(&x(1, q("COMMIT"), 0x0002)).commit);
        // Prepared writes are known by their statement.
        let mut prep = x(
            3,
            Command::Prepare {
                sql: b"DELETE FROM t WHERE id=?".to_vec(),
            },
            0,
        );
        prep.response = Response::Prepared(Prepared {
            stmt_id: 5,
            params: 1,
            columns: 0,
            warnings: 0,
            param_defs: vec![],
            column_defs: vec![],
        });
        assert!(!c.classify(&prep).commit);
        let exec = Command::Execute {
            stmt_id: 5,
            flags: 0,
            params: vec![],
            prepare_seen: true,
            raw_params: vec![],
        };
        assert!(c.classify(&x(3, exec, 0x0002)).commit);
    }

    pub(crate) fn rows(
        session: u64,
        seq: u64,
        sql: &str,
        status: u16,
        (start, end): (u64, u64),
    ) -> Exchange {
        let mut e = ok(session, seq, sql, status, (start, end));
        e.response = Response::Rows(myrr_recording::ResultSet {
            columns: Vec::new().into(),
            rows: 1,
            bytes: 1,
            digest: Default::default(),
            status,
            warnings: 0,
            complete: true,
            error: None,
        });
        e
    }

    pub(crate) fn ok(
        session: u64,
        seq: u64,
        sql: &str,
        status: u16,
        (start, end): (u64, u64),
    ) -> Exchange {
        let mut e = x(session, q(sql), status);
        e.seq = seq;
        e.start_us = start;
        e.end_us = end;
        e
    }

    #[test]
    fn view_points_are_autocommit_reads_and_a_transactions_first_read() {
        let mut c = Classifier::default();
        let auto = c.classify(&rows(1, 0, "SELECT 1", 0x0002, (0, 1)));
        assert!(auto.view && !auto.in_view && !auto.write);
        assert!(!c.classify(&ok(1, 1, "BEGIN", 0x0003, (2, 3))).view);
        let first = c.classify(&rows(1, 2, "SELECT a FROM t", 0x0003, (4, 5)));
        assert!(first.view && !first.in_view);
        let second = c.classify(&rows(1, 3, "SELECT b FROM t", 0x0003, (6, 7)));
        assert!(!second.view && second.in_view);
        // A write is neither; its COMMIT ends the transaction and the view with it.
        let w = c.classify(&ok(1, 4, "UPDATE t SET a=1", 0x0003, (8, 9)));
        assert!(w.write && !w.view && !w.in_view);
        assert!(c.classify(&ok(1, 5, "COMMIT", 0x0002, (10, 11))).commit);
        assert!(
            c.classify(&rows(1, 6, "SELECT a FROM t", 0x0002, (12, 13)))
                .view
        );
    }

    /// Runs exchanges (in start order) through a classifier and the ambiguity finder: the
    /// view points found, with the latest end of the commits each overlapped.
    fn ambiguous_until(xs: &[Exchange]) -> Vec<(u64, u64, u64)> {
        let (mut c, mut a, mut found) = (Classifier::default(), Ambiguity::default(), vec![]);
        for x in xs {
            let class = c.classify(x);
            a.exchange(x, class, &mut found);
        }
        let mut latest = BTreeMap::new();
        for (session, seq, (end, _)) in found {
            let e = latest.entry((session, seq)).or_insert(end);
            *e = (*e).max(end);
        }
        latest.into_iter().map(|((s, q), e)| (s, q, e)).collect()
    }

    fn ambiguous(xs: &[Exchange]) -> Vec<(u64, u64)> {
        ambiguous_until(xs)
            .into_iter()
            .map(|(s, q, _)| (s, q))
            .collect()
    }

    #[test]
    fn an_ambiguous_read_knows_the_latest_commit_it_overlapped() {
        let update = |session, s, e| ok(session, 0, "UPDATE t SET a=a+1", 0x0002, (s, e));
        // The read (100..300) overlaps session 2's commit (50..150), read before it, and
        // session 3's (250..400), read after it; not session 4's (350..500).
        assert_eq!(
            ambiguous_until(&[
                update(2, 50, 150),
                rows(1, 5, "SELECT a FROM t", 0x0002, (100, 300)),
                update(3, 250, 400),
                update(4, 350, 500),
            ]),
            [(1, 5, 400)]
        );
    }

    #[test]
    fn a_read_that_overlapped_another_sessions_commit_is_ambiguous() {
        // Session 2's autocommit UPDATE runs 100..200.
        let commit = |s, e| ok(2, 0, "UPDATE t SET a=a+1", 0x0002, (s, e));
        // A read that ended before it started, and one that started after it ended: ordered.
        assert!(ambiguous(&[
            rows(1, 0, "SELECT a FROM t", 0x0002, (10, 90)),
            commit(100, 200)
        ])
        .is_empty());
        assert!(ambiguous(&[
            commit(100, 200),
            rows(1, 0, "SELECT a FROM t", 0x0002, (210, 300))
        ])
        .is_empty());
        // Started before the commit and ended during it; started during it.
        assert_eq!(
            ambiguous(&[
                rows(1, 7, "SELECT a FROM t", 0x0002, (50, 150)),
                commit(100, 200)
            ]),
            [(1, 7)]
        );
        assert_eq!(
            ambiguous(&[
                commit(100, 200),
                rows(1, 8, "SELECT a FROM t", 0x0002, (150, 250))
            ]),
            [(1, 8)]
        );
        // Its own session's commit orders it; reads inside a transaction's view are not
        // view points (the session labels them from their view point).
        assert!(ambiguous(&[
            ok(1, 0, "BEGIN", 0x0003, (0, 10)),
            ok(1, 1, "UPDATE t SET a=1", 0x0003, (20, 30)),
            ok(1, 2, "COMMIT", 0x0002, (100, 200)),
            rows(3, 0, "SELECT a FROM t", 0x0002, (300, 400)),
        ])
        .is_empty());
        // Read as recorded, in end order: a short exchange that started after the read
        // ended comes between the read and the longer commit it overlapped.
        assert_eq!(
            ambiguous(&[
                rows(1, 9, "SELECT a FROM t", 0x0002, (150, 160)),
                ok(3, 0, "DO 1", 0x0002, (170, 180)),
                commit(100, 200),
            ]),
            [(1, 9)]
        );
        // A read-only transaction's COMMIT is no commit point.
        assert!(ambiguous(&[
            rows(1, 0, "SELECT a FROM t", 0x0002, (50, 150)),
            ok(2, 0, "COMMIT", 0x0002, (100, 200)),
        ])
        .is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_for_commits_that_ended_before_it_ended() {
        let order = CommitOrder::new(1);
        let t = Duration::from_millis(50);
        order.register(0, (100, 1, 0), 50, all());
        order.register(0, (300, 2, 0), 250, all());
        // The reader has not reached 150 yet: a commit ending before it may still come.
        assert!(order.wait(0, 150, &all(), t, |_, _| false).await == Waited::TimedOut);
        order.read_to(1000);
        // Ended at 50: nothing ended before it.
        assert!(order.wait(0, 50, &all(), t, |_, _| false).await == Waited::Ready);
        // Ended at 200: waits for the commit that ended at 100.
        assert!(
            order.wait(0, 200, &all(), t, |_, _| false).await == Waited::TimedOut,
            "times out while 100 is pending"
        );
        order.done(0, (100, 1, 0));
        assert!(order.wait(0, 200, &all(), t, |_, _| false).await == Waited::Ready);
        // A commit point does not wait for itself.
        assert!(order.wait(0, 300, &all(), t, |_, _| false).await == Waited::Ready);
        assert!(order.wait(0, 301, &all(), t, |_, _| false).await == Waited::TimedOut);
        order.done(0, (300, 2, 0));
        assert!(order.wait(0, 301, &all(), t, |_, _| false).await == Waited::Ready);
        assert_eq!(order.pending(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_wakes_only_the_waits_it_ends() {
        let order = Arc::new(CommitOrder::new(1));
        order.register(0, (100, 1, 0), 50, all());
        order.register(0, (200, 2, 0), 150, all());
        order.read_to(1000);
        let t = Duration::from_secs(10);
        let wait = |until| {
            let order = order.clone();
            tokio::spawn(async move { order.wait(0, until, &all(), t, |_, _| false).await })
        };
        let (short, long) = (wait(150), wait(250));
        let registered = |n| {
            let order = order.clone();
            async move {
                while order.clones[0].waiters.lock().unwrap().len() != n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        tokio::time::timeout(t, registered(2)).await.unwrap();
        order.done(0, (100, 1, 0));
        assert_eq!(short.await.unwrap(), Waited::Ready);
        // The wait up to 250 was not woken: still registered, still waiting.
        assert_eq!(order.clones[0].waiters.lock().unwrap().len(), 1);
        assert!(!long.is_finished());
        order.done(0, (200, 2, 0));
        assert_eq!(long.await.unwrap(), Waited::Ready);
        assert!(order.clones[0].waiters.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_for_the_points_that_started_before_a_time_passes_the_later_ones() {
        let order = Arc::new(CommitOrder::new(1));
        // A commit that overlapped a view ending at 100, and one that started after it.
        order.register(0, (300, 1, 0), 50, all());
        order.register(0, (200, 2, 0), 150, all());
        order.read_to(1000);
        let short = Duration::from_millis(30);
        let before = |until| {
            let order = order.clone();
            async move {
                order
                    .wait_started_before(0, until, 100, &all(), short, |_, _| false)
                    .await
            }
        };
        // Up to 250: only the later one ended before, and it is passed.
        assert_eq!(before(250).await, Waited::Ready);
        assert_eq!(
            order.wait(0, 250, &all(), short, |_, _| false).await,
            Waited::TimedOut
        );
        // Up to 301: the one that started before 100, even behind a pending later one.
        assert_eq!(before(301).await, Waited::TimedOut);
        let t = Duration::from_secs(10);
        let waiting = {
            let order = order.clone();
            tokio::spawn(async move {
                order
                    .wait_started_before(0, 301, 100, &all(), t, |_, _| false)
                    .await
            })
        };
        while order.clones[0].waiters.lock().unwrap().len() != 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A wait for every row past the pending later point is woken all the same.
        order.done(0, (300, 1, 0));
        assert_eq!(waiting.await.unwrap(), Waited::Ready);
        assert!(!order.clone_state(0).ready(Span {
            until: 301,
            started_before: u64::MAX,
            rows: &Rows::everything(),
        }));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_holds_only_for_the_commits_that_may_share_its_rows() {
        let order = Arc::new(CommitOrder::new(1));
        order.register(0, (100, 1, 0), 50, Arc::new(ids("t", &[1])));
        order.register(0, (200, 2, 0), 150, Arc::new(ids("t", &[2])));
        order.register(0, (250, 3, 0), 240, Arc::new(ids("u", &[2])));
        order.read_to(1000);
        let short = Duration::from_millis(30);
        // Row 3 of t, or another table's rows: no earlier commit in the way.
        let t3 = Arc::new(ids("t", &[3]));
        assert_eq!(
            order.wait(0, 300, &t3, short, |_, _| false).await,
            Waited::Ready
        );
        let v = Arc::new(ids("v", &[1, 2]));
        assert_eq!(
            order.wait(0, 300, &v, short, |_, _| false).await,
            Waited::Ready
        );
        // Nothing at all (`SELECT NOW()`): neither.
        let none = Arc::new(Rows::default());
        assert_eq!(
            order.wait(0, 300, &none, short, |_, _| false).await,
            Waited::Ready
        );
        // Row 2 of t: the second commit; every row: the first.
        let t2 = Arc::new(ids("t", &[2]));
        assert_eq!(
            order.wait(0, 300, &t2, short, |_, _| false).await,
            Waited::TimedOut
        );
        // The session it waits for is the one whose commit is in its way.
        assert_eq!(
            order.wait(0, 300, &t2, short, |s, _| s == 2).await,
            Waited::Cycle
        );
        assert_eq!(
            order.wait(0, 300, &t2, short, |s, _| s == 1).await,
            Waited::TimedOut
        );
        let t = Duration::from_secs(10);
        let waiting = {
            let (order, t2) = (order.clone(), t2.clone());
            tokio::spawn(async move { order.wait(0, 300, &t2, t, |_, _| false).await })
        };
        while order.clones[0].waiters.lock().unwrap().len() != 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Commits of other rows do not end it.
        order.done(0, (100, 1, 0));
        order.done(0, (250, 3, 0));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiting.is_finished());
        order.done(0, (200, 2, 0));
        assert_eq!(waiting.await.unwrap(), Waited::Ready);
        // The view points of its rows a commit went ahead of.
        order.register(0, (400, 4, 0), 350, Arc::new(ids("t", &[5])));
        order.register(0, (410, 5, 0), 350, Arc::new(ids("t", &[6])));
        assert_eq!(
            order.pending_before(0, 500, &ids("t", &[6, 7])),
            vec![(410, 5, 0)]
        );
        assert_eq!(order.pending_before(0, 500, &all()).len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_at_once_when_the_earlier_commits_session_is_stuck() {
        let order = CommitOrder::new(1);
        order.register(0, (100, 7, 3), 50, all());
        order.read_to(u64::MAX);
        let t = Duration::from_secs(10);
        let started = std::time::Instant::now();
        assert_eq!(
            order.wait(0, 200, &all(), t, |s, _| s == 7).await,
            Waited::Cycle
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let short = Duration::from_millis(20);
        assert_eq!(
            order.wait(0, 200, &all(), short, |s, _| s == 8).await,
            Waited::TimedOut
        );
    }

    #[test]
    fn a_statement_answered_while_a_commit_finished_waits_for_that_commit() {
        let order = CommitOrder::new(1);
        // Session 2's COMMIT ran 900..1014; session 3's 1000..7000 (long).
        order.register(0, (1014, 2, 5), 900, all());
        order.register(0, (1000 + LOCK_RELEASE_SLACK_US + 1000, 3, 9), 1000, all());
        // Session 1's UPDATE, woken by session 2's commit, was answered at 1000: it waits
        // for that commit too (1014 + 1), not for session 3's, which ended later than the
        // slack.
        assert_eq!(order.released_by(0, 1, 1000), 1015);
        // A commit that started after the statement ended did not release it.
        order.register(0, (1100, 4, 2), 1050, all());
        assert_eq!(order.released_by(0, 1, 1040), 1040);
        // Never beyond the statement's own session's next commit.
        let own = CommitOrder::new(1);
        own.register(0, (1010, 1, 8), 1005, all());
        own.register(0, (1014, 2, 5), 900, all());
        assert_eq!(own.released_by(0, 1, 1000), 1000);
        // Nothing in flight: its own end.
        assert_eq!(CommitOrder::new(1).released_by(0, 1, 1000), 1000);
    }

    #[test]
    fn a_locking_view_point_is_waited_for_only_by_commits_that_ended_well_after_it() {
        let read = rows(1, 4, "SELECT v FROM t WHERE id = 1", 1, (100, 500));
        let locking = rows(
            1,
            4,
            "SELECT v FROM t WHERE id = 1 FOR UPDATE",
            1,
            (100, 500),
        );
        let mut c = Classifier::default();
        let (r, l) = (c.classify(&read), c.classify(&locking));
        assert_eq!(view_key(&read, r), (500, 1, 4));
        assert_eq!(view_key(&locking, l), (500 + LOCK_RELEASE_SLACK_US, 1, 4));
    }

    #[test]
    fn a_session_that_gave_way_to_a_blocked_one_goes_on_at_once() {
        let order = Order::new(1, true, false, true, false, false);
        order.in_server(2, 0, Some(Duration::from_micros(50)));
        // Not given way to before: no at-once answer.
        assert!(!order.gives_way(1, 0, 2, true));
        let entered = order.in_server.lock().unwrap()[&(2, 0)].0;
        order.gave_way.lock().unwrap().insert((1, 0), (2, entered));
        assert!(order.gives_way(1, 0, 2, true));
        // Nor for another blocker.
        assert!(!order.gives_way(1, 0, 3, true));
        // Session 2 was answered and is in the server with its next command: wait again.
        order.in_server(2, 0, None);
        std::thread::sleep(Duration::from_millis(1));
        order.in_server(2, 0, Some(Duration::from_micros(50)));
        assert!(!order.gives_way(1, 0, 2, true));
        // Session 1's transaction ended: it holds nothing session 2 waits for.
        let entered = order.in_server.lock().unwrap()[&(2, 0)].0;
        order.gave_way.lock().unwrap().insert((1, 0), (2, entered));
        assert!(order.gives_way(1, 0, 2, true));
        order.txn_ended(1, 0);
        assert!(!order.gives_way(1, 0, 2, true));
    }

    #[test]
    fn waits_that_close_a_circle_are_found() {
        let order = Order::new(1, true, false, true, false, false);
        // 1 waits for 2, 2 for 3: no circle yet.
        assert!(!order.waits_in_circle(1, 0, 2));
        assert!(!order.waits_in_circle(2, 0, 3));
        // 3 waits for 1: each waits for the next, none can move.
        assert!(order.waits_in_circle(3, 0, 1));
        // Once 2's wait is over, 3 waiting for 1 closes no circle.
        order.done_waiting(2, 0);
        assert!(!order.waits_in_circle(3, 0, 1));
        // Clones are separate copies: the same sessions in another clone are not waiting.
        assert!(!order.waits_in_circle(2, 1, 3));
    }

    #[test]
    fn a_deadlock_victim_ends_its_transaction_but_is_no_commit_point() {
        let mut c = Classifier::default();
        assert!(!c.classify(&ok(1, 0, "BEGIN", 0x0003, (0, 1))).commit);
        let w = c.classify(&ok(1, 1, "UPDATE t SET a=1", 0x0003, (2, 3)));
        assert!(!w.commit && !w.victim);
        let mut victim = ok(1, 2, "UPDATE t SET b=1", 0, (4, 9));
        victim.response = Response::Err(myrr_recording::ErrInfo {
            code: ER_LOCK_DEADLOCK,
            state: b"40001".to_vec(),
            message: Vec::new(),
        });
        let v = c.classify(&victim);
        assert!(!v.commit && v.victim);
        // The application's ROLLBACK after it ends nothing more.
        assert!(!c.classify(&ok(1, 3, "ROLLBACK", 0x0002, (10, 11))).commit);
        // Another error ends nothing; a COMMIT is no victim.
        assert!(!c.classify(&ok(1, 4, "BEGIN", 0x0003, (12, 13))).commit);
        assert!(
            !c.classify(&ok(1, 5, "UPDATE t SET a=2", 0x0003, (14, 15)))
                .commit
        );
        let mut dup = ok(1, 6, "INSERT INTO t VALUES (1)", 0, (16, 17));
        dup.response = Response::Err(myrr_recording::ErrInfo {
            code: 1062,
            state: b"23000".to_vec(),
            message: Vec::new(),
        });
        assert!(!c.classify(&dup).commit);
        let commit = c.classify(&ok(1, 7, "COMMIT", 0x0002, (18, 19)));
        assert!(commit.commit && !commit.victim);
    }
}
