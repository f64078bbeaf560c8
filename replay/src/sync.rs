//! `--sync commit|all`: keep the recorded order of commits across sessions.
//!
//! Sessions replayed each in their own send order can commit conflicting transactions in a
//! different order than production did (two sessions' UPDATEs of one row swap), and from then
//! on reads, duplicate keys and deadlocks differ. Under `--sync`, an exchange waits until every
//! *commit point* (an exchange that ended a transaction that wrote — by COMMIT, ROLLBACK or a
//! deadlock that rolled it back — or an autocommit write)
//! that had finished in the recording before the exchange itself finished has finished in the
//! replay. `commit` holds writes and commit points so; `all` holds every exchange (reads then
//! see what they saw).
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
//! end is published on a watch channel; a waiter wakes only when it moves. A wait is bounded
//! (`sync_timeout`) so that whatever the candidate does differently, the replay goes on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use myrr_recording::{Command, Exchange, Response};
use tokio::sync::watch;

use crate::readonly::is_read_only;

/// Which exchanges wait for earlier commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Each session in its own order only.
    #[default]
    None,
    /// Commit points wait for the commits that finished before they started.
    Commit,
    /// Every exchange waits for the commits that finished before it started.
    All,
}

const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
const ER_LOCK_DEADLOCK: u16 = 1213;

/// A commit point: (recorded end µs, session, seq).
pub(crate) type CommitKey = (u64, u64, u64);

/// Most commit points registered ahead of the replay (memory stays bounded).
pub(crate) const MAX_PENDING: usize = 1 << 20;

/// A command in the server this long is taken to be blocked on a lock.
const STUCK_AFTER: Duration = Duration::from_millis(20);

/// The replay's `--sync` state: the recorded commit order, and since when each session's
/// current command has been in the server (a wait for a commit whose session is blocked in
/// the candidate, on a lock this replay took in another order, gives way at once).
pub(crate) struct Order {
    pub(crate) commits: CommitOrder,
    /// (session, clone) → since when its current command is in the server.
    in_server: Mutex<HashMap<(u64, u32), Instant>>,
}

impl Order {
    pub(crate) fn new(clones: u32) -> Self {
        Self {
            commits: CommitOrder::new(clones),
            in_server: Mutex::new(HashMap::new()),
        }
    }

    /// A session's command entered (or left) the server.
    pub(crate) fn in_server(&self, session: u64, clone: u32, inside: bool) {
        if let Ok(mut m) = self.in_server.lock() {
            if inside {
                m.insert((session, clone), Instant::now());
            } else {
                m.remove(&(session, clone));
            }
        }
    }

    /// The session's current command has been in the server far longer than an answer
    /// takes (blocked on a lock, most likely).
    pub(crate) fn stuck_in_server(&self, session: u64, clone: u32) -> bool {
        self.in_server.lock().is_ok_and(|m| {
            m.get(&(session, clone))
                .is_some_and(|t| t.elapsed() > STUCK_AFTER)
        })
    }
}

/// Commit points read and not yet answered, per clone (clones are independent copies of the
/// workload and are not ordered against each other).
pub(crate) struct CommitOrder {
    clones: Vec<Pending>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    /// Every commit point that started before this recorded instant is registered.
    read_to: u64,
    /// The earliest recorded end among pending commit points (`u64::MAX`: none).
    earliest: u64,
}

struct Pending {
    keys: Mutex<BTreeSet<CommitKey>>,
    state: watch::Sender<State>,
}

impl Pending {
    fn update(&self, f: impl FnOnce(&mut BTreeSet<CommitKey>, &mut State)) {
        if let Ok(mut keys) = self.keys.lock() {
            self.state.send_if_modified(|st| {
                let before = *st;
                f(&mut keys, st);
                st.earliest = keys.first().map_or(u64::MAX, |k| k.0);
                *st != before
            });
        }
    }
}

impl CommitOrder {
    pub(crate) fn new(clones: u32) -> Self {
        Self {
            clones: (0..clones.max(1))
                .map(|_| Pending {
                    keys: Mutex::new(BTreeSet::new()),
                    state: watch::Sender::new(State {
                        read_to: 0,
                        earliest: u64::MAX,
                    }),
                })
                .collect(),
        }
    }

    fn clone_state(&self, clone: u32) -> &Pending {
        &self.clones[(clone as usize).min(self.clones.len() - 1)]
    }

    pub(crate) fn register(&self, clone: u32, key: CommitKey) {
        self.clone_state(clone).update(|keys, _| {
            keys.insert(key);
        });
    }

    pub(crate) fn done(&self, clone: u32, key: CommitKey) {
        self.clone_state(clone).update(|keys, _| {
            keys.remove(&key);
        });
    }

    /// The reader has registered every commit point that started before `us`.
    pub(crate) fn read_to(&self, us: u64) {
        for p in &self.clones {
            p.update(|_, st| st.read_to = st.read_to.max(us));
        }
    }

    /// Commit points registered and not answered (largest over clones).
    pub(crate) fn pending(&self) -> usize {
        self.clones
            .iter()
            .map(|p| p.keys.lock().map_or(0, |k| k.len()))
            .max()
            .unwrap_or(0)
    }

