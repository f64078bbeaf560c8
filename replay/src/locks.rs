//! `--sync`: who waits for whose row lock in the candidate, asked of the candidate itself.
//!
//! An order wait (a session waiting for another's commit, see `sync`) can close a circle with
//! the engine's lock waits: the session waited for is blocked in the server on a lock that the
//! waiting session holds, or that a third session holds while it waits for the first. Nothing
//! then moves until one wait gives way. Without the engine's view, the replay can only guess
//! from time (a session in the server far longer than production's answer took, 20 ms and
//! more, is taken to be blocked), and that guess is slow, and wrong whenever a lock wait is
//! legitimate but long (a hot row's queue): the waiter then goes ahead of its commit for
//! nothing.
//!
//! So under `--sync` a monitor connection asks the candidate for its lock waits (MySQL's and
//! MariaDB's `sys.innodb_lock_waits`, or InnoDB's `information_schema` tables) whenever a
//! waiter's session has been in the server for over [`SUSPECT_AFTER`] (plus twice its recorded
//! time), maps the connection ids to the replay's sessions, and a waiter gives way only when
//! the waits, order and lock edges together, lead from the session it waits for back to
//! itself. A candidate that cannot answer (no PROCESS privilege, another engine) leaves the
//! replay to the time guess, and the summary says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// A session in the server this much longer than production's answer took (plus twice that
/// time) is worth asking the candidate about.
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_millis(1);

/// How often at most the candidate is asked. InnoDB fills its `information_schema` lock
/// tables from a cache that it refreshes only when they have not been read for 100 ms: asked
/// more often, it would answer the same stale waits for ever.
const ASK_EVERY: Duration = Duration::from_millis(110);

/// (session, clone): one task of the replay.
pub(crate) type Task = (u64, u32);

/// The queries, in the order tried: the `sys` view (MySQL 5.7+, MariaDB 10.6+), then the
/// InnoDB tables it is made of (older MariaDB).
const QUERIES: &[&str] = &[
    "SELECT waiting_pid, blocking_pid FROM sys.innodb_lock_waits",
    "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id \
     FROM information_schema.INNODB_LOCK_WAITS w \
     JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id \
     JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id",
];

#[derive(Default)]
struct Snapshot {
    /// When the candidate was asked (None: never).
    at: Option<Instant>,
    /// A waiting task → the tasks holding what it waits for.
    edges: HashMap<Task, Vec<Task>>,
}

/// The candidate's lock waits, as last asked.
#[derive(Default)]
pub(crate) struct LockWaits {
    /// Connection id on the candidate → the task using it.
    conns: Mutex<HashMap<u32, Task>>,
    snapshot: Mutex<Snapshot>,
    wanted: tokio::sync::Notify,
    /// The monitor asks and gets answers.
    pub(crate) working: AtomicBool,
    /// Times the candidate was asked.
    pub(crate) asked: AtomicU64,
    /// Why the candidate could not be asked, if it could not.
    pub(crate) failure: Mutex<Option<String>>,
}

impl LockWaits {
    /// `task` uses connection `id` on the candidate (from its greeting).
    pub(crate) fn connected(&self, id: u32, task: Task) {
        if let Ok(mut c) = self.conns.lock() {
            c.retain(|_, t| *t != task);
            c.insert(id, task);
        }
    }

    /// A fresh answer is wanted; the one there is, if taken after `since`.
    pub(crate) fn ask(&self, since: Instant) -> Option<HashMap<Task, Vec<Task>>> {
        self.wanted.notify_one();
        let s = self.snapshot.lock().ok()?;
        match s.at {
            Some(at) if at >= since => Some(s.edges.clone()),
            _ => None,
        }
    }

    /// Asks the candidate, whenever wanted, until `stop` (or until it cannot answer).
    pub(crate) async fn monitor(&self, opts: mysql_async::Opts, stop: &AtomicBool) {
        let mut conn = match mysql_async::Conn::new(opts).await {
            Ok(c) => c,
            Err(e) => return self.failed(format!("could not connect to ask for lock waits: {e}")),
        };
        // The first query the candidate answers; else why the last one failed.
        let mut found = Err(String::new());
        for q in QUERIES {
            match conn.query::<(Option<u64>, Option<u64>), _>(*q).await {
                Ok(_) => {
                    found = Ok(*q);
                    break;
                }
                Err(e) => found = Err(e.to_string()),
            }
        }
        let query = match found {
            Ok(q) => q,
            Err(why) => {
                return self.failed(format!(
                    "the candidate does not show its lock waits ({why})"
                ))
            }
        };
        self.working.store(true, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            if tokio::time::timeout(Duration::from_millis(100), self.wanted.notified())
                .await
                .is_err()
            {
                continue;
            }
            let at = Instant::now();
            let rows: Vec<(Option<u64>, Option<u64>)> = match conn.query(query).await {
                Ok(r) => r,
                Err(e) => return self.failed(format!("asking for lock waits failed: {e}")),
            };
            self.asked.fetch_add(1, Ordering::Relaxed);
            let mut edges: HashMap<Task, Vec<Task>> = HashMap::new();
            if let Ok(conns) = self.conns.lock() {
                for (w, b) in rows {
                    let task = |id: Option<u64>| {
                        id.and_then(|i| u32::try_from(i).ok())
                            .and_then(|i| conns.get(&i).copied())
                    };
                    if let (Some(w), Some(b)) = (task(w), task(b)) {
                        edges.entry(w).or_default().push(b);
                    }
                }
            }
            if let Ok(mut s) = self.snapshot.lock() {
                *s = Snapshot {
                    at: Some(at),
                    edges,
                };
            }
            tokio::time::sleep(ASK_EVERY).await;
        }
        let _ = conn.disconnect().await;
    }

    fn failed(&self, why: String) {
        self.working.store(false, Ordering::Relaxed);
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(why);
        }
    }
}

/// Whether the waits lead from `from` back to `to`: `lock` gives the tasks a task waits for
/// in the candidate, `order` the task whose commit it waits for.
pub(crate) fn leads_back(
    from: Task,
    to: Task,
    lock: &HashMap<Task, Vec<Task>>,
    order: &HashMap<Task, Task>,
) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![from];
    while let Some(t) = todo.pop() {
        if t == to {
            return true;
        }
        if !seen.insert(t) {
            continue;
        }
        if let Some(next) = lock.get(&t) {
            todo.extend(next.iter().copied());
        }
        if let Some(&next) = order.get(&t) {
            todo.push(next);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circles_through_lock_and_order_waits() {
        let mut lock = HashMap::new();
        let mut order = HashMap::new();
        // 2 waits in the candidate for a lock 3 holds; 3 waits for 1's commit.
        lock.insert((2, 0), vec![(3, 0)]);
        order.insert((3, 0), (1, 0));
        // 1 waiting for 2's commit closes the circle; 4 waiting for 2's does not.
        assert!(leads_back((2, 0), (1, 0), &lock, &order));
        assert!(!leads_back((2, 0), (4, 0), &lock, &order));
        // A chain that ends at a task that is running: no circle.
        lock.insert((2, 0), vec![(5, 0)]);
        assert!(!leads_back((2, 0), (1, 0), &lock, &order));
        // Several holders (a shared lock): any one of them may lead back.
        lock.insert((2, 0), vec![(5, 0), (3, 0)]);
        assert!(leads_back((2, 0), (1, 0), &lock, &order));
        // Loops elsewhere end.
        lock.insert((5, 0), vec![(6, 0)]);
        lock.insert((6, 0), vec![(5, 0)]);
        assert!(!leads_back((5, 0), (1, 0), &lock, &order));
    }
}
