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
//! So under `--sync` a monitor connection asks the candidate for its lock waits whenever a
//! waiter's session has been in the server for over [`SUSPECT_AFTER`], maps the connection
//! ids to the replay's sessions, and a waiter gives way only when the waits, order and lock
//! edges together, lead from the session it waits for back to itself.
//!
//! Where the waits are read from, in the order tried:
//! - **InnoDB's status** (`SHOW ENGINE INNODB STATUS`, [`parse_status`]): current at every
//!   ask. It lists the transactions in a lock wait, but not who holds the lock; a clustered
//!   index record names the transaction that last changed it, which holds its lock while open,
//!   and otherwise (a row only read `FOR UPDATE`, a secondary index, a gap) any transaction
//!   holding row locks may be the holder, unless one of them is running in the server (it
//!   may well be the holder, and will let go): see [`Waits::edges`].
//! - **`sys.innodb_lock_waits`**, or the InnoDB `information_schema` tables it is made of:
//!   exact, but InnoDB fills them from a cache it refreshes only after they have gone unread
//!   for 100 ms, so a circle waited about that long to be seen. On the TPC-C-like bench
//!   (benches/writes.sh, 8 threads) circles came every 50 ms or so, and the replay took 20–23 s
//!   against 14–16 s with the status (closed loop: 10–11 s).
//!
//! A candidate that answers neither (no PROCESS privilege, another engine) leaves the replay
//! to the time guess, and the summary says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// A session in the server this long is worth asking the candidate about (plus twice the
/// time production's answer took, when the answers lag: see `Source::Query`).
pub(crate) const SUSPECT_AFTER: Duration = Duration::from_millis(1);

/// How often at most the candidate is asked. InnoDB fills its `information_schema` lock
/// tables from a cache that it refreshes only when they have not been read for 100 ms: asked
/// more often, it would answer the same stale waits for ever.
const ASK_EVERY: Duration = Duration::from_millis(110);

/// How often at most InnoDB's status is asked for (it is current at every ask; a pause
/// bounds its cost to the candidate).
const ASK_STATUS_EVERY: Duration = Duration::from_millis(2);

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

/// What the candidate showed of its lock waits.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Waits {
    /// When the candidate was asked.
    pub(crate) at: Instant,
    /// A waiting task → the tasks known to hold what it waits for.
    pub(crate) edges: HashMap<Task, Vec<Task>>,
    /// A waiting task whose lock's holder the candidate did not name (InnoDB's status names
    /// only the transaction that last changed the row) → the tasks that hold row locks: any
    /// of them may be it.
    pub(crate) maybe: HashMap<Task, Vec<Task>>,
}

impl Waits {
    /// Whether `task` waits for a lock in the candidate.
    pub(crate) fn waiting(&self, task: Task) -> bool {
        self.edges.contains_key(&task) || self.maybe.contains_key(&task)
    }

    /// The lock waits as edges, a holder-unknown wait standing for waits on each task that
    /// holds row locks — unless one of them is `running` (in the server and in no lock
    /// wait): that one may well be the holder, and will let go.
    pub(crate) fn edges(&self, running: impl Fn(Task) -> bool) -> HashMap<Task, Vec<Task>> {
        let mut edges = self.edges.clone();
        for (waiter, holders) in &self.maybe {
            if !holders.iter().any(|&h| running(h) && !self.waiting(h)) {
                edges.insert(*waiter, holders.clone());
            }
        }
        edges
    }
}

impl Waits {
    fn new(at: Instant) -> Self {
        Self {
            at,
            edges: HashMap::new(),
            maybe: HashMap::new(),
        }
    }
}

/// The candidate's lock waits, as last asked.
#[derive(Default)]
pub(crate) struct LockWaits {
    /// Connection id on the candidate → the task using it.
    conns: Mutex<HashMap<u32, Task>>,
    /// The last answer (None: not asked yet).
    snapshot: Mutex<Option<Waits>>,
    /// When a waiter last went ahead on a guessed holder (see [`LockWaits::guess`]).
    guessed: Mutex<Option<Instant>>,
    wanted: tokio::sync::Notify,
    /// The monitor asks and gets answers.
    pub(crate) working: AtomicBool,
    /// The answers are current (InnoDB's status): a statement long in production need not
    /// be long here before the candidate is asked about it.
    pub(crate) current: AtomicBool,
    /// Where the answers come from (see [`Source::name`]).
    pub(crate) source: Mutex<Option<&'static str>>,
    /// Times the candidate was asked.
    pub(crate) asked: AtomicU64,
    /// Why the candidate could not be asked, if it could not.
    pub(crate) failure: Mutex<Option<String>>,
}