    /// Waits until every commit point that ended before `until_us` (recorded) has been
    /// answered, for at most `timeout`. `stuck(session)` tells whether a session has been
    /// inside the server for long: when the commit waited for belongs to such a session, it
    /// is most likely blocked on a lock this session holds (the candidate locked differently
    /// than production did), and waiting longer would only deadlock.
    pub(crate) async fn wait(
        &self,
        clone: u32,
        until_us: u64,
        timeout: Duration,
        stuck: impl Fn(u64) -> bool,
    ) -> Waited {
        let ready = |st: &State| st.read_to >= until_us && st.earliest >= until_us;
        let p = self.clone_state(clone);
        let mut rx = p.state.subscribe();
        if ready(&rx.borrow()) {
            return Waited::Ready;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let step = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(STUCK_CHECK);
            if let Ok(r) = tokio::time::timeout(step, rx.wait_for(ready)).await {
                return if r.is_ok() {
                    Waited::Ready
                } else {
                    Waited::TimedOut
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Waited::TimedOut;
            }
            let blocker = p.keys.lock().ok().and_then(|k| k.first().map(|k| k.1));
            if blocker.is_some_and(&stuck) {
                return Waited::Cycle;
            }
        }
    }
}

/// How often a waiter checks whether the session it waits for is stuck in the server.
const STUCK_CHECK: Duration = Duration::from_millis(5);

/// How a wait for earlier commits ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    /// The session of the earlier commit is blocked in the server.
    Cycle,
}

/// Finds commit points in recorded exchanges, in the order the dispatcher reads them.
#[derive(Default)]
pub(crate) struct Classifier {
    /// (session, recorded statement id) → the statement can write.
    writes: HashMap<(u64, u32), bool>,
    /// Sessions with a transaction that wrote and has not ended.
    dirty: HashSet<u64>,
}

impl Classifier {
    /// Whether `x` can write, and whether it is a commit point.
    pub(crate) fn classify(&mut self, x: &Exchange) -> (bool, bool) {
        let write = match &x.command {
            Command::Query { sql, .. } => !is_read_only(sql),
            Command::Execute { stmt_id, .. } => self
                .writes
                .get(&(x.session, *stmt_id))
                .copied()
                .unwrap_or(false),
            Command::Prepare { sql } => {
                if let Response::Prepared(p) = &x.response {
                    self.writes
                        .insert((x.session, p.stmt_id), !is_read_only(sql));
                }
                false
            }
            _ => false,
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
        let commit = ended && self.dirty.remove(&x.session);
        (write, commit)
    }

    /// The session ended: whatever it left open was rolled back.
    pub(crate) fn session_ended(&mut self, session: u64) {
        self.dirty.remove(&session);
        self.writes.retain(|(s, _), _| *s != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{OkInfo, Prepared};

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
        assert!(c.classify(&x(1, q("UPDATE t SET a=1"), 0x0002)).1);
        assert!(!c.classify(&x(1, q("SELECT 1"), 0x0002)).1);
        // A transaction that wrote ends at its COMMIT.
        assert!(!c.classify(&x(1, q("BEGIN"), 0x0003)).1);
        assert!(!c.classify(&x(1, q("INSERT INTO t VALUES (1)"), 0x0003)).1);
        assert!(!c.classify(&x(2, q("SELECT 2"), 0x0002)).1);
        assert!(c.classify(&x(1, q("COMMIT"), 0x0002)).1);
        // A read-only transaction is not one.
        assert!(!c.classify(&x(1, q("BEGIN"), 0x0003)).1);
        assert!(!c.classify(&x(1, q("SELECT 3"), 0x0003)).1);
        assert!(!c.classify(&x(1, q("COMMIT"), 0x0002)).1);
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
        assert!(!c.classify(&prep).1);
        let exec = Command::Execute {
            stmt_id: 5,
            flags: 0,
            params: vec![],
            prepare_seen: true,
            raw_params: vec![],
        };
        assert!(c.classify(&x(3, exec, 0x0002)).1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_for_commits_that_ended_before_it_ended() {
        let order = CommitOrder::new(1);
        let t = Duration::from_millis(50);
        order.register(0, (100, 1, 0));
        order.register(0, (300, 2, 0));
        // The reader has not reached 150 yet: a commit ending before it may still come.
        assert!(order.wait(0, 150, t, |_| false).await == Waited::TimedOut);
        order.read_to(1000);
        // Ended at 50: nothing ended before it.
        assert!(order.wait(0, 50, t, |_| false).await == Waited::Ready);
        // Ended at 200: waits for the commit that ended at 100.
        assert!(
            order.wait(0, 200, t, |_| false).await == Waited::TimedOut,
            "times out while 100 is pending"
        );
        order.done(0, (100, 1, 0));
        assert!(order.wait(0, 200, t, |_| false).await == Waited::Ready);
        // A commit point does not wait for itself.
        assert!(order.wait(0, 300, t, |_| false).await == Waited::Ready);
        assert!(order.wait(0, 301, t, |_| false).await == Waited::TimedOut);
        order.done(0, (300, 2, 0));
        assert!(order.wait(0, 301, t, |_| false).await == Waited::Ready);
        assert_eq!(order.pending(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_at_once_when_the_earlier_commits_session_is_stuck() {
        let order = CommitOrder::new(1);
        order.register(0, (100, 7, 3));
        order.read_to(u64::MAX);
        let t = Duration::from_secs(10);
        let started = std::time::Instant::now();
        assert_eq!(order.wait(0, 200, t, |s| s == 7).await, Waited::Cycle);
        assert!(started.elapsed() < Duration::from_secs(1));
        let short = Duration::from_millis(20);
        assert_eq!(
            order.wait(0, 200, short, |s| s == 8).await,
            Waited::TimedOut
        );
    }
}