/// Where the lock waits are read from.
#[derive(Clone, Copy)]
enum Source {
    /// `SHOW ENGINE INNODB STATUS`, parsed: current at every ask.
    Status,
    /// One of [`QUERIES`]: cached by InnoDB (see [`ASK_EVERY`]).
    Query(&'static str),
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Status => "SHOW ENGINE INNODB STATUS",
            Source::Query(q) => q,
        }
    }
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
    pub(crate) fn ask(&self, since: Instant) -> Option<Waits> {
        self.wanted.notify_one();
        let s = self.snapshot.lock().ok()?;
        s.as_ref().filter(|w| w.at >= since).cloned()
    }

    /// A waiter would go ahead on a guess (a holder the candidate did not name, see
    /// [`Waits::maybe`]), from an answer taken `at`: only one waiter per answer does, so that
    /// a circle is broken once, and not by every waiter that might hold the lock.
    pub(crate) fn guess(&self, at: Instant) -> bool {
        let Ok(mut g) = self.guessed.lock() else {
            return false;
        };
        if g.is_some_and(|last| last >= at) {
            return false;
        }
        *g = Some(Instant::now());
        true
    }

    /// Reads the candidate's lock waits from `source`: (waiting connection, holding
    /// connections, or None when not named), and the connections holding row locks.
    async fn read(
        conn: &mut mysql_async::Conn,
        source: Source,
    ) -> Result<(Vec<(u64, Option<u64>)>, Vec<u64>), String> {
        match source {
            Source::Status => {
                let rows: Vec<(Option<String>, Option<String>, Option<String>)> = conn
                    .query("SHOW ENGINE INNODB STATUS")
                    .await
                    .map_err(|e| e.to_string())?;
                let text = rows
                    .into_iter()
                    .next()
                    .and_then(|r| r.2)
                    .ok_or("an empty answer")?;
                let s = parse_status(&text).ok_or("no list of transactions in it")?;
                Ok((s.waits, s.locked))
            }
            Source::Query(q) => {
                let rows: Vec<(Option<u64>, Option<u64>)> =
                    conn.query(q).await.map_err(|e| e.to_string())?;
                let waits = rows
                    .into_iter()
                    .filter_map(|(w, b)| Some((w?, Some(b?))))
                    .collect();
                Ok((waits, vec![]))
            }
        }
    }

    /// Asks the candidate, whenever wanted, until `stop` (or until it cannot answer).
    pub(crate) async fn monitor(&self, opts: mysql_async::Opts, stop: &AtomicBool) {
        let mut conn = match mysql_async::Conn::new(opts).await {
            Ok(c) => c,
            Err(e) => return self.failed(format!("could not connect to ask for lock waits: {e}")),
        };
        // The first source the candidate answers; else why each failed.
        let mut found = None;
        let mut why = Vec::new();
        let sources =
            std::iter::once(Source::Status).chain(QUERIES.iter().map(|q| Source::Query(q)));
        for source in sources {
            match Self::read(&mut conn, source).await {
                Ok(_) => {
                    found = Some(source);
                    break;
                }
                Err(e) => why.push(format!("{}: {e}", source.name())),
            }
        }
        let Some(source) = found else {
            return self.failed(format!(
                "the candidate does not show its lock waits ({})",
                why.join("; ")
            ));
        };
        let pause = match source {
            Source::Status => {
                self.current.store(true, Ordering::Relaxed);
                ASK_STATUS_EVERY
            }
            Source::Query(_) => ASK_EVERY,
        };
        if let Ok(mut s) = self.source.lock() {
            *s = Some(source.name());
        }
        self.working.store(true, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            if tokio::time::timeout(Duration::from_millis(100), self.wanted.notified())
                .await
                .is_err()
            {
                continue;
            }
            let at = Instant::now();
            let (waits, locked) = match Self::read(&mut conn, source).await {
                Ok(r) => r,
                Err(e) => return self.failed(format!("asking for lock waits failed: {e}")),
            };
            self.asked.fetch_add(1, Ordering::Relaxed);
            let mut found = Waits::new(at);
            if let Ok(conns) = self.conns.lock() {
                let task = |id: u64| u32::try_from(id).ok().and_then(|i| conns.get(&i).copied());
                let locked: Vec<Task> = locked.iter().filter_map(|&id| task(id)).collect();
                for (w, b) in waits {
                    let Some(w) = task(w) else { continue };
                    match b {
                        Some(b) => {
                            let holders = found.edges.entry(w).or_default();
                            holders.extend(task(b));
                        }
                        None => {
                            let others = locked.iter().copied().filter(|&t| t != w).collect();
                            found.maybe.insert(w, others);
                        }
                    }
                }
            }
            if let Ok(mut s) = self.snapshot.lock() {
                *s = Some(found);
            }
            tokio::time::sleep(pause).await;
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

/// The lock waits in InnoDB's status (`SHOW ENGINE INNODB STATUS`), by connection id.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Status {
    /// A connection in a lock wait, and the connection of the transaction that last changed
    /// the row it waits for, when that transaction is open (it then holds the row's lock).
    pub(crate) waits: Vec<(u64, Option<u64>)>,
    /// The connections whose transactions hold row locks.
    pub(crate) locked: Vec<u64>,
}

/// Reads the lock waits out of InnoDB's status text (MariaDB's and MySQL's: "---TRANSACTION
/// id, …" blocks with "MariaDB|MySQL thread id N", "LOCK WAIT", "N row lock(s)", and the
/// record waited for after "FOR THIS LOCK TO BE GRANTED:"). InnoDB names no lock holder; but
/// a clustered index record carries the id of the transaction that last changed it
/// (DB_TRX_ID, the 6-byte field before the 7-byte roll pointer), and while that transaction
/// is open it holds the record's lock. None: no list of transactions in the text.
pub(crate) fn parse_status(text: &str) -> Option<Status> {
    let (_, list) = text.split_once("LIST OF TRANSACTIONS FOR EACH SESSION:")?;
    // The next section's heading ends the list.
    let list = list.split_once("\n--------\n").map_or(list, |(l, _)| l);
    struct Trx<'a> {
        /// None: "(0x…)", a transaction that has not written (or not started).
        id: Option<u64>,
        thread: Option<u64>,
        row_locks: bool,
        waits_for: Option<&'a str>,
    }
    let mut trxs = Vec::new();
    for block in list.split("---TRANSACTION ").skip(1) {
        let id = leading_number(block);
        let thread = block
            .split_once(" thread id ")
            .and_then(|(_, rest)| leading_number(rest));
        let row_locks = block
            .split_once(" row lock(s)")
            .and_then(|(before, _)| before.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        let waiting = block.lines().any(|l| l.starts_with("LOCK WAIT"));
        let waits_for = waiting.then(|| {
            block
                .split_once("FOR THIS LOCK TO BE GRANTED:")
                .map_or("", |(_, w)| w)
        });
        trxs.push(Trx {
            id,
            thread,
            row_locks,
            waits_for,
        });
    }
    let thread_of = |trx: u64| {
        trxs.iter()
            .find(|t| t.id == Some(trx))
            .and_then(|t| t.thread)
    };
    let mut status = Status::default();
    for t in &trxs {
        let Some(thread) = t.thread else { continue };
        if t.row_locks {
            status.locked.push(thread);
        }
        if let Some(w) = t.waits_for {
            let holder = last_changed_by(w)
                .filter(|&h| Some(h) != t.id)
                .and_then(thread_of)
                .filter(|&h| h != thread);
            status.waits.push((thread, holder));
        }
    }
    Some(status)
}

/// The digits `s` starts with, as a number.
fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The DB_TRX_ID of the clustered index record a lock wait is for ("RECORD LOCKS … index
/// PRIMARY|GEN_CLUST_INDEX of table …", then its fields " N: len L; hex H; asc …;;").
fn last_changed_by(wait: &str) -> Option<u64> {
    let mut lines = wait.lines().skip_while(|l| l.trim().is_empty());
    let head = lines.next()?;
    if !head.starts_with("RECORD LOCKS ")
        || !(head.contains(" index PRIMARY of table ")
            || head.contains(" index GEN_CLUST_INDEX of table "))
    {
        return None;
    }
    // (len, hex) of the first record's fields.
    let fields: Vec<(u64, &str)> = lines
        .skip_while(|l| !l.starts_with("Record lock"))
        .skip(1)
        .map_while(|l| {
            let (_, rest) = l.trim_start().split_once(": len ")?;
            let (len, rest) = rest.split_once("; hex ")?;
            let hex = rest.split(';').next()?;
            Some((len.parse().ok()?, hex))
        })
        .collect();
    let at = fields.windows(2).position(|w| w[0].0 == 6 && w[1].0 == 7)?;
    u64::from_str_radix(fields[at].1, 16)
        .ok()
        .filter(|&id| id > 0)
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

    /// MariaDB 10.11's status while connection 515 holds row 1 (changed), row 2 (FOR
    /// UPDATE) and k = 3 (FOR UPDATE) and sleeps: 516 waits for row 1, 517 for row 2, 518
    /// (a read-only transaction, no id) for k = 3 in the secondary index. Its "LATEST
    /// DETECTED DEADLOCK" section, from an earlier replay, lists transactions too.
    const STATUS: &str = include_str!("testdata/innodb_status_waits.txt");

    #[test]
    fn innodb_status_names_the_holder_of_a_changed_row() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(
            s.waits,
            vec![(518, None), (517, None), (516, Some(515))],
            "{s:?}"
        );
        assert_eq!(s.locked, vec![518, 517, 516, 515]);
        // MySQL says "MySQL thread id"; a transaction holding nothing is not listed as
        // locking.
        let mysql = "LIST OF TRANSACTIONS FOR EACH SESSION:\n\
            ---TRANSACTION 42, ACTIVE 3 sec\n\
            2 lock struct(s), heap size 1136, 1 row lock(s), undo log entries 1\n\
            MySQL thread id 8, OS thread handle 1, query id 9 localhost root\n\
            ---TRANSACTION 43, ACTIVE 1 sec starting index read\n\
            LOCK WAIT 2 lock struct(s), heap size 1136, 1 row lock(s)\n\
            MySQL thread id 9, OS thread handle 2, query id 10 localhost root updating\n\
            update t set v = 2 where id = 1\n\
            ------- TRX HAS BEEN WAITING 3 SEC FOR THIS LOCK TO BE GRANTED:\n\
            RECORD LOCKS space id 2 page no 4 n bits 72 index PRIMARY of table `d`.`t` \
            trx id 43 lock_mode X locks rec but not gap waiting\n\
            Record lock, heap no 2 PHYSICAL RECORD: n_fields 4; compact format; info bits 0\n \
            0: len 4; hex 80000001; asc     ;;\n \
            1: len 6; hex 00000000002a; asc       *;;\n \
            2: len 7; hex 01000001150151; asc        Q;;\n\
            ---TRANSACTION 44, not started\n\
            0 lock struct(s), heap size 1136, 0 row lock(s)\n\
            MySQL thread id 10, OS thread handle 3, query id 11 localhost root\n\
            --------\nFILE I/O\n--------\n";
        let s = parse_status(mysql).unwrap();
        assert_eq!(s.waits, vec![(9, Some(8))]);
        assert_eq!(s.locked, vec![8, 9]);
        assert_eq!(parse_status("no transactions section"), None);
    }

    #[test]
    fn innodb_status_never_panics_on_cut_or_damaged_text() {
        for end in (0..STATUS.len()).filter(|&i| STATUS.is_char_boundary(i)) {
            let _ = parse_status(&STATUS[..end]);
        }
        // Bytes overwritten, the text kept valid UTF-8.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"0123456789abcdef :;,()-\nLOCKWAIThreadidlen";
        for _ in 0..2_000 {
            let mut bytes = STATUS.as_bytes().to_vec();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % bytes.len();
                bytes[at] = alphabet[(seed >> 32) as usize % alphabet.len()];
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_status(&text);
        }
    }

    #[test]
    fn a_wait_whose_holder_is_not_named_waits_on_every_lock_holder_unless_one_runs() {
        let mut waits = Waits::new(Instant::now());
        waits.maybe.insert((2, 0), vec![(1, 0), (3, 0)]);
        waits.edges.insert((3, 0), vec![(4, 0)]);
        // Nobody running: 2 may wait for 1 or 3.
        let e = waits.edges(|_| false);
        assert_eq!(e.get(&(2, 0)), Some(&vec![(1, 0), (3, 0)]));
        assert!(leads_back((2, 0), (1, 0), &e, &HashMap::new()));
        // 1 runs in the server: the holder may well be it, and will let go.
        let e = waits.edges(|t| t == (1, 0));
        assert_eq!(e.get(&(2, 0)), None);
        assert!(!leads_back((2, 0), (1, 0), &e, &HashMap::new()));
        // 3 is in the server but waits for a lock itself: it does not count as running.
        let e = waits.edges(|t| t == (3, 0));
        assert!(e.contains_key(&(2, 0)));
    }

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
